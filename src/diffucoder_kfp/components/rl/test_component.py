"""Unit, compile and local-runner tests of the rl component."""
import json

import pytest
from kfp import dsl, local

from diffucoder.errors import DiffucoderError
from diffucoder.stages.cluster import stage_launcher
from diffucoder.store import open_store
from diffucoder_kfp.components.images import TRAIN_IMAGE
from diffucoder_kfp.components.rl import rl
from diffucoder_kfp.components.testing import compile_component, dataset_reference, model_reference
from tests.rl.rl_trainer_helpers import make_model_dir, make_suite


def test_component_interface_is_typed():
    spec = rl.component_spec
    assert set(spec.inputs) == {"preset", "model", "tasks", "store_root", "run_name", "run_id",
                                "store_secret", "overrides", "launcher", "cluster", "job_image"}
    assert spec.inputs["model"].type == "system.Model@0.0.1"
    assert spec.inputs["tasks"].type == "system.Dataset@0.0.1"
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "rl_model": "system.Model@0.0.1", "metrics": "system.Metrics@0.0.1",
        "report": "system.Markdown@0.0.1", "job": "system.Artifact@0.0.1"}
    assert spec.implementation.container.image == TRAIN_IMAGE


def test_component_compiles(tmp_path):
    ir, executor = compile_component(rl, tmp_path)
    assert executor["container"]["image"] == TRAIN_IMAGE
    assert "run_rl_stage" in " ".join(executor["container"]["command"])


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    store.put_artifact("runs/t1/sft", make_model_dir(tmp_path / "sft"))
    store.put_artifact("runs/t1/tasks", make_suite(tmp_path / "tasks"))
    overrides = ["train.steps=2", "rollout.group_size=2", "rollout.prompts_per_step=2",
                 "rollout.sampling.max_new_tokens=16", "rollout.sampling.steps=4", "objective.mu=1",
                 "checkpoint.every_steps=1", "reward.workers=1", "train.threads=1"]

    @dsl.pipeline(name="rl-test")
    def pipeline(model_uri: str, tasks_uri: str, root: str):
        model = model_reference(uri=model_uri)
        tasks = dataset_reference(uri=tasks_uri)
        rl(preset="tiny-cpu", model=model.outputs["artifact"], tasks=tasks.outputs["artifact"], store_root=root,
           run_name="t1", run_id="job-1", store_secret="diffucoder-s3", overrides=overrides,
           launcher="in-process", cluster=[], job_image="")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    pipeline(model_uri=f"{store_root}/runs/t1/sft", tasks_uri=f"{store_root}/runs/t1/tasks", root=store_root)
    kfp = tmp_path / "kfp"
    ref = json.loads(next(kfp.glob("*/rl/rl_model/artifact-ref.json")).read_text())
    assert ref["uri"] == f"{store_root}/runs/t1/rl" and store.has_artifact("runs/t1/rl")
    assert store.has_artifact("runs/t1/rl-checkpoints/step-00000002")   # keep_last=1: the newest only
    report = next(kfp.glob("*/rl/report")).read_text()
    assert "data:image/png;base64," in report and "](rl_curves.png)" not in report
    outputs = json.loads(next(kfp.glob("*/rl/executor_output.json")).read_text())
    metrics = outputs["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["steps"] == 2 and metrics["rollouts"] == 2 * 2 * 2
    assert "in-process" in next(kfp.glob("*/rl/job")).read_text()


def test_cluster_overrides_without_a_cluster_launcher_are_refused():
    with pytest.raises(DiffucoderError, match="launcher is 'in-process'"):
        stage_launcher("in-process", ["training.stages.rl.nodes=2"])
    with pytest.raises(DiffucoderError, match="must be one of"):
        stage_launcher("slurm")
    assert stage_launcher("pytorchjob", ["a=1"]).kind == "pytorchjob"
