"""Preflight of a cluster for the README's walkthrough (``diffucoder doctor --cluster``).

    from diffucoder.kube.client import api_client
    from diffucoder.kube.doctor import DoctorSettings, FAIL, run_checks
    results = run_checks(api_client(), DoctorSettings(preset="7b-gpu", namespace="ml-team",
                                                      kfp_host="http://127.0.0.1:8888"))
    for r in results:                       # CheckResult(name, status, detail, fix)
        print(r.name, r.status, r.detail, r.fix)
    healthy = all(r.status != FAIL for r in results)

Each check reads the cluster through the Kubernetes API (the official client, as ``client``
does) and returns a typed result; nothing here prints. A check that cannot read what it needs
(403, API server down) fails and says which permission to ask for: a preflight that cannot
see is not a pass. Names come from ``configs/<preset>/cluster.yaml`` (``load_cluster_config``)
and the platform modules, so they match what the steps send.

The checks, and the upstream source each one follows:

- ``api-server``: ``/version`` answers.
- ``trainjob-crd``: CRD ``trainjobs.trainer.kubeflow.org`` serves v1alpha1 and its
  openAPIV3Schema has ``spec.runtimePatches`` (kubeflow/trainer
  manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml: absent in v2.1, present from
  v2.2.0; an older API server prunes the field silently, losing GPU placement, /dev/shm and
  the checkpoint PVC). Only when ``training.kind`` is trainjob.
- ``pytorchjob-crd``: CRD ``pytorchjobs.kubeflow.org`` serves v1 (training-operator v1.9).
  Only when ``training.kind`` is pytorchjob.
- ``kserve-crds``: ``inferenceservices`` (v1beta1) and ``servingruntimes`` (v1alpha1) of
  serving.kserve.io are served.
- ``kfp-version``: the KFP backend is >= 2.5.0. From ``GET <kfp-host>/apis/v2beta1/healthz``,
  whose ``tag_name`` is the API server's build tag (kubeflow/pipelines
  backend/src/apiserver/main.go, ``healthzResponse``), else from the image tag of container
  ``ml-pipeline-api-server`` of Deployment ``ml-pipeline`` in the KFP namespace
  (manifests/kustomize/base/pipeline/ml-pipeline-apiserver-deployment.yaml).
- ``kserve-mode``: the mode KServe gives the InferenceService. Its annotation is
  ``serving.deployment_mode``; every KServe reads RawDeployment / Serverless, but Standard /
  Knative only from 0.16 (read from the image tag of ``kserve-controller-manager``), and an
  older KServe falls back to ``defaultDeploymentMode`` of key ``deploy`` in ConfigMap
  ``inferenceservice-config`` (kserve/kserve pkg/controller/v1beta1/inferenceservice/utils
  ``GetDeploymentMode``, pkg/constants/constants.go). That key must parse, or KServe
  reconciles nothing (pkg/apis/serving/v1beta1/configmap.go ``NewDeployConfig``).
- ``knative-features``: in Knative mode, every ``config-features`` flag (knative-serving
  namespace) the predictor's pod spec needs: the InferenceService the deploy step renders for
  this preset merged with the namespace's ServingRuntime, as KServe merges them. Field ->
  flag and the defaults follow knative/serving pkg/apis/serving/fieldmask.go (``PodSpecMask``,
  ``VolumeSourceMask``, ``PodSecurityContextMask``, ``CapabilitiesMask``) and
  pkg/apis/config/features.go (``defaultFeaturesConfig``; config/core/configmaps/features.yaml);
  ``privileged: false`` is accepted only from Knative 1.17 (fieldmask.go
  ``SecurityContextMask``), read from the ConfigMap's ``app.kubernetes.io/version`` label.
- ``store-secret``: the store Secret exists and has every key the steps and jobs read
  (``pods.S3_SECRET_KEYS``).
- ``service-account/<name>``: the chart's pipeline runner, job and KServe ServiceAccounts.
- ``training-runtime``: the TrainingRuntime TrainJobs reference (trainjob only).
- ``serving-runtime``: the ServingRuntime the InferenceService names, in the namespace or as a
  ClusterServingRuntime (as ``deploy`` accepts).
- ``training-nodes`` / ``serving-nodes``: enough schedulable nodes matching the node selector,
  whose NoSchedule / NoExecute taints the tolerations cover, with allocatable
  ``nvidia.com/gpu``, CPU and memory for one pod: ``nodes`` of them for each training stage
  (cluster.yaml's placement, which the job sends), one for serving (the predictor's placement
  after KServe's merge with the runtime, kserve/kserve utils.go ``MergePodSpec``).
- ``store``: the store's endpoint answers and the bucket of ``--store-root`` exists. Endpoint
  and keys as ``diffucoder store`` finds them (the environment), else from the store Secret;
  ``store_endpoint`` replaces the endpoint (a port-forward to an in-cluster MinIO).
"""
from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import api_message
from diffucoder.kube.config import ClusterConfig, inference_spec, load_cluster_config
from diffucoder.kube.inference import ISVC_API, RUNTIME_API, render_inference_service
from diffucoder.kube.pods import GPU_RESOURCE, S3_SECRET_KEYS
from diffucoder.kube.training_job import JOB_KINDS
from diffucoder.store import S3Credentials, S3Options, StoreError, open_store
from diffucoder.store.retry import s3_status

PASS, FAIL, SKIP = "pass", "fail", "skip"

