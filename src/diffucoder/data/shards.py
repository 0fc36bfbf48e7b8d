"""Packed token shards: the on-disk format, its writer and its reader (one piece of code).

    # reading (the trainer):
    shards = TokenShards.open("file:///abs/runs/demo/curated")   # or s3://..., or a local dir
    shards.seq_len, shards.vocab_size, shards.eos_id, shards.mask_id, shards.dlm_pad_id
    batch = shards.train[np.array([3, 17, 5])]                  # [3, seq_len] array
    len(shards.val), shards.load_tokenizer()

    # writing (the curation):
    writer = ShardWriter(out_dir / "train", seq_len=512, dtype=np.uint16, shard_tokens=1 << 24,
                         eos_id=0)
    writer.add_document(ids); summary = writer.close()

Layout of an artifact directory::

    shards.json                       format, seq_len, dtype, vocab, special ids, per split:
                                      rows, tokens, shard files with row counts and sha256
    train/shard-00000.npy ...         numpy .npy, shape [rows, seq_len], uint16 when the
    val/shard-00000.npy ...           vocabulary fits (< 65536 ids), else uint32
    tokenizer/                        Hugging Face tokenizer directory

Documents are concatenated, each followed by ``<|endoftext|>``, and cut into rows of
exactly ``seq_len`` tokens (a row may span documents); the tail shorter than one row
is dropped and counted. Rows are in corpus order: sample them randomly.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer

from diffucoder.errors import DiffucoderError
from diffucoder.store import resolve
from diffucoder.store.cache import cached_artifact

FORMAT = "diffucoder-token-shards"
VERSION = 1
INDEX_FILE = "shards.json"
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ShardWriter:
    """Packs documents into fixed-length rows and writes full shards as they fill."""

    def __init__(self, out_dir: Path, seq_len: int, dtype: np.dtype, shard_tokens: int,
                 eos_id: int):
        self.out_dir, self.seq_len, self.dtype, self.eos_id = out_dir, seq_len, dtype, eos_id
        self.rows_per_shard = max(1, shard_tokens // seq_len)
        self._parts: list[np.ndarray] = []
        self._buffered = 0
        self.shards: list[dict[str, Any]] = []
        self.documents = 0
        self.doc_tokens = 0   # tokens of documents, EOS separators excluded

    def add_document(self, ids) -> None:
        ids = np.asarray(ids, dtype=self.dtype)
        self._parts.append(ids)
        self._parts.append(np.array([self.eos_id], dtype=self.dtype))
        self._buffered += len(ids) + 1
        self.documents += 1
        self.doc_tokens += len(ids)
        while self._buffered >= self.rows_per_shard * self.seq_len:
            self._flush(self.rows_per_shard)

    def _flush(self, rows: int) -> None:
        stream = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        take = rows * self.seq_len
        block, rest = stream[:take].reshape(rows, self.seq_len), stream[take:]
        self._parts, self._buffered = ([rest] if len(rest) else []), len(rest)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{len(self.shards):05d}.npy"
        tmp = self.out_dir / f".{name}.tmp"
        try:
            with open(tmp, "wb") as handle:
                np.save(handle, block, allow_pickle=False)
            os.replace(tmp, self.out_dir / name)
        except OSError as err:   # numpy's short write carries no errno: say what happened
            tmp.unlink(missing_ok=True)
            free = shutil.disk_usage(self.out_dir).free
            raise DiffucoderError(f"{self.out_dir / name}: cannot write the shard: {err.strerror or err} "
                                  f"({free / 1e6:.1f} MB free there; no partial shard is kept)") from err
        except BaseException:
            tmp.unlink(missing_ok=True)   # never a half-written shard
            raise
        self.shards.append({"file": f"{self.out_dir.name}/{name}", "rows": rows,
                            "sha256": file_sha256(self.out_dir / name)})

    def close(self) -> dict[str, Any]:
        """Write the last whole rows; the split's summary for ``shards.json``."""
        rows = self._buffered // self.seq_len
        if rows:
            self._flush(rows)
        dropped, self._parts, self._buffered = self._buffered, [], 0
        total_rows = sum(s["rows"] for s in self.shards)
        return {"rows": total_rows, "tokens": total_rows * self.seq_len,
                "documents": self.documents, "document_tokens": self.doc_tokens,
                "dropped_tail_tokens": dropped, "shards": self.shards}


def write_index(out_dir: Path, seq_len: int, dtype: np.dtype, vocab_size: int,
                special_tokens: dict[str, int], tokenizer_id: str,
                splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    index = {"format": FORMAT, "version": VERSION, "seq_len": seq_len, "dtype": dtype.name,
             "vocab_size": vocab_size, "special_tokens": special_tokens,
             "tokenizer": {"id": tokenizer_id, "dir": "tokenizer"}, "splits": splits}
    tmp = out_dir / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, out_dir / INDEX_FILE)
    return index


