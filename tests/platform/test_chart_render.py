"""The Helm chart lints, renders for default and GPU values, and every object validates."""
import base64

import helm_python
import pytest
import yaml
from platform_support import CHART_DIR, NAMESPACE, gpu_values
from k8s_schema import validation_errors

from diffucoder_kfp.components.images import ALL_IMAGES
from diffucoder import __version__
from tests.checkout import COMPILED_DIR

EXPECTED = {
    ("Secret", "diffucoder-s3"), ("StatefulSet", "diffucoder-minio"),
    ("Service", "diffucoder-minio"), ("Service", "diffucoder-minio-headless"),
    ("ServiceAccount", "diffucoder-minio"), ("ServiceAccount", "diffucoder-jobs"),
    ("ServiceAccount", "diffucoder-pipeline-runner"), ("Role", "diffucoder-pipeline-runner"),
    ("RoleBinding", "diffucoder-pipeline-runner"), ("ServiceAccount", "diffucoder-kserve"),
    ("ServingRuntime", "diffucoder-runtime"), ("TrainingRuntime", "diffucoder-torch"),
    ("NetworkPolicy", "diffucoder-sandbox-isolation"), ("NetworkPolicy", "diffucoder-minio"),
    ("NetworkPolicy", "diffucoder-jobs"), ("ConfigMap", "diffucoder-scripts"),
    ("ConfigMap", "diffucoder-pipeline"), ("Job", "diffucoder-minio-buckets"),
    ("Pod", "diffucoder-test-store"), ("Deployment", "diffucoder-sandbox"), ("Service", "diffucoder-sandbox"),
    ("ServiceAccount", "diffucoder-sandbox"), ("Pod", "diffucoder-test-sandbox"),
}
UPLOAD_JOB = "diffucoder-pipeline-upload-"   # + a hash of its spec and pipeline (test_chart_jobs.py)


@pytest.mark.parametrize("values", [None, "gpu"])
def test_chart_lints_strict_without_warnings(values):
    report = helm_python.lint(CHART_DIR, gpu_values() if values else None, strict=True,
                              namespace=NAMESPACE, kube_version="v1.31.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems


def test_default_render_has_the_platform_objects(chart_default):
    upload = {(k, n) for k, n in chart_default.kinds_names() if k == "Job" and n.startswith(UPLOAD_JOB)}
    assert len(upload) == 1
    assert chart_default.kinds_names() - upload == EXPECTED
    namespaced = [o for o in chart_default.objects if o["kind"] != "RuntimeClass"]
    assert {o["metadata"]["namespace"] for o in namespaced} == {NAMESPACE}


@pytest.mark.parametrize("which", ["chart_default", "chart_gpu"])
def test_every_rendered_object_validates(which, request):
    rendered = request.getfixturevalue(which)
    errors = [e for obj in rendered.objects for e in validation_errors(obj)]
    assert errors == []


def test_project_images_are_the_ones_components_reference(chart_default):
    images = set()
    for obj in chart_default.objects:
        text = yaml.safe_dump(obj)
        images |= {line.split("image:", 1)[1].strip() for line in text.splitlines()
                   if line.strip().startswith("image:") or line.strip().startswith("- image:")}
    project = {i for i in images if "/diffucoder-" in i}
    minio_tag = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["minio"]["image"]["tag"]
    minio = ALL_IMAGES["base"].replace("diffucoder-base:" + __version__, "diffucoder-minio:" + minio_tag)
    assert project == {ALL_IMAGES["base"], ALL_IMAGES["train"], ALL_IMAGES["serve"], minio}
    chart = helm_python.Chart.load(CHART_DIR)
    with chart:
        assert chart.metadata["appVersion"] == __version__
        assert chart.version == __version__


def test_s3_secret_has_the_keys_the_project_reads_and_fresh_random_credentials(chart_default):
    from platform_support import render

    secret = chart_default.find("Secret", "diffucoder-s3")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DIFFUCODER_S3_ENDPOINT",
                         "DIFFUCODER_S3_SECURE", "DIFFUCODER_S3_REGION"}
    assert data["DIFFUCODER_S3_ENDPOINT"] == "diffucoder-minio:9000"
    assert data["DIFFUCODER_S3_SECURE"] == "false"
    assert len(data["AWS_ACCESS_KEY_ID"]) == 20 and len(data["AWS_SECRET_ACCESS_KEY"]) == 40
    assert data["AWS_SECRET_ACCESS_KEY"].isalnum()
    again = render().find("Secret", "diffucoder-s3")["data"]
    assert again["AWS_SECRET_ACCESS_KEY"] != secret["data"]["AWS_SECRET_ACCESS_KEY"]
    # Kept on upgrade (lookup) and on uninstall, and readable by KServe.
    notes = secret["metadata"]["annotations"]
    assert notes["helm.sh/resource-policy"] == "keep"
    assert notes["serving.kserve.io/s3-endpoint"] == "diffucoder-minio:9000"
    assert notes["serving.kserve.io/s3-usehttps"] == "0"
    assert "lookup \"v1\" \"Secret\"" in (CHART_DIR / "templates" / "s3-secret.yaml").read_text()


