"""Cluster defaults per preset: ``configs/<preset>/cluster.yaml`` (training jobs and serving).

    cfg = load_cluster_config("7b-gpu", ["training.kind=pytorchjob", "training.stages.sft.nodes=4"])
    shape = cfg.training.shape("pretrain")            # nodes, GPUs, CPU, memory of that stage
    spec = training_job_spec(cfg, "pretrain", name="r1-pretrain", namespace="ml-team",
                             command=torchrun_command(["pretrain", "--preset", "7b-gpu", *overrides]))
    isvc = inference_spec(cfg, name="diffucoder-r1", namespace="ml-team", storage_uri=uri)
    runtime = serving_runtime_spec(cfg, "7b-gpu", namespace="ml-team")   # the preset's serve config

The image defaults to the project's image of this version (``image_ref``), the same tag
``components/images.py`` and ``images/build.sh`` use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from diffucoder import __version__
from diffucoder.config import ConfigError, load_config, setting
from diffucoder.config.recipes import recipe_path
from diffucoder.kube.inference import DEPLOYMENT_MODES, InferenceSpec, ServingRuntimeSpec
from diffucoder.kube.training_job import TrainingJobSpec

DEFAULT_REGISTRY = "ghcr.io/diffucoder-platform"


REGISTRY_ENV = "DIFFUCODER_IMAGE_REGISTRY"


def image_ref(name: str, registry: str = "") -> str:
    """``<registry>/diffucoder-<name>:<version>``: the given registry, else ``$DIFFUCODER_IMAGE_REGISTRY``,
    else the project's. A pipeline step passes the registry its pipeline was compiled for, so the
    jobs it sends use the images its own pod runs (the pod's environment does not say)."""
    registry = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    return f"{registry}/diffucoder-{name}:{__version__}"


@dataclass
class NodeShape:
    """The size of one stage's job: how many nodes, and what each one gets."""

    nodes: int = setting(1, min=1, max=1024, help="nodes (pods) of the job")
    gpus_per_node: int = setting(0, min=0, max=64, help="nvidia.com/gpu per node")
    procs_per_node: int = setting(0, min=0, max=64, help="torchrun processes per node; 0: one "
                                                         "per GPU (1 without GPUs)")
    cpu: str = setting("2", help="CPU per node (requests = limits)")
    memory: str = setting("8Gi", help="memory per node (requests = limits)")
    gpu_memory_gib: float = setting(0.0, min=0.0, help="memory of one GPU, to check the estimate "
                                                       "against; 0 = not checked")


@dataclass
class TrainingCluster:
    kind: str = setting("trainjob", choices=("trainjob", "pytorchjob"),
                        help="Kubeflow Trainer v2 TrainJob, or training-operator PyTorchJob")
    namespace: str = setting("", help="namespace of the jobs; empty: the current one")
    image: str = setting("", help="training image; empty: the project's diffucoder-train image")
    runtime: str = setting("diffucoder-torch", help="TrainingRuntime the TrainJobs use (chart)")
    service_account: str = setting("diffucoder-jobs", help="service account of the pods (chart)")
    s3_secret: str = setting("diffucoder-s3", help="Secret with the store's settings and keys")
    node_selector: dict[str, str] = setting(default_factory=dict, help="node labels to run on")
    tolerations: list[dict[str, Any]] = setting(default_factory=list, help="taints to tolerate")
    checkpoint_pvc: str = setting("", help="ReadWriteMany PVC for checkpoints; empty: the store")
    checkpoint_mount: str = setting("/mnt/checkpoints", help="where the PVC is mounted")
    shm_size: str = setting("2Gi", help="size of the in-memory /dev/shm")
    backoff_limit: int = setting(0, min=0, help="PyTorchJob restarts before failing")
    ttl_s: int = setting(86400, min=0, help="PyTorchJob kept this long after finishing (a TrainJob's "
                                            "pods: the chart's trainer.runtime.ttlSecondsAfterFinished)")
    delete_after_success: bool = setting(True, help="launcher: delete the job once it succeeded and its "
                                                    "log was read (a failed job is kept for inspection)")
    timeout_s: int = setting(86400, min=1, help="launcher: give up (and delete the job) after")
    poll_s: float = setting(15.0, min=0.01, help="launcher: seconds between status polls")
    stuck_after_s: float = setting(600.0, min=0.0, help="launcher: fail when pods cannot start "
                                                       "(bad image, missing Secret key) this long")
    unschedulable_after_s: float = setting(3600.0, min=0.0, help="launcher: fail (and delete the job) when "
                                           "a pod stays Unschedulable this long; the scheduler's reason is "
                                           "the error")
    queue_name: str = setting("", help="Kueue LocalQueue of the jobs (label kueue.x-k8s.io/queue-name); "
                                       "empty: not queued by Kueue")
    gang_scheduling: bool = setting(False, help="start all nodes of a job together or none: PyTorchJob "
                                    "schedulingPolicy; TrainJob: its runtime must have a podGroupPolicy")
    schedule_timeout_s: int = setting(0, min=0, help="PyTorchJob gang scheduling: give up placing the group "
                                                     "after; 0: the scheduler's default")
    istio_sidecar_opt_out: bool = setting(True, help='pods annotated sidecar.istio.io/inject: "false" '
                                          "(a pod with an Istio sidecar never completes)")
    stages: dict[str, NodeShape] = setting(default_factory=dict,
                                           help="job size per stage (pretrain, sft, rl)")

    def shape(self, stage: str) -> NodeShape:
        return self.stages.get(stage, NodeShape())

    def launch_options(self) -> dict[str, Any]:
        """The keyword arguments of ``diffucoder.kube.launch`` these settings give."""
        return {"timeout_s": self.timeout_s, "poll_s": self.poll_s, "stuck_after_s": self.stuck_after_s,
                "unschedulable_after_s": self.unschedulable_after_s,
                "delete_after_success": self.delete_after_success,
                "gang_scheduling": self.gang_scheduling}


@dataclass
class ServingCluster:
    namespace: str = setting("", help="namespace of the InferenceService; empty: the current one")
    runtime: str = setting("diffucoder-runtime", help="KServe ServingRuntime (chart)")
    service_account: str = setting("diffucoder-kserve", help="S3-annotated service account (chart)")
    gpus: int = setting(0, min=0, max=16, help="nvidia.com/gpu per replica")
    cpu: str = setting("2", help="CPU per replica")
    memory: str = setting("8Gi", help="memory per replica")
    node_selector: dict[str, str] = setting(default_factory=dict, help="node labels to run on (the "
                                            "Knative modes need the flag kubernetes.podspec-nodeselector)")
    tolerations: list[dict[str, Any]] = setting(default_factory=list, help="taints to tolerate (the Knative "
                                                "modes need the flag kubernetes.podspec-tolerations)")
    min_replicas: int = setting(1, min=0, help="minimum replicas")
    max_replicas: int = setting(1, min=1, help="maximum replicas")
    deployment_mode: str = setting("RawDeployment", choices=tuple(DEPLOYMENT_MODES),
                                   help="KServe deployment mode: RawDeployment (= Standard, KServe >= 0.16) "
                                        "or Serverless (= Knative); written as given")
    knative_features: list[str] = setting(default_factory=list,
                                          help="Knative feature flags enabled in knative-serving/config-features "
                                               "(Serverless only), e.g. kubernetes.podspec-tolerations")
    startup_timeout_s: int = setting(600, min=10, help="how long loading the model may take: the runtime's "
                                                       "startupProbe budget (render-runtime)")
    timeout_s: int = setting(900, min=1, help="deploy: roll back if not Ready within (also the "
                                              "Knative revision's progress deadline)")
    poll_s: float = setting(5.0, min=0.01, help="deploy: seconds between status polls")

    def validate(self) -> None:
        if self.timeout_s < self.startup_timeout_s:
            raise ConfigError(f"'serving.timeout_s' ({self.timeout_s}) is shorter than "
                              f"'serving.startup_timeout_s' ({self.startup_timeout_s}): deploy would roll back "
                              "a server still loading its model")


@dataclass
class ClusterConfig:
    training: TrainingCluster = field(default_factory=TrainingCluster)
    serving: ServingCluster = field(default_factory=ServingCluster)


def load_cluster_config(preset: str, overrides: list[str] | tuple[str, ...] = (),
                        values: dict[str, Any] | None = None) -> ClusterConfig:
    """``configs/<preset>/cluster.yaml`` <- ``values`` (typed, by dotted key) <- ``overrides`` (text)."""
    return load_config(ClusterConfig, recipe_path(preset, "cluster"), list(overrides), values=values)


def training_job_spec(cfg: ClusterConfig, stage: str, *, name: str, namespace: str,
                      command: list[str], labels: dict[str, str] | None = None,
                      run_id: str = "") -> TrainingJobSpec:
    t, shape = cfg.training, cfg.training.shape(stage)
    return TrainingJobSpec(
        name=name, namespace=namespace, image=t.image or image_ref("train"), command=command,
        nodes=shape.nodes, gpus_per_node=shape.gpus_per_node, procs_per_node=shape.procs_per_node,
        cpu=shape.cpu, memory=shape.memory, shm_size=t.shm_size, node_selector=dict(t.node_selector),
        tolerations=[dict(x) for x in t.tolerations], s3_secret=t.s3_secret,
        checkpoint_pvc=t.checkpoint_pvc, checkpoint_mount=t.checkpoint_mount,
        service_account=t.service_account, runtime=t.runtime,
        labels={"diffucoder.io/stage": stage, **(labels or {})},
        backoff_limit=t.backoff_limit, ttl_s=t.ttl_s, run_id=run_id, queue_name=t.queue_name,
        gang_scheduling=t.gang_scheduling, schedule_timeout_s=t.schedule_timeout_s,
        istio_sidecar_opt_out=t.istio_sidecar_opt_out).validate()


def inference_spec(cfg: ClusterConfig, *, name: str, namespace: str, storage_uri: str,
                   allow_local_uri: bool = False) -> InferenceSpec:
    s = cfg.serving
    return InferenceSpec(
        name=name, namespace=namespace, storage_uri=storage_uri, runtime=s.runtime,
        service_account=s.service_account, gpus=s.gpus, cpu=s.cpu, memory=s.memory,
        node_selector=dict(s.node_selector), tolerations=[dict(x) for x in s.tolerations],
        min_replicas=s.min_replicas, max_replicas=s.max_replicas,
        deployment_mode=s.deployment_mode, knative_features=list(s.knative_features),
        progress_deadline_s=s.timeout_s, allow_local_uri=allow_local_uri).validate()


def serving_runtime_spec(cfg: ClusterConfig, preset: str, *, namespace: str,
                         image: str = "") -> ServingRuntimeSpec:
    """The ServingRuntime of ``preset`` (its serve.yaml, the replica size and load budget of
    ``cfg.serving``), for clusters installed without the chart."""
    s = cfg.serving
    return ServingRuntimeSpec(namespace=namespace, image=image or image_ref("serve"), name=s.runtime,
                              preset=preset, cpu=s.cpu, memory=s.memory, gpus=s.gpus,
                              startup_timeout_s=s.startup_timeout_s)
