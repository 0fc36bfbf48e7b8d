"""Unit, compile and local-runner tests of the placement component (and diffucoder_kfp.placement)."""
import json

import pytest
from kfp import dsl, local

from diffucoder import __version__
from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.config import EvaluateConfig
from diffucoder_kfp.components.images import BASE_IMAGE
from diffucoder_kfp.components.placement import placement
from diffucoder_kfp.components.testing import compile_component
from diffucoder.stages.cluster import LAUNCHERS as cluster_launchers
from diffucoder_kfp.placement import (EVALUATE_DEFAULT_DEVICE, LAUNCHER_CPU, LAUNCHER_MEMORY, LAUNCHERS,
                                      TRAINING_STEPS, evaluate_device, output_names, placement_outputs, step_pods)

REGISTRY = "registry.example.com/ml"
GPU_POOL = ({"nvidia.com/gpu.present": "true"}, [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])


def test_component_interface_declares_every_output_the_rules_give():
    spec = placement.component_spec
    assert set(spec.inputs) == {"preset", "launcher", "cluster", "evaluate_overrides", "image_registry",
                                "node_selector", "tolerations", "start_stage", "midtrain"}
    assert list(spec.outputs) == output_names()
    kinds = {name: out.type for name, out in spec.outputs.items()}
    assert kinds["evaluate_gpus"] == kinds["sft_memory"] == "String"   # the driver reads resources as strings
    assert kinds["rl_node_selector"] == "Dict" and kinds["pretrain_tolerations"] == "List"
    assert spec.implementation.container.image == BASE_IMAGE


def test_component_compiles(tmp_path):
    _, executor = compile_component(placement, tmp_path)
    assert executor["container"]["image"] == BASE_IMAGE
    assert "step_pods" in " ".join(executor["container"]["command"])


def test_7b_gpu_in_process_steps_are_one_gpu_node_and_evaluate_one_serving_replica():
    pods = step_pods("7b-gpu", "in-process", registry=REGISTRY, midtrain=True)
    for stage in TRAINING_STEPS:   # configs/7b-gpu/cluster.yaml training.stages.<stage>
        pod = pods[stage]
        assert pod.image == f"{REGISTRY}/diffucoder-train:{__version__}"
        assert (pod.gpus, pod.cpu, pod.memory, pod.accelerator) == (8, "64", "800Gi", "nvidia.com/gpu")
        assert (pod.node_selector, pod.tolerations) == GPU_POOL
    evaluate = pods["evaluate"]   # serving: gpus 1, cpu 8, memory 64Gi; evaluate.yaml device cuda
    assert (evaluate.image, evaluate.gpus, evaluate.cpu, evaluate.memory) == (
        f"{REGISTRY}/diffucoder-train:{__version__}", 1, "8", "64Gi")
    assert (evaluate.node_selector, evaluate.tolerations) == GPU_POOL


@pytest.mark.parametrize("launcher", ["trainjob", "pytorchjob"])
def test_launcher_steps_run_on_the_slim_image_without_gpus(launcher):
    pods = step_pods("7b-gpu", launcher, registry=REGISTRY)
    for stage in TRAINING_STEPS:
        assert pods[stage].image == f"{REGISTRY}/diffucoder-base:{__version__}"
        assert (pods[stage].gpus, pods[stage].accelerator) == (0, "")
        assert (pods[stage].cpu, pods[stage].memory) == (LAUNCHER_CPU, LAUNCHER_MEMORY)
        assert pods[stage].node_selector == {} and pods[stage].tolerations == []
    assert pods["evaluate"].gpus == 1   # the model is still evaluated on a GPU


def test_steps_that_only_pass_a_model_on_get_the_slim_pod():
    """Mid-training off (the default) or before the run's start stage: the step passes a model on."""
    off = step_pods("7b-gpu", "in-process")
    assert off["midtrain"].gpus == 0 and off["midtrain"].image.endswith(f"/diffucoder-base:{__version__}")
    assert off["pretrain"].gpus == 8
    from_rl = step_pods("7b-gpu", "in-process", start_stage="rl", midtrain=True)
    assert from_rl["rl"].gpus == 8 and from_rl["evaluate"].gpus == 1
    assert sum(pod.gpus for pod in from_rl.values()) == 9   # pretrain, midtrain, sft pass models on


