"""KServe objects for a trained model: the InferenceService, and (optionally) its runtime.

    uri = model_storage_uri("s3://diffucoder/runs/r1/sft")   # -> .../sft/.versions/<published>
    isvc = render_inference_service(InferenceSpec(
        name="diffucoder-r1", namespace="ml-team", storage_uri=uri, gpus=1, cpu="8",
        memory="64Gi", node_selector={"nvidia.com/gpu.present": "true"}))
    runtime = render_serving_runtime(ServingRuntimeSpec(namespace="ml-team", image=SERVE_IMAGE))

The InferenceService uses the chart's ServingRuntime ``diffucoder-runtime`` (model format
``diffucoder``) by name, and the chart's ServiceAccount ``diffucoder-kserve``, whose Secret
carries KServe's ``serving.kserve.io/s3-endpoint``/``-usehttps``/``-region`` annotations and the
keys: KServe's storage initializer downloads ``storageUri`` into ``/mnt/models``, which the
runtime serves (``diffucoder serve --model /mnt/models``). ``render_serving_runtime`` renders
the same runtime for clusters installed without the chart.

The store publishes each artifact as ``<name>/.versions/<id>/`` plus a manifest naming the
current id (``diffucoder.store``); KServe reads plain prefixes, so ``model_storage_uri`` pins
the published version: a later re-publish never changes a running deployment under it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffucoder.errors import DiffucoderError
from diffucoder.kube import pods
from diffucoder.kube.objects import check_name, check_subdomain, common_labels

ISVC_API = "serving.kserve.io/v1beta1"
RUNTIME_API = "serving.kserve.io/v1alpha1"
MODEL_FORMAT = "diffucoder"
# storageUri schemes KServe's storage initializer understands.
KSERVE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hf://", "oci://")


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
    deployment_mode: str = ""        # "" (the cluster's default), RawDeployment or Serverless
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
        if self.deployment_mode not in ("", "RawDeployment", "Serverless"):
            raise DiffucoderError(f"deployment_mode: {self.deployment_mode!r} is not RawDeployment "
                                  "or Serverless")
        pods.resources(self.cpu, self.memory, self.gpus)
        pods.check_tolerations(self.tolerations)
        pods.check_node_selector(self.node_selector)
        common_labels("serving", self.labels)
        return self


def render_inference_service(spec: InferenceSpec) -> dict[str, Any]:
    spec.validate()
    predictor: dict[str, Any] = {
        "serviceAccountName": spec.service_account,
        "minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas,
        "securityContext": pods.pod_security_context(),
        "model": {"modelFormat": {"name": MODEL_FORMAT, "version": "1"}, "runtime": spec.runtime,
                  "storageUri": spec.storage_uri,
                  "resources": pods.resources(spec.cpu, spec.memory, spec.gpus),
                  "securityContext": pods.container_security_context()},
    }
    if spec.node_selector:
        predictor["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        predictor["tolerations"] = [dict(t) for t in spec.tolerations]
    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace,
                                "labels": common_labels("serving", spec.labels)}
    if spec.deployment_mode:
        metadata["annotations"] = {"serving.kserve.io/deploymentMode": spec.deployment_mode}
    return {"apiVersion": ISVC_API, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


@dataclass
class ServingRuntimeSpec:
    namespace: str
    image: str
    name: str = "diffucoder-runtime"
    port: int = 8080
    cpu: str = "1"
    memory: str = "4Gi"
    gpus: int = 0
    tmp_size: str = "8Gi"


def render_serving_runtime(spec: ServingRuntimeSpec) -> dict[str, Any]:
    """The runtime the chart installs (``templates/kserve.yaml``), for chart-less clusters."""
    check_subdomain(spec.name, "runtime name")
    check_name(spec.namespace, "namespace")
    if not spec.image or any(c.isspace() for c in spec.image):
        raise DiffucoderError(f"image: {spec.image!r} is not an image reference")
    port = spec.port
    container = {
        "name": "kserve-container", "image": spec.image,
        # The whole command as args (the serve image has no ENTRYPOINT).
        "args": ["diffucoder", "serve", "--model", "/mnt/models", "--port", str(port)],
        "env": pods.plain_env({"HOME": "/tmp", "HF_HOME": "/tmp/hf"}),
        "ports": [{"name": "http1", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": port},
                           "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": port},
                          "initialDelaySeconds": 30, "periodSeconds": 20},
        "resources": pods.resources(spec.cpu, spec.memory, spec.gpus),
        "securityContext": pods.container_security_context(),
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
