from diffucoder_kfp.components.curate.component import curate

__all__ = ["curate"]
