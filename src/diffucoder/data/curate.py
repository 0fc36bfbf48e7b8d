"""``run_curate``: source code in, a published token-shard artifact out.

    from diffucoder.config import load_config
    from diffucoder.data import CurateConfig, run_curate
    cfg = load_config(CurateConfig, "configs/tiny-cpu/curate.yaml")
    result = run_curate(cfg, "file:///abs/runs/demo/curated")
    result.uri, result.metrics["docs_kept"], result.report_md   # report.md on local disk

Three passes over the inputs (they are re-read rather than held in memory):
1. read -> filters -> decontamination -> exact dedup -> near dedup (``select``);
2. train the BPE on a sample of the kept documents (``train_bpe`` only);
3. tokenize the kept documents and pack train/validation shards (``pack``).
Everything is built in a work directory and published through the store at the very
end, so a failure (missing input, nothing left after filtering, ...) publishes nothing.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffucoder.config import to_dict
from diffucoder.data import report
from diffucoder.data.analyze import default_workers
from diffucoder.data.config import CurateConfig
from diffucoder.data.decontam import build_index
from diffucoder.data.pack import build_tokenizer, pack_corpus, train_tokenizer
from diffucoder.data.remote import localize_inputs
from diffucoder.data.select import Selection, select_documents
from diffucoder.data.shards import FORMAT, VERSION
from diffucoder.data.trove import missing_tasks, parse_ranks
from diffucoder.data.trove import run_stages as run_trove_stages
from diffucoder.data.trove import run_task as run_trove_task
from diffucoder.data.trove_select import TroveSelection
from diffucoder.data.trove_store import StoreWorkdir, is_store_uri
from diffucoder.errors import DiffucoderError
from diffucoder.store import resolve

REPORT_FILES = ("report.md", "stats.json", report.LENGTH_PLOT, report.REMOVALS_PLOT)


@dataclass
class CurateResult:
    uri: str                          # the published artifact
    stats: dict[str, Any]             # everything in stats.json
    metrics: dict[str, float]         # flat numbers for KFP Metrics
    report_md: Path                   # local copies, kept after the run
    stats_json: Path
    plots: list[Path] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)   # the manifest's metadata


def run_curate(cfg: CurateConfig, output_uri: str, workdir: str | None = None,
               progress: bool = True, run_stages: bool = True) -> CurateResult:
    """Curate ``cfg.input.paths`` and publish the artifact at ``output_uri`` (a store URI).

    ``run_stages=False`` (datatrove engine, with ``workdir``): the stages have already run
    task by task (``run_curate_task``); only add up, tokenize, pack and publish. ``workdir``
    is then the tasks' shared directory, or their work directory in the store (``s3://`` or
    ``file://``, ``trove_store``), from which only what publishing reads is downloaded."""
    cfg.validate()
    if not run_stages and (cfg.engine != "datatrove" or workdir is None):
        raise DiffucoderError("publishing stages run task by task needs engine=datatrove and "
                              "the --workdir the tasks used")
    store, name = resolve(output_uri)       # a bad output URI fails before any work
    store_work = None
    if not run_stages and is_store_uri(workdir):
        store_work, workdir = StoreWorkdir(workdir), None
    own_work = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="diffucoder-curate-")).absolute()
    artifact = work / "artifact"
    shutil.rmtree(artifact, ignore_errors=True)   # debris of an earlier, failed run
    artifact.mkdir(parents=True)
    ok = False
    try:
        started = time.perf_counter()
        # publishing task slices reads their outputs, not the inputs
        roots = localize_inputs(cfg.input.paths, work / "inputs") if run_stages else \
            list(cfg.input.paths)
        workers = default_workers(cfg.workers)
        if cfg.engine == "builtin":
            sel = select_documents(cfg, roots, workers, progress)
            _check_not_empty(sel)
            t_select = time.perf_counter()
            tok, tok_stats = train_tokenizer(cfg, roots, sel, artifact, work, progress)
            t_tok = time.perf_counter()
            packed = pack_corpus(cfg, roots, sel, tok, tok_stats, artifact, progress)
        else:
            trove = work / "trove"
            if run_stages:
                shutil.rmtree(trove, ignore_errors=True)   # a whole run starts afresh
                build_index(cfg.decontam)                   # bad benchmark files fail here
                run_trove_stages(cfg, roots, trove, workers)
            elif store_work is not None:
                _check_stages_done(cfg, store_work.uri, store_work.missing(cfg, workers))
                shutil.rmtree(trove, ignore_errors=True)
                store_work.fetch("publish", range(0), trove)
            else:
                _check_stages_done(cfg, trove, missing_tasks(cfg, trove, workers))
            sel = TroveSelection.load(cfg, trove)
            _check_not_empty(sel)
            t_select = time.perf_counter()
            tok, tok_stats = build_tokenizer(cfg, sel.bpe_sample(), artifact, work, progress)
            t_tok = time.perf_counter()
            packed = sel.pack(tok, tok_stats, artifact, progress)
        t_pack = time.perf_counter()
        stats = _stats(cfg, store.uri(name), roots, sel, tok_stats, packed, workers)
        stats["timings"] = {"select_s": t_select - started, "tokenizer_s": t_tok - t_select,
                            "pack_s": t_pack - t_tok}
        if cfg.report.plots:
            stats["plots"] = report.write_plots(stats, sel.doc_bytes(), sel.kept_mask(),
                                                packed.kept_tokens, artifact)
        stats["timings"]["total_s"] = time.perf_counter() - started
        mb = stats["read"]["bytes"] / 1e6
        stats["throughput"] = {"workers": workers, "mb_per_s": mb / stats["timings"]["total_s"],
                               "mb_per_s_per_core": mb / stats["timings"]["total_s"] / workers}
        _write_json(artifact / "stats.json", stats)
        (artifact / "report.md").write_text(report.render_markdown(stats))
        metadata = _metadata(stats)
        store.put_artifact(name, artifact, metadata=metadata)
        result = _keep_report(work, artifact, stats, store.uri(name), metadata)
        ok = True
        return result
    finally:
        if own_work:
            for sub in ("artifact", "inputs", "scratch", "trove") if ok else ("",):
                shutil.rmtree(work / sub if sub else work, ignore_errors=True)


