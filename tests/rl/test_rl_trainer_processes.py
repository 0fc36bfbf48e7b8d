"""The RL trainer as processes: kill -9 mid-run and resume (bit-identical), and 2-rank gloo DDP."""
import contextlib
import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from diffucoder.store import open_store
from tests.rl.rl_trainer_helpers import make_model_dir, make_suite, micro_overrides

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
DDP = ["distributed.backend=ddp", "distributed.dist_backend=gloo", "reward.workers=1"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-processes")
    return make_model_dir(root / "sft"), make_suite(root / "tasks")


def command(assets, tmp_path, name: str, steps: int, extra=(), launcher=()) -> list[str]:
    model_dir, suite = assets
    overrides = micro_overrides(model_dir, suite, tmp_path / f"work-{name}", steps, [
        f"checkpoint.uri={(tmp_path / f'ckpt-{name}').as_uri()}", "checkpoint.every_steps=2",
        "checkpoint.keep_last=2", "objective.ref_sync_every=2", "objective.beta=0.5", *extra])
    return [sys.executable, *launcher, "-m", "diffucoder.cli", "rl", "train", "--config", "configs/tiny-cpu/rl.yaml",
            *overrides]


def paused(cmd: list[str], pause: int) -> list[str]:
    """The same run, stopping after RL step ``pause`` (``tests.training.paused_run``)."""
    at = cmd.index("diffucoder.cli")
    return [*cmd[:at], "tests.training.paused_run", "--pause-after", str(pause), *cmd[at + 1:]]


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def kill_when_paused(cmd, pause: int, timeout: float = 240.0) -> None:
    """Start ``cmd`` stopping after step ``pause``; SIGKILL it and every child once it pauses."""
    proc = subprocess.Popen(paused(cmd, pause), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            if f"paused after step {pause}" in line:
                break
            assert time.monotonic() < deadline, "the run never reached the pause point"
        else:
            pytest.fail(f"the run ended before pausing (exit {proc.wait()})")
    finally:
        root = psutil.Process(proc.pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def weights(workdir):
    return load_file(workdir / "model" / "model.safetensors")


def summary_of(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):stdout.index("\nmodel: ")])


@pytest.mark.integration
def test_kill_and_resume_is_bit_identical(assets, tmp_path):
    straight = summary_of(run(command(assets, tmp_path, "straight", 5)).stdout)
    killed = command(assets, tmp_path, "killed", 5)
    kill_when_paused(killed, pause=3)
    assert open_store(tmp_path / "ckpt-killed").list_artifacts("step-") == ["step-00000002"]
    assert not (tmp_path / "work-killed" / "model").exists()
    resumed = summary_of(run(killed).stdout)
    assert resumed["resumed_from_step"] == 2 and straight["resumed_from_step"] == 0
    a, b = weights(tmp_path / "work-straight"), weights(tmp_path / "work-killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(r) for r in (tmp_path / "work-killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]       # one continuous curve
    assert resumed["rollouts"] == straight["rollouts"] == 20


@pytest.mark.integration
@pytest.mark.distributed
def test_ddp_two_ranks_agree_and_resume(assets, tmp_path):
    out = run(command(assets, tmp_path, "ddp", 3, DDP, TORCHRUN)).stdout
    first = summary_of(out)
    assert first["world_size"] == 2 and first["ranks_agree"] is True and first["rollouts"] == 12
    before = weights(tmp_path / "work-ddp")
    store = open_store(tmp_path / "ckpt-ddp")
    assert store.list_artifacts("step-") == ["step-00000002", "step-00000002-rank-00001"]
    # resuming after the last checkpoint reruns step 3 on both ranks and lands on the same weights
    again = summary_of(run(command(assets, tmp_path, "ddp", 3, DDP, TORCHRUN)).stdout)
    assert again["resumed_from_step"] == 2 and again["ranks_agree"] is True
    after = weights(tmp_path / "work-ddp")
    assert all(torch.equal(before[k], after[k]) for k in before)
