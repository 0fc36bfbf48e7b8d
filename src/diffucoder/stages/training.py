"""A training stage's recipe, wired into a run and trained wherever the stage runs.

    values = wiring(stage("sft"), store_root="file:///abs/store", run_name="r1",
                    data_uri="file:///abs/store/runs/r1/tasks", init_from="file:///abs/store/runs/r1/pretrain")
    cfg = recipe_config(SFTConfig, "tiny-cpu", "sft", values, ["train.steps=20"])   # YAML <- wiring <- overrides
    out = run_training(cfg, train, stage("sft"))     # here, or under torchrun on this node
    out.uri, out.metrics, out.report_md              # the published model, described

The wiring (where a stage reads its data, starts its model, publishes and checkpoints) is a
set of typed values applied between the preset's YAML and the caller's overrides, so an
override still wins. It becomes ``key='value'`` strings only where a process boundary needs
them: the command of a cluster job (``stages.cluster``). torchrun on this node gets the
resolved recipe as a YAML file.
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
from typing import Any, Callable, TypeVar

from diffucoder.config import dump_yaml, load_config, quote_value
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.stage_io import StageOutput
from diffucoder.stages.registry import Stage, stage_uri
from diffucoder.store import resolve

C = TypeVar("C")

METRIC_KEYS = ("first_loss", "final_loss", "first_eval_loss", "final_eval_loss", "tokens_per_s",
               "flops_per_s", "mfu", "params", "tokens", "train_seconds", "resumed_from_step")


def wiring(stage: Stage, *, store_root: str, run_name: str, data_uri: str, init_from: str = "",
           checkpoint_dir: str = "") -> dict[str, str]:
    """The recipe values a training stage's run needs wherever it runs: its input, where it
    publishes, where it checkpoints (dotted key -> value).

    ``checkpoint_dir`` (e.g. a shared PVC's mount) keeps the resumable checkpoints on that
    volume instead of in the store.
    """
    if not data_uri:
        raise DiffucoderError(f"{stage.name}: data_uri is empty; pass the previous stage's output")
    checkpoints = stage_uri(store_root, run_name, f"{stage.output}-checkpoints")
    if checkpoint_dir:
        if not checkpoint_dir.startswith("/"):
            raise DiffucoderError(f"checkpoint_dir {checkpoint_dir!r}: must be an absolute path")
        checkpoints = f"file://{checkpoint_dir.rstrip('/')}/{run_name}/{stage.output}-checkpoints"
    values = {"data.uri": data_uri, "output.uri": stage_uri(store_root, run_name, stage.output),
              "checkpoint.uri": checkpoints}
    if init_from:
        values["model.init_from"] = init_from
    return values


def as_overrides(values: dict[str, Any]) -> list[str]:
    """``{"data.uri": "s3://b/x"}`` -> ``["data.uri='s3://b/x'"]``: the wiring on a command line."""
    return [f"{key}={quote_value(value)}" for key, value in values.items()]


def recipe_config(cls: type[C], preset: str, stage: Stage, values: dict[str, Any],
                  overrides: list[str] | None = None) -> C:
    """The stage's recipe: ``configs/<preset>/<recipe>.yaml`` <- ``values`` <- ``overrides``."""
    return load_config(cls, recipe_path(preset, stage.recipe), list(overrides or []), values=values)


def _train_under_torchrun(cfg, stage: Stage, nproc: int) -> None:
    """Run the recipe in ``nproc`` processes on this node; rank 0 publishes the model."""
    with tempfile.TemporaryDirectory(prefix=f"diffucoder-{stage.name}-launch-") as tmp:
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(dump_yaml(cfg))
        argv = [stage.name, *([stage.subcommand] if stage.subcommand else []), "--config", str(recipe)]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "diffucoder.cli", *argv]
        proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            raise DiffucoderError(f"{stage.name}: torchrun with {nproc} processes failed (exit "
                                  f"{proc.returncode}); see the log above")


def run_training(cfg, train_fn: Callable[[Any], Any], stage: Stage,
                 metric_keys: tuple[str, ...] = METRIC_KEYS) -> StageOutput:
    """Train in this process with ``train_fn`` (or under torchrun with the stage's own command
    when ``distributed.nproc_per_node > 1``) and describe the published model."""
    if not cfg.output.uri:
        raise DiffucoderError("output.uri: a stage must publish its model")
    with contextlib.ExitStack() as stack:
        if not cfg.output.workdir:  # everything lands in the store: keep no local leftovers
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"diffucoder-{stage.name}-"))
            cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, workdir=scratch))
        if cfg.distributed.nproc_per_node > 1:
            _train_under_torchrun(cfg, stage, cfg.distributed.nproc_per_node)
        else:
            train_fn(cfg)
    return describe_model(cfg.output.uri, stage.name, metric_keys)


def describe_model(model_uri: str, stage_name: str, metric_keys: tuple[str, ...] = METRIC_KEYS) -> StageOutput:
    """The StageOutput of a model a training recipe published (here, or in a cluster job): its
    ``training/summary.json`` numbers and ``training/report.md`` with the plots inlined (the KFP
    UI shows the Markdown alone)."""
    store, name = resolve(model_uri)
    summary = json.loads(store.open_file(name, "training/summary.json"))
    report = store.open_file(name, "training/report.md").decode()
    for png in sorted(set(re.findall(r"\]\(([\w.-]+\.png)\)", report))):
        data = base64.b64encode(store.open_file(name, f"training/{png}")).decode()
        report = report.replace(f"]({png})", f"](data:image/png;base64,{data})")
    metrics = {key: float(summary[key]) for key in metric_keys if isinstance(summary.get(key), (int, float))}
    metadata = {"kind": "model", "stage": stage_name, "params": summary["params"],
                "backend": summary["backend"], "world_size": summary["world_size"]}
    return StageOutput(uri=store.uri(name), metrics=metrics, report_md=report, metadata=metadata)
