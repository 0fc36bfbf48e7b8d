"""Hostile programs: each is contained, gets the right verdict, and the pool stays healthy.

Every case runs in one shared single-worker pool, followed by an honest program that must
pass, and then the host is checked: no process of the job's uid is left but the zygote's
idle spare candidate. The tests are chosen so that *pass* is expected only when the attack
is contained and the program answers honestly; otherwise the attack must end in the named
non-pass verdict. The suite runs twice: in process, and through the sandbox service over
HTTP on 127.0.0.1 (``sandbox_modes``), where the same verdicts must come back.
"""
import os

import pytest

from diffucoder.sandbox import SandboxConfig, Verdict
from tests.sandbox.sandbox_modes import MODES, sandbox_in

P, F, E, T, M, C = (Verdict.PASS, Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT, Verdict.MEMORY,
                    Verdict.CRASHED)
ONE = "assert f(1) == 1"

CASES = [
    # --- resource exhaustion ----------------------------------------------------------
    ("fork_bomb_in_call", "import os\ndef f(x):\n    while True:\n        try:\n"
     "            os.fork()\n        except OSError:\n            pass\n", ONE, {T}),
    ("fork_bomb_at_load", "import os\nwhile True:\n    os.fork()\n", ONE, {E, T}),
    ("memory_bomb_in_call", "def f(x):\n    return [0] * (10 ** 10)\n", ONE, {M}),
    ("memory_bomb_at_load", "blob = bytearray(2 ** 40)\ndef f(x):\n    return x\n", ONE, {M}),
    ("memory_creep", "def f(x):\n    hoard = []\n    while True:\n"
     "        hoard.append(bytearray(1 << 20))\n", ONE, {M}),
    ("infinite_loop", "def f(x):\n    while True:\n        pass\n", ONE, {T}),
    ("sleep_past_limit", "import time\ndef f(x):\n    time.sleep(60)\n    return x\n", ONE, {T}),
    ("sigterm_ignored_loop", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
     "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef f(x):\n    while True:\n        pass\n",
     ONE, {T}),
    ("endless_output", "import sys\ndef f(x):\n    while True:\n"
     "        sys.stdout.write('spam' * 4096)\n", ONE, {T}),
    ("huge_output_then_right_answer", "import sys\ndef f(x):\n    for _ in range(200):\n"
     "        sys.stdout.write('x' * 100000)\n        sys.stderr.write('y' * 1000)\n"
     "    return x\n", ONE, {P}),
    ("thread_bomb", "import threading, time\ndef f(x):\n    while True:\n"
     "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
     ONE, {E, M}),
    ("deep_recursion", "def f(x):\n    return f(x + 1)\n", ONE, {E}),
    # repr's recursion guard scans a list per level (quadratic), so the overflow runs on a 2 MiB
    # thread stack: it crashes in well under the timeout whatever the host's `ulimit -s`
    ("c_stack_overflow", "import sys, threading\nsys.setrecursionlimit(10 ** 8)\n"
     "threading.stack_size(2 << 20)\ndef f(x):\n"
     "    nested = []\n    for _ in range(10 ** 6):\n        nested = [nested]\n"
     "    worker = threading.Thread(target=repr, args=(nested,))\n"
     "    worker.start()\n    worker.join()\n    return x\n", ONE, {C}),
    ("huge_file", "def f(x):\n    with open('big.bin', 'wb') as out:\n"
     "        out.write(b'0' * (64 << 20))\n    return x\n", ONE, {E}),
    ("fill_the_disk", "def f(x):\n    i = 0\n    while True:\n"
     "        with open(f'chunk{i}', 'wb') as out:\n            out.write(b'0' * (8 << 20))\n"
     "        i += 1\n", ONE, {E}),
    # --- crashes --------------------------------------------------------------------------
    ("ctypes_segfault", "import ctypes\ndef f(x):\n    return ctypes.string_at(0)\n", ONE, {C}),
    ("abort", "import os\ndef f(x):\n    os.abort()\n", ONE, {C}),
    ("kill_self", "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
     ONE, {C}),
    # --- exiting early is never a pass ------------------------------------------------------
    ("os_exit_0_at_load", "import os\nos._exit(0)\ndef f(x):\n    return x\n", ONE, {E}),
    ("sys_exit_0_at_load", "import sys\nsys.exit(0)\ndef f(x):\n    return x\n", ONE, {E}),
    ("os_exit_0_in_call", "import os\ndef f(x):\n    os._exit(0)\n", ONE, {E}),
    ("sys_exit_0_in_call", "import sys\ndef f(x):\n    sys.exit(0)\n", ONE, {E}),
    ("close_link_and_exit", "import os\ndef f(x):\n    for fd in range(64):\n"
     "        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
     "    os._exit(0)\n", ONE, {E}),
    # --- faking the comparison -------------------------------------------------------------
    ("always_equal_object", "class Yes:\n    def __eq__(self, other):\n        return True\n"
     "    __hash__ = object.__hash__\ndef f(x):\n    return Yes()\n", ONE, {E}),
    ("int_subclass_eq", "class Int(int):\n    def __eq__(self, other):\n        return True\n"
     "    __hash__ = int.__hash__\ndef f(x):\n    return Int(0)\n", ONE, {E}),
    ("str_subclass_eq", "class S(str):\n    def __eq__(self, other):\n        return True\n"
     "    __hash__ = str.__hash__\ndef f(x):\n    return S('nope')\n", "assert f(1) == 'one'",
     {E}),
    ("bool_is_not_int", "def f(x):\n    return True\n", ONE, {F}),
    ("list_is_not_tuple", "def f(x):\n    return [1, 2]\n", "assert f(1) == (1, 2)", {F}),
    ("truthy_object_for_assert", "class T:\n    def __bool__(self):\n        return True\n"
     "def f(x):\n    return T()\n", "assert f(1)", {E}),
    ("patched_assertion_error", "import builtins\nclass Never(Exception):\n    pass\n"
     "builtins.AssertionError = Never\ndef f(x):\n    return x + 1\n", ONE, {F}),
    ("patched_builtins", "import builtins\nbuiltins.print = lambda *a, **k: None\n"
     "builtins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
     "def f(x):\n    return 0.5\n", "assert abs(f(1) - 2.0) < 1e-6", {F}),
    ("program_shadows_builtins_used_by_tests", "def abs(x):\n    return 0\n"
     "def f(x):\n    return 0.5\n", "assert abs(f(1) - 2.0) < 1e-6", {F}),
    ("patched_len_breaks_own_process", "import builtins\nbuiltins.len = lambda x: 3\n"
     "def f(x):\n    return [0]\n", "assert len(f(1)) == 3", {E, F}),
    ("fake_pass_markers", "import sys\nprint('PASS')\nprint('All tests passed')\n"
     "print('{\"verdict\": \"pass\", \"passed\": true}')\nsys.stderr.write('OK\\n')\n"
     "def f(x):\n    print('passed')\n    return -1\n", ONE, {F}),
    ("garbage_on_the_link", "import os\nos.write(3, b'\\x00\\x00\\x00\\x05junk!')\n"
     "def f(x):\n    return x\n", ONE, {E}),
    ("forged_ready_and_reply", "import os, struct\nframe = b'ok'\n"
     "os.write(3, struct.pack('>I', len(frame)) + frame)\ndef f(x):\n    return x + 1\n",
     ONE, {E}),
    ("stdin_read", "def f(x):\n    return int(input())\n", ONE, {E}),
]


