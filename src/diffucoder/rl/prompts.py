"""RL prompts: what the policy is asked, the tests its answers run against, and the hard-prompt filter.

    from diffucoder.rl.prompts import PromptSet, hard_subset, load_prompts, read_prompts
    prompts, skipped = read_prompts("tasks/tasks-train.jsonl", "synthetic")
    prompts[0].text          # the SFT chat template around the task's instruction
    prompts[0].tests         # assert lines, one test each (the code reward is the share that pass)
    prompts, skipped = read_prompts("acecode.jsonl", "acecode_jsonl")   # question + FIRST test appended
    kept, table = hard_subset(prompts, {"id-1": [0.0, 1.0, 0.0], ...}, max_mean=0.5, min_variance=0.01)

Two record formats:
- ``synthetic``: the task suite (``diffucoder.tasks``): ``task_id``, ``instruction``,
  ``asserts`` (else ``test`` + ``entry_point``, HumanEval's ``check``);
- ``acecode_jsonl``: AceCode-87K: ``id``, ``question``, ``test_cases`` (assert strings). The
  prompt shows the first test case after the question; all cases are run.

Two prompt styles (``data.prompt_style``): ``project`` (one user turn; AceCode questions get "Your
code should pass this test:" and the first case) and ``released`` (the released trainer's: a
system turn "You are a helpful assistant.", and the question + ``"\nTest cases: " + first case``
only when the question holds no fenced block, i.e. no ``"\n```\n"``, in the released Instruct
models' template: ``training.chat``'s ``released``, the user text stripped and followed by a
newline before ``<|im_end|>``, as their tokenizer renders it).

Prompts are rendered with the chat template SFT trained on (``training.chat``), so the
policy answers as it learned to: one fenced python block. A record whose tests the
sandbox cannot plan (a syntax error in an assert) is skipped and counted.

The hard filter keeps prompts whose pass rates (one per completion of a reference
policy) have a low mean and a high (population) variance: some answers pass, most do
not, so a group of rollouts has reward differences to learn from.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diffucoder.errors import DiffucoderError
from diffucoder.sandbox import SandboxError
from diffucoder.sandbox.testplan import build_plan
from diffucoder.tasks import write_jsonl
from diffucoder.training.chat import render_prompt

ACECODE_TEMPLATE = "{question}\n\nYour code should pass this test:\n{first_test}"
PROMPT_STYLES = ("project", "released")
STUB_TEMPLATE = 'Please complete the following problem:\n```\ndef {signature}:\n    """\n    {question}\n    """\n```\n'


@dataclass(frozen=True)
class RLPrompt:
    prompt_id: str
    text: str                       # chat-rendered prompt: what the sampler continues
    tests: str                      # assert lines (one test per top-level assert)
    entry_point: str | None         # set for a HumanEval check(candidate) test
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class PromptSet:
    """Prompts as rows for ``training.data_loader.RowLoader`` (resumable, seeded order)."""

    def __init__(self, prompts: Sequence[RLPrompt]):
        if not prompts:
            raise DiffucoderError("data: no usable prompts")
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def batch(self, indices: np.ndarray) -> list[RLPrompt]:
        return [self.prompts[int(i)] for i in indices]


def _string(record: dict, name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise DiffucoderError(f"{where}: field {name!r} must be a non-empty string, got {value!r}"[:300])
    return value


def _render(content: str, style: str, where: str) -> str:
    """The user turn in the style's chat template (``released`` adds its system turn)."""
    if style not in PROMPT_STYLES:
        raise DiffucoderError(f"'data.prompt_style': must be one of {list(PROMPT_STYLES)}, got {style!r}")
    return render_prompt([{"role": "user", "content": content}], where=where,
                         template="released" if style == "released" else "project")


def synthetic_prompt(record: dict, where: str, style: str = "project") -> RLPrompt:
    """A task-suite (or HumanEval-style) record: the instruction, tested by its asserts."""
    instruction = _string(record, "instruction", where)
    asserts = record.get("asserts")
    if isinstance(asserts, list) and asserts and all(isinstance(a, str) for a in asserts):
        tests, entry = "\n".join(asserts) + "\n", None
    else:
        tests, entry = _string(record, "test", where), _string(record, "entry_point", where)
    text = _render(instruction, style, where)
    return RLPrompt(str(record.get("task_id", where)), text, tests, entry, record)


def acecode_instruction(question: str, first_test: str) -> str:
    return ACECODE_TEMPLATE.format(question=question.strip(), first_test=first_test.strip())


