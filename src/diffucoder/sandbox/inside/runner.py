"""The test runner: runs the (trusted) tests against the candidate over a socket.

    serve_forever(control_fd=3)   # per job: receives (plan, link fd) from the zygote

One long-lived runner per worker, under its own uid and non-dumpable, so the candidate
cannot read or change its memory, builtins or channels. Each job gets a fresh scope.
Names the program defines become proxies: calling one sends plain-data arguments to the
candidate and returns its plain-data answer (or raises), so every value the tests see is
an exact built-in type decoded by the strict codec; an always-equal object or a rigged
subclass cannot exist on this side. Asserts are rewritten (``asserts``) to report the
values they compare, for the trusted parent to compare again.

Plan: {"source": test module text, "steps": [...]}. Steps: ("stmt", i) runs top-level
statement i of the source; ("exec", text, first_line) runs a snippet; ("call", name, args,
kwargs) calls one function and reports the value. Records (frames to the zygote):
("ready",), ("load_error", type, message), ("load_gone",),
("eq", step, line, left, right, note), ("true", step, line, ok, note), ("value", step, v),
("done", step), ("failed", step, line), ("error", step, type, message, from_candidate),
("gone", step), ("end",); then a one-byte frame closes the job: END, or GONE when the
candidate process ended before the tests did.
"""
import builtins
import os
import socket

from . import wire
from .asserts import EQ, TRUE, TestCode

