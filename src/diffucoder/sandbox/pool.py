"""The sandbox pool: warm workers, a bounded job queue, verdicts decided here.

    with Sandbox(SandboxConfig(timeout_s=5)) as sb:
        result = sb.run("def add(a, b): return a + b", "assert add(1, 2) == 3")
        results = sb.run_many([(program, tests, "add") for program in programs])
        future = sb.submit(program, tests, "add")      # blocks while the queue is full

One thread per worker takes jobs from the queue, so up to ``workers`` programs run at
once (default: one per core); ``submit`` blocks when ``queue_size`` jobs are waiting.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from concurrent.futures import Future
from queue import Queue

from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.isolation import choose_launch, tasks_of_uid
from diffucoder.sandbox.results import RunResult, SandboxError
from diffucoder.sandbox.testplan import Plan, build_plan
from diffucoder.sandbox.verdicts import decide
from diffucoder.sandbox.worker import Job, Worker


def checked_timeout(program, timeout_s: float | None, default_s: float) -> float:
    """The run's timeout, after checking the request's program and timeout (the pool's and the client's rule)."""
    if not isinstance(program, str):
        raise SandboxError(f"program must be a string, got {type(program).__name__}")
    timeout = default_s if timeout_s is None else float(timeout_s)
    if not 0 < timeout <= 3600:
        raise SandboxError(f"timeout_s must be in (0, 3600], got {timeout_s!r}")
    return timeout


class RunsSubmitted:
    """``run`` / ``run_many`` on top of a ``submit`` whose Future holds a RunResult (the in-process
    pool and the service client share them)."""

    def run(self, program: str, tests, entry_point: str | None = None,
            timeout_s: float | None = None) -> RunResult:
        """Run ``program`` against ``tests`` (asserts, check() source or TestCase list)."""
        return self.submit(program, tests, entry_point, timeout_s).result()

    def run_many(self, items, timeout_s: float | None = None) -> list[RunResult]:
        """Run ``(program, tests[, entry_point])`` items concurrently; results in order."""
        futures = []
        for number, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise SandboxError(f"item {number}: expected (program, tests[, entry_point])")
            futures.append(self.submit(*item, timeout_s=timeout_s))
        return [f.result() for f in futures]


class Sandbox(RunsSubmitted):
    """A pool of isolated workers; ``Sandbox(cfg)`` or ``Sandbox(timeout_s=3, workers=4)``."""

    def __init__(self, config: SandboxConfig | None = None, **overrides):
        cfg = dataclasses.replace(config or SandboxConfig(), **overrides)
        cfg.validate()
        self.config = cfg
        self.launch = choose_launch(cfg)
        self.isolation = self.launch.name
        # without uids of its own, a program shares RLIMIT_NPROC with all of the user's threads
        self._process_allowance = cfg.max_processes + (
            0 if self.launch.switch_uid else tasks_of_uid(os.getuid()))
        self._jobs: Queue = Queue(maxsize=cfg.queue_limit)
        self._closed = False
        self._lock = threading.Lock()
        self._workers = [Worker(i, self.launch, cfg) for i in range(cfg.pool_size)]
        self._threads = [threading.Thread(target=self._serve, args=(w,), daemon=True,
                                          name=f"sandbox-worker-{w.index}")
                         for w in self._workers]
        for thread in self._threads:  # each worker is started by its own (long-lived)
            thread.start()            # thread: bwrap --die-with-parent follows that thread

    # --- public API -------------------------------------------------------------------
    def submit(self, program: str, tests, entry_point: str | None = None,
               timeout_s: float | None = None, memory_mb: int | None = None) -> Future:
        """Queue one run (blocks while the queue is full); the Future holds its RunResult.
        ``timeout_s`` / ``memory_mb`` override the config's for this run. Bad tests raise
        SandboxError here, before anything runs."""
        timeout = checked_timeout(program, timeout_s, self.config.timeout_s)
        plan = build_plan(tests, entry_point)
        memory = self.config.memory_mb if memory_mb is None else memory_mb
        if type(memory) is not int or not 32 <= memory <= 1 << 20:
            raise SandboxError(f"memory_mb must be an integer in [32, {1 << 20}], got {memory_mb!r}")
        cfg = self.config
        header = {"timeout_s": timeout, "limits": {
            "cpu_s": math.ceil(timeout) + 1, "memory_bytes": memory << 20,
            "processes": self._process_allowance, "file_bytes": cfg.max_file_mb << 20,
            "open_files": cfg.max_open_files}}
        program_bytes = program.encode("utf-8", "surrogatepass")
        plan_bytes = plan.encoded
        header.update(program_len=len(program_bytes), plan_len=len(plan_bytes))
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
        self._jobs.put(((Job(header, program_bytes, plan_bytes), plan), future))
        return future

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for a worker (not counting the ones running)."""
        return self._jobs.qsize()

    def describe(self) -> dict:
        """Where programs run, for reports: ``{"isolation": layer}``."""
        return {"isolation": self.isolation}

    def close(self) -> None:
        """Finish queued jobs, then stop every worker (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- worker threads ---------------------------------------------------------------
    def _serve(self, worker: Worker) -> None:
        # A failed start is reported with the first job, which retries it.
        with contextlib.suppress(Exception):
            worker.start()
        try:
            while True:
                item = self._jobs.get()
                if item is None:
                    return
                (job, plan), future = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(self._execute(worker, job, plan))
                except BaseException as err:  # a bug here must not hang the caller
                    future.set_exception(err)
        finally:
            worker.stop()

    def _execute(self, worker: Worker, job: Job, plan: Plan) -> RunResult:
        status, report, out, err = worker.execute(job)
        text = lambda raw: raw.decode("utf-8", "replace")  # noqa: E731
        runner_err = worker.stderr_tail() if status["outcome"] == "runner_died" else ""
        return decide(plan, status, report, text(out), text(err), runner_err,
                      self.isolation, job.header["timeout_s"], job.header["limits"]["cpu_s"],
                      self.config.message_chars)
