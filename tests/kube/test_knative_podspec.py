"""Both KServe deployment modes for every preset: the InferenceService and its ServingRuntime
validate against the KServe CRDs, and in the Knative modes the pod KServe builds from them
passes Knative Serving's field mask with no feature flag turned on.

The allow-list below is data transcribed from knative/serving (read at commit 98e5ef90):
``pkg/apis/serving/fieldmask.go`` (which fields of PodSpec, Container, SecurityContext, Probe,
... are copied, and which only behind a feature flag), ``pkg/apis/config/features.go`` (the
flags' names and defaults: only ``kubernetes.podspec-volumes-emptydir`` is on by default) and
``pkg/apis/serving/k8s_validation.go`` (port names, reserved ports and paths, probe rules).
Fields that entered the mask after the oldest Knative we support are treated as forbidden:
``startupProbe`` (Knative 1.15, the version KServe 0.15 installs) is allowed,
``securityContext.privileged`` (only ``false``, Knative 1.17) is not.

KServe's merge of the two objects follows kserve ``pkg/controller/v1beta1/inferenceservice/
utils/utils.go`` (``MergePodSpec``: the runtime's nodeSelector, affinity, tolerations,
volumes, imagePullSecrets, schedulerName, resourceClaims under the predictor's pod fields;
``MergeRuntimeContainers``: the runtime container under the predictor's ``model``, args
concatenated) and ``ReplacePlaceholders`` (``{{.Name}}`` -> the InferenceService's name).
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
from kubernetes.client import V1Container, V1PodSpec

from diffucoder.config import ConfigError, load_config
from diffucoder.errors import DiffucoderError
from diffucoder.kube.config import inference_spec, load_cluster_config, serving_runtime_spec
from diffucoder.kube.inference import (IMAGE_CONFIGS, ISVC_NAME_PLACEHOLDER, InferenceSpec,
                                       render_inference_service, render_serving_runtime)
from diffucoder.serving import ServeConfig
from diffucoder.serving.cli import add_arguments
from kube_emulator import validation_errors
from platform_support import gpu_values, render
from test_chart_values import schema_error   # tests/platform: helm's schema check, as install runs it

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted(p.parent.name for p in (ROOT / "configs").glob("*/cluster.yaml"))
RAW_MODES, KNATIVE_MODES = ("RawDeployment", "Standard"), ("Serverless", "Knative")
STORAGE = "s3://diffucoder/runs/r1/rl/.versions/v1"
ISVC_NAME = "coder-r1"
IMAGE = "ghcr.io/diffucoder-platform/diffucoder-serve:0.1.0"

# -- Knative's field mask, as data ----------------------------------------------------------
OK = "allowed"
FALSE_ONLY = "false-only"        # PodSpecMask / SecurityContextMask: only an explicit false passes
LATER = "later-than-supported"   # in the mask only after the oldest Knative supported
DEFAULT_FLAGS = frozenset({"kubernetes.podspec-volumes-emptydir"})   # features.go: Enabled by default

POD_SPEC = {  # PodSpecMask
    "serviceAccountName": OK, "containers": OK, "volumes": OK, "imagePullSecrets": OK, "enableServiceLinks": OK,
    "automountServiceAccountToken": FALSE_ONLY,
    "affinity": "kubernetes.podspec-affinity", "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases", "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname", "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname", "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers", "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig", "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid", "hostNetwork": "kubernetes.podspec-hostnetwork",
}
CONTAINER = {name: OK for name in (  # ContainerMask
    "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy", "livenessProbe",
    "ports", "readinessProbe", "resources", "securityContext", "startupProbe", "terminationMessagePath",
    "terminationMessagePolicy", "volumeMounts")}
SECURITY_CONTEXT = {name: OK for name in (  # SecurityContextMask
    "capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
    "allowPrivilegeEscalation", "seccompProfile")} | {"privileged": LATER}
CAPABILITIES = {"drop": OK, "add": "kubernetes.containerspec-addcapabilities"}
PROBE = {name: OK for name in ("httpGet", "exec", "tcpSocket", "grpc", "initialDelaySeconds", "timeoutSeconds",
                               "periodSeconds", "successThreshold", "failureThreshold",
                               "terminationGracePeriodSeconds")}
HTTP_GET = {name: OK for name in ("host", "path", "scheme", "httpHeaders", "port")}
PORT = {name: OK for name in ("containerPort", "name", "protocol")}
ENV = {name: OK for name in ("name", "value", "valueFrom")}
ENV_SOURCE = {"configMapKeyRef": OK, "secretKeyRef": OK, "fieldRef": "kubernetes.podspec-fieldref",
              "resourceFieldRef": "kubernetes.podspec-fieldref"}
RESOURCES = {"limits": OK, "requests": OK}
VOLUME = {"name": OK, "secret": OK, "configMap": OK, "projected": OK,
          "emptyDir": "kubernetes.podspec-volumes-emptydir",
          "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
          "hostPath": "kubernetes.podspec-volumes-hostpath", "csi": "kubernetes.podspec-volumes-csi",
          "ephemeral": "kubernetes.podspec-volumes-ephemeral", "image": "kubernetes.podspec-volumes-image"}
VOLUME_MOUNT = {"name": OK, "readOnly": OK, "mountPath": OK, "subPath": OK,
                "mountPropagation": "kubernetes.podspec-volumes-mount-propagation"}
# k8s_validation.go
PORT_NAMES = {"", "h2c", "http1"}
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
RESERVED_PATHS = {"/", "/dev", "/dev/log"}
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}


def _fields(obj: dict, mask: dict, where: str, flags: frozenset) -> list[str]:
    problems = []
    for key, value in obj.items():
        rule = mask.get(key)
        if rule is None:
            problems.append(f"{where}.{key}: not in Knative's field mask")
        elif rule == FALSE_ONLY and value is not False:
            problems.append(f"{where}.{key}: only false is accepted")
        elif rule == LATER:
            problems.append(f"{where}.{key}: refused by the Knative releases KServe 0.15/0.16 install")
        elif rule not in (OK, FALSE_ONLY) and rule not in flags:
            problems.append(f"{where}.{key}: needs the feature flag {rule}")
    return problems


def _probe(probe: dict, where: str, port: dict, readiness: bool, flags) -> list[str]:
    problems = _fields(probe, PROBE, where, flags)
    if "httpGet" in probe:
        problems += _fields(probe["httpGet"], HTTP_GET, f"{where}.httpGet", flags)
        target = probe["httpGet"].get("port")
        if isinstance(target, str) and target != port.get("name"):
            problems.append(f"{where}.httpGet.port: must match the container port")
    if readiness and probe.get("periodSeconds", 0) > 0:
        for key in ("timeoutSeconds", "failureThreshold", "successThreshold"):
            if probe.get(key, 0) < 1:  # validateReadinessProbe: the webhook sees no k8s defaults
                problems.append(f"{where}.{key}: must be >= 1 when periodSeconds > 0")
    return problems


def knative_problems(pod: dict, flags: frozenset = DEFAULT_FLAGS) -> list[str]:
    """Every field or value of ``pod`` that Knative's webhook refuses with only ``flags`` on."""
    problems = _fields(pod, POD_SPEC, "spec", flags)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for i, volume in enumerate(pod.get("volumes", [])):
        problems += _fields(volume, VOLUME, f"spec.volumes[{i}]", flags)
    if len(pod.get("containers", [])) != 1:
        problems.append("spec.containers: KServe's predictor has exactly one serving container")
    for c, container in enumerate(pod.get("containers", [])):
        at = f"spec.containers[{c}]"
        problems += _fields(container, CONTAINER, at, flags)
        if container.get("name") == "queue-proxy":
            problems.append(f"{at}.name: reserved")
        ports = container.get("ports") or [{}]
        problems += _fields(ports[0], PORT, f"{at}.ports[0]", flags)
        if ports[0].get("name", "") not in PORT_NAMES or ports[0].get("containerPort") in RESERVED_PORTS:
            problems.append(f"{at}.ports[0]: name must be '', h2c or http1 and the port not reserved")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in container:
                problems += _probe(container[kind], f"{at}.{kind}", ports[0], kind == "readinessProbe", flags)
        context = container.get("securityContext") or {}
        problems += _fields(context, SECURITY_CONTEXT, f"{at}.securityContext", flags)
        problems += _fields(context.get("capabilities") or {}, CAPABILITIES, f"{at}.securityContext.capabilities",
                            flags)
        problems += _fields(container.get("resources") or {}, RESOURCES, f"{at}.resources", flags)
        for e, env in enumerate(container.get("env") or []):
            problems += _fields(env, ENV, f"{at}.env[{e}]", flags)
            problems += _fields(env.get("valueFrom") or {}, ENV_SOURCE, f"{at}.env[{e}].valueFrom", flags)
            if env.get("name") in RESERVED_ENV:
                problems.append(f"{at}.env[{e}].name: reserved by Knative")
        for m, mount in enumerate(container.get("volumeMounts") or []):
            problems += _fields(mount, VOLUME_MOUNT, f"{at}.volumeMounts[{m}]", flags)
            if mount.get("mountPath") in RESERVED_PATHS or mount.get("name") not in volumes:
                problems.append(f"{at}.volumeMounts[{m}]: reserved path or no such volume")
    return problems


