"""kfp_emulation: the driver's input resolution and the launcher's substitution, checked without
running a step (the step contract tests run them for real)."""
from __future__ import annotations

import json
import sys

import pytest

from diffucoder import __version__
from kfp_emulation import CompiledPipeline, EmulationError, PipelineRun, StepResult, evaluate_condition
from tests.checkout import COMPILED_DIR

PIPELINE = CompiledPipeline.load(COMPILED_DIR / f"diffucoder-{__version__}.yaml")


def test_conditions_read_like_the_drivers_cel():
    values = {"a": 0.4, "b": 0.5, "mode": "trainjob"}
    assert evaluate_condition("inputs.parameter_values['a'] >= inputs.parameter_values['b']", values) is False
    assert evaluate_condition("!(inputs.parameter_values['a'] >= inputs.parameter_values['b'])", values) is True
    assert evaluate_condition("inputs.parameter_values['mode'] == 'trainjob' && "
                              "inputs.parameter_values['a'] != 1.0", values) is True
    with pytest.raises(EmulationError, match="a function this emulation does not know"):
        evaluate_condition("size(inputs.parameter_values['mode']) > 0", values)


def test_the_dag_orders_producers_first_and_flattens_sub_dags():
    order = PIPELINE.leaf_tasks()
    assert set(PIPELINE.executors()) == {
        PIPELINE.component(PIPELINE.task(path).component_name)["executorLabel"] for path in order}
    for path in order:
        for upstream in PIPELINE.task(path).spec.get("dependentTasks", []):
            prefix = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            if f"{prefix}{upstream}" in order:
                assert order.index(f"{prefix}{upstream}") < order.index(path), (upstream, path)


def test_unknown_pipeline_parameters_are_refused(tmp_path):
    with pytest.raises(EmulationError, match="no parameter.*bogus"):
        PipelineRun(PIPELINE, {"bogus": 1}, tmp_path)


def test_a_step_gets_the_pipeline_parameters_and_runtime_values(tmp_path):
    run = PipelineRun(PIPELINE, {"store_root": "file:///s", "run_name": ""}, tmp_path, job_id="job-7")
    params, artifacts = run.resolve(PIPELINE.task("curate"))
    assert params["store_root"] == "file:///s" and params["run_id"] == "job-7" and artifacts == {}
    assert params["preset"] == PIPELINE.ir["root"]["inputDefinitions"]["parameters"]["preset"]["defaultValue"]


def test_a_step_before_its_producer_is_refused(tmp_path):
    run = PipelineRun(PIPELINE, {}, tmp_path)
    with pytest.raises(EmulationError, match="pretrain needs the outputs of placement, which has not run"):
        run.resolve(PIPELINE.task("pretrain"))


def test_the_pod_is_built_from_the_placement_outputs_as_the_driver_reads_them(tmp_path):
    """initPodSpecPatch (KFP 2.5.0): a resource or image field that names a parameter becomes that
    parameter's *string* value; a number there reads as '' and the accelerator is dropped."""
    outputs = {f"pretrain_{k}": v for k, v in {"image": "reg/diffucoder-train:1", "accelerator": "nvidia.com/gpu",
                                              "gpus": "8", "cpu": "64", "memory": "800Gi",
                                              "node_selector": {"pool": "gpu"}, "tolerations": [{"key": "g"}]}.items()}
    outputs["job_image"] = "reg/diffucoder-train:1"
    run = PipelineRun(PIPELINE, {}, tmp_path)
    run.results["placement"] = StepResult("placement", "exec-placement", "", [], 0, "", 0.0, outputs)
    run.results["curate"] = StepResult("curate", "exec-curate", "", [], 0, "", 0.0, {"curated": None})
    pod = run.pod_spec("pretrain")
    assert pod["image"] == "reg/diffucoder-train:1" and pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["resources"] == {"requests": {"cpu": "64", "memory": "800Gi"},
                                "limits": {"cpu": "64", "memory": "800Gi", "nvidia.com/gpu": "8"}}
    assert pod["tolerations"] == [{"key": "g"}]
    outputs["pretrain_gpus"] = 8   # an integer output: the driver would drop the GPU silently
    assert "nvidia.com/gpu" not in run.pod_spec("pretrain")["resources"]["limits"]
    outputs["pretrain_memory"] = "lots"
    with pytest.raises(EmulationError, match="not a quantity"):
        run.pod_spec("pretrain")


def test_the_launcher_substitutes_the_executor_input(tmp_path):
    """Run curate's compiled command with a stand-in python3 that records its argv: '{{$}}' became
    the ExecutorInput JSON with the step's parameters and output paths."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    (bin_dir / "python3").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                     f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    (bin_dir / "python3").chmod(0o755)

    class Recorder:
        def env(self, **extra):
            return {"PATH": f"{bin_dir}:/usr/bin:/bin", **extra}

    run = PipelineRun(PIPELINE, {"store_root": "file:///s", "curate_overrides": ["a=1"]}, tmp_path / "root")
    run.execute("curate", lambda image: Recorder())
    argv = json.loads(record.read_text())
    assert argv[:2] == ["-m", "kfp.dsl.executor_main"]
    executor_input = json.loads(argv[argv.index("--executor_input") + 1])
    assert executor_input["inputs"]["parameterValues"]["overrides"] == ["a=1"]
    assert executor_input["inputs"]["parameterValues"]["store_root"] == "file:///s"
    curated = executor_input["outputs"]["artifacts"]["curated"]["artifacts"][0]["uri"]
    assert curated.startswith(str(tmp_path / "root")) and (tmp_path / "root").is_dir()
    assert argv[argv.index("--function_to_execute") + 1] == "curate"
