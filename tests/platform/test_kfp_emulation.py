"""kfp_emulation: the driver's input resolution and the launcher's substitution, checked without
running a step (the step contract tests run them for real)."""
# No `from __future__ import annotations`: kfp reads the toy components' annotations as types.
import json
import sys

import pytest
from kfp import compiler, dsl

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


# ParallelFor: two toy pipelines, one looping over a task's list output, one over a pipeline parameter.
@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def make_items() -> list:
    return []


@dsl.container_component
def use_item(item: str, tag: str):
    return dsl.ContainerSpec(image="python:3.11-slim", command=["python3", "record"], args=[item, tag])


@dsl.pipeline(name="loop-over-output")
def loop_over_output(tag: str = "t"):
    items = make_items()
    with dsl.ParallelFor(items.output, parallelism=2) as item:
        use_item(item=item, tag=tag)


@dsl.pipeline(name="loop-over-parameter")
def loop_over_parameter(tag: str = "t", shards: list = ["0:2", "2:3"]):  # noqa: B006
    with dsl.ParallelFor(shards) as item:
        use_item(item=item, tag=tag)


def compiled(pipeline, tmp_path) -> CompiledPipeline:
    path = tmp_path / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return CompiledPipeline.load(path)


def recorder(tmp_path):
    """A stand-in python3 first on PATH that appends its argv to a JSON-lines file."""
    bin_dir, record = tmp_path / "bin", tmp_path / "argv.jsonl"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                     f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    (bin_dir / "python3").chmod(0o755)

    class Recorder:
        def env(self, **extra):
            return {"PATH": f"{bin_dir}:/usr/bin:/bin", **extra}

    return Recorder(), record


def loop_path(pipeline: CompiledPipeline, inner: str) -> str:
    """The root task of the ParallelFor whose body runs component ``inner``."""
    (path,) = [name for name, spec in pipeline.dag("")["tasks"].items() if "parameterIterator" in spec
               and any(t["componentRef"]["name"] == inner
                       for t in pipeline.component(spec["componentRef"]["name"])["dag"]["tasks"].values())]
    return path


def test_a_loop_over_a_task_output_gives_each_iteration_its_item(tmp_path):
    """The driver's fan-out: the items are the producer's list; iteration i gets item i as its
    itemInput and the loop's other inputs (the pipeline's ``tag``), never the items list."""
    pipeline = compiled(loop_over_output, tmp_path)
    loop = loop_path(pipeline, "comp-use-item")
    run = PipelineRun(pipeline, {"tag": "x"}, tmp_path / "root")
    with pytest.raises(EmulationError, match="make-items, which has not run"):
        run.loop_items(loop)
    run.results["make-items"] = StepResult("make-items", "exec-make-items", "", [], 0, "", 0.0,
                                           {"Output": ["0:2", "2:3", "3:4"]})
    assert run.loop_items(loop) == ["0:2", "2:3", "3:4"]
    assert run.enter_iteration(loop, 1) == f"{loop}[1]"
    params, _ = run.resolve(pipeline.task(f"{loop}[1]/use-item"))
    assert params == {"item": "2:3", "tag": "x"}
    iteration_inputs = run.dag_inputs[f"{loop}[1]"][0]
    items_input = pipeline.task(loop).loop["items"]["inputParameter"]
    assert items_input not in iteration_inputs and pipeline.task(loop).loop["itemInput"] in iteration_inputs
    with pytest.raises(EmulationError, match=r"iteration 3 of 3 item\(s\)"):
        run.enter_iteration(loop, 3)
    with pytest.raises(EmulationError, match=r"is a ParallelFor: name one of its iterations"):
        run.resolve(pipeline.task(f"{loop}/use-item"))
    with pytest.raises(EmulationError, match="is not a ParallelFor"):
        pipeline.task("make-items[0]")
    # getItems: a JSON list in a string is iterated too; anything else fails the loop
    run.results["make-items"].outputs["Output"] = '["a", "b"]'
    assert run.loop_items(loop) == ["a", "b"]
    run.results["make-items"].outputs["Output"] = {"a": 1}
    with pytest.raises(EmulationError, match="cannot be iterated"):
        run.loop_items(loop)


def test_run_loop_runs_the_body_once_per_item_in_order(tmp_path):
    pipeline = compiled(loop_over_output, tmp_path)
    loop = loop_path(pipeline, "comp-use-item")
    env, record = recorder(tmp_path)
    run = PipelineRun(pipeline, {"tag": "x"}, tmp_path / "root")
    run.results["make-items"] = StepResult("make-items", "exec-make-items", "", [], 0, "", 0.0,
                                           {"Output": ["0:2", "2:3"]})
    assert run.run_loop(loop, lambda image: env) == [f"{loop}[0]", f"{loop}[1]"]
    argvs = [json.loads(line) for line in record.read_text().splitlines()]
    assert argvs == [["record", "0:2", "x"], ["record", "2:3", "x"]]
    assert sorted(run.results) == sorted(["make-items", f"{loop}[0]/use-item", f"{loop}[1]/use-item"])
    run.results["make-items"].outputs["Output"] = []      # Argo skips a loop of no items
    assert run.run_loop(loop, lambda image: env) == []
    assert run.skipped == {f"{loop}/use-item": f"ParallelFor {loop} has no items"}


def test_run_all_fans_out_a_loop_over_a_pipeline_parameter(tmp_path):
    pipeline = compiled(loop_over_parameter, tmp_path)
    (loop,) = [path for path, spec in pipeline.dag("")["tasks"].items() if "parameterIterator" in spec]
    env, record = recorder(tmp_path)
    run = PipelineRun(pipeline, {"shards": ["a", "b", "c"]}, tmp_path / "root")
    run.run_all(lambda image: env)
    assert [json.loads(line) for line in record.read_text().splitlines()] == [
        ["record", "a", "t"], ["record", "b", "t"], ["record", "c", "t"]]
    assert sorted(run.results) == [f"{loop}[{i}]/use-item" for i in range(3)]