# -- what KServe makes of an InferenceService and its runtime -------------------------------
POD_FIELDS = set(V1PodSpec.attribute_map.values())
CONTAINER_FIELDS = set(V1Container.attribute_map.values())
RUNTIME_POD_FIELDS = ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets", "schedulerName",
                      "resourceClaims")


def _by_name(base: list, over: list) -> list:
    merged = {item["name"]: item for item in base}
    merged.update({item["name"]: item for item in over})
    return list(merged.values())


def kserve_pod(isvc: dict, runtime: dict) -> dict:
    """The predictor's PodSpec as KServe puts it into the Deployment / Knative Service."""
    predictor, runtime_spec = isvc["spec"]["predictor"], runtime["spec"]
    pod = {k: copy.deepcopy(runtime_spec[k]) for k in RUNTIME_POD_FIELDS if k in runtime_spec}
    for key, value in predictor.items():
        if key not in POD_FIELDS or key == "containers":
            continue
        if key == "nodeSelector":
            pod[key] = {**pod.get(key, {}), **value}
        elif key in ("volumes", "imagePullSecrets"):
            pod[key] = _by_name(pod.get(key, []), value)
        else:
            pod[key] = copy.deepcopy(value)
    container = copy.deepcopy(runtime_spec["containers"][0])
    for key, value in predictor["model"].items():
        if key not in CONTAINER_FIELDS:
            continue                                  # modelFormat, runtime, storageUri: KServe's own
        if key == "args":
            container["args"] = container.get("args", []) + value
        elif key == "env":
            container["env"] = _by_name(container.get("env", []), value)
        elif isinstance(value, dict):
            container[key] = {**container.get(key, {}), **value}
        else:
            container[key] = value
    text = json.dumps(container).replace(ISVC_NAME_PLACEHOLDER, isvc["metadata"]["name"])  # ReplacePlaceholders
    pod["containers"] = [json.loads(text)]
    return pod


