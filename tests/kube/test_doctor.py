"""``diffucoder doctor --cluster``: a healthy cluster passes, each listed failure fails its check.

The cluster is the in-memory Kubernetes API (kmock): CRDs built from the vendored CRD schemas
(``tests/platform/schemas``), the chart's own objects as ``helm template`` renders them
(values-gpu.yaml, namespace ml-team), GPU nodes as the NVIDIA GPU operator labels and taints
them, KServe's and Knative's ConfigMaps. The store is the real S3 test server (``rclone serve
s3``) and the KFP API the in-process fake (``tests/pipelines/fake_kfp_server.py``). Every test
runs the command as a user would (``diffucoder doctor --cluster ... --json``) and reads its
exit code and its results.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import sys
from pathlib import Path

import kmock
import pytest
from kubernetes import client

from diffucoder.cli import main as cli_main
from diffucoder.doctor_cli import format_table
from diffucoder.kube.doctor import CheckResult, PodNeed, tolerates, why_not
from kube_emulator import RUNTIMES
from platform_support import NAMESPACE, gpu_values, render  # tests/platform (kube_emulator's path)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "pipelines"))
from fake_kfp_server import FakeKFP  # noqa: E402

SCHEMAS = ROOT / "tests" / "platform" / "schemas"
NS = NAMESPACE
SECRETS, ACCOUNTS, CONFIGMAPS = "v1/secrets", "v1/serviceaccounts", "v1/configmaps"
DEPLOYMENTS = "apps/v1/deployments"
TRAINING_RUNTIMES = "trainer.kubeflow.org/v1alpha1/trainingruntimes"
CLUSTER_RUNTIMES = "serving.kserve.io/v1alpha1/clusterservingruntimes"
GPU_LABEL = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
# What the 7b-gpu predictor's pod spec uses in Serverless mode (the InferenceService over the
# chart's runtime, as KServe merges them): the runtime's nodeSelector and tolerations
# (values-gpu.yaml); emptyDir volumes are on by default. Knative 1.17 takes privileged: false.
KNATIVE_FLAGS = {"kubernetes.podspec-nodeselector": "enabled",
                 "kubernetes.podspec-tolerations": "Enabled"}
SERVERLESS = ("--set", "serving.deployment_mode=Serverless")
POD_SECURITY = ("--set", "serving.knative_features=[kubernetes.podspec-securitycontext]")
HEALTHY_7B = {
    "api-server": "pass", "trainjob-crd": "pass", "pytorchjob-crd": "skip", "kserve-crds": "pass",
    "kfp-version": "pass", "kserve-mode": "pass", "knative-features": "skip",
    "store-secret": "pass", "service-account/diffucoder-pipeline-runner": "pass",
    "service-account/diffucoder-jobs": "pass", "service-account/diffucoder-kserve": "pass",
    "training-runtime": "pass", "serving-runtime": "pass", "training-nodes": "pass",
    "serving-nodes": "pass", "store": "pass"}


# -- building the cluster ---------------------------------------------------------------------


def _resolve(node: dict, defs: dict) -> dict:
    """Follow local $refs and optional (anyOf [x, null]) wrappers of a vendored schema."""
    while True:
        if "$ref" in node and node["$ref"].startswith("#/$defs/"):
            node = defs[node["$ref"].split("/")[-1]]
        elif "anyOf" in node:
            node = next(n for n in node["anyOf"] if n.get("type") != "null")
        else:
            return node


def _structural(node: dict) -> dict:
    """A CRD (structural) schema for one field: its type, contents kept open."""
    kind = node.get("type", "object")
    if kind == "object":
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if kind == "array":
        return {"type": "array", "items": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}}
    return {"type": kind}


def crd(schema_file: str, drop_spec: tuple[str, ...] = (), scope: str = "Namespaced",
        served: bool = True) -> dict:
    """A CustomResourceDefinition whose spec fields are the vendored schema's (minus
    ``drop_spec``): what the project's installers put on a cluster."""
    group, version, kind = schema_file.removesuffix(".json").split("_")
    schema = json.loads((SCHEMAS / schema_file).read_text())
    defs = schema.get("$defs", {})
    spec = _resolve(schema["properties"]["spec"], defs)
    fields = {k: _structural(_resolve(v, defs)) for k, v in spec["properties"].items()
              if k not in drop_spec}
    plural = kind.lower() + "s"
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                               "singular": kind.lower()},
                     "versions": [{"name": version, "served": served, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                       "spec": {"type": "object", "properties": fields},
                                       "status": {"type": "object",
                                                  "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


TRAINJOB = "trainer.kubeflow.org_v1alpha1_TrainJob.json"
TRAINING_RUNTIME = "trainer.kubeflow.org_v1alpha1_TrainingRuntime.json"
PYTORCHJOB = "kubeflow.org_v1_PyTorchJob.json"
ISVC = "serving.kserve.io_v1beta1_InferenceService.json"
SERVING_RUNTIME = "serving.kserve.io_v1alpha1_ServingRuntime.json"


def node(name: str, gpus: int = 8, labels: dict | None = None, taints: list | None = None,
         cpu: str = "96", memory: str = "1900Gi", unschedulable: bool = False) -> dict:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(GPU_LABEL if labels is None else labels)}},
            "spec": {"taints": [GPU_TAINT] if taints is None else taints,
                     "unschedulable": unschedulable},
            "status": {"allocatable": allocatable, "capacity": dict(allocatable)}}


