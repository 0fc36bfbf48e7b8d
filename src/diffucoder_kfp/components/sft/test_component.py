"""Unit, compile and local-runner tests of the sft component."""
import json

import pytest
from kfp import dsl, local

from diffucoder.model import build_config, build_model, save_model
from diffucoder.store import open_store
from diffucoder.tasks import read_tasks
from diffucoder.training.inputs import load_tokenizer, special_ids
from diffucoder_kfp.components.images import TRAIN_IMAGE
from diffucoder_kfp.components.sft import sft
from diffucoder_kfp.components.testing import compile_component, model_reference
from tests.training.training_helpers import make_shards


def test_component_interface_is_typed():
    spec = sft.component_spec
    assert set(spec.inputs) == {"preset", "model", "store_root", "run_name", "run_id", "store_secret",
                                "overrides", "launcher", "cluster", "job_image", "start_stage"}
    assert spec.inputs["model"].type == "system.Model@0.0.1"
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "sft_model": "system.Model@0.0.1", "tasks": "system.Dataset@0.0.1",
        "metrics": "system.Metrics@0.0.1", "report": "system.Markdown@0.0.1", "job": "system.Artifact@0.0.1"}
    assert spec.implementation.container.image == TRAIN_IMAGE


def test_component_compiles(tmp_path):
    ir, executor = compile_component(sft, tmp_path)
    assert executor["container"]["image"] == TRAIN_IMAGE
    assert "run_sft_stage" in " ".join(executor["container"]["command"])


def publish_micro_model(tmp_path, store, name):
    """A randomly initialised micro Dream model with the curation-style tokenizer."""
    shards = make_shards(tmp_path / "curated")
    tok = load_tokenizer(shards / "tokenizer", "tokenizer")
    ids = special_ids(tok, "tokenizer")
    config = build_config("tiny", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          mask_token_id=ids["mask"], pad_token_id=ids["pad"], bos_token_id=ids["eos"],
                          eos_token_id=ids["eos"], dlm_pad_token_id=ids["dlm_pad"])
    save_model(build_model(config, seed=0), tmp_path / "model")
    tok.save_pretrained(str(tmp_path / "model"))
    store.put_artifact(name, tmp_path / "model")


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    publish_micro_model(tmp_path, store, "runs/t1/pretrain")
    overrides = ["train.steps=3", "data.batch_size=4", "train.eval_batches=1", "checkpoint.every_steps=2",
                 "optim.warmup_steps=1", "train.log_every=1", "tasks.max_per_family=2"]

    @dsl.pipeline(name="sft-test")
    def pipeline(uri: str, root: str):
        ref = model_reference(uri=uri)
        sft(preset="tiny-cpu", model=ref.outputs["artifact"], store_root=root, run_name="t1",
            run_id="job-1", store_secret="diffucoder-s3", overrides=overrides, launcher="in-process",
            cluster=[], job_image="", start_stage="curate")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    pipeline(uri=f"{store_root}/runs/t1/pretrain", root=store_root)
    kfp = tmp_path / "kfp"
    model_ref = json.loads(next(kfp.glob("*/sft/sft_model/artifact-ref.json")).read_text())
    tasks_ref = json.loads(next(kfp.glob("*/sft/tasks/artifact-ref.json")).read_text())
    assert model_ref["uri"] == f"{store_root}/runs/t1/sft" and store.has_artifact("runs/t1/sft")
    assert tasks_ref["uri"] == f"{store_root}/runs/t1/tasks"
    store.get_artifact("runs/t1/tasks", tmp_path / "tasks")
    assert read_tasks(tmp_path / "tasks" / "tasks-heldout.jsonl")
    assert "Training report: sft" in next(kfp.glob("*/sft/report")).read_text()
