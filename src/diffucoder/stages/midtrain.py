"""The mid-training stage (the paper's stage 2): the adapted model trained further on a code corpus
of its own, before SFT. Optional: a run enables it (pipeline parameter ``midtrain``); otherwise the
step passes the pre-trained model on unchanged.

    out = run_midtrain_stage(preset="7b-gpu", model_uri="s3://diffucoder/runs/r1/pretrain",
                             data_uri="s3://diffucoder/corpora/midtrain-curated", store_root="s3://diffucoder",
                             run_name="r1", enabled=True)
    out.uri        # s3://diffucoder/runs/r1/midtrain

The recipe is ``configs/<preset>/midtrain.yaml`` (the masked-diffusion recipe, like pre-training:
token shards, ``model.init_from`` = the pre-trained model); checkpoints go to
``<store>/runs/<run>/midtrain-checkpoints``, so a rerun resumes.
"""
from __future__ import annotations

from diffucoder.errors import DiffucoderError
from diffucoder.recipes.masked_diffusion import TrainConfig, train
from diffucoder.stage_io import StageOutput
from diffucoder.stages.cluster import ClusterLauncher
from diffucoder.stages.plan import check_start, passthrough_model, trains
from diffucoder.stages.registry import stage
from diffucoder.stages.training import recipe_config, run_training, wiring

STAGE = stage("midtrain")


def run_midtrain_stage(preset: str, model_uri: str, data_uri: str, store_root: str, run_name: str,
                       overrides: list[str] | None = None, launcher: ClusterLauncher | None = None,
                       enabled: bool = False, start_stage: str = "curate") -> StageOutput:
    """Train here, or (``launcher``) as a cluster job; pass ``model_uri`` on when not ``enabled`` or
    when the run starts later (``diffucoder.stages.plan``)."""
    check_start(start_stage, model_uri)
    if not model_uri:
        raise DiffucoderError("model_uri: empty; pass the pretrain stage's model")
    if not trains(STAGE.name, start_stage):
        return passthrough_model(model_uri, STAGE.name, start_stage)
    if not enabled:
        return passthrough_model(model_uri, STAGE.name, start_stage,
                                 why="Mid-training is off for this run (pipeline parameter `midtrain`)")
    if not data_uri:
        raise DiffucoderError("data_uri: empty; pass the mid-training corpus (curated token shards)")
    values = wiring(STAGE, store_root=store_root, run_name=run_name, data_uri=data_uri, init_from=model_uri)
    cfg = recipe_config(TrainConfig, preset, STAGE, values, overrides)   # a bad recipe fails before any job
    if launcher is not None:
        return launcher.run(STAGE, preset, store_root=store_root, run_name=run_name, data_uri=data_uri,
                            init_from=model_uri, overrides=overrides)
    return run_training(cfg, train, STAGE)