HONEST = ("def f(x):\n    return x\n", ONE)


@pytest.fixture(scope="module", params=MODES)
def sandbox(request):
    with sandbox_in(request.param, SandboxConfig(timeout_s=1.5, memory_mb=256, workers=1, tmp_mb=32)) as sb:
        assert sb.run(*HONEST).passed
        sb.zygote_pid = sb._workers[0].proc.pid
        yield sb


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                lines = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if int(lines["Uid"].split()[0]) == uid and "Z" not in lines["State"]:
            found.append(int(name))
    return found


def test_there_are_at_least_30_hostile_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name,program,tests,allowed", CASES, ids=[c[0] for c in CASES])
def test_hostile_program_is_contained(sandbox, name, program, tests, allowed):
    result = sandbox.run(program, tests)
    assert result.verdict in allowed, (result.verdict, result.message)
    assert result.isolation == sandbox.isolation
    if result.verdict is not Verdict.PASS:
        assert result.message  # says why
    assert len(result.stdout) < 5 * (64 << 10)  # output is capped
    honest = sandbox.run(*HONEST)
    assert honest.verdict is Verdict.PASS, honest.message
    worker = sandbox._workers[0]
    assert worker.proc.pid == sandbox.zygote_pid  # the worker itself was never replaced
    if worker.lease is not None:  # as root: only the idle spare candidate may remain
        assert len(processes_of_uid(worker.lease.candidate_uid)) <= 1
