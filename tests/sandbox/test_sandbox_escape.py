"""Programs that reach for the host: network, files, secrets, other processes, the tests.

Each test checks both the verdict and the host side (the listener got no connection, the
file is intact, the secret never appeared, the zygote is the same process, no daemon is
left). The suite runs in process and through the sandbox service over HTTP on 127.0.0.1
(``sandbox_modes``); the daemon test also runs as an unprivileged user.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from diffucoder.sandbox import Sandbox, SandboxConfig, SandboxError, Verdict
from tests.sandbox.sandbox_modes import MODES, sandbox_in

SECRET_VAR = "DIFFUCODER_SANDBOX_TEST_SECRET"
ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture(scope="module", params=MODES)
def sandbox(request):
    os.environ[SECRET_VAR] = "hunter2-" + uuid.uuid4().hex  # set before the workers start
    try:
        with sandbox_in(request.param, SandboxConfig(timeout_s=5, memory_mb=512, workers=1)) as sb:
            yield sb
    finally:
        del os.environ[SECRET_VAR]


CONNECT = """
import socket
def f(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return "connected"
    except OSError:
        return "blocked"
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("isolation", ["bwrap", "unshare"])
def test_network_is_unreachable(isolation, mode):
    with socket.socket() as listener, \
            sandbox_in(mode, SandboxConfig(timeout_s=5, workers=1, isolation=isolation)) as sb:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        result = sb.run(CONNECT, f"assert f({port}) == 'blocked'")
        assert result.verdict is Verdict.PASS, result.message
        with pytest.raises(socket.timeout):
            listener.accept()
        if sb.service is not None:  # nor the service that runs it (its port answers out here)
            service_port = int(sb.service.url.rsplit(":", 1)[1])
            socket.create_connection(("127.0.0.1", service_port), timeout=1).close()
            result = sb.run(CONNECT, f"assert f({service_port}) == 'blocked'")
            assert result.verdict is Verdict.PASS, result.message


def test_rlimits_only_reaches_the_network_so_strict_refuses_it():
    with pytest.raises(SandboxError, match="strict mode"):
        Sandbox(SandboxConfig(isolation="none", strict=True, workers=1))


def test_files_outside_the_job_directory_are_untouched(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    program = f"""
import os, shutil
def f():
    done = 0
    for attempt in (lambda: open({str(victim)!r}, "w").write("owned"),
                    lambda: os.remove({str(victim)!r}),
                    lambda: open({marker!r}, "w").write("x"),
                    lambda: open("/usr/lib/pwned", "w").write("x"),
                    lambda: shutil.rmtree("/usr/share"),
                    lambda: os.remove("/etc/hostname"),
                    lambda: open("/root/.pwned", "w").write("x")):
        try:
            attempt()
            done += 1
        except OSError:
            pass
    open("inside.txt", "w").write("own directory is fine")
    return done
"""
    result = sandbox.run(program, "assert f() == 0")
    assert result.verdict is Verdict.PASS, result.message
    assert victim.read_text() == "precious"
    assert not os.path.exists(marker)
    assert os.path.isdir("/usr/share")


def test_environment_secrets_never_reach_the_program(sandbox):
    program = f"""
import os
def f():
    seen = []
    if any({SECRET_VAR!r} in k or "hunter2" in v for k, v in os.environ.items()):
        seen.append("environ")
    for pid in os.listdir("/proc"):
        for name in ("environ", "cmdline"):
            try:
                data = open(f"/proc/{{pid}}/{{name}}", "rb").read()
            except OSError:
                continue
            if b"hunter2" in data or {SECRET_VAR!r}.encode() in data:
                seen.append(pid + "/" + name)
    return seen
"""
    result = sandbox.run(program, "assert f() == []")
    assert result.verdict is Verdict.PASS, result.message


def test_killing_everything_in_reach_is_contained(sandbox):
    zygote_pid = sandbox._workers[0].proc.pid
    program = """
import os, signal
def f(x):
    for pid in [os.getppid(), 1, -1] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return x
"""
    result = sandbox.run(program, "assert f(1) == 1\nassert f(2) == 2")
    assert result.verdict is Verdict.PASS, result.message
    assert sandbox.run("def f(x):\n    return x\n", "assert f(3) == 3").passed
    assert sandbox._workers[0].proc.pid == zygote_pid  # the worker was never restarted


def test_privileges_cannot_be_regained(sandbox):
    program = """
import os
def f():
    gained = []
    for name, attempt in (("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                          ("shadow", lambda: open("/etc/shadow").read()),
                          ("chroot", lambda: os.chroot("/")),
                          ("mem", lambda: open(f"/proc/{os.getppid()}/mem", "rb").read(1))):
        try:
            attempt()
            gained.append(name)
        except (OSError, ValueError):
            pass
    caps = [line.split()[1] for line in open("/proc/self/status")
            if line.startswith(("CapPrm", "CapEff", "CapAmb"))]
    return [gained, os.getuid() != 0, os.geteuid() != 0, caps]
"""
    no_caps = ["0000000000000000"] * 3
    result = sandbox.run(program, f"assert f() == [[], True, True, {no_caps!r}]")
    assert result.verdict is Verdict.PASS, result.message


SNOOP = """
import ctypes, os, re
def f(x):
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: let us read our own memory
    pattern = re.compile(b"# " + b"([0-9]{9})\\n")
    for pid in ["self"] + [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            maps = open(f"/proc/{pid}/maps").read().splitlines()
            mem = open(f"/proc/{pid}/mem", "rb")
        except OSError:
            continue
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r") or "[v" in line:
                continue
            start, end = (int(v, 16) for v in span.split("-"))
            try:
                mem.seek(start)
                found = pattern.search(mem.read(end - start))
            except (OSError, OverflowError, ValueError):
                continue
            if found:
                return int(found.group(1))
    return None
"""


def test_the_snooper_finds_values_that_are_in_its_memory(sandbox):
    bait = SNOOP + "\nbait = ''.join(['# ', '123456789', '\\n'])\n"  # made at run time
    assert sandbox.run(bait, "assert f(3) == 123456789").verdict is Verdict.PASS


def test_a_program_cannot_find_its_expected_values(sandbox):
    # the expected value, also in comments the snooper looks for, in a heap-sized plan
    tests = "# 982451653\n" * 2000 + "assert f(3) == 982451653\n"
    honest = sandbox.run("def f(x):\n    return 982451653 if x == 3 else 0\n", tests)
    assert honest.verdict is Verdict.PASS  # the same tests just passed through this worker
    snoop = sandbox.run(SNOOP, tests)
    assert snoop.verdict is Verdict.FAIL, snoop.message
    assert "got None" in snoop.tests[0].message


def daemon_program(marker: str) -> str:
    """f() leaves a double-forked ``setsid`` daemon named ``marker`` (findable in /proc from out
    here, whatever the PID namespace), waits until it has that name, and returns its argument."""
    return f"""
import ctypes, os, time
def f(x):
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)   # PR_SET_NAME
            os.write(w, b"x")
            time.sleep(30)
        os._exit(0)
    os.read(r, 1)
    time.sleep(1.0)   # the test sees the daemon alive meanwhile
    return x
"""


def processes_named(marker: str) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{name}/comm").read_text().strip()
            state = Path(f"/proc/{name}/status").read_text().split("State:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if comm == marker and state not in ("Z", "X"):
            found.append(int(name))
    return found


def daemon_outlives_job(sb) -> dict:
    """Run the daemon program; whether its daemon was seen during the job and left after it."""
    marker = "dmn" + uuid.uuid4().hex[:12]
    future = sb.submit(daemon_program(marker), "assert f(1) == 1")
    seen = []
    deadline = time.monotonic() + 5
    while not seen and not future.done() and time.monotonic() < deadline:
        seen = processes_named(marker)
        time.sleep(0.01)
    result = future.result()
    left = processes_named(marker)
    capabilities = [line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith(("CapPrm", "CapEff"))]
    return {"verdict": result.verdict.value, "message": result.message, "seen": len(seen), "left": len(left),
            "layer": result.isolation, "uid": os.getuid(), "capabilities": capabilities}


def test_a_daemon_does_not_outlive_its_job(sandbox):
    outcome = daemon_outlives_job(sandbox)
    assert outcome["verdict"] == "pass", outcome
    assert outcome["seen"] == 1          # the daemon existed while the job ran ...
    assert outcome["left"] == 0          # ... and died with it


# Run by test_a_daemon_does_not_outlive_its_job_without_root, as an unprivileged user.
UNPRIVILEGED = """
import json, sys
from diffucoder.sandbox import SandboxConfig
from tests.sandbox.sandbox_modes import MODES, sandbox_in
from tests.sandbox.test_sandbox_escape import daemon_outlives_job
out = []
for isolation in ("none", "auto"):
    for mode in MODES:
        with sandbox_in(mode, SandboxConfig(timeout_s=5, workers=1, isolation=isolation)) as sb:
            out.append({"mode": mode, **daemon_outlives_job(sb)})
print(json.dumps(out))
"""


@pytest.mark.integration
def test_a_daemon_does_not_outlive_its_job_without_root(tmp_path):
    """Without root there are no uids to kill by: rlimits-only kills the zygote's subtree (every
    orphan comes back to it, a subreaper), bwrap-userns its PID namespace. As root, the test drops
    to nobody (setpriv) to check it."""
    argv = [sys.executable, "-c", UNPRIVILEGED]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop to an unprivileged uid")
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    tmp_path.chmod(0o777)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    # rlimits-only always; bwrap-userns where unprivileged user namespaces are allowed (here: yes)
    assert {(mode, "rlimits-only") for mode in MODES} <= {(o["mode"], o["layer"]) for o in outcomes}, outcomes
    for outcome in outcomes:
        assert outcome["uid"] != 0 and outcome["capabilities"] == ["0000000000000000"] * 2, outcome
        assert outcome["verdict"] == "pass", outcome
        assert outcome["seen"] == 1 and outcome["left"] == 0, outcome