def test_kserve_account_points_at_the_s3_secret_and_runtime_serves_the_model(chart_default):
    account = chart_default.find("ServiceAccount", "diffucoder-kserve")
    assert account["secrets"] == [{"name": "diffucoder-s3"}]
    for key in ("s3-endpoint", "s3-usehttps", "s3-region"):
        assert f"serving.kserve.io/{key}" in account["metadata"]["annotations"]
    runtime = chart_default.find("ServingRuntime", "diffucoder-runtime")["spec"]
    assert [f["name"] for f in runtime["supportedModelFormats"]] == ["diffucoder"]
    (container,) = runtime["containers"]
    assert container["image"] == ALL_IMAGES["serve"]
    assert container["args"] == ["diffucoder", "serve", "--model", "/mnt/models", "--port", "8080",
                                 "--config", "/opt/diffucoder/configs/tiny-cpu/serve.yaml",
                                 "--model_name={{.Name}}"]   # KServe fills in the InferenceService's name
    assert container["ports"][0]["containerPort"] == 8080


def test_pipeline_runner_role_is_namespaced_and_least_privilege(chart_default):
    kinds = {k for k, _ in chart_default.kinds_names()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    rules = chart_default.find("Role", "diffucoder-pipeline-runner")["rules"]
    by_resource = {(g, r): set(rule["verbs"]) for rule in rules
                   for g in rule["apiGroups"] for r in rule["resources"]}
    jobs_verbs = {"create", "get", "list", "watch", "delete", "patch"}
    for group, resource in [("trainer.kubeflow.org", "trainjobs"), ("kubeflow.org", "pytorchjobs"),
                            ("serving.kserve.io", "inferenceservices")]:
        assert by_resource[(group, resource)] == jobs_verbs
    # Runtimes are pod templates: read (deploy's check, the gang check), never written.
    assert by_resource[("serving.kserve.io", "servingruntimes")] == {"get", "list"}
    assert by_resource[("trainer.kubeflow.org", "trainingruntimes")] == {"get"}
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    assert not [rule for rule in rules if set(rule["resources"]) & {"servingruntimes", "trainingruntimes",
                                                                     "clusterservingruntimes"}
                and set(rule["verbs"]) & writes]
    assert by_resource[("", "pods")] == by_resource[("", "pods/log")] == {"get", "list", "watch"}
    assert all("*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"] for rule in rules)
    # Secrets and ConfigMaps only by name.
    for rule in rules:
        if set(rule["resources"]) & {"secrets", "configmaps"}:
            assert rule["verbs"] == ["get"] and rule.get("resourceNames")
    binding = chart_default.find("RoleBinding", "diffucoder-pipeline-runner")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "diffucoder-pipeline-runner",
                                    "namespace": NAMESPACE}]


