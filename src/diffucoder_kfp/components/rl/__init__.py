from diffucoder_kfp.components.rl.component import rl

__all__ = ["rl"]
