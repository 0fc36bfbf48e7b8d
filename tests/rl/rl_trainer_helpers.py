"""Tiny assets for the RL trainer tests: a random micro model with the project tokenizer, a small
task suite, AceCode-style records and a few-step recipe.

    model = make_model_dir(tmp_path / "sft")               # micro Dream + BPE trained on the suite
    suite = make_suite(tmp_path / "tasks")                 # tasks-{train,heldout}.jsonl, sft-*.jsonl
    cfg = micro_rl_config(model, suite, tmp_path / "w")    # 2 steps, G=2, 2 prompts, 16 new tokens
"""
from __future__ import annotations

import json
from pathlib import Path

from diffucoder.config import load_config
from diffucoder.tasks import generate_suite, write_suite
from tests.evaluation.evaluation_helpers import make_model_dir  # noqa: F401  (re-exported)

ACECODE = [
    {"id": "ace-add", "question": "Write a function add(a, b) that returns the sum of a and b.",
     "test_cases": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"],
     "inferences": [{"model_name": "m1", "pass_rate": 1.0}, {"model_name": "m2", "pass_rate": 1.0}]},
    {"id": "ace-rev", "question": "Write a function rev(s) that returns the string s reversed.",
     "test_cases": ["assert rev('ab') == 'ba'", "assert rev('') == ''"],
     "inferences": [{"model_name": "m1", "pass_rate": 0.0}, {"model_name": "m2", "pass_rate": 1.0}]},
    {"id": "ace-broken", "question": "Tests that are not Python.",
     "test_cases": ["assert f(1) == = 2"], "inferences": [{"model_name": "m1", "pass_rate": 0.0}]},
    {"id": "ace-hard", "question": "Write a function sq(x) that returns x squared.",
     "test_cases": ["assert sq(2) == 4", "assert sq(3) == 9"],
     "inferences": [{"model_name": "m1", "pass_rate": 0.0}, {"model_name": "m2", "pass_rate": 0.5},
                    {"model_name": "m3", "pass_rate": 0.0}]},
]


def make_suite(root: Path, max_per_family: int = 1) -> Path:
    write_suite(generate_suite(seed=0, max_per_family=max_per_family), root)
    return root


def write_acecode(path: Path, records=ACECODE) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def micro_overrides(model: Path, data: Path | str, workdir: Path, steps: int = 2, extra=()) -> list[str]:
    """A recipe of seconds: G=2 completions of 2 prompts, 16 tokens in 4 sampler steps."""
    return [f"model.init_from={model}", f"data.uri={data}", f"output.workdir={workdir}",
            f"data.cache_dir={workdir}-cache", f"train.steps={steps}", "rollout.group_size=2",
            "rollout.prompts_per_step=2", "rollout.sampling.max_new_tokens=16", "rollout.sampling.steps=4",
            "rollout.sampling.temperature=1.0", "reward.workers=2", "reward.timeout_s=5", "optim.lr=1e-3",
            "optim.warmup_steps=0", "objective.mu=2", "train.threads=1", *extra]


def micro_rl_config(model: Path, data: Path | str, workdir: Path, steps: int = 2, extra=()):
    from diffucoder.config.recipes import recipe_path
    from diffucoder.recipes.coupled_grpo import RLConfig
    return load_config(RLConfig, recipe_path("tiny-cpu", "rl"), micro_overrides(model, data, workdir, steps, extra))
