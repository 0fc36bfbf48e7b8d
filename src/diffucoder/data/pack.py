"""Passes 2 and 3 of the curation: the tokenizer, then the packed train/validation shards.

    tok, tok_stats = train_tokenizer(cfg, roots, selection, artifact_dir, work_dir)
    packed = pack_corpus(cfg, roots, selection, tok, tok_stats, artifact_dir)
    packed.summary["train"]["rows"], packed.examples   # near-duplicate pairs with true Jaccard

    # any source of kept documents (the datatrove engine's kept/ files):
    tok, tok_stats = build_tokenizer(cfg, sample_texts, artifact_dir, work_dir)
    summary, tokens = write_shards(cfg, [(text, is_val, n_bytes), ...], total_bytes, tok,
                                   tok_stats, artifact_dir)

Both passes re-read the inputs and take the documents pass 1 kept, checking each
one's content hash against pass 1 (inputs that change meanwhile are an error, not a
silently different corpus). The train/validation split is by document, from a
seeded hash of its content, so it does not depend on reading order.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from diffucoder.data.config import CurateConfig
from diffucoder.data.dedup import content_key
from diffucoder.data.select import Selection
from diffucoder.data.shards import ShardWriter, token_dtype, write_index
from diffucoder.data.shingles import jaccard, shingle_set
from diffucoder.data.sources import Document, iter_documents
from diffucoder.data.tokenizer import (DLM_PAD_TOKEN, batched, encode_texts, load_pretrained,
                                       save_tokenizer, tokenizer_id, train_bpe)
from diffucoder.errors import DiffucoderError

ENCODE_BATCH = 256


@dataclass
class Packed:
    summary: dict[str, Any]
    kept_tokens: np.ndarray
    examples: list[dict[str, Any]] = field(default_factory=list)


def _unit(key: bytes, seed: int, salt: bytes) -> float:
    """A uniform number in [0, 1) fixed by the document's content, the seed and a purpose."""
    digest = hashlib.sha256(salt + seed.to_bytes(8, "little") + key).digest()
    return int.from_bytes(digest[:8], "little") / 2.0 ** 64


def _documents(cfg: CurateConfig, roots: list[Path], sel: Selection) -> Iterator[Document]:
    """Every document of the inputs again, checked against pass 1."""
    for doc in iter_documents(roots, cfg.input, set(cfg.languages), Counter(),
                              cfg.filters.max_file_bytes):
        if doc.doc_id >= len(sel.keys) or \
                content_key(doc.text.encode("utf-8")) != sel.keys[doc.doc_id]:
            raise DiffucoderError(f"input changed while curating: {doc.path} is not the "
                                  "document read in the first pass; rerun on a stable input")
        yield doc


def bpe_sample_share(cfg: CurateConfig, kept_bytes: int) -> float:
    """Share of the kept documents the BPE trains on (``tokenizer.train_sample_bytes``)."""
    return min(1.0, cfg.tokenizer.train_sample_bytes / max(1, kept_bytes))


def in_bpe_sample(key: bytes, share: float, seed: int) -> bool:
    """Whether the document with content hash ``key`` is in the BPE sample (order-free)."""
    return _unit(key, seed, b"bpe") < share


def build_tokenizer(cfg: CurateConfig, sample: Iterator[str], artifact: Path, work: Path,
                    progress: bool = False):
    """Train the BPE on ``sample`` (``train_bpe``) or load the pretrained one; save it under
    ``artifact/tokenizer`` with the special tokens the trainer reads."""
    tc = cfg.tokenizer
    trained_on = 0
    if tc.kind == "train_bpe":
        def counted() -> Iterator[str]:
            nonlocal trained_on
            for text in sample:
                trained_on += len(text.encode("utf-8"))
                yield text
        tok = train_bpe(counted(), tc.vocab_size, tc.min_frequency, progress=progress)
        if trained_on == 0:
            raise DiffucoderError("'tokenizer.train_sample_bytes': the BPE sample is empty")
    else:
        tok = load_pretrained(tc.path, work / "scratch")
    special = save_tokenizer(tok, artifact / "tokenizer")
    stats = {"kind": tc.kind, "id": tokenizer_id(artifact / "tokenizer", tc.kind),
             "vocab_size": len(tok), "special_tokens": special,
             "tokens": {"eos": tok.eos_token, "pad": tok.pad_token, "mask": tok.mask_token,
                        "dlm_pad": DLM_PAD_TOKEN},
             "source": tc.path or "trained on this corpus", "trained_on_bytes": trained_on}
    return tok, stats


def train_tokenizer(cfg: CurateConfig, roots: list[Path], sel: Selection, artifact: Path,
                    work: Path, progress: bool = False):
    share = bpe_sample_share(cfg, sel.kept_bytes)
    sample = (doc.text for doc in _documents(cfg, roots, sel)
              if sel.is_kept(doc.doc_id) and in_bpe_sample(sel.keys[doc.doc_id], share,
                                                            cfg.pack.seed))
    return build_tokenizer(cfg, sample, artifact, work, progress)