# The chart's account for pipeline runs (charts/diffucoder/templates/serviceaccounts.yaml);
# cluster.yaml names the other two, because the steps put them into the objects they send.
PIPELINE_RUNNER = "diffucoder-pipeline-runner"
MIN_KFP = (2, 5, 0)          # dynamic Secret name, node selector / toleration JSON, retries
MIN_KNATIVE_PRIVILEGED = (1, 17, 0)   # first Knative accepting securityContext.privileged=false
KFP_DEPLOYMENT, KFP_CONTAINER = "ml-pipeline", "ml-pipeline-api-server"
KSERVE_CONFIGMAP, KSERVE_DEPLOY_KEY = "inferenceservice-config", "deploy"
KSERVE_CONTROLLER, KSERVE_CONTROLLER_CONTAINER = "kserve-controller-manager", "manager"
MIN_KSERVE_NEW_MODES = (0, 16, 0)     # first KServe reading Standard / Knative
LEGACY_NAME = {"Standard": "RawDeployment", "Knative": "Serverless"}   # what every KServe reads
# KServe's own install uses "kserve"; Kubeflow's manifests install it into "kubeflow".
KSERVE_NAMESPACES = ("kserve", "kubeflow")
KNATIVE_FEATURES = "config-features"
RUNTIME_GROUP, RUNTIME_VERSION = RUNTIME_API.split("/")
ISVC_GROUP, ISVC_VERSION = ISVC_API.split("/")
TRAINER_GROUP = JOB_KINDS["TrainJob"].group
TRAINER_INSTALL = ('kubectl apply --server-side -k "https://github.com/kubeflow/trainer.git/'
                   'manifests/overlays/manager?ref=v2.2.0"')

# PodSpec field -> the config-features flag Knative needs before it accepts the field.
POD_FEATURES = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
}
VOLUME_FEATURES = {
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
    "ephemeral": "kubernetes.podspec-volumes-ephemeral",
    "image": "kubernetes.podspec-volumes-image",
}
POD_SECURITY_CONTEXT = "kubernetes.podspec-securitycontext"
FIELD_REF = "kubernetes.podspec-fieldref"
ADD_CAPABILITIES = "kubernetes.containerspec-addcapabilities"
SECURE_POD_DEFAULTS = "secure-pod-defaults"
ENABLED_BY_DEFAULT = {"kubernetes.podspec-volumes-emptydir"}   # features.go defaults
# The pod fields of a ServingRuntime that KServe carries into the predictor's pod (MergePodSpec).
RUNTIME_POD_FIELDS = ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets",
                      "schedulerName")
# Fields of the predictor's model that are KServe's, not the container's.
MODEL_ONLY = {"modelFormat", "runtime", "storageUri", "storage", "protocolVersion"}
# Fields of an InferenceService predictor that are not pod fields (ComponentExtensionSpec).
PREDICTOR_NON_POD = {"model", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
                     "scaleMetricType", "containerConcurrency", "timeout", "canaryTrafficPercent",
                     "logger", "batcher", "labels", "annotations", "deploymentStrategy",
                     "autoScaling", "workerSpec", "storageUris"}


@dataclass(frozen=True)
class CheckResult:
    name: str            # stable id, e.g. "trainjob-crd"
    status: str          # PASS | FAIL | SKIP
    detail: str          # what was found
    fix: str = ""        # for a failure: what to do about it

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class DoctorSettings:
    """What to check against; empty fields take the defaults of cluster.yaml / the chart."""

    namespace: str                         # where the chart is installed and the jobs run
    preset: str = "tiny-cpu"
    cluster_overrides: tuple[str, ...] = ()   # cluster.yaml key=value, as the run's
    kfp_host: str = ""                     # e.g. http://127.0.0.1:8888 (a port-forward)
    kfp_token: str = field(default="", repr=False)   # bearer token for the KFP API
    kfp_namespace: str = "kubeflow"
    kserve_namespace: str = ""             # "": the first of KSERVE_NAMESPACES that has it
    knative_namespace: str = "knative-serving"
    store_root: str = "s3://diffucoder"
    store_secret: str = ""                 # "": training.s3_secret of cluster.yaml
    store_endpoint: str = ""               # replaces the endpoint from env / Secret
    runner_service_account: str = PIPELINE_RUNNER
    extended_resource_toleration: bool = False   # the API server adds GPU tolerations (GKE)
    env: Mapping[str, str] | None = None   # the store settings' environment (None: os.environ)
    timeout_s: float = 10.0


class _Unreadable(Exception):
    """The API refused or failed a read; the check fails with ``fix``."""

    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.fix = fix


class _Context:
    """The API, the settings, the cluster config, and what one check leaves for a later one."""

    def __init__(self, api, settings: DoctorSettings, cfg: ClusterConfig):
        self.api, self.s, self.cfg = api, settings, cfg
        self.ns = settings.namespace
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.ext, self.custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
        self.api_up = False
        self.kserve_mode: str | None = None        # "Knative" | "Standard" once known
        self.secret_data: dict[str, str] = {}      # the store Secret, decoded
        self.cache: dict[str, Any] = {}            # reads several checks share

    def read(self, what: str, can_i: str, call: Callable, *args) -> dict | None:
        """The object as a plain dict, None when absent; other errors raise ``_Unreadable``
        whose fix names the permission (``can_i``: the ``kubectl auth can-i`` arguments)."""
        try:
            response = call(*args, _preload_content=False, _request_timeout=self.s.timeout_s)
        except ApiException as err:
            if err.status == 404:
                return None
            raise _Unreadable(f"cannot read {what}: {api_message(err)}",
                              f"this needs `kubectl auth can-i {can_i}`; run with an account "
                              "that may, or ask the cluster's admin") from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise _Unreadable(f"cannot read {what}: {err}",
                              "check that the API server is reachable (kubectl cluster-info)") \
                from None
        return json.loads(response.data or b"{}")

    def crd(self, plural: str, group: str) -> dict | None:
        return self.read(f"CRD {plural}.{group}", "get customresourcedefinitions",
                         self.ext.read_custom_resource_definition, f"{plural}.{group}")


def _pass(name: str, detail: str) -> CheckResult:
    return CheckResult(name, PASS, detail)


def _fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, FAIL, detail, fix)


def _skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, SKIP, detail)


def _served_version(crd: dict, version: str) -> dict | None:
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version and entry.get("served"):
            return entry
    return None


