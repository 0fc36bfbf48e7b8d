"""The zygote: one long-lived process per pool worker, inside the isolation boundary.

It imports the interpreter's common modules once and keeps one test runner (uid U) alive.
For every job it forks a fresh candidate (uid U+1) that runs the untrusted program, hands
the runner the tests and one end of a socket to the candidate, supervises both against a
wall-clock deadline, kills every process of the job, removes its directory and answers.

Parent -> zygote on stdin: a settings frame once, then per job a header frame followed by
the program's UTF-8 bytes and the encoded plan (raw, lengths in the header).
Zygote -> parent on stdout: ("hello", python_version, switches_uid) once, then per job a
status frame and three raw frames: runner report, candidate stdout, candidate stderr.

Secrecy: the program and plan pass through buffers that are wiped once handed on, and the
plan is read only after the candidate is forked, so no candidate (a copy of this process)
ever holds its own tests, nor any earlier job's data; the buffers that collect reports and
output are not inherited by children at all (MADV_DONTFORK), which also keeps each fork cheap.
The zygote never decodes reports.
"""
import contextlib
import gc
import importlib
import mmap
import os
import select
import signal
import socket
import sys
import time

from . import candidate, cleanup, spawn, wire
from . import runner as test_runner

SETTINGS_LIMIT = HEADER_LIMIT = 1 << 20
# Not ``threading``: once imported, its at-fork hook runs in every candidate (measured: some 45
# more copied pages and 0.1 ms more CPU per candidate), for the few programs that use threads.
PRELOAD = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
           "random", "typing", "copy", "statistics", "fractions", "decimal", "datetime",
           "json", "hashlib", "operator", "array", "dataclasses", "enum", "textwrap",
           "unicodedata", "traceback", "io", "struct", "numbers", "cmath", "ast")


def private_buffer(size: int):
    """Zeroed memory that no child inherits (MADV_DONTFORK): a job's report never reaches a later
    candidate, not even wiped, and forks stay cheap (no page tables to copy for it). Pages are
    only made resident as reports fill them."""
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    dontfork = getattr(mmap, "MADV_DONTFORK", None)
    if dontfork is not None:
        buf.madvise(dontfork)
    return buf


