"""One pool worker: a zygote process inside the isolation boundary, restarted if it dies.

    worker = Worker(0, choose_launch(cfg), cfg)
    worker.start()
    status, report, out, err = worker.execute(job)
    worker.stop()

The parent never trusts the zygote's timing: every read has a deadline (the job's timeout
plus a grace period); a zygote that misses it, dies or speaks garbage is killed with its
whole process group, its uids are swept, and the job is reported as such.
"""
from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.inside import wire
from diffucoder.sandbox.isolation import CHILD_ENV, Launch
from diffucoder.sandbox.uids import UidLease

START_TIMEOUT_S = 60.0
GRACE_S = 10.0


@dataclass
class Job:
    header: dict
    program: bytes
    plan: bytes


class Worker:
    def __init__(self, index: int, launch: Launch, cfg: SandboxConfig):
        self.index, self.launch, self.cfg = index, launch, cfg
        self.proc: subprocess.Popen | None = None
        self.lease: UidLease | None = None
        self.hostdir: str | None = None
        self.log = None
        self._inbox = bytearray()

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        if self.launch.switch_uid and self.lease is None:
            self.lease = UidLease.acquire(self.cfg.uid_base)
        uids = ((self.lease.runner_uid, self.lease.candidate_uid) if self.lease
                else (os.getuid(), os.getuid()))
        if self.launch.layer == "bwrap":
            workdir, scratch = "/tmp/job", []
        else:
            if self.hostdir is None:
                self.hostdir = tempfile.mkdtemp(prefix="diffucoder-sandbox-")
                os.chmod(self.hostdir, 0o711)  # the job's uid may pass through, not list
            workdir, scratch = os.path.join(self.hostdir, "job"), ["/tmp", "/var/tmp", "/dev/shm"]
        self.log = tempfile.TemporaryFile()
        self._inbox = bytearray()
        self.proc = subprocess.Popen(self.launch.argv(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=CHILD_ENV,
                                     start_new_session=True, bufsize=0)
        settings = {"runner_uid": uids[0], "candidate_uid": uids[1],
                    "switch_uid": self.launch.switch_uid,
                    "pid_namespace": self.launch.pid_namespace, "workdir": workdir,
                    "scratch_dirs": scratch, "report_limit": self.cfg.report_mb << 20,
                    "output_limit": self.cfg.output_kb << 10,
                    "runner_limits": {"memory_bytes": max(self.cfg.memory_mb, 256) << 20,
                                      "processes": self.cfg.max_processes,
                                      "open_files": self.cfg.max_open_files,
                                      "file_bytes": self.cfg.max_file_mb << 20}}
        try:
            wire.send_frame(self.proc.stdin.fileno(), wire.encode(settings))
            hello = wire.decode(self._recv(1 << 16, time.monotonic() + START_TIMEOUT_S))
        except (OSError, EOFError, TimeoutError, wire.WireError) as err:
            detail = self.stderr_tail()
            self.stop(release=False)
            raise RuntimeError(f"sandbox worker did not start: {err} {detail}".strip()) from None
        if not (type(hello) is tuple and hello[:1] == ("hello",)):
            self.stop(release=False)
            raise RuntimeError(f"sandbox worker sent {hello!r} instead of hello")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, limit: int = 600) -> str:
        if self.log is None:
            return ""
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - limit))
        return self.log.read().decode(errors="replace").strip()

    def stop(self, release: bool = True) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                stream.close()
            self.proc = None
            if self.lease is not None and not self.launch.pid_namespace:
                self._kill_uid_leftovers()
        if self.log is not None:
            self.log.close()
            self.log = None
        if release:
            if self.hostdir is not None:
                shutil.rmtree(self.hostdir, ignore_errors=True)
                self.hostdir = None
            if self.lease is not None:
                self.lease.release()
                self.lease = None

    def _kill_uid_leftovers(self) -> None:
        """Without a PID namespace, processes of our uids can outlive the zygote."""
        for uid in (self.lease.runner_uid, self.lease.candidate_uid):
            subprocess.run([self.launch.python, "-I", "-S", "-c",
                            "import os, signal\ntry: os.kill(-1, signal.SIGKILL)\n"
                            "except ProcessLookupError: pass"],
                           user=uid, group=uid, extra_groups=[], env=CHILD_ENV, check=False)

    # --- one job ------------------------------------------------------------------------
    def execute(self, job: Job) -> tuple:
        started = time.monotonic()
        try:
            if not self.alive():
                self.stop(release=False)
                self.start()
            header = wire.encode(job.header)
            wire.write_all(self.proc.stdin.fileno(), wire.HEADER.pack(len(header)), header,
                           job.program, job.plan)
            deadline = time.monotonic() + job.header["timeout_s"] + GRACE_S
            status = wire.decode(self._recv(1 << 20, deadline))
            limits = (self.cfg.report_mb << 20, self.cfg.output_kb << 10, self.cfg.output_kb << 10)
            blobs = tuple(self._recv(limit, deadline) for limit in limits)
        except (OSError, EOFError, TimeoutError, wire.WireError, RuntimeError) as err:
            timed_out = isinstance(err, TimeoutError)
            detail = ("the sandbox worker did not answer in time" if timed_out
                      else f"the sandbox worker died: {err} {self.stderr_tail()}".strip())
            self.stop(release=False)
            status = {"outcome": "worker_timeout" if timed_out else "worker_died",
                      "detail": detail, "elapsed_s": time.monotonic() - started}
            return status, b"", b"", b""
        return (status, *blobs)

    def _recv(self, limit: int, deadline: float) -> bytes:
        (n,) = wire.HEADER.unpack(self._read_exact(4, deadline))
        if n > limit:
            raise wire.WireError(f"frame of {n} bytes exceeds {limit}")
        return self._read_exact(n, deadline)

    def _read_exact(self, n: int, deadline: float) -> bytes:
        """``n`` bytes from the zygote; reads ahead in large chunks (one wake-up per result)."""
        fd = self.proc.stdout.fileno()
        while len(self._inbox) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("sandbox worker timed out")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, max(n - len(self._inbox), 1 << 16))
            if not chunk:
                raise EOFError("sandbox worker closed its output")
            self._inbox += chunk
        data = bytes(self._inbox[:n])
        del self._inbox[:n]
        return data