def run_curate_task(cfg: CurateConfig, workdir: str, stage: str, ranks: int | str | range) -> str:
    """Run tasks ``ranks`` (a rank, ``"a:b"`` or a range) of one datatrove stage: one pod's slice
    of the run. ``workdir`` is a directory every slice shares, or a work directory in the store
    (``s3://...`` / ``file://...``: each slice downloads what it reads and publishes what it
    wrote, ``trove_store``). Stages must run in order (``trove.stage_plan``); then
    ``run_curate(..., workdir, run_stages=False)`` publishes. What happened, for the log.
    Workers: ``workers``, else ``spread.workers_per_pod`` (a pod's CPUs, not its node's)."""
    cfg.validate()
    if cfg.engine != "datatrove":
        raise DiffucoderError("'engine': task slices need engine=datatrove")
    _check_fixed_tasks(cfg)
    ranks = parse_ranks(ranks)
    workers = cfg.workers or cfg.spread.workers_per_pod
    if is_store_uri(workdir):
        scratch = Path(tempfile.mkdtemp(prefix="diffucoder-slice-"))
        try:
            roots = localize_inputs(cfg.input.paths, scratch / "inputs") if stage == "select" else []
            return StoreWorkdir(workdir).run_slice(cfg, roots, stage, ranks, scratch, workers)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    work = Path(workdir).absolute()
    # only the select stage reads the inputs; the others read what earlier stages wrote
    roots = localize_inputs(cfg.input.paths, work / "inputs") if stage == "select" else []
    run_trove_task(cfg, roots, work / "trove", stage, ranks, workers)
    which = f"task {ranks.start}" if len(ranks) == 1 else f"tasks {ranks.start}..{ranks.stop - 1}"
    return f"finished {which} of stage {stage} in {work}"


def _check_fixed_tasks(cfg: CurateConfig) -> None:
    if cfg.tasks == 0:
        raise DiffucoderError("'tasks': give a fixed number of tasks when stages run task by "
                              "task (0 means one per worker, which differs between machines)")


