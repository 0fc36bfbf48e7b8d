"""The pretrain stage as the DAG runs it: curated shards -> a masked-diffusion model artifact.

    out = run_pretrain_stage(preset="tiny-cpu", curated_uri="file:///abs/store/runs/r1/curated",
                             store_root="file:///abs/store", run_name="r1")
    out.uri        # file:///abs/store/runs/r1/pretrain  (Hugging Face dir + tokenizer + training/)
    out.metrics    # final_loss, final_eval_loss, tokens_per_s, flops_per_s, mfu, ...

Checkpoints go to ``<store>/runs/<run>/pretrain-checkpoints``, so rerunning the stage
after a crash resumes where it stopped (and rerunning a finished one re-exports the same
weights). With ``distributed.nproc_per_node > 1`` the stage launches the recipe under
``torchrun`` on this node; multi-node jobs start ``diffucoder pretrain`` under torchrun
themselves (e.g. a Kubeflow TrainJob).
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from diffucoder.config import dump_yaml, load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.stage_io import StageOutput
from diffucoder.stages import recipe_wiring
from diffucoder.stages.launch import ClusterLauncher

METRIC_KEYS = ("first_loss", "final_loss", "first_eval_loss", "final_eval_loss", "tokens_per_s",
               "flops_per_s", "mfu", "params", "tokens", "train_seconds", "resumed_from_step")


def training_config(stage: str, preset: str, store_root: str, run_name: str, data_uri: str,
                    init_from: str = "", overrides: list[str] | None = None):
    """The stage's recipe: preset YAML <- store locations <- caller overrides (last wins)."""
    from diffucoder.training.config import TrainConfig
    wiring = recipe_wiring(stage, store_root=store_root, run_name=run_name, data_uri=data_uri,
                           init_from=init_from)
    return load_config(TrainConfig, recipe_path(preset, stage), [*wiring, *(overrides or [])])


def _launch_torchrun(cfg) -> None:
    """Run the recipe in ``nproc_per_node`` processes on this node; rank 0 publishes the model."""
    with tempfile.TemporaryDirectory(prefix=f"diffucoder-{cfg.stage}-launch-") as tmp:
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(dump_yaml(cfg))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={cfg.distributed.nproc_per_node}",
               "-m", "diffucoder.cli", cfg.stage, "--config", str(recipe)]
        proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            raise DiffucoderError(f"{cfg.stage}: torchrun with {cfg.distributed.nproc_per_node} processes "
                                  f"failed (exit {proc.returncode}); see the log above")


def run_training(cfg, train_fn=None, metric_keys: tuple[str, ...] = METRIC_KEYS) -> StageOutput:
    """Train (in process with ``train_fn``, default the pretrain/SFT recipe, or under torchrun
    with the stage's own CLI) and describe the published model."""
    if not cfg.output.uri:
        raise DiffucoderError("output.uri: a stage must publish its model")
    with contextlib.ExitStack() as stack:
        if not cfg.output.workdir:  # everything lands in the store: keep no local leftovers
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"diffucoder-{cfg.stage}-"))
            cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, workdir=scratch))
        if cfg.distributed.nproc_per_node > 1:
            _launch_torchrun(cfg)
        else:
            if train_fn is None:
                from diffucoder.training.recipe import train as train_fn
            train_fn(cfg)
    return describe_model(cfg.output.uri, cfg.stage, metric_keys)


def describe_model(model_uri: str, stage: str, metric_keys: tuple[str, ...] = METRIC_KEYS) -> StageOutput:
    """The StageOutput of a model a training recipe published (here, or in a cluster job): its
    ``training/summary.json`` numbers and ``training/report.md`` with the plots inlined (the KFP
    UI shows the Markdown alone)."""
    from diffucoder.store import resolve
    store, name = resolve(model_uri)
    summary = json.loads(store.open_file(name, "training/summary.json"))
    report = store.open_file(name, "training/report.md").decode()
    for png in sorted(set(re.findall(r"\]\(([\w.-]+\.png)\)", report))):
        data = base64.b64encode(store.open_file(name, f"training/{png}")).decode()
        report = report.replace(f"]({png})", f"](data:image/png;base64,{data})")
    metrics = {key: float(summary[key]) for key in metric_keys if isinstance(summary.get(key), (int, float))}
    metadata = {"kind": "model", "stage": stage, "params": summary["params"],
                "backend": summary["backend"], "world_size": summary["world_size"]}
    return StageOutput(uri=store.uri(name), metrics=metrics, report_md=report, metadata=metadata)


def run_pretrain_stage(preset: str, curated_uri: str, store_root: str, run_name: str,
                       overrides: list[str] | None = None, launcher: ClusterLauncher | None = None,
                       start_stage: str = "curate", start_model: str = "") -> StageOutput:
    """Train here, or (``launcher``, see ``diffucoder.stages.launch``) as a cluster job.

    ``start_model`` is the checkpoint adaptation starts from (``model.init_from``; an override
    of that key wins); a run that starts later passes it on (``diffucoder.stages.plan``).
    """
    from diffucoder.config import quote_value
    from diffucoder.stages.plan import check_start, passthrough_model, trains

    check_start(start_stage, start_model)
    if not trains("pretrain", start_stage):
        return passthrough_model(start_model, "pretrain", start_stage)
    if not curated_uri:
        raise DiffucoderError("curated_uri: empty; pass the curate stage's output")
    overrides = [*([f"model.init_from={quote_value(start_model)}"] if start_model else []), *(overrides or [])]
    cfg = training_config("pretrain", preset, store_root, run_name, data_uri=curated_uri,
                          overrides=overrides)   # a bad recipe fails here, before any job exists
    if launcher is not None:
        return launcher.run("pretrain", preset, store_root=store_root, run_name=run_name,
                            data_uri=curated_uri, overrides=overrides)
    return run_training(cfg)
