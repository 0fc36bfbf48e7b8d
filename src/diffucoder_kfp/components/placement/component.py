"""kfp component ``placement``: the pod of every model-holding step, from the preset and the launcher.

The first step of the pipeline. Its outputs ``<step>_{image,accelerator,gpus,cpu,memory,
node_selector,tolerations}`` for ``pretrain``, ``midtrain``, ``sft``, ``rl`` and ``evaluate`` become those
tasks' image, ``nvidia.com/gpu`` limit, CPU, memory, node selector and tolerations (the KFP
driver puts them in the step's pod), and ``job_image`` is the train image the training steps give
the TrainJob / PyTorchJob they launch: in the registry the pipeline was compiled for
(``image_registry``, a constant of the compiled pipeline). The rules: ``diffucoder_kfp.placement``.
"""
from typing import NamedTuple

from kfp import dsl

from diffucoder_kfp.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def placement(
    preset: str,
    launcher: str,
    cluster: list,
    evaluate_overrides: list,
    image_registry: str,
    node_selector: dict,
    tolerations: list,
    start_stage: str,
    midtrain: bool,
) -> NamedTuple("Placement", [
        ("pretrain_image", str),
        ("pretrain_accelerator", str),
        ("pretrain_gpus", str),
        ("pretrain_cpu", str),
        ("pretrain_memory", str),
        ("pretrain_node_selector", dict),
        ("pretrain_tolerations", list),
        ("midtrain_image", str),
        ("midtrain_accelerator", str),
        ("midtrain_gpus", str),
        ("midtrain_cpu", str),
        ("midtrain_memory", str),
        ("midtrain_node_selector", dict),
        ("midtrain_tolerations", list),
        ("sft_image", str),
        ("sft_accelerator", str),
        ("sft_gpus", str),
        ("sft_cpu", str),
        ("sft_memory", str),
        ("sft_node_selector", dict),
        ("sft_tolerations", list),
        ("rl_image", str),
        ("rl_accelerator", str),
        ("rl_gpus", str),
        ("rl_cpu", str),
        ("rl_memory", str),
        ("rl_node_selector", dict),
        ("rl_tolerations", list),
        ("evaluate_image", str),
        ("evaluate_accelerator", str),
        ("evaluate_gpus", str),
        ("evaluate_cpu", str),
        ("evaluate_memory", str),
        ("evaluate_node_selector", dict),
        ("evaluate_tolerations", list),
        ("job_image", str),
]):
    """Size and place the model-holding steps of a run (``diffucoder_kfp.placement.step_pods``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``; its ``cluster.yaml`` has the sizes.
        launcher: the run's ``training_launcher``: ``in-process`` (the training steps train in
            their pod: GPUs, train image) or ``trainjob`` / ``pytorchjob`` (they only launch a job:
            base image, no GPU).
        cluster: ``key.sub=value`` overrides of ``configs/<preset>/cluster.yaml`` (the run's
            ``cluster_overrides``).
        evaluate_overrides: the evaluate recipe's overrides (its ``device`` decides the GPU).
        image_registry: the registry of the pipeline's images (a compile-time constant).
        node_selector: the run's ``step_node_selector``; empty = the preset's GPU pool for steps
            with GPUs.
        tolerations: the run's ``step_tolerations``; empty = as ``node_selector``.
        start_stage: the run's first training stage; earlier training steps only pass a model on.
        midtrain: whether the run mid-trains (else that step only passes the model on).
    """
    from collections import namedtuple

    from diffucoder.kube.config import image_ref
    from diffucoder_kfp.placement import output_names, placement_outputs, step_pods

    pods = step_pods(preset, launcher, registry=image_registry, cluster=list(cluster),
                     evaluate_overrides=list(evaluate_overrides), node_selector=dict(node_selector),
                     tolerations=list(tolerations), start_stage=start_stage, midtrain=midtrain)
    for step, pod in pods.items():
        print(f"[placement] {step}: {pod.image}, {pod.gpus} GPU(s), cpu {pod.cpu}, memory {pod.memory}, "
              f"node selector {pod.node_selector or '-'}, tolerations {pod.tolerations or '-'}", flush=True)
    outputs = placement_outputs(pods, job_image=image_ref("train", image_registry))
    return namedtuple("Placement", output_names())(**outputs)
