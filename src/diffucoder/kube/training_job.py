"""Multi-node training jobs: one spec, rendered as a Kubeflow Trainer TrainJob or a PyTorchJob.

    cmd = torchrun_command(["pretrain", "--preset", "7b-gpu", "data.uri='s3://diffucoder/runs/r1/curated'",
                            "output.uri='s3://diffucoder/runs/r1/pretrain'"])   # see diffucoder.stages.cluster
    spec = TrainingJobSpec(name="r1-pretrain", namespace="ml-team", image=TRAIN_IMAGE, command=cmd,
                           nodes=10, gpus_per_node=8, cpu="64", memory="800Gi",
                           node_selector={"nvidia.com/gpu.present": "true"})
    render_trainjob(spec)     # trainer.kubeflow.org/v1alpha1 TrainJob on runtime diffucoder-torch
    render_pytorchjob(spec)   # kubeflow.org/v1 PyTorchJob: Master + (nodes - 1) Workers

Every pod runs ``torchrun -m diffucoder.cli <stage> --preset <preset> key=value...``; both
operators give torchrun its rendezvous through the ``PET_NNODES`` / ``PET_NPROC_PER_NODE`` /
``PET_NODE_RANK`` / ``PET_MASTER_ADDR`` / ``PET_MASTER_PORT`` environment, so the command is the
same for both kinds and static (no elastic policy). Pods run as uid 10001 with a read-only
root, take the store's settings and keys from the Secret ``s3_secret`` (the one the pipeline
step was given, ``store_secret``) by reference, and may mount a shared PVC for checkpoints.
``JOB_KINDS`` tells the launcher how to follow each kind.

Around the pods:

- ``run_id`` (the Kubeflow Pipelines run) is a label and an annotation of the job
  (``diffucoder.io/run-id``), so the launcher tells a retry of the same run from a new run
  reusing the name; it is not in the pod template, so it does not change the spec hash.
- ``queue_name`` sets the Kueue label ``kueue.x-k8s.io/queue-name`` on the job: Kueue then
  creates it suspended and admits it when the queue has quota (Kueue integrates TrainJob and
  PyTorchJob).
- ``gang_scheduling``: a PyTorchJob gets ``runPolicy.schedulingPolicy`` (``minAvailable`` = all
  nodes, ``scheduleTimeoutSeconds``), honoured when the training operator runs with
  ``--gang-scheduler-name``. A TrainJob's gang policy is the ``podGroupPolicy`` of its
  TrainingRuntime (the chart's ``trainer.runtime.podGroupPolicy``); the launcher checks the
  runtime has one (``diffucoder.kube.launcher``).
- ``istio_sidecar_opt_out`` annotates every pod ``sidecar.istio.io/inject: "false"``: in a
  namespace with Istio injection (multi-user Kubeflow) a pod with an Envoy sidecar never
  completes, so the job would never finish.

TrainJob needs Kubeflow Trainer >= v2.2.0: ``runtimePatches`` (placement, ``/dev/shm``, the
checkpoint PVC, the pod annotations) is pruned without a word by older releases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffucoder.errors import DiffucoderError
from diffucoder.kube import pods
from diffucoder.kube.objects import RUN_ID, check_name, check_subdomain, common_labels, label_value

TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
PYTORCHJOB_API = "kubeflow.org/v1"
RUNTIME_MANAGER = "diffucoder.io/launcher"  # our entry in a TrainJob's runtimePatches
NODE = "node"                               # the chart runtime's replicated job and container
MAX_JOB_NAME = 50                           # pods are named <job>-node-0-0-xxxxx, <job>-worker-N
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"   # Kueue's LocalQueue label on a job
ISTIO_INJECT = "sidecar.istio.io/inject"    # Istio's per-pod sidecar injection switch


def torchrun_command(args: list[str] | tuple[str, ...]) -> list[str]:
    """The container command of every node: torchrun around ``diffucoder <args>``."""
    if not args or not all(isinstance(a, str) and a for a in args):
        raise DiffucoderError(f"torchrun_command: need the diffucoder command's arguments, got {args!r}")
    return ["torchrun", "-m", "diffucoder.cli", *args]


@dataclass
class TrainingJobSpec:
    name: str
    namespace: str
    image: str
    command: list[str]
    nodes: int = 1
    gpus_per_node: int = 0
    procs_per_node: int = 0          # 0: one per GPU, or 1 on CPU nodes
    cpu: str = "2"
    memory: str = "8Gi"
    shm_size: str = "2Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    s3_secret: str = "diffucoder-s3"
    checkpoint_pvc: str = ""         # a ReadWriteMany claim shared by all nodes; "" = none
    checkpoint_mount: str = "/mnt/checkpoints"
    service_account: str = "diffucoder-jobs"
    runtime: str = "diffucoder-torch"
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    backoff_limit: int = 0           # PyTorchJob restarts; TrainJobs use the runtime's policy
    ttl_s: int = 86400               # PyTorchJob kept this long after it finishes
    active_deadline_s: int = 0       # 0: no deadline
    run_id: str = ""                 # the pipeline run launching the job; "" outside a pipeline
    queue_name: str = ""             # Kueue LocalQueue; "" = not queued by Kueue
    gang_scheduling: bool = False    # all nodes start together or none does
    schedule_timeout_s: int = 0      # PyTorchJob gang: give up placing the group after; 0 = unset
    istio_sidecar_opt_out: bool = True

    @property
    def nproc_per_node(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1

    def validate(self) -> "TrainingJobSpec":
        check_name(self.name, "job name", MAX_JOB_NAME)
        check_name(self.namespace, "namespace")
        for what, value in (("service_account", self.service_account), ("runtime", self.runtime),
                            ("s3_secret", self.s3_secret)):
            check_subdomain(value, what)
        if self.checkpoint_pvc:
            check_subdomain(self.checkpoint_pvc, "checkpoint_pvc")
        if not self.image or any(c.isspace() for c in self.image):
            raise DiffucoderError(f"image: {self.image!r} is not an image reference")
        if not self.command or not all(isinstance(c, str) and c for c in self.command):
            raise DiffucoderError(f"command: must be a non-empty list of strings, got {self.command!r}")
        for what, value, low in (("nodes", self.nodes, 1), ("gpus_per_node", self.gpus_per_node, 0),
                                 ("procs_per_node", self.procs_per_node, 0),
                                 ("backoff_limit", self.backoff_limit, 0), ("ttl_s", self.ttl_s, 0),
                                 ("active_deadline_s", self.active_deadline_s, 0),
                                 ("schedule_timeout_s", self.schedule_timeout_s, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DiffucoderError(f"{what}: must be an integer >= {low}, got {value!r}")
        if self.schedule_timeout_s and not self.gang_scheduling:
            raise DiffucoderError("schedule_timeout_s: only with gang_scheduling (it bounds how long the "
                                  "scheduler tries to place the whole group)")
        if self.queue_name:
            check_subdomain(self.queue_name, "queue_name")
        if not isinstance(self.run_id, str):
            raise DiffucoderError(f"run_id: must be a string, got {self.run_id!r}")
        pods.resources(self.cpu, self.memory, self.gpus_per_node)
        pods.check_quantity(self.shm_size, "shm_size")
        pods.check_tolerations(self.tolerations)
        pods.check_node_selector(self.node_selector)
        pods.plain_env(self.env)
        common_labels("training", self.labels)
        return self

    # -- pieces both kinds share ------------------------------------------------------------

    def pod_labels(self) -> dict[str, str]:
        return common_labels("training", {"diffucoder.io/job": label_value(self.name), **self.labels})

    def pod_annotations(self) -> dict[str, str]:
        return {ISTIO_INJECT: "false"} if self.istio_sidecar_opt_out else {}

    def job_metadata(self) -> dict[str, Any]:
        """The job's own name, labels (run id, Kueue queue) and annotations (exact run id)."""
        extra = dict(self.labels)
        if self.run_id:
            extra[RUN_ID] = label_value(self.run_id)
        if self.queue_name:
            extra[KUEUE_QUEUE] = self.queue_name
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": common_labels("training", extra)}
        if self.run_id:
            meta["annotations"] = {RUN_ID: self.run_id}
        return meta

    def pod_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"labels": self.pod_labels()}
        if self.pod_annotations():
            meta["annotations"] = self.pod_annotations()
        return meta

    def container_env(self) -> list[dict[str, Any]]:
        return pods.plain_env({**pods.SCRATCH_ENV, **self.env}) + pods.s3_env(self.s3_secret)

    def volumes(self) -> tuple[list[dict], list[dict]]:
        volumes, mounts = pods.scratch_volumes(self.shm_size)
        if self.checkpoint_pvc:
            volume, mount = pods.pvc_volume("checkpoints", self.checkpoint_pvc, self.checkpoint_mount)
            volumes.append(volume)
            mounts.append(mount)
        return volumes, mounts

    def pod_spec_extras(self) -> dict[str, Any]:
        """Scheduling and identity fields of every node's pod."""
        extras: dict[str, Any] = {"serviceAccountName": self.service_account,
                                  "automountServiceAccountToken": False,
                                  "securityContext": pods.pod_security_context()}
        if self.node_selector:
            extras["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            extras["tolerations"] = [dict(t) for t in self.tolerations]
        return extras


def render_trainjob(spec: TrainingJobSpec) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob on the chart's TrainingRuntime (``spec.runtime``).

    The runtime supplies the pod skeleton; this job sets image, command, size and resources
    (``trainer``), and patches in scheduling, identity, security, volumes and pod annotations
    under its own ``runtimePatches`` manager. Gang scheduling and the JobSet's
    ``ttlSecondsAfterFinished`` are the runtime's (a TrainJob cannot patch them).
    """
    spec.validate()
    if spec.schedule_timeout_s:
        raise DiffucoderError("schedule_timeout_s: a TrainJob takes its gang timeout from its runtime's "
                              "podGroupPolicy (chart: trainer.runtime.podGroupPolicy.coscheduling."
                              "scheduleTimeoutSeconds); set it there, or use kind pytorchjob")
    volumes, mounts = spec.volumes()
    extras = spec.pod_spec_extras()
    extras.pop("automountServiceAccountToken")  # not a patchable field of TrainJob's PodSpecPatch
    pod_patch = {**extras, "volumes": volumes,
                 "containers": [{"name": NODE, "volumeMounts": mounts,
                                 "securityContext": pods.container_security_context()}]}
    job_spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime",
                       "name": spec.runtime},
        "trainer": {"image": spec.image, "command": list(spec.command), "env": spec.container_env(),
                    "numNodes": spec.nodes, "numProcPerNode": spec.nproc_per_node,
                    "resourcesPerNode": pods.resources(spec.cpu, spec.memory, spec.gpus_per_node)},
        "runtimePatches": [{"manager": RUNTIME_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
            "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {
                "metadata": spec.pod_metadata(), "spec": pod_patch}}}}]}}}}],
    }
    if spec.active_deadline_s:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_s
    return {"apiVersion": TRAINJOB_API, "kind": "TrainJob", "metadata": spec.job_metadata(),
            "spec": job_spec}


def render_pytorchjob(spec: TrainingJobSpec) -> dict[str, Any]:
    """A training-operator PyTorchJob: a Master and ``nodes - 1`` Workers, static rendezvous."""
    spec.validate()
    volumes, mounts = spec.volumes()

    def replica(count: int) -> dict[str, Any]:
        container = {"name": "pytorch", "image": spec.image, "command": list(spec.command),
                     "env": spec.container_env(),
                     "ports": [{"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"}],
                     "resources": pods.resources(spec.cpu, spec.memory, spec.gpus_per_node),
                     "securityContext": pods.container_security_context(), "volumeMounts": mounts}
        return {"replicas": count, "restartPolicy": "OnFailure",
                "template": {"metadata": spec.pod_metadata(),
                             "spec": {**spec.pod_spec_extras(), "containers": [container],
                                      "volumes": volumes}}}

    replicas = {"Master": replica(1)}
    if spec.nodes > 1:
        replicas["Worker"] = replica(spec.nodes - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": spec.backoff_limit,
                                  "ttlSecondsAfterFinished": spec.ttl_s}
    if spec.active_deadline_s:
        run_policy["activeDeadlineSeconds"] = spec.active_deadline_s
    if spec.gang_scheduling:   # the operator's PodGroup: every replica, or none
        run_policy["schedulingPolicy"] = {"minAvailable": spec.nodes}
        if spec.schedule_timeout_s:
            run_policy["schedulingPolicy"]["scheduleTimeoutSeconds"] = spec.schedule_timeout_s
    return {"apiVersion": PYTORCHJOB_API, "kind": "PyTorchJob", "metadata": spec.job_metadata(),
            "spec": {"nprocPerNode": str(spec.nproc_per_node), "runPolicy": run_policy,
                     "pytorchReplicaSpecs": replicas}}


RENDERERS = {"trainjob": render_trainjob, "pytorchjob": render_pytorchjob}


def render_job(spec: TrainingJobSpec, kind: str = "trainjob") -> dict[str, Any]:
    if kind not in RENDERERS:
        raise DiffucoderError(f"kind: {kind!r} is not one of {sorted(RENDERERS)}")
    return RENDERERS[kind](spec)


@dataclass(frozen=True)
class JobKind:
    """How the launcher finds, follows and judges one kind of job."""

    kind: str
    group: str
    version: str
    plural: str
    succeeded: str                        # condition type meaning success
    job_label: str                        # pod label holding the job's name
    master_labels: tuple[tuple[str, str], ...]  # further labels of the rank-0 pod
    container: str                        # the training container in that pod

    def pod_selector(self, name: str) -> dict[str, str]:
        return {self.job_label: name}

    def master_selector(self, name: str) -> dict[str, str]:
        return {self.job_label: name, **dict(self.master_labels)}


JOB_KINDS = {
    "TrainJob": JobKind("TrainJob", "trainer.kubeflow.org", "v1alpha1", "trainjobs", "Complete",
                        "jobset.sigs.k8s.io/jobset-name",
                        (("jobset.sigs.k8s.io/replicatedjob-name", NODE),
                         ("batch.kubernetes.io/job-completion-index", "0")), NODE),
    "PyTorchJob": JobKind("PyTorchJob", "kubeflow.org", "v1", "pytorchjobs", "Succeeded",
                          "training.kubeflow.org/job-name",
                          (("training.kubeflow.org/replica-type", "master"),
                           ("training.kubeflow.org/replica-index", "0")), "pytorch"),
}


def job_kind(obj: dict) -> JobKind:
    kind = JOB_KINDS.get(obj.get("kind", ""))
    if kind is None or obj.get("apiVersion") != f"{kind.group}/{kind.version}":
        raise DiffucoderError(f"cannot launch {obj.get('apiVersion')} {obj.get('kind')}: "
                              f"only {TRAINJOB_API} TrainJob and {PYTORCHJOB_API} PyTorchJob")
    return kind
