"""Where the served model comes from: a local model directory or a store artifact URI.

    model_dir, cleanup = resolve_model_dir("/mnt/models")                     # used in place
    model_dir, cleanup = resolve_model_dir("s3://diffucoder/runs/r1/sft")     # downloaded, verified
    model_dir, cleanup = resolve_model_dir("file:///data/store/runs/r1/sft")  # same, file:// store
    cleanup()                                                                 # removes a temp download
    check_model_location("/mnt/models")      # the cheap checks alone (no download): "dir"

A model directory holds ``config.json``, the weights and the tokenizer (what
``save_model`` + ``tokenizer.save_pretrained`` and the trainer's export write; KServe's
storage initializer puts it at ``/mnt/models``). A directory that is a store artifact
(``MANIFEST.json``, e.g. an artifact prefix copied by the storage initializer) and any
``file://`` or ``s3://`` URI are fetched through ``diffucoder.store``, every file sha256-checked.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from diffucoder.errors import DiffucoderError
from diffucoder.store.manifest import MANIFEST_NAME


def check_model_location(location: str) -> str:
    """Refuse a location that can never be served, without downloading or loading anything.

    Returns ``"dir"`` (a model directory), ``"artifact"`` (a store artifact tree on disk) or
    ``"uri"`` (a ``file://``/``s3://`` artifact, fetched when the model loads). The server
    calls this before it binds its port, so bad input is an error at once; what can only
    fail later (a download, the weights) fails the background load.
    """
    if not isinstance(location, str) or not location.strip():
        raise DiffucoderError("--model: give a model directory or a file:// / s3:// artifact URI")
    if "://" in location:
        if not location.startswith(("file://", "s3://")):
            raise DiffucoderError(f"--model {location}: only file:// and s3:// URIs (or a local path) are served")
        return "uri"
    path = Path(location).expanduser()
    if not path.exists():
        raise DiffucoderError(f"--model {location}: no such directory")
    if not path.is_dir():
        raise DiffucoderError(f"--model {location}: not a directory (a model directory holds config.json, "
                              "the weights and the tokenizer)")
    if (path / "config.json").is_file():
        return "dir"
    if (path / MANIFEST_NAME).is_file():
        return "artifact"
    raise DiffucoderError(f"--model {location}: not a model directory (no config.json) nor a store artifact "
                          f"(no {MANIFEST_NAME})")


def resolve_model_dir(location: str, cache_dir: str = "") -> tuple[Path, Callable[[], None]]:
    """(local model directory, cleanup) for a path or a ``file://``/``s3://`` artifact URI."""
    kind = check_model_location(location)
    if kind == "uri":
        return _fetch(location, cache_dir)
    path = Path(location).expanduser()
    if kind == "artifact":
        return _fetch(path.resolve().as_uri(), cache_dir)
    return path, lambda: None


def _fetch(uri: str, cache_dir: str) -> tuple[Path, Callable[[], None]]:
    from diffucoder.store import StoreError, resolve
    if cache_dir:
        root, temporary = Path(cache_dir), False
        root.mkdir(parents=True, exist_ok=True)
    else:
        root, temporary = Path(tempfile.mkdtemp(prefix="diffucoder-serve-")), True
    target = root / "model"
    try:
        store, name = resolve(uri)
        store.get_artifact(name, target, overwrite=True)
    except (StoreError, OSError) as err:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        raise DiffucoderError(f"--model {uri}: cannot fetch the model artifact: {err}") from err
    if not (target / "config.json").is_file():
        raise DiffucoderError(f"--model {uri}: the artifact holds no config.json; not a model")
    return target, (lambda: shutil.rmtree(root, ignore_errors=True)) if temporary else (lambda: None)
