"""The SFT stage as the DAG runs it: task suite -> chat JSONL -> instruction-tuned model.

    out = run_sft_stage(preset="tiny-cpu", model_uri="file:///abs/store/runs/r1/pretrain",
                        store_root="file:///abs/store", run_name="r1",
                        overrides=["train.steps=50", "tasks.max_per_family=20"])
    out.uri                       # file:///abs/store/runs/r1/sft  (the model)
    out.metadata["tasks_uri"]     # file:///abs/store/runs/r1/tasks (suite: train + held-out)

The stage first publishes the synthetic task suite (``diffucoder.tasks``) as
``<store>/runs/<run>/tasks``: ``tasks-{train,heldout}.jsonl`` (HumanEval fields, for the
evaluation and RL stages) and ``sft-{train,heldout}.jsonl`` (chat records). SFT trains on
``sft-train.jsonl``; held-out tasks only give a validation loss. The recipe's ``tasks``
section (``tasks.seed``, ``tasks.heldout_fraction``, ``tasks.max_per_family``,
``tasks.families``) shapes the suite; the rest is the trainer's (``configs/<preset>/sft.yaml``).
"""
from __future__ import annotations

import tempfile

from diffucoder.errors import DiffucoderError
from diffucoder.recipes.masked_diffusion import SFTConfig, train
from diffucoder.stage_io import StageOutput
from diffucoder.stages.cluster import ClusterLauncher
from diffucoder.stages.plan import passthrough_model, trains
from diffucoder.stages.registry import stage, stage_uri
from diffucoder.stages.training import recipe_config, run_training, wiring
from diffucoder.store import resolve
from diffucoder.tasks import SPLITS, generate_suite, verify_references, write_suite
from diffucoder.tasks.config import TaskSuiteConfig

STAGE = stage("sft")


def publish_task_suite(store_root: str, run_name: str, cfg: TaskSuiteConfig | None = None) -> str:
    """Generate, check and publish the suite as ``<store>/runs/<run>/tasks``; its URI."""
    cfg = cfg or TaskSuiteConfig()
    tasks = generate_suite(**cfg.suite_args())
    failures = verify_references(tasks)
    if failures:
        raise DiffucoderError(f"task suite: {len(failures)} reference solutions fail: {failures[:3]}")
    uri = stage_uri(store_root, run_name, STAGE.data_from)
    with tempfile.TemporaryDirectory(prefix="diffucoder-tasks-") as tmp:
        write_suite(tasks, tmp)
        store, name = resolve(uri)
        counts = {split: sum(t.split == split for t in tasks) for split in SPLITS}
        store.put_artifact(name, tmp, metadata={
            "kind": "task-suite", "format": "humaneval+chat-jsonl", "seed": cfg.seed,
            "heldout_fraction": cfg.heldout_fraction, "max_per_family": cfg.max_per_family, "wordings": cfg.wordings,
            "rl_fraction": cfg.rl_fraction,
            "counts": counts, "families": sorted({t.family for t in tasks})})
    return uri


def run_sft_stage(preset: str, model_uri: str, store_root: str, run_name: str,
                  overrides: list[str] | None = None, launcher: ClusterLauncher | None = None,
                  start_stage: str = "curate") -> StageOutput:
    """Publish the task suite here, then train here or (``launcher``) as a cluster job; in a run
    that starts at ``rl`` (``diffucoder.stages.plan``), pass ``model_uri`` on untrained."""
    if not model_uri:
        raise DiffucoderError("model_uri: empty; pass the pretrain stage's model")
    tasks_uri = stage_uri(store_root, run_name, STAGE.data_from)
    values = wiring(STAGE, store_root=store_root, run_name=run_name, data_uri=tasks_uri, init_from=model_uri)
    cfg = recipe_config(SFTConfig, preset, STAGE, values, overrides)   # checked before anything is generated
    publish_task_suite(store_root, run_name, cfg.tasks)
    if not trains(STAGE.name, start_stage):
        out = passthrough_model(model_uri, STAGE.name, start_stage)
    elif launcher is not None:
        out = launcher.run(STAGE, preset, store_root=store_root, run_name=run_name, data_uri=tasks_uri,
                           init_from=model_uri, overrides=overrides)
    else:
        out = run_training(cfg, train, STAGE)
    out.metadata["tasks_uri"] = tasks_uri
    return out
