"""The public API: styles of tests, per-test outcomes, concurrency, config, recovery."""
import os
import signal
import threading
import time

import pytest

from diffucoder.config import ConfigError
from diffucoder.sandbox import (RunResult, Sandbox, SandboxConfig, SandboxError, TestCase,
                                Verdict)

ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(timeout_s=5, memory_mb=512, workers=2)) as sb:
        yield sb


def test_assert_lines_give_one_outcome_per_assert(sandbox):
    result = sandbox.run(ADD, "import math\nassert add(1, 2) == 3\nassert add(2, 2) == 5\n"
                              "assert math.isclose(add(0.1, 0.2), 0.3)\n")
    assert isinstance(result, RunResult)
    assert result.verdict is Verdict.FAIL
    assert [t.verdict for t in result.tests] == [Verdict.PASS, Verdict.FAIL, Verdict.PASS]
    assert result.tests[1].message == "expected 5, got 4"
    assert result.passed_fraction == pytest.approx(2 / 3)
    assert result.isolation == sandbox.isolation == "bwrap"
    assert "line 3" in result.message


def test_call_cases_compare_expected_values_in_the_parent(sandbox):
    cases = [TestCase(args=(1, 2), expected=3), TestCase(args=(1,), kwargs={"b": 1}, expected=2),
             TestCase(args=(True, False), expected=1, name="bools add to an int, not a bool"),
             TestCase(args=([1], [2]), expected=(1, 2))]
    result = sandbox.run(ADD, cases, entry_point="add")
    assert [t.verdict for t in result.tests] == [Verdict.PASS, Verdict.PASS, Verdict.PASS,
                                                 Verdict.FAIL]
    assert result.tests[2].name == "bools add to an int, not a bool"
    assert result.tests[3].message == "expected (1, 2), got [1, 2]"
    code = [TestCase(code="assert add('a', 'b') == 'ab'"), TestCase(code="assert add(1, 1) == 3")]
    assert [t.verdict for t in sandbox.run(ADD, code).tests] == [Verdict.PASS, Verdict.FAIL]


CHECK = """
def check(candidate):
    assert candidate(1, 2) == 3
    for i in range(5):
        assert candidate(i, i) == 2 * i, "doubles"
    try:
        candidate(1, None)
    except TypeError:
        pass
    else:
        assert False, "should raise"
"""


def test_check_functions_report_each_assert_that_ran(sandbox):
    result = sandbox.run(ADD, CHECK, entry_point="add")
    assert result.verdict is Verdict.PASS, result.message
    assert [t.name.split(":")[0] for t in result.tests] == ["line 3", "line 5"]
    wrong = sandbox.run("def add(a, b):\n    return a * b\n", CHECK, entry_point="add")
    assert wrong.verdict is Verdict.FAIL
    assert wrong.tests[-1].message == "expected 3, got 2"


def test_program_helpers_are_reachable_from_tests(sandbox):
    program = "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n" \
              "def root(xs):\n    return -xs[0] / xs[1]\n"
    tests = "def check(candidate):\n    assert abs(poly([2, 4], candidate([2, 4]))) < 1e-9\n"
    assert sandbox.run(program, tests, entry_point="root").verdict is Verdict.PASS


@pytest.mark.parametrize("program,tests,verdict,text", [
    ("def add(a, b) return", "assert add(1, 1) == 2", Verdict.ERROR, "SyntaxError"),
    ("class Oops(Exception): pass\ndef add(a, b):\n    raise Oops('no')\n",
     "assert add(1, 1) == 2", Verdict.ERROR, "Oops: no"),
    (ADD, "x = undefined_name\nassert add(1, 1) == 2", Verdict.ERROR, "NameError"),
    (ADD, "try:\n    assert add(1, 1) == 3\nexcept AssertionError:\n    pass\n", Verdict.FAIL, ""),
    ("def add(a, b):\n    return object()\n", "assert add(1, 1)", Verdict.ERROR, "plain data"),
])
def test_errors_and_failures_say_why(sandbox, program, tests, verdict, text):
    result = sandbox.run(program, tests)
    assert result.verdict is verdict
    assert text in result.message


def test_a_main_block_does_not_run(sandbox):
    program = ADD + "if __name__ == '__main__':\n    print(add(int(input()), 1))\n"
    assert sandbox.run(program, "assert add(1, 1) == 2").passed


def test_output_is_captured(sandbox):
    result = sandbox.run("print('hello')\nimport sys\nsys.stderr.write('oops')\n" + ADD,
                         "assert add(1, 1) == 2")
    assert result.passed and result.stdout == "hello\n" and result.stderr == "oops"