def test_sandbox_policy_denies_all_traffic_and_runtime_class_is_opt_in(chart_default):
    """No egress; ingress only on the sandbox service's port (tests/platform/test_chart_sandbox.py)."""
    from platform_support import render

    policy = chart_default.find("NetworkPolicy", "diffucoder-sandbox-isolation")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "sandbox"}}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy.get("egress")
    assert [rule["ports"] for rule in policy["ingress"]] == [[{"protocol": "TCP", "port": 8080}]]
    assert not render({"sandbox": {"service": {"enabled": False}}}).find(
        "NetworkPolicy", "diffucoder-sandbox-isolation")["spec"].get("ingress")
    assert not any(k == "RuntimeClass" for k, _ in chart_default.kinds_names())
    with_gvisor = render({"sandbox": {"runtimeClass": {"enabled": True}}})
    assert with_gvisor.find("RuntimeClass", "gvisor")["handler"] == "runsc"


def test_chart_ships_the_compiled_pipeline_and_uploads_it(chart_default):
    compiled = COMPILED_DIR / f"diffucoder-{__version__}.yaml"
    if not any(COMPILED_DIR.glob("*.yaml")):
        pytest.skip("pipelines/compiled/ is empty: run `make compile` then `make chart-sync`")
    copy = CHART_DIR / "files" / "pipeline" / compiled.name
    assert copy.read_bytes() == compiled.read_bytes(), \
        f"{copy} differs from {compiled}: run `make chart-sync`"
    data = chart_default.find("ConfigMap", "diffucoder-pipeline")["data"]
    assert list(yaml.safe_load_all(data[compiled.name])) == list(yaml.safe_load_all(compiled.read_text()))
    (job,) = [o for o in chart_default.objects if o["metadata"]["name"].startswith(UPLOAD_JOB)]
    assert job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == ALL_IMAGES["base"]
    assert container["args"] == ["diffucoder", "pipeline", "upload", "--host", "$(KFP_HOST)",
                                 "--file", f"/pipeline/{compiled.name}",
                                 "--image-registry", ALL_IMAGES["base"].rsplit("/diffucoder-", 1)[0]]


def test_helm_test_hook_checks_every_bucket(chart_default):
    pod = chart_default.find("Pod", "diffucoder-test-store")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["python", "/scripts/check_store.py", "diffucoder"]
    scripts = chart_default.find("ConfigMap", "diffucoder-scripts")["data"]
    assert set(scripts) == {"check_store.py", "ensure_buckets.py"}


def test_gpu_values_schedule_training_and_serving_on_gpu_nodes(chart_default, chart_gpu):
    runtime = chart_gpu.find("ServingRuntime", "diffucoder-runtime")["spec"]
    assert runtime["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert runtime["nodeSelector"] and runtime["tolerations"][0]["key"] == "nvidia.com/gpu"
    train = chart_gpu.find("TrainingRuntime", "diffucoder-torch")["spec"]["template"]["spec"]
    pod = train["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert pod["nodeSelector"] and pod["tolerations"]
    default_text = yaml.safe_dump_all(chart_default.objects)
    assert "nvidia.com/gpu" not in default_text


def test_notes_tell_the_next_commands_without_printing_credentials():
    with helm_python.Chart.load(CHART_DIR) as chart:
        notes = chart.render(name="diffucoder", namespace=NAMESPACE)["diffucoder/templates/NOTES.txt"]
    for expected in ("helm test diffucoder", "port-forward svc/diffucoder-minio",
                     "kfp --endpoint", "pipeline create", "run create", "| base64 -d)\""):
        assert expected in notes
    # Credentials go into variables, never echoed.
    assert "echo $AWS" not in notes and "get secret diffucoder-s3 -o yaml" not in notes
    assert "store_secret=diffucoder-s3" in notes            # runs read the store with the chart's Secret
    with helm_python.Chart.load(CHART_DIR) as chart:
        notes = chart.render({"s3": {"existingSecret": "team-s3"}}, name="diffucoder",
                             namespace=NAMESPACE)["diffucoder/templates/NOTES.txt"]
    assert "store_secret=team-s3" in notes