def configmap(name: str, namespace: str, data: dict, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "data": data}


def deployment(name: str, namespace: str, container: str, image: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": container, "image": image}]}}}}


def kfp_deployment(image: str) -> dict:
    """KFP's API server (manifests/kustomize/base/pipeline/ml-pipeline-apiserver-deployment.yaml)."""
    return deployment("ml-pipeline", "kubeflow", "ml-pipeline-api-server", image)


def kserve_controller(version: str) -> dict:
    """KServe's controller (config/manager/manager.yaml)."""
    return deployment("kserve-controller-manager", "kserve", "manager",
                      f"kserve/kserve-controller:{version}")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Site:
    """A healthy 7b-gpu cluster, and how to break one thing of it."""

    def __init__(self, cluster, s3_server, kfp, tmp_path: Path, monkeypatch, capsys):
        self.cluster, self.s3, self.kfp, self.capsys = cluster, s3_server, kfp, capsys
        self.api = cluster.api_client()
        self.kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
        self.monkeypatch = monkeypatch
        for var in ("DIFFUCODER_S3_ENDPOINT", "DIFFUCODER_S3_SECURE", "DIFFUCODER_S3_REGION",
                    "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "DIFFUCODER_S3_SECRET_DIR",
                    "KF_PIPELINES_SA_TOKEN_PATH", "KUBECONFIG"):
            monkeypatch.delenv(var, raising=False)
        self.args = ["--preset", "7b-gpu", "--namespace", NS, "--kubeconfig", str(self.kubeconfig),
                     "--kfp-host", kfp.host, "--store-root", f"s3://{s3_server.bucket}",
                     "--store-endpoint", s3_server.endpoint, "--timeout", "5"]
        for schema_file in (TRAINJOB, TRAINING_RUNTIME, PYTORCHJOB, ISVC, SERVING_RUNTIME):
            self.create_crd(crd(schema_file))
        chart = render(gpu_values())
        secret = copy.deepcopy(chart.find("Secret", "diffucoder-s3"))
        # The chart generated random keys for its MinIO; the test's S3 server has its own.
        secret["data"].update(AWS_ACCESS_KEY_ID=b64(s3_server.access_key),
                              AWS_SECRET_ACCESS_KEY=b64(s3_server.secret_key))
        self.secret = secret
        cluster.put(SECRETS, secret)
        for account in ("diffucoder-pipeline-runner", "diffucoder-jobs", "diffucoder-kserve"):
            cluster.put(ACCOUNTS, chart.find("ServiceAccount", account))
        cluster.put(TRAINING_RUNTIMES, chart.find("TrainingRuntime", "diffucoder-torch"))
        self.runtime = chart.find("ServingRuntime", "diffucoder-runtime")
        cluster.put(RUNTIMES, self.runtime)
        cluster.put(DEPLOYMENTS, kfp_deployment("ghcr.io/kubeflow/kfp-api-server:2.5.0"))
        cluster.put(CONFIGMAPS, configmap("inferenceservice-config", "kserve", {
            "deploy": json.dumps({"defaultDeploymentMode": "Serverless"})}))
        self.knative(KNATIVE_FLAGS)
        core = client.CoreV1Api(self.api)
        core.create_node(node("cpu-0", gpus=0, labels={}, taints=[], cpu="8", memory="32Gi"))
        for i in range(10):      # pretrain: 10 nodes x 8 GPUs (configs/7b-gpu/cluster.yaml)
            core.create_node(node(f"gpu-{i}"))

    def knative(self, flags: dict, version: str = "1.17.0") -> None:
        self.cluster.put(CONFIGMAPS, configmap(
            "config-features", "knative-serving", {"_example": "...", **flags},
            labels={"app.kubernetes.io/name": "knative-serving",
                    "app.kubernetes.io/version": version}))

    def create_crd(self, body: dict) -> None:
        client.ApiextensionsV1Api(self.api).create_custom_resource_definition(
            body, _preload_content=False)

    def delete_crd(self, name: str) -> None:
        client.ApiextensionsV1Api(self.api).delete_custom_resource_definition(
            name, _preload_content=False)

    def put_runtime(self, runtime: dict) -> None:
        self.runtime = runtime
        self.cluster.put(RUNTIMES, runtime)

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        async def remove():
            self.cluster.objects[resource, namespace, name].delete()
        asyncio_call(self.cluster, remove())

    def run(self, *extra: str, args: list[str] | None = None) -> tuple[int, dict[str, CheckResult]]:
        """``diffucoder doctor --cluster <args> --json``: (exit code, results by name)."""
        code = cli_main(["doctor", "--cluster", *(self.args if args is None else args), *extra,
                         "--json"])
        report = json.loads(self.capsys.readouterr().out)
        results = {r["name"]: CheckResult(**r) for r in report["checks"]}
        assert report["healthy"] is (code == 0)
        return code, results


def asyncio_call(cluster, coro):
    """Run a coroutine in the emulator's loop (its store is not thread-safe)."""
    return asyncio.run_coroutine_threadsafe(coro, cluster.loop).result(10)


@pytest.fixture
def kfp():
    with FakeKFP(tag_name="2.5.0") as server:
        yield server


@pytest.fixture
def site(cluster, s3_server, kfp, tmp_path, monkeypatch, capsys):
    return Site(cluster, s3_server, kfp, tmp_path, monkeypatch, capsys)


def only_failure(code: int, results: dict[str, CheckResult], name: str) -> CheckResult:
    """The one failed check, after asserting the exit code and that nothing else failed."""
    failed = sorted(n for n, r in results.items() if r.status == "fail")
    assert failed == [name], {n: results[n].detail for n in failed}
    assert code == 1
    assert results[name].fix, "a failure must say how to fix it"
    return results[name]


# -- a healthy cluster ------------------------------------------------------------------------


def test_healthy_7b_cluster_passes_every_check(site):
    code, results = site.run()
    assert {n: r.status for n, r in results.items()} == HEALTHY_7B, \
        {n: r.detail for n, r in results.items() if r.status == "fail"}
    assert code == 0
    assert "runtimePatches" in results["trainjob-crd"].detail
    assert "2.5.0" in results["kfp-version"].detail
    assert results["kserve-mode"].detail == \
        "Standard (serving.deployment_mode=RawDeployment; cluster default Knative " \
        "(kserve/inferenceservice-config))"
    assert results["knative-features"].detail == "Standard mode does not use Knative"
    assert "pretrain needs 10 x (8 nvidia.com/gpu, 64 CPU, 800Gi)" in \
        results["training-nodes"].detail
    assert "10 fit" in results["training-nodes"].detail
    assert f"s3://{site.s3.bucket}" in results["store"].detail
    assert "endpoint from --store-endpoint, keys from the Secret" in results["store"].detail
    # serving lands where the chart's runtime places it (its selector and toleration)
    assert "serving needs 1 x (1 nvidia.com/gpu, 8 CPU, 64Gi) on nvidia.com/gpu.present=true: " \
           "10 fit" in results["serving-nodes"].detail


def test_healthy_serverless_cluster_passes_with_the_flags_the_pod_spec_needs(site):
    code, results = site.run(*SERVERLESS)
    assert code == 0, {n: r.detail for n, r in results.items() if r.status == "fail"}
    assert results["kserve-mode"].detail.startswith("Knative (serving.deployment_mode=Serverless")
    assert results["knative-features"].detail == (
        "Knative 1.17.0: the predictor's pod spec needs kubernetes.podspec-nodeselector, "
        "kubernetes.podspec-tolerations, kubernetes.podspec-volumes-emptydir, all enabled")


def test_the_table_shows_each_check_and_a_fix_under_a_failure(site, capsys):
    site.delete(ACCOUNTS, NS, "diffucoder-jobs")
    code = cli_main(["doctor", "--cluster", *site.args])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("service-account/diffucoder-jobs"))
    assert "FAIL" in lines[row] and "no ServiceAccount diffucoder-jobs in ml-team" in lines[row]
    assert lines[row + 1].strip().startswith("fix: install the chart into ml-team")
    assert any(line.startswith("store ") and "PASS" in line for line in lines)
    assert lines[-1] == "15 of 16 checks passed or skipped, 1 failed"


