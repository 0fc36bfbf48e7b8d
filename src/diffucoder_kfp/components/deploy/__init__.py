from diffucoder_kfp.components.deploy.component import deploy

__all__ = ["deploy"]
