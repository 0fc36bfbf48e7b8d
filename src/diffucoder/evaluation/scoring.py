"""Run answers in the sandbox with time limits taken from the reference solution.

    with Scorer(cfg.limits, cfg.sandbox) as scorer:
        results = scorer.score(problems, answers)      # answers[i]: list[Answer] of problem i
    results[0].passed, results[0].n, results[0].time_limit_s, scorer.isolation, scorer.sandbox_info
    score_answer(cfg, problem, completion)["verdict"]  # one completion, as evaluate scores a sample

The answers run where ``sandbox`` says: the sandbox service (``sandbox.endpoint``) or a local
pool, never below ``sandbox.min_isolation`` (``diffucoder.sandbox.open_sandbox``); a sandbox
that fails its self-check (a correct program must pass, cheating ones must not) is an error.

Each problem's reference program is run once against its tests (and remembered for the
life of the process, keyed by program, tests and limits): its run time gives the
problem's limit, ``max(time_floor_s, time_factor x reference time)``, applied to the
whole test run of each sample (the sandbox's deadline covers one program and all its
tests). A problem whose reference does not pass its own tests is not scored (it would
count against the model); it is listed with the reason.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.config import EvaluateConfig, Limits
from diffucoder.evaluation.passk import pass_at_k
from diffucoder.evaluation.problems import Problem
from diffucoder.evaluation.prompts import Answer, extract_answer
from diffucoder.sandbox import SandboxConfig, SandboxError, SandboxSection, open_sandbox, self_check

_REFERENCE_TIMES: dict[str, tuple[str, float, str]] = {}   # key -> (verdict, seconds, message)


@dataclass
class TaskResult:
    benchmark: str
    task_id: str
    time_limit_s: float
    reference_s: float
    samples: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def passed(self) -> int:
        return sum(s["verdict"] == "pass" for s in self.samples)

    def pass_at(self, k: int) -> float:
        return pass_at_k(self.n, self.passed, k)

    def to_dict(self, ks: Sequence[int]) -> dict:
        return {"benchmark": self.benchmark, "task_id": self.task_id, "n": self.n, "passed": self.passed,
                "pass_at_k": {str(k): self.pass_at(k) for k in ks if k <= self.n},
                "time_limit_s": round(self.time_limit_s, 4), "reference_s": round(self.reference_s, 4),
                "samples": self.samples}


def _reference_key(problem: Problem, limits: Limits, isolation: str) -> str:
    text = repr((problem.reference, problem.tests, problem.entry_point, limits.memory_mb,
                 limits.reference_timeout_s, isolation))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Scorer:
    def __init__(self, limits: Limits, sandbox: SandboxSection | None = None, progress: bool = True):
        self.limits, self.progress = limits, progress
        cfg = SandboxConfig(timeout_s=limits.reference_timeout_s, memory_mb=limits.memory_mb,
                            workers=limits.workers or None, isolation=limits.isolation)
        self.sandbox = open_sandbox(cfg, sandbox or SandboxSection(), where="sandbox",
                                    isolation_key="limits.isolation")
        try:
            self_check(self.sandbox)
        except BaseException:
            self.sandbox.close()
            raise
        self.isolation = self.sandbox.isolation
        self.sandbox_info = self.sandbox.describe()

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc) -> None:
        self.sandbox.close()

    def reference_runs(self, problems: Sequence[Problem]) -> list[tuple[str, float, str]]:
        """(verdict, seconds, message) of each problem's reference, measured once."""
        keys = [_reference_key(p, self.limits, self.isolation) for p in problems]
        todo = {}
        for key, problem in zip(keys, problems):
            if key in _REFERENCE_TIMES or key in todo:
                continue
            try:
                todo[key] = self.sandbox.submit(problem.reference, problem.tests, problem.entry_point,
                                                self.limits.reference_timeout_s)
            except SandboxError as err:  # the benchmark's tests themselves are unusable
                _REFERENCE_TIMES[key] = ("error", 0.0, f"tests rejected: {err}")
        for key, future in todo.items():
            result = future.result()
            _REFERENCE_TIMES[key] = (result.verdict.value, result.duration_s, result.message)
        return [_REFERENCE_TIMES[key] for key in keys]

    def time_limit(self, reference_s: float) -> float:
        return min(3600.0, max(self.limits.time_floor_s, self.limits.time_factor * reference_s))

    def score(self, problems: Sequence[Problem], answers: Sequence[Sequence[Answer]],
              completions: Sequence[Sequence[str]]) -> tuple[list[TaskResult], list[dict]]:
        """Scored tasks, and the problems left out because their reference failed."""
        results, skipped, pending = [], [], []
        for problem, runs, texts, (verdict, seconds, message) in zip(
                problems, answers, completions, self.reference_runs(problems)):
            if verdict != "pass":
                skipped.append({"task_id": problem.task_id,
                                "reason": f"reference {verdict}: {message}"[:300]})
                continue
            task = TaskResult(problem.benchmark, problem.task_id, self.time_limit(seconds), seconds)
            results.append(task)
            for answer, text in zip(runs, texts):
                future = self.sandbox.submit(answer.program, problem.tests, problem.entry_point, task.time_limit_s)
                pending.append((task, answer, text, future))
        for task, answer, text, future in tqdm(pending, desc="testing", unit="sample", disable=not self.progress):
            run = future.result()
            task.samples.append({"completion": text, "program": answer.program, "extraction": answer.extraction,
                                 "verdict": run.verdict.value, "passed_fraction": run.passed_fraction,
                                 "tests": len(run.tests), "message": run.message[:300],
                                 "seconds": round(run.duration_s, 4)})
        return results, skipped


def score_answer(cfg: EvaluateConfig, problem: Problem, completion: str) -> dict:
    """One completion of ``problem`` scored as ``evaluate`` scores a sample (the answer extracted
    with ``cfg.prompt_style``, its tests run in ``cfg``'s sandbox under the reference's time limit):
    the sample's record (``verdict``, ``passed_fraction``, ``tests``, ``message``, ...)."""
    answer = extract_answer(problem, completion, cfg.prompt_style, cfg.stop_sequences)
    with Scorer(cfg.limits, cfg.sandbox, progress=False) as scorer:
        scored, skipped = scorer.score([problem], [[answer]], [[completion]])
    if skipped:
        raise DiffucoderError(f"{problem.task_id}: cannot score an answer, {skipped[0]['reason']}")
    return scored[0].samples[0]
