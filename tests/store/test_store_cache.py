"""The checked cache of store artifacts: reused while it matches the manifest, refetched otherwise."""
from __future__ import annotations

import logging
import os
import random
import shutil

import pytest

from diffucoder.store import open_store
from diffucoder.store.cache import cached_artifact, cached_file

TREE = {"shards.json": b'{"rows": 3}', "train/shard-00000.npy": bytes(range(256)) * 40,
        "tokenizer/tokenizer.json": b'{"model": "bpe"}'}
CACHE_SEED = 22   # draws which file is damaged and where


def damage(path, kind: str, rng: random.Random) -> None:
    size = path.stat().st_size
    if kind == "truncated":
        os.truncate(path, rng.randrange(size))
    elif kind in ("bit flipped", "bit flipped, mtime set back"):
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[rng.randrange(size)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        if kind == "bit flipped, mtime set back":
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif kind == "deleted":
        path.unlink()
    elif kind == "stray file beside it":
        (path.parent / "added_tokens.json").write_text("{}")


@pytest.fixture
def published(tmp_path, write_tree):
    store = open_store(tmp_path / "store")
    store.put_artifact("curated", write_tree(tmp_path / "src", TREE))
    return store


def test_a_cached_copy_is_reused_without_reading_the_store_again(published, tmp_path, read_tree):
    first = cached_artifact(published, "curated", tmp_path / "cache")
    assert first.name == published.read_manifest("curated").version and read_tree(first) == TREE
    inodes = {p: p.stat().st_ino for p in first.rglob("*")}
    version = published.read_manifest("curated").version
    published.backend.delete([info.key for info in published.backend.list(f"curated/.versions/{version}/")])
    again = cached_artifact(published, "curated", tmp_path / "cache")   # the objects are gone: reused
    assert again == first and {p: p.stat().st_ino for p in again.rglob("*")} == inodes


@pytest.mark.parametrize("kind", ["truncated", "bit flipped", "bit flipped, mtime set back", "deleted",
                                  "stray file beside it"])
def test_a_damaged_cached_copy_is_detected_and_fetched_again(published, tmp_path, read_tree, caplog, kind):
    rng = random.Random(f"{CACHE_SEED}/{kind}")
    copy = cached_artifact(published, "curated", tmp_path / "cache")
    damage(copy / rng.choice(sorted(TREE)), kind, rng)
    assert read_tree(copy) != TREE
    with caplog.at_level(logging.WARNING, logger="diffucoder.store.cache"):
        again = cached_artifact(published, "curated", tmp_path / "cache")
    assert read_tree(again) == TREE
    assert "fetching it again" in caplog.text


def test_a_killed_fill_is_never_taken_and_its_debris_is_swept(published, tmp_path, read_tree):
    """A filler killed after the directory appeared but before its marker, with its staging and
    trash dirs left beside it: the next fill does not trust the copy and removes the debris."""
    copy = cached_artifact(published, "curated", tmp_path / "cache")
    marker = copy.parent / f".{copy.name}.verified"
    marker.unlink()
    (copy / "shards.json").write_bytes(b'{"rows": 4}')            # same size, not what was published
    debris = [copy.parent / f".{copy.name}.partial-0123456789ab", copy.parent / f".{copy.name}.old-ba9876543210"]
    for path in debris:
        shutil.copytree(copy, path)
    again = cached_artifact(published, "curated", tmp_path / "cache")
    assert read_tree(again) == TREE and marker.is_file()
    assert not any(path.exists() for path in debris)


def test_one_cached_file_is_checked_and_fetched_again(published, tmp_path, caplog):
    path = cached_file(published, "curated", "train/shard-00000.npy", tmp_path / "data")
    assert path.read_bytes() == TREE["train/shard-00000.npy"]
    with open(path, "r+b") as handle:   # a crash mid-write would leave this: a zeroed tail
        handle.seek(1000)
        handle.write(bytes(24))
    with caplog.at_level(logging.WARNING, logger="diffucoder.store.cache"):
        again = cached_file(published, "curated", "train/shard-00000.npy", tmp_path / "data")
    assert again == path and again.read_bytes() == TREE["train/shard-00000.npy"]
    assert "does not match its artifact's sha256" in caplog.text
    with pytest.raises(KeyError):
        cached_file(published, "curated", "no-such-file", tmp_path / "data")