def released_instruction(question: str, first_test: str) -> str:
    """The released trainer's user turn: the first test case appended unless the question holds code."""
    return question + ("\nTest cases: " + first_test if "\n```\n" not in question else "")


def acecode_prompt(record: dict, where: str, style: str = "project") -> RLPrompt:
    """An AceCode record: the question with its first test case appended; every case is a test."""
    question = _string(record, "question", where)
    cases = record.get("test_cases")
    if not isinstance(cases, list) or not cases or not all(isinstance(c, str) and c.strip() for c in cases):
        raise DiffucoderError(f"{where}: 'test_cases' must be a non-empty list of assert strings")
    instruction = (released_instruction(question, cases[0]) if style == "released"
                   else acecode_instruction(question, cases[0]))
    text = _render(instruction, style, where)
    tests = "\n".join(c.strip() for c in cases) + "\n"
    return RLPrompt(str(record.get("id", where)), text, tests, None, record)


BUILDERS = {"synthetic": synthetic_prompt, "acecode_jsonl": acecode_prompt}


def stub_prompt(prompt: RLPrompt, style: str = "project") -> RLPrompt | None:
    """The released data script's second form of an AceCode question (``process_data.py``): when the
    question does not say "you", the best reference completion's ``def`` line around the question as
    a docstring, to be completed ("Please complete the following problem: ..."); None otherwise."""
    record = prompt.record
    question, inferences = record.get("question"), record.get("inferences")
    if not isinstance(question, str) or "you" in question.lower() or not isinstance(inferences, list) or not inferences:
        return None
    try:
        best = max(inferences, key=lambda item: float(item["pass_rate"]))["completion"]
    except (TypeError, KeyError, ValueError):
        return None
    signature = str(best).split(":\n")[0].strip()
    if not signature.startswith("def "):
        return None
    stub = {**record, "id": f"{prompt.prompt_id}-stub",
            "question": STUB_TEMPLATE.format(signature=signature[4:], question=question)}
    return acecode_prompt(stub, f"{prompt.prompt_id} (stub)", style)


