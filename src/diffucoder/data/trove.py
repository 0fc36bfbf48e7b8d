"""The curation on datatrove: code filters and decontamination as datatrove blocks, global dedup.

    from diffucoder.data.trove import run_stages, run_task, stage_plan
    stage_plan(cfg, workers=2)               # [("select", 2), ("exact", 1), ..., ("keep", 2)]
    run_stages(cfg, roots, work / "trove", workers=2)        # every stage, one machine
    run_task(cfg, roots, work / "trove", "select", 1, workers=1)     # one task, as a pod runs it
    run_task(cfg, roots, work / "trove", "select", range(0, 4), workers=2)  # a pod's 4 tasks
    stage_slices(cfg, workers=2)             # {"select": ["0:16", "16:32", ...], ...}: the pods
    # then diffucoder.data.trove_select.TroveSelection.load(cfg, work / "trove") adds up

Six stages, each a datatrove ``LocalPipelineExecutor`` that starts when the one before has
finished; their shared data lives under the trove directory (``<workdir>/trove``):

1. ``select`` (``tasks``): ``CodeReader`` (input files shared out by task; language chosen
   from the path before a file is read) -> ``CodeQualityFilter`` -> ``DecontaminationFilter``
   -> ``JsonlWriter(selected/)`` -> datatrove ``ExactDedupSignature``.
2. ``exact`` (1 task): datatrove ``ExactFindDedups``.
3. ``signatures`` (``tasks``): ``selected/<rank>`` -> ``ExactDedupFilter`` ->
   ``CodeMinhashSignature`` (datatrove's ``MinhashDedupSignature`` on code-token shingles,
   with the builtin engine's permutations).
4. ``buckets`` (one task per LSH band): datatrove ``MinhashDedupBuckets``.
5. ``clusters`` (1 task): ``VerifiedMinhashCluster`` (each candidate checked against the whole
   signatures; a file goes when it is close to an earlier kept one), or with
   ``dedup.verify=false`` datatrove's ``MinhashDedupCluster`` (union-find, unchecked).
6. ``keep`` (``tasks``): ``selected/<rank>`` -> ``ExactDedupFilter`` -> ``CodeMinhashFilter``
   (datatrove's ``MinhashDedupFilter``) -> ``JsonlWriter(kept/)``.

With one task the result is the builtin engine's, file for file (same filters, same
signatures, same bands, same rule); with more tasks the order in which files are met is
(task, position), so which member of a group of near-duplicates is kept may differ.

Near-duplicates are therefore found across the whole corpus, not per input part. Removed
documents go to ``outcomes/<reason>/`` (path, size, reason; benchmark hits; the text of
near-duplicates, for the report's exact-Jaccard check), and each reader task writes what
it skipped to ``reads/<rank>.json``; ``trove_select.TroveSelection`` adds it all up.
Every task logs to ``logs/<stage>/logs/``; the console shows only errors, a failed task's
exception is raised to the caller (not printed), and a log line the disk refused fails its
task, naming the log (never loguru's "Logging error" traceback). The task processes keep
their temp files in a directory of the run's (or slice's) own under TMPDIR
(``task_tempdir``), which the same run or slice clears when rerun: a SIGKILLed run's
multiprocessing ``pymp-*`` dirs do not stay behind.
This module imports nothing heavy (no transformers): every task process imports it.
The intermediate JSONL is not compressed: on one machine gzip (level 9 in datatrove's
writers) took a quarter of the CPU time of the stages.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHashLSH
from datatrove.data import Document, DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.io import DataFolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter,
                                                  ExactDedupSignature, ExactFindDedups)
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
                                              MinhashDedupCluster, MinhashDedupFilter,
                                              MinhashDedupSignature)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.readers.base import BaseReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.binaryio import read_tuples_from_file
from datatrove.utils.hashing import HashConfig
from datatrove.utils.logging import log_pipeline, logger, setup_default_logger
from datatrove.utils.stats import PipelineStats
from datatrove.utils.typeshelper import StatHints
from datatrove.utils.word_tokenizers import WordTokenizer

from diffucoder.data.config import CurateConfig, DecontamConfig, FilterConfig
from diffucoder.data.decontam import BenchmarkIndex, build_index
from diffucoder.data.dedup import MinHasher
from diffucoder.data.filters import first_failure
from diffucoder.data.select import DECONTAMINATED, EXACT_DUP, NEAR_DUP
from diffucoder.data.shingles import code_tokens, token_hashes
from diffucoder.data.sources import SourceReader, iter_input_files, read_input_file
from diffucoder.errors import DiffucoderError

STAGES = ("select", "exact", "signatures", "buckets", "clusters", "keep")
# 64-bit sha1 from the standard library: datatrove's default xxhash would be one more package
HASH = HashConfig(precision=64, hash_fc="sha1")
MINHASH_HASH = HashConfig(precision=32, hash_fc="sha1")   # the builtin's 32-bit permutations


def _doc_text(doc: Document) -> str:
    return doc.text


EXACT = ExactDedupConfig(content_getter=_doc_text, hash_config=HASH)


def lsh_shape(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows per band) for ``num_perm`` permutations and a Jaccard threshold: the
    choice datasketch makes (weighted false positives + negatives), also used by ``builtin``."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def minhash_config(cfg: CurateConfig) -> MinhashConfig:
    bands, rows = lsh_shape(cfg.dedup.num_perm, cfg.dedup.jaccard_threshold)
    return MinhashConfig(n_grams=cfg.dedup.shingle_size, num_buckets=bands,
                         hashes_per_bucket=rows, seed=cfg.dedup.seed, hash_config=MINHASH_HASH)


def task_count(cfg: CurateConfig, workers: int) -> int:
    return cfg.tasks or workers


def stage_plan(cfg: CurateConfig, workers: int) -> list[tuple[str, int]]:
    """Every stage this recipe runs, with its number of tasks, in order."""
    tasks = task_count(cfg, workers)
    plan = [("select", tasks)]
    if cfg.dedup.exact:
        plan.append(("exact", 1))
    if cfg.dedup.near:
        plan += [("signatures", tasks), ("buckets", minhash_config(cfg).num_buckets),
                 ("clusters", 1)]
    return plan + [("keep", tasks)]


class CodeReader(BaseReader):
    """Reads this task's share of the input files (every ``world_size``-th file, in the fixed
    listing order) with the project's readers: source trees, JSONL(.gz), Parquet. What it
    skips (binary, invalid UTF-8, other languages, ...) goes to ``reads/<rank>.json``."""

    name = "code files"

    def __init__(self, cfg: CurateConfig, roots: list[Path], trove: Path):
        super().__init__()
        self.input, self.languages = cfg.input, set(cfg.languages)
        self.max_file_bytes = cfg.filters.max_file_bytes
        self.roots, self.trove = [Path(r) for r in roots], Path(trove)

    def run(self, data: DocumentsPipeline = None, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        skips: Counter = Counter()
        # every task lists all files; only rank 0 counts the excluded ones (counted once)
        listed = list(iter_input_files(self.roots, self.input,
                                       skips if rank == 0 else Counter()))
        reader = SourceReader(self.input, self.languages, skips, self.max_file_bytes)
        for entry in listed[rank::world_size]:
            if reader.at_limit():
                break
            for doc in read_input_file(entry, reader):
                self.stat_update("documents")
                yield Document(text=doc.text, id=doc.path, metadata={
                    "path": doc.path, "language": doc.language, "license": doc.license,
                    "bytes": len(doc.text.encode("utf-8"))})
        write_json(self.trove / "reads" / f"{rank:05d}.json",
                   {"skips": dict(skips), "bytes": reader.bytes_read,
                    "documents": reader.next_id, "limit_reached": reader.limit_reached})


class CodeQualityFilter(BaseFilter):
    """The project's code filters (``filters.first_failure``); the reason is the first failed."""

    name = "code quality"

    def __init__(self, cfg: FilterConfig, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.cfg = cfg

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = first_failure(doc.text, doc.metadata["path"], self.cfg)
        return (False, reason) if reason else True


class DecontaminationFilter(BaseFilter):
    """Drops documents holding a benchmark prompt or solution (``decontam.BenchmarkIndex``)."""

    name = "benchmark decontamination"

    def __init__(self, cfg: DecontamConfig, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.cfg = cfg
        self._index: BenchmarkIndex | None = None

    # Each task builds the index itself instead of receiving it pickled from the parent
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_index": None}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._index is None:
            self._index = build_index(self.cfg)
        hit = self._index.match(token_hashes(code_tokens(doc.text)))
        if hit is None:
            return True
        doc.metadata["hit"] = asdict(hit)
        return False, DECONTAMINATED


class CodeWordTokenizer(WordTokenizer):
    """Identifier/number runs and punctuation (``shingles.code_tokens``): whitespace and
    indentation never change a shingle, and punctuation stays (it carries meaning in code)."""

    def word_tokenize(self, text: str) -> list[str]:
        return code_tokens(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def full_signature_dtype(num_perm: int) -> np.dtype:
    """One record of ``minhash/full/<rank>.sig``: the document's index in its task's stream
    and its whole signature (for checking LSH candidates)."""
    return np.dtype([("doc", "<u4"), ("sig", "<u4", (num_perm,))])


class CodeMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature stage on code-token shingles instead of its
    natural-language ones (lower-cased words without punctuation or digits), hashed with the
    builtin engine's permutations (``dedup.MinHasher``, datasketch's 32-bit scheme): a
    document's signature is the same in both engines, and so are the LSH bands (the first
    bands x rows values; ``dedup.num_perm`` may have a few more, used for estimates).

    With ``full_folder`` it also writes each document's whole signature to
    ``<full_folder>/<rank>.sig``, which ``VerifiedMinhashCluster`` reads to check candidates.
    datatrove's ``run`` calls ``get_shingles`` once per document in order and
    ``get_signature`` right after for those with shingles: that is how the index is known."""

    name = "code MinHash signatures"

    def __init__(self, output_folder: str, config: MinhashConfig, num_perm: int,
                 full_folder: str | None = None):
        super().__init__(output_folder, config, language=CodeWordTokenizer())
        self.hasher = MinHasher(num_perm, config.seed, config.n_grams)
        self.full_folder = full_folder
        self._doc_idx = -1
        self._full = None

    def _shingles(self, text: str) -> np.ndarray:
        return self.hasher.shingles(token_hashes(code_tokens(text))).astype(np.uint64)

    def get_shingles(self, text: str) -> np.ndarray:
        self._doc_idx += 1
        return self._shingles(text).reshape(-1, 1)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        full = self.hasher.shingle_signature(shingles.ravel().astype(np.uint32))
        if self._full is not None:
            record = np.zeros(1, dtype=full_signature_dtype(len(full)))
            record["doc"], record["sig"][0] = self._doc_idx, full
            self._full.write(record.tobytes())
        return [band.tolist() for band in np.split(full[:self.num_hashes],
                                                   self.config.num_buckets)]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        self._doc_idx = -1
        if self.full_folder is None:
            return super().run(data, rank, world_size)
        path = Path(self.full_folder) / f"{rank:05d}.sig"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as self._full:
            super().run(data, rank, world_size)
        self._full = None
        os.replace(tmp, path)

    def signature(self, text: str) -> np.ndarray | None:
        """The whole signature of one text (for the report's pair estimates)."""
        shingles = self._shingles(text)
        return self.hasher.shingle_signature(shingles.astype(np.uint32)) \
            if shingles.size else None


class VerifiedMinhashCluster(PipelineStep):
    """Replaces datatrove's ``MinhashDedupCluster`` (one task either way): documents are
    taken in order (task, index), and one is dropped when a kept document sharing one of its
    LSH bands has an estimated Jaccard (over the whole signatures) of at least the threshold:
    the builtin engine's rule.
    datatrove's default drops every candidate unchecked and joins pairs transitively (A~B,
    B~C drops C even when A and C differ), which removes more than the threshold says.
    Writes datatrove's ``<task>.remove`` / ``<task>.clusters`` files, so its
    ``MinhashDedupFilter`` applies the result, and ``summary.json``."""

    type = "🫂 - DEDUP"
    name = "verified MinHash clusters"

    def __init__(self, input_folder: str, full_folder: str, output_folder: str,
                 num_perm: int, threshold: float):
        super().__init__()
        self.input_folder, self.full_folder = Path(input_folder), Path(full_folder)
        self.output_folder, self.num_perm = Path(output_folder), num_perm
        self.threshold = threshold

    def _candidates(self) -> dict[tuple[int, int], set[tuple[int, int]]]:
        """Node -> every node sharing one of its bands. Each ``.dups`` file holds one band's
        groups of equal band hashes as chains (d1-d2, d2-d3, ...), joined back here."""
        candidates: dict[tuple[int, int], set[tuple[int, int]]] = {}
        for path in sorted(self.input_folder.glob("*.dups")):
            parent: dict[tuple[int, int], tuple[int, int]] = {}

            def root(x: tuple[int, int]) -> tuple[int, int]:
                while parent.setdefault(x, x) != x:
                    x = parent[x]
                return x
            for ta, da, tb, db in np.fromfile(path, dtype="<u4").reshape(-1, 4).tolist():
                ra, rb = root((ta, da)), root((tb, db))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for node in parent:
                groups.setdefault(root(node), []).append(node)
            for group in groups.values():
                for node in group:
                    candidates.setdefault(node, set()).update(group)
        for node, others in candidates.items():
            others.discard(node)
        return candidates

    def _signatures(self, nodes: set[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        dtype = full_signature_dtype(self.num_perm)
        out = {}
        for task in sorted({t for t, _ in nodes}):
            records = np.fromfile(self.full_folder / f"{task:05d}.sig", dtype=dtype)
            wanted = np.fromiter((d for t, d in nodes if t == task), dtype=np.uint32)
            for rec in records[np.isin(records["doc"], wanted)]:
                out[(task, int(rec["doc"]))] = rec["sig"]
        return out

    def _greedy(self, candidates: dict[tuple[int, int], set[tuple[int, int]]],
                sigs: dict[tuple[int, int], np.ndarray]):
        """In (task, index) order, drop a node whose closest kept candidate has an estimated
        Jaccard of at least the threshold (the builtin engine's rule, on the same bands)."""
        kept: set[tuple[int, int]] = set()
        cluster_of: dict[tuple[int, int], tuple[int, int]] = {}
        compared = 0
        for node in sorted(candidates):
            earlier = sorted(c for c in candidates[node] if c in kept)
            if earlier:
                estimates = np.mean(np.stack([sigs[c] for c in earlier]) == sigs[node], axis=1)
                compared += len(earlier)
                best = int(np.argmax(estimates))
                if estimates[best] >= self.threshold:
                    cluster_of[node] = earlier[best]
                    continue
            kept.add(node)
        return cluster_of, compared

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise DiffucoderError(f"the clusters stage runs as one task, not {world_size}")
        with self.track_time():
            candidates = self._candidates()
            sigs = self._signatures(set(candidates))
            cluster_of, compared = self._greedy(candidates, sigs)
            removed: dict[int, list[int]] = {}
            members: dict[int, list[tuple[int, int]]] = {}
            ids = {rep: i for i, rep in enumerate(sorted(set(cluster_of.values())))}
            for (task, doc), rep in sorted(cluster_of.items()):
                removed.setdefault(task, []).append(doc)
                members.setdefault(task, []).append((doc, ids[rep]))
            for rep, cid in ids.items():
                members.setdefault(rep[0], []).append((rep[1], cid))
            self.output_folder.mkdir(parents=True, exist_ok=True)
            for task, docs in removed.items():
                _write_atomic(self.output_folder / f"{task:06d}.remove",
                              np.asarray(sorted(docs), dtype="<u4").tobytes())
            for task, rows in members.items():
                _write_atomic(self.output_folder / f"{task:06d}.clusters",
                              np.asarray(sorted(rows), dtype="<u4").tobytes())
            pairs = sum(len(c) for c in candidates.values()) // 2
            self.stat_update("candidate_pairs", value=pairs)
            write_json(self.output_folder / "summary.json",
                       {"candidate_pairs": pairs, "compared_pairs": compared,
                        "removed": len(cluster_of), "clusters": len(ids)})


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class CodeMinhashFilter(MinhashDedupFilter):
    """datatrove's last MinHash stage, which also marks a cluster's kept member when its task
    removed nothing (datatrove then skips the cluster ids; the report pairs each dropped
    file with its cluster's kept one)."""

    def run(self, data: DocumentsPipeline, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        clusters = f"{rank:06d}.clusters"
        if self.data_folder.isfile(f"{rank:06d}.remove") or \
                not self.data_folder.isfile(clusters):
            yield from super().run(data, rank, world_size)
            return
        with self.data_folder.open(clusters, "rb") as handle:
            cluster_of = dict(read_tuples_from_file(handle, "2I"))
        for idx, doc in enumerate(data):
            self.stat_update(StatHints.total, StatHints.forwarded)
            doc.metadata["minhash_cluster_id"] = cluster_of.get(idx, -1)
            yield doc


class OutcomeWriter(JsonlWriter):
    """Writes one row per removed document: path, size, reason, benchmark hit, MinHash
    cluster, and the text of near-duplicates (for the report's exact-Jaccard check)."""

    name = "removed documents"

    def __init__(self, trove: Path, reason: str | None = None):
        super().__init__(str(Path(trove) / "outcomes" / (reason or "filters")),
                         output_filename="${rank}.jsonl", compression=None)
        self.reason = reason

    def _default_adapter(self, document: Document) -> dict:
        meta = document.metadata
        reason = self.reason or meta.get("filter_reason")
        row = {"path": meta["path"], "bytes": meta["bytes"], "reason": reason}
        if "hit" in meta:
            row["hit"] = meta["hit"]
        if reason == NEAR_DUP:
            row["cluster"] = meta.get("minhash_cluster_id", -1)
            row["text"] = document.text
        return row


class RankFileReader(JsonlReader):
    """Reads exactly ``<folder>/<rank>.jsonl`` (nothing if that task kept nothing), so the
    document order matches what the earlier stage wrote for the same rank."""

    name = "this task's selected documents"

    def run(self, data: DocumentsPipeline = None, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl"
        if self.data_folder.isfile(name):
            yield from self.read_files_shard([name])


def _jsonl_writer(folder: Path) -> JsonlWriter:
    return JsonlWriter(str(folder), output_filename="${rank}.jsonl", compression=None)


def _selected(trove: Path) -> RankFileReader:
    return RankFileReader(str(trove / "selected"), add_file_path=False)


def stage_pipeline(cfg: CurateConfig, roots: list[Path], trove: Path,
                   stage: str) -> list[PipelineStep]:
    """The datatrove blocks of one stage."""
    mh = minhash_config(cfg)
    exact_filter = [ExactDedupFilter(str(trove / "exact" / "dups"), EXACT)] \
        if cfg.dedup.exact else []
    if stage == "select":
        steps: list[PipelineStep] = [
            CodeReader(cfg, roots, trove),
            CodeQualityFilter(cfg.filters, exclusion_writer=OutcomeWriter(trove))]
        if cfg.decontam.enabled:
            steps.append(DecontaminationFilter(cfg.decontam,
                                               exclusion_writer=OutcomeWriter(trove)))
        steps.append(_jsonl_writer(trove / "selected"))
        if cfg.dedup.exact:
            steps.append(ExactDedupSignature(str(trove / "exact" / "sigs"), EXACT))
        return steps
    if stage == "exact":
        return [ExactFindDedups(str(trove / "exact" / "sigs"), str(trove / "exact" / "dups"),
                                EXACT)]
    if stage == "signatures":
        full = str(trove / "minhash" / "full") if cfg.dedup.verify else None
        return [_selected(trove), *exact_filter,
                CodeMinhashSignature(str(trove / "minhash" / "sigs"), mh, cfg.dedup.num_perm,
                                     full)]
    if stage == "buckets":
        return [MinhashDedupBuckets(str(trove / "minhash" / "sigs"),
                                    str(trove / "minhash" / "buckets"), config=mh)]
    if stage == "clusters" and cfg.dedup.verify:
        return [VerifiedMinhashCluster(str(trove / "minhash" / "buckets"),
                                       str(trove / "minhash" / "full"),
                                       str(trove / "minhash" / "clusters"),
                                       cfg.dedup.num_perm, cfg.dedup.jaccard_threshold)]
    if stage == "clusters":
        return [MinhashDedupCluster(str(trove / "minhash" / "buckets"),
                                    str(trove / "minhash" / "clusters"), config=mh,
                                    save_cluster_id=True)]
    if stage == "keep":
        steps = [_selected(trove)]
        if cfg.dedup.exact:
            steps.append(ExactDedupFilter(str(trove / "exact" / "dups"), EXACT,
                                          exclusion_writer=OutcomeWriter(trove, EXACT_DUP)))
        if cfg.dedup.near:
            steps.append(CodeMinhashFilter(str(trove / "minhash" / "clusters"),
                                            exclusion_writer=OutcomeWriter(trove, NEAR_DUP),
                                            load_cluster_ids=True))
        steps.append(_jsonl_writer(trove / "kept"))
        return steps
    raise DiffucoderError(f"unknown curate stage {stage!r}; the stages are {', '.join(STAGES)}")


TASK_LOG_FORMAT = ("{time:YYYY-MM-DD HH:mm:ss.SSS} | <level>{level: <8}</level> | "
                   "{name}:{function}:{line} - <level>{message}</level>")   # datatrove's
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class TaskLogFile:
    """A task's log file as a loguru sink that never makes a logging call fail or print: a line
    the disk refuses (full, over quota) is dropped and its error kept in ``error``, with the
    file's path. As a plain stream sink, loguru would print "--- Logging error ---" and a
    traceback for every line it could not write."""

    def __init__(self, folder: DataFolder, name: str):
        self.path = folder.resolve_paths(name)
        self.error: OSError | None = None
        self._file = folder.open(name, "w")

    def write(self, message: str) -> None:
        if self.error is not None:
            return
        try:
            self._file.write(message)
            self._file.flush()
        except OSError as err:
            self.error = OSError(err.errno, err.strerror, self.path)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as err:
            self.error = self.error or OSError(err.errno, err.strerror, self.path)


def console_errors_only() -> None:
    """loguru's only sink: the console, errors only, and not a task's exception, which goes
    up to the caller, who reports it (the CLI in one line). The executors' summaries and the
    tasks' logs stay in ``<trove>/logs/``; a curation prints its own summary."""
    logger.remove()
    logger.add(sys.stderr, level="ERROR", format=TASK_LOG_FORMAT,
               filter=lambda record: record["exception"] is None)


@contextmanager
def task_log(folder: DataFolder, rank: int) -> Iterator[None]:
    """What a task logs: everything to ``<folder>/logs/task_<rank>.log``, errors also on the
    console (``console_errors_only``). A log line the disk refused makes a task that otherwise
    succeeded fail afterwards with that error, naming the log: a task's log is whole or the
    task is not done."""
    log = TaskLogFile(folder, f"logs/task_{rank:05d}.log")
    console_errors_only()
    logger.add(log.write, level="DEBUG", format=TASK_LOG_FORMAT, colorize=False)
    try:
        yield
    except Exception:
        logger.exception(f"task {rank} failed")          # to the log file only
        raise
    finally:
        console_errors_only()
        log.close()
    if log.error is not None:
        raise log.error


class QuietLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor with the project's task logs (``task_log``: no traceback from
    a log sink on a full disk; the console shows only errors, and a task's exception is raised
    to the caller, not printed), a task marked complete only once its log is whole, and task
    processes spawned rather than forked by a forkserver: its socket would put a
    multiprocessing temp dir in this process's TMPDIR for the process's whole life, out of
    reach of ``temp_files_in``. Every task's log stays in ``<trove>/logs/<stage>/logs/``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, start_method="spawn", **kwargs)

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        # datatrove's own (executor/base.py), but for the logging; one machine: no node rank
        if self.is_rank_completed(rank):
            return PipelineStats()
        self._set_distributed_environment(node_rank)
        with task_log(self.logging_dir, rank):
            log_pipeline(self.pipeline)
            data = None
            for step in self.pipeline:
                data = step(data, rank, self.world_size)
            if data:
                deque(data, maxlen=0)
            stats = PipelineStats(self.pipeline)
            with self.logging_dir.open(f"stats/{rank:05d}.json", "w") as handle:
                stats.save_to_disk(handle)
            logger.success(stats.get_repr(f"Task {rank}"))
        self.mark_rank_as_completed(rank)
        return stats


SUN_PATH_MAX = 107                               # bytes in a Unix socket's path
POOL_SOCKET = len("/pymp-XXXXXXXX/listener-XXXXXXXX")  # what a pool's manager makes in TMPDIR


def task_tempdir(trove: Path, stage: str | None = None, ranks: range | None = None) -> Path | None:
    """The temp dir of the task processes of a whole run (no ``stage``) or of one slice:
    ``<TMPDIR>/curate-<digest of the trove's path and the slice>``, the same when the same run
    or slice is run again. None when TMPDIR's path is too long for the Unix socket a pool's
    manager makes under it (the tasks then use TMPDIR itself, as datatrove does)."""
    what = str(Path(trove).absolute()) + ("" if stage is None else
                                          f" {stage} {ranks.start}:{ranks.stop}")
    path = Path(tempfile.gettempdir()) / f"curate-{hashlib.sha256(what.encode()).hexdigest()[:10]}"
    return path if len(os.fsencode(path)) + POOL_SOCKET <= SUN_PATH_MAX else None


@contextmanager
def temp_files_in(path: Path | None) -> Iterator[None]:
    """The processes started meanwhile keep their temp files under ``path`` (TMPDIR and
    ``tempfile.tempdir`` point there, both restored after), which is emptied first and removed
    after. A datatrove pool's manager process keeps a multiprocessing ``pymp-*`` dir in
    TMPDIR, which it removes only when it exits: SIGKILLed with its run, it left it in TMPDIR
    for good; under ``task_tempdir`` the same run or slice run again removes it, and never
    another run's or slice's. ``path`` None: TMPDIR unchanged."""
    if path is None:
        yield
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def stages_running(trove: Path, tempdir: Path | None) -> Iterator[None]:
    """Around the executors' runs: their task processes' temp files in ``tempdir``
    (``temp_files_in``), only errors on the console (``console_errors_only``; datatrove's
    default console afterwards), and a full disk whose error names no file (a write to an
    open file) reported as writing ``trove``."""
    try:
        with temp_files_in(tempdir):
            console_errors_only()
            try:
                yield
            finally:
                setup_default_logger()
    except OSError as err:
        if err.errno in DISK_FULL and not err.filename:
            raise OSError(err.errno, err.strerror, str(trove)) from err
        raise


def _executor(cfg: CurateConfig, roots: list[Path], trove: Path, stage: str, tasks: int,
              workers: int, **kwargs) -> LocalPipelineExecutor:
    return QuietLocalExecutor(stage_pipeline(cfg, roots, trove, stage), tasks=tasks,
                              workers=max(1, min(workers, tasks)),
                              logging_dir=str(trove / "logs" / stage), **kwargs)


def run_stages(cfg: CurateConfig, roots: list[Path], trove: Path, workers: int) -> None:
    """Every stage on this machine, ``workers`` tasks at a time."""
    with stages_running(trove, task_tempdir(trove)):
        for stage, tasks in stage_plan(cfg, workers):
            _executor(cfg, roots, trove, stage, tasks, workers, skip_completed=False).run()


def parse_ranks(text: str | int | range) -> range:
    """``"7"`` -> ranks 7..7, ``"4:8"`` -> ranks 4..7 (end excluded; ``"0:0"`` is no rank)."""
    if isinstance(text, range):
        return text
    if isinstance(text, int):
        return range(text, text + 1)
    start, sep, end = str(text).partition(":")
    try:
        ranks = range(int(start), int(end)) if sep else range(int(start), int(start) + 1)
    except ValueError:
        raise DiffucoderError(f"'--task-rank': {text!r} is not a rank I or a range A:B") from None
    if ranks.start < 0 or ranks.stop < ranks.start:
        raise DiffucoderError(f"'--task-rank': {text!r} is not a range of ranks (0 <= A <= B)")
    return ranks


def stage_slices(cfg: CurateConfig, workers: int) -> dict[str, list[str]]:
    """Stage -> the rank ranges (``"a:b"``, end excluded) of its pods, ``spread.tasks_per_pod``
    consecutive tasks each, for every stage in ``STAGES``; a stage this recipe does not run
    gets one empty range ``"0:0"`` (a KFP loop must not be empty: Argo skips an empty loop,
    and a skipped task does not let the next stage start)."""
    per_pod = cfg.spread.tasks_per_pod
    plan = dict(stage_plan(cfg, workers))
    return {stage: [f"{a}:{min(a + per_pod, plan[stage])}" for a in range(0, plan[stage], per_pod)]
            if stage in plan else ["0:0"] for stage in STAGES}


def check_task(cfg: CurateConfig, stage: str, ranks: range, workers: int,
               missing: dict[str, list[int]]) -> int:
    """Refuse tasks ``ranks`` of ``stage`` unless they exist and every earlier stage has
    finished (``missing``: stage -> unfinished ranks); the stage's number of tasks (0 for a
    stage this recipe skips, which only the empty range may name)."""
    plan = dict(stage_plan(cfg, workers))
    if stage not in plan:
        if stage in STAGES and not ranks:
            return 0                   # a stage this recipe skips: the pipeline's empty slice
        raise DiffucoderError(f"'--stage': {stage!r} is not a stage of this recipe "
                              f"(stages: {', '.join(plan)})")
    if not ranks or ranks.stop > plan[stage]:
        shown = str(ranks.start) if len(ranks) == 1 else f"{ranks.start}:{ranks.stop}"
        raise DiffucoderError(f"'--task-rank': {shown} is outside 0..{plan[stage] - 1} "
                              f"(stage {stage} has {plan[stage]} task(s))")
    earlier = list(plan)[:list(plan).index(stage)]
    unfinished = {s: r for s, r in missing.items() if s in earlier}
    if unfinished:
        listed = "; ".join(f"{s}: ranks {r}" for s, r in unfinished.items())
        raise DiffucoderError(f"stage {stage} needs the stages before it finished ({listed})")
    return plan[stage]


SINGLE_TASK_STAGES = ("exact", "clusters")   # hold what every task of a stage wrote
DATA_PASS_STAGES = ("select", "signatures", "keep")   # one pass over the documents each


@dataclass(frozen=True)
class StageSpread:
    """One stage spread over pods (``spread_plan``)."""

    stage: str
    tasks: int
    pods: int
    workers: int                   # per pod: tasks it runs at once, its CPU request
    memory_per_worker: str
    pod_memory: str
    wall_s: float | None           # all pods at once, at spread.mb_per_s_per_core; None: unknown


def scale_quantity(quantity: str, times: int) -> str:
    """``"2Gi"`` x 8 -> ``"16Gi"`` (a Kubernetes quantity times a count, same unit)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", quantity)
    if not match:
        raise DiffucoderError(f"{quantity!r} is not a Kubernetes quantity")
    value = float(match.group(1)) * times
    return f"{int(value) if value.is_integer() else round(value, 3)}{match.group(2)}"


def spread_plan(cfg: CurateConfig, workers: int) -> list[StageSpread]:
    """Every stage of this recipe as the pipeline compiled with ``--curate-pods`` runs it:
    ``spread.tasks_per_pod`` consecutive tasks per pod, ``spread.workers_per_pod`` of them at
    once. Wall times are estimates for the stages that make one pass over the documents
    (``input_gb`` at ``mb_per_s_per_core``, every pod at once; for signatures and keep an
    upper bound: they read only what select kept); the others scale with the number of
    documents, which no rate here covers."""
    sp = cfg.spread
    out = []
    for stage, tasks in stage_plan(cfg, workers):
        single = stage in SINGLE_TASK_STAGES
        per_pod = min(sp.tasks_per_pod, tasks)
        pods = -(-tasks // per_pod)
        pod_workers = 1 if single else min(sp.workers_per_pod, per_pod)
        per_worker = sp.single_task_memory if single else sp.memory_per_worker
        wall = None
        if stage in DATA_PASS_STAGES and sp.input_gb:
            wall = sp.input_gb * 1000 / (sp.mb_per_s_per_core * pods * pod_workers)
        out.append(StageSpread(stage, tasks, pods, pod_workers, per_worker,
                               scale_quantity(per_worker, pod_workers), wall))
    return out


def run_task(cfg: CurateConfig, roots: list[Path], trove: Path, stage: str, ranks: range | int,
             workers: int, missing: dict[str, list[int]] | None = None) -> None:
    """Tasks ``ranks`` of ``stage`` only (what one pod of a parallel loop runs), ``workers`` at a
    time. A task already marked complete in ``trove`` is not run again, so a retried pod resumes.
    ``missing`` (stage -> unfinished ranks) is where the earlier stages stand; default: the
    completion marks in ``trove``."""
    ranks = parse_ranks(ranks)
    tasks = check_task(cfg, stage, ranks, workers,
                       missing_tasks(cfg, trove, workers) if missing is None else missing)
    if tasks:
        with stages_running(trove, task_tempdir(trove, stage, ranks)):
            _executor(cfg, roots, trove, stage, tasks, min(workers, len(ranks)),
                      local_tasks=len(ranks), local_rank_offset=ranks.start).run()


def missing_tasks(cfg: CurateConfig, trove: Path, workers: int) -> dict[str, list[int]]:
    """Stage -> ranks without a completion mark (empty when every stage has finished)."""
    out = {}
    for stage, tasks in stage_plan(cfg, workers):
        done = trove / "logs" / stage / "completions"
        missing = [r for r in range(tasks) if not (done / f"{r:05d}").is_file()]
        if missing:
            out[stage] = missing
    return out


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