def test_tiny_cpu_gets_no_gpu_and_no_pool():
    pods = step_pods("tiny-cpu", "in-process")
    assert set(pods) == {*TRAINING_STEPS, "evaluate"} and all(pod.gpus == 0 for pod in pods.values())
    assert (pods["sft"].cpu, pods["sft"].memory) == ("2", "4Gi")          # training.stages.sft
    assert (pods["evaluate"].cpu, pods["evaluate"].memory) == ("1", "2Gi")  # serving
    assert all(pod.node_selector == {} and pod.tolerations == [] for pod in pods.values())


def test_the_runs_node_pool_places_every_model_step():
    pool = ({"pool": "big"}, [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}])
    pods = step_pods("tiny-cpu", "in-process", node_selector=pool[0], tolerations=pool[1], midtrain=True)
    assert all((pod.node_selector, pod.tolerations) == pool for pod in pods.values())
    launching = step_pods("tiny-cpu", "trainjob", node_selector=pool[0], tolerations=pool[1])
    assert launching["pretrain"].node_selector == {}   # a launcher holds no model
    assert launching["evaluate"].node_selector == pool[0]


def test_evaluate_device_reads_the_recipe_as_its_config_class_does():
    assert EVALUATE_DEFAULT_DEVICE == EvaluateConfig().device
    for preset in ("tiny-cpu", "7b-gpu"):
        for overrides in ([], ["device=cpu"], ["device=cuda:1"]):
            expected = load_config(EvaluateConfig, recipe_path(preset, "evaluate"), overrides).device
            assert evaluate_device(preset, overrides) == expected, (preset, overrides)
    assert step_pods("7b-gpu", "trainjob", evaluate_overrides=["device=cpu"])["evaluate"].gpus == 0


def test_the_launchers_are_the_cluster_launchers():
    assert LAUNCHERS == cluster_launchers


def test_contradictions_and_bad_values_are_errors_naming_the_key():
    with pytest.raises(DiffucoderError, match="serving.gpus is 0"):
        step_pods("7b-gpu", "in-process", cluster=["serving.gpus=0"])
    with pytest.raises(DiffucoderError, match="training_launcher: must be one of"):
        step_pods("7b-gpu", "slurm")
    with pytest.raises(DiffucoderError, match="step_node_selector"):
        step_pods("tiny-cpu", "in-process", node_selector={"gpu": True})
    with pytest.raises(DiffucoderError, match="sft step memory"):
        step_pods("tiny-cpu", "in-process", cluster=["training.stages.sft.memory=lots"])


def test_outputs_are_typed_as_the_tasks_consume_them():
    out = placement_outputs(step_pods("7b-gpu", "in-process", registry=REGISTRY),
                            job_image=f"{REGISTRY}/diffucoder-train:{__version__}")
    assert list(out) == output_names()
    assert out["evaluate_gpus"] == "1" and out["pretrain_gpus"] == "8" and out["evaluate_accelerator"] == "nvidia.com/gpu"
    assert out["pretrain_node_selector"] == GPU_POOL[0] and out["job_image"].startswith(REGISTRY)


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path):
    @dsl.pipeline(name="placement-test")
    def pipeline(launcher: str):
        placement(preset="7b-gpu", launcher=launcher, cluster=[], evaluate_overrides=[], image_registry=REGISTRY,
                  node_selector={}, tolerations=[], start_stage="curate", midtrain=False)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    pipeline(launcher="pytorchjob")
    outputs = json.loads(next((tmp_path / "kfp").glob("*/placement/executor_output.json")).read_text())
    values = outputs["parameterValues"]
    assert values["sft_image"] == f"{REGISTRY}/diffucoder-base:{__version__}" and values["sft_gpus"] == "0"
    assert values["evaluate_gpus"] == "1" and values["evaluate_tolerations"] == GPU_POOL[1]
    assert values["job_image"] == f"{REGISTRY}/diffucoder-train:{__version__}"