ENVIRONMENT = "import os\ndef env():\n    return dict(os.environ), os.getcwd()\n"
EXACT_ENVIRONMENT = """
environment, cwd = env()
assert cwd.endswith("/job")
assert environment == {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8",
                       "PYTHONIOENCODING": "utf-8"}
"""


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_every_program_sees_exactly_its_own_environment(isolation):
    # programs run one after another in one worker: none sees what an earlier one set
    tamper = ENVIRONMENT + "import os\nos.environ['LEFT_BEHIND'] = '1'\nos.environ['HOME'] = '/'\n"
    with Sandbox(SandboxConfig(workers=1, timeout_s=5, isolation=isolation)) as sb:
        results = [sb.run(program, EXACT_ENVIRONMENT) for program in (ENVIRONMENT, tamper, ENVIRONMENT)]
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.FAIL, Verdict.PASS], \
        [r.message for r in results]


@pytest.mark.parametrize("tests,entry_point,match", [
    ("assert (", None, "syntax error at line 1"),
    ("x = 1", None, "no top-level assert"),
    (CHECK, None, "pass entry_point"),
    (CHECK, "not a name", "not a Python identifier"),
    ([TestCase(args=(object(),), expected=1)], "add", "plain data"),
    ([TestCase(args=(1,), expected=1)], None, "needs entry_point"),
    ([], "add", "empty"),
    (42, None, "must be a string"),
])
def test_bad_tests_are_rejected_before_running(sandbox, tests, entry_point, match):
    with pytest.raises(SandboxError, match=match):
        sandbox.run(ADD, tests, entry_point=entry_point)


def test_run_many_is_concurrent_and_ordered(sandbox):
    items = [(f"def add(a, b):\n    return a + b + {i % 3}\n", "assert add(1, 1) == 2", "add")
             for i in range(12)]
    results = sandbox.run_many(items)
    assert [r.verdict for r in results] == [Verdict.PASS if i % 3 == 0 else Verdict.FAIL
                                            for i in range(12)]
    with pytest.raises(SandboxError, match="item 0"):
        sandbox.run_many([(ADD,)])


def test_per_run_timeout_overrides_the_config(sandbox):
    slow = "import time\ndef add(a, b):\n    time.sleep(0.5)\n    return a + b\n"
    assert sandbox.run(slow, "assert add(1, 1) == 2", timeout_s=0.2).verdict is Verdict.TIMEOUT
    assert sandbox.run(slow, "assert add(1, 1) == 2").verdict is Verdict.PASS


def test_bounded_queue_still_runs_everything():
    with Sandbox(SandboxConfig(workers=1, queue_size=1, timeout_s=5)) as sb:
        futures = [sb.submit(ADD, f"assert add({i}, 1) == {i + 1}") for i in range(5)]
        assert all(f.result().passed for f in futures)
    with pytest.raises(SandboxError, match="closed"):
        sb.run(ADD, "assert add(1, 1) == 2")


@pytest.mark.parametrize("isolation,name", [("unshare", "unshare-n+uid"), ("none", "rlimits-only")])
def test_other_isolation_layers_run_and_report_themselves(isolation, name):
    with Sandbox(SandboxConfig(workers=1, timeout_s=5, isolation=isolation)) as sb:
        ok = sb.run(ADD, "assert add(1, 1) == 2")
        assert ok.verdict is Verdict.PASS and ok.isolation == name
        assert sb.run("import os\nos._exit(0)\n" + ADD, "assert add(1, 1) == 2").verdict \
            is Verdict.ERROR
        assert sb.run(ADD, "assert add(1, 1) == 2").passed


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="timeout_s"):
        Sandbox(SandboxConfig(timeout_s=-1))
    with pytest.raises(ConfigError, match="isolation"):
        Sandbox(isolation="docker")


def test_a_dead_worker_is_reported_and_replaced():
    with Sandbox(SandboxConfig(workers=1, timeout_s=10)) as sb:
        worker = sb._workers[0]
        assert sb.run(ADD, "assert add(1, 1) == 2").passed
        slow = "import time\ndef add(a, b):\n    time.sleep(5)\n    return a + b\n"
        future = sb.submit(slow, "assert add(1, 1) == 2")
        time.sleep(0.5)
        os.killpg(worker.proc.pid, signal.SIGKILL)  # the whole sandbox dies mid-job
        result = future.result()
        assert result.verdict is Verdict.CRASHED and "worker died" in result.message
        assert sb.run(ADD, "assert add(1, 1) == 2").passed
        assert threading.active_count() >= 2


def test_a_dead_test_runner_is_reported_and_replaced(sandbox):
    result = sandbox.run(ADD, "import os\nassert add(1, 1) == 2\nos._exit(3)\n")
    assert result.verdict is Verdict.CRASHED and "test runner died" in result.message
    assert sandbox.run(ADD, "assert add(1, 1) == 2").passed