class TokenSplit:
    """The rows of one split, memory-mapped across its shard files."""

    def __init__(self, arrays: list[np.ndarray], seq_len: int, dtype: np.dtype):
        self._arrays, self.seq_len, self.dtype = arrays, seq_len, dtype
        self._starts = np.cumsum([0] + [len(a) for a in arrays])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def num_tokens(self) -> int:
        return len(self) * self.seq_len

    def row(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        i %= max(1, len(self))
        shard = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._arrays[shard][i - self._starts[shard]]

    def __getitem__(self, index) -> np.ndarray:
        """A row (int), or rows (slice / index array) as a new [n, seq_len] array."""
        if isinstance(index, (int, np.integer)):
            return self.row(int(index))
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        out = np.empty((len(rows), self.seq_len), dtype=self.dtype)
        for k, i in enumerate(rows.tolist()):
            out[k] = self.row(i)
        return out


class TokenShards:
    """A curated artifact opened for reading: splits, shapes, special ids, tokenizer."""

    def __init__(self, root: Path, index: dict[str, Any], splits: dict[str, TokenSplit]):
        self.root, self.index = root, index
        self.seq_len: int = index["seq_len"]
        self.vocab_size: int = index["vocab_size"]
        self.dtype = np.dtype(index["dtype"])
        self.special_tokens: dict[str, int] = dict(index["special_tokens"])
        self.tokenizer_id: str = index["tokenizer"]["id"]
        self.train, self.val = splits["train"], splits["val"]

    eos_id = property(lambda self: self.special_tokens["eos"])
    mask_id = property(lambda self: self.special_tokens["mask"])
    dlm_pad_id = property(lambda self: self.special_tokens["dlm_pad"])

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / self.index["tokenizer"]["dir"]

    def load_tokenizer(self):
        return AutoTokenizer.from_pretrained(str(self.tokenizer_dir), local_files_only=True)

    @classmethod
    def open(cls, uri_or_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
             verify: bool = False) -> TokenShards:
        """Open a local artifact directory, or fetch a store URI into ``cache_dir`` first
        (default ``$DIFFUCODER_CACHE`` or ``~/.cache/diffucoder``; reused while the
        published version is the same and the copy still matches the artifact's manifest,
        see ``diffucoder.store.cache``; else fetched again). ``verify`` re-hashes every
        shard against ``shards.json``."""
        text = str(uri_or_dir)
        local = Path(text[len("file://"):] if text.startswith("file://") else text)
        if not (local / INDEX_FILE).is_file():
            local = _fetch(text, cache_dir)
        return cls._open_dir(local, verify)

    @classmethod
    def _open_dir(cls, root: Path, verify: bool) -> TokenShards:
        where = root / INDEX_FILE
        try:
            index = json.loads(where.read_text())
        except (OSError, ValueError) as err:
            raise DiffucoderError(f"{where}: not a readable shard index: {err}") from None
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise DiffucoderError(f"{where}: not a {FORMAT} v{VERSION} index "
                                  f"(format={index.get('format')!r}, "
                                  f"version={index.get('version')!r})")
        seq_len, dtype = index["seq_len"], np.dtype(index["dtype"])
        splits = {}
        for name in SPLITS:
            arrays = []
            for shard in index["splits"][name]["shards"]:
                path = root / shard["file"]
                if verify and file_sha256(path) != shard["sha256"]:
                    raise DiffucoderError(f"{path}: sha256 does not match {INDEX_FILE}")
                try:
                    arr = np.load(path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as err:
                    raise DiffucoderError(f"{path}: cannot read shard: {err}") from None
                if arr.shape != (shard["rows"], seq_len) or arr.dtype != dtype:
                    raise DiffucoderError(f"{path}: shape {arr.shape} {arr.dtype}, expected "
                                          f"({shard['rows']}, {seq_len}) {dtype}")
                arrays.append(arr)
            splits[name] = TokenSplit(arrays, seq_len, dtype)
        return cls(root, index, splits)


def _fetch(uri: str, cache_dir: str | os.PathLike | None) -> Path:
    if "://" not in uri and not Path(uri).exists():
        raise DiffucoderError(f"{uri}: no such shard directory or artifact")
    store, name = resolve(uri)
    if not store.has_artifact(name):
        raise DiffucoderError(f"{uri}: neither a shard directory ({INDEX_FILE}) nor a "
                              "published artifact")
    root = Path(cache_dir or os.environ.get("DIFFUCODER_CACHE")
                or Path.home() / ".cache" / "diffucoder") / "shards"
    return cached_artifact(store, name, root / hashlib.sha256(store.uri(name).encode()).hexdigest()[:16])
