"""The sandbox service as the chart and the kustomize base deploy it: its pods are the ones the
deny-all policy selects, only the pods that send it programs get in, and nothing secret gets to it.

The presets are checked against it too: configs/7b-gpu sends evaluate's and RL's programs to the
chart's Service, on its port.
"""
import argparse
import os
import textwrap
from pathlib import Path

import helm_python
import pytest
import yaml
from platform_support import CHART_DIR, MANIFESTS_DIR, ROOT, kustomize, render

from diffucoder.kube.objects import common_labels
from diffucoder.sandbox import cli as sandbox_cli

SANDBOX = ("Deployment", "diffucoder-sandbox")
POLICY = ("NetworkPolicy", "diffucoder-sandbox-isolation")
SECRET_ENV = ("AWS_", "DIFFUCODER_S3", "MINIO_")


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def find(objects, kind, name):
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


@pytest.fixture(params=["chart_default", "chart_gpu", "kustomize-base", "kustomize-gpu-cluster"])
def objects(request):
    if request.param.startswith("kustomize-"):
        return request.getfixturevalue("kustomize_builds")[request.param.split("-", 1)[1]]
    return request.getfixturevalue(request.param).objects


def test_the_deny_all_policy_selects_the_sandbox_pods(objects):
    pod = find(objects, *SANDBOX)["spec"]["template"]
    policy = find(objects, *POLICY)["spec"]
    assert selects(policy["podSelector"], pod["metadata"]["labels"])
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"] and policy["egress"] == []
    service = find(objects, "Service", "diffucoder-sandbox")["spec"]
    assert selects({"matchLabels": service["selector"]}, pod["metadata"]["labels"])
    deployment_selector = find(objects, *SANDBOX)["spec"]["selector"]
    assert selects(deployment_selector, pod["metadata"]["labels"])