def _release(text: str) -> tuple[int, int, int, int] | None:
    """(major, minor, patch, 1) of ``2.5.0`` / ``v2.5.0``; a pre-release (``2.5.0-rc.1``)
    sorts below its release (last field 0). None for anything else (``master``, a SHA)."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)([-+.].*)?", (text or "").strip())
    if not match:
        return None
    final = 0 if (match.group(4) or "").startswith("-") else 1
    return int(match.group(1)), int(match.group(2)), int(match.group(3)), final


def _at_least(version: tuple, minimum: tuple[int, int, int]) -> bool:
    """``version`` (from ``_release``) is ``minimum`` or later; its pre-releases are not."""
    return version >= (*minimum, 1)


def _image_tag(image: str) -> str:
    """``2.5.0`` of ``ghcr.io/kubeflow/kfp-api-server:2.5.0[@sha256:...]`` ('' if untagged)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version[:3]))


# -- the API server and the CRDs ---------------------------------------------------------------


def check_api_server(ctx: _Context) -> CheckResult:
    name = "api-server"
    try:
        # GET /version as kubectl does (the generated VersionApi asks for /version/).
        response = ctx.api.call_api("/version", "GET", auth_settings=["BearerToken"],
                                    _return_http_data_only=True, _preload_content=False,
                                    _request_timeout=ctx.s.timeout_s)
        version = json.loads(response.data or b"{}").get("gitVersion", "?")
    except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
        detail = api_message(err) if isinstance(err, ApiException) else str(err)
        return _fail(name, f"the Kubernetes API at {ctx.api.configuration.host} does not answer: "
                           f"{detail}", "point --kubeconfig / --context (or KUBECONFIG) at the "
                                        "cluster; `kubectl version` must work")
    ctx.api_up = True
    return _pass(name, f"Kubernetes {version} at {ctx.api.configuration.host}")


