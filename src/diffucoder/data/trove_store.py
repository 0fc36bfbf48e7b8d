"""The curation's shared work directory in the artifact store, for task slices on separate pods.

    work = StoreWorkdir("s3://diffucoder/runs/r1/curate-work")     # or file:///abs/dir
    work.run_slice(cfg, "signatures", range(4, 8), scratch, workers=4)   # what one pod does
    work.missing(cfg)                         # stage -> ranks whose slice is not published yet
    work.fetch("publish", range(0), scratch / "trove")   # what the publishing step reads

A pod runs its slice (one stage, a range of ranks) on a local trove directory: it downloads
what those tasks read from the slices of the earlier stages (``NEEDS``), runs them with
``trove.run_task``, and publishes everything they wrote as one artifact,
``<work>/<stage>/<first>-<end>`` (rank range, end excluded). The artifact store publishes
atomically (a slice is visible only once all of its files are, and each is sha256-checked
when read), so a slice is done exactly when its artifact exists: a retried pod whose slice
is already published does nothing, and one killed half-way left nothing a later stage reads.

Why this rather than pointing datatrove's folders at ``s3://`` through fsspec (s3fs):
- one S3 client for the whole project: the store's endpoint, TLS, credential sources (env or
  a mounted Secret), retry policy and integrity checks, already tested against outages;
  s3fs would be a second client with its own configuration and retry rules;
- s3fs needs aiobotocore, whose newest release (3.10.0) pins botocore below 1.43.118 while
  the project pins botocore 1.44.8: adding it means downgrading a pinned package;
- the project's own blocks (reader skips, full signatures, verified clusters, the report's
  reader) write with ``os.replace`` and read with ``numpy.fromfile`` and globs: local files.
The cost: a slice's inputs are downloaded before it starts and its outputs uploaded after
it ends (no streaming), so a pod needs local disk for them (about ``tasks_per_pod`` x the
size of one task's share, plus, for the clusters stage, every full signature).
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diffucoder.data.config import CurateConfig
from diffucoder.data.trove import check_task, parse_ranks, run_task, stage_plan
from diffucoder.store import resolve

# What the tasks of a stage read from earlier stages: (the stage that wrote it, a pattern of
# its path in the trove; ``{rank}`` is the reading task's rank). It mirrors the folders
# ``trove.stage_pipeline`` reads: a missing entry would make a task read nothing, which the
# store-backed slice test (every stage, compared with one local run) catches.
NEEDS: dict[str, list[tuple[str, str]]] = {
    "select": [],
    "exact": [("select", "exact/sigs/*")],
    "signatures": [("select", "selected/{rank:05d}.jsonl"), ("exact", "exact/dups/*")],
    "buckets": [("signatures", "minhash/sigs/bucket_{rank:03d}/*")],
    "clusters": [("buckets", "minhash/buckets/*"), ("signatures", "minhash/full/*")],
    "keep": [("select", "selected/{rank:05d}.jsonl"), ("exact", "exact/dups/*"),
             ("clusters", "minhash/clusters/{rank:06d}.*")],
    "publish": [("select", "reads/*"), ("select", "outcomes/*"), ("keep", "outcomes/*"),
                ("keep", "kept/*"), ("clusters", "minhash/clusters/summary.json")],
}
DOWNLOAD_THREADS = 8


def is_store_uri(workdir: str) -> bool:
    """``s3://...`` or ``file://...``: a work directory in the store (a plain path is local)."""
    return "://" in str(workdir)


def _slice_name(stage: str, ranks: range) -> str:
    return f"{stage}/{ranks.start:05d}-{ranks.stop:05d}"


class StoreWorkdir:
    def __init__(self, uri: str):
        self.store, self.name = resolve(uri)
        self.uri = self.store.uri(self.name)

    def _slices(self, stage: str) -> list[tuple[str, range]]:
        """The published slices of ``stage``: (artifact name, ranks)."""
        out = []
        for name in self.store.list_artifacts(f"{self.name}/{stage}/"):
            first, _, end = name.rsplit("/", 1)[1].partition("-")
            out.append((name, range(int(first), int(end))))
        return out

    def missing(self, cfg: CurateConfig, workers: int = 1) -> dict[str, list[int]]:
        """Stage -> ranks no published slice covers (empty when every stage has finished)."""
        out = {}
        for stage, tasks in stage_plan(cfg, workers):
            done = {r for _, ranks in self._slices(stage) for r in ranks}
            left = [r for r in range(tasks) if r not in done]
            if left:
                out[stage] = left
        return out

    def fetch(self, stage: str, ranks: range, trove: Path) -> int:
        """Download into ``trove`` what tasks ``ranks`` of ``stage`` (or ``publish``) read; the
        number of files."""
        wanted: list[tuple[str, str]] = []          # (artifact, path in the trove)
        by_stage: dict[str, list[tuple[str, range]]] = {}
        for producer, pattern in NEEDS[stage]:
            patterns = {pattern.format(rank=r) for r in ranks} if "{rank" in pattern else {pattern}
            slices = by_stage.setdefault(producer, self._slices(producer))
            for name, _ in slices:
                for relpath in self.store.read_manifest(name).files:
                    if any(fnmatch.fnmatchcase(relpath, p) for p in patterns):
                        wanted.append((name, relpath))
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            list(pool.map(lambda item: self.store.get_file(item[0], item[1],
                                                           trove.joinpath(*item[1].split("/"))),
                          wanted))
        return len(wanted)

    def publish(self, stage: str, ranks: range, trove: Path, before: set[str],
                staging: Path) -> str:
        """Publish every file under ``trove`` not in ``before`` as the slice's artifact."""
        shutil.rmtree(staging, ignore_errors=True)
        written = sorted(set(_files(trove)) - before)
        for relpath in written:
            target = staging.joinpath(*relpath.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(trove.joinpath(*relpath.split("/")), target)
        if not written:   # a slice that wrote nothing is still done
            staging.mkdir(parents=True)
        name = f"{self.name}/{_slice_name(stage, ranks)}"
        self.store.put_artifact(name, staging, metadata={
            "kind": "curate-slice", "stage": stage, "ranks": [ranks.start, ranks.stop]})
        shutil.rmtree(staging, ignore_errors=True)
        return self.store.uri(name)

    def run_slice(self, cfg: CurateConfig, roots: list[Path], stage: str, ranks: range | int | str,
                  scratch: Path, workers: int) -> str:
        """Run tasks ``ranks`` of ``stage`` against the store: fetch what they read, run them in
        ``scratch``, publish what they wrote. What happened, for the log."""
        ranks = parse_ranks(ranks)
        if not check_task(cfg, stage, ranks, workers, {}):
            return f"stage {stage} is not part of this recipe: nothing to do"
        name = f"{self.name}/{_slice_name(stage, ranks)}"
        if self.store.has_artifact(name):
            return f"already published: {self.store.uri(name)}"
        missing = self.missing(cfg, workers)
        check_task(cfg, stage, ranks, workers, missing)   # earlier stages finished: fails here
        trove = scratch / "trove"
        shutil.rmtree(trove, ignore_errors=True)      # debris of an earlier attempt in this pod
        trove.mkdir(parents=True)
        fetched = self.fetch(stage, ranks, trove)
        before = set(_files(trove))
        run_task(cfg, roots, trove, stage, ranks, workers, missing=missing)
        uri = self.publish(stage, ranks, trove, before, scratch / "publish")
        return f"read {fetched} file(s) from {self.uri}, published {uri}"


def _files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
