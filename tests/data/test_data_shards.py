import json

import numpy as np
import pytest

from diffucoder.data.shards import (INDEX_FILE, ShardWriter, TokenShards, token_dtype,
                                    write_index)
from diffucoder.errors import DiffucoderError
from diffucoder.store import open_store

SPECIAL = {"eos": 0, "pad": 0, "mask": 1, "dlm_pad": 2}


def build(root, docs_by_split, seq_len=4, shard_tokens=8):
    splits = {}
    for name, docs in docs_by_split.items():
        writer = ShardWriter(root / name, seq_len, np.dtype(np.uint16), shard_tokens, eos_id=0)
        for doc in docs:
            writer.add_document(doc)
        splits[name] = writer.close()
    write_index(root, seq_len, np.dtype(np.uint16), 100, SPECIAL, "test-tok", splits)
    return splits


def test_documents_joined_with_eos_in_fixed_rows(tmp_path):
    docs = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14], [15]]
    splits = build(tmp_path, {"train": docs, "val": [[20, 21, 22]]})
    stream = [5, 6, 7, 0, 8, 9, 0, 10, 11, 12, 13, 14, 0, 15, 0]      # 15 tokens
    train = splits["train"]
    assert train["rows"] == 3 and train["dropped_tail_tokens"] == 3
    assert [s["rows"] for s in train["shards"]] == [2, 1]              # 8 tokens per shard
    assert train["document_tokens"] == 11 and train["documents"] == 4
    shards = TokenShards.open(tmp_path, verify=True)
    assert shards.seq_len == 4 and shards.vocab_size == 100 and shards.dtype == np.uint16
    assert (shards.eos_id, shards.mask_id, shards.dlm_pad_id) == (0, 1, 2)
    assert len(shards.train) == 3 and shards.train.num_tokens == 12
    assert shards.train[:].ravel().tolist() == stream[:12]
    assert shards.train[2].tolist() == stream[8:12] and shards.train[-1].tolist() == stream[8:12]
    assert shards.train[np.array([2, 0])].tolist() == [stream[8:12], stream[0:4]]
    assert len(shards.val) == 1 and shards.val[0].tolist() == [20, 21, 22, 0]
    with pytest.raises(IndexError):
        shards.train[3]


def test_dtype_follows_vocabulary():
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    assert token_dtype(152_064) == np.uint32


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / INDEX_FILE).write_text("{}"), "not a diffucoder-token-shards"),
    (lambda root: np.save(root / "train" / "shard-00000.npy", np.zeros((2, 5), np.uint16)),
     "expected (2, 4)"),
    (lambda root: (root / "val" / "shard-00000.npy").unlink(), "cannot read shard"),
])
def test_damaged_artifacts_are_explained(tmp_path, damage, message):
    build(tmp_path, {"train": [[1] * 20], "val": [[3] * 5]})
    damage(tmp_path)
    with pytest.raises(DiffucoderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TokenShards.open(tmp_path)


def test_verify_catches_changed_bytes(tmp_path):
    build(tmp_path, {"train": [[1] * 20], "val": [[3] * 5]})
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    shard = tmp_path / index["splits"]["train"]["shards"][0]["file"]
    np.save(shard, np.full((2, 4), 7, np.uint16))
    TokenShards.open(tmp_path)                          # shape is fine: opens without verify
    with pytest.raises(DiffucoderError, match="sha256"):
        TokenShards.open(tmp_path, verify=True)


def test_missing_directory_or_artifact(tmp_path):
    with pytest.raises(DiffucoderError, match="no such shard directory"):
        TokenShards.open(tmp_path / "absent")
    with pytest.raises(DiffucoderError, match="published artifact"):
        TokenShards.open(f"file://{tmp_path}/store/never-published", cache_dir=tmp_path / "c")


def test_a_cached_shard_changed_between_runs_is_fetched_again_not_used(tmp_path):
    """A run opens the curated artifact through the cache; between runs a cached shard is rewritten
    with other rows of the same shape (what a stray writer or a crash mid-copy leaves): the next
    open detects it against the artifact's manifest and reads the published rows."""
    build(tmp_path / "src", {"train": [list(range(3, 23))], "val": [[3] * 5]})
    open_store(tmp_path / "store").put_artifact("curated", tmp_path / "src")
    uri = (tmp_path / "store" / "curated").as_uri()
    first = TokenShards.open(uri, cache_dir=tmp_path / "cache")
    published = first.train[:].tolist()
    np.save(first.root / "train" / "shard-00000.npy", np.full((2, 4), 7, np.uint16))
    again = TokenShards.open(uri, cache_dir=tmp_path / "cache")
    assert again.root == first.root and again.train[:].tolist() == published
