"""Unit, compile and local-runner tests of the pretrain component."""
import json

import pytest
from kfp import dsl, local

from diffucoder.store import open_store
from diffucoder_kfp.components.images import TRAIN_IMAGE
from diffucoder_kfp.components.pretrain import pretrain
from diffucoder_kfp.components.testing import compile_component, dataset_reference
from tests.training.training_helpers import MICRO_MODEL, make_shards


def test_component_interface_is_typed():
    spec = pretrain.component_spec
    assert set(spec.inputs) == {"preset", "curated", "store_root", "run_name", "run_id", "store_secret",
                                "overrides", "launcher", "cluster", "job_image", "start_stage",
                                "start_model"}
    assert spec.inputs["curated"].type == "system.Dataset@0.0.1"
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "model": "system.Model@0.0.1", "metrics": "system.Metrics@0.0.1",
        "report": "system.Markdown@0.0.1", "job": "system.Artifact@0.0.1"}
    assert spec.implementation.container.image == TRAIN_IMAGE


def test_component_compiles(tmp_path):
    ir, executor = compile_component(pretrain, tmp_path)
    assert executor["container"]["image"] == TRAIN_IMAGE
    assert "run_pretrain_stage" in " ".join(executor["container"]["command"])


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    store.put_artifact("runs/t1/curated", make_shards(tmp_path / "curated"))
    overrides = MICRO_MODEL + ["train.steps=3", "data.batch_size=4", "train.eval_batches=1",
                               "checkpoint.every_steps=2", "optim.warmup_steps=1", "train.log_every=1"]

    @dsl.pipeline(name="pretrain-test")
    def pipeline(uri: str, root: str):
        ref = dataset_reference(uri=uri)
        pretrain(preset="tiny-cpu", curated=ref.outputs["artifact"], store_root=root, run_name="t1",
                 run_id="job-1", store_secret="diffucoder-s3", overrides=overrides, launcher="in-process",
                 cluster=[], job_image="", start_stage="curate", start_model="")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    pipeline(uri=f"{store_root}/runs/t1/curated", root=store_root)
    ref = json.loads(next((tmp_path / "kfp").glob("*/pretrain/model/artifact-ref.json")).read_text())
    assert ref["uri"] == f"{store_root}/runs/t1/pretrain"
    assert store.has_artifact("runs/t1/pretrain")
    report = next((tmp_path / "kfp").glob("*/pretrain/report")).read_text()
    assert "Training report: pretrain" in report and "data:image/png;base64," in report
    outputs = json.loads(next((tmp_path / "kfp").glob("*/pretrain/executor_output.json")).read_text())
    metrics = outputs["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["final_loss"] > 0 and metrics["tokens"] == 3 * 4 * 32
    assert "in-process" in next((tmp_path / "kfp").glob("*/pretrain/job")).read_text()