def validation_set(keys: dict[Hashable, bytes], fraction: float, seed: int) -> set[Hashable]:
    """Which kept documents (by any id -> content hash) go to validation; at least one when
    ``fraction`` > 0 and there are two or more documents."""
    draws = {i: _unit(key, seed, b"val") for i, key in keys.items()}
    val = {i for i, u in draws.items() if u < fraction}
    if fraction > 0 and not val and len(keys) > 1:
        val = {min(draws, key=draws.get)}
    return val


def write_shards(cfg: CurateConfig, docs: Iterable[tuple[str, bool, int]], total_bytes: int,
                 tok, tok_stats: dict[str, Any], artifact: Path,
                 progress: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """Tokenize ``(text, is_validation, n_bytes)`` documents in order into the train/val
    shards and ``shards.json``; the summary and each document's token count."""
    pc = cfg.pack
    vocab = tok_stats["vocab_size"]
    dtype, eos = token_dtype(vocab), tok_stats["special_tokens"]["eos"]
    writers = {split: ShardWriter(artifact / split, pc.seq_len, dtype, pc.shard_tokens, eos)
               for split in ("train", "val")}
    kept_tokens: list[int] = []
    with tqdm(desc="curate: pack", total=total_bytes, unit="B", unit_scale=True,
              disable=not progress) as bar:
        for batch in batched(docs, ENCODE_BATCH):
            for (_text, is_val, n_bytes), ids in zip(
                    batch, encode_texts(tok, [d[0] for d in batch])):
                if max(ids, default=0) >= vocab:
                    raise DiffucoderError(f"tokenizer produced id {max(ids)} >= its "
                                          f"vocabulary size {vocab}")
                writers["val" if is_val else "train"].add_document(ids)
                kept_tokens.append(len(ids))
                bar.update(n_bytes)
    splits = {name: w.close() for name, w in writers.items()}
    _check_rows(splits, pc.val_fraction, pc.seq_len)
    write_index(artifact, pc.seq_len, dtype, vocab, tok_stats["special_tokens"], tok_stats["id"],
                splits)
    summary = {"seq_len": pc.seq_len, "dtype": dtype.name, "val_fraction": pc.val_fraction}
    for name, split in splits.items():
        summary[name] = {k: v for k, v in split.items() if k != "shards"}
        summary[name]["shard_count"] = len(split["shards"])
    return summary, np.asarray(kept_tokens, dtype=np.int64)


def pack_corpus(cfg: CurateConfig, roots: list[Path], sel: Selection, tok,
                tok_stats: dict[str, Any], artifact: Path, progress: bool = False) -> Packed:
    kept = {i: sel.keys[i] for i in range(len(sel.status)) if sel.is_kept(i)}
    val_ids = validation_set(kept, cfg.pack.val_fraction, cfg.pack.seed)
    pairs = sel.example_pairs(cfg.report.max_pairs)
    wanted = {i for a, b, _ in pairs for i in (a, b)}
    texts: dict[int, str] = {}

    def kept_docs() -> Iterator[tuple[str, bool, int]]:
        for doc in _documents(cfg, roots, sel):
            if doc.doc_id in wanted:
                texts[doc.doc_id] = doc.text
            if sel.is_kept(doc.doc_id):
                yield doc.text, doc.doc_id in val_ids, sel.sizes[doc.doc_id]

    summary, kept_tokens = write_shards(cfg, kept_docs(), sel.kept_bytes, tok, tok_stats,
                                        artifact, progress)
    examples = [pair_example(sel.paths[a], texts[a], sel.paths[b], texts[b], est,
                             cfg.dedup.shingle_size) for a, b, est in pairs]
    return Packed(summary, kept_tokens, examples)


def pair_example(kept_path: str, kept_text: str, dropped_path: str, dropped_text: str,
                 estimate: float, shingle_size: int) -> dict[str, Any]:
    """A near-duplicate pair for the report, with the exact Jaccard of its shingle sets."""
    return {"kept": kept_path, "dropped": dropped_path, "estimated_jaccard": estimate,
            "true_jaccard": jaccard(shingle_set(kept_text, shingle_size),
                                    shingle_set(dropped_text, shingle_size))}


def _check_rows(splits: dict[str, dict[str, Any]], val_fraction: float, seq_len: int) -> None:
    train, val = splits["train"], splits["val"]
    if train["rows"] == 0:
        raise DiffucoderError(
            f"the training split has {train['dropped_tail_tokens']} tokens, fewer than one "
            f"row of pack.seq_len={seq_len}: nothing to publish (give more input or lower "
            "pack.seq_len)")
    if val_fraction > 0 and val["rows"] == 0:
        raise DiffucoderError(
            f"the validation split has {val['dropped_tail_tokens']} tokens, fewer than one "
            f"row of pack.seq_len={seq_len} (raise pack.val_fraction, lower pack.seq_len, or "
            "set pack.val_fraction=0)")
