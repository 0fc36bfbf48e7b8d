"""The DiffuCoder DAG (kfp v2): placement, curate -> pretrain -> midtrain -> sft -> rl -> evaluate -> (gate) -> deploy.

    python -m diffucoder_kfp.compile                 # -> pipelines/compiled/diffucoder-<version>.yaml
    diffucoder pipeline compile --image-registry registry.example.com/ml --image-pull-secret regcred
    diffucoder pipeline run-local --preset tiny-cpu --output runs/demo
    kfp run create -e diffucoder -r r1 -f pipelines/compiled/diffucoder-0.1.0.yaml \\
        preset=7b-gpu store_root=s3://diffucoder training_launcher=trainjob

``diffucoder_pipeline`` is the pipeline of the project's registry; ``build_pipeline(registry,
pull_secrets)`` builds it for another: every step's image, the train image of the cluster jobs
the training steps send (through the placement step's ``job_image``) and the image pull
Secrets of every step come from those two compile-time settings.

``build_pipeline(curate_pods=N)`` (``diffucoder pipeline compile --curate-pods N``) spreads the
curation over pods: a ``curate-plan`` step reads the preset's recipe at run time (its ``tasks``
and ``spread.*``: pods, CPU and memory per pod), then for each datatrove stage (select, exact,
signatures, buckets, clusters, keep) a ``dsl.ParallelFor`` over that stage's pods, at most N at
once, each stage after the previous one, then ``curate-publish``, whose ``curated`` output the
rest of the DAG consumes as it does the single ``curate`` step's. The stages share their data
through the run's work directory in the store (``<store_root>/runs/<run>/curate-work``). It is
a compile-time choice, not a run parameter: choosing at run time needs ``dsl.If``/``dsl.Else``
with a ``dsl.OneOf`` output, which kfp's local runner (``run-local``, ``make demo``) cannot run
(it rejects a ``OneOf`` artifact: "Expected 1 artifact in ArtifactSelectorSpec"), and a loop
left empty for one-pod runs would be skipped by Argo, which stops the steps after it.

Parameters are grouped by stage through their prefix (``curate_*``, ``rl_*``, ``deploy_*``);
``preset`` selects the recipes in ``configs/<preset>/``. ``start_stage`` / ``start_model``
start from an existing model (skip pre-training, or SFT too: ``diffucoder.stages.plan``).
``midtrain`` turns on the optional mid-training stage (the paper's stage 2) on ``midtrain_data``
(default: the run's curated shards); off, that step passes the pre-trained model on.
``training_launcher`` trains pretrain / SFT / RL in the step's own pod (``in-process``) or
as multi-node cluster jobs (``trainjob``, ``pytorchjob``; sized by ``configs/<preset>/cluster.yaml``
and ``cluster_overrides``). The placement step sizes the model-holding steps from the preset at
run time (``diffucoder_kfp.placement``): GPUs, CPU, memory, node pool and image; a training step
that only launches a job runs on the slim base image. ``step_node_selector`` / ``step_tolerations``
place those steps on another node pool. The SFT model is evaluated beside RL; the RL model is
evaluated and deployed to KServe only if its pass@1 reaches ``deploy_min_pass_at_1``.
"""
# No `from __future__ import annotations`: kfp reads the pipeline function's annotations as types.
from typing import Sequence

from kfp import dsl, kubernetes

from diffucoder import __version__
from diffucoder.errors import DiffucoderError
from diffucoder.kube.config import DEFAULT_REGISTRY, image_ref
from diffucoder.kube.pods import S3_SECRET_KEYS   # the chart's store Secret: every step reads the store
from diffucoder_kfp.components.curate import curate, curate_plan, curate_publish, curate_slice
from diffucoder_kfp.components.deploy import deploy
from diffucoder_kfp.components.evaluate import evaluate
from diffucoder_kfp.components.images import check_registry
from diffucoder_kfp.components.midtrain import midtrain as midtrain_step
from diffucoder_kfp.components.placement import placement
from diffucoder_kfp.components.pretrain import pretrain
from diffucoder_kfp.components.rl import rl
from diffucoder_kfp.components.sft import sft

PIPELINE_NAME = "diffucoder"
DESCRIPTION = ("Raw code -> curated token shards -> masked-diffusion LM -> SFT -> coupled-GRPO -> "
               f"evaluated, KServe-served model (diffucoder {__version__}).")
# What the placement step declares as compile-time constant: the registry of the pipeline's
# images (diffucoder_kfp.compile.retarget rewrites it with the images).
REGISTRY_INPUT = "image_registry"
# The datatrove curation stages, in order (diffucoder.data.trove.STAGES; not imported from there:
# it brings datatrove into every import of the pipeline, 0.6 s; a test keeps the two equal).
CURATE_STAGES = ("select", "exact", "signatures", "buckets", "clusters", "keep")


