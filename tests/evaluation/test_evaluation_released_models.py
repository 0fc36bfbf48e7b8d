"""Evaluation of released models: the released chat template (``chat.template: released``) and a
directory in the released Dream / DiffuCoder layout (sharded weights, remote-code slow tokenizer,
a Base model without ``<|dlm_pad|>``) evaluated end to end with the real sampler and sandbox."""
import json

import pytest

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.evaluation import EvaluateConfig, Problem, build_prompt, evaluate
from diffucoder.evaluation.benchmarks import load_benchmark
from diffucoder.evaluation.generation import DiffusionCompleter
from tests.evaluation.evaluation_helpers import OracleSamplerDouble
from tests.model.released_layout import released_ids, write_released_dir

PROBLEM = Problem(benchmark="humaneval", task_id="t/0", prompt="def add(a, b):\n", instruction="Write add.\n",
                  entry_point="add", reference="def add(a, b):\n    return a + b\n", tests="assert add(1, 2) == 3")
TINY = ["max_tasks=2", "n_samples=1", "batch_size=2", "sampling.max_new_tokens=8", "sampling.steps=4",
        "sampling.temperature=0.0", "limits.time_floor_s=1.0", "limits.workers=2", "synthetic.max_per_family=5"]


def test_instruct_prompt_in_the_released_template():
    assert build_prompt(PROBLEM, "instruct", "released") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWrite add.\n<|im_end|>\n<|im_start|>assistant\n")
    assert build_prompt(PROBLEM, "instruct") == "<|im_start|>user\nWrite add.\n<|im_end|>\n<|im_start|>assistant\n"
    assert build_prompt(PROBLEM, "base", "released") == "def add(a, b):\n"


def test_presets_pick_the_template():
    assert load_config(EvaluateConfig, recipe_path("tiny-cpu", "evaluate")).chat.template == "project"
    released = load_config(EvaluateConfig, recipe_path("7b-gpu", "evaluate"))
    assert released.chat.template == "released"
    assert released.sampling.compute_dtype == "model"   # the release decodes in the model dtype (bf16)


def test_the_evaluation_prompts_use_the_configured_template(tmp_path):
    cfg = load_config(EvaluateConfig, None, [*TINY, "chat.template=released"])
    oracle = OracleSamplerDouble([])
    seen = []

    class Recording:
        def complete(self, prompts, n):
            seen.extend(prompts)
            oracle.problems = problems
            return oracle.complete(prompts, n)

    problems = load_benchmark(cfg.benchmarks[0], cfg).problems
    result = evaluate(cfg, None, tmp_path / "out", completer=Recording(), progress=False)
    assert seen == [build_prompt(p, "instruct", "released") for p in problems] and len(seen) == 2
    assert all(p.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") for p in seen)
    assert result.pass_at_1 == 1.0


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    return write_released_dir(root / "base"), write_released_dir(root / "instruct", instruct=True, seed=1)


def test_a_released_base_layout_is_evaluated_end_to_end(released, tmp_path):
    base, _ = released
    cfg = load_config(EvaluateConfig, None, [*TINY, "prompt_style=base", "sampling.stop=eos"])
    completer = DiffusionCompleter.from_directory(base, cfg, progress=False)
    ids = released_ids(base)
    assert completer.stop_ids == [ids["<|endoftext|>"], ids["<|im_end|>"]]       # no <|dlm_pad|>: EOS ends it
    result = evaluate(cfg, str(base), tmp_path / "out", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["samples"]) == 1 for r in rows)
    assert 0.0 <= result.pass_at_1 <= 1.0 and "synthetic" in result.metrics


def test_a_released_instruct_layout_with_the_released_template(released, tmp_path):
    _, instruct = released
    cfg = load_config(EvaluateConfig, None, [*TINY, "chat.template=released"])
    completer = DiffusionCompleter.from_directory(instruct, cfg, progress=False)
    assert released_ids(instruct)["<|dlm_pad|>"] in completer.stop_ids
    result = evaluate(cfg, str(instruct), tmp_path / "out", progress=False)
    assert 0.0 <= result.pass_at_1 <= 1.0
    assert "template: released" in (tmp_path / "out" / "config.yaml").read_text()   # recorded with the run
