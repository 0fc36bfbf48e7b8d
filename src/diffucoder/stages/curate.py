"""The curate stage as the DAG runs it: preset recipe + overrides -> published token shards.

    out = run_curate_stage(preset="tiny-cpu", input_uri="/usr/lib/python3.11",
                           store_root="file:///abs/runs/demo/store", run_name="r1")
    out.uri   # file:///abs/runs/demo/store/runs/r1/curated
"""
from __future__ import annotations

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.data import CurateConfig, run_curate
from diffucoder.stage_io import StageOutput
from diffucoder.stages.plan import skipped_output, trains
from diffucoder.stages.registry import stage, stage_uri

STAGE = stage("curate")


def run_curate_stage(preset: str, input_uri: str, store_root: str, run_name: str,
                     overrides: list[str] | None = None, progress: bool = True,
                     start_stage: str = "curate") -> StageOutput:
    """Curate, unless the run starts later (``diffucoder.stages.plan``): then report the skip.
    ``input_uri`` (when given) is the recipe's ``input.paths``."""
    if not trains(STAGE.name, start_stage):
        return skipped_output(STAGE.name, start_stage)
    values = {"input.paths": [input_uri]} if input_uri else {}
    cfg = load_config(CurateConfig, recipe_path(preset, STAGE.recipe), list(overrides or []), values=values)
    result = run_curate(cfg, stage_uri(store_root, run_name, STAGE.output), progress=progress)
    return StageOutput(uri=result.uri, metrics=result.metrics,
                       report_md=result.report_md.read_text(), metadata=result.metadata)
