"""KServe objects for a trained model: the InferenceService, and (optionally) its runtime.

    uri = model_storage_uri("s3://diffucoder/runs/r1/sft")   # -> .../sft/.versions/<published>
    isvc = render_inference_service(InferenceSpec(
        name="diffucoder-r1", namespace="ml-team", storage_uri=uri, gpus=1, cpu="8",
        memory="64Gi", deployment_mode="RawDeployment"))
    runtime = render_serving_runtime(ServingRuntimeSpec(namespace="ml-team", image=SERVE_IMAGE,
                                                        preset="7b-gpu", gpus=1))

The InferenceService uses the chart's ServingRuntime ``diffucoder-runtime`` (model format
``diffucoder``) by name, and the chart's ServiceAccount ``diffucoder-kserve``, whose Secret
carries KServe's ``serving.kserve.io/s3-endpoint``/``-usehttps``/``-region`` annotations and the
keys: KServe's storage initializer downloads ``storageUri`` into ``/mnt/models``, which the
runtime serves. ``render_serving_runtime`` renders the same runtime as the chart's
``templates/kserve.yaml`` for clusters installed without the chart: ``diffucoder serve
--model /mnt/models --config /opt/diffucoder/configs/<preset>/serve.yaml --model_name={{.Name}}``
(KServe replaces ``{{.Name}}`` with the InferenceService's name, so ``/v1/models/<name>:predict``
answers under that name), a startupProbe on the readiness route sized by ``startup_timeout_s``
(the server binds at once and is ready once the model is loaded), readiness on
``/v2/health/ready`` and liveness on ``/v2/health/live`` (true while loading).

Deployment modes (annotation ``serving.kserve.io/deploymentMode``): ``RawDeployment`` (a
Deployment; KServe >= 0.16 calls it ``Standard``) and ``Serverless`` (a Knative Service;
``Knative`` in KServe >= 0.16). Both spellings are accepted and written as given: the old ones
work on every KServe release (0.16+ reads them as the new ones), the new ones need 0.16+.
In the Knative modes the pod spec must pass Knative's field mask (knative/serving
``pkg/apis/serving/fieldmask.go``) with the flags in ``knative-serving/config-features``:
without ``kubernetes.podspec-securitycontext`` the pod-level securityContext is left out
(the container's keeps runAsNonRoot, uid/gid and seccomp), and a node selector or
tolerations without their flag is an error naming it, never dropped. ``privileged`` is never
written (Knative before 1.17 refuses even ``false``; unset means unprivileged).

The store publishes each artifact as ``<name>/.versions/<id>/`` plus a manifest naming the
current id (``diffucoder.store``); KServe reads plain prefixes, so ``model_storage_uri`` pins
the published version: a later re-publish never changes a running deployment under it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.kube import pods
from diffucoder.kube.objects import check_name, check_subdomain, common_labels

ISVC_API = "serving.kserve.io/v1beta1"
RUNTIME_API = "serving.kserve.io/v1alpha1"
MODEL_FORMAT = "diffucoder"
# storageUri schemes KServe's storage initializer understands.
KSERVE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hf://", "oci://")

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# KServe's modes (pkg/constants/constants.go) -> the kind of workload. 0.16 renamed
# RawDeployment/Serverless to Standard/Knative and still reads the old names.
DEPLOYMENT_MODES = {"RawDeployment": "deployment", "Standard": "deployment",
                    "Serverless": "knative", "Knative": "knative"}
# How long a Knative revision may take to become ready (Knative's default is 600 s).
PROGRESS_DEADLINE_ANNOTATION = "serving.knative.dev/progress-deadline"
# Knative's PodSpec feature flags (knative/serving pkg/apis/config/features.go), for
# serving.knative_features; the renderer can emit the fields of the first three.
KNATIVE_FIELD_FLAGS = {"nodeSelector": "kubernetes.podspec-nodeselector",
                       "tolerations": "kubernetes.podspec-tolerations",
                       "securityContext": "kubernetes.podspec-securitycontext"}
KNATIVE_PODSPEC_FLAGS = (
    *KNATIVE_FIELD_FLAGS.values(), "kubernetes.podspec-affinity", "kubernetes.podspec-dnsconfig",
    "kubernetes.podspec-dnspolicy", "kubernetes.podspec-fieldref", "kubernetes.podspec-hostaliases",
    "kubernetes.podspec-hostipc", "kubernetes.podspec-hostnetwork", "kubernetes.podspec-hostpid",
    "kubernetes.podspec-init-containers", "kubernetes.podspec-persistent-volume-claim",
    "kubernetes.podspec-persistent-volume-write", "kubernetes.podspec-priorityclassname",
    "kubernetes.podspec-runtimeclassname", "kubernetes.podspec-schedulername",
    "kubernetes.podspec-shareprocessnamespace", "kubernetes.podspec-topologyspreadconstraints",
    "kubernetes.podspec-volumes-emptydir", "kubernetes.podspec-volumes-hostpath",
    "kubernetes.podspec-volumes-csi", "kubernetes.podspec-volumes-ephemeral",
    "kubernetes.podspec-volumes-image", "kubernetes.podspec-volumes-mount-propagation",
    "kubernetes.containerspec-addcapabilities")

# The serve image's copy of configs/ (DIFFUCODER_CONFIGS in images/serve/Dockerfile) and the
# directory KServe's storage initializer fills.
IMAGE_CONFIGS = "/opt/diffucoder/configs"
MODEL_DIR = "/mnt/models"
READY_PATH, LIVE_PATH = "/v2/health/ready", "/v2/health/live"
PROBE_PERIOD_S = 10
# KServe's placeholder for the InferenceService's name in a runtime's args (ReplacePlaceholders).
ISVC_NAME_PLACEHOLDER = "{{.Name}}"


def is_knative(mode: str) -> bool:
    return DEPLOYMENT_MODES.get(mode) == "knative"


def check_deployment_mode(mode: str, knative_features: list[str] | tuple[str, ...] = ()) -> str:
    if mode not in DEPLOYMENT_MODES:
        raise DiffucoderError(f"deployment_mode: {mode!r} is not one of {list(DEPLOYMENT_MODES)} "
                              "(RawDeployment = Standard, Serverless = Knative)")
    for flag in knative_features:
        if flag not in KNATIVE_PODSPEC_FLAGS:
            raise DiffucoderError(f"knative_features: {flag!r} is not a Knative PodSpec feature flag "
                                  f"(one of {sorted(KNATIVE_PODSPEC_FLAGS)})")
    return mode


def serving_container_security_context() -> dict[str, Any]:
    """The project's container securityContext less ``privileged``, which Knative before 1.17
    refuses even as ``false`` (unset means unprivileged, so nothing is lost)."""
    context = pods.container_security_context()
    del context["privileged"]
    return context


def model_storage_uri(artifact_uri: str) -> str:
    """The immutable location of the published version of a store artifact."""
    from diffucoder.store import resolve
    from diffucoder.store.manifest import VERSIONS_DIR

    store, name = resolve(artifact_uri)
    manifest = store.read_manifest(name)
    if "config.json" not in manifest.files:
        raise DiffucoderError(f"{artifact_uri}: not a model artifact (no config.json among "
                              f"{sorted(manifest.files)[:5]})")
    return f"{store.uri(name)}/{VERSIONS_DIR}/{manifest.version}"


@dataclass
class InferenceSpec:
    name: str
    namespace: str
    storage_uri: str
    runtime: str = "diffucoder-runtime"
    service_account: str = "diffucoder-kserve"
    gpus: int = 0
    cpu: str = "2"
    memory: str = "8Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    min_replicas: int = 1
    max_replicas: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    deployment_mode: str = "RawDeployment"   # or Standard; Serverless / Knative (see DEPLOYMENT_MODES)
    knative_features: list[str] = field(default_factory=list)   # flags on in knative-serving/config-features
    progress_deadline_s: int = 0     # Knative modes: time to become ready (0: Knative's default, 600 s)
    allow_local_uri: bool = False    # render a file:// storageUri (to show, not to apply)

    def validate(self) -> "InferenceSpec":
        # InferenceService names become DNS labels of the predictor's host name.
        check_name(self.name, "inference service name", 45)
        check_name(self.namespace, "namespace")
        check_subdomain(self.runtime, "runtime")
        check_subdomain(self.service_account, "service_account")
        if not self.storage_uri.startswith(KSERVE_SCHEMES) and not (
                self.allow_local_uri and self.storage_uri.startswith("file://")):
            raise DiffucoderError(f"storage_uri: {self.storage_uri!r}: KServe reads "
                                  f"{', '.join(KSERVE_SCHEMES)}; a file:// store is not reachable "
                                  "from a cluster (use the s3:// store)")
        for what, value, low in (("min_replicas", self.min_replicas, 0),
                                 ("max_replicas", self.max_replicas, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DiffucoderError(f"{what}: must be an integer >= {low}, got {value!r}")
        if self.max_replicas < self.min_replicas:
            raise DiffucoderError(f"max_replicas ({self.max_replicas}) < min_replicas "
                                  f"({self.min_replicas})")
        check_deployment_mode(self.deployment_mode, self.knative_features)
        if isinstance(self.progress_deadline_s, bool) or not isinstance(self.progress_deadline_s, int) \
                or self.progress_deadline_s < 0:
            raise DiffucoderError(f"progress_deadline_s: must be an integer >= 0, got {self.progress_deadline_s!r}")
        pods.resources(self.cpu, self.memory, self.gpus)
        pods.check_tolerations(self.tolerations)
        pods.check_node_selector(self.node_selector)
        common_labels("serving", self.labels)
        if is_knative(self.deployment_mode):
            self._check_knative_placement()
        return self

    def _check_knative_placement(self) -> None:
        """Placement Knative would refuse: an error naming each missing flag (fail closed)."""
        missing = [(key, KNATIVE_FIELD_FLAGS[field_name]) for key, field_name, value in
                   (("node_selector", "nodeSelector", self.node_selector),
                    ("tolerations", "tolerations", self.tolerations))
                   if value and KNATIVE_FIELD_FLAGS[field_name] not in self.knative_features]
        if missing:
            needs = "; ".join(f"{key} needs the feature flag {flag!r}" for key, flag in missing)
            raise DiffucoderError(
                f"deployment_mode {self.deployment_mode}: Knative refuses this pod placement without its "
                f"feature flags ({needs}). Either enable them (kubectl -n knative-serving edit configmap "
                f"config-features, set each to \"enabled\") and list them in knative_features, or use "
                f"deployment_mode RawDeployment. Placement is never dropped silently.")


def render_inference_service(spec: InferenceSpec) -> dict[str, Any]:
    spec.validate()
    knative = is_knative(spec.deployment_mode)
    predictor: dict[str, Any] = {
        "serviceAccountName": spec.service_account,
        "minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas,
    }
    # Knative takes a pod securityContext only with its flag; the container's carries the same
    # non-root uid/gid and seccomp profile (only fsGroup is lost, and the pod's volumes are
    # emptyDirs, writable by any uid).
    if not knative or KNATIVE_FIELD_FLAGS["securityContext"] in spec.knative_features:
        predictor["securityContext"] = pods.pod_security_context()
    predictor["model"] = {"modelFormat": {"name": MODEL_FORMAT, "version": "1"}, "runtime": spec.runtime,
                          "storageUri": spec.storage_uri,
                          "resources": pods.resources(spec.cpu, spec.memory, spec.gpus),
                          "securityContext": serving_container_security_context()}
    if spec.node_selector:     # in the Knative modes only with the flag (validate checked)
        predictor["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        predictor["tolerations"] = [dict(t) for t in spec.tolerations]
    notes = {DEPLOYMENT_MODE_ANNOTATION: spec.deployment_mode}
    if knative and spec.progress_deadline_s:   # KServe copies the isvc's annotations to the revision
        notes[PROGRESS_DEADLINE_ANNOTATION] = f"{spec.progress_deadline_s}s"
    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace,
                                "labels": common_labels("serving", spec.labels), "annotations": notes}
    return {"apiVersion": ISVC_API, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


@dataclass
class ServingRuntimeSpec:
    namespace: str
    image: str
    name: str = "diffucoder-runtime"
    preset: str = ""              # serve config configs/<preset>/serve.yaml; "": 7b-gpu with GPUs, else tiny-cpu
    port: int = 8080
    cpu: str = "1"
    memory: str = "4Gi"
    gpus: int = 0
    tmp_size: str = "8Gi"
    # How long loading the model may take (the startupProbe's budget). The default covers the
    # 7B (cluster.yaml's serving.startup_timeout_s, which serving_runtime_spec passes); a small
    # model passes the probe as soon as it is loaded, so a large budget costs it nothing.
    startup_timeout_s: int = 1800


def runtime_preset(spec: ServingRuntimeSpec) -> str:
    """The serve preset of a runtime, checked against its GPUs: a cuda config needs a GPU and a
    GPU would sit idle under a cpu config (what served the 7B on CPU in fp32 before)."""
    # Lazy: diffucoder.serving.config imports torch (via diffucoder.sampling), seconds that
    # rendering Kubernetes objects should not pay unless it renders a runtime.
    from diffucoder.serving.config import ServeConfig

    preset = spec.preset or ("7b-gpu" if spec.gpus else "tiny-cpu")
    device = load_config(ServeConfig, recipe_path(preset, "serve")).device
    if device.startswith("cuda") and not spec.gpus:
        raise DiffucoderError(f"preset {preset!r}: its serve.yaml runs on {device}; give the runtime gpus >= 1")
    if device == "cpu" and spec.gpus:
        raise DiffucoderError(f"preset {preset!r}: its serve.yaml runs on the CPU, so the {spec.gpus} GPU(s) "
                              "would sit idle; use a GPU preset (7b-gpu) or gpus=0")
    return preset


def render_serving_runtime(spec: ServingRuntimeSpec) -> dict[str, Any]:
    """The runtime the chart installs (``templates/kserve.yaml``), for chart-less clusters."""
    check_subdomain(spec.name, "runtime name")
    check_name(spec.namespace, "namespace")
    if not spec.image or any(c.isspace() for c in spec.image):
        raise DiffucoderError(f"image: {spec.image!r} is not an image reference")
    if isinstance(spec.startup_timeout_s, bool) or not isinstance(spec.startup_timeout_s, int) \
            or spec.startup_timeout_s < PROBE_PERIOD_S:
        raise DiffucoderError(f"startup_timeout_s: must be an integer >= {PROBE_PERIOD_S}, "
                              f"got {spec.startup_timeout_s!r}")
    preset, port = runtime_preset(spec), spec.port

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": 5,
                "successThreshold": 1, "failureThreshold": failures}

    container = {
        "name": "kserve-container", "image": spec.image,
        # The whole command as args (the serve image has no ENTRYPOINT); KServe appends the
        # InferenceService's own args and replaces {{.Name}}.
        "args": ["diffucoder", "serve", "--model", MODEL_DIR, "--port", str(port),
                 "--config", f"{IMAGE_CONFIGS}/{preset}/serve.yaml", f"--model_name={ISVC_NAME_PLACEHOLDER}"],
        "env": pods.plain_env({"HOME": "/tmp", "HF_HOME": "/tmp/hf"}),
        "ports": [{"name": "http1", "containerPort": port, "protocol": "TCP"}],
        # The server binds at once and turns ready when the model is loaded: the startup probe
        # gives the load its budget, then readiness and liveness take over.
        "startupProbe": probe(READY_PATH, PROBE_PERIOD_S, math.ceil(spec.startup_timeout_s / PROBE_PERIOD_S)),
        "readinessProbe": probe(READY_PATH, PROBE_PERIOD_S, 3),
        "livenessProbe": probe(LIVE_PATH, 20, 3),
        "resources": pods.resources(spec.cpu, spec.memory, spec.gpus),
        "securityContext": serving_container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {"apiVersion": RUNTIME_API, "kind": "ServingRuntime",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": common_labels("serving"),
                         "annotations": {"prometheus.kserve.io/port": str(port),
                                         "prometheus.kserve.io/path": "/metrics"}},
            "spec": {"supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1",
                                                "autoSelect": True}],
                     "protocolVersions": ["v1", "v2"], "multiModel": False,
                     "containers": [container],
                     "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": spec.tmp_size}}]}}
