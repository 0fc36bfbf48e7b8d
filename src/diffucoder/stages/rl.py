"""The RL stage as the DAG runs it: an SFT model + the task suite -> a coupled-GRPO model artifact.

    out = run_rl_stage(preset="tiny-cpu", model_uri="file:///abs/store/runs/r1/sft",
                       tasks_uri="file:///abs/store/runs/r1/tasks", store_root="file:///abs/store",
                       run_name="r1", overrides=["train.steps=2"])
    out.uri        # file:///abs/store/runs/r1/rl  (Hugging Face dir + tokenizer + training/)
    out.metrics    # initial/final reward and pass rate, mean KL, clip fraction, ...

The recipe is ``configs/<preset>/rl.yaml`` (``diffucoder.recipes.coupled_grpo.RLConfig``) with the wiring every
training stage gets: ``data.uri`` = the task suite (its training split is the prompt set),
``model.init_from`` = the SFT model, ``output.uri`` = ``<store>/runs/<run>/rl`` and
``checkpoint.uri`` = ``<store>/runs/<run>/rl-checkpoints`` (a rerun resumes). For a released
instruct model, pass its artifact as ``model_uri`` and any AceCode-style JSONL as ``tasks_uri``
with ``data.kind=acecode_jsonl``.
"""
from __future__ import annotations

from diffucoder.errors import DiffucoderError
from diffucoder.recipes.coupled_grpo import RLConfig, train_rl
from diffucoder.rl.report import KFP_METRIC_KEYS
from diffucoder.stage_io import StageOutput
from diffucoder.stages.cluster import ClusterLauncher
from diffucoder.stages.registry import stage
from diffucoder.stages.training import recipe_config, run_training, wiring

STAGE = stage("rl")


def run_rl_stage(preset: str, model_uri: str, tasks_uri: str, store_root: str, run_name: str,
                 overrides: list[str] | None = None, launcher: ClusterLauncher | None = None) -> StageOutput:
    """Train here (or under torchrun on this node), or (``launcher``) as a cluster job."""
    if not model_uri:
        raise DiffucoderError("model_uri: empty; pass the SFT stage's model (or a released instruct model)")
    if not tasks_uri:
        raise DiffucoderError("tasks_uri: empty; pass the SFT stage's task suite (or an AceCode-style JSONL)")
    values = wiring(STAGE, store_root=store_root, run_name=run_name, data_uri=tasks_uri, init_from=model_uri)
    cfg = recipe_config(RLConfig, preset, STAGE, values, overrides)
    if launcher is not None:
        out = launcher.run(STAGE, preset, store_root=store_root, run_name=run_name, data_uri=tasks_uri,
                           init_from=model_uri, overrides=overrides, metric_keys=KFP_METRIC_KEYS)
    else:
        out = run_training(cfg, train_rl, STAGE, metric_keys=KFP_METRIC_KEYS)
    out.metadata["tasks_uri"] = tasks_uri
    return out
