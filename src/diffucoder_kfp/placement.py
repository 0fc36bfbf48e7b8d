"""What pod each model-holding step gets: its image, GPUs, CPU, memory and node pool, from the preset.

    pods = step_pods("7b-gpu", "trainjob", registry="registry.example.com/ml")
    pods["pretrain"].image    # .../diffucoder-base:<version>: the step only launches a TrainJob
    pods["midtrain"].gpus     # 0: mid-training is off (pipeline parameter midtrain), the step passes the model on
    pods["evaluate"].gpus     # 1: configs/7b-gpu/evaluate.yaml runs on cuda, one GPU holds the model
    outputs = placement_outputs(pods, job_image=image_ref("train", registry))   # the kfp step's outputs

The pipeline's first step (``components/placement``) computes this at run time, because the
preset and the launcher are run parameters; the training and evaluation tasks take their image,
``nvidia.com/gpu`` limit, CPU, memory, node selector and tolerations from its outputs
(``PipelineTask.set_container_image`` / ``set_accelerator_*`` / ``set_cpu_*`` / ``set_memory_*``,
``kubernetes.add_node_selector_json`` / ``add_toleration_json``), which the KFP driver resolves
into the step's pod (KFP backend >= 2.4.0 resolves task outputs there; >= 2.5.0 the node
selector and tolerations).

The rules, all from ``configs/<preset>/cluster.yaml`` (plus ``cluster_overrides``):

- a training step with a cluster launcher (``trainjob``, ``pytorchjob``) runs the launcher only,
  and one that trains nothing in this run (before ``start_stage``, or ``midtrain`` off) only passes
  a model on: the slim base image, ``LAUNCHER_CPU`` / ``LAUNCHER_MEMORY``, no GPU, no node pool;
- a training step ``in-process`` is one node of its job: the train image (CUDA, DeepSpeed) and
  ``training.stages.<stage>``'s ``gpus_per_node``, ``cpu`` and ``memory``;
- evaluate holds the model as one serving replica does: the train image, ``serving.cpu`` and
  ``serving.memory``, and ``serving.gpus`` GPUs when the evaluate recipe's ``device`` is cuda
  (none when it is cpu; cuda with ``serving.gpus: 0`` is an error);
- a step with GPUs goes to the preset's GPU pool (``training.node_selector`` /
  ``training.tolerations``); the pipeline's ``step_node_selector`` / ``step_tolerations``, when
  not empty, place every model-holding step instead.

GPU counts, CPU and memory are strings: the KFP driver reads a resource given by a parameter as
a string (``GetStringValue``) and drops an accelerator count that is a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffucoder.config import parse_overrides, read_yaml
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.kube.config import ClusterConfig, image_ref, load_cluster_config
from diffucoder.kube.pods import GPU_RESOURCE, check_quantity
from diffucoder.kube.training_job import RENDERERS
from diffucoder.stages.plan import trains
from diffucoder.stages.registry import TRAINING_STAGES

# The training launchers: in the step's pod, or a cluster job of a kind kube renders
# (diffucoder.stages.cluster.LAUNCHERS; not imported from there: its job estimate brings torch and
# transformers into this small first step, 7 s of imports; a test keeps the two equal).
LAUNCHERS = ("in-process", *RENDERERS)

TRAINING_STEPS = TRAINING_STAGES   # pretrain, midtrain, sft, rl: a step each in the pipeline
MODEL_STEPS = (*TRAINING_STEPS, "evaluate")
FIELDS = ("image", "accelerator", "gpus", "cpu", "memory", "node_selector", "tolerations")
# The launcher renders its job (the model's config, a memory estimate on no device) and polls the
# API: no model is ever loaded (about 0.4 GiB resident rendering a 7B pretrain job).
LAUNCHER_CPU, LAUNCHER_MEMORY = "1", "2Gi"
EVALUATE_DEFAULT_DEVICE = "cpu"   # diffucoder.evaluation.config.EvaluateConfig.device (a test keeps them equal)


@dataclass(frozen=True)
class StepPod:
    image: str
    gpus: int
    cpu: str
    memory: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accelerator(self) -> str:
        """The accelerator resource of the pod: empty without GPUs (the driver then sets none)."""
        return GPU_RESOURCE if self.gpus else ""


def _pool(cfg: ClusterConfig, gpus: int, node_selector: dict | None,
          tolerations: list | None) -> tuple[dict, list]:
    if node_selector or tolerations:   # the run's own pool for every model-holding step
        return dict(node_selector or {}), [dict(t) for t in tolerations or []]
    if gpus:
        return dict(cfg.training.node_selector), [dict(t) for t in cfg.training.tolerations]
    return {}, []


def step_pods(preset: str, launcher: str, *, registry: str = "",
              cluster: list[str] | tuple[str, ...] | None = None,   # key=value overrides of cluster.yaml
              evaluate_overrides: list[str] | tuple[str, ...] = (),
              node_selector: dict | None = None, tolerations: list | None = None,
              start_stage: str = "curate", midtrain: bool = False) -> dict[str, StepPod]:
    """The pod of every step of ``MODEL_STEPS`` for a run of ``preset`` with ``launcher`` that starts
    at ``start_stage``, with mid-training on or off (``midtrain``)."""
    if launcher not in LAUNCHERS:
        raise DiffucoderError(f"training_launcher: must be one of {list(LAUNCHERS)}, got {launcher!r}")
    if not isinstance(node_selector or {}, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in (node_selector or {}).items()):
        raise DiffucoderError(f"step_node_selector: expected a map of label to value, got {node_selector!r}")
    if not isinstance(tolerations or [], list) or not all(isinstance(t, dict) for t in tolerations or []):
        raise DiffucoderError(f"step_tolerations: expected a list of tolerations, got {tolerations!r}")
    cfg = load_cluster_config(preset, [str(item) for item in cluster or []])
    train, base = image_ref("train", registry), image_ref("base", registry)
    pods: dict[str, StepPod] = {}
    for stage in TRAINING_STEPS:
        works = trains(stage, start_stage) and (stage != "midtrain" or midtrain)
        if launcher == "in-process" and works:
            shape = cfg.training.shape(stage)
            pool = _pool(cfg, shape.gpus_per_node, node_selector, tolerations)
            pods[stage] = StepPod(train, shape.gpus_per_node, shape.cpu, shape.memory, *pool)
        else:
            pods[stage] = StepPod(base, 0, LAUNCHER_CPU, LAUNCHER_MEMORY)
    device = evaluate_device(preset, evaluate_overrides)
    gpus = cfg.serving.gpus if device.startswith("cuda") else 0
    if device.startswith("cuda") and not gpus:
        raise DiffucoderError(f"configs/{preset}/evaluate.yaml runs on {device!r}, but serving.gpus is 0 in "
                              f"configs/{preset}/cluster.yaml: evaluate holds the model as one serving replica "
                              "does; give it serving.gpus >= 1 (cluster_overrides) or device=cpu (evaluate_overrides)")
    pods["evaluate"] = StepPod(train, gpus, cfg.serving.cpu, cfg.serving.memory,
                               *_pool(cfg, gpus, node_selector, tolerations))
    for name, pod in pods.items():
        check_quantity(pod.cpu, f"{name} step cpu")
        check_quantity(pod.memory, f"{name} step memory")
    return pods


def evaluate_device(preset: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The evaluate recipe's ``device``: the preset's YAML, then the overrides. Read without the
    recipe's config class, whose import brings torch and transformers into this small step."""
    recipe = read_yaml(recipe_path(preset, "evaluate"))
    device = parse_overrides(list(overrides)).get("device", recipe.get("device", EVALUATE_DEFAULT_DEVICE))
    if not isinstance(device, str) or not device:
        raise DiffucoderError(f"evaluate device {device!r}: expected cpu, cuda or cuda:<n>")
    return device


def output_names() -> list[str]:
    """The placement step's outputs: ``<step>_<field>`` for every model-holding step, ``job_image``."""
    return [f"{step}_{name}" for step in MODEL_STEPS for name in FIELDS] + ["job_image"]


def placement_outputs(pods: dict[str, StepPod], job_image: str) -> dict[str, Any]:
    """The step's outputs, typed as the tasks consume them (resources as strings)."""
    out: dict[str, Any] = {}
    for step in MODEL_STEPS:
        pod = pods[step]
        out.update({f"{step}_image": pod.image, f"{step}_accelerator": pod.accelerator,
                    f"{step}_gpus": str(pod.gpus), f"{step}_cpu": pod.cpu, f"{step}_memory": pod.memory,
                    f"{step}_node_selector": dict(pod.node_selector),
                    f"{step}_tolerations": [dict(t) for t in pod.tolerations]})
    out["job_image"] = job_image
    return out