def test_format_table_lists_fixes_only_for_failures():
    text = format_table([CheckResult("a", "pass", "fine"), CheckResult("bb", "fail", "broken", "mend"),
                         CheckResult("c", "skip", "n/a")])
    assert text.splitlines() == ["CHECK  RESULT  DETAIL", "a      PASS    fine",
                                 "bb     FAIL    broken", "               fix: mend",
                                 "c      SKIP    n/a", "2 of 3 checks passed or skipped, 1 failed"]


def test_standard_mode_ignores_knative_and_pytorchjob_uses_its_crd(site):
    site.knative({})          # every flag off: not needed in Standard mode
    code, results = site.run("--set", "training.kind=pytorchjob")
    assert code == 0, {n: r.detail for n, r in results.items() if r.status == "fail"}
    assert results["knative-features"].status == "skip"
    assert results["pytorchjob-crd"].status == "pass"
    assert results["trainjob-crd"].status == "skip"
    assert results["training-runtime"].status == "skip"


def test_store_endpoint_and_keys_from_the_secret(site):
    """Without --store-endpoint or environment, the Secret's endpoint and keys are used."""
    host = site.s3.endpoint.split("://", 1)[1]
    site.secret["data"]["DIFFUCODER_S3_ENDPOINT"] = b64(host)
    site.cluster.put(SECRETS, site.secret)
    args = [a for a in site.args if a not in ("--store-endpoint", site.s3.endpoint)]
    code, results = site.run(args=args)
    assert code == 0, {n: r.detail for n, r in results.items() if r.status == "fail"}
    assert "endpoint from the Secret, keys from the Secret" in results["store"].detail


