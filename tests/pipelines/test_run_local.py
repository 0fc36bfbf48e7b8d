"""The whole DAG on kfp's local runner with micro recipes: what `make demo` runs, in a few minutes.

The first run goes from a code corpus to a rendered InferenceService (gate open), whose model is
then served and asked a held-out task, as the demo ends; the second
starts at RL from the first run's SFT model with an unreachable gate: curation, pre-training and
SFT training are skipped, and nothing is deployed.
"""
from __future__ import annotations

import json
import re

import pytest
import yaml

from diffucoder.kube.config import image_ref
from diffucoder_kfp.cli import ask_served_model, run_local
from diffucoder.store import open_store

pytestmark = pytest.mark.integration

MICRO = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
         "model.num_attention_heads=4", "model.num_key_value_heads=2"]
SETS = ([f"curate.{s}" for s in ("tokenizer.vocab_size=512", "pack.seq_len=64", "pack.val_fraction=0.1",
                                 "decontam.enabled=false")]
        + [f"pretrain.{s}" for s in (*MICRO, "train.steps=2", "data.batch_size=2", "train.eval_batches=1",
                                     "checkpoint.every_steps=1", "optim.warmup_steps=1", "train.log_every=1")]
        + [f"sft.{s}" for s in ("train.steps=2", "data.batch_size=2", "data.seq_len=512", "train.eval_batches=1",
                                "checkpoint.every_steps=1", "optim.warmup_steps=1", "train.log_every=1",
                                "tasks.max_per_family=1")]
        + [f"rl.{s}" for s in ("train.steps=1", "rollout.group_size=2", "rollout.prompts_per_step=2",
                               "rollout.sampling.max_new_tokens=8", "rollout.sampling.steps=4", "objective.mu=1",
                               "reward.workers=1", "checkpoint.every_steps=1")]
        + [f"evaluate.{s}" for s in ("max_tasks=2", "batch_size=2", "sampling.max_new_tokens=8",
                                     "sampling.steps=4", "limits.time_floor_s=1.0")])
STEPS = ["curate", "placement", "pretrain", "midtrain", "sft", "evaluate-sft", "rl", "evaluate-rl", "deploy"]


def corpus(root):
    """Python modules made of the synthetic tasks (so the curated tokenizer knows their words)."""
    from diffucoder.tasks import generate_suite
    root.mkdir()
    for index, task in enumerate(generate_suite(seed=0, max_per_family=2)):
        (root / f"task_{index}.py").write_text(f'"""{task.instruction}"""\n{task.solution_code()}\n')
    return root


def steps_in(report_text: str) -> list[str]:
    return [line.split("`")[1] for line in report_text.splitlines() if line.startswith("## Step `")]


def test_the_whole_dag_runs_then_a_run_can_start_at_rl(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    first = run_local("tiny-cpu", tmp_path / "run1", str(corpus(tmp_path / "corpus")), "r1", SETS,
                      deploy_min_pass_at_1=0.0)
    store = open_store(first.store_root)
    for artifact in ("curated", "pretrain", "sft", "tasks", "evaluate-sft", "rl", "evaluate-rl"):
        assert store.has_artifact(f"runs/r1/{artifact}"), artifact
    report = first.report.read_text()
    assert steps_in(report) == STEPS
    # where the placement step would put the model-holding steps on a cluster (tiny-cpu, in-process)
    assert f'- output `sft_image`: `"{image_ref("train")}"`' in report and '- output `evaluate_gpus`: `"0"`' in report
    # the gate let the RL model through: deploy rendered its InferenceService, pinned to the published version
    rl_version = store.read_manifest("runs/r1/rl").version
    assert first.deployed_model == f"{store.uri('runs/r1/rl')}/.versions/{rl_version}"
    (isvc,) = yaml.safe_load_all((first.run_dir / "deploy" / "manifest").read_text())
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["name"] == "diffucoder"
    rl_summary = json.loads(store.open_file("runs/r1/rl", "training/summary.json"))
    assert rl_summary["steps"] == 1 and rl_summary["rollouts"] == 4
    # the demo's last step: the deployed version served, asked the first held-out task, the answer tested
    question, answer, verdict = ask_served_model(first, "tiny-cpu")
    held_out = json.loads(store.open_file("runs/r1/tasks", "tasks-heldout.jsonl").decode().splitlines()[0])
    assert question == held_out["instruction"] and isinstance(answer, str)
    assert re.fullmatch(r"(pass|fail|error|timeout|memory|crashed): \d+/[1-9]\d* of the task's tests pass( \(.*\))?",
                        verdict, re.S), verdict

    start = store.uri("runs/r1/sft")
    second = run_local("tiny-cpu", tmp_path / "run2", None, "r2", [s for s in SETS if not s.startswith("curate.")],
                       start_stage="rl", start_model=start, deploy_min_pass_at_1=1.0)
    store2 = open_store(second.store_root)
    assert not store2.has_artifact("runs/r2/curated") and not store2.has_artifact("runs/r2/pretrain")
    assert not store2.has_artifact("runs/r2/sft")            # SFT only published the task suite
    assert store2.has_artifact("runs/r2/tasks") and store2.has_artifact("runs/r2/rl")
    rl_meta = store2.read_manifest("runs/r2/rl")
    assert rl_meta.metadata["kind"] == "model"
    report = second.report.read_text()
    assert steps_in(report) == STEPS[:-1] and second.deployed_model == ""   # the gate stayed shut
    assert "skipped" in report and start in report
