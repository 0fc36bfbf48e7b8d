"""Turn the tests a caller gives into the runner's plan, and remember what each test is.

    plan = build_plan("assert add(1, 2) == 3\\nassert add(0, 0) == 0", entry_point=None)
    plan = build_plan(humaneval["test"], entry_point="add")        # defines check(candidate)
    plan = build_plan([TestCase(args=(1, 2), expected=3)], entry_point="add")
    plan.runner_plan   # plain data sent to the sandbox; plan.tests stays in the parent

Three styles:
- assert lines: every top-level statement that contains an ``assert`` is one test; other
  statements (imports, helpers, data) run in order as setup.
- a HumanEval-style ``check(candidate)`` function (needs ``entry_point``): the module runs
  as setup, then ``check(<entry_point>)`` is the test; each ``assert`` it executes is
  reported as its own outcome.
- ``TestCase`` lists: calls whose expected value never leaves this process, and/or code
  snippets with asserts.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from typing import Any

from diffucoder.sandbox.inside import wire
from diffucoder.sandbox.results import SandboxError, TestCase

NAME_CHARS = 100


@dataclass(frozen=True)
class PlannedTest:
    name: str
    step: int
    expected: Any = None       # only for call tests: compared here, never sent


@dataclass
class Plan:
    style: str                                   # "asserts" | "check" | "cases"
    source: str
    steps: list = field(default_factory=list)
    tests: list[PlannedTest] = field(default_factory=list)
    setup_names: dict[int, str] = field(default_factory=dict)   # step -> name, for errors
    lines: list[str] = field(default_factory=list)              # test source, for names

    @property
    def runner_plan(self) -> dict:
        return {"source": self.source, "steps": self.steps}

    @functools.cached_property
    def encoded(self) -> bytes:
        """The runner plan as sent to the sandbox (plans are not changed once built)."""
        return wire.encode(self.runner_plan)

    def assert_name(self, line: int) -> str:
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return short(f"line {line}: {text}")


def short(text: str, limit: int = NAME_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _has_assert(node: ast.AST) -> bool:
    """An assert that runs when ``node`` runs (not one inside a def, class or lambda)."""
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
        return False
    return any(_has_assert(child) for child in ast.iter_child_nodes(node))


def _parse(source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source, f"<{what}>")
    except SyntaxError as err:
        raise SandboxError(f"{what}: syntax error at line {err.lineno}: {err.msg}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes; absurdly deep nesting
        raise SandboxError(f"{what}: cannot be parsed: {type(err).__name__}: {err}"[:300]) from None


def _plain(value: Any, what: str) -> None:
    try:
        wire.encode(value)
    except (wire.WireError, RecursionError) as err:
        raise SandboxError(f"{what}: {err} (tests may only use plain data: None, bool, int, "
                           f"float, complex, str, bytes, list, tuple, dict, set)") from None


@functools.lru_cache(maxsize=512)  # RL and benchmarks submit the same tests many times
def _from_source(source: str, entry_point: str | None) -> Plan:
    tree = _parse(source, "tests")
    plan = Plan(style="asserts", source=source, lines=source.splitlines())
    defines_check = any(isinstance(node, ast.FunctionDef) and node.name == "check"
                        for node in tree.body)
    if defines_check and entry_point is not None:
        if not entry_point.isidentifier():
            raise SandboxError(f"entry point {entry_point!r} is not a Python identifier")
        plan.style = "check"
        for index, node in enumerate(tree.body):
            plan.steps.append(("stmt", index))
            plan.setup_names[index] = short(f"setup line {node.lineno}: "
                                            f"{plan.lines[node.lineno - 1].strip()}")
        call_line = len(plan.lines) + 1
        plan.steps.append(("exec", f"check({entry_point})", call_line))
        plan.tests.append(PlannedTest(name=f"check({entry_point})", step=len(plan.steps) - 1))
        return plan
    for index, node in enumerate(tree.body):
        plan.steps.append(("stmt", index))
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        name = short(f"line {first}: {plan.lines[first - 1].strip()}")
        if _has_assert(node):
            plan.tests.append(PlannedTest(name=name, step=index))
        else:
            plan.setup_names[index] = "setup " + name
    if not plan.tests:
        hint = " (it defines check(): pass entry_point)" if defines_check else ""
        raise SandboxError(f"tests: no top-level assert statement found{hint}")
    return plan


def _from_cases(cases: list, entry_point: str | None) -> Plan:
    plan = Plan(style="cases", source="")
    for number, case in enumerate(cases, 1):
        if not isinstance(case, TestCase):
            raise SandboxError(f"test {number}: expected a TestCase, got {type(case).__name__}")
        if case.code is not None:
            if not _has_assert(_parse(case.code, f"test {number}")):
                raise SandboxError(f"test {number}: code has no assert statement")
            plan.steps.append(("exec", case.code, 1))
            name = case.name or short(case.code.strip().splitlines()[0])
            plan.tests.append(PlannedTest(name=name, step=len(plan.steps) - 1))
            continue
        if not entry_point or not entry_point.isidentifier():
            raise SandboxError(f"test {number}: a call test needs entry_point "
                               f"(the function's name), got {entry_point!r}")
        args, kwargs = tuple(case.args), dict(case.kwargs)
        _plain(list(args), f"test {number} args")
        _plain(kwargs, f"test {number} kwargs")
        if not all(type(k) is str for k in kwargs):
            raise SandboxError(f"test {number}: kwargs keys must be strings")
        _plain(case.expected, f"test {number} expected value")
        plan.steps.append(("call", entry_point, list(args), kwargs))
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        plan.tests.append(PlannedTest(name=case.name or short(f"{entry_point}({shown})"),
                                      step=len(plan.steps) - 1, expected=case.expected))
    if not plan.tests:
        raise SandboxError("tests: the list of test cases is empty")
    return plan


def build_plan(tests, entry_point: str | None = None) -> Plan:
    if isinstance(tests, str):
        try:
            return _from_source(tests, entry_point)
        except RecursionError:  # a tree too deep to walk, though it parsed
            raise SandboxError("tests: nested too deeply to plan") from None
    if isinstance(tests, TestCase):
        tests = [tests]
    if isinstance(tests, (list, tuple)):
        return _from_cases(list(tests), entry_point)
    raise SandboxError(f"tests must be a string of asserts / check() source or a list of "
                       f"TestCase, got {type(tests).__name__}")
