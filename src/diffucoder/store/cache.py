"""A local cache of store artifacts that is checked before it is trusted.

    store, name = resolve("file:///abs/store/runs/r1/curated")
    root = cached_artifact(store, name, Path("~/.cache/diffucoder/shards/ab12cd"))
    # -> <cache>/<version>: every file the manifest lists, nothing else, each as published
    path = cached_file(store, name, "sft-train.jsonl", Path("~/.cache/diffucoder/data") / name)
    # -> <cache>/<version>/sft-train.jsonl

A fetch goes through ``ArtifactStore.get_artifact`` / ``get_file`` (every byte sha256-checked,
the directory or file appears whole), then records what it wrote in a marker beside it
(``.<version>.verified``: each file's size, mtime, ctime and inode, as fetched). A later run
reuses the copy only when every file the manifest lists is there with the manifest's size, no
other file is, and each file's stat is the one recorded; a file whose stat changed (rewritten,
truncated, bit-flipped by a write, even with its mtime set back: that moves the ctime) is
re-hashed against the manifest's sha256. Anything that does not match is never used: the copy
is removed and fetched again (logged as a warning). Only bytes changed under the file system
(a failing disk) keep every stat; ``full=True`` re-hashes every file whatever its stat.

Fillers of one cache entry take an ``flock`` on ``.<version>.lock`` beside it, so two
processes (ranks of a node, jobs sharing a cache) never fetch it twice at once, and the
download staging (``.<version>.partial-*``) and trash (``.<version>.old-*``) a killed
filler left behind are removed by the next one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

from diffucoder.store.artifacts import ArtifactStore
from diffucoder.store.manifest import Manifest, hash_file

log = logging.getLogger(__name__)
MARKER = ".{}.verified"
LOCK = ".{}.lock"


def cached_artifact(store: ArtifactStore, name: str, root: Path, *, full: bool = False) -> Path:
    """``root/<version>`` holding the published version of ``name``, checked or (re)fetched."""
    manifest = store.read_manifest(name)
    dest = Path(root) / manifest.version
    with _locked(dest):
        if not _intact(dest, manifest.files, full):
            _discard(dest)
            store.get_artifact(name, dest, overwrite=True)
            _record(dest, manifest, manifest.files)
    return dest


def cached_file(store: ArtifactStore, name: str, relpath: str, root: Path, *, full: bool = False) -> Path:
    """``root/<version>/<relpath>``: one file of ``name``, checked or (re)fetched. A ``KeyError``
    names a file the artifact does not hold."""
    manifest = store.read_manifest(name)
    if relpath not in manifest.files:
        raise KeyError(relpath)
    dest = Path(root) / manifest.version
    files = {relpath: manifest.files[relpath]}
    target = dest / relpath
    with _locked(dest):
        for stale in target.parent.glob(f".{target.name}.partial-*"):   # a killed get_file's
            stale.unlink(missing_ok=True)
        if not _intact(dest, files, full, exact=False):
            target.unlink(missing_ok=True)
            store.get_file(name, relpath, target)
            _record(dest, manifest, files, merge=True)
    return target


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / LOCK.format(dest.name), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)   # released when the holder ends, however it ends
        try:
            _sweep(dest)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sweep(dest: Path) -> None:
    """Remove the staging and trash dirs a killed filler of ``dest`` left (we hold the lock)."""
    for prefix in (f".{dest.name}.partial-", f".{dest.name}.old-"):
        for path in dest.parent.glob(prefix + "*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _marker(dest: Path) -> Path:
    return dest.parent / MARKER.format(dest.name)


def _intact(dest: Path, files: dict[str, dict], full: bool, exact: bool = True) -> bool:
    """Whether ``dest`` holds ``files`` as published (and, when ``exact``, nothing else)."""
    if not dest.is_dir():
        return False
    try:
        recorded = json.loads(_marker(dest).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False   # never verified (an old cache, or a filler killed before the marker)
    if exact:
        present = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()}
        if present != set(files):
            log.warning("cached %s holds %s, its artifact's manifest lists %s: fetching it again", dest,
                        sorted(present - set(files))[:3] or "no", sorted(set(files) - present)[:3] or "no more")
            return False
    changed = False
    for relpath, entry in files.items():
        path = dest / relpath
        try:
            st = path.stat()
        except OSError as err:
            log.warning("cached %s is unreadable (%s): fetching it again", path, err.strerror)
            return False
        if st.st_size != entry["size"]:
            log.warning("cached %s is %d bytes, its artifact's manifest says %d: fetching it again",
                        path, st.st_size, entry["size"])
            return False
        if full or recorded.get(relpath) != _stat(st):
            if hash_file(path) != (entry["sha256"], entry["size"]):
                log.warning("cached %s does not match its artifact's sha256: fetching it again", path)
                return False
            recorded[relpath], changed = _stat(st), True
    if changed:
        _write_marker(dest, recorded)
    return True


def _record(dest: Path, manifest: Manifest, files: dict[str, dict], merge: bool = False) -> None:
    recorded = {}
    if merge:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            recorded = json.loads(_marker(dest).read_text())["files"]
    for relpath in files:
        recorded[relpath] = _stat((dest / relpath).stat())
    _write_marker(dest, recorded, manifest.version)


def _stat(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _write_marker(dest: Path, recorded: dict[str, list[int]], version: str | None = None) -> None:
    marker = _marker(dest)
    temp = marker.with_name(marker.name + ".tmp")
    temp.write_text(json.dumps({"version": version or dest.name, "files": recorded}, sort_keys=True))
    os.replace(temp, marker)


def _discard(dest: Path) -> None:
    _marker(dest).unlink(missing_ok=True)   # first: a half-removed copy is never taken as verified
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
