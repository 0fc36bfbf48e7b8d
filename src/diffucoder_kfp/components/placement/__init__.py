from diffucoder_kfp.components.placement.component import placement

__all__ = ["placement"]
