"""The curate stage as the DAG runs it: preset recipe + overrides -> published token shards.

    out = run_curate_stage(preset="tiny-cpu", input_uri="/usr/lib/python3.11",
                           store_root="file:///abs/runs/demo/store", run_name="r1")
    out.uri   # file:///abs/runs/demo/store/runs/r1/curated
"""
from __future__ import annotations

from diffucoder.config import load_config, quote_value
from diffucoder.config.recipes import recipe_path
from diffucoder.stage_io import StageOutput
from diffucoder.stages import stage_uri


def run_curate_stage(preset: str, input_uri: str, store_root: str, run_name: str,
                     overrides: list[str] | None = None, progress: bool = True,
                     start_stage: str = "curate") -> StageOutput:
    """Curate, unless the run starts later (``diffucoder.stages.plan``): then report the skip."""
    from diffucoder.data import CurateConfig, run_curate
    from diffucoder.stages.plan import skipped_output, trains

    if not trains("curate", start_stage):
        return skipped_output("curate", start_stage)

    overrides = list(overrides or [])
    if input_uri:
        overrides.append(f"input.paths=[{quote_value(input_uri)}]")
    cfg = load_config(CurateConfig, recipe_path(preset, "curate"), overrides)
    result = run_curate(cfg, stage_uri(store_root, run_name, "curated"), progress=progress)
    return StageOutput(uri=result.uri, metrics=result.metrics,
                       report_md=result.report_md.read_text(), metadata=result.metadata)
