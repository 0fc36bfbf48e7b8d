"""The pretrain and sft stages as the DAG calls them: store in, store out, StageOutput back."""
import json

import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.stages.pretrain import run_pretrain_stage
from diffucoder.stages.sft import run_sft_stage
from diffucoder.store import open_store
from diffucoder.tasks import read_tasks
from tests.training.training_helpers import MICRO_MODEL, make_shards

QUICK = ["train.steps=4", "data.batch_size=4", "train.eval_batches=1", "checkpoint.every_steps=2",
         "optim.warmup_steps=1", "train.log_every=2", "train.eval_every=2"]


def test_pretrain_then_sft_publish_models_tasks_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    store.put_artifact("runs/r1/curated", make_shards(tmp_path / "curated"))

    pre = run_pretrain_stage("tiny-cpu", f"{store_root}/runs/r1/curated", store_root, "r1", MICRO_MODEL + QUICK)
    assert pre.uri == f"{store_root}/runs/r1/pretrain" and store.has_artifact("runs/r1/pretrain")
    assert pre.metrics["params"] > 0 and pre.metrics["final_loss"] > 0 and pre.metrics["tokens"] == 4 * 4 * 32
    assert "data:image/png;base64," in pre.report_md        # the curve travels with the report
    assert store.list_artifacts("runs/r1/pretrain-checkpoints/") == ["runs/r1/pretrain-checkpoints/step-00000004"]

    sft = run_sft_stage("tiny-cpu", pre.uri, store_root, "r1",
                        QUICK + ["data.seq_len=256", "tasks.max_per_family=2", "tasks.seed=1"])
    assert sft.uri == f"{store_root}/runs/r1/sft" and sft.metadata["stage"] == "sft"
    tasks_uri = sft.metadata["tasks_uri"]
    assert tasks_uri == f"{store_root}/runs/r1/tasks"
    manifest = store.read_manifest("runs/r1/tasks")
    assert set(manifest.files) == {"tasks-train.jsonl", "tasks-heldout.jsonl", "sft-train.jsonl", "sft-heldout.jsonl"}
    assert manifest.metadata["seed"] == 1 and manifest.metadata["kind"] == "task-suite"
    store.get_artifact("runs/r1/tasks", tmp_path / "tasks")
    heldout = read_tasks(tmp_path / "tasks" / "tasks-heldout.jsonl")
    assert heldout and all(r["split"] == "heldout" for r in heldout)
    summary = json.loads(store.open_file("runs/r1/sft", "training/summary.json"))
    assert summary["data"]["rows"] == manifest.metadata["counts"]["train"] - summary["data"]["skipped_long_prompts"]

    # rerunning a finished stage resumes from its last checkpoint and republishes the same weights
    before = store.open_file("runs/r1/sft", "model.safetensors")
    again = run_sft_stage("tiny-cpu", pre.uri, store_root, "r1",
                          QUICK + ["data.seq_len=256", "tasks.max_per_family=2", "tasks.seed=1"])
    assert again.metrics["resumed_from_step"] == 4
    assert store.open_file("runs/r1/sft", "model.safetensors") == before


def test_stage_inputs_are_checked(tmp_path):
    with pytest.raises(DiffucoderError, match="curated_uri"):
        run_pretrain_stage("tiny-cpu", "", (tmp_path / "s").as_uri(), "r1")
    with pytest.raises(DiffucoderError, match="model_uri"):
        run_sft_stage("tiny-cpu", "", (tmp_path / "s").as_uri(), "r1")
    with pytest.raises(DiffucoderError, match="'tasks.max_per_family'"):
        run_sft_stage("tiny-cpu", "file:///x", (tmp_path / "s").as_uri(), "r1", ["tasks.max_per_family=-1"])


def test_midtrain_passes_the_model_on_unless_enabled_then_trains_from_it(tmp_path, monkeypatch):
    from diffucoder.stages.midtrain import run_midtrain_stage
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    store.put_artifact("runs/r1/curated", make_shards(tmp_path / "curated"))
    pre = run_pretrain_stage("tiny-cpu", f"{store_root}/runs/r1/curated", store_root, "r1", MICRO_MODEL + QUICK)
    off = run_midtrain_stage("tiny-cpu", pre.uri, f"{store_root}/runs/r1/curated", store_root, "r1")
    assert off.uri == pre.uri and not store.has_artifact("runs/r1/midtrain")
    assert "Mid-training is off" in off.report_md
    on = run_midtrain_stage("tiny-cpu", pre.uri, f"{store_root}/runs/r1/curated", store_root, "r1",
                            overrides=QUICK, enabled=True)
    assert on.uri == f"{store_root}/runs/r1/midtrain" and on.metadata["stage"] == "midtrain"
    assert json.loads(store.open_file("runs/r1/midtrain", "training/summary.json"))["stage"] == "midtrain"
    # it starts from the pre-trained weights, not from a random init
    recipe = store.open_file("runs/r1/midtrain", "training/recipe.yaml").decode()
    assert f"init_from: {pre.uri}" in recipe
    with pytest.raises(DiffucoderError, match="data_uri"):
        run_midtrain_stage("tiny-cpu", pre.uri, "", store_root, "r1", enabled=True)