def read_prompts(path: str | os.PathLike, kind: str, style: str = "project") -> tuple[list[RLPrompt], dict[str, int]]:
    """Prompts of a JSONL file; (prompts, counts of records skipped by reason)."""
    if kind not in BUILDERS:
        raise DiffucoderError(f"'data.kind': must be one of {sorted(BUILDERS)}, got {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise DiffucoderError(f"{path}: no such prompts file")
    prompts, skipped, seen = [], {"unusable_tests": 0, "duplicate_id": 0}, set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DiffucoderError(f"{where}: not JSON: {err}") from None
            if not isinstance(record, dict):
                raise DiffucoderError(f"{where}: expected a JSON object")
            prompt = BUILDERS[kind](record, where, style)
            try:
                build_plan(prompt.tests, prompt.entry_point)
            except SandboxError:   # e.g. an AceCode case that is not valid Python
                skipped["unusable_tests"] += 1
                continue
            if prompt.prompt_id in seen:
                skipped["duplicate_id"] += 1
                continue
            seen.add(prompt.prompt_id)
            prompts.append(prompt)
    return prompts, skipped


def limit_prompts(prompts: list[RLPrompt], tokenizer, max_tokens: int, max_prompts: int, seed: int,
                  keep_long: bool = False) -> tuple[list[RLPrompt], int]:
    """Drop prompts longer than ``max_tokens`` (``keep_long``: keep them, the rollouts keep their
    last ``max_tokens`` tokens); then a seeded sample of ``max_prompts`` (0 = all), kept in file
    order. Returns (prompts, number dropped as too long)."""
    lengths = [len(ids) for ids in tokenizer([p.text for p in prompts], add_special_tokens=False)["input_ids"]]
    if keep_long:
        lengths = [min(n, max_tokens) for n in lengths]
    fitting = [p for p, n in zip(prompts, lengths) if n <= max_tokens]
    if max_prompts and len(fitting) > max_prompts:
        chosen = np.sort(np.random.default_rng(seed).choice(len(fitting), max_prompts, replace=False))
        fitting = [fitting[int(i)] for i in chosen]
    return fitting, len(prompts) - sum(n <= max_tokens for n in lengths)


# -- the hard-prompt filter ------------------------------------------------------------------


THRESHOLDS = ("fixed", "percentile")


def is_hard(rates: Sequence[float], max_mean: float, min_variance: float) -> bool:
    """Low mean and high population variance of a prompt's pass rates."""
    if not rates:
        return False
    values = np.asarray(rates, dtype=np.float64)
    return bool(values.mean() <= max_mean and values.var() >= min_variance)


def hard_subset(prompts: Sequence[RLPrompt], pass_rates: dict[str, Sequence[float]], max_mean: float,
                min_variance: float, thresholds: str = "fixed", mean_percentile: float = 20.0,
                std_percentile: float = 40.0) -> tuple[list[RLPrompt], list[dict[str, Any]]]:
    """The hard prompts, in order, and one row per prompt (id, rates, mean, variance, std, kept). A
    prompt without pass rates is an error naming it.

    ``fixed``: mean <= ``max_mean`` and (population) variance >= ``min_variance``. ``percentile`` (the
    released data script): mean <= the ``mean_percentile``-th percentile of every prompt's mean, and
    (population) std >= the ``std_percentile``-th percentile of every prompt's std; both percentiles
    over all the prompts given, with numpy's linear interpolation."""
    missing = [p.prompt_id for p in prompts if p.prompt_id not in pass_rates]
    if missing:
        raise DiffucoderError(f"hard filter: no pass rates for {len(missing)} prompt(s), e.g. {missing[:3]}")
    if thresholds not in THRESHOLDS:
        raise DiffucoderError(f"'hard_filter.thresholds': must be one of {list(THRESHOLDS)}, got {thresholds!r}")
    rates = {p.prompt_id: np.asarray([float(r) for r in pass_rates[p.prompt_id]] or [0.0]) for p in prompts}
    if thresholds == "percentile" and prompts:
        mean_cut = float(np.percentile([r.mean() for r in rates.values()], mean_percentile))
        std_cut = float(np.percentile([r.std() for r in rates.values()], std_percentile))
    kept, table = [], []
    for prompt in prompts:
        values = rates[prompt.prompt_id]
        if thresholds == "percentile":
            keep = bool(len(pass_rates[prompt.prompt_id]) and values.mean() <= mean_cut and values.std() >= std_cut)
        else:
            keep = is_hard(pass_rates[prompt.prompt_id], max_mean, min_variance)
        table.append({"id": prompt.prompt_id, "pass_rates": [float(r) for r in pass_rates[prompt.prompt_id]],
                      "mean": float(values.mean()), "variance": float(values.var()), "std": float(values.std()),
                      "kept": keep})
        if keep:
            kept.append(prompt)
    return kept, table


def record_pass_rates(prompts: Sequence[RLPrompt], models: Sequence[str] = ()) -> dict[str, list[float]]:
    """AceCode's precomputed pass rates: ``inferences[*].pass_rate`` of each record, of the reference
    models named in ``models`` (``inferences[*].model_name``; empty = every model)."""
    out = {}
    for prompt in prompts:
        inferences = prompt.record.get("inferences")
        if isinstance(inferences, list) and models:
            inferences = [item for item in inferences if isinstance(item, dict) and item.get("model_name") in models]
        if not isinstance(inferences, list) or not inferences:
            raise DiffucoderError(f"hard filter (source records): prompt {prompt.prompt_id!r} has no "
                                  f"'inferences' list with pass rates{' of ' + ', '.join(models) if models else ''}")
        try:
            out[prompt.prompt_id] = [float(item["pass_rate"]) for item in inferences]
        except (TypeError, KeyError, ValueError):
            raise DiffucoderError(f"hard filter (source records): prompt {prompt.prompt_id!r}: every "
                                  "inference needs a numeric 'pass_rate'") from None
    return out


def read_pass_rates(path: str | os.PathLike) -> dict[str, list[float]]:
    """A pass-rates JSONL: ``{"id": ..., "pass_rates": [...]}`` per line (``write_pass_rates``)."""
    path = Path(path)
    if not path.is_file():
        raise DiffucoderError(f"'hard_filter.pass_rates_file': {path} does not exist")
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = [float(r) for r in row["pass_rates"]]
        except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
            raise DiffucoderError(f"{path}:{number}: expected {{\"id\": ..., \"pass_rates\": [numbers]}}: "
                                  f"{err}") from None
    return out


def write_pass_rates(path: str | os.PathLike, table: Sequence[dict[str, Any]]) -> Path:
    """The filter's table as JSONL (readable by ``read_pass_rates``), written atomically."""
    return write_jsonl(path, table)
