from diffucoder_kfp.components.midtrain.component import midtrain

__all__ = ["midtrain"]
