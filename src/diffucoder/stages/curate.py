"""The curate stage as the DAG runs it: preset recipe + overrides -> published token shards.

    out = run_curate_stage(preset="tiny-cpu", input_uri="/usr/lib/python3.11",
                           store_root="file:///abs/runs/demo/store", run_name="r1")
    out.uri   # file:///abs/runs/demo/store/runs/r1/curated

Spread over pods (the pipeline compiled with ``--curate-pods``): a plan, every stage's slices
against the run's work directory in the store (``<root>/runs/<run>/curate-work``), then one
publishing step whose output is the same artifact:

    plan = curate_slice_plan("7b-gpu", "", [], "curate")     # {"select": ["0:16", ...], ...}
    run_curate_slice("7b-gpu", "", "s3://b", "r1", [], "select", "0:16")     # one pod
    out = run_curate_stage("7b-gpu", "", "s3://b", "r1", [], from_slices=True)
"""
from __future__ import annotations

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.data import CurateConfig, run_curate
from diffucoder.data.curate import run_curate_task
from diffucoder.data.trove import STAGES, spread_plan, stage_slices
from diffucoder.errors import DiffucoderError
from diffucoder.stage_io import StageOutput
from diffucoder.stages.plan import skipped_output, trains
from diffucoder.stages.registry import stage, stage_uri

STAGE = stage("curate")


WORK = "curate-work"   # the slices' shared work directory: <root>/runs/<run>/curate-work


def _config(preset: str, input_uri: str, overrides: list[str] | None) -> CurateConfig:
    """The preset's recipe with the overrides; ``input_uri`` (when given) is ``input.paths``."""
    values = {"input.paths": [input_uri]} if input_uri else {}
    return load_config(CurateConfig, recipe_path(preset, STAGE.recipe), list(overrides or []), values=values)


def run_curate_stage(preset: str, input_uri: str, store_root: str, run_name: str,
                     overrides: list[str] | None = None, progress: bool = True,
                     start_stage: str = "curate", from_slices: bool = False) -> StageOutput:
    """Curate, unless the run starts later (``diffucoder.stages.plan``): then report the skip.
    ``from_slices``: the stages have run as slices (``run_curate_slice``); only publish."""
    if not trains(STAGE.name, start_stage):
        return skipped_output(STAGE.name, start_stage)
    cfg = _config(preset, input_uri, overrides)
    work = stage_uri(store_root, run_name, WORK) if from_slices else None
    result = run_curate(cfg, stage_uri(store_root, run_name, STAGE.output), workdir=work, progress=progress,
                        run_stages=not from_slices)
    return StageOutput(uri=result.uri, metrics=result.metrics,
                       report_md=result.report_md.read_text(), metadata=result.metadata)


def curate_slice_plan(preset: str, input_uri: str, overrides: list[str] | None,
                      start_stage: str = "curate") -> dict[str, object]:
    """What the pipeline's curate loops iterate over, and their pods' sizes: for every stage of
    ``trove.STAGES``, ``<stage>`` (its pods' rank ranges, ``"a:b"``; ``["0:0"]`` when the recipe
    or the run skips the stage: a KFP loop must not be empty), ``<stage>_cpu`` and
    ``<stage>_memory`` (``trove.spread_plan``)."""
    cfg = _config(preset, input_uri, overrides)
    skip = not trains(STAGE.name, start_stage)   # a run from an existing model: no recipe demands
    if not skip and (cfg.engine != "datatrove" or not cfg.tasks):
        raise DiffucoderError(f"configs/{preset}/curate.yaml: spreading curation over pods needs engine=datatrove "
                              f"and a fixed number of tasks (got engine={cfg.engine}, tasks={cfg.tasks}); "
                              "set them (curate_overrides) or use the pipeline compiled without --curate-pods")
    slices = stage_slices(cfg, 1)
    sizes = {row.stage: row for row in spread_plan(cfg, 1)}
    out: dict[str, object] = {}
    for name in STAGES:
        row = sizes.get(name)
        out[name] = ["0:0"] if skip else slices[name]
        out[f"{name}_cpu"] = str(row.workers) if row else "1"
        out[f"{name}_memory"] = row.pod_memory if row else cfg.spread.memory_per_worker
    return out


def run_curate_slice(preset: str, input_uri: str, store_root: str, run_name: str,
                     overrides: list[str] | None, stage: str, ranks: str, start_stage: str = "curate") -> str:
    """One pod of a curate loop: tasks ``ranks`` (``"a:b"``) of ``stage`` against the run's work
    directory in the store. A run that starts after curation (``start_stage``; its plan gives
    every stage the empty slice ``"0:0"``) does nothing and reads nothing. What happened, for the log."""
    if not trains(STAGE.name, start_stage):
        return f"the run starts at {start_stage}: curation is skipped, slice {ranks} of {stage} has nothing to do"
    cfg = _config(preset, input_uri, overrides)
    return run_curate_task(cfg, stage_uri(store_root, run_name, WORK), stage, ranks)
