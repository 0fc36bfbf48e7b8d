"""The end of a run (rank 0): Hugging Face model directory, plot, report, store artifact.

    model_dir, uri, report = export_model(cfg, engine, full_state, config, tokenizer, log,
                                          summary, workdir, config_yaml)

``<workdir>/model`` is what ``load_model`` and ``AutoTokenizer.from_pretrained`` read
(``config.json``, ``model.safetensors``, tokenizer files) plus ``training/``
(``metrics.jsonl``, ``loss_curve.png``, ``report.md``, ``recipe.yaml``, ``summary.json``).
It is published whole to ``output.uri`` when that is set.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from diffucoder.training.config import TrainConfig
from diffucoder.training.metrics import MetricsLog
from diffucoder.training.report import plot_loss_curve, render_report

TRAINING_DIR = "training"


def _exportable_model(engine, state: dict[str, torch.Tensor] | None, config):
    """The live module when it holds the full weights, else a fresh one loaded from ``state``."""
    if engine.holds_full_weights:
        return engine.module
    from diffucoder.model import DreamModel
    model = DreamModel(config)
    model.load_state_dict(state)
    return model


def save_model_dir(module, tokenizer, log: MetricsLog, workdir: Path) -> tuple[Path, Path]:
    """``<workdir>/model`` (weights, config, tokenizer) and its ``training/`` with the metrics log;
    (model_dir, training_dir). Every trainer's export starts here."""
    from diffucoder.model import save_model

    model_dir = workdir / "model"
    save_model(module, model_dir)
    tokenizer.save_pretrained(str(model_dir))
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
    from diffucoder.store import resolve
    store, name = resolve(output_uri)
    store.put_artifact(name, model_dir, metadata={"kind": "model", "format": "huggingface-dream", **metadata})
    return store.uri(name)


def export_model(cfg: TrainConfig, engine, state: dict[str, torch.Tensor] | None, config, tokenizer,
                 log: MetricsLog, summary: dict[str, Any], workdir: Path,
                 config_yaml: str) -> tuple[Path, str, str]:
    model_dir, training = save_model_dir(_exportable_model(engine, state, config), tokenizer, log, workdir)
    plot_loss_curve(log.rows, training / "loss_curve.png",
                    title=f"{cfg.stage}: {summary['params'] / 1e6:.1f}M params, {summary['tokens']:,} tokens")
    report = render_report(summary, log.rows, config_yaml, image="loss_curve.png")
    uri = finish_model_dir(model_dir, report, config_yaml, summary, cfg.output.uri, {
        "stage": cfg.stage, "params": summary["params"], "steps": summary["steps"], "tokens": summary["tokens"],
        "final_loss": summary["final_loss"], "final_eval_loss": summary["final_eval_loss"]})
    return model_dir, uri, report
