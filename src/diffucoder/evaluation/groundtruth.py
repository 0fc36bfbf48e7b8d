"""EvalPlus problems: expected outputs from the reference solution, then exact or tolerant tests.

    problems, skipped = evalplus_problems("humaneval_plus", records, plus=True)
    problems[0].tests     # tuple of TestCase: one per input (base_input [+ plus_input])

EvalPlus records carry test *inputs* only (``base_input``, ``plus_input``); the expected
outputs are what the reference (``prompt + canonical_solution``) returns, computed once in a
child interpreter and carried back in the sandbox's strict plain-data encoding. As in
EvalPlus, a float result (or a list of floats), or a number or list when ``atol > 0``, is
compared element-wise with ``|out - exp| <= atol + 1e-7 |exp|`` (atol 1e-6 for floats when
the record gives 0), by a helper the sandbox's trusted test runner executes;
everything else must be equal with exact types (a ``TestCase`` whose expected value never
leaves this process). A record whose reference fails or returns non-plain data is skipped
and reported. JSON has no tuples: inputs reach both the reference and the candidate as lists.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.problems import (INSTRUCT_TEMPLATE, Problem, entry_point_of,
                                            string_field)
from diffucoder.sandbox import TestCase
from diffucoder.sandbox.inside import wire

_CHILD = r"""
import copy, json, sys
from diffucoder.sandbox.inside import wire
results = []
for job in json.load(sys.stdin):
    try:
        scope = {"__name__": "__reference__"}
        exec(job["program"], scope)
        function = scope[job["entry_point"]]
        outputs = [function(*copy.deepcopy(args)) for args in job["inputs"]]
        wire.encode(outputs)
        results.append(("ok", outputs))
    except BaseException as err:
        results.append(("error", f"{type(err).__name__}: {err}"[:300]))
sys.stdout.buffer.write(wire.encode(results))
"""

# Runs in the sandbox's test runner (trusted code, plain data only).
_CLOSE = """inf, nan = float("inf"), float("nan")
def _close(out, exp, atol):
    if isinstance(exp, (list, tuple)):
        return type(out) is type(exp) and len(out) == len(exp) and all(
            _close(o, e, atol) for o, e in zip(out, exp))
    if type(out) not in (int, float) or type(exp) not in (int, float):
        return out == exp
    return abs(out - exp) <= atol + 1e-7 * abs(exp)
"""


def is_floats(value: Any) -> bool:
    if type(value) is float:
        return True
    return type(value) in (list, tuple) and bool(value) and all(type(v) is float for v in value)


def reference_outputs(jobs: list[dict], timeout_s: float = 600.0) -> list[tuple[str, Any]]:
    """Run each job's ``program`` (trusted reference code) on its ``inputs`` in a child Python:
    ``("ok", [outputs])`` or ``("error", message)`` per job."""
    with tempfile.TemporaryDirectory(prefix="diffucoder-groundtruth-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(jobs).encode(),
                                  capture_output=True, timeout=timeout_s, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise DiffucoderError(f"computing reference outputs took over {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise DiffucoderError(f"computing reference outputs crashed: "
                              f"{proc.stderr.decode(errors='replace').strip()[-1500:]}")
    return [tuple(item) for item in wire.decode(proc.stdout)]


def _test_for(entry: str, args: list, expected: Any, atol: float) -> TestCase:
    if is_floats(expected) or (atol > 0 and type(expected) in (int, float, list, tuple)):
        tolerance = atol if atol > 0 else 1e-6
        code = f"{_CLOSE}assert _close({entry}(*{tuple(args)!r}), {expected!r}, {tolerance!r})\n"
        return TestCase(code=code, name=f"{entry}{tuple(args)!r}"[:100])
    return TestCase(args=tuple(args), expected=expected)


def evalplus_problems(benchmark: str, records: list[tuple[str, dict]], plus: bool
                      ) -> tuple[list[Problem], list[dict]]:
    """Problems for EvalPlus ``(where, record)`` pairs, and the records skipped (with why).

    ``plus``: test on ``base_input + plus_input`` (HumanEval+/MBPP+), else ``base_input`` only
    (EvalPlus's HumanEval/MBPP scores)."""
    jobs, heads = [], []
    for where, record in records:
        inputs = record.get("base_input")
        extra = (record.get("plus_input") or []) if plus else []
        if not isinstance(inputs, list) or not isinstance(extra, list):
            raise DiffucoderError(f"{where}: 'base_input' / 'plus_input' must be lists of argument lists")
        inputs = inputs + extra
        if not inputs or not all(isinstance(args, list) for args in inputs):
            raise DiffucoderError(f"{where}: needs at least one test input, each a list of arguments")
        prompt, entry = string_field(record, "prompt", where), entry_point_of(record, where)
        atol = record.get("atol") or 0.0
        if not isinstance(atol, (int, float)) or atol < 0:
            raise DiffucoderError(f"{where}: 'atol' must be a number >= 0, got {atol!r}")
        reference = prompt + string_field(record, "canonical_solution", where)
        jobs.append({"program": reference, "entry_point": entry, "inputs": inputs})
        heads.append((where, record, prompt, entry, reference, float(atol)))
    problems, skipped = [], []
    for job, head, (status, value) in zip(jobs, heads, reference_outputs(jobs) if jobs else []):
        where, record, prompt, entry, reference, atol = head
        task_id = str(record.get("task_id", where))
        if status != "ok":
            skipped.append({"task_id": task_id, "reason": f"reference failed: {value}"})
            continue
        tests = tuple(_test_for(entry, args, out, atol) for args, out in zip(job["inputs"], value))
        problems.append(Problem(benchmark, task_id, prompt, INSTRUCT_TEMPLATE.format(prompt=prompt.strip()),
                                entry, reference, tests))
    return problems, skipped
