"""Kill -9 during training, restart: the final weights are bit-identical to an uninterrupted run."""
import contextlib
import os
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
from tests.training.training_helpers import make_shards, micro_overrides

STEPS, EVERY, PAUSE = 8, 3, 5   # checkpoints at 3 and 6; killed after step 5 -> resume from 3


def recipe_file(tmp_path: Path, data: Path, name: str, extra=()) -> Path:
    """The recipe as YAML: the same for every run but for its checkpoint and output places."""
    tree: dict = {}
    overrides = micro_overrides(str(data), tmp_path / f"work-{name}", STEPS, [
        f"checkpoint.uri={(tmp_path / f'ckpt-{name}').as_uri()}", f"checkpoint.every_steps={EVERY}",
        "checkpoint.keep_last=2", "train.eval_batches=0", "diffusion.anneal_steps=4",
        "diffusion.truncate_prob=0.2", "diffusion.prefix_prob=0.2", *extra])
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


def command(recipe: Path, launcher=(), pause_after: int = 0) -> list[str]:
    """``diffucoder pretrain``, or (``pause_after``) the same recipe stopping after that step."""
    entry = ["tests.training.paused_run", "--pause-after", str(pause_after)] if pause_after else ["diffucoder.cli"]
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
            if f"paused after step {PAUSE}" in line:
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


@pytest.mark.integration
def test_kill_and_resume_is_bit_identical(tmp_path):
    data = make_shards(tmp_path / "curated")
    run(command(recipe_file(tmp_path, data, "straight")))
    interrupted = recipe_file(tmp_path, data, "killed")
    kill_when_paused(command(interrupted, pause_after=PAUSE))
    ckpts = open_store(tmp_path / "ckpt-killed").list_artifacts("step-")
    assert ckpts == ["step-00000003"]          # step 6 was never reached: nothing half-written
    assert not (tmp_path / "work-killed" / "model").exists()
    resumed = run(command(interrupted))
    assert '"resumed_from_step": 3' in resumed.stdout
    straight, after = weights(tmp_path / "work-straight"), weights(tmp_path / "work-killed")
    assert_bit_identical(straight, after)
    # the curve continues where it stopped: one row per step, none repeated or missing
    rows = (tmp_path / "work-killed" / "metrics.jsonl").read_text().splitlines()
    assert [yaml.safe_load(r)["step"] for r in rows] == list(range(1, STEPS + 1))
    assert open_store(tmp_path / "ckpt-killed").list_artifacts("step-") == ["step-00000003", "step-00000006"]


@pytest.mark.integration
@pytest.mark.distributed
def test_ddp_kill_and_resume_is_bit_identical(tmp_path):
    data = make_shards(tmp_path / "curated")
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    ddp = ["distributed.backend=ddp", "distributed.dist_backend=gloo", "train.threads=1"]
    run(command(recipe_file(tmp_path, data, "straight", ddp), torchrun))
    interrupted = recipe_file(tmp_path, data, "killed", ddp)
    kill_when_paused(command(interrupted, torchrun, pause_after=PAUSE))
    assert open_store(tmp_path / "ckpt-killed").list_artifacts("step-") == [
        "step-00000003", "step-00000003-rank-00001"]
    resumed = run(command(interrupted, torchrun))
    assert '"resumed_from_step": 3' in resumed.stdout
    assert '"ranks_agree": true' in resumed.stdout     # both DDP replicas hold the same weights
    assert_bit_identical(weights(tmp_path / "work-straight"), weights(tmp_path / "work-killed"))
