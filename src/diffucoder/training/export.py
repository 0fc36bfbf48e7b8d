"""The end of a run: the Hugging Face model directory, its report files, the store artifact.

    weights = gather_weights(engine)                       # collective: every rank calls it
    if env.is_main:
        model_dir, training = save_model_dir(exportable_module(engine, weights, config), tokenizer, log, workdir)
        ...                                                # the recipe's plots into training/
        uri = finish_model_dir(model_dir, report_md, recipe_yaml, summary, output_uri, metadata)

``<workdir>/model`` is what ``load_model`` and ``AutoTokenizer.from_pretrained`` read, in the
layout of the released checkpoints (``save_model``: ``config.json`` with ``auto_map`` and a
top-level ``rope_theta``, the remote-code modules, ``generation_config.json``, safetensors
weights; then ``tokenizer.json`` + ``tokenizer_config.json``), so it also loads without
diffucoder: ``AutoModel.from_pretrained(dir, trust_remote_code=True)``. Plus ``training/``
(``metrics.jsonl``, ``loss_curve.png``, ``report.md``, ``recipe.yaml``, ``summary.json``).
It is published whole to ``output.uri`` when that is set.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffucoder.model import DreamModel, save_checkpoint_tokenizer, save_model
from diffucoder.store import resolve
from diffucoder.training.metrics import MetricsLog

TRAINING_DIR = "training"


@dataclass
class TrainResult:
    """What a recipe's run returns: its summary, where it worked, the model it exported (rank 0)."""
    summary: dict[str, Any]
    workdir: Path
    model_dir: Path | None       # rank 0 only
    model_uri: str               # '' when not published
    report_md: str


def gather_weights(engine) -> dict[str, torch.Tensor] | None:
    """The full weights on rank 0 when the engine shards them (collective), else None."""
    return None if engine.holds_full_weights else engine.full_state_dict()


def exportable_module(engine, weights: dict[str, torch.Tensor] | None, config):
    """The live module when it holds the full weights, else a fresh one loaded from ``weights``."""
    if engine.holds_full_weights:
        return engine.module
    model = DreamModel(config)
    model.load_state_dict(weights)
    return model


def save_model_dir(module, tokenizer, log: MetricsLog, workdir: Path) -> tuple[Path, Path]:
    """``<workdir>/model`` (weights, config, tokenizer) and its ``training/`` with the metrics log;
    (model_dir, training_dir). Every trainer's export starts here."""
    model_dir = workdir / "model"
    save_model(module, model_dir)
    save_checkpoint_tokenizer(tokenizer, model_dir)
    training = model_dir / TRAINING_DIR
    training.mkdir(exist_ok=True)
    shutil.copy2(log.path, training / "metrics.jsonl")
    return model_dir, training


def finish_model_dir(model_dir: Path, report: str, config_yaml: str, summary: dict[str, Any], output_uri: str,
                     metadata: dict[str, Any]) -> str:
    """Write the report, recipe and summary beside the plots, then publish the whole directory to
    ``output_uri`` (if set) with ``metadata``; the artifact's URI ('' when not published)."""
    training = model_dir / TRAINING_DIR
    (training / "report.md").write_text(report)
    (training / "recipe.yaml").write_text(config_yaml)
    (training / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if not output_uri:
        return ""
    store, name = resolve(output_uri)
    store.put_artifact(name, model_dir, metadata={"kind": "model", "format": "huggingface-dream", **metadata})
    return store.uri(name)