def test_kfp_version_from_the_deployment_when_healthz_has_no_tag(site):
    site.kfp.tag_name = "unknown"          # TAG_NAME unset at the image's build
    code, results = site.run()
    assert code == 0
    assert "image ghcr.io/kubeflow/kfp-api-server:2.5.0 of kubeflow/ml-pipeline" in \
        results["kfp-version"].detail
    assert "reports tag_name 'unknown'" in results["kfp-version"].detail


def test_kfp_token_file_is_sent_as_a_bearer_token(site, tmp_path):
    token = tmp_path / "token"
    token.write_text("kfp-token-123\n")
    code, _ = site.run("--kfp-token-file", str(token))
    assert code == 0
    assert site.kfp.auth_headers[-1] == "Bearer kfp-token-123"


def test_tiny_cpu_preset_on_the_same_cluster(site):
    """The default preset: CPU pods, no tolerations, so only the untainted CPU node takes the
    training pods; serving follows the chart's (GPU) runtime placement."""
    args = [a if a != "7b-gpu" else "tiny-cpu" for a in site.args]
    code, results = site.run(args=args)
    assert code == 0, {n: r.detail for n, r in results.items() if r.status == "fail"}
    assert results["training-nodes"].detail.startswith(
        "pretrain needs 1 x (2 CPU, 4Gi) on any node: 1 fit (others: taint nvidia.com/gpu:NoSchedule)")


def test_a_clusterservingruntime_serves_as_well(site):
    site.delete(RUNTIMES, NS, "diffucoder-runtime")
    cluster_runtime = copy.deepcopy(site.runtime)
    cluster_runtime["kind"] = "ClusterServingRuntime"
    del cluster_runtime["metadata"]["namespace"]

    async def put():
        site.cluster.objects[CLUSTER_RUNTIMES, None, "diffucoder-runtime"] = cluster_runtime
    asyncio_call(site.cluster, put())
    code, results = site.run()
    assert code == 0
    assert results["serving-runtime"].detail == "ClusterServingRuntime diffucoder-runtime " \
                                                "(cluster-wide)"


