"""Kill -9 during training, restart: the final weights are bit-identical to an uninterrupted run,
the metrics curve and the checkpointed state are the straight run's, and nothing is left behind."""
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

from diffucoder.store import open_store
from diffucoder.store.manifest import MANIFEST_NAME, VERSIONS_DIR
from tests.training.training_helpers import make_shards, micro_overrides

STEPS, EVERY, PAUSE = 8, 3, 5   # checkpoints at 3 and 6; killed after step 5 -> resume from 3
LOG_EVERY = 2                   # a log line spans a checkpoint: its sums must survive the kill
SAVE_KILL_SEED = 22             # draws where inside a checkpoint write the kill lands
TIMINGS = ("tokens_per_s", "flops_per_s", "mfu")


def recipe_file(tmp_path: Path, data: Path, name: str, extra=()) -> Path:
    """The recipe as YAML: the same for every run but for its checkpoint and output places."""
    tree: dict = {}
    overrides = micro_overrides(str(data), tmp_path / f"work-{name}", STEPS, [
        f"checkpoint.uri={(tmp_path / f'ckpt-{name}').as_uri()}", f"checkpoint.every_steps={EVERY}",
        "checkpoint.keep_last=2", "train.eval_batches=0", "diffusion.anneal_steps=4",
        "diffusion.truncate_prob=0.2", "diffusion.prefix_prob=0.2", f"train.log_every={LOG_EVERY}", *extra])
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def command(recipe: Path, launcher=(), pause: tuple[str, ...] = ()) -> list[str]:
    """``diffucoder pretrain``, or (``pause``: ``tests.training.paused_run`` arguments) the same recipe
    stopping at a chosen moment."""
    entry = ["tests.training.paused_run", *pause] if pause else ["diffucoder.cli"]
    return [sys.executable, *launcher, "-m", *entry, "pretrain", "--config", str(recipe)]


def run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun puts each worker in its own session)."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def kill_when_paused(cmd, env=None, timeout=240.0):
    """Start ``cmd`` (a paused run); SIGKILL it and all its processes once it pauses."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            if line.startswith("paused "):
                break
            assert time.monotonic() < deadline, "the run never reached the pause point"
        else:
            pytest.fail(f"the run ended before pausing (exit {proc.wait()})")
    finally:
        kill_tree(proc.pid)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def weights(workdir: Path) -> dict[str, torch.Tensor]:
    return load_file(workdir / "model" / "model.safetensors")


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"


def curve(workdir: Path) -> list[dict]:
    """The metrics log without its timings (they never agree between two runs)."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def saved_state(ckpt: Path, step: int, scratch: Path) -> dict:
    """Rank 0's train state in the checkpoint of ``step``, but its wall-clock and metrics rows."""
    open_store(ckpt).get_artifact(f"step-{step:08d}", scratch / "ckpt", overwrite=True)
    state = torch.load(scratch / "ckpt" / "train_state.pt", weights_only=True)
    return {k: v for k, v in state.items() if k not in ("train_seconds", "metrics")}