def check_trainjob_crd(ctx: _Context) -> CheckResult:
    name, kind = "trainjob-crd", JOB_KINDS["TrainJob"]
    if ctx.cfg.training.kind != "trainjob":
        return _skip(name, f"training.kind is {ctx.cfg.training.kind}")
    crd_name = f"{kind.plural}.{kind.group}"
    crd = ctx.crd(kind.plural, kind.group)
    if crd is None:
        return _fail(name, f"no CRD {crd_name}: Kubeflow Trainer is not installed",
                     f"install Kubeflow Trainer v2.2.0 or later: {TRAINER_INSTALL}; or run the "
                     "training operator's PyTorchJobs (training_launcher=pytorchjob)")
    version = _served_version(crd, kind.version)
    if version is None:
        return _fail(name, f"CRD {crd_name} does not serve {kind.version}",
                     f"install Kubeflow Trainer v2.2.0 or later: {TRAINER_INSTALL}")
    spec = ((((version.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {})
            .get("spec") or {}).get("properties") or {}
    if "runtimePatches" not in spec:
        return _fail(name, f"CRD {crd_name} {kind.version} has no spec.runtimePatches: Kubeflow "
                           "Trainer is older than v2.2.0 and would silently drop the TrainJob's "
                           "runtimePatches (GPU node selector and tolerations, /dev/shm, the "
                           "checkpoint PVC)",
                     f"upgrade Kubeflow Trainer (CRDs and controller) to v2.2.0 or later: "
                     f"{TRAINER_INSTALL}; or use PyTorchJobs (training_launcher=pytorchjob)")
    return _pass(name, f"{crd_name} {kind.version} has spec.runtimePatches (Trainer >= v2.2.0)")


def check_pytorchjob_crd(ctx: _Context) -> CheckResult:
    name, kind = "pytorchjob-crd", JOB_KINDS["PyTorchJob"]
    if ctx.cfg.training.kind != "pytorchjob":
        return _skip(name, f"training.kind is {ctx.cfg.training.kind}")
    crd_name = f"{kind.plural}.{kind.group}"
    crd = ctx.crd(kind.plural, kind.group)
    if crd is None or _served_version(crd, kind.version) is None:
        found = "absent" if crd is None else f"does not serve {kind.version}"
        return _fail(name, f"CRD {crd_name} {found}: the training operator is not installed",
                     'install the training operator v1.9: kubectl apply --server-side -k '
                     '"github.com/kubeflow/training-operator.git/manifests/overlays/'
                     'standalone?ref=v1.9.0"; or use TrainJobs (training.kind=trainjob)')
    return _pass(name, f"{crd_name} serves {kind.version}")


def check_kserve_crds(ctx: _Context) -> CheckResult:
    name = "kserve-crds"
    problems = []
    for plural, group, version in (("inferenceservices", ISVC_GROUP, ISVC_VERSION),
                                   ("servingruntimes", RUNTIME_GROUP, RUNTIME_VERSION)):
        crd = ctx.crd(plural, group)
        if crd is None:
            problems.append(f"no CRD {plural}.{group}")
        elif _served_version(crd, version) is None:
            problems.append(f"CRD {plural}.{group} does not serve {version}")
    if problems:
        return _fail(name, "; ".join(problems) + ": KServe is not installed (or too old)",
                     "install KServe (https://kserve.github.io/website/ - its CRDs and controller)")
    return _pass(name, f"inferenceservices.{ISVC_GROUP} {ISVC_VERSION} and "
                       f"servingruntimes.{RUNTIME_GROUP} {RUNTIME_VERSION} are served")


# -- Kubeflow Pipelines -----------------------------------------------------------------------


def _healthz_tag(host: str, token: str, timeout: float) -> str:
    """``tag_name`` of the KFP API server's healthz ('' when it has none)."""
    request = urllib.request.Request(f"{host.rstrip('/')}/apis/v2beta1/healthz",
                                     headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read() or b"{}")
    return str(body.get("tag_name") or "") if isinstance(body, dict) else ""


def check_kfp_version(ctx: _Context) -> CheckResult:
    name, s = "kfp-version", ctx.s
    want = _dotted(MIN_KFP)
    tried: list[str] = []
    found: tuple[tuple, str] | None = None
    if s.kfp_host:
        url = f"{s.kfp_host.rstrip('/')}/apis/v2beta1/healthz"
        try:
            tag = _healthz_tag(s.kfp_host, s.kfp_token, s.timeout_s)
        except (urllib.error.URLError, OSError, ValueError) as err:
            tried.append(f"{url}: {getattr(err, 'reason', err)}")
        else:
            if _release(tag):
                found = (_release(tag), f"{url} reports {tag}")
            else:
                tried.append(f"{url} reports tag_name {tag!r}")
    if found is None and ctx.api_up:
        try:
            deployment = ctx.read(f"Deployment {KFP_DEPLOYMENT} in {s.kfp_namespace}",
                                  f"get deployments -n {s.kfp_namespace}",
                                  ctx.apps.read_namespaced_deployment, KFP_DEPLOYMENT,
                                  s.kfp_namespace)
        except _Unreadable as err:
            tried.append(str(err))
        else:
            pod = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            containers = pod.get("containers") or []
            image = next((c.get("image", "") for c in containers if c.get("name") == KFP_CONTAINER),
                         "")
            if deployment is None:
                tried.append(f"no Deployment {KFP_DEPLOYMENT} in namespace {s.kfp_namespace}")
            elif _release(_image_tag(image)):
                found = (_release(_image_tag(image)), f"image {image} of {s.kfp_namespace}/"
                                                       f"{KFP_DEPLOYMENT}")
            else:
                tried.append(f"{s.kfp_namespace}/{KFP_DEPLOYMENT}: container {KFP_CONTAINER} has "
                             f"image {image!r}, no release tag")
    upgrade = (f"upgrade Kubeflow Pipelines to {want} or later (standalone: kubectl apply -k "
               f'"github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?'
               f'ref={want}", then .../env/platform-agnostic?ref={want}; on Kubeflow: a '
               f"platform release whose Pipelines is {want}+)")
    if found is None:
        return _fail(name, "cannot tell the KFP backend's version: " + "; ".join(tried),
                     "pass --kfp-host (e.g. after `kubectl -n kubeflow port-forward svc/ml-pipeline "
                     "8888:8888`: http://127.0.0.1:8888) or --kfp-namespace where KFP runs; "
                     f"the compiled pipeline needs KFP >= {want}")
    version, source = found
    if not _at_least(version, MIN_KFP):
        return _fail(name, f"KFP backend {_dotted(version)} ({source}) is older than {want}: "
                           "its driver ignores the pipeline's platform spec (the dynamic Secret "
                           "name, node selector / toleration JSON, retries)", upgrade)
    also = f"; not from {'; '.join(tried)}" if tried else ""
    return _pass(name, f"KFP backend {_dotted(version)} >= {want} ({source}{also})")


# -- KServe and Knative -----------------------------------------------------------------------


def _normal_mode(mode: str) -> str:
    """KServe 0.16's names: Serverless is Knative, RawDeployment is Standard (constants.go)."""
    return {old: new for new, old in LEGACY_NAME.items()}.get(mode, mode)


def _kserve_version(ctx: _Context, namespace: str) -> tuple[tuple | None, str]:
    """(release, image) of KServe's controller (container ``manager`` of Deployment
    ``kserve-controller-manager``, kserve/kserve config/manager/manager.yaml)."""
    deployment = ctx.read(f"Deployment {KSERVE_CONTROLLER} in {namespace}",
                          f"get deployments -n {namespace}", ctx.apps.read_namespaced_deployment,
                          KSERVE_CONTROLLER, namespace)
    pod = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    image = next((c.get("image", "") for c in pod.get("containers") or []
                  if c.get("name") == KSERVE_CONTROLLER_CONTAINER), "")
    return _release(_image_tag(image)), image


def check_kserve_mode(ctx: _Context) -> CheckResult:
    """The mode KServe gives the InferenceService: its annotation when KServe knows the name
    (every release reads RawDeployment / Serverless; Standard / Knative need 0.16, older ones
    fall back to the default, utils.go ``GetDeploymentMode``), else the cluster's default."""
    name = "kserve-mode"
    requested = ctx.cfg.serving.deployment_mode
    use_old = (f"set serving.deployment_mode={LEGACY_NAME.get(requested, 'RawDeployment')} (the "
               "name every KServe reads) in the run's cluster_overrides (here: --set ...)")
    namespaces = (ctx.s.kserve_namespace,) if ctx.s.kserve_namespace else KSERVE_NAMESPACES
    configmap, where, unread = None, "", []
    for namespace in namespaces:
        try:
            configmap = ctx.read(f"ConfigMap {KSERVE_CONFIGMAP} in {namespace}",
                                 f"get configmaps -n {namespace}",
                                 ctx.core.read_namespaced_config_map, KSERVE_CONFIGMAP, namespace)
        except _Unreadable as err:
            unread.append(str(err))
            continue
        if configmap is not None:
            where = namespace
            break
    default, source = None, f"no {KSERVE_CONFIGMAP} in {' or '.join(namespaces)}"
    if unread:
        source += f" ({'; '.join(unread)})"
    if configmap is not None:
        source = f"{where}/{KSERVE_CONFIGMAP}"
        raw = (configmap.get("data") or {}).get(KSERVE_DEPLOY_KEY)
        if raw is None:     # KServe < 0.16 then uses Serverless, 0.16+ Standard
            default, source = "Knative", f"{source} has no '{KSERVE_DEPLOY_KEY}' key: assumed"
        else:
            try:
                default = _normal_mode(json.loads(raw).get("defaultDeploymentMode") or "")
            except (ValueError, AttributeError):
                default = ""
            if default not in ("Knative", "Standard", "ModelMesh"):
                return _fail(name, f"{source} key '{KSERVE_DEPLOY_KEY}' has no valid "
                                   "defaultDeploymentMode: KServe reconciles no InferenceService "
                                   "with it (NewDeployConfig fails)",
                             f"fix the ConfigMap: kubectl -n {where} edit configmap "
                             f"{KSERVE_CONFIGMAP}, e.g. {KSERVE_DEPLOY_KEY}: "
                             '\'{"defaultDeploymentMode": "RawDeployment"}\'')
    shown = f"cluster default {default or 'unknown'} ({source})"
    effective = _normal_mode(requested)
    if requested not in LEGACY_NAME.values():   # Standard / Knative: KServe >= 0.16 only
        try:
            version, image = _kserve_version(ctx, where) if where else (None, "")
        except _Unreadable as err:
            version, image = None, str(err)
        if version is None:
            return _fail(name, f"serving.deployment_mode={requested} needs KServe >= "
                               f"{_dotted(MIN_KSERVE_NEW_MODES)}, and its version is unknown "
                               f"({image or 'no ' + KSERVE_CONTROLLER + ' found'}); older "
                               f"KServe ignores the name and uses the {shown}", use_old)
        if not _at_least(version, MIN_KSERVE_NEW_MODES):
            effective = default
            if effective != _normal_mode(requested):
                return _fail(name, f"KServe {_dotted(version)} does not know "
                                   f"serving.deployment_mode={requested} (0.16 named it) and uses "
                                   f"the {shown}: {effective or 'unknown'}", use_old)
    if effective not in ("Knative", "Standard"):
        return _fail(name, f"the InferenceService would run in {effective} mode; the platform "
                           "serves in Standard (RawDeployment) or Knative (Serverless)", use_old)
    ctx.kserve_mode = effective
    return _pass(name, f"{effective} (serving.deployment_mode={requested}; {shown})")


def _flag(data: Mapping[str, str], key: str) -> str:
    """``enabled`` | ``allowed`` | ``disabled`` as Knative parses it (features.go ``asFlag``)."""
    raw = str(data.get(key, "")).lower()
    if raw in ("enabled", "allowed", "disabled"):
        return raw
    return "enabled" if key in ENABLED_BY_DEFAULT else "disabled"


def _merge_by_name(base: list[dict], override: list[dict]) -> list[dict]:
    merged = {item.get("name"): dict(item) for item in base}
    for item in override:
        merged[item.get("name")] = {**merged.get(item.get("name"), {}), **item}
    return list(merged.values())


def predictor_pod_spec(isvc: dict, runtime: dict | None) -> tuple[dict, dict]:
    """(pod fields, serving container) of the predictor as KServe builds them: the runtime's
    pod fields under the InferenceService predictor's (utils.go ``MergePodSpec``: a strategic
    merge, so node selectors merge by key, volumes by name, a list like tolerations is
    replaced) and the runtime's first container under the predictor's ``model``
    (``MergeRuntimeContainers``)."""
    predictor = isvc["spec"]["predictor"]
    runtime_spec = (runtime or {}).get("spec") or {}
    pod: dict[str, Any] = {k: runtime_spec[k] for k in RUNTIME_POD_FIELDS if runtime_spec.get(k)}
    for key, value in predictor.items():
        if key in PREDICTOR_NON_POD:
            continue
        if key == "nodeSelector":
            pod[key] = {**pod.get(key, {}), **value}
        elif key in ("volumes", "imagePullSecrets"):
            pod[key] = _merge_by_name(pod.get(key, []), value)
        else:
            pod[key] = value
    base = dict((runtime_spec.get("containers") or [{}])[0])
    model = predictor.get("model") or {}
    container = {**base, **{k: v for k, v in model.items() if k not in MODEL_ONLY}}
    container["securityContext"] = {**(base.get("securityContext") or {}),
                                    **(model.get("securityContext") or {})}
    container["env"] = _merge_by_name(base.get("env") or [], model.get("env") or [])
    return pod, container


def knative_needs(pod: dict, container: dict, secure_pod_defaults: str) -> dict[str, str]:
    """config-features flag -> the field of the predictor's pod spec that needs it."""
    needs: dict[str, str] = {}
    for key, flag in POD_FEATURES.items():
        if pod.get(key) not in (None, "", [], {}):
            needs[flag] = key
    for volume in pod.get("volumes") or []:
        for source, flag in VOLUME_FEATURES.items():
            if source in volume:
                needs[flag] = f"volume {volume.get('name')} ({source})"
    security = {k for k, v in (pod.get("securityContext") or {}).items() if v is not None}
    # secure-pod-defaults lets a pod set seccompProfile alone (fieldmask.go PodSecurityContextMask)
    if security - {"seccompProfile"} or (security and secure_pod_defaults == "disabled"):
        needs[POD_SECURITY_CONTEXT] = f"pod securityContext ({', '.join(sorted(security))})"
    where = f"container {container.get('name') or 'kserve-container'}"
    if ((container.get("securityContext") or {}).get("capabilities") or {}).get("add"):
        needs[ADD_CAPABILITIES] = f"{where} capabilities.add"
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        if "fieldRef" in source or "resourceFieldRef" in source:
            needs[FIELD_REF] = f"{where} env {env.get('name')}"
    return needs


def _predictor(ctx: _Context) -> tuple[dict, dict]:
    """The predictor's pod spec and container for this preset: the InferenceService the deploy
    step renders (its storageUri does not matter here) over the ServingRuntime it names."""
    isvc = render_inference_service(inference_spec(
        ctx.cfg, name="doctor-preflight", namespace=ctx.ns, storage_uri="s3://preflight/model"))
    return predictor_pod_spec(isvc, _serving_runtime(ctx))


def check_knative_features(ctx: _Context) -> CheckResult:
    name, ns = "knative-features", ctx.s.knative_namespace
    if ctx.kserve_mode is None:
        return _skip(name, "KServe's deployment mode is unknown (see kserve-mode)")
    if ctx.kserve_mode != "Knative":
        return _skip(name, f"{ctx.kserve_mode} mode does not use Knative")
    use_raw = ("or deploy in Standard mode: serving.deployment_mode=RawDeployment in the run's "
               "cluster_overrides")
    features = ctx.read(f"ConfigMap {KNATIVE_FEATURES} in {ns}", f"get configmaps -n {ns}",
                        ctx.core.read_namespaced_config_map, KNATIVE_FEATURES, ns)
    if features is None:
        return _fail(name, f"no ConfigMap {KNATIVE_FEATURES} in {ns}: Knative Serving is not "
                           "installed there, and KServe's Knative mode needs it",
                     f"install Knative Serving (or pass --knative-namespace), {use_raw}")
    data = features.get("data") or {}
    pod, container = _predictor(ctx)
    needs = knative_needs(pod, container, _flag(data, SECURE_POD_DEFAULTS))
    missing = {flag: why for flag, why in needs.items()
               if _flag(data, flag) == "disabled" or
               (flag == ADD_CAPABILITIES and _flag(data, flag) != "enabled")}
    labels = (features.get("metadata") or {}).get("labels") or {}
    version_text = labels.get("app.kubernetes.io/version") or \
        labels.get("serving.knative.dev/release") or ""
    version = _release(version_text)
    privileged = (container.get("securityContext") or {}).get("privileged") is False
    problems = [f"{flag} is disabled ({why})" for flag, why in sorted(missing.items())]
    if privileged and version and not _at_least(version, MIN_KNATIVE_PRIVILEGED):
        problems.append(f"Knative {_dotted(version)} rejects securityContext.privileged "
                        f"(container {container.get('name') or 'kserve-container'}); "
                        f"{_dotted(MIN_KNATIVE_PRIVILEGED)}+ accepts privileged: false")
    if problems:
        fixes = []
        if missing:
            patch = json.dumps({"data": {flag: "enabled" for flag in sorted(missing)}})
            fixes.append(f"kubectl -n {ns} patch configmap {KNATIVE_FEATURES} --type merge "
                         f"-p '{patch}'")
        if len(problems) > len(missing):
            fixes.append(f"upgrade Knative Serving to {_dotted(MIN_KNATIVE_PRIVILEGED)} or later")
        return _fail(name, "Knative would reject the predictor's pod spec: " + "; ".join(problems),
                     "; ".join(fixes) + f"; {use_raw}")
    shown = ", ".join(sorted(needs)) or "no optional features"
    seen = f"Knative {version_text}" if version_text else "Knative (version label absent)"
    return _pass(name, f"{seen}: the predictor's pod spec needs {shown}, all enabled")


# -- the chart's objects ----------------------------------------------------------------------


def _chart_fix(ctx: _Context, what: str) -> str:
    return (f"install the chart into {ctx.ns} (helm install diffucoder charts/diffucoder -n "
            f"{ctx.ns}), or `helm upgrade` it with {what}; or pass --namespace where it is")


def check_store_secret(ctx: _Context) -> CheckResult:
    name = "store-secret"
    secret_name = ctx.s.store_secret or ctx.cfg.training.s3_secret
    secret = ctx.read(f"Secret {secret_name} in {ctx.ns}", f"get secrets -n {ctx.ns}",
                      ctx.core.read_namespaced_secret, secret_name, ctx.ns)
    if secret is None:
        return _fail(name, f"no Secret {secret_name} in {ctx.ns}: every step and job reads the "
                           "store's endpoint and keys from it",
                     _chart_fix(ctx, "s3.existingSecret unset") + " (kustomize install: "
                     "manifests/create-secret.sh); or pass --store-secret with the Secret's name "
                     "(and the run's store_secret)")
    data = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            data[key] = ""
    ctx.secret_data = data
    missing = [key for key in S3_SECRET_KEYS if not data.get(key)]
    if missing:
        return _fail(name, f"Secret {ctx.ns}/{secret_name} lacks {', '.join(missing)}: pods that "
                           "reference them never start",
                     f"add the keys (see charts/diffucoder/values.yaml, s3:): kubectl -n {ctx.ns} "
                     f"patch secret {secret_name} --type merge -p "
                     "'{\"stringData\": {\"" + missing[0] + "\": \"...\"}}'")
    return _pass(name, f"Secret {ctx.ns}/{secret_name} has {', '.join(S3_SECRET_KEYS)} "
                       f"(endpoint {data['DIFFUCODER_S3_ENDPOINT']})")


def check_service_account(account: str, role: str,
                          values: str) -> Callable[[_Context], CheckResult]:
    def check(ctx: _Context) -> CheckResult:
        name = f"service-account/{account}"
        found = ctx.read(f"ServiceAccount {account} in {ctx.ns}", f"get serviceaccounts -n {ctx.ns}",
                         ctx.core.read_namespaced_service_account, account, ctx.ns)
        if found is None:
            return _fail(name, f"no ServiceAccount {account} in {ctx.ns} ({role})",
                         _chart_fix(ctx, values))
        return _pass(name, f"ServiceAccount {ctx.ns}/{account} ({role})")
    return check


def check_training_runtime(ctx: _Context) -> CheckResult:
    name, runtime = "training-runtime", ctx.cfg.training.runtime
    if ctx.cfg.training.kind != "trainjob":
        return _skip(name, f"training.kind is {ctx.cfg.training.kind}")
    found = ctx.read(f"TrainingRuntime {runtime} in {ctx.ns}",
                     f"get trainingruntimes.{TRAINER_GROUP} -n {ctx.ns}",
                     ctx.custom.get_namespaced_custom_object, TRAINER_GROUP,
                     JOB_KINDS["TrainJob"].version, ctx.ns, "trainingruntimes", runtime)
    if found is None:
        return _fail(name, f"no TrainingRuntime {runtime} in {ctx.ns}: TrainJobs reference it",
                     _chart_fix(ctx, "trainer.enabled=true"))
    return _pass(name, f"TrainingRuntime {ctx.ns}/{runtime}")


def _serving_runtime(ctx: _Context) -> dict | None:
    """The namespace's ServingRuntime of cluster.yaml's name, else the cluster-wide one (read
    once: three checks look at it)."""
    if "runtime" not in ctx.cache:
        runtime = ctx.cfg.serving.runtime
        found = ctx.read(f"ServingRuntime {runtime} in {ctx.ns}",
                         f"get servingruntimes -n {ctx.ns}", ctx.custom.get_namespaced_custom_object,
                         RUNTIME_GROUP, RUNTIME_VERSION, ctx.ns, "servingruntimes", runtime)
        if found is None:
            found = ctx.read(f"ClusterServingRuntime {runtime}", "get clusterservingruntimes",
                             ctx.custom.get_cluster_custom_object, RUNTIME_GROUP, RUNTIME_VERSION,
                             "clusterservingruntimes", runtime)
        ctx.cache["runtime"] = found
    return ctx.cache["runtime"]


def check_serving_runtime(ctx: _Context) -> CheckResult:
    name, runtime = "serving-runtime", ctx.cfg.serving.runtime
    found = _serving_runtime(ctx)
    if found is None:
        return _fail(name, f"no ServingRuntime {runtime} in {ctx.ns} nor a ClusterServingRuntime "
                           "of that name: the InferenceService names it",
                     _chart_fix(ctx, "kserve.enabled=true") + " (without the chart: diffucoder kube "
                     f"render-runtime --namespace {ctx.ns} | kubectl apply -f -)")
    where = found.get("metadata", {}).get("namespace") or "cluster-wide"
    return _pass(name, f"{found.get('kind', 'ServingRuntime')} {runtime} ({where})")


# -- nodes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodNeed:
    """One pod's placement and size, and how many such pods must fit on distinct nodes."""

    what: str                      # "pretrain", "serving"
    count: int
    gpus: int
    cpu: str
    memory: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]

    def describe(self) -> str:
        where = ",".join(f"{k}={v}" for k, v in self.node_selector.items()) or "any node"
        gpus = f"{self.gpus} {GPU_RESOURCE}, " if self.gpus else ""
        return f"{self.what} needs {self.count} x ({gpus}{self.cpu} CPU, {self.memory}) on {where}"


def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' matching of one toleration against one taint."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and \
        toleration.get("value", "") == taint.get("value", "")


def why_not(node: dict, need: PodNeed) -> str:
    """'' when one pod of ``need`` fits on ``node``, else the first reason it does not."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    spec, status = node.get("spec") or {}, node.get("status") or {}
    if any(labels.get(k) != v for k, v in need.node_selector.items()):
        return "labels"
    if spec.get("unschedulable"):
        return "cordoned"
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and \
                not any(tolerates(t, taint) for t in need.tolerations):
            return f"taint {taint.get('key')}:{taint.get('effect')}"
    allocatable = status.get("allocatable") or {}
    for resource, wanted in ((GPU_RESOURCE, need.gpus), ("cpu", need.cpu),
                             ("memory", need.memory)):
        if wanted and parse_quantity(allocatable.get(resource, "0")) < parse_quantity(wanted):
            return f"{resource} {allocatable.get(resource, '0')}"
    return ""


def _nodes(ctx: _Context) -> list[dict]:
    nodes = ctx.read("Nodes", "list nodes", ctx.core.list_node)
    return list((nodes or {}).get("items") or [])


def _check_nodes(ctx: _Context, name: str, needs: list[PodNeed], resize: str) -> CheckResult:
    nodes = _nodes(ctx)
    short, lines = [], []
    for need in needs:
        verdicts = [why_not(node, need) for node in nodes]
        fit = verdicts.count("")
        reasons = sorted({v for v in verdicts if v and v != "labels"})
        line = f"{need.describe()}: {fit} fit"
        if reasons:
            line += f" (others: {', '.join(reasons)})"
        lines.append(line)
        if fit < need.count:
            short.append(need)
    if short:
        labels = ",".join(f"{k}={v}" for k, v in short[0].node_selector.items())
        return _fail(name, "; ".join(lines),
                     f"add nodes{' labelled ' + labels if labels else ''} with allocatable "
                     f"{GPU_RESOURCE} (the NVIDIA GPU operator labels and advertises them), CPU "
                     f"and memory as above, untainted or tolerated (a cluster with the "
                     f"ExtendedResourceToleration admission plugin, e.g. GKE: "
                     f"--extended-resource-toleration); or size down "
                     f"{', '.join(n.what for n in short)}: {resize}")
    return _pass(name, "; ".join(lines))


def _tolerations(ctx: _Context, tolerations: list[dict], gpus: int) -> list[dict]:
    """The pod's tolerations, plus what the ExtendedResourceToleration admission plugin adds to
    a pod requesting GPUs when the cluster runs it (GKE does; it is not visible in the API)."""
    out = [dict(t) for t in tolerations]
    if gpus and ctx.s.extended_resource_toleration:
        out.append({"key": GPU_RESOURCE, "operator": "Exists"})
    return out


def check_training_nodes(ctx: _Context) -> CheckResult:
    t = ctx.cfg.training
    stages = t.stages or {"any stage": t.shape("")}
    needs = [PodNeed(stage, shape.nodes, shape.gpus_per_node, shape.cpu, shape.memory,
                     dict(t.node_selector), _tolerations(ctx, t.tolerations, shape.gpus_per_node))
             for stage, shape in stages.items()]
    return _check_nodes(ctx, "training-nodes", needs,
                        "training.stages.<stage>.nodes / gpus_per_node / cpu / memory in the "
                        "run's cluster_overrides (here: --set ...)")


def check_serving_nodes(ctx: _Context) -> CheckResult:
    """One replica: cluster.yaml's size, placed as KServe merges the predictor and the runtime."""
    s = ctx.cfg.serving
    pod, _ = _predictor(ctx)
    need = PodNeed("serving", 1, s.gpus, s.cpu, s.memory, dict(pod.get("nodeSelector") or {}),
                   _tolerations(ctx, pod.get("tolerations") or [], s.gpus))
    return _check_nodes(ctx, "serving-nodes", [need],
                        "serving.gpus / cpu / memory / node_selector / tolerations in the deploy "
                        "step's cluster_overrides, or the chart's kserve.runtime placement")


# -- the store --------------------------------------------------------------------------------

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "DIFFUCODER_S3_SECRET_DIR")
ENDPOINT_VARS = ("DIFFUCODER_S3_ENDPOINT", "DIFFUCODER_S3_SECURE", "DIFFUCODER_S3_REGION",
                 "AWS_REGION")