# -- each listed failure ----------------------------------------------------------------------


def test_trainjob_crd_without_runtime_patches_fails(site):
    """Kubeflow Trainer < v2.2.0: the CRD has no spec.runtimePatches and prunes it."""
    site.delete_crd("trainjobs.trainer.kubeflow.org")
    site.create_crd(crd(TRAINJOB, drop_spec=("runtimePatches",)))
    failed = only_failure(*site.run(), "trainjob-crd")
    assert "has no spec.runtimePatches" in failed.detail
    assert "upgrade Kubeflow Trainer" in failed.fix and "v2.2.0" in failed.fix


def test_missing_trainjob_crd_fails(site):
    site.delete_crd("trainjobs.trainer.kubeflow.org")
    failed = only_failure(*site.run(), "trainjob-crd")
    assert "Kubeflow Trainer is not installed" in failed.detail
    assert "install Kubeflow Trainer v2.2.0 or later" in failed.fix


def test_missing_pytorchjob_crd_fails_when_the_kind_is_pytorchjob(site):
    site.delete_crd("pytorchjobs.kubeflow.org")
    code, results = site.run()
    assert code == 0 and results["pytorchjob-crd"].status == "skip"     # trainjob: not needed
    failed = only_failure(*site.run("--set", "training.kind=pytorchjob"),
                          "pytorchjob-crd")
    assert "training operator is not installed" in failed.detail
    assert "training-operator" in failed.fix


def test_missing_kserve_crd_fails(site):
    site.delete_crd("servingruntimes.serving.kserve.io")
    failed = only_failure(*site.run(), "kserve-crds")
    assert "no CRD servingruntimes.serving.kserve.io" in failed.detail
    assert "install KServe" in failed.fix


@pytest.mark.parametrize("source", ["healthz", "deployment"])
def test_old_kfp_backend_fails(site, source):
    if source == "healthz":
        site.kfp.tag_name = "2.4.1"
        args = site.args
    else:           # no --kfp-host: the API server image's tag
        site.cluster.put(DEPLOYMENTS, kfp_deployment("ghcr.io/kubeflow/kfp-api-server:2.4.1"))
        args = [a for a in site.args if a not in ("--kfp-host", site.kfp.host)]
    failed = only_failure(*site.run(args=args), "kfp-version")
    assert "KFP backend 2.4.1" in failed.detail and "older than 2.5.0" in failed.detail
    assert "upgrade Kubeflow Pipelines to 2.5.0" in failed.fix


def test_unknown_kfp_version_fails(site):
    site.delete(DEPLOYMENTS, "kubeflow", "ml-pipeline")
    args = [a for a in site.args if a not in ("--kfp-host", site.kfp.host)]
    failed = only_failure(*site.run(args=args), "kfp-version")
    assert "cannot tell the KFP backend's version" in failed.detail
    assert "no Deployment ml-pipeline in namespace kubeflow" in failed.detail
    assert "--kfp-host" in failed.fix


def test_invalid_kserve_deploy_config_fails(site):
    site.cluster.put(CONFIGMAPS, configmap("inferenceservice-config", "kserve", {
        "deploy": '{"defaultDeploymentMode": "Serverless",}'}))
    failed = only_failure(*site.run(), "kserve-mode")
    assert "KServe reconciles no InferenceService" in failed.detail
    assert "kubectl -n kserve edit configmap inferenceservice-config" in failed.fix


def test_new_mode_name_on_old_kserve_fails(site):
    """KServe 0.15 does not read 'Standard' and falls back to the cluster default, Knative."""
    site.cluster.put(DEPLOYMENTS, kserve_controller("v0.15.2"))
    failed = only_failure(*site.run("--set", "serving.deployment_mode=Standard"),
                          "kserve-mode")
    assert "KServe 0.15.2 does not know serving.deployment_mode=Standard" in failed.detail
    assert failed.detail.endswith(": Knative")
    assert "serving.deployment_mode=RawDeployment" in failed.fix