def assert_same_state(a, b, where="state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, where


def store_debris(root: Path) -> list[str]:
    """What a checkpoint store holds beyond whole checkpoints: dead writers' temp files, names
    without a manifest, versions no manifest names."""
    store = open_store(root)
    found = [f"temp {p.name}" for p in (root / ".tmp").glob("*")] if (root / ".tmp").is_dir() else []
    versions: dict[str, set[str]] = {}
    for info in store.backend.list(""):
        if f"/{VERSIONS_DIR}/" in info.key:
            name, rest = info.key.split(f"/{VERSIONS_DIR}/", 1)
            versions.setdefault(name, set()).add(rest.split("/", 1)[0])
    for name, held in versions.items():
        if not (root / name / MANIFEST_NAME).is_file():
            found.append(f"{name}: no manifest")
        else:
            found += [f"{name}@{v}" for v in held - {store.read_manifest(name).version}]
    return found


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted run, shared by the single-process tests."""
    root = tmp_path_factory.mktemp("resume")
    data = make_shards(root / "curated")
    run(command(recipe_file(root, data, "straight")))
    return root, data


@pytest.mark.integration
def test_kill_and_resume_is_bit_identical(straight, tmp_path):
    root, data = straight
    interrupted = recipe_file(tmp_path, data, "killed")
    kill_when_paused(command(interrupted, pause=("--pause-after", str(PAUSE))))
    ckpts = open_store(tmp_path / "ckpt-killed").list_artifacts("step-")
    assert ckpts == ["step-00000003"]          # step 6 was never reached: nothing half-written
    assert not (tmp_path / "work-killed" / "model").exists()
    resumed = run(command(interrupted))
    assert '"resumed_from_step": 3' in resumed.stdout
    assert_bit_identical(weights(root / "work-straight"), weights(tmp_path / "work-killed"))
    # the curve continues where it stopped, each logged step once, with the straight run's values:
    # the line of step 4 averages steps 3 and 4 although step 3 ran in the killed process
    assert [row["step"] for row in curve(tmp_path / "work-killed")] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert curve(tmp_path / "work-killed") == curve(root / "work-straight")
    assert open_store(tmp_path / "ckpt-killed").list_artifacts("step-") == ["step-00000003", "step-00000006"]


@pytest.mark.integration
def test_a_kill_inside_a_checkpoint_write_resumes_exactly_and_leaves_nothing(straight, tmp_path):
    """SIGKILL inside rank 0's publish of the second checkpoint (after how many of its five files:
    drawn from a fixed seed), then rerun: the half-written checkpoint was never visible, the run
    resumes from the first and ends bit-identical, with the straight run's state in both
    checkpoints, and the kill's debris (the upload without a manifest, the staging dir) is gone."""
    root, data = straight
    step, uploaded = 2 * EVERY, random.Random(SAVE_KILL_SEED).randint(1, 5)
    interrupted = recipe_file(tmp_path, data, "killed")
    kill_when_paused(command(interrupted, pause=("--pause-in-save", str(step), "--at", f"uploaded:{uploaded}")))
    ckpt = tmp_path / "ckpt-killed"
    visible = open_store(ckpt).list_artifacts("step-")
    assert f"step-{step:08d}" not in visible and visible == [f"step-{s:08d}" for s in range(EVERY, step, EVERY)]
    assert any(d.startswith(f"step-{step:08d}") for d in store_debris(ckpt))   # the kill hit the write
    resumed = run(command(interrupted))
    assert f'"resumed_from_step": {step - EVERY}' in resumed.stdout
    assert_bit_identical(weights(root / "work-straight"), weights(tmp_path / "work-killed"))
    assert curve(tmp_path / "work-killed") == curve(root / "work-straight")
    for saved in (EVERY, 2 * EVERY):   # every random stream, the data position, the log-line sums
        assert_same_state(saved_state(root / "ckpt-straight", saved, tmp_path / f"a{saved}"),
                          saved_state(ckpt, saved, tmp_path / f"b{saved}"), f"step {saved}")
    assert store_debris(ckpt) == []
    assert sorted(p.name for p in (tmp_path / "work-killed").iterdir()) == ["metrics.jsonl", "model"]


@pytest.mark.integration
@pytest.mark.distributed
def test_ddp_kill_and_resume_is_bit_identical(tmp_path):
    data = make_shards(tmp_path / "curated")
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    ddp = ["distributed.backend=ddp", "distributed.dist_backend=gloo", "train.threads=1"]
    run(command(recipe_file(tmp_path, data, "straight", ddp), torchrun))
    interrupted = recipe_file(tmp_path, data, "killed", ddp)
    kill_when_paused(command(interrupted, torchrun, pause=("--pause-after", str(PAUSE))))
    assert open_store(tmp_path / "ckpt-killed").list_artifacts("step-") == [
        "step-00000003", "step-00000003-rank-00001"]
    resumed = run(command(interrupted, torchrun))
    assert '"resumed_from_step": 3' in resumed.stdout
    assert '"ranks_agree": true' in resumed.stdout     # both DDP replicas hold the same weights
    assert_bit_identical(weights(tmp_path / "work-straight"), weights(tmp_path / "work-killed"))
    assert store_debris(tmp_path / "ckpt-killed") == []
