"""One benchmark problem, built from a HumanEval, EvalPlus, MBPP or synthetic-suite record.

    problem = problem_from_record("humaneval", record)   # HumanEval / synthetic: a check() test
    problem.prompt, problem.instruction, problem.entry_point, problem.reference, problem.tests

Record formats (detected per record):
- HumanEval and the synthetic suite: ``prompt``, ``entry_point``, ``canonical_solution``,
  ``test`` (``def check(candidate): ...`` or assert lines); the suite adds ``instruction``.
- EvalPlus (HumanEval+, MBPP+): ``base_input`` / ``plus_input`` argument lists and ``atol``;
  the expected outputs come from running the reference (``groundtruth``).
- original MBPP: ``text`` (or ``prompt``), ``code``, ``test_list`` of asserts,
  ``test_setup_code``; the prompt is EvalPlus's: a docstring with the text and the first test.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from diffucoder.errors import DiffucoderError

INSTRUCT_TEMPLATE = ("Please provide a self-contained Python script that solves the following "
                     "problem in a markdown code block:\n```python\n{prompt}\n```")


@dataclass(frozen=True)
class Problem:
    benchmark: str
    task_id: str
    prompt: str                 # the code prompt a base model completes
    instruction: str            # the request an instruct model answers
    entry_point: str
    reference: str              # a whole program that solves the problem
    tests: Any                  # what the sandbox runs: asserts / check() source, or TestCases


class BenchmarkFormatError(DiffucoderError):
    """A record does not look like any supported benchmark format."""


def string_field(record: dict, name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise BenchmarkFormatError(f"{where}: field {name!r} must be a string, got {value!r}"[:300])
    return value


def problem_from_record(benchmark: str, record: dict, where: str = "record") -> Problem:
    """A ``Problem`` from a HumanEval/synthetic or original-MBPP record (EvalPlus records
    need their expected outputs first: see ``groundtruth.evalplus_problems``)."""
    if not isinstance(record, dict):
        raise BenchmarkFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "test_list" in record:
        return _mbpp_problem(benchmark, record, where)
    if "test" not in record:
        raise BenchmarkFormatError(f"{where}: no 'test', 'test_list' or 'base_input' field: not a "
                                   "HumanEval, MBPP or EvalPlus record")
    prompt = string_field(record, "prompt", where)
    entry = entry_point_of(record, where)
    reference = prompt + string_field(record, "canonical_solution", where)
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        instruction = INSTRUCT_TEMPLATE.format(prompt=prompt.strip())
    return Problem(benchmark, str(record.get("task_id", where)), prompt, instruction, entry,
                   reference, string_field(record, "test", where))


def entry_point_of(record: dict, where: str) -> str:
    entry = string_field(record, "entry_point", where)
    if not entry.isidentifier():
        raise BenchmarkFormatError(f"{where}: entry_point {entry!r} is not a Python identifier")
    return entry


def mbpp_prompt(text: str, first_test: str) -> str:
    """EvalPlus's MBPP prompt: the task text and one example test in a docstring."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def _mbpp_problem(benchmark: str, record: dict, where: str) -> Problem:
    tests = record.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise BenchmarkFormatError(f"{where}: 'test_list' must be a non-empty list of assert strings")
    text = record.get("text") if isinstance(record.get("text"), str) else string_field(record, "prompt", where)
    code = string_field(record, "code", where)
    entry = record.get("entry_point") or mbpp_entry_point_of(code, tests[0], where)
    prompt = mbpp_prompt(text, tests[0])
    setup = record.get("test_setup_code") or ""
    test_source = "\n".join([setup, *tests]).strip() + "\n"
    return Problem(benchmark, str(record.get("task_id", where)), prompt,
                   INSTRUCT_TEMPLATE.format(prompt=prompt.strip()), entry, prompt + code, test_source)


def mbpp_entry_point_of(code: str, first_test: str, where: str = "record") -> str:
    """The function of ``code`` that the first test calls (MBPP records do not name it)."""
    try:
        defined = [node.name for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)]
        called = [node.func.id for node in ast.walk(ast.parse(first_test))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    except SyntaxError as err:
        raise BenchmarkFormatError(f"{where}: cannot parse the code or first test: {err}") from None
    for name in called:
        if name in defined:
            return name
    if defined:
        return defined[-1]
    raise BenchmarkFormatError(f"{where}: the reference code defines no function")


def prompt_imports(prompt: str) -> str:
    """The prompt's top-level import lines (an instruct answer may rely on them, as on
    HumanEval's ``from typing import List``); '' if there are none."""
    lines = [line for line in prompt.splitlines() if line.startswith(("import ", "from "))]
    return "".join(line + "\n" for line in lines)
