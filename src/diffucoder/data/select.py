"""Pass 1 of the curation: which documents are kept, and why the others are not.

    sel = select_documents(cfg, roots, workers=2, progress=False)
    sel.kept_documents, sel.is_kept(doc_id), sel.removed_by_stage("count")

Order of decisions for each document: quality filters, decontamination, exact
dedup, near dedup; a document is counted under the first that removes it. Only
per-document numbers are kept (size, content hash, outcome), never the text.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from diffucoder.data.analyze import Analysis, AnalysisPool, Analyzer, DocInfo
from diffucoder.data.config import CurateConfig, DecontamConfig, DedupConfig
from diffucoder.data.decontam import BenchmarkIndex, build_index
from diffucoder.data.dedup import ExactDedup, NearDuplicateIndex, pick_examples
from diffucoder.data.filters import FILTER_REASONS
from diffucoder.data.sources import iter_documents

KEPT = "kept"
DECONTAMINATED = "benchmark_overlap"
EXACT_DUP = "exact_duplicate"
NEAR_DUP = "near_duplicate"
BAD_INPUT = ("unreadable", "binary", "invalid_utf8", "malformed_record", "missing_text")


class Selection:
    def __init__(self, cfg: CurateConfig, index: BenchmarkIndex | None):
        self.index = index
        self.exact = ExactDedup() if cfg.dedup.exact else None
        dd = cfg.dedup
        self.near = NearDuplicateIndex(dd.jaccard_threshold, dd.num_perm, dd.seed) \
            if dd.near else None
        self.keys: list[bytes] = []
        self.status: list[str] = []
        self.sizes: list[int] = []
        self.paths: list[str] = []
        self.skips: Counter = Counter()
        self.removed: Counter = Counter()
        self.removed_bytes: Counter = Counter()
        self.hits: list[dict[str, Any]] = []
        self.read_state: dict[str, Any] = {}
        self.kept_documents = 0
        self.kept_bytes = 0

    def record(self, info: DocInfo, res: Analysis) -> None:
        assert info.doc_id == len(self.status), "documents must arrive in order"
        status = KEPT
        if res.reason:
            status = res.reason
        elif res.hit is not None:
            status = DECONTAMINATED
            self.hits.append({"path": info.path, **asdict(res.hit)})
        elif self.exact is not None and self.exact.check_and_add(info.doc_id, res.key) \
                is not None:
            status = EXACT_DUP
        elif self.near is not None and res.signature is not None and \
                self.near.check_and_add(info.doc_id, res.signature) is not None:
            status = NEAR_DUP
        self.keys.append(res.key)
        self.tally(status, res.n_bytes, info.path)

    def tally(self, status: str, n_bytes: int, path: str) -> None:
        """Count one document's outcome (``KEPT`` or the reason it was removed)."""
        self.status.append(status)
        self.sizes.append(n_bytes)
        self.paths.append(path)
        if status == KEPT:
            self.kept_documents += 1
            self.kept_bytes += n_bytes
        else:
            self.removed[status] += 1
            self.removed_bytes[status] += n_bytes

    @property
    def read_documents(self) -> int:
        return len(self.status) + self.skips["max_file_bytes"]

    def is_kept(self, doc_id: int) -> bool:
        return doc_id < len(self.status) and self.status[doc_id] == KEPT

    def doc_bytes(self) -> np.ndarray:
        return np.asarray(self.sizes, dtype=np.int64)

    def kept_mask(self) -> np.ndarray:
        return np.asarray([s == KEPT for s in self.status], dtype=bool)

    def read_stats(self) -> dict[str, Any]:
        skipped = {k: v for k, v in self.skips.items() if k not in BAD_INPUT
                   and k != "max_file_bytes" and v}
        return {"documents": self.read_documents, "bytes": int(sum(self.sizes)),
                "limit_reached": bool(self.read_state.get("limit_reached")),
                "skipped": skipped, "bad_input": {k: self.skips[k] for k in BAD_INPUT}}

    def removed_by_stage(self, kind: str) -> dict[str, dict[str, int]]:
        source = self.removed if kind == "count" else self.removed_bytes
        filters = {r: source[r] for r in FILTER_REASONS}
        if kind == "count":  # files too large to be worth reading count with the size filter
            filters["max_file_bytes"] += self.skips["max_file_bytes"]
        return {"filter": filters, "decontam": {DECONTAMINATED: source[DECONTAMINATED]},
                "dedup": {EXACT_DUP: source[EXACT_DUP], NEAR_DUP: source[NEAR_DUP]}}

    def near_stats(self, dd: DedupConfig) -> dict[str, Any]:
        if self.near is None:
            return {"enabled": False}
        sizes = self.near.cluster_sizes()
        return {"enabled": True, "num_perm": dd.num_perm, "threshold": dd.jaccard_threshold,
                "shingle_size": dd.shingle_size, "bands": self.near.lsh.b,
                "rows": self.near.lsh.r, "pairs": len(self.near.pairs),
                "clusters": len(sizes), "largest_cluster": sizes[0] if sizes else 0}

    def example_pairs(self, k: int) -> list[tuple[int, int, float]]:
        return pick_examples(self.near.pairs, k) if self.near is not None else []

    def decontam_stats(self, dc: DecontamConfig, max_hits: int) -> dict[str, Any]:
        if self.index is None:
            return {"enabled": False, "hit_count": 0}
        return {"enabled": True, "benchmarks": self.index.problems,
                "targets": len(self.index), "skipped_short_targets": self.index.skipped_short,
                "ngram": dc.ngram, "prompt_ngram": dc.prompt_ngram, "threshold": dc.threshold,
                "hit_count": len(self.hits), "hits": self.hits[:max_hits]}


def select_documents(cfg: CurateConfig, roots: list[Path], workers: int,
                     progress: bool) -> Selection:
    index = build_index(cfg.decontam)
    sel = Selection(cfg, index)
    docs = iter_documents(roots, cfg.input, set(cfg.languages), sel.skips,
                          cfg.filters.max_file_bytes, sel.read_state)
    with tqdm(desc="curate: select", unit="B", unit_scale=True, disable=not progress) as bar, \
            AnalysisPool(Analyzer(cfg, index), workers) as pool:
        for info, res in pool.stream(docs):
            sel.record(info, res)
            bar.update(res.n_bytes)
            bar.set_postfix(kept=sel.kept_documents, removed=len(sel.status) -
                            sel.kept_documents, refresh=False)
    return sel