def _check_stages_done(cfg: CurateConfig, where, missing: dict[str, list[int]]) -> None:
    _check_fixed_tasks(cfg)
    if missing:
        listed = "; ".join(f"{stage}: ranks {ranks}" for stage, ranks in missing.items())
        raise DiffucoderError(f"curation tasks have not all finished in {where} ({listed}); "
                              "run them first (diffucoder curate --stage NAME --task-rank I)")


def _check_not_empty(sel: Selection) -> None:
    if sel.read_documents == 0:
        raise DiffucoderError(
            "no document was read from the inputs: check input.paths and languages "
            f"(skipped: {dict(sel.skips) or 'nothing'})")
    if sel.kept_documents == 0:
        raise DiffucoderError(
            f"all {sel.read_documents} documents were removed (filters {dict(sel.removed)}); "
            "nothing to publish. Loosen the filters or give more input")


def _stats(cfg: CurateConfig, uri: str, roots: list[Path] | list[str], sel: Selection,
           tok_stats: dict[str, Any], packed, workers: int) -> dict[str, Any]:
    return {
        "output_uri": uri, "inputs": [str(r) for r in roots], "config": to_dict(cfg),
        "engine": cfg.engine, "read": sel.read_stats(), "removed": sel.removed_by_stage("count"),
        "removed_bytes": sel.removed_by_stage("bytes"),
        "kept": {"documents": sel.kept_documents, "bytes": sel.kept_bytes},
        "near_dedup": {**sel.near_stats(cfg.dedup), "examples": packed.examples},
        "decontam": sel.decontam_stats(cfg.decontam, cfg.report.max_decontam_hits),
        "tokenizer": tok_stats, "pack": packed.summary,
        "throughput": {"workers": workers, "mb_per_s": 0.0, "mb_per_s_per_core": 0.0},
    }


def _metadata(stats: dict[str, Any]) -> dict[str, Any]:
    pack, tok = stats["pack"], stats["tokenizer"]
    return {"kind": "token-shards", "format": FORMAT, "version": VERSION,
            "seq_len": pack["seq_len"], "dtype": pack["dtype"], "vocab_size": tok["vocab_size"],
            "special_tokens": tok["special_tokens"], "tokenizer_id": tok["id"],
            "tokenizer_dir": "tokenizer", "train_rows": pack["train"]["rows"],
            "val_rows": pack["val"]["rows"], "train_tokens": pack["train"]["tokens"],
            "val_tokens": pack["val"]["tokens"], "metrics": flat_metrics(stats)}


def flat_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """The numbers worth charting, flat (KFP ``Metrics`` take name -> number)."""
    out = {"docs_read": stats["read"]["documents"], "bytes_read": stats["read"]["bytes"],
           "docs_kept": stats["kept"]["documents"], "bytes_kept": stats["kept"]["bytes"],
           "near_dup_clusters": stats["near_dedup"].get("clusters", 0),
           "decontam_hits": stats["decontam"].get("hit_count", 0),
           "vocab_size": stats["tokenizer"]["vocab_size"],
           "train_rows": stats["pack"]["train"]["rows"], "val_rows": stats["pack"]["val"]["rows"],
           "train_tokens": stats["pack"]["train"]["tokens"],
           "val_tokens": stats["pack"]["val"]["tokens"]}
    for reason, n in stats["read"]["bad_input"].items():
        out[f"skipped_{reason}"] = n
    for stage in ("filter", "decontam", "dedup"):
        for reason, n in stats["removed"][stage].items():
            out[f"removed_{reason}"] = n
    if "timings" in stats and "total_s" in stats["timings"]:
        out["seconds_total"] = round(stats["timings"]["total_s"], 3)
    return {k: float(v) for k, v in out.items()}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def _keep_report(work: Path, artifact: Path, stats: dict[str, Any], uri: str,
                 metadata: dict[str, Any]) -> CurateResult:
    keep = work / "report"
    keep.mkdir(exist_ok=True)
    for fname in REPORT_FILES:
        if (artifact / fname).is_file():
            shutil.copy2(artifact / fname, keep / fname)
    plots = [keep / p for p in stats.get("plots", [])]
    return CurateResult(uri=uri, stats=stats, metrics=flat_metrics(stats),
                        report_md=keep / "report.md", stats_json=keep / "stats.json",
                        plots=plots, metadata=metadata)
