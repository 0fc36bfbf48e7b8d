"""The datatrove curation under faults: a full disk (also under its task logs) and a SIGKILL.

    pytest tests/data/test_data_trove_faults.py
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from data_corpora import small_config
from fsspec.implementations.local import LocalFileOpener

from diffucoder.cli import main
from diffucoder.data.curate import run_curate_task
from diffucoder.data.trove import task_tempdir
from diffucoder.store import open_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_tmp(monkeypatch) -> Iterator[Path]:
    """A TMPDIR with a short path, as machines have (/tmp): under pytest's long ``tmp_path``
    the curation keeps the tasks' temp files in TMPDIR itself (a Unix socket's path must fit
    in 107 bytes, ``trove.task_tempdir``)."""
    path = Path(tempfile.mkdtemp(prefix="dc-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fill_disk(monkeypatch, under: Path, only_logs: bool = False) -> Callable[[], None]:
    """The disk under ``under`` fills up just after a datatrove task wrote its log's first
    line: every later write through fsspec (how datatrove writes, its task logs included) to a
    file there fails with ENOSPC; with ``only_logs``, only the task logs' writes fail. Returns
    what frees the space again."""
    real_write = LocalFileOpener.write
    state = {"full": False, "freed": False}

    def write(self, *args, **kwargs):
        inside, log = self.path.startswith(f"{under}/"), self.path.endswith(".log")
        if inside and state["full"] and not state["freed"] and (log or not only_logs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = real_write(self, *args, **kwargs)
        state["full"] = state["full"] or (inside and log)
        return written
    monkeypatch.setattr(LocalFileOpener, "write", write)
    return lambda: state.update(freed=True)


def curate(tmp_path, *args: str) -> int:
    return main(["curate", "--config", str(tmp_path / "recipe.yaml"), "--no-progress",
                 "--output", f"file://{tmp_path}/store/curated", *args])


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_full_disk_is_one_clear_line_naming_where(corpus, tmp_path, short_tmp, monkeypatch,
                                                  capsys):
    small_config(tmp_path, [str(corpus)])
    scratch = short_tmp                        # run_curate's work dir and the tasks' temp dir
    free_space = fill_disk(monkeypatch, scratch)
    tmpdir_before = os.environ.get("TMPDIR")
    assert curate(tmp_path) == 2
    lines = error_lines(capsys)
    # no loguru "--- Logging error ---" from the task log, no traceback a task logged
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("diffucoder curate: error: No space left on device writing "
                               f"{scratch}/diffucoder-curate-")
    assert lines[0].split(" writing ")[1].split(":")[0].endswith("/trove")
    assert list(scratch.iterdir()) == []               # nothing half-written is left
    assert not open_store(tmp_path / "store").has_artifact("curated")
    assert os.environ.get("TMPDIR") == tmpdir_before and tempfile.gettempdir() == str(scratch)
    free_space()
    assert curate(tmp_path) == 0                         # the rerun publishes


def test_a_task_log_the_disk_refuses_fails_the_run_naming_the_log(corpus, tmp_path,
                                                                  monkeypatch, capsys):
    small_config(tmp_path, [str(corpus)])
    fill_disk(monkeypatch, tmp_path / "work", only_logs=True)
    assert curate(tmp_path, "--workdir", str(tmp_path / "work")) == 2
    lines = error_lines(capsys)
    assert lines == ["diffucoder curate: error: No space left on device writing "
                     f"{tmp_path}/work/trove/logs/select/logs/task_00000.log: free space and "
                     "rerun (published artifacts and checkpoints are whole or absent, never "
                     "partial)"]
    assert not open_store(tmp_path / "store").has_artifact("curated")
    # the task whose log was cut short is not marked complete
    assert not (tmp_path / "work" / "trove" / "logs" / "select" / "completions").exists()


def test_a_slice_clears_its_own_stale_temp_dir_only(corpus, tmp_path, short_tmp):
    cfg = small_config(tmp_path, [str(corpus)], "tasks=2")
    trove = tmp_path / "work" / "trove"
    mine, other = task_tempdir(trove, "select", range(0, 1)), task_tempdir(trove, "select",
                                                                           range(1, 2))
    for parent in (mine, other):
        (parent / "pymp-stale").mkdir(parents=True)
    run_curate_task(cfg, str(tmp_path / "work"), "select", 0)
    assert not mine.exists()                                  # a killed attempt's, cleared
    assert (other / "pymp-stale").is_dir()                    # another slice's: left alone
    assert (trove / "logs" / "select" / "completions" / "00000").is_file()


def pymp_dirs(*roots: Path) -> list[Path]:
    # os.walk, not rglob: it skips a dir removed while it looks (a stage's manager exiting)
    return [Path(top, name) for root in roots for top, dirs, _ in os.walk(root)
            for name in dirs if name.startswith("pymp-")]


def test_killed_curation_leaves_no_multiprocessing_dir_after_a_rerun(corpus, tmp_path,
                                                                    short_tmp):
    """A real subprocess SIGKILLed while a datatrove stage runs (its pool's manager process
    holds a ``pymp-*`` temp dir then), then rerun to the end: no ``pymp-*`` anywhere."""
    small_config(tmp_path, [str(corpus)])
    tmp, work = short_tmp, tmp_path / "work"
    argv = [sys.executable, "-m", "diffucoder.cli", "curate", "--config",
            str(tmp_path / "recipe.yaml"), "--workdir", str(work), "--no-progress",
            "--output", f"file://{tmp_path}/store/curated"]
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO / "src")}
    left: list[Path] = []
    for _attempt in range(3):      # the stage may end between seeing its dir and the kill
        proc = subprocess.Popen(argv, env=env, cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while proc.poll() is None and not pymp_dirs(tmp, work) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the curation ended before a stage began"
        left = pymp_dirs(tmp, work)
        if left:
            break
    assert left, "no kill landed while a stage's pool was up"
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert pymp_dirs(tmp, work) == []
