"""The runner's assert rewriting: every assert a test executes is reported, wherever it sits."""
import ast

import pytest

from diffucoder.sandbox import Sandbox, SandboxConfig, Verdict
from diffucoder.sandbox.inside.asserts import EQ, TRUE, parse_tests
from diffucoder.sandbox.inside.asserts import TestCode as CompiledTests  # not a pytest class

NESTED = """
import contextlib
def check(candidate):
    for x in [1]:
        assert candidate(x) == 2
    while False:
        pass
    else:
        assert candidate(2) == 3, "while-else"
    try:
        assert candidate(3) == 4
    except ZeroDivisionError:
        assert False
    else:
        assert candidate(4) == 5
    finally:
        assert candidate(5) == 6
    with contextlib.nullcontext():
        if candidate(6) == 7:
            assert candidate(7) == 8
    match candidate(8):
        case 9:
            assert candidate(9) == 10
    class Inner:
        assert candidate(10) == 11
    def inner():
        assert candidate(11) == 12
    inner()
    assert candidate(12) != 0
"""


def recorded(source: str) -> list:
    """(kind, line) of every rewritten assert ``source`` runs, with f(x) = x + 1."""
    seen = []
    scope = {EQ: lambda line, a, b, note=None: seen.append(("eq", line, a == b)),
             TRUE: lambda line, ok, note=None: seen.append(("true", line, bool(ok)))}
    for statement in CompiledTests().statements(source):
        exec(statement, scope)
    exec(CompiledTests().snippet("check(lambda x: x + 1)", 40), scope)
    return seen


def test_asserts_in_every_kind_of_statement_are_rewritten():
    seen = recorded(NESTED)
    lines = NESTED.splitlines()
    assert [line for _kind, line, _ok in seen] == [
        number for number, text in enumerate(lines, 1)
        if text.strip().startswith("assert") and "assert False" not in text]
    assert all(ok for _kind, _line, ok in seen)
    assert [kind for kind, _line, _ok in seen] == ["eq"] * 9 + ["true"]
    no_assert_left = [node for node in ast.walk(parse_tests(NESTED)) if isinstance(node, ast.Assert)]
    assert no_assert_left == []


def test_snippets_keep_their_line_numbers():
    tree = parse_tests("assert x == 1\nassert y", first_line=40)
    assert [node.lineno for node in tree.body] == [40, 41]
    assert [node.value.func.id for node in tree.body] == [EQ, TRUE]
    with pytest.raises(NameError) as raised:   # a failure inside points at the test source line
        exec(compile(parse_tests("\n\nassert missing == 1", first_line=40), "<tests>", "exec"),
             {EQ: print})
    assert raised.value.__traceback__.tb_next.tb_lineno == 42


def test_the_cache_is_bounded_by_entries_and_by_source_size():
    code = CompiledTests(entries=3, chars=10 ** 6)
    for n in range(5):
        code.statements(f"assert {n} == {n}\n")
    assert len(code._cache) == 3
    sources = [f"assert {n} == {n}  # padding padding\n" for n in range(5)]
    code = CompiledTests(entries=100, chars=len(sources[0]) + 10)
    for source in sources:
        code.statements(source)
    assert list(code._cache) == [("module", sources[-1])] and code._held == len(sources[-1])
    assert code.statements(sources[-1]) is code.statements(sources[-1])   # a hit: the same code


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(timeout_s=5, workers=1)) as sb:
        yield sb


def test_a_failing_nested_assert_is_reported_with_its_values(sandbox):
    program = "def f(x):\n    return x + 1 + (x == 5)\n"   # wrong only for 5: the finally clause
    result = sandbox.run(program, NESTED, entry_point="f")
    assert result.verdict is Verdict.FAIL, result.message
    assert [t.verdict for t in result.tests] == [Verdict.PASS] * 4 + [Verdict.FAIL]
    assert result.tests[-1].name.startswith("line 17:")
    assert result.tests[-1].message == "expected 6, got 7"


def test_the_same_tests_pass_and_fail_across_many_jobs(sandbox):
    # more distinct test sources than a small cache would hold, each used twice: every verdict
    # must follow the program, whether the runner compiled its tests afresh or reused them
    right = [(f"def f(x):\n    return x + {n}\n", f"assert f(1) == {n + 1}\nassert f(2) == {n + 2}")
             for n in range(300)]
    wrong = [(f"def f(x):\n    return x + {n + 1}\n", tests) for n, (_p, tests) in enumerate(right)]
    results = sandbox.run_many(right + wrong)
    assert [r.verdict for r in results] == [Verdict.PASS] * 300 + [Verdict.FAIL] * 300
