"""The DiffuCoder DAG (kfp v2): curate -> pretrain -> sft -> rl -> evaluate -> (gate) -> deploy.

    python -m diffucoder_kfp.compile                 # -> pipelines/compiled/diffucoder-<version>.yaml
    diffucoder pipeline run-local --preset tiny-cpu --output runs/demo
    kfp run create -e diffucoder -r r1 -f pipelines/compiled/diffucoder-0.1.0.yaml \\
        preset=7b-gpu store_root=s3://diffucoder training_launcher=trainjob

Parameters are grouped by stage through their prefix (``curate_*``, ``rl_*``, ``deploy_*``);
``preset`` selects the recipes in ``configs/<preset>/``. ``start_stage`` / ``start_model``
start from an existing model (skip pre-training, or SFT too: ``diffucoder.stages.plan``).
``training_launcher`` trains pretrain / SFT / RL in the step's own pod (``in-process``) or
as multi-node cluster jobs (``trainjob``, ``pytorchjob``; sized by ``configs/<preset>/cluster.yaml``
and ``cluster_overrides``). ``step_node_selector`` / ``step_tolerations`` place the steps that
hold a model (training in process, evaluation) on a node pool. The SFT model is evaluated beside RL; the RL model is evaluated
and deployed to KServe only if its pass@1 reaches ``deploy_min_pass_at_1``.
"""
from kfp import dsl, kubernetes

from diffucoder_kfp.components.curate import curate
from diffucoder_kfp.components.deploy import deploy
from diffucoder_kfp.components.evaluate import evaluate
from diffucoder_kfp.components.pretrain import pretrain
from diffucoder_kfp.components.rl import rl
from diffucoder_kfp.components.sft import sft
from diffucoder import __version__
from diffucoder.kube.pods import S3_SECRET_KEYS   # the chart's store Secret: every step reads the store

PIPELINE_NAME = "diffucoder"
DESCRIPTION = ("Raw code -> curated token shards -> masked-diffusion LM -> SFT -> coupled-GRPO -> "
               f"evaluated, KServe-served model (diffucoder {__version__}).")


def _step(task, name: str, store_secret, cpu: str, memory: str, cpu_limit: str = "", memory_limit: str = "",
          retries: int = 0, placement: tuple = ()):
    """Name a step, size its pod and give it the store's settings. Every step publishes to the store
    under a stable URI (data can change under the same input URI; training resumes from its own
    checkpoints; deploy acts on the cluster), so a cached result could be stale: caching is off
    everywhere, explicitly. ``retries`` only where a rerun is safe (idempotent or resuming)."""
    task.set_display_name(name)
    task.set_caching_options(False)
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_cpu_limit(cpu_limit or cpu).set_memory_limit(memory_limit or memory)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0)
    kubernetes.use_secret_as_env(task, secret_name=store_secret,
                                 secret_key_to_env={key: key for key in S3_SECRET_KEYS})
    if placement:   # the node pool of the model-heavy steps (pipeline parameters)
        node_selector, tolerations = placement
        kubernetes.add_node_selector_json(task, node_selector)
        kubernetes.add_toleration_json(task, tolerations)
    return task


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
    common = dict(preset=preset, store_root=store_root, run_name=run_name, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    training = dict(launcher=training_launcher, cluster=cluster_overrides, store_secret=store_secret)
    pool = (step_node_selector, step_tolerations)

    curate_task = curate(input_uri=curate_input, overrides=curate_overrides, start_stage=start_stage, **common)
    _step(curate_task, "curate", store_secret, cpu="2", memory="4G", cpu_limit="8", memory_limit="16G",
          retries=2)

    # Training steps resume from their checkpoints, and a cluster launcher adopts its own job:
    # a retry continues the work instead of repeating it.
    pretrain_task = pretrain(curated=curate_task.outputs["curated"], overrides=pretrain_overrides,
                             start_stage=start_stage, start_model=start_model, **training, **common)
    _step(pretrain_task, "pretrain", store_secret, cpu="2", memory="8G", retries=1, placement=pool)

    sft_task = sft(model=pretrain_task.outputs["model"], overrides=sft_overrides, start_stage=start_stage,
                   **training, **common)
    _step(sft_task, "sft", store_secret, cpu="2", memory="8G", retries=1, placement=pool)

    evaluate_sft = evaluate(model=sft_task.outputs["sft_model"], tasks=sft_task.outputs["tasks"],
                            stage_name="evaluate-sft", overrides=evaluate_overrides, **common)
    _step(evaluate_sft, "evaluate-sft", store_secret, cpu="2", memory="8G", retries=1, placement=pool)

    rl_task = rl(model=sft_task.outputs["sft_model"], tasks=sft_task.outputs["tasks"], overrides=rl_overrides,
                 **training, **common)
    _step(rl_task, "rl", store_secret, cpu="2", memory="8G", retries=1, placement=pool)

    evaluate_rl = evaluate(model=rl_task.outputs["rl_model"], tasks=sft_task.outputs["tasks"],
                           stage_name="evaluate-rl", overrides=evaluate_overrides, **common)
    _step(evaluate_rl, "evaluate-rl", store_secret, cpu="2", memory="8G", retries=1, placement=pool)

    gate = evaluate_rl.outputs["Output"] >= deploy_min_pass_at_1   # the RL model's pass@1
    with dsl.If(gate, name="deploy-gate"):
        deploy_task = deploy(preset=preset, model=rl_task.outputs["rl_model"], name=deploy_name,
                             namespace=deploy_namespace, mode=deploy_mode, timeout_s=deploy_timeout_s,
                             overrides=deploy_overrides)
        # Deploy creates/patches an InferenceService and rolls back on failure: never retried blindly.
        _step(deploy_task, "deploy", store_secret, cpu="500m", memory="1G")