def _step(task, name: str, image, pull_secrets: Sequence[str], store_secret=None, *, cpu="", memory="",
          cpu_limit="", memory_limit="", retries: int = 0):
    """Name a step, give it its image, image pull Secrets and pod size, and the store's settings.
    Every step publishes to the store under a stable URI (data can change under the same input
    URI; training resumes from its own checkpoints; deploy acts on the cluster), so a cached
    result could be stale: caching is off everywhere, explicitly. ``retries`` only where a rerun
    is safe (idempotent or resuming). ``image`` and the sizes may be the placement step's outputs."""
    task.set_display_name(name)
    task.set_caching_options(False)
    task.set_container_image(image)
    if cpu:
        task.set_cpu_request(cpu).set_cpu_limit(cpu_limit or cpu)
    if memory:
        task.set_memory_request(memory).set_memory_limit(memory_limit or memory)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0)
    if store_secret is not None:
        kubernetes.use_secret_as_env(task, secret_name=store_secret,
                                     secret_key_to_env={key: key for key in S3_SECRET_KEYS})
    if pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(pull_secrets))
    return task


def _placed(task, name: str, pods, step: str, pull_secrets: Sequence[str], store_secret, retries: int):
    """A model-holding step, placed by the placement step's outputs for ``step`` (image, GPUs,
    CPU and memory as requests = limits, node selector, tolerations)."""
    out = pods.outputs
    _step(task, name, out[f"{step}_image"], pull_secrets, store_secret, cpu=out[f"{step}_cpu"],
          memory=out[f"{step}_memory"], retries=retries)
    task.set_accelerator_type(out[f"{step}_accelerator"]).set_accelerator_limit(out[f"{step}_gpus"])
    kubernetes.add_node_selector_json(task, out[f"{step}_node_selector"])
    kubernetes.add_toleration_json(task, out[f"{step}_tolerations"])
    return task


def _curate_over_pods(input_uri, overrides, start_stage, common: dict, image, pull_secrets: Sequence[str],
                      store_secret, parallelism: int):
    """plan -> a ParallelFor per stage over its pods, each stage after the previous -> publish."""
    plan = curate_plan(preset=common["preset"], input_uri=input_uri, overrides=overrides, start_stage=start_stage)
    # Reads only the recipe (no store): a small pod, safe to retry.
    _step(plan, "curate-plan", image, pull_secrets, cpu="500m", memory="1Gi", retries=2)
    previous = plan
    for stage in CURATE_STAGES:
        with dsl.ParallelFor(plan.outputs[stage], parallelism=parallelism, name=f"curate-{stage}") as ranks:
            cpu, memory = plan.outputs[f"{stage}_cpu"], plan.outputs[f"{stage}_memory"]
            # cpu and memory are inputs too: kfp brings a channel into a loop only for a task input
            task = curate_slice(input_uri=input_uri, overrides=overrides, stage=stage, ranks=ranks, pod_cpu=cpu,
                                pod_memory=memory, start_stage=start_stage, **common)
            # A slice whose artifact is published is not run again: retrying a pod is safe.
            _step(task, f"curate-{stage}", image, pull_secrets, store_secret, cpu=cpu, memory=memory, retries=2)
            task.after(previous)
        previous = task
    publish = curate_publish(input_uri=input_uri, overrides=overrides, start_stage=start_stage, **common)
    _step(publish, "curate-publish", image, pull_secrets, store_secret, cpu="2", memory="4G", cpu_limit="8",
          memory_limit="16G", retries=2)
    publish.after(previous)
    return publish


