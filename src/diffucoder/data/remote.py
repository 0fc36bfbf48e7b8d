"""Turn ``input.paths`` entries into local paths; fetch ``s3://`` inputs first.

    roots = localize_inputs(["<python-stdlib>", "s3://corpora/stack-v2/py", "/data/x.jsonl"],
                            download_dir=Path("work/inputs"))

An ``s3://`` input is either an artifact of the store (downloaded with its checksums
verified) or a raw prefix of objects (e.g. JSONL/Parquet files uploaded with ``mc cp``),
read with the store's S3 client and the same environment (``DIFFUCODER_S3_ENDPOINT``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; see ``diffucoder.store.s3_config``).
A missing input is a ``DiffucoderError`` naming the ``input.paths`` entry.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from diffucoder.data.config import PYTHON_STDLIB
from diffucoder.errors import DiffucoderError
from diffucoder.store import StoreError, resolve
from diffucoder.store.s3 import S3Backend


def python_stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def localize_inputs(paths: list[str], download_dir: Path) -> list[Path]:
    """Local files/directories for every input, in order."""
    roots = []
    for i, raw in enumerate(paths):
        key = f"input.paths[{i}]"
        if raw == PYTHON_STDLIB:
            local = python_stdlib()
        elif raw.startswith("s3://"):
            local = fetch_s3_input(raw, download_dir / f"input-{i}", key)
        elif raw.startswith("file://"):
            local = Path(unquote(urlsplit(raw).path))
        else:
            local = Path(raw).expanduser()
        if not local.exists():
            raise DiffucoderError(f"'{key}': {raw} does not exist")
        roots.append(local.absolute())
    return roots


def fetch_s3_input(uri: str, dest: Path, key_name: str = "input") -> Path:
    """Download a store artifact or a raw S3 prefix/object under ``dest``; its local path."""
    try:
        store, name = resolve(uri)
    except StoreError:  # not an artifact name (e.g. a bare bucket): read raw objects below
        store = None
    # errors talking to the server (endpoint, credentials) propagate: they explain themselves
    if store is not None and store.has_artifact(name):
        store.get_artifact(name, dest / name)
        return dest / name
    return _fetch_raw_objects(uri, dest, key_name)


def _fetch_raw_objects(uri: str, dest: Path, key_name: str) -> Path:
    bucket, _, key = uri[len("s3://"):].partition("/")
    key = key.strip("/")
    backend = S3Backend(bucket)
    objects = [o for o in backend.list(key) if not o.key.endswith("/")]
    exact = [o for o in objects if o.key == key]
    if exact:  # one object: keep its file name (the extension says how to read it)
        target = dest / PurePosixPath(key).name
        dest.mkdir(parents=True, exist_ok=True)
        backend.download(key, target)
        return target
    under = [o for o in objects if not key or o.key.startswith(key + "/")]
    if not under:
        raise DiffucoderError(f"'{key_name}': {uri} is neither a store artifact nor a prefix "
                              "holding any object")
    root = dest / (PurePosixPath(key).name or bucket)
    for obj in under:
        rel = obj.key[len(key) + 1:] if key else obj.key
        parts = PurePosixPath(rel).parts
        if not parts or any(p in ("", ".", "..") for p in parts):
            continue  # a key that would escape the download directory
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        backend.download(obj.key, target)
    return root