def preset_objects(preset: str, mode: str, *sets: str) -> tuple[dict, dict]:
    cfg = load_cluster_config(preset, [f"serving.deployment_mode={mode}", *sets])
    isvc = render_inference_service(inference_spec(cfg, name=ISVC_NAME, namespace="ml-team", storage_uri=STORAGE))
    runtime = render_serving_runtime(serving_runtime_spec(cfg, preset, namespace="ml-team", image=IMAGE))
    return isvc, runtime


def chart_runtime(preset: str, mode: str, **kserve) -> dict:
    values = gpu_values() if preset == "7b-gpu" else {}
    values.setdefault("kserve", {}).update({"deploymentMode": mode, **kserve})
    if kserve.get("runtime"):
        values["kserve"]["runtime"] = {**(gpu_values()["kserve"]["runtime"] if preset == "7b-gpu" else {}),
                                       **kserve["runtime"]}
    return render(values).find("ServingRuntime", "diffucoder-runtime")


def served_config(runtime_container: dict) -> tuple[argparse.Namespace, ServeConfig]:
    """The runtime's args as ``diffucoder serve`` parses them, and the serve config they load
    (the image's configs/ is this checkout's)."""
    args = runtime_container["args"]
    assert args[:2] == ["diffucoder", "serve"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = parser.parse_args(args[2:])
    assert parsed.config.startswith(IMAGE_CONFIGS + "/")
    local = ROOT / "configs" / parsed.config[len(IMAGE_CONFIGS) + 1:]
    return parsed, load_config(ServeConfig, local, parsed.overrides)


# -- the tests ------------------------------------------------------------------------------
def test_the_allow_list_is_the_upstream_mask_and_catches_what_knative_refuses():
    """Guards the checker itself: a pod with the fields the issue names is refused, each with
    the flag that would allow it, and the same pod passes once those flags are on."""
    pod = {"serviceAccountName": "sa", "nodeSelector": {"a": "b"}, "tolerations": [{"key": "k"}],
           "securityContext": {"runAsNonRoot": True},
           "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": False},
                           "ports": [{"name": "http1", "containerPort": 8080}]}]}
    problems = knative_problems(pod)
    for needed in ("spec.nodeSelector: needs the feature flag kubernetes.podspec-nodeselector",
                   "spec.tolerations: needs the feature flag kubernetes.podspec-tolerations",
                   "spec.securityContext: needs the feature flag kubernetes.podspec-securitycontext",
                   "spec.containers[0].securityContext.privileged: refused"):
        assert any(p.startswith(needed) for p in problems), (needed, problems)
    flags = DEFAULT_FLAGS | {"kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations",
                             "kubernetes.podspec-securitycontext"}
    del pod["containers"][0]["securityContext"]["privileged"]
    assert knative_problems(pod, flags) == []
    assert set(PRESETS) == {"tiny-cpu", "7b-gpu"}