def test_new_mode_name_with_unknown_kserve_version_fails(site):
    failed = only_failure(*site.run("--set", "serving.deployment_mode=Knative"),
                          "kserve-mode")
    assert "needs KServe >= 0.16.0, and its version is unknown" in failed.detail
    assert "serving.deployment_mode=Serverless" in failed.fix


def test_new_mode_name_on_kserve_0_16_passes(site):
    site.cluster.put(DEPLOYMENTS, kserve_controller("v0.16.0"))
    code, results = site.run("--set", "serving.deployment_mode=Standard")
    assert code == 0
    assert results["kserve-mode"].detail.startswith("Standard (serving.deployment_mode=Standard;")


def test_kserve_mode_needs_no_configmap_for_a_name_every_kserve_reads(site):
    site.delete(CONFIGMAPS, "kserve", "inferenceservice-config")
    code, results = site.run()
    assert code == 0
    assert "cluster default unknown (no inferenceservice-config in kserve or kubeflow)" in \
        results["kserve-mode"].detail


def test_kserve_config_in_the_kubeflow_namespace_is_found(site):
    """Kubeflow's manifests install KServe into ``kubeflow``."""
    site.delete(CONFIGMAPS, "kserve", "inferenceservice-config")
    site.cluster.put(CONFIGMAPS, configmap("inferenceservice-config", "kubeflow", {
        "deploy": json.dumps({"defaultDeploymentMode": "RawDeployment"})}))
    code, results = site.run()
    assert code == 0
    assert "cluster default Standard (kubeflow/inferenceservice-config)" in \
        results["kserve-mode"].detail


@pytest.mark.parametrize("flag", sorted(KNATIVE_FLAGS))
def test_knative_flag_the_pod_spec_needs_fails(site, flag):
    """Stock Knative rejects the runtime's nodeSelector and tolerations."""
    site.knative({k: v for k, v in KNATIVE_FLAGS.items() if k != flag})
    failed = only_failure(*site.run(*SERVERLESS), "knative-features")
    assert f"{flag} is disabled" in failed.detail
    assert f'"{flag}": "enabled"' in failed.fix and "patch configmap config-features" in failed.fix
    assert "serving.deployment_mode=RawDeployment" in failed.fix


def test_pod_security_context_declared_but_disabled_fails(site):
    """knative_features lists the flag, so the InferenceService carries a pod securityContext;
    the cluster has it off (as stock Knative does)."""
    failed = only_failure(*site.run(*SERVERLESS, *POD_SECURITY),
                          "knative-features")
    assert "kubernetes.podspec-securitycontext is disabled (pod securityContext (fsGroup, " \
           "runAsGroup, runAsNonRoot, runAsUser, seccompProfile))" in failed.detail
    site.knative({**KNATIVE_FLAGS, "kubernetes.podspec-securitycontext": "allowed"})
    code, results = site.run(*SERVERLESS, *POD_SECURITY)
    assert code == 0 and results["knative-features"].status == "pass"


def test_knative_before_1_17_rejects_privileged_false(site):
    runtime = copy.deepcopy(site.runtime)
    runtime["spec"]["containers"][0]["securityContext"]["privileged"] = False
    site.put_runtime(runtime)
    code, results = site.run(*SERVERLESS)
    assert code == 0           # Knative 1.17 takes it
    site.knative(KNATIVE_FLAGS, version="1.16.2")
    failed = only_failure(*site.run(*SERVERLESS), "knative-features")
    assert "Knative 1.16.2 rejects securityContext.privileged" in failed.detail
    assert "upgrade Knative Serving to 1.17.0" in failed.fix


def test_missing_knative_fails_in_knative_mode(site):
    site.delete(CONFIGMAPS, "knative-serving", "config-features")
    code, results = site.run()
    assert code == 0           # Standard mode: Knative is not needed
    failed = only_failure(*site.run(*SERVERLESS), "knative-features")
    assert "Knative Serving is not installed" in failed.detail


def test_missing_store_secret_fails(site):
    site.delete(SECRETS, NS, "diffucoder-s3")
    # the keys from the environment, as `diffucoder store` takes them: only the Secret fails
    for var, value in site.s3.env().items():
        site.monkeypatch.setenv(var, value)
    code, results = site.run()
    failed = only_failure(code, results, "store-secret")
    assert "keys from the environment" in results["store"].detail
    assert "no Secret diffucoder-s3 in ml-team" in failed.detail
    assert "helm install diffucoder charts/diffucoder -n ml-team" in failed.fix
    assert "--store-secret" in failed.fix


