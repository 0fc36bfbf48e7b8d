"""Unit, compile and local-runner tests of the midtrain component."""
import json

import pytest
from kfp import dsl, local

from diffucoder.store import open_store
from diffucoder_kfp.components.images import TRAIN_IMAGE
from diffucoder_kfp.components.midtrain import midtrain
from diffucoder_kfp.components.sft.test_component import publish_micro_model
from diffucoder_kfp.components.testing import compile_component, dataset_reference, model_reference
from tests.training.training_helpers import make_shards


def test_component_interface_is_typed():
    spec = midtrain.component_spec
    assert set(spec.inputs) == {"preset", "model", "curated", "data_uri", "enabled", "store_root", "run_name",
                                "run_id", "store_secret", "overrides", "launcher", "cluster", "job_image",
                                "start_stage"}
    assert spec.inputs["model"].type == "system.Model@0.0.1" and spec.inputs["curated"].type == "system.Dataset@0.0.1"
    assert spec.inputs["enabled"].type == "Boolean"
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "midtrain_model": "system.Model@0.0.1", "metrics": "system.Metrics@0.0.1",
        "report": "system.Markdown@0.0.1", "job": "system.Artifact@0.0.1"}
    assert spec.implementation.container.image == TRAIN_IMAGE


def test_component_compiles(tmp_path):
    _, executor = compile_component(midtrain, tmp_path)
    assert executor["container"]["image"] == TRAIN_IMAGE
    assert "run_midtrain_stage" in " ".join(executor["container"]["command"])


def run_step(tmp_path, store_root: str, enabled: bool) -> tuple[dict, str]:
    @dsl.pipeline(name="midtrain-test")
    def pipeline(model_uri: str, data_uri: str, root: str, on: bool):
        model = model_reference(uri=model_uri)
        curated = dataset_reference(uri=data_uri)
        midtrain(preset="tiny-cpu", model=model.outputs["artifact"], curated=curated.outputs["artifact"], data_uri="",
                 enabled=on, store_root=root, run_name="t1", run_id="job-1", store_secret="diffucoder-s3",
                 overrides=["train.steps=2", "data.batch_size=2", "train.eval_batches=1", "checkpoint.every_steps=1",
                            "optim.warmup_steps=1", "train.log_every=1"],
                 launcher="in-process", cluster=[], job_image="", start_stage="curate")

    root = tmp_path / ("kfp-on" if enabled else "kfp-off")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    pipeline(model_uri=f"{store_root}/runs/t1/pretrain", data_uri=f"{store_root}/runs/t1/curated", root=store_root,
             on=enabled)
    ref = json.loads(next(root.glob("*/midtrain/midtrain_model/artifact-ref.json")).read_text())
    return ref, next(root.glob("*/midtrain/report")).read_text()


@pytest.mark.integration
def test_off_passes_the_model_on_and_on_trains_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    publish_micro_model(tmp_path / "model", store, "runs/t1/pretrain")
    store.put_artifact("runs/t1/curated", make_shards(tmp_path / "curated"))
    ref, report = run_step(tmp_path, store_root, enabled=False)
    assert ref["uri"] == f"{store_root}/runs/t1/pretrain" and not store.has_artifact("runs/t1/midtrain")
    assert "Mid-training is off" in report
    ref, report = run_step(tmp_path, store_root, enabled=True)
    assert ref["uri"] == f"{store_root}/runs/t1/midtrain" and store.has_artifact("runs/t1/midtrain")
    summary = json.loads(store.open_file("runs/t1/midtrain", "training/summary.json"))
    assert summary["steps"] == 2
