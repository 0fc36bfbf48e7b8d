"""The scoring path is honest: reference answers score 1.0, wrong or cheating answers 0.0,
and pass@k follows from the per-task counts. The model is replaced by sampler test doubles."""
import json

import pytest

from diffucoder.config import load_config
from diffucoder.evaluation import EvaluateConfig, Problem, evaluate, extract_answer, load_benchmark
from diffucoder.evaluation.prompts import Answer
from diffucoder.evaluation.scoring import Scorer, score_answer
from diffucoder.sandbox.isolation import ORDER
from tests.evaluation.evaluation_helpers import EVALPLUS, MBPP, OracleSamplerDouble, WrongSamplerDouble, write_jsonl

FAST = ["limits.time_floor_s=1.0", "limits.memory_mb=512", "limits.workers=2"]


def problems_of(cfg):
    return [p for spec in cfg.benchmarks for p in load_benchmark(spec, cfg).problems]


@pytest.mark.parametrize("style", ["instruct", "base"])
def test_reference_answers_pass_and_wrong_ones_fail(tmp_path, style):
    evalplus = write_jsonl(tmp_path / "plus.jsonl", EVALPLUS)
    mbpp = write_jsonl(tmp_path / "mbpp.jsonl", MBPP)
    benchmarks = (f"benchmarks=[{{name: synthetic}}, {{name: humaneval}}, "
                  f"{{name: humaneval_plus, path: '{evalplus}'}}, {{name: mbpp, path: '{mbpp}'}}]")
    cfg = load_config(EvaluateConfig, None, [benchmarks, "max_tasks=3", f"prompt_style={style}", *FAST])
    oracle = OracleSamplerDouble(problems_of(cfg))
    good = evaluate(cfg, None, tmp_path / "good", completer=oracle, progress=False)
    assert good.pass_at_1 == 1.0 and good.gate_benchmark == "synthetic"
    assert {name: m["pass@1"] for name, m in good.metrics.items()} == {
        "synthetic": 1.0, "humaneval": 1.0, "humaneval_plus": 1.0, "mbpp": 1.0}
    assert good.kfp_metrics["synthetic_pass_at_1"] == 1.0 and good.kfp_metrics["pass_at_1"] == 1.0
    expected = "completion" if style == "base" else "fenced"
    assert all(set(m["extraction"]) == {expected} for m in good.metrics.values())

    wrong = evaluate(cfg, None, tmp_path / "wrong", completer=WrongSamplerDouble(problems_of(cfg)), progress=False)
    assert wrong.pass_at_1 == 0.0
    assert all(m["pass@1"] == 0.0 and "pass" not in m["verdicts"] for m in wrong.metrics.values())


def test_pass_at_k_comes_from_per_task_counts_and_files_are_written(tmp_path):
    cfg = load_config(EvaluateConfig, None, ["max_tasks=2", "n_samples=4", "ks=[1, 2, 10]",
                                             "sampling.temperature=0.5", *FAST])
    problems = problems_of(cfg)
    oracle, wrong = OracleSamplerDouble(problems), WrongSamplerDouble(problems)

    class HalfRight:   # samples 0 and 2 are the reference, 1 and 3 wrong (sampler test double)
        def complete(self, prompts, n):
            good, bad = oracle.complete(prompts, n), wrong.complete(prompts, n)
            return [[g[j] if j % 2 == 0 else b[j] for j in range(n)] for g, b in zip(good, bad)]

    result = evaluate(cfg, None, tmp_path, completer=HalfRight(), progress=False)
    synthetic = result.metrics["synthetic"]
    assert synthetic["pass@1"] == pytest.approx(0.5)
    assert synthetic["pass@2"] == pytest.approx(5 / 6)              # 1 - C(2,2)/C(4,2)
    assert "pass@10" not in synthetic                                # needs n >= 10
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["n"] == 4 and r["passed"] == 2 for r in rows)
    assert [s["verdict"] == "pass" for s in rows[0]["samples"]] == [True, False, True, False]
    assert all(r["time_limit_s"] >= 1.0 for r in rows)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["gate"] == {"benchmark": "synthetic", "pass_at_1": 0.5}
    assert saved["isolation"] in ORDER        # the layer the sandbox actually used
    report = (tmp_path / "report.md").read_text()
    assert "| synthetic | 2 of" in report and "| 50.0 | 83.3 |" in report
    assert f"sandbox isolation: **{saved['isolation']}**" in report
    for png in ("pass_at_k.png", "pass_rates.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max_tasks: 2" in (tmp_path / "config.yaml").read_text()


def test_time_limit_follows_the_reference_with_a_floor(tmp_path):
    cfg = load_config(EvaluateConfig, None, ["limits.time_floor_s=0.5", "limits.time_factor=3", "limits.workers=2"])
    problem = Problem("synthetic", "slow/0", "def f():\n", "Write f.", "f",
                      "def f():\n    return 1\n", "assert f() == 1")
    broken = Problem("synthetic", "broken/0", "def g():\n", "Write g.", "g",
                     "def g():\n    return 2\n", "assert g() == 1")
    slow = Answer("import time\ndef f():\n    time.sleep(5)\n    return 1\n", "", "raw")
    quick = Answer("def f():\n    return 1\n", "", "raw")
    with Scorer(cfg.limits, progress=False) as scorer:
        (task,), skipped = scorer.score([problem, broken], [[slow, quick], [quick]], [["a", "b"], ["c"]])
        again = scorer.reference_runs([problem])[0]
    assert task.time_limit_s == pytest.approx(max(0.5, 3 * task.reference_s))
    assert again[1] == task.reference_s                     # measured once, then remembered
    assert [s["verdict"] for s in task.samples] == ["timeout", "pass"]
    assert skipped[0]["task_id"] == "broken/0" and skipped[0]["reason"].startswith("reference fail")


def test_no_wrong_or_cheating_answer_passes(tmp_path):
    cfg = load_config(EvaluateConfig, None, ["max_tasks=1", "limits.time_floor_s=0.5", "limits.workers=2"])
    (problem,) = problems_of(cfg)
    bodies = WrongSamplerDouble.BODIES
    answers = [extract_answer(problem, f"```python\ndef {problem.entry_point}(*args, **kwargs):\n{b}```", "instruct")
               for b in bodies]
    with Scorer(cfg.limits, progress=False) as scorer:
        (task,), _ = scorer.score([problem], [answers], [["-"] * len(bodies)])
    verdicts = [s["verdict"] for s in task.samples]
    assert "pass" not in verdicts and task.passed == 0
    assert verdicts[-1] == "timeout" and {"fail", "error"} & set(verdicts)


def test_score_answer_scores_one_completion_as_evaluate_scores_a_sample():
    cfg = load_config(EvaluateConfig, None, ["max_tasks=1", *FAST])
    (problem,) = problems_of(cfg)
    good = score_answer(cfg, problem, f"```python\n{problem.reference}```")
    assert good["verdict"] == "pass" and good["passed_fraction"] == 1.0 and good["tests"] >= 3
    assert good["extraction"] == "fenced"
    wrong = score_answer(cfg, problem, f"```python\ndef {problem.entry_point}(*args):\n    return None\n```")
    assert wrong["verdict"] == "fail" and wrong["passed_fraction"] < 1.0
    broken = score_answer(cfg, problem, f"```python\ndef {problem.entry_point}(:\n```")
    assert broken["verdict"] != "pass" and broken["passed_fraction"] == 0.0