def build_pipeline(image_registry: str = DEFAULT_REGISTRY, image_pull_secrets: Sequence[str] = (),
                   curate_pods: int = 0):
    """The pipeline whose steps run the project's images from ``image_registry`` and pull them with
    ``image_pull_secrets`` (names of docker-registry Secrets in the steps' namespace). ``curate_pods``
    0: one ``curate`` step runs every curation stage in its pod; N > 0: the stages' tasks run on
    pods, at most N at once per stage (``_curate_over_pods``)."""
    if curate_pods < 0:
        raise DiffucoderError(f"curate_pods: must be 0 (one curate step) or the pods per stage at once, "
                              f"got {curate_pods}")
    registry = check_registry(image_registry)
    secrets = tuple(image_pull_secrets)
    base = image_ref("base", registry)

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def diffucoder_pipeline(
        preset: str = "tiny-cpu",
        store_root: str = "s3://diffucoder",
        store_secret: str = "diffucoder-s3",
        run_name: str = "",
        start_stage: str = "curate",
        start_model: str = "",
        training_launcher: str = "in-process",
        cluster_overrides: list = [],  # noqa: B006 - kfp reads the default as the parameter's default
        step_node_selector: dict = {},  # noqa: B006
        step_tolerations: list = [],  # noqa: B006
        curate_input: str = "",
        curate_overrides: list = [],  # noqa: B006
        pretrain_overrides: list = [],  # noqa: B006
        midtrain: bool = False,
        midtrain_data: str = "",
        midtrain_overrides: list = [],  # noqa: B006
        sft_overrides: list = [],  # noqa: B006
        rl_overrides: list = [],  # noqa: B006
        evaluate_overrides: list = [],  # noqa: B006
        deploy_min_pass_at_1: float = 0.5,
        deploy_name: str = "diffucoder",
        deploy_namespace: str = "",
        deploy_mode: str = "auto",
        deploy_timeout_s: int = 0,
        deploy_overrides: list = [],  # noqa: B006
    ):
        common = dict(preset=preset, store_root=store_root, run_name=run_name,
                      run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)

        # Reads only the preset (no store): no store Secret, a small pod, and safe to retry.
        pods = placement(preset=preset, launcher=training_launcher, cluster=cluster_overrides,
                         evaluate_overrides=evaluate_overrides, image_registry=registry,
                         node_selector=step_node_selector, tolerations=step_tolerations,
                         start_stage=start_stage, midtrain=midtrain)
        _step(pods, "placement", base, secrets, cpu="500m", memory="1Gi", retries=2)
        training = dict(launcher=training_launcher, cluster=cluster_overrides, store_secret=store_secret,
                        job_image=pods.outputs["job_image"])

        if curate_pods:
            curate_task = _curate_over_pods(curate_input, curate_overrides, start_stage, common, base, secrets,
                                            store_secret, curate_pods)
        else:
            curate_task = curate(input_uri=curate_input, overrides=curate_overrides, start_stage=start_stage,
                                 **common)
            _step(curate_task, "curate", base, secrets, store_secret, cpu="2", memory="4G", cpu_limit="8",
                  memory_limit="16G", retries=2)

        # Training steps resume from their checkpoints, and a cluster launcher adopts its own job:
        # a retry continues the work instead of repeating it.
        pretrain_task = pretrain(curated=curate_task.outputs["curated"], overrides=pretrain_overrides,
                                 start_stage=start_stage, start_model=start_model, **training, **common)
        _placed(pretrain_task, "pretrain", pods, "pretrain", secrets, store_secret, retries=1)

        midtrain_task = midtrain_step(model=pretrain_task.outputs["model"], curated=curate_task.outputs["curated"],
                                      data_uri=midtrain_data, enabled=midtrain, overrides=midtrain_overrides,
                                      start_stage=start_stage, **training, **common)
        _placed(midtrain_task, "midtrain", pods, "midtrain", secrets, store_secret, retries=1)

        sft_task = sft(model=midtrain_task.outputs["midtrain_model"], overrides=sft_overrides,
                       start_stage=start_stage, **training, **common)
        _placed(sft_task, "sft", pods, "sft", secrets, store_secret, retries=1)

        evaluate_sft = evaluate(model=sft_task.outputs["sft_model"], tasks=sft_task.outputs["tasks"],
                                stage_name="evaluate-sft", overrides=evaluate_overrides, **common)
        _placed(evaluate_sft, "evaluate-sft", pods, "evaluate", secrets, store_secret, retries=1)

        rl_task = rl(model=sft_task.outputs["sft_model"], tasks=sft_task.outputs["tasks"], overrides=rl_overrides,
                     **training, **common)
        _placed(rl_task, "rl", pods, "rl", secrets, store_secret, retries=1)

        evaluate_rl = evaluate(model=rl_task.outputs["rl_model"], tasks=sft_task.outputs["tasks"],
                               stage_name="evaluate-rl", overrides=evaluate_overrides, **common)
        _placed(evaluate_rl, "evaluate-rl", pods, "evaluate", secrets, store_secret, retries=1)

        gate = evaluate_rl.outputs["Output"] >= deploy_min_pass_at_1   # the RL model's pass@1
        with dsl.If(gate, name="deploy-gate"):
            deploy_task = deploy(preset=preset, model=rl_task.outputs["rl_model"], name=deploy_name,
                                 namespace=deploy_namespace, mode=deploy_mode, timeout_s=deploy_timeout_s,
                                 overrides=deploy_overrides)
            # Deploy creates/patches an InferenceService and rolls back on failure: never retried blindly.
            _step(deploy_task, "deploy", base, secrets, store_secret, cpu="500m", memory="1G")

    return diffucoder_pipeline


diffucoder_pipeline = build_pipeline()
