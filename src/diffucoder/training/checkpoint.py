"""Training checkpoints in the artifact store: atomic, complete, resumable bit for bit.

    ckpts = Checkpoints("file:///abs/store/runs/r1/pretrain-ckpt", env, workdir, keep_last=2)
    ckpts.save(step, engine, state)       # state: the recipe's typed train state
    meta = ckpts.restore(engine, state)   # None, or {"step", "world_size", "backend"}: loaded

A train state is any object with ``state_dict()`` / ``load_state_dict(d)`` whose dict holds plain
data and tensors (``torch.load(weights_only=True)`` reads it back): the step, the data position,
the metrics so far, this rank's random streams (``rng_state``) ... Every rank saves its own.

Layout under the checkpoint URI (each entry an artifact)::

    step-00000040                 rank 0's files: checkpoint.json (step, world size, back end),
                                  train_state.pt, engine/ (model, optimizer, schedule); published
                                  LAST, so it marks completeness
    step-00000040-rank-00001      rank 1's files: train_state.pt (+ its ZeRO partition under DeepSpeed)

A checkpoint exists only once ``step-N``'s manifest is written, after every rank's part
was published (a barrier in between): a kill at any moment leaves either the previous
complete checkpoint or the new one. The newest complete ``step-N`` is resumed; older
ones beyond ``keep_last`` are deleted (manifest first, so none is ever half visible).
What killed saves leave behind (uploads without a manifest, versions a re-save replaced,
parts of a step that never completed, the local staging) is removed by the next restore and
after every save, while no rank of the run writes: the checkpoint URI belongs to one run.

``seeded_streams(seed)`` seeds every process-wide stream a checkpoint records (torch, numpy,
python) and returns the run's noise generator: the streams a straight run and a resumed one
hold at a step are then the same numbers, not whatever the interpreter started with.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from diffucoder.errors import DiffucoderError
from diffucoder.store import ArtifactNotFound, StoreError, open_store
from diffucoder.training.distributed import DistEnv

log = logging.getLogger(__name__)
STEP_RE = re.compile(r"^step-(\d{8})$")
PART_RE = re.compile(r"^step-(\d{8})-rank-(\d{5})$")
META_FILE, STATE_FILE, ENGINE_DIR = "checkpoint.json", "train_state.pt", "engine"


def rng_state(noise: torch.Generator) -> dict[str, Any]:
    """Every random state this process draws from (noise generator, torch, numpy, python)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"noise": noise.get_state(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seeded_streams(seed: int) -> torch.Generator:
    """Seed torch's, numpy's and python's process-wide streams from ``seed``; the run's own noise
    generator, seeded the same. Call it where a train state is made, once per process."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_rng_state(state: dict[str, Any], noise: torch.Generator) -> None:
    noise.set_state(state["noise"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def part_name(step: int, rank: int) -> str:
    return f"step-{step:08d}-rank-{rank:05d}"


class Checkpoints:
    def __init__(self, uri: str, env: DistEnv, workdir: Path, keep_last: int = 2):
        self.uri, self.env, self.keep_last = uri, env, keep_last
        self.store = open_store(uri)
        self.workdir = Path(workdir)

    def _published(self) -> tuple[list[int], list[tuple[int, int]]]:
        names = self.store.list_artifacts("step-")
        steps = sorted(int(m.group(1)) for n in names if (m := STEP_RE.match(n)))
        parts = sorted((int(m.group(1)), int(m.group(2))) for n in names if (m := PART_RE.match(n)))
        return steps, parts

    def latest_step(self) -> int | None:
        """The newest complete checkpoint (as rank 0 sees it, on every rank)."""
        steps = self._published()[0] if self.env.is_main else None
        steps = self.env.broadcast_object(steps)
        return steps[-1] if steps else None

    def save(self, step: int, engine, state) -> str:
        """Publish this step's checkpoint (collective: every rank calls it)."""
        staging = self.workdir / "checkpoint-staging" / f"rank-{self.env.rank:05d}"
        if staging.exists():
            shutil.rmtree(staging)   # a killed save's
        meta = {"kind": "training-checkpoint", "step": step, "rank": self.env.rank,
                "world_size": self.env.world_size, "backend": self.env.backend}
        try:
            with _writing(staging, f"checkpoint of step {step}: writing {staging}",
                          (OSError, RuntimeError)):   # torch.save's failed write is a RuntimeError
                _make_rank_dir(staging)
                engine.save_state(staging / ENGINE_DIR)
                torch.save(state.state_dict(), staging / STATE_FILE)
            name = step_name(step) if self.env.is_main else part_name(step, self.env.rank)
            publishing = f"checkpoint of step {step}: publishing {self.store.uri(name)}"
            if not self.env.is_main:
                with _writing(staging, publishing):
                    self.store.put_artifact(name, staging, metadata=meta)
            self.env.barrier()  # every part is published before the checkpoint is declared complete
            if self.env.is_main:
                layout = {"step": step, "world_size": self.env.world_size, "backend": self.env.backend}
                with _writing(staging, publishing):
                    (staging / META_FILE).write_text(json.dumps(layout, indent=1, sort_keys=True))
                    self.store.put_artifact(name, staging, metadata=meta)
                self._prune(step)
            self.env.barrier()
        finally:
            _remove(staging)   # published or not, the staging is spent (and a full disk gets its space back)
        return self.store.uri(step_name(step))

    def _prune(self, newest: int) -> None:
        steps, parts = self._published()
        keep = set(steps[-self.keep_last:]) | {newest}
        for step in steps:
            if step not in keep:
                self.store.delete_artifact(step_name(step))  # unpublish the checkpoint first
        for step, rank in parts:
            if step not in keep and step < newest:
                self.store.delete_artifact(part_name(step, rank))
        self._sweep(newest)

    def _sweep(self, complete: int | None) -> None:
        """Remove what killed saves left in the store (rank 0, while no rank writes): parts of steps
        after the newest complete one, versions no manifest names, names that never got a manifest,
        the backend's temp files."""
        for step, rank in self._published()[1]:
            if complete is None or step > complete:
                self.store.delete_artifact(part_name(step, rank))
        _files, names = self.store.backend.scan_dir("")
        for name in names:
            if STEP_RE.match(name) or PART_RE.match(name):
                try:
                    self.store.gc(name, grace_seconds=0)
                except StoreError as err:   # house-keeping: never the reason a run stops
                    log.warning("checkpoint clean-up skipped %s: %s", self.store.uri(name), err)
        self.store.backend.sweep_temp(time.time() + 1)

    def restore(self, engine, state) -> dict[str, Any] | None:
        """Load the newest complete checkpoint into ``engine`` and ``state``; its step, world size and
        back end, or None when there is none."""
        step = self.latest_step()
        if self.env.is_main:   # every rank is here: nobody writes to the store
            self._sweep(step)
        _remove(self.workdir / "checkpoint-staging" / f"rank-{self.env.rank:05d}")
        if step is None:
            return None
        target = self.workdir / "checkpoint-restore" / f"rank-{self.env.rank:05d}"
        _remove(target)   # a killed restore's
        _make_rank_dir(target)
        try:
            self.store.get_artifact(step_name(step), target / "main", overwrite=True)
            own = target / "main"
            if not self.env.is_main:
                own = target / "own"
                self.store.get_artifact(part_name(step, self.env.rank), own, overwrite=True)
                _merge_missing(target / "main" / ENGINE_DIR, own / ENGINE_DIR)
        except ArtifactNotFound as err:
            raise DiffucoderError(f"checkpoint {self.store.uri(step_name(step))} is incomplete for rank "
                                  f"{self.env.rank} (saved with another world size?): {err}") from None
        meta = json.loads((target / "main" / META_FILE).read_text())
        if meta.get("world_size") != self.env.world_size or meta.get("backend") != self.env.backend:
            raise DiffucoderError(
                f"checkpoint {self.store.uri(step_name(step))} was written by {meta.get('world_size')} "
                f"ranks with backend {meta.get('backend')!r}; this run has {self.env.world_size} with "
                f"{self.env.backend!r}. Resume with the same layout or use a new checkpoint.uri")
        engine.load_state(own / ENGINE_DIR)
        state.load_state_dict(torch.load(own / STATE_FILE, weights_only=True))
        self.env.barrier()
        _remove(target)
        return meta


@contextlib.contextmanager
def _writing(where: Path, what: str, failures: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[None]:
    """Turn a failed local write (a full disk, a quota, a read-only volume) into an error naming
    the checkpoint, the cause and the space left on that file system."""
    try:
        yield
    except failures as err:
        probe = where
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or free < 64 << 20
        raise DiffucoderError(f"{what}: {err} ({free / 1e6:.1f} MB free there); no part of this checkpoint "
                              "is visible, the previous one is whole" + ("; free space and rerun to resume"
                                                                          if full else "")) from err


def _make_rank_dir(rank_dir: Path, attempts: int = 1000) -> None:
    """Create a rank's staging / restore dir. Another rank's ``_remove`` can take the shared parent
    away inside ``mkdir(parents=True)`` (after creating it: FileNotFoundError; after finding it:
    FileExistsError; a resumed 2-rank run failed so); once the rank's dir exists the parent is not
    empty and stays, so try again."""
    for _ in range(attempts):
        try:
            rank_dir.mkdir(parents=True, exist_ok=True)
            return
        except (FileNotFoundError, FileExistsError):
            continue
    raise DiffucoderError(f"{rank_dir}: its parent was removed {attempts} times while creating it")


def _remove(rank_dir: Path) -> None:
    """Remove a rank's staging / restore dir, and their parent once no rank's is left in it."""
    shutil.rmtree(rank_dir, ignore_errors=True)
    with contextlib.suppress(OSError):   # another rank's dir is still there (it removes the parent)
        rank_dir.parent.rmdir()


def _merge_missing(source: Path, dest: Path) -> None:
    """Copy rank 0's engine files (model, schedule) beside this rank's own partition files."""
    if not source.is_dir():
        return
    for path in source.rglob("*"):
        if path.is_file():
            out = dest / path.relative_to(source)
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