class Zygote:
    def __init__(self, settings: dict):
        self.runner_uid, self.candidate_uid = settings["runner_uid"], settings["candidate_uid"]
        self.switch_uid = bool(settings["switch_uid"]) and os.geteuid() == 0
        self.pid_namespace = bool(settings["pid_namespace"])
        self.workdir = settings["workdir"]
        spawn.use_environment(self.workdir)  # every candidate works there: it inherits its environment
        # sweeping shared scratch dirs is only safe for a uid that belongs to the sandbox
        self.scratch_dirs = list(settings["scratch_dirs"]) if self.switch_uid else []
        self.runner_limits = settings["runner_limits"]
        self.buffers = {"report": private_buffer(settings["report_limit"]),
                        "out": private_buffer(settings["output_limit"]),
                        "err": private_buffer(settings["output_limit"])}
        self.spill = bytearray(65536)
        self.pid = os.getpid()
        self.runner_pid, self.runner_sock = 0, None
        self.spare = None  # (pid, control fd, runner's link end, stdout fd, stderr fd)

    # --- children ---------------------------------------------------------------------
    def _spawn(self, body, fds: dict, uid: int, limits, cwd: str) -> int:
        return spawn.fork_child(body, fds, uid if self.switch_uid else None, limits, cwd)

    def ensure_runner(self) -> None:
        if self.runner_sock is not None:
            return
        mine, theirs = socket.socketpair()
        null = os.open(os.devnull, os.O_RDWR)
        self.runner_pid = self._spawn(lambda: test_runner.serve_forever(3),
                                     {0: null, 1: null, 2: 2, 3: theirs.fileno()},
                                     self.runner_uid, self.runner_limits, "/")
        os.close(null)
        theirs.close()
        self.runner_sock = mine

    def stop_runner(self) -> None:
        if self.runner_sock is not None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.runner_pid, signal.SIGKILL)
                os.waitpid(self.runner_pid, 0)
            self.runner_sock.close()
            self.runner_sock, self.runner_pid = None, 0

    # --- one job ----------------------------------------------------------------------
    def prepare(self) -> None:
        """Fork the next job's candidate ahead of time, idle until it is given a program.

        It is forked after the previous job's data was wiped and before the next job is
        read, so it holds nothing but the code of this module; rlimits come with the job.
        """
        self.ensure_runner()
        if self.spare is not None:
            return
        cleanup.remove_tree(self.workdir)
        os.mkdir(self.workdir, 0o700)
        if self.switch_uid:
            os.chown(self.workdir, self.candidate_uid, self.candidate_uid)
        link_runner, link_candidate = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        cpid = self._spawn(_candidate_main,
                          {0: null, 1: out_w, 2: err_w, 3: link_candidate.fileno(), 4: ctl_r},
                          self.candidate_uid, None, self.workdir)
        for fd in (out_w, err_w, ctl_r, null):
            os.close(fd)
        link_candidate.close()
        self.spare = (cpid, ctl_w, link_runner, out_r, err_r)

    def run_job(self, header: dict) -> dict:
        self.prepare()
        (cpid, ctl_w, link_runner, out_r, err_r), self.spare = self.spare, None
        program = bytearray(header["program_len"])
        wire.read_into(0, program)
        start = time.monotonic()
        deadline = start + header["timeout_s"]
        # the candidate applies the limits, then runs the program; if it died idle, the runner finds it gone
        with contextlib.suppress(OSError):
            wire.send_frames(ctl_w, [wire.encode(header["limits"]), program])
        os.close(ctl_w)
        wire.wipe(program)
        plan = bytearray(header["plan_len"])
        wire.read_into(0, plan)
        socket.send_fds(self.runner_sock, [b"J" + wire.HEADER.pack(len(plan))],
                        [link_runner.fileno()])
        link_runner.close()
        wire.write_all(self.runner_sock.fileno(), plan)
        wire.wipe(plan)
        sinks = {self.runner_sock.fileno(): "report", out_r: "out", err_r: "err"}
        used = dict.fromkeys(sinks.values(), 0)
        outcome, marker = self._supervise(deadline, sinks, used)
        cand = None
        if marker == test_runner.GONE:  # the candidate ended mid-test: learn how
            cand = self._reap(cpid, min(deadline, time.monotonic() + 1.0))
        elif marker == test_runner.END:
            cand = self._reap(cpid, 0)
        if outcome != "finished":  # a runner stuck in test code, or one that died
            self.stop_runner()
        if cand is None:  # still running when the job ended (normal) or at the deadline
            cleanup.kill_groups([cpid])
            cand = self._reap(cpid, None)
            if cand["status"] == ["signal", signal.SIGKILL]:
                cand["status"] = ["killed"]
        self._kill_job(cpid)  # its descendants, wherever they went
        cleanup.reap_orphans()
        self._drain([out_r, err_r], sinks, used, time.monotonic() + 0.5)
        cleanup.remove_tree(self.workdir)
        if self.scratch_dirs:
            cleanup.sweep_scratch(self.scratch_dirs, self.candidate_uid)
        return {"outcome": outcome, "elapsed_s": time.monotonic() - start, "candidate": cand,
                "used": used}

    def _supervise(self, deadline: float, sinks: dict, used: dict) -> tuple:
        """Collect output until the runner's end-of-job frame: (outcome, marker). When the
        job ends otherwise, the report is cut back to its complete records."""
        outcome, marker, complete = self._collect(deadline, sinks, used)
        buf = self.buffers["report"]
        buf[complete:used["report"]] = bytes(used["report"] - complete)
        used["report"] = complete
        return outcome, marker

    def _collect(self, deadline: float, sinks: dict, used: dict) -> tuple:
        report_fd = self.runner_sock.fileno()
        scan = 0  # frames before ``scan`` in the report buffer are complete records
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None, scan
            ready, _, _ = select.select(list(sinks), [], [], remaining)
            for fd in ready:
                if not self._read_some(fd, sinks, used):
                    return "overflow", None, scan
                if fd != report_fd:
                    continue
                if report_fd not in sinks:
                    return "runner_died", None, scan
                buf = self.buffers["report"]
                while scan + 4 <= used["report"]:
                    (n,) = wire.HEADER.unpack_from(buf, scan)
                    if scan + 4 + n > used["report"]:
                        break
                    if n == 1:  # END / GONE: not part of the report
                        del sinks[report_fd]
                        return "finished", bytes(buf[scan + 4:scan + 5]), scan
                    scan += 4 + n

    def _read_some(self, fd: int, sinks: dict, used: dict) -> bool:
        """Read what is there into the sink's buffer; False when a full report overflows."""
        name = sinks[fd]
        buf, n_used = self.buffers[name], used[name]
        if n_used < len(buf):
            n = os.readv(fd, [memoryview(buf)[n_used:]])
            used[name] += n
        else:
            n = os.readv(fd, [self.spill])
            if n and name == "report":
                return False
        if n == 0:
            del sinks[fd]
            if name != "report":
                os.close(fd)
        return True

    def _drain(self, fds: list, sinks: dict, used: dict, deadline: float) -> None:
        open_fds = [fd for fd in fds if fd in sinks]
        while open_fds and time.monotonic() < deadline:
            ready, _, _ = select.select(open_fds, [], [], max(0.0, deadline - time.monotonic()))
            for fd in ready:
                self._read_some(fd, sinks, used)
            open_fds = [fd for fd in fds if fd in sinks]
        for fd in open_fds:
            os.close(fd)
            del sinks[fd]

    def _reap(self, pid: int, deadline):
        """wait4 on ``pid``: blocking (None), polling until ``deadline``, or just once (0)."""
        while True:
            got, status, usage = os.wait4(pid, 0 if deadline is None else os.WNOHANG)
            if got or deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(0.0005)
        if not got:
            return None
        state = (["signal", os.WTERMSIG(status)] if os.WIFSIGNALED(status)
                 else ["exit", os.WEXITSTATUS(status)])
        return {"status": state, "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_kb": usage.ru_maxrss}

    def _kill_job(self, cpid: int) -> None:
        """Kill every process of the job (the candidate, its descendants, even setsid ones) and
        wait for them to go: the PID namespace's, else the candidate uid's, else (one uid, no
        namespace) everything below this subreaper but the runner."""
        if self.pid_namespace:
            cleanup.wait_gone(cleanup.kill_namespace_except({1, self.pid, self.runner_pid}))
        elif self.switch_uid:
            cleanup.as_uid(self.candidate_uid, cleanup.kill_all_of_my_uid)
        else:
            cleanup.kill_groups([cpid])
            cleanup.wait_gone(cleanup.kill_descendants(self.pid, {self.runner_pid}))

    def send_result(self, status: dict) -> None:
        names = ("report", "out", "err")
        views = [memoryview(self.buffers[name])[:status["used"][name]] for name in names]
        wire.send_frames(1, [wire.encode(status)] + views)
        for name, view in zip(names, views):
            view.release()
            self.buffers[name][:status["used"][name]] = bytes(status["used"][name])


