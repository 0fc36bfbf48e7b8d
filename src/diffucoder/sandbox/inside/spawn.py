"""Fork a sandboxed child of the zygote (standard library only).

    pid = fork_child(body, {0: null, 1: out_w, 2: err_w, 3: sock}, uid=61001,
                     limits={"cpu_s": 3, "memory_bytes": 1 << 30}, cwd="/tmp/job")

The child gets its own process group, exactly the listed fds (everything else closed), no new
privileges, the lower uid (all three of real/effective/saved, no groups: capabilities
are dropped with root), death with its parent, non-dumpable memory, rlimits and a clean
environment; then ``body()`` runs and the child exits with its return value.

    use_environment("/tmp/job")   # once, in the zygote: its children in /tmp/job inherit their
                                  # environment ready-made instead of rebuilding it each fork
"""
import contextlib
import ctypes
import fcntl
import os
import signal

from . import cleanup

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


_environment_of = None  # the working directory this process's environment was made for


def enter_child(fds: dict, uid, limits, cwd: str, parent: int) -> None:
    # A process group of its own, for killpg. Not setsid: the zygote already has no
    # controlling terminal, and a new session costs milliseconds (scheduler autogroups).
    os.setpgid(0, 0)
    moved = {target: fcntl.fcntl(src, fcntl.F_DUPFD, 100) for target, src in fds.items()}
    for target, src in moved.items():
        os.dup2(src, target)
    os.closerange(len(fds), max(4096, os.sysconf("SC_OPEN_MAX")))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
    prctl(PR_SET_DUMPABLE, 0)
    if os.getppid() != parent:  # the parent died before we could ask to die with it
        os._exit(121)
    os.chdir(cwd)
    if limits is not None:
        cleanup.apply_limits(limits)
    if _environment_of != cwd:
        use_environment(cwd)


def use_environment(cwd: str) -> None:
    """Make this process's environment exactly a child's in ``cwd`` (and its children's, which
    inherit it). Rebuilding ``os.environ`` costs a fork's child about as much as all its other
    set-up together, so the zygote does it once for the directory its candidates work in."""
    global _environment_of
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8",
                       "PYTHONIOENCODING": "utf-8"})
    _environment_of = cwd


def fork_child(body, fds: dict, uid, limits, cwd: str) -> int:
    """Fork; the child enters the sandbox (``uid`` None: keep ours) and runs ``body``."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            enter_child(fds, uid, limits, cwd, parent)
            code = body() or 0
        except BaseException as err:  # our own failure, on the child's stderr
            with contextlib.suppress(OSError):
                os.write(2, f"sandbox child failed: {err!r}\n".encode())
        finally:
            os._exit(code if isinstance(code, int) else 1)
    return pid
