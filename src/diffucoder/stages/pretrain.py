"""The pretrain stage as the DAG runs it: curated shards -> a masked-diffusion model artifact.

    out = run_pretrain_stage(preset="tiny-cpu", curated_uri="file:///abs/store/runs/r1/curated",
                             store_root="file:///abs/store", run_name="r1")
    out.uri        # file:///abs/store/runs/r1/pretrain  (Hugging Face dir + tokenizer + training/)
    out.metrics    # final_loss, final_eval_loss, tokens_per_s, flops_per_s, mfu, ...

Checkpoints go to ``<store>/runs/<run>/pretrain-checkpoints``, so rerunning the stage
after a crash resumes where it stopped (and rerunning a finished one re-exports the same
weights). With ``distributed.nproc_per_node > 1`` the stage launches the recipe under
``torchrun`` on this node; with a ``launcher`` it runs as a multi-node cluster job.
"""
from __future__ import annotations

from diffucoder.errors import DiffucoderError
from diffucoder.recipes.masked_diffusion import TrainConfig, train
from diffucoder.stage_io import StageOutput
from diffucoder.stages.cluster import ClusterLauncher
from diffucoder.stages.plan import check_start, passthrough_model, trains
from diffucoder.stages.registry import stage
from diffucoder.stages.training import recipe_config, run_training, wiring

STAGE = stage("pretrain")


def run_pretrain_stage(preset: str, curated_uri: str, store_root: str, run_name: str,
                       overrides: list[str] | None = None, launcher: ClusterLauncher | None = None,
                       start_stage: str = "curate", start_model: str = "") -> StageOutput:
    """Train here, or (``launcher``, see ``diffucoder.stages.cluster``) as a cluster job.

    ``start_model`` is the checkpoint adaptation starts from (``model.init_from``; an override
    of that key wins); a run that starts later passes it on (``diffucoder.stages.plan``).
    """
    check_start(start_stage, start_model)
    if not trains(STAGE.name, start_stage):
        return passthrough_model(start_model, STAGE.name, start_stage)
    if not curated_uri:
        raise DiffucoderError("curated_uri: empty; pass the curate stage's output")
    values = wiring(STAGE, store_root=store_root, run_name=run_name, data_uri=curated_uri, init_from=start_model)
    cfg = recipe_config(TrainConfig, preset, STAGE, values, overrides)   # a bad recipe fails before any job
    if launcher is not None:
        return launcher.run(STAGE, preset, store_root=store_root, run_name=run_name, data_uri=curated_uri,
                            init_from=start_model, overrides=overrides)
    return run_training(cfg, train, STAGE)
