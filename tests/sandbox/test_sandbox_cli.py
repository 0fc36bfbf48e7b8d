"""``diffucoder sandbox check`` / ``doctor`` / ``serve`` / ``selfcheck``: JSON verdicts and exit codes."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from diffucoder.cli import main

SOLUTION = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def files(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def test_check_prints_json_and_exits_0_when_all_pass(files, capsys):
    code = main(["sandbox", "check", "--solution", files("sol.py", SOLUTION),
                 "--tests", files("t.py", "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"),
                 "--timeout", "5"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["verdict"] == "pass" and out["passed_fraction"] == 1.0
    assert out["isolation"] == "bwrap" and len(out["tests"]) == 2


def test_check_with_a_check_function_and_a_failure_exits_1(files, capsys):
    tests = files("check.py", "def check(candidate):\n    assert candidate(2, 2) == 5\n")
    code = main(["sandbox", "check", "--solution", files("sol.py", SOLUTION), "--tests", tests,
                 "--entry-point", "add"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["verdict"] == "fail"
    assert out["tests"][0]["message"] == "expected 5, got 4"


def test_check_reports_user_errors_without_a_traceback(files, capsys):
    code = main(["sandbox", "check", "--solution", "/nonexistent/sol.py",
                 "--tests", files("t.py", "assert add(1, 2) == 3\n")])
    assert code == 2
    assert "solution file not found" in capsys.readouterr().err
    code = main(["sandbox", "check", "--solution", files("sol.py", SOLUTION),
                 "--tests", files("bad.py", "def check(candidate):\n    assert True\n")])
    assert code == 2
    assert "entry_point" in capsys.readouterr().err


def test_doctor_lists_the_layers(capsys):
    assert main(["sandbox", "doctor"]) == 0
    out = capsys.readouterr().out
    for layer in ("bwrap", "unshare-n+uid", "rlimits-only"):
        assert layer in out
    assert "auto picks: bwrap" in out


def _serving(*extra, prefix=()):
    """A `diffucoder sandbox serve` process on a free port, and its URL once it says 'ready'."""
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "diffucoder.cli", "sandbox", "serve", "--host",
                             "127.0.0.1", "--port", "0", "--workers", "1", "--timeout", "5", *extra],
                            stderr=subprocess.PIPE, text=True, cwd="/")
    first = proc.stderr.readline()
    url = re.search(r"on (http://\S+)", first)
    assert url, first + proc.stderr.read()
    assert proc.stderr.readline().strip() == "ready"
    return proc, url.group(1)


@pytest.mark.integration
def test_serve_check_and_selfcheck_over_http(files, capsys):
    proc, url = _serving()
    try:
        code = main(["sandbox", "check", "--solution", files("sol.py", SOLUTION),
                     "--tests", files("t.py", "assert add(1, 2) == 3\n"), "--endpoint", url])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["verdict"] == "pass" and out["isolation"] == "bwrap"
        assert main(["sandbox", "selfcheck", "--endpoint", url]) == 0
        checked = json.loads(capsys.readouterr().out)
        assert checked["isolation"] == "service" and checked["inside"] == "bwrap" and checked["ok"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0 and "draining" in rest


def test_serve_refuses_to_start_below_its_floor(capsys):
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert main(["sandbox", "serve", "--port", "0", "--isolation", "none"]) == 2
    # the caller's signals are its own again: a blocked SIGTERM would be inherited by every process
    # it starts later (servers that then never hear their SIGTERM)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == blocked
    err = capsys.readouterr().err
    assert "refusing to run model-written code under 'rlimits-only'" in err
    assert "--min-isolation is 'auto'" in err and "--isolation=none forces it" in err
    assert "--isolation=auto" in err and "--min-isolation=rlimits-only" in err and "endpoint" not in err


SIGNAL_THE_SERVER = """
import os, signal
def f(x):
    zygote = os.getppid()
    server = int(open(f"/proc/{zygote}/stat").read().rsplit(")", 1)[1].split()[1])
    os.kill(server, signal.SIGTERM)
    os.kill(server, signal.SIGINT)
    return x
"""


@pytest.mark.integration
def test_a_job_cannot_stop_the_service_that_runs_it(files, capsys):
    """Without root (rlimits-only) a job shares the service's uid and can signal it: the stop signals
    it sends are ignored; one from outside still drains the service."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop to an unprivileged uid")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    proc, url = _serving("--isolation", "none", "--min-isolation", "rlimits-only", prefix=prefix)
    try:
        code = main(["sandbox", "check", "--solution", files("sol.py", SIGNAL_THE_SERVER),
                     "--tests", files("t.py", "assert f(1) == 1\n"), "--endpoint", url])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["verdict"] == "pass" and out["isolation"] == "rlimits-only"
        ignored = sorted(proc.stderr.readline().split(" from pid")[0] for _ in range(2))
        assert ignored == ["ignored SIGINT", "ignored SIGTERM"]    # (either may come first)
        assert main(["sandbox", "selfcheck", "--endpoint", url]) == 0     # still serving
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0 and "draining (SIGTERM from pid" in rest
