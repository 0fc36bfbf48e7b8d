"""What the datatrove stages decided, added up for the report, and the kept documents.

    sel = TroveSelection.load(cfg, work / "trove")   # after trove.run_stages / every task
    sel.kept_documents, sel.removed_by_stage("count"), sel.near_stats(cfg.dedup)
    tok, tok_stats = build_tokenizer(cfg, sel.bpe_sample(), artifact, work)
    packed = sel.pack(tok, tok_stats, artifact)      # the shards, as the builtin engine's

Kept apart from ``trove`` because it needs the tokenizer side (transformers), which the
stages' task processes must not import.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from diffucoder.data.config import CurateConfig
from diffucoder.data.decontam import BenchmarkIndex, build_index
from diffucoder.data.dedup import content_key, pick_examples
from diffucoder.data.pack import (Packed, bpe_sample_share, in_bpe_sample, pair_example,
                                  validation_set, write_shards)
from diffucoder.data.select import KEPT, NEAR_DUP, Selection
from diffucoder.data.trove import CodeMinhashSignature, minhash_config

CHECK_PAIRS = 256   # near-duplicate pairs whose exact Jaccard the report checks


def _rows(folder: Path) -> Iterator[dict[str, Any]]:
    """The records of every ``*.jsonl`` a stage wrote in ``folder``, in task order."""
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


class TroveSelection(Selection):
    """What the stages decided, added up like the builtin ``Selection`` (the report reads
    both the same way), plus the kept documents in ``kept/`` for the tokenizer and shards."""

    def __init__(self, cfg: CurateConfig, trove: Path, index: BenchmarkIndex | None):
        super().__init__(cfg, index)
        self.near = None   # the pairs live in trove/minhash: near_stats() is overridden
        self.cfg, self.trove = cfg, trove
        self.kept_keys: dict[int, bytes] = {}
        self.near_checks: dict[str, Any] = {}
        self.examples: list[dict[str, Any]] = []

    @classmethod
    def load(cls, cfg: CurateConfig, trove: Path) -> TroveSelection:
        sel = cls(cfg, trove, build_index(cfg.decontam))
        for path in sorted((trove / "reads").glob("*.json")):
            reads = json.loads(path.read_text())
            sel.skips.update(reads["skips"])
            sel.read_state["limit_reached"] = sel.read_state.get("limit_reached") or \
                reads["limit_reached"]
        near_rows = []
        for reason_dir in sorted((trove / "outcomes").glob("*")):
            for row in _rows(reason_dir):
                sel.tally(row["reason"], row["bytes"], row["path"])
                if "hit" in row:
                    sel.hits.append({"path": row["path"], **row["hit"]})
                if row["reason"] == NEAR_DUP:
                    near_rows.append(row)
        for i, row in enumerate(sel.kept_rows()):
            sel.tally(KEPT, row["metadata"]["bytes"], row["metadata"]["path"])
            sel.kept_keys[i] = content_key(row["text"].encode("utf-8"))
        sel._check_near(near_rows)
        return sel

    def kept_rows(self) -> Iterator[dict[str, Any]]:
        return _rows(self.trove / "kept")

    def _check_near(self, near_rows: list[dict[str, Any]]) -> None:
        """Exact Jaccard of up to ``CHECK_PAIRS`` (representative, dropped) pairs: datatrove
        drops every LSH candidate unchecked, so the report says how many were below the
        threshold; and the example pairs."""
        dd = self.cfg.dedup
        sizes = Counter(r["cluster"] for r in near_rows)
        checked = sorted(near_rows, key=lambda r: (r["cluster"], r["path"]))[:CHECK_PAIRS]
        wanted = {r["cluster"] for r in checked}
        reps = {}
        for row in self.kept_rows():
            cid = row["metadata"].get("minhash_cluster_id", -1)
            if cid in wanted:
                reps[cid] = (row["metadata"]["path"], row["text"])
        hasher = CodeMinhashSignature(str(self.trove / "scratch"), minhash_config(self.cfg),
                                      dd.num_perm)
        pairs, texts = [], {}
        for i, row in enumerate(r for r in checked if r["cluster"] in reps):
            kept_path, kept_text = reps[row["cluster"]]
            a, b = hasher.signature(kept_text), hasher.signature(row["text"])
            estimate = float(np.mean(a == b)) if a is not None and b is not None else 0.0
            texts[i] = (kept_path, kept_text, row["path"], row["text"])
            pairs.append((i, i, estimate))
        checks = [pair_example(*texts[i], est, dd.shingle_size) for i, _, est in pairs]
        below = sum(c["true_jaccard"] < dd.jaccard_threshold for c in checks)
        self.near_checks = {"clusters": len(sizes),
                            "largest_cluster": max(sizes.values()) + 1 if sizes else 0,
                            "checked_pairs": len(checks), "below_threshold": below}
        self.examples = [pair_example(*texts[i], est, dd.shingle_size)
                         for i, _, est in pick_examples(pairs, self.cfg.report.max_pairs)]

    def near_stats(self, dd) -> dict[str, Any]:
        if not dd.near:
            return {"enabled": False}
        mh = minhash_config(self.cfg)
        summary = self.trove / "minhash" / "clusters" / "summary.json"
        if dd.verify and summary.is_file():
            checked = json.loads(summary.read_text())
            self.near_checks.update(candidate_pairs=checked["candidate_pairs"],
                                    compared_pairs=checked["compared_pairs"])
        return {"enabled": True, "engine": "datatrove", "num_perm": dd.num_perm,
                "threshold": dd.jaccard_threshold, "shingle_size": dd.shingle_size,
                "bands": mh.num_buckets, "rows": mh.hashes_per_bucket,
                "pairs": self.removed[NEAR_DUP], **self.near_checks}

    def bpe_sample(self) -> Iterator[str]:
        share = bpe_sample_share(self.cfg, self.kept_bytes)
        for i, row in enumerate(self.kept_rows()):
            if in_bpe_sample(self.kept_keys[i], share, self.cfg.pack.seed):
                yield row["text"]

    def pack(self, tok, tok_stats: dict[str, Any], artifact: Path,
             progress: bool = False) -> Packed:
        val = validation_set(self.kept_keys, self.cfg.pack.val_fraction, self.cfg.pack.seed)
        docs = ((row["text"], i in val, row["metadata"]["bytes"])
                for i, row in enumerate(self.kept_rows()))
        summary, kept_tokens = write_shards(self.cfg, docs, self.kept_bytes, tok, tok_stats,
                                            artifact, progress)
        return Packed(summary, kept_tokens, self.examples)