def test_only_the_clients_get_in_and_only_on_the_service_port(objects):
    policy = find(objects, *POLICY)["spec"]
    container = find(objects, *SANDBOX)["spec"]["template"]["spec"]["containers"][0]
    (rule,) = policy["ingress"]
    port = container["ports"][0]["containerPort"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    assert find(objects, "Service", "diffucoder-sandbox")["spec"]["ports"][0]["port"] == port
    peers = rule["from"]
    assert all(set(peer) == {"podSelector"} for peer in peers)   # this namespace only, no ipBlock
    step = {"pipelines.kubeflow.org/v2_component": "true", "workflows.argoproj.io/workflow": "r-1"}
    training = common_labels("training", {"diffucoder.io/job": "rl-r1"})   # TrainJob / PyTorchJob pods
    runtime = find(objects, "TrainingRuntime", "diffucoder-torch")["spec"]["template"]["spec"][
        "replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["labels"]
    for client in (step, training, runtime):
        assert any(selects(p["podSelector"], client) for p in peers), client
    strangers = [common_labels("minio"), common_labels("serving"), {"app": "anything"},
                 find(objects, *SANDBOX)["spec"]["template"]["metadata"]["labels"]]
    for stranger in strangers:
        assert not any(selects(p["podSelector"], stranger) for p in peers), stranger


def test_no_token_no_secret_no_store_setting_reaches_the_sandbox_pods(objects):
    spec = find(objects, *SANDBOX)["spec"]["template"]["spec"]
    account = find(objects, "ServiceAccount", spec["serviceAccountName"])
    assert spec["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False       # no other Service's address in the environment
    text = yaml.safe_dump(spec)
    assert "secret" not in text.lower() and "serviceAccountToken" not in text
    for volume in spec.get("volumes", []):
        assert set(volume) - {"name"} == {"emptyDir"}, volume
    for container in spec["containers"]:
        assert "envFrom" not in container
        for env in container.get("env", []):
            assert "valueFrom" not in env and not env["name"].startswith(SECRET_ENV), env
    # no RoleBinding gives the sandbox's account anything
    bound = [s for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in o["subjects"]]
    assert spec["serviceAccountName"] not in {s["name"] for s in bound}


def test_the_pods_are_locked_down_and_run_the_service(objects):
    spec = find(objects, *SANDBOX)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["runAsUser"] != 0
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = find(objects, *SANDBOX)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"
    # the arguments are the real command's: parse them with its own parser
    assert container["args"][:3] == ["diffucoder", "sandbox", "serve"]
    parser = argparse.ArgumentParser()
    sandbox_cli.add_arguments(parser)
    args = parser.parse_args(container["args"][2:])
    assert args.min_isolation == "rlimits-only" and args.port == container["ports"][0]["containerPort"]
    assert args.workers == 1 and args.queue >= 128


def test_the_presets_send_their_programs_to_the_charts_service(chart_default):
    port = find(chart_default.objects, "Service", "diffucoder-sandbox")["spec"]["ports"][0]["port"]
    evaluate = yaml.safe_load((ROOT / "configs" / "7b-gpu" / "evaluate.yaml").read_text())["sandbox"]
    rl = yaml.safe_load((ROOT / "configs" / "7b-gpu" / "rl.yaml").read_text())["reward"]["sandbox"]
    for section in (evaluate, rl):
        assert section == {**section, "endpoint": f"http://diffucoder-sandbox:{port}", "min_isolation": "service"}
    timeout, memory = (yaml.safe_load((ROOT / "configs" / "7b-gpu" / "evaluate.yaml").read_text())["limits"][k]
                       for k in ("reference_timeout_s", "memory_mb"))
    args = find(chart_default.objects, *SANDBOX)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--timeout={timeout:g}" in args and f"--memory-mb={memory}" in args   # caps cover the preset


def test_the_helm_test_checks_the_service_from_an_admitted_pod(chart_default):
    objects = chart_default.objects
    pod = find(objects, "Pod", "diffucoder-test-sandbox")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["diffucoder", "sandbox", "selfcheck", "--boundary", "--endpoint",
                                 "http://diffucoder-sandbox:8080"]
    assert "secret" not in yaml.safe_dump(pod["spec"]).lower()
    (rule,) = find(objects, *POLICY)["spec"]["ingress"]
    assert any(selects(p["podSelector"], pod["metadata"]["labels"]) for p in rule["from"])
    jobs = find(objects, "NetworkPolicy", "diffucoder-jobs")["spec"]
    assert selects(jobs["podSelector"], pod["metadata"]["labels"])    # its own egress is restricted ...
    sandbox_labels = find(objects, *SANDBOX)["spec"]["template"]["metadata"]["labels"]
    assert any(selects(to["podSelector"], sandbox_labels) and egress["ports"][0]["port"] == 8080
               for egress in jobs["egress"] for to in egress.get("to", []) if "podSelector" in to)  # ... to it


def test_gvisor_autoscaling_and_switching_the_service_off():
    with_gvisor = render({"sandbox": {"runtimeClass": {"enabled": True}}})
    spec = find(with_gvisor.objects, *SANDBOX)["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == find(with_gvisor.objects, "RuntimeClass", "gvisor")["metadata"]["name"]
    scaled = render({"sandbox": {"service": {"autoscaling": {"enabled": True, "maxReplicas": 5}}}})
    hpa = find(scaled.objects, "HorizontalPodAutoscaler", "diffucoder-sandbox")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "diffucoder-sandbox"}
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "diffucoder_sandbox_queue_depth"
    assert hpa["maxReplicas"] == 5 and "replicas" not in find(scaled.objects, *SANDBOX)["spec"]
    off = render({"sandbox": {"service": {"enabled": False}}})
    assert not {("Deployment", "diffucoder-sandbox"), ("Service", "diffucoder-sandbox"),
                ("Pod", "diffucoder-test-sandbox")} & off.kinds_names()


def test_the_gvisor_component_puts_the_sandbox_pods_under_it(tmp_path):
    rel = Path(os.path.relpath(MANIFESTS_DIR, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [{rel / 'base'}]
        components: [{rel / 'components' / 'sandbox-gvisor'}]
        """))
    built = kustomize(tmp_path)
    assert find(built, *SANDBOX)["spec"]["template"]["spec"]["runtimeClassName"] == \
        find(built, "RuntimeClass", "gvisor")["metadata"]["name"]


@pytest.mark.parametrize("service, where", [
    ({"minIsolation": "none"}, "/sandbox/service/minIsolation"),       # the floor cannot be switched off
    ({"port": 80}, "/sandbox/service/port"),                            # non-root: no port below 1024
    ({"workers": 0}, "/sandbox/service/workers"),
    ({"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}, "/sandbox/service/resources"),
    ({"env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}, "/sandbox/service"),   # no way to add env
], ids=["floor-none", "low-port", "no-workers", "no-limits", "extra-env"])
def test_the_schema_refuses_unsafe_sandbox_values(service, where):
    with helm_python.Chart.load(CHART_DIR) as chart:
        with pytest.raises(helm_python.HelmValuesError) as refused:
            chart.validate_schema({"sandbox": {"service": service}})
    assert f"'{where}" in str(refused.value), str(refused.value)
