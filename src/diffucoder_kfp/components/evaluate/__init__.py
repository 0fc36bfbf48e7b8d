from diffucoder_kfp.components.evaluate.component import evaluate

__all__ = ["evaluate"]
