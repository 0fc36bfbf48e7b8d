"""Curation of a code pre-training corpus: read, filter, dedup, decontaminate, tokenize, pack.

    from diffucoder.config import load_config
    from diffucoder.data import CurateConfig, TokenShards, run_curate

    cfg = load_config(CurateConfig, "configs/tiny-cpu/curate.yaml", ["pack.seq_len=256"])
    result = run_curate(cfg, "file:///abs/runs/demo/curated")   # publishes through the store
    print(result.report_md, result.metrics["docs_kept"])

    shards = TokenShards.open(result.uri)                         # the trainer's side
    shards.train[0], shards.seq_len, shards.mask_id

Modules: ``config`` (the recipe), ``sources`` (reading), ``filters``, ``dedup``, ``trove``
(the datatrove engine: stages, blocks, task slices),
``decontam``, ``tokenizer``, ``shards`` (format + reader), ``select``/``pack``
(the passes), ``curate`` (``run_curate``), ``report``, ``cli`` (``diffucoder curate``).
Names are imported lazily, so ``TokenShards`` does not pull in datasketch or matplotlib.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "CurateConfig": "diffucoder.data.config",
    "run_curate": "diffucoder.data.curate",
    "CurateResult": "diffucoder.data.curate",
    "TokenShards": "diffucoder.data.shards",
    "TokenSplit": "diffucoder.data.shards",
    "SPECIAL_TOKENS": "diffucoder.data.tokenizer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffucoder.data' has no attribute {name!r}")
