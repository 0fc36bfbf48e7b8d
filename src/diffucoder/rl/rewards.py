"""Rewards of a code answer: format (one fenced python block that parses) and code (tests passed).

    from diffucoder.rl import RewardConfig, format_reward, score_completions
    from diffucoder.sandbox import Sandbox
    format_reward("```python\\ndef f():\\n    return 1\\n```")        # 1.0 (lenient)
    format_reward("```python\\ndef f():\\n    return 1\\n```", rule="official")   # 0.0: no final newline
    with Sandbox(timeout_s=5) as sandbox:
        rewards = score_completions(sandbox, texts, [task.test] * len(texts),
                                    [task.entry_point] * len(texts), RewardConfig())
    [(r.format, r.code, r.total, r.verdict) for r in rewards]

Two format rules (``reward.format_rule``). ``official`` is the released trainer's: the WHOLE
decoded completion (special tokens skipped) must be optional text without triple backticks, a
fence tagged exactly ``python`` and a newline, code without triple backticks, and a closing fence
and one newline at the very end; 1.0 if the stripped code of the first ``python`` block parses
(an empty block parses), 0.5 if not, else 0. ``lenient`` (the project's) reads the answer up to
the first ``<|im_end|>`` (as evaluation does) and gives

* 1.0 when it holds exactly one fenced code block — an opening fence with no tag or a
  lower-case python tag (```` ```python ````, ```` ```py ````, ```` ```python3 ````) ending its line, a closing
  ```` ``` ````, no other ```` ``` ```` anywhere in the answer — whose code is non-empty and parses;
* 0.5 for such a block whose code does not parse (or is empty);
* 0.0 otherwise: no block, an unclosed block, two or more blocks (even if one of them parses:
  the answer must be unambiguous), or a block tagged with another language.

The code reward is the fraction of the task's tests that pass in the sandbox, computed only
when the format reward is 1 (else 0, and nothing runs). ``reward.test_runs``: ``together`` runs the
program once against all its tests (one ``reward.timeout_s`` limit); ``each`` runs every test as
its own program run with its own ``reward.test_timeout_s`` limit (5 s), and a completion with a
test that timed out gets code reward 0 — the released trainer's semantics (``python3 -c code +
case`` per test case), minus its flaw: there a test passes when the process exits 0. The sandbox decides passes in its
trusted parent (``diffucoder.sandbox``): exiting early, always-equal objects, printed
markers and patched builtins never pass. Its denominator is the number of tests the task
has: one per top-level assert statement or ``TestCase``; for a HumanEval-style
``check(candidate)`` one per assert line in ``check`` (an assert that never ran is not passed).
Tests may be assert / ``check()`` source, a list of assert lines, or a ``TestCase`` list.
``total = format_weight * format + code_weight * code`` (weights 0.5 and 2.0 in the recipe).
"""
from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from diffucoder.config import setting
from diffucoder.errors import DiffucoderError
from diffucoder.sandbox import (Sandbox, SandboxClient, SandboxConfig, SandboxError, SandboxSection, TestCase,
                                Verdict, check_sandbox, open_sandbox, self_check)
from diffucoder.sandbox.config import ISOLATION_CHOICES
from diffucoder.sandbox.testplan import build_plan
from diffucoder.training.chat import IM_END

# Exactly one fenced block: no ``` before the opening fence, none inside, none after the closing one.
ONE_BLOCK_RE = re.compile(r"\A(?:(?!```).)*```(?:python3|python|py)?[ \t]*\n"
                          r"(?P<code>(?:(?!```).)*)```(?:(?!```).)*\Z", re.DOTALL)
NOT_RUN = "not_run"   # the verdict of a completion whose format reward is not 1
FORMAT_RULES = ("lenient", "official")
TEST_RUNS = ("together", "each")
# The released trainer's format (get_code_format_reward): text, ```python, code, ``` and a newline at the end.
OFFICIAL_RE = re.compile(r"(?:(?!```)[\s\S])*?```python\n(?:(?!```)[\s\S])*?```\n", re.DOTALL)
FIRST_PYTHON_BLOCK_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)