def store_env(env: Mapping[str, str], secret: Mapping[str, str],
              endpoint: str = "") -> tuple[dict[str, str], str, str]:
    """(settings for ``S3Options``/``S3Credentials.from_env``, where the endpoint came from,
    where the keys came from). The environment wins as a whole over the Secret, separately for
    the endpoint and for the keys, as ``diffucoder store`` reads them; ``endpoint`` replaces
    the endpoint (keeping its TLS / region settings)."""
    keys_from_env = any(env.get(var) for var in CREDENTIAL_VARS)
    endpoint_from_env = bool(env.get("DIFFUCODER_S3_ENDPOINT"))
    keys, place = (env, "the environment") if keys_from_env else (secret, "the Secret")
    settings, origin = (env, "the environment") if endpoint_from_env else (secret, "the Secret")
    out = {var: keys[var] for var in CREDENTIAL_VARS if keys.get(var)}
    out.update({var: settings[var] for var in ENDPOINT_VARS if settings.get(var)})
    if endpoint:
        out["DIFFUCODER_S3_ENDPOINT"], origin = endpoint, "--store-endpoint"
    return out, origin, place


def check_store(ctx: _Context) -> CheckResult:
    name, root = "store", ctx.s.store_root
    if not root.startswith("s3://"):
        return _fail(name, f"store root {root!r} is not s3://: pods, TrainJobs and KServe's "
                           "storage initializer reach the store over S3",
                     "pass the run's store_root with --store-root s3://<bucket>[/prefix]")
    env = os.environ if ctx.s.env is None else ctx.s.env
    settings, origin, place = store_env(env, ctx.secret_data, ctx.s.store_endpoint)
    try:
        # One attempt, short timeouts: a preflight reports, it does not wait out an outage.
        options = S3Options.from_env(settings, attempts=1, connect_timeout=ctx.s.timeout_s,
                                     read_timeout=ctx.s.timeout_s)
        store = open_store(root, s3=options, credentials=S3Credentials.from_env(settings))
    except StoreError as err:
        return _fail(name, f"cannot configure the store: {err}",
                     "set DIFFUCODER_S3_ENDPOINT and the keys (see `diffucoder store`), or let "
                     "doctor read them from the store Secret (see store-secret)")
    backend = store.backend
    where = f"{backend.uri()} at {backend.endpoint} (endpoint from {origin}, keys from {place})"
    try:
        backend.scan_dir("")   # one LIST at the root: the bucket exists and the keys work
    except (StoreError, urllib3.exceptions.HTTPError, OSError) as err:   # TLS errors come raw
        status, code = s3_status(err.__cause__ or err)
        bucket = root[len("s3://"):].split("/", 1)[0]
        if code == "NoSuchBucket":
            return _fail(name, f"bucket {bucket!r} does not exist: {where}",
                         f"create it (the chart's MinIO creates minio.buckets on install; else "
                         f"`mc mb <alias>/{bucket}`), or pass the run's store_root with --store-root")
        if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId",
                                            "SignatureDoesNotMatch"):
            return _fail(name, f"the store refuses the keys: {where}: {err}",
                         "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (in the Secret or the "
                         "environment) and the bucket's policy")
        forward = (f"port-forward it (e.g. kubectl -n {ctx.ns} port-forward svc/diffucoder-minio "
                   "9000:9000) and pass --store-endpoint http://127.0.0.1:9000")
        if origin == "the Secret":
            fix = f"the Secret's endpoint is what pods use inside the cluster; from outside, {forward}"
        else:
            fix = (f"check the endpoint from {origin}; for the chart's in-cluster MinIO, {forward}")
        return _fail(name, f"the store does not answer: {where}: {err}", fix)
    return _pass(name, f"bucket present and readable: {where}")


