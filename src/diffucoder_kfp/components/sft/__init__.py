from diffucoder_kfp.components.sft.component import sft

__all__ = ["sft"]