def main() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # jobs get every signal, whatever our parent blocked
    spawn.prctl(spawn.PR_SET_DUMPABLE, 0)  # no ptrace or /proc/<pid>/mem for same-uid processes
    spawn.prctl(spawn.PR_SET_CHILD_SUBREAPER, 1)  # a job's orphans come back to us, to be reaped
    settings = wire.decode(wire.recv_frame(0, SETTINGS_LIMIT))
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    zygote = Zygote(settings)
    gc.freeze()  # forks then do not copy pages just to scan these objects
    zygote.prepare()
    wire.send_frame(1, wire.encode(("hello", sys.version.split()[0], zygote.switch_uid)))
    while True:
        frame = wire.recv_frame(0, HEADER_LIMIT)
        if frame is None:
            return
        zygote.send_result(zygote.run_job(wire.decode(frame)))
        zygote.prepare()  # next candidate (and runner, if replaced): off the critical path


def _candidate_main() -> int:
    """In a spare candidate: wait for the job's limits and program on fd 4, then serve."""
    head = wire.recv_frame(4, HEADER_LIMIT)
    if head is None:
        return 0
    limits = wire.decode(head)
    program = wire.recv_frame(4, 1 << 30)
    os.close(4)
    cleanup.apply_limits(limits)
    candidate.serve(3, program.decode("utf-8", "surrogatepass"))
    return 0
