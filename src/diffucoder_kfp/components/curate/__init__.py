from diffucoder_kfp.components.curate.component import curate, curate_plan, curate_publish, curate_slice

__all__ = ["curate", "curate_plan", "curate_publish", "curate_slice"]
