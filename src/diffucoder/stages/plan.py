"""Where a run starts: every stage, or from an existing model (skip pretraining, or SFT too).

    check_start("rl", "s3://models/diffucoder-7b-instruct")   # errors name the parameter
    trains("pretrain", "rl")    # False: the step passes the start model on
    out = passthrough_model("s3://models/diffucoder-7b-instruct", "pretrain", start_stage="rl")

``start_stage`` is the first stage that trains and ``start_model`` the model it starts from:

- ``curate`` (default): every stage runs; ``start_model``, when set, is what pre-training
  adapts (an AR Qwen2.5-Coder checkpoint, as in the paper), i.e. ``model.init_from``;
- ``sft``: curation and pre-training are skipped; SFT tunes ``start_model``;
- ``rl``: SFT only publishes the task suite; coupled-GRPO improves ``start_model`` (e.g. a
  released instruct model).

A skipped step still runs (in seconds): it checks the model is a published model artifact and
passes a reference on, so the DAG's wiring never changes. Upload a released checkpoint first
with ``diffucoder store put DIR s3://bucket/models/<name>``.
"""
from __future__ import annotations

from diffucoder.errors import DiffucoderError
from diffucoder.stage_io import StageOutput
from diffucoder.stages.registry import NAMES, START_STAGES
from diffucoder.store import resolve


def check_start(start_stage: str, start_model: str) -> None:
    if start_stage not in START_STAGES:
        raise DiffucoderError(f"start_stage: must be one of {list(START_STAGES)}, got {start_stage!r}")
    if start_stage != "curate" and not start_model:
        raise DiffucoderError(f"start_model: required when start_stage is {start_stage!r} (the model that "
                              "stage starts from, a store URI such as s3://bucket/models/instruct)")


def trains(stage: str, start_stage: str) -> bool:
    """Whether ``stage`` does its own work in a run that starts at ``start_stage``."""
    if stage not in NAMES:
        raise DiffucoderError(f"stage {stage!r}: not one of {list(NAMES)}")
    check_start(start_stage, "-")
    return NAMES.index(stage) >= NAMES.index(start_stage)


def skipped_output(stage: str, start_stage: str) -> StageOutput:
    """What a skipped step that has no model to pass on (curate) reports."""
    return StageOutput(uri="", metadata={"kind": "skipped", "stage": stage, "start_stage": start_stage},
                       report_md=f"# {stage}: skipped\n\nThe run starts at `{start_stage}` (pipeline parameter "
                                 "`start_stage`), so this step did no work.\n")


def passthrough_model(model_uri: str, stage: str, start_stage: str, why: str = "") -> StageOutput:
    """A reference to an existing model artifact, checked: what a skipped training step outputs.
    ``why`` says why it was skipped (default: the run starts later)."""
    if not model_uri:
        raise DiffucoderError(f"{stage}: skipped (start_stage={start_stage!r}) but no start_model was given")
    store, name = resolve(model_uri)
    if not store.has_artifact(name):
        raise DiffucoderError(f"start_model {model_uri!r}: no published artifact there (upload a model "
                              "directory with `diffucoder store put DIR URI`)")
    files = set(store.read_manifest(name).files)
    if "config.json" not in files or not any(f.endswith(".safetensors") for f in files):
        raise DiffucoderError(f"start_model {model_uri!r}: not a model (needs config.json and *.safetensors; "
                              f"has {sorted(files)[:8]})")
    why = why or f"The run starts at `{start_stage}` (pipeline parameter `start_stage`)"
    report = f"# {stage}: skipped\n\n{why}; this step passes the model on unchanged:\n\n`{store.uri(name)}`\n"
    return StageOutput(uri=store.uri(name), report_md=report,
                       metadata={"kind": "model", "stage": stage, "imported": True, "start_stage": start_stage})