def test_store_secret_without_a_key_fails(site):
    del site.secret["data"]["DIFFUCODER_S3_REGION"]
    site.cluster.put(SECRETS, site.secret)
    failed = only_failure(*site.run(), "store-secret")
    assert "lacks DIFFUCODER_S3_REGION" in failed.detail
    assert "patch secret diffucoder-s3" in failed.fix


@pytest.mark.parametrize("account", ["diffucoder-pipeline-runner", "diffucoder-jobs",
                                     "diffucoder-kserve"])
def test_missing_service_account_fails(site, account):
    site.delete(ACCOUNTS, NS, account)
    failed = only_failure(*site.run(), f"service-account/{account}")
    assert f"no ServiceAccount {account} in ml-team" in failed.detail
    assert "install the chart into ml-team" in failed.fix


def test_missing_training_runtime_fails(site):
    site.delete(TRAINING_RUNTIMES, NS, "diffucoder-torch")
    failed = only_failure(*site.run(), "training-runtime")
    assert "no TrainingRuntime diffucoder-torch in ml-team" in failed.detail
    assert "trainer.enabled=true" in failed.fix


def test_missing_serving_runtime_fails(site):
    site.delete(RUNTIMES, NS, "diffucoder-runtime")
    code, results = site.run()
    # without the runtime's selector and toleration, serving fits no (tainted) GPU node either
    assert results["serving-nodes"].status == "fail"
    failed = only_failure(*site.run("--extended-resource-toleration"),
                          "serving-runtime")
    assert "no ServingRuntime diffucoder-runtime in ml-team" in failed.detail
    assert "kserve.enabled=true" in failed.fix and "render-runtime" in failed.fix


def test_too_few_gpu_nodes_fails(site):
    client.CoreV1Api(site.api).delete_node("gpu-9", _preload_content=False)
    failed = only_failure(*site.run(), "training-nodes")
    assert "pretrain needs 10 x (8 nvidia.com/gpu, 64 CPU, 800Gi) on " \
           "nvidia.com/gpu.present=true: 9 fit" in failed.detail
    assert "sft needs 8 x" in failed.detail          # still fits: reported, not failed
    assert "nvidia.com/gpu.present=true" in failed.fix
    assert "size down pretrain: training.stages.<stage>.nodes" in failed.fix


def test_nodes_the_pods_cannot_use_do_not_count(site):
    """A cordoned node, one with an untolerated taint, one with fewer GPUs: 7 of 10 fit."""
    core = client.CoreV1Api(site.api)
    core.patch_node("gpu-0", {"spec": {"unschedulable": True}})
    core.patch_node("gpu-1", {"spec": {"taints": [GPU_TAINT, {"key": "maintenance",
                                                              "effect": "NoExecute"}]}})
    core.patch_node("gpu-2", {"status": {"allocatable": {"nvidia.com/gpu": "4"}}})
    failed = only_failure(*site.run(), "training-nodes")
    assert ": 7 fit (others: cordoned, nvidia.com/gpu 4, taint maintenance:NoExecute)" in \
        failed.detail


def test_serving_that_fits_no_node_fails(site):
    failed = only_failure(*site.run("--set", "serving.memory=4000Gi"),
                          "serving-nodes")
    assert "serving needs 1 x (1 nvidia.com/gpu, 8 CPU, 4000Gi) on nvidia.com/gpu.present=true: " \
           "0 fit (others: memory 1900Gi)" in failed.detail


def test_gpu_taint_needs_a_toleration_or_the_admission_plugin(site):
    """A runtime without the GPU toleration: serving fits nowhere, unless the cluster's
    ExtendedResourceToleration admission adds it (GKE)."""
    runtime = copy.deepcopy(site.runtime)
    del runtime["spec"]["tolerations"]
    site.put_runtime(runtime)
    failed = only_failure(*site.run(), "serving-nodes")
    assert "0 fit (others: taint nvidia.com/gpu:NoSchedule)" in failed.detail
    assert "--extended-resource-toleration" in failed.fix
    code, results = site.run("--extended-resource-toleration")
    assert code == 0 and "10 fit" in results["serving-nodes"].detail


