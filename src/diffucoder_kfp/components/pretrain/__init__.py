from diffucoder_kfp.components.pretrain.component import pretrain

__all__ = ["pretrain"]