@dataclass
class RewardConfig:
    format_weight: float = setting(0.5, min=0.0, help="weight of the format reward in the total")
    code_weight: float = setting(2.0, min=0.0, help="weight of the code reward (fraction of tests passed)")
    format_rule: str = setting("lenient", choices=FORMAT_RULES,
                               help="official: the released trainer's whole-completion rule; lenient: one fenced "
                                    "block in the answer up to <|im_end|> (bare / py fences, text after it)")
    test_runs: str = setting("together", choices=TEST_RUNS,
                             help="together: one run of the program against all tests; each: one run per test "
                                  "with its own test_timeout_s, a timeout gives the completion 0 (released)")
    test_timeout_s: float = setting(5.0, min=0.05, max=3600.0, help="test_runs=each: the limit of one test's run")


@dataclass
class RewardSection(RewardConfig):
    """The recipe's ``reward`` section: the weights (``RewardConfig``) and the sandbox that runs the tests."""
    timeout_s: float = setting(10.0, min=0.05, max=3600.0, help="wall-clock limit of one completion's test run")
    memory_mb: int = setting(1024, min=32, help="address-space limit of each sandboxed program")
    workers: int = setting(0, min=0, help="programs tested at once (0 = one per core)")
    isolation: str = setting("auto", choices=ISOLATION_CHOICES,
                             help="local sandbox isolation layer (auto = strongest available)")
    # Where the completions run: the sandbox service (reward.sandbox.endpoint) or a local pool,
    # never below reward.sandbox.min_isolation.
    sandbox: SandboxSection = field(default_factory=SandboxSection)

    def sandbox_config(self) -> SandboxConfig:
        return SandboxConfig(timeout_s=self.timeout_s, memory_mb=self.memory_mb, workers=self.workers or None,
                             isolation=self.isolation)

    def check_sandbox(self) -> str:
        """The floor check (and that the service answers) without starting a pool: before a model loads."""
        return check_sandbox(self.sandbox_config(), self.sandbox, where="reward.sandbox",
                             isolation_key="reward.isolation")

    def open_sandbox(self) -> Sandbox | SandboxClient:
        """The sandbox service or a local pool (refused below ``sandbox.min_isolation``), self-checked:
        a known-good program must pass and known-bad ones must not, or SandboxError."""
        sandbox = open_sandbox(self.sandbox_config(), self.sandbox, where="reward.sandbox",
                               isolation_key="reward.isolation")
        try:
            self_check(sandbox)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def weights(self) -> RewardConfig:
        names = [f.name for f in dataclasses.fields(RewardConfig)]
        return RewardConfig(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class Reward:
    format: float        # 1.0, 0.5 or 0.0
    code: float          # fraction of the task's tests passed (0 unless format == 1)
    total: float         # format_weight * format + code_weight * code
    tests_passed: int
    tests_total: int     # 0 when the tests did not run
    verdict: str         # the sandbox verdict ("pass", "fail", "error", ...) or "not_run"


def answer_code(text: str, rule: str = "lenient") -> str | None:
    """The code the answer's format rule accepts (``official``: the first ``python`` block of a
    completion that matches as a whole; ``lenient``: the single fenced block before ``<|im_end|>``);
    None when the rule finds none."""
    if rule == "official":
        if not OFFICIAL_RE.fullmatch(text):
            return None
        return FIRST_PYTHON_BLOCK_RE.search(text).group(1)
    if rule != "lenient":
        raise DiffucoderError(f"format rule: must be one of {list(FORMAT_RULES)}, got {rule!r}")
    match = ONE_BLOCK_RE.match(text.split(IM_END, 1)[0])
    return match.group("code") if match else None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: null bytes in the source
        return False
    return True


def format_reward(text: str, rule: str = "lenient") -> float:
    """1.0: the rule's python block parses; 0.5: it does not; 0.0: no block the rule accepts.
    (``lenient`` also gives 0.5 to an empty block; ``official`` parses the stripped code, and an
    empty block parses.)"""
    code = answer_code(text, rule)
    if code is None:
        return 0.0
    if rule == "official":
        return 1.0 if _parses(code.strip()) else 0.5
    return 1.0 if code.strip() and _parses(code) else 0.5


def _as_tests(tests: str | list, index: int) -> str | list[TestCase]:
    """The sandbox's forms (assert / check() source, TestCase list), plus a list of assert lines."""
    if isinstance(tests, (list, tuple)) and tests and all(isinstance(t, str) for t in tests):
        return "\n".join(tests)
    if isinstance(tests, str) or (isinstance(tests, (list, tuple)) and all(isinstance(t, TestCase) for t in tests)):
        return tests if isinstance(tests, str) else list(tests)
    raise DiffucoderError(f"score_completions: tests[{index}] must be assert / check() source, a list of assert "
                          f"lines or a list of TestCase, got {type(tests).__name__}")


def split_tests(tests: str | list[TestCase]) -> list[str | list[TestCase]]:
    """One test set per test, for ``test_runs: each``: every top-level ``assert`` of assert source
    (with the source's other top-level statements, e.g. imports, kept in each), every ``TestCase``;
    a HumanEval ``check(candidate)`` stays one run."""
    if not isinstance(tests, str):
        return [[case] for case in tests]
    tree = ast.parse(tests)
    asserts = [node for node in tree.body if isinstance(node, ast.Assert)]
    if not asserts or any(isinstance(node, ast.FunctionDef) and node.name == "check" for node in tree.body):
        return [tests]
    setup = [ast.get_source_segment(tests, node) for node in tree.body if not isinstance(node, ast.Assert)]
    return ["\n".join([*setup, ast.get_source_segment(tests, node)]) + "\n" for node in asserts]


def planned_test_count(tests: str | list[TestCase], entry_point: str | None) -> int:
    """How many tests the task has (raises SandboxError for tests the sandbox would refuse)."""
    plan = build_plan(tests, entry_point)
    if plan.style != "check":
        return len(plan.tests)
    lines = set()
    for node in ast.parse(plan.source).body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            lines |= {sub.lineno for sub in ast.walk(node) if isinstance(sub, ast.Assert)}
    return max(len(lines), 1)


def score_completions(sandbox: Sandbox | SandboxClient, completions: Sequence[str], tests: Sequence[str | list[TestCase]],
                      entry_points: Sequence[str | None], cfg: RewardConfig) -> list[Reward]:
    """One ``Reward`` per completion; the well-formatted ones run concurrently in ``sandbox``.
    ``completions`` are the texts ``cfg.format_rule`` reads (``official``: whole decoded completions)."""
    if isinstance(completions, str) or not len(completions) == len(tests) == len(entry_points):
        raise DiffucoderError(f"score_completions: need one test set and entry point per completion; got "
                              f"{len(completions)} completions, {len(tests)} tests, {len(entry_points)} entry points")
    formats = [format_reward(text, cfg.format_rule) for text in completions]
    runs: list[list[tuple]] = []   # per completion that runs: its sandbox jobs (one, or one per test)
    planned = []
    for index, (text, fmt) in enumerate(zip(completions, formats)):
        if fmt != 1.0:
            continue
        task_tests = _as_tests(tests[index], index)
        try:
            planned.append(planned_test_count(task_tests, entry_points[index]))
        except SandboxError as err:
            raise DiffucoderError(f"score_completions: the tests of completion {index} cannot run: {err}") from None
        code = answer_code(text, cfg.format_rule)
        parts = split_tests(task_tests) if cfg.test_runs == "each" else [task_tests]
        runs.append([(code, part, entry_points[index]) for part in parts])
    timeout = cfg.test_timeout_s if cfg.test_runs == "each" else None
    flat = sandbox.run_many([job for jobs in runs for job in jobs], timeout_s=timeout) if runs else []
    results = iter(flat)
    outcomes = iter(zip([[next(results) for _ in jobs] for jobs in runs], planned))
    rewards = []
    for fmt in formats:
        passed, total, verdict = 0, 0, NOT_RUN
        if fmt == 1.0:
            parts, count = next(outcomes)
            passed = sum(outcome.verdict is Verdict.PASS for result in parts for outcome in result.tests)
            total = max(count, sum(len(result.tests) for result in parts))
            worst = [r.verdict for r in parts if r.verdict is not Verdict.PASS]
            verdict = (worst[0] if worst else Verdict.PASS).value
            if cfg.test_runs == "each" and Verdict.TIMEOUT in worst:
                passed = 0   # the released semantics: a test that times out fails the whole completion
        code = passed / total if total else 0.0
        rewards.append(Reward(format=fmt, code=code, total=cfg.format_weight * fmt + cfg.code_weight * code,
                              tests_passed=passed, tests_total=total, verdict=verdict))
    return rewards