def test_missing_bucket_fails(site):
    args = [a if a != f"s3://{site.s3.bucket}" else "s3://no-such-bucket-doctor"
            for a in site.args]
    failed = only_failure(*site.run(args=args), "store")
    assert "bucket 'no-such-bucket-doctor' does not exist" in failed.detail
    assert "mc mb" in failed.fix


def test_unreachable_store_fails(site):
    dead = f"http://127.0.0.1:{closed_port()}"
    args = [a if a != site.s3.endpoint else dead for a in site.args]
    failed = only_failure(*site.run(args=args), "store")
    assert f"the store does not answer: s3://{site.s3.bucket} at {dead}" in failed.detail
    assert "port-forward" in failed.fix and "--store-endpoint" in failed.fix


def test_refused_store_keys_fail(site):
    site.secret["data"]["AWS_SECRET_ACCESS_KEY"] = b64("not-the-key")
    site.cluster.put(SECRETS, site.secret)
    failed = only_failure(*site.run(), "store")
    assert "the store refuses the keys" in failed.detail
    assert "AWS_SECRET_ACCESS_KEY" in failed.fix


def test_a_file_store_root_fails(site, tmp_path):
    args = [a if a != f"s3://{site.s3.bucket}" else tmp_path.as_uri() for a in site.args]
    failed = only_failure(*site.run(args=args), "store")
    assert "is not s3://" in failed.detail


# -- what the API does not let us see --------------------------------------------------------


def test_forbidden_reads_fail_and_name_the_permission(site):
    site.cluster.handler[kmock.action.LIST, kmock.resource("v1/nodes")] << kmock.KubernetesError(
        status=403, reason="Forbidden",
        message='nodes is forbidden: User "alice" cannot list resource "nodes"')
    code, results = site.run()
    assert code == 1
    failed = sorted(n for n, r in results.items() if r.status == "fail")
    assert failed == ["serving-nodes", "training-nodes"]
    assert "403" in results["training-nodes"].detail
    assert "kubectl auth can-i list nodes" in results["training-nodes"].fix


def test_unreachable_api_server_fails_and_skips_what_needs_it(site, tmp_path):
    kubeconfig = tmp_path / "dead-kubeconfig"
    kubeconfig.write_text(site.kubeconfig.read_text().replace(
        site.cluster.url, f"http://127.0.0.1:{closed_port()}"))
    args = [a if a != str(site.kubeconfig) else str(kubeconfig) for a in site.args]
    code, results = site.run(args=args)
    assert code == 1
    assert results["api-server"].status == "fail"
    assert "kubectl version" in results["api-server"].fix
    assert results["kfp-version"].status == "pass"        # over HTTP, not the Kubernetes API
    assert {n for n, r in results.items() if r.status == "skip"} == \
        set(HEALTHY_7B) - {"api-server", "kfp-version", "store"}


def test_bad_override_is_bad_input(site, capsys):
    code = cli_main(["doctor", "--cluster", *site.args, "--set", "training.kind=slurm"])
    assert code == 2
    assert "training.kind" in capsys.readouterr().err


# -- the node and toleration rules, against Kubernetes' semantics ----------------------------


@pytest.mark.parametrize("toleration, taint, expected", [
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
     {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
     {"key": "nvidia.com/gpu", "effect": "NoExecute"}, False),
    ({"operator": "Exists"}, {"key": "anything", "effect": "NoExecute"}, True),
    ({"key": "pool", "value": "a"}, {"key": "pool", "value": "b", "effect": "NoSchedule"}, False),
    ({"key": "pool", "value": "a", "operator": "Equal"},
     {"key": "pool", "value": "a", "effect": "NoSchedule"}, True),
])
def test_tolerates(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


def test_why_not_reports_the_first_missing_resource():
    need = PodNeed("sft", 1, 8, "64", "800Gi", dict(GPU_LABEL),
                   [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    assert why_not(node("a"), need) == ""
    assert why_not(node("b", labels={}), need) == "labels"
    assert why_not(node("c", cpu="32"), need) == "cpu 32"
    assert why_not(node("d", memory="512Gi"), need) == "memory 512Gi"
    assert why_not(node("e", taints=[GPU_TAINT, {"key": "x", "effect": "PreferNoSchedule"}]),
                   need) == ""