# -- running them -----------------------------------------------------------------------------


def plan(ctx: _Context) -> list[tuple[str, Callable[[_Context], CheckResult], bool]]:
    """(name, check, needs the Kubernetes API) in the order they run and print."""
    cfg = ctx.cfg
    accounts = [(ctx.s.runner_service_account, "runs the pipeline's steps", "its defaults"),
                (cfg.training.service_account, "training job pods", "its defaults"),
                (cfg.serving.service_account, "KServe's storage initializer and predictor",
                 "kserve.enabled=true")]
    return [
        ("api-server", check_api_server, False),
        ("trainjob-crd", check_trainjob_crd, True),
        ("pytorchjob-crd", check_pytorchjob_crd, True),
        ("kserve-crds", check_kserve_crds, True),
        ("kfp-version", check_kfp_version, False),
        ("kserve-mode", check_kserve_mode, True),
        ("knative-features", check_knative_features, True),
        ("store-secret", check_store_secret, True),
        *[(f"service-account/{account}", check_service_account(account, role, values), True)
          for account, role, values in accounts],
        ("training-runtime", check_training_runtime, True),
        ("serving-runtime", check_serving_runtime, True),
        ("training-nodes", check_training_nodes, True),
        ("serving-nodes", check_serving_nodes, True),
        ("store", check_store, False),
    ]


def run_checks(api, settings: DoctorSettings) -> list[CheckResult]:
    """Every check against the cluster behind ``api`` (a kubernetes ``ApiClient``)."""
    if not settings.namespace:
        raise DiffucoderError("namespace: give the namespace the chart is installed in")
    cfg = load_cluster_config(settings.preset, list(settings.cluster_overrides))
    ctx = _Context(api, settings, cfg)
    results = []
    for name, check, needs_api in plan(ctx):
        if needs_api and not ctx.api_up:
            results.append(_skip(name, "the Kubernetes API does not answer (see api-server)"))
            continue
        try:
            results.append(check(ctx))
        except _Unreadable as err:
            results.append(_fail(name, str(err), err.fix))
    return results


def healthy(results: list[CheckResult]) -> bool:
    return all(r.status != FAIL for r in results)
