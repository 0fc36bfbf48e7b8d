"""The evaluate stage as the DAG runs it: a model (+ the task suite) -> pass@k artifact + gate value.

    out = run_evaluate_stage(preset="tiny-cpu", model_uri="file:///abs/store/runs/r1/sft",
                             store_root="file:///abs/store", run_name="r1",
                             tasks_uri="file:///abs/store/runs/r1/tasks", stage="evaluate-sft")
    out.uri                        # file:///abs/store/runs/r1/evaluate-sft
    out.metrics                    # {"synthetic_pass_at_1": ..., "pass_at_1": ..., ...}
    out.metadata["pass_at_1"]      # the gate value (pass@1 of the gate benchmark)

``tasks_uri`` (the SFT stage's task suite) becomes the path of a ``synthetic`` benchmark
that has none, so the held-out tasks are exactly the ones SFT held out. The report's
plots are inlined, since the Kubeflow UI shows the Markdown alone.
"""
from __future__ import annotations

import base64
import dataclasses
import tempfile
from pathlib import Path

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.stage_io import StageOutput
from diffucoder.evaluation import EvaluateConfig, evaluate
from diffucoder.stages.registry import stage, stage_uri

STAGE = stage("evaluate")


def inline_images(markdown: str, directory: Path) -> str:
    """Replace ``](name.png)`` links to files of ``directory`` with data URIs."""
    for png in sorted(directory.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        markdown = markdown.replace(f"]({png.name})", f"](data:image/png;base64,{data})")
    return markdown


def run_evaluate_stage(preset: str, model_uri: str, store_root: str, run_name: str, tasks_uri: str = "",
                       overrides: list[str] | None = None, stage: str = STAGE.output,
                       progress: bool = True) -> StageOutput:
    if not model_uri:
        raise DiffucoderError("model_uri: empty; pass the model to evaluate (the SFT or RL stage's output)")
    cfg = load_config(EvaluateConfig, recipe_path(preset, STAGE.recipe), list(overrides or []))
    if tasks_uri:
        cfg.benchmarks = [dataclasses.replace(b, path=tasks_uri) if b.name == "synthetic" and not b.path else b
                          for b in cfg.benchmarks]
    uri = stage_uri(store_root, run_name, stage)
    with tempfile.TemporaryDirectory(prefix="diffucoder-evaluate-") as tmp:
        result = evaluate(cfg, model_uri, tmp, output_uri=uri, progress=progress)
        report_md = inline_images(result.report_md, Path(tmp))
    return StageOutput(uri=result.uri, metrics=result.kfp_metrics, report_md=report_md,
                       metadata={"kind": "evaluation", "pass_at_1": result.pass_at_1,
                                 "gate_benchmark": result.gate_benchmark, "model_uri": model_uri})
