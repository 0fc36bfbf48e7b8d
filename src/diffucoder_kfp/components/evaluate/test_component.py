"""Unit, compile and local-runner tests of the evaluate component."""
import json

import pytest
from kfp import dsl, local

from diffucoder.store import open_store, resolve
from diffucoder.tasks import generate_suite, write_suite
from diffucoder_kfp.components.evaluate import evaluate
from diffucoder_kfp.components.images import TRAIN_IMAGE
from diffucoder_kfp.components.testing import compile_component, dataset_reference, model_reference
from tests.evaluation.evaluation_helpers import make_model_dir


def test_component_interface_is_typed():
    spec = evaluate.component_spec
    assert set(spec.inputs) == {"preset", "model", "tasks", "store_root", "run_name", "run_id",
                                "stage_name", "overrides"}
    assert spec.inputs["model"].type == "system.Model@0.0.1"
    assert spec.inputs["tasks"].type == "system.Dataset@0.0.1"
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "results": "system.Dataset@0.0.1", "metrics": "system.Metrics@0.0.1",
        "report": "system.Markdown@0.0.1", "Output": "Float"}
    assert spec.implementation.container.image == TRAIN_IMAGE


def test_component_compiles(tmp_path):
    ir, executor = compile_component(evaluate, tmp_path)
    assert executor["container"]["image"] == TRAIN_IMAGE
    assert "run_evaluate_stage" in " ".join(executor["container"]["command"])
    outputs = ir["root"]["outputDefinitions"]
    assert outputs["parameters"]["Output"]["parameterType"] == "NUMBER_DOUBLE"


@dsl.pipeline(name="evaluate-test")
def evaluate_alone(model_uri: str, tasks_uri: str, store_root: str, overrides: list) -> float:
    model = model_reference(uri=model_uri)
    tasks = dataset_reference(uri=tasks_uri)
    step = evaluate(preset="tiny-cpu", model=model.outputs["artifact"], tasks=tasks.outputs["artifact"],
                    store_root=store_root, run_name="t1", run_id="job-1", stage_name="evaluate-sft",
                    overrides=overrides)
    return step.outputs["Output"]


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path):
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    write_suite(generate_suite(seed=0, max_per_family=5), tmp_path / "suite")
    store.put_artifact("runs/t1/tasks", tmp_path / "suite", metadata={"kind": "task-suite"})
    store.put_artifact("runs/t1/sft", make_model_dir(tmp_path / "model"), metadata={"kind": "model"})

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    run = evaluate_alone(model_uri=f"{store_root}/runs/t1/sft", tasks_uri=f"{store_root}/runs/t1/tasks",
                         store_root=store_root,
                         overrides=["max_tasks=2", "batch_size=2", "sampling.max_new_tokens=8",
                                    "sampling.steps=4", "limits.time_floor_s=1.0",
                                    f"cache_dir={tmp_path / 'cache'}"])
    uri = f"{store_root}/runs/t1/evaluate-sft"
    ref = json.loads(next((tmp_path / "kfp").glob("*/evaluate/results/artifact-ref.json")).read_text())
    assert ref["uri"] == uri
    metrics = json.loads(resolve(uri)[0].open_file("evaluate-sft", "metrics.json"))
    assert run.output == metrics["gate"]["pass_at_1"]
    assert 0.0 <= run.output <= 1.0
    assert metrics["benchmarks"]["synthetic"]["tasks"] == 2
    report = next((tmp_path / "kfp").glob("*/evaluate/report")).read_text()
    assert "| synthetic | 2 of" in report and "data:image/png;base64," in report
    executor = json.loads(next((tmp_path / "kfp").glob("*/evaluate/executor_output.json")).read_text())
    logged = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["synthetic_pass_at_1"] == run.output and logged["pass_at_1"] == run.output