REPLY_LIMIT = 256 << 20
NOTE_CHARS = 300
END, GONE = b"\x00", b"\x01"


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one (given by name)."""


class AssertFailed(AssertionError):
    """A rewritten assert did not hold (raised where Python's assert would raise)."""

    def __init__(self, line: int):
        super().__init__(f"assertion at line {line} failed")
        self.line = line


class CandidateGone(BaseException):
    """The candidate process ended; not an Exception, so test code cannot swallow it."""


def rebuild_exception(type_name: str, message: str) -> BaseException:
    """A built-in exception type by name (so ``except ValueError`` in tests works), else
    ``CandidateError``. Only classes from this process's builtins are ever instantiated."""
    cls = getattr(builtins, type_name, None)
    err = None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            err = cls(message)
        except Exception:
            err = None
    err = err or CandidateError(f"{type_name}: {message}")
    err.sbx_type = type_name  # which type the candidate raised, for the report
    return err


class Job:
    def __init__(self, link_fd: int, report_fd: int):
        self.link_fd, self.report_fd = link_fd, report_fd
        self.link = wire.FrameReader(link_fd)
        self.step = -1
        self.gone = False
        self.pending: list = []

    def report(self, *record) -> None:
        """Queue a record; records go out when a step ends (one write, one wake-up)."""
        self.queue(wire.encode(record))

    def queue(self, encoded: bytes) -> None:
        self.pending.append(encoded)
        if len(self.pending) >= 256:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            wire.send_frames(self.report_fd, self.pending)
            self.pending = []

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.gone:
            raise CandidateGone()
        try:
            request = wire.encode(("call", name, list(args), kwargs))
        except wire.WireError as err:
            raise TypeError(f"argument to {name}() cannot cross the sandbox: {err}") from None
        try:
            wire.send_frame(self.link_fd, request)
            reply = self.link.frame(REPLY_LIMIT)
        except (OSError, EOFError):
            reply = None
        if reply is None:
            self.gone = True
            raise CandidateGone()
        try:
            message = wire.decode(reply)
        except wire.WireError as err:
            raise CandidateError(f"{name}() answered with undecodable data: {err}") from None
        if type(message) is tuple and len(message) == 2 and message[0] == "ok":
            return message[1]
        if (type(message) is tuple and len(message) == 3 and message[0] == "raise"
                and type(message[1]) is str and type(message[2]) is str):
            raise rebuild_exception(message[1], message[2])
        raise CandidateError(f"{name}() sent a malformed reply")

    def _note(self, note) -> str:
        try:
            return str(note())[:NOTE_CHARS] if note is not None else ""
        except Exception as err:
            return f"<assert message raised {type(err).__name__}>"

    def assert_eq(self, line, left, right, note=None) -> None:
        try:  # the common case, plain and equal: its record is the only encoding needed
            passed = wire.encode(("eq", self.step, line, left, right, ""))
        except (wire.WireError, RecursionError):
            passed = None
        if passed is not None and wire.strict_equal(left, right):
            self.queue(passed)
            return
        if wire.is_plain(left) and wire.is_plain(right):
            ok = wire.strict_equal(left, right)
            self.report("eq", self.step, line, left, right, "" if ok else self._note(note))
        else:  # both sides were built by test code (candidate values are always plain)
            ok = bool(left == right)
            self.report("true", self.step, line, ok, "" if ok else self._note(note))
        if not ok:
            raise AssertFailed(line)

    def assert_true(self, line, value, note=None) -> None:
        ok = bool(value)
        self.report("true", self.step, line, ok, "" if ok else self._note(note))
        if not ok:
            raise AssertFailed(line)

    def greeting(self):
        """The candidate's callable names, or None after reporting why there are none."""
        try:
            status = self.link.frame(REPLY_LIMIT)
        except (OSError, EOFError):
            status = None
        if status is None:
            self.report("load_gone")
            self.gone = True
            return None
        try:
            status = wire.decode(status)
        except wire.WireError:
            status = ("load_error", "ProtocolError", "the program sent undecodable data")
        if type(status) is tuple and len(status) == 3 and status[0] == "load_error":
            self.report("load_error", str(status[1])[:100], str(status[2])[:NOTE_CHARS * 4])
            return None
        if not (type(status) is tuple and len(status) == 2 and status[0] == "ready"
                and type(status[1]) is list):
            self.report("load_error", "ProtocolError", "the program sent a malformed greeting")
            return None
        self.report("ready")
        # a program's ``abs`` or ``len`` must never stand in for the builtin the tests mean
        return [n for n in status[1] if type(n) is str and n.isidentifier()
                and n not in (EQ, TRUE) and n not in builtins.__dict__]

    def run(self, plan: dict, code: TestCode) -> None:
        names = self.greeting()
        if names is None:
            return
        scope = {"__name__": "__sbx_tests__", "__builtins__": builtins,
                 EQ: self.assert_eq, TRUE: self.assert_true}
        scope.update((name, Proxy(self, name)) for name in names)
        statements = code.statements(plan["source"]) if plan["source"] else []
        for index, step in enumerate(plan["steps"]):
            self.step = index
            try:
                if step[0] == "stmt":
                    exec(statements[step[1]], scope)
                elif step[0] == "exec":
                    exec(code.snippet(step[1], step[2]), scope)
                else:
                    _kind, name, args, kwargs = step
                    self.report("value", index, self.call(name, args, kwargs))
                self.report("done", index)
            except CandidateGone:
                self.report("gone", index)
                return
            except AssertFailed as err:
                self.report("failed", index, err.line)
            except BaseException as err:
                self.report("error", index, getattr(err, "sbx_type", type(err).__name__),
                            str(err)[:NOTE_CHARS], hasattr(err, "sbx_type"))
            self.flush()
        self.report("end")


class Proxy:
    """Stands for a function of the program; calls cross to the candidate process."""

    def __init__(self, job: Job, name: str):
        self._job, self.__name__ = job, name

    def __call__(self, *args, **kwargs):
        return self._job.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<sandboxed function {self.__name__}>"


def serve_forever(control_fd: int) -> int:
    control = socket.socket(fileno=control_fd)
    code = TestCode()
    while True:
        head, fds, _flags, _addr = socket.recv_fds(control, 5, 1)
        if not head:
            return 0
        while len(head) < 5:
            more = control.recv(5 - len(head))
            if not more:
                return 0
            head += more
        (size,) = wire.HEADER.unpack(head[1:])
        plan = bytearray(size)
        wire.read_into(control_fd, plan)
        job = Job(fds[0], control_fd)
        try:
            job.run(wire.decode(plan), code)
        finally:
            job.flush()
            os.close(fds[0])
        wire.send_frame(control_fd, GONE if job.gone else END)
