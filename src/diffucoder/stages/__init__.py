"""Stage entry points shared by the kfp components and the CLI.

Each ``run_<stage>(...)`` loads the preset's recipe with overrides, runs the library
function, publishes to the artifact store and returns a ``StageOutput``. Nothing here
imports kfp; the components in ``components/<stage>/`` are thin wrappers.
"""
from __future__ import annotations


def stage_uri(store_root: str, run_name: str, stage: str) -> str:
    """Where a run's stage output lives in the store: ``<root>/runs/<run>/<stage>``."""
    from diffucoder.errors import DiffucoderError
    if not store_root:
        raise DiffucoderError("store_root: empty; give file:///abs/dir or s3://bucket/prefix")
    if not run_name or "/" in run_name:
        raise DiffucoderError(f"run_name: invalid {run_name!r}")
    return f"{store_root.rstrip('/')}/runs/{run_name}/{stage}"


def recipe_wiring(stage: str, *, store_root: str, run_name: str, data_uri: str, init_from: str = "",
                  checkpoint_dir: str = "") -> list[str]:
    """The recipe overrides a training stage's run needs, wherever it runs (this process, torchrun
    here, or a cluster job): its input, where it publishes, where it checkpoints.

    ``checkpoint_dir`` (e.g. a shared PVC's mount) keeps the resumable checkpoints on that volume
    instead of in the store.
    """
    from diffucoder.config import quote_value
    from diffucoder.errors import DiffucoderError
    if not data_uri:
        raise DiffucoderError(f"{stage}: data_uri is empty; pass the previous stage's output")
    checkpoints = stage_uri(store_root, run_name, f"{stage}-checkpoints")
    if checkpoint_dir:
        if not checkpoint_dir.startswith("/"):
            raise DiffucoderError(f"checkpoint_dir {checkpoint_dir!r}: must be an absolute path")
        checkpoints = f"file://{checkpoint_dir.rstrip('/')}/{run_name}/{stage}-checkpoints"
    wiring = [f"data.uri={quote_value(data_uri)}",
              f"output.uri={quote_value(stage_uri(store_root, run_name, stage))}",
              f"checkpoint.uri={quote_value(checkpoints)}"]
    if init_from:
        wiring.append(f"model.init_from={quote_value(init_from)}")
    return wiring
