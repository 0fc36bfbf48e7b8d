"""Limits and clean-up for the zygote's children (standard library only).

    apply_limits({"cpu_s": 3, "memory_bytes": 1 << 30, "processes": 64})
    killed = kill_namespace_except({1, os.getpid(), runner_pid})   # a PID namespace: kill the job
    as_uid(61001, kill_all_of_my_uid)                     # no namespace: kill by uid
    killed = kill_descendants(os.getpid(), keep={runner_pid})      # neither (no root): our subtree
    wait_gone(killed)                                     # until they have torn down
    remove_tree("/tmp/job"); sweep_scratch(["/tmp", "/dev/shm"], 61001)

``kill(-1, SIGKILL)`` from a helper running as the job's uid reaches every process of that
uid in one atomic pass (no fork slips through), including ones that left their process
group; in a PID namespace, killing everything but the zygote, init and runner does the same.
With neither (no root, no namespaces) the zygote is a child subreaper, so every process of a
job stays in its subtree (an orphan, ``setsid`` or not, is re-parented to the zygote): killing
the subtree round after round leaves nothing behind.
"""
import contextlib
import os
import resource
import shutil
import signal
import time

RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC = resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_NPROC
RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE = (resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE,
                                            resource.RLIMIT_CORE)


def limits_table(limits: dict) -> list:
    """(resource, (soft, hard)) pairs for the job limits that are set (None = leave as is)."""
    table = [(RLIMIT_CORE, (0, 0))]
    if limits.get("cpu_s") is not None:
        table.append((RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1)))
    for res, key in ((RLIMIT_AS, "memory_bytes"), (RLIMIT_NPROC, "processes"),
                     (RLIMIT_FSIZE, "file_bytes"), (RLIMIT_NOFILE, "open_files")):
        if limits.get(key) is not None:
            table.append((res, (limits[key], limits[key])))
    return table


def apply_limits(limits: dict) -> None:
    for res, value in limits_table(limits):
        set_limit(res, value)


def set_limit(res: int, value: tuple) -> None:
    """Set (soft, hard), never above the current hard limit (a non-root process cannot)."""
    soft, hard = value
    _cur_soft, cur_hard = resource.getrlimit(res)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
    resource.setrlimit(res, (min(soft, hard), hard))


def as_uid(uid: int, action) -> None:
    """Run ``action`` in a short-lived child that has switched to ``uid``; wait for it."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def kill_all_of_my_uid() -> None:
    for _ in range(3):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:  # nothing left to signal
            return


def kill_groups(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _kill_rounds(living, rounds: int) -> set:
    """SIGKILL what ``living()`` lists, round after round, until a round lists nothing it has not
    killed. A process cannot fork once SIGKILL is queued for it (the kernel aborts the fork), and a
    child forked before that is listed by the next round: so when a round finds nothing new, no
    process of the job can run another instruction. Returns the killed pids; they may still be
    tearing down (``wait_gone``)."""
    killed = set()
    for _ in range(rounds):
        others = [pid for pid in living() if pid not in killed]
        if not others:
            break
        refused = False
        for pid in others:
            try:
                with contextlib.suppress(ProcessLookupError):   # gone already: as good as killed
                    os.kill(pid, signal.SIGKILL)
            except PermissionError:   # not ours to kill (yet): listed again next round
                refused = True
                continue
            killed.add(pid)
        reap_orphans()
        if refused:
            time.sleep(0.0002)
    return killed


def wait_gone(pids, timeout: float = 5.0) -> None:
    """Wait until none of ``pids`` is alive (zombies are reaped as they appear)."""
    deadline = time.monotonic() + timeout
    pending = [pid for pid in pids if _alive(pid)]
    while pending and time.monotonic() < deadline:
        time.sleep(0.0002)
        reap_orphans()
        pending = [pid for pid in pending if _alive(pid)]


def kill_namespace_except(keep, rounds: int = 2000) -> set:
    """SIGKILL every live process in this PID namespace except ``keep``; returns the pids killed."""
    def living():
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in keep]
        return [pid for pid in pids if _alive(pid)]
    return _kill_rounds(living, rounds)


def _children(pid: int) -> list:
    """Live children of ``pid`` (every thread's), from /proc/<pid>/task/<tid>/children."""
    kids = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids += [int(n) for n in f.read().split()]
        except (OSError, ValueError):
            continue
    return kids


def _children_by_scan() -> dict:
    """{parent pid: [child pids]} of every process, from /proc/<pid>/stat."""
    tree = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(name))
    return tree


HAVE_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def descendants(root: int, keep) -> list:
    """Live processes below ``root``, not counting ``keep`` and what is below them."""
    tree = None if HAVE_CHILDREN_FILES else _children_by_scan()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in (_children(pid) if tree is None else tree.get(pid, [])):
            if child not in keep:
                found.append(child)
                todo.append(child)
    return [pid for pid in found if _alive(pid)]


def kill_descendants(root: int, keep, rounds: int = 2000) -> set:
    """SIGKILL every process below ``root`` (a subreaper) except ``keep``'s subtrees; returns the pids
    killed. A process forked while a round runs is re-parented to ``root`` and found next round."""
    return _kill_rounds(lambda: descendants(root, keep), rounds)


def reap_orphans() -> None:
    """Collect children that have exited (a job's orphans come to us: we are a subreaper)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _removed_at_once(path: str) -> bool:
    """Whether ``path`` is gone after one unlink / rmdir (True when nothing was there)."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_tree(path: str) -> None:
    """Delete ``path`` (never following links). Fast paths: nothing there (the job directory is
    removed after each job and again before the next), an empty job directory."""
    if _removed_at_once(path):
        return
    # A non-empty directory, or one we may not enter: the slow path. The program may have made
    # directories unreadable: allow ourselves back in.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
        for root, dirs, _files in os.walk(path):
            for name in dirs:
                sub = os.path.join(root, name)
                if not os.path.islink(sub):
                    os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def sweep_scratch(scratch_dirs, uid: int) -> None:
    """Remove top-level entries of shared scratch dirs (/tmp, /dev/shm) owned by ``uid``."""
    for directory in scratch_dirs:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    remove_tree(entry.path)