@pytest.mark.parametrize("mode", RAW_MODES + KNATIVE_MODES)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates_in_every_mode(preset, mode):
    isvc, runtime = preset_objects(preset, mode)
    assert validation_errors(isvc) == [] and validation_errors(runtime) == []
    notes = isvc["metadata"]["annotations"]
    assert notes["serving.kserve.io/deploymentMode"] == mode        # written as configured
    pod = kserve_pod(isvc, runtime)
    if mode in KNATIVE_MODES:
        assert knative_problems(pod) == []                          # no feature flag needed
        timeout = load_cluster_config(preset).serving.timeout_s
        assert notes["serving.knative.dev/progress-deadline"] == f"{timeout}s"
        assert "securityContext" not in isvc["spec"]["predictor"]
    else:
        assert "serving.knative.dev/progress-deadline" not in notes
        assert isvc["spec"]["predictor"]["securityContext"]["fsGroup"] == 10001
    # either way the serving container runs locked down
    context = pod["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] and context["runAsUser"] == 10001 and context["readOnlyRootFilesystem"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"} and context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False and "privileged" not in context


@pytest.mark.parametrize("mode", RAW_MODES + KNATIVE_MODES)
@pytest.mark.parametrize("preset", PRESETS)
def test_the_charts_runtime_with_the_presets_service(preset, mode):
    cfg = load_cluster_config(preset, [f"serving.deployment_mode={mode}"])
    isvc = render_inference_service(inference_spec(cfg, name=ISVC_NAME, namespace="ml-team", storage_uri=STORAGE))
    if preset == "7b-gpu" and mode in KNATIVE_MODES:   # values-gpu.yaml places the runtime for RawDeployment
        runtime = chart_runtime(preset, mode, runtime={"nodeSelector": {}, "tolerations": []})
    else:
        runtime = chart_runtime(preset, mode)
    assert validation_errors(runtime) == []
    pod = kserve_pod(isvc, runtime)
    if mode in KNATIVE_MODES:
        assert knative_problems(pod) == []
    parsed, served = served_config(pod["containers"][0])
    assert served.model_name == "diffucoder" and parsed.model_name == ISVC_NAME
    assert (served.device, served.dtype) == (("cuda", "bfloat16") if preset == "7b-gpu" else ("cpu", "float32"))
    gpus = pod["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)
    assert (gpus >= 1) == served.device.startswith("cuda")


def test_the_7b_runtime_passes_the_gpu_serve_config_and_the_model_name():
    """Done-when: the runtime (rendered, and the chart's with values-gpu.yaml) runs the 7b-gpu
    serve config, cuda + bf16, under the InferenceService's name; probes fit a 7B load."""
    cfg = load_cluster_config("7b-gpu")
    isvc = render_inference_service(inference_spec(cfg, name=ISVC_NAME, namespace="ml-team", storage_uri=STORAGE))
    rendered = render_serving_runtime(serving_runtime_spec(cfg, "7b-gpu", namespace="ml-team", image=IMAGE))
    chart = render(gpu_values()).find("ServingRuntime", "diffucoder-runtime")
    for runtime in (rendered, chart):
        container = kserve_pod(isvc, runtime)["containers"][0]
        parsed, served = served_config(container)
        assert parsed.config == f"{IMAGE_CONFIGS}/7b-gpu/serve.yaml" and parsed.model == "/mnt/models"
        assert parsed.model_name == ISVC_NAME and parsed.port == 8080
        assert (served.device, served.dtype) == ("cuda", "bfloat16")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        startup, ready, live = (container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe"))
        assert startup["httpGet"]["path"] == ready["httpGet"]["path"] == "/v2/health/ready"
        assert live["httpGet"]["path"] == "/v2/health/live" and "initialDelaySeconds" not in live
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget == cfg.serving.startup_timeout_s == 1800 <= cfg.serving.timeout_s
    # the image really has the configs where the runtime looks
    dockerfile = (ROOT / "images" / "serve" / "Dockerfile").read_text()
    assert f"DIFFUCODER_CONFIGS={IMAGE_CONFIGS}" in dockerfile and f"COPY configs {IMAGE_CONFIGS}" in dockerfile
    tiny = render_serving_runtime(serving_runtime_spec(load_cluster_config("tiny-cpu"), "tiny-cpu",
                                                       namespace="ml-team", image=IMAGE))
    chart_tiny = render({}).find("ServingRuntime", "diffucoder-runtime")
    for runtime in (tiny, chart_tiny):
        startup = runtime["spec"]["containers"][0]["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] == \
            load_cluster_config("tiny-cpu").serving.startup_timeout_s


def test_node_selector_in_knative_mode_fails_closed():
    """A preset asking for placement in a Knative mode is an error naming the exact flag (never
    a silently dropped field); with the flag declared it renders, and the checker agrees."""
    placement = 'serving.node_selector={"nvidia.com/gpu.present": "true"}'
    for mode in KNATIVE_MODES:
        with pytest.raises(DiffucoderError, match=r"node_selector needs the feature flag "
                                                  r"'kubernetes.podspec-nodeselector'.*deployment_mode RawDeployment"):
            preset_objects("7b-gpu", mode, placement)
        with pytest.raises(DiffucoderError, match=r"tolerations needs the feature flag 'kubernetes.podspec-tolerations'"):
            preset_objects("7b-gpu", mode, 'serving.tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]')
    isvc, runtime = preset_objects("7b-gpu", "RawDeployment", placement)   # fine in RawDeployment
    assert isvc["spec"]["predictor"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    isvc, runtime = preset_objects("7b-gpu", "Serverless", placement,
                                   "serving.knative_features=[kubernetes.podspec-nodeselector]")
    pod = kserve_pod(isvc, runtime)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and validation_errors(isvc) == []
    assert knative_problems(pod, DEFAULT_FLAGS | {"kubernetes.podspec-nodeselector"}) == []
    assert knative_problems(pod) == ["spec.nodeSelector: needs the feature flag kubernetes.podspec-nodeselector"]
    # and a nodeSelector slipped into a rendered Knative object is caught
    isvc, runtime = preset_objects("tiny-cpu", "Serverless")
    isvc["spec"]["predictor"]["nodeSelector"] = {"pool": "gpu"}
    assert validation_errors(isvc) == []          # the CRD allows it: only Knative refuses it
    assert knative_problems(kserve_pod(isvc, runtime)) == \
        ["spec.nodeSelector: needs the feature flag kubernetes.podspec-nodeselector"]


def test_pod_security_context_is_kept_when_knative_allows_it():
    isvc, runtime = preset_objects("tiny-cpu", "Serverless", "serving.knative_features=[kubernetes.podspec-securitycontext]")
    assert isvc["spec"]["predictor"]["securityContext"]["runAsNonRoot"] is True
    pod = kserve_pod(isvc, runtime)
    assert knative_problems(pod, DEFAULT_FLAGS | {"kubernetes.podspec-securitycontext"}) == []
    assert knative_problems(pod) == ["spec.securityContext: needs the feature flag kubernetes.podspec-securitycontext"]


def test_the_chart_refuses_runtime_placement_for_knative():
    with pytest.raises(Exception, match=r"kserve.runtime.nodeSelector: Knative .* kubernetes.podspec-nodeselector"):
        chart_runtime("7b-gpu", "Serverless")                  # values-gpu.yaml's GPU-pool placement
    with pytest.raises(Exception, match=r"kserve.runtime.tolerations: Knative .* kubernetes.podspec-tolerations"):
        chart_runtime("7b-gpu", "Knative", runtime={"nodeSelector": {}})
    flags = ["kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations"]
    runtime = chart_runtime("7b-gpu", "Serverless", knativeFeatures=flags)
    cfg = load_cluster_config("7b-gpu", ["serving.deployment_mode=Serverless"])
    pod = kserve_pod(render_inference_service(inference_spec(cfg, name=ISVC_NAME, namespace="ml-team",
                                                             storage_uri=STORAGE)), runtime)
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert knative_problems(pod, DEFAULT_FLAGS | set(flags)) == []


@pytest.mark.parametrize("change, message", [
    ({"deployment_mode": ""}, "deployment_mode: '' is not one of"),
    ({"deployment_mode": "ModelMesh"}, "deployment_mode: 'ModelMesh'"),
    ({"knative_features": ["kubernetes.podspec-nodeselektor"]}, "not a Knative PodSpec feature flag"),
    ({"progress_deadline_s": -1}, "progress_deadline_s"),
])
def test_bad_modes_and_flags_are_named(change, message):
    with pytest.raises(DiffucoderError, match=message):
        render_inference_service(InferenceSpec(name="d", namespace="n", storage_uri=STORAGE, **change))


def test_cluster_config_checks_the_load_budget_against_the_deploy_timeout():
    with pytest.raises(ConfigError, match=r"'serving.timeout_s' \(900\) is shorter than 'serving.startup_timeout_s'"):
        load_cluster_config("7b-gpu", ["serving.timeout_s=900"])
    with pytest.raises(ConfigError, match=r"'serving.deployment_mode': must be one of"):
        load_cluster_config("tiny-cpu", ["serving.deployment_mode="])


@pytest.mark.parametrize("kserve, where", [
    ({"runtime": {"preset": "70b-tpu"}}, "/kserve/runtime/preset"),
    ({"deploymentMode": "ModelMesh"}, "/kserve/deploymentMode"),
    ({"knativeFeatures": ["nodeselector"]}, "/kserve/knativeFeatures/0"),
    ({"runtime": {"startupProbe": {"periodSeconds": 10, "failureThreshold": 0}}},
     "/kserve/runtime/startupProbe/failureThreshold"),
])
def test_chart_schema_names_bad_serving_values(kserve, where):
    error = schema_error({"kserve": kserve})
    assert error and f"'{where}" in error, error
