"""The chart's batch side: the pipeline upload cannot fail an install, Istio sidecars are opted
out where a pod must finish, the TrainingRuntime cleans up and can gang-schedule, MinIO is pinned
past its advisory."""
from datetime import datetime

import helm_python
import pytest
import yaml
from k8s_schema import validation_errors
from platform_support import CHART_DIR, render

UPLOAD_JOB = "diffucoder-pipeline-upload-"
ISTIO = {"sidecar.istio.io/inject": "false"}
# MinIO's fix of GHSA-jjjj-jwhf-8rgr / CVE-2025-62506 (privilege escalation through the session
# policies of service accounts and STS): the advisory names this release as the patched one.
MINIO_FIXED = "RELEASE.2025-10-15T17-29-55Z"


def schema_error(values: dict) -> str:
    with helm_python.Chart.load(CHART_DIR) as chart:
        try:
            chart.validate_schema(values)
        except helm_python.HelmValuesError as err:
            return str(err)
    return ""


def upload_job(rendered) -> dict:
    (job,) = [o for o in rendered.objects if o["metadata"]["name"].startswith(UPLOAD_JOB)]
    return job


def release_time(tag: str) -> datetime:
    return datetime.strptime(tag, "RELEASE.%Y-%m-%dT%H-%M-%SZ")


# -- the pipeline upload ----------------------------------------------------------------------


def test_the_upload_is_a_plain_job_so_an_unreachable_kfp_cannot_fail_the_install(chart_default):
    job = upload_job(chart_default)
    # A helm hook is waited for, and a failed one fails `helm install`; a plain Job is not.
    assert not any(k.startswith("helm.sh/hook") for k in (job["metadata"].get("annotations") or {}))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["pipelineUpload"]
    assert job["spec"]["backoffLimit"] == values["backoffLimit"] >= 3   # retries while KFP comes up
    assert job["spec"]["activeDeadlineSeconds"] == values["activeDeadlineSeconds"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The bucket Job stays a hook: without buckets the store is unusable, so the install should fail.
    buckets = chart_default.find("Job", "diffucoder-minio-buckets")
    assert buckets["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_the_upload_job_is_renamed_whenever_its_immutable_template_changes(chart_default):
    name = upload_job(chart_default)["metadata"]["name"]
    assert len(name) <= 63 and name == upload_job(render())["metadata"]["name"]   # stable across renders
    changed = {
        "kfpHost": render({"pipelineUpload": {"kfpHost": "http://ml-pipeline.other:8888"}}),
        "image tag": render({"images": {"tag": "0.2.0"}}),
        "istio": render({"istio": {"sidecarOptOut": False}}),
        "backoff": render({"pipelineUpload": {"backoffLimit": 9}}),
    }
    for what, rendered in changed.items():
        assert upload_job(rendered)["metadata"]["name"] != name, what
    # What a pod template does not hold keeps the name (Helm then leaves the Job alone).
    assert upload_job(render({"minio": {"buckets": ["diffucoder", "mlpipeline"]}}))["metadata"]["name"] == name


def test_notes_name_the_upload_job_to_read_its_log(chart_default):
    with helm_python.Chart.load(CHART_DIR) as chart:
        notes = chart.render(name="diffucoder", namespace="ml-team")["diffucoder/templates/NOTES.txt"]
    assert f"logs job/{upload_job(chart_default)['metadata']['name']}" in notes


# -- Istio ------------------------------------------------------------------------------------


def pod_metadata(obj: dict) -> list[tuple[str, dict]]:
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] == "Pod":
        return [(where, obj["metadata"])]
    if obj["kind"] in ("Job", "StatefulSet"):
        return [(where, obj["spec"]["template"]["metadata"])]
    if obj["kind"] == "TrainingRuntime":
        return [(f"{where}:{job['name']}", job["template"]["spec"]["template"]["metadata"])
                for job in obj["spec"]["template"]["spec"]["replicatedJobs"]]
    return []


def test_pods_that_must_finish_and_minio_opt_out_of_istio_sidecars(chart_default):
    pods = [p for obj in chart_default.objects for p in pod_metadata(obj)]
    assert {where.split("/")[0] for where, _ in pods} == {"Pod", "Job", "StatefulSet", "TrainingRuntime"}
    for where, meta in pods:
        assert (meta.get("annotations") or {}).items() >= ISTIO.items(), where
    # The test pod keeps its hook annotations beside the opt-out.
    assert chart_default.find("Pod", "diffucoder-test-store")["metadata"]["annotations"]["helm.sh/hook"] == "test"
    off = render({"istio": {"sidecarOptOut": False}})
    for where, meta in (p for obj in off.objects for p in pod_metadata(obj)):
        assert "sidecar.istio.io/inject" not in (meta.get("annotations") or {}), where
    assert [e for o in off.objects for e in validation_errors(o)] == []


# -- the TrainingRuntime ----------------------------------------------------------------------


def runtime_spec(rendered) -> dict:
    return rendered.find("TrainingRuntime", "diffucoder-torch")["spec"]


def pod_spec(spec: dict) -> dict:
    return spec["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]


def test_finished_trainjob_pods_are_cleaned_up_by_the_jobset_ttl(chart_default):
    spec = runtime_spec(chart_default)
    assert spec["template"]["spec"]["ttlSecondsAfterFinished"] == 86400
    kept = runtime_spec(render({"trainer": {"runtime": {"ttlSecondsAfterFinished": None}}}))
    assert "ttlSecondsAfterFinished" not in kept["template"]["spec"]
    assert "podGroupPolicy" not in spec and "schedulerName" not in pod_spec(spec)   # gang: opt-in


@pytest.mark.parametrize("policy, scheduler, expected_scheduler", [
    ({"coscheduling": {"scheduleTimeoutSeconds": 600}}, "", None),
    ({"coscheduling": {"scheduleTimeoutSeconds": 600}}, "scheduler-plugins-scheduler", "scheduler-plugins-scheduler"),
    ({"volcano": {}}, "", "volcano"),
    ({"volcano": {"networkTopology": {"mode": "hard", "highestTierAllowed": 1}}}, "", "volcano"),
])
def test_gang_scheduling_renders_a_valid_pod_group_policy(policy, scheduler, expected_scheduler):
    values = {"trainer": {"runtime": {"podGroupPolicy": policy, "schedulerName": scheduler}}}
    assert schema_error(values) == ""
    rendered = render(values)
    runtime = rendered.find("TrainingRuntime", "diffucoder-torch")
    assert runtime["spec"]["podGroupPolicy"] == policy
    assert pod_spec(runtime["spec"]).get("schedulerName") == expected_scheduler
    assert validation_errors(runtime) == []   # the CRD schema of Kubeflow Trainer's TrainingRuntime


@pytest.mark.parametrize("policy, where", [
    ({"coscheduling": {"scheduleTimeoutSeconds": 60}, "volcano": {}}, "/trainer/runtime/podGroupPolicy"),
    ({"kueue": {}}, "/trainer/runtime/podGroupPolicy"),
    ({"coscheduling": {"scheduleTimeoutSeconds": 0}}, "/trainer/runtime/podGroupPolicy/coscheduling"),
])
def test_the_schema_refuses_a_pod_group_policy_trainer_does_not_know(policy, where):
    error = schema_error({"trainer": {"runtime": {"podGroupPolicy": policy}}})
    assert error and f"'{where}" in error, error


def test_the_schema_check_of_the_runtime_is_not_vacuous():
    runtime = render().find("TrainingRuntime", "diffucoder-torch")
    runtime["spec"]["podGroupPolicy"] = {"gang": {}}
    runtime["spec"]["template"]["spec"]["ttlSecondsAfterFinished"] = "a day"
    errors = validation_errors(runtime)
    assert any("gang" in e for e in errors) and any("a day" in e for e in errors)


# -- MinIO ------------------------------------------------------------------------------------


def test_minio_is_pinned_at_or_after_the_release_that_fixes_its_advisory(chart_default):
    """The default is the project's build of that release (images/minio, tagged with the release by
    images/build.sh) in images.registry: MinIO published the release as source only."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    tag = values["minio"]["image"]["tag"]
    assert release_time(tag) >= release_time(MINIO_FIXED) and values["minio"]["image"]["repository"] == ""
    image = chart_default.find("StatefulSet", "diffucoder-minio")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{values['images']['registry']}/diffucoder-minio:{tag}"
    dockerfile = (CHART_DIR.parents[1] / "images" / "minio" / "Dockerfile").read_text()
    assert f"ARG MINIO_SOURCE_TAG={tag}\n" in dockerfile   # what the image is built from, and tagged with


@pytest.mark.parametrize("tag", ["RELEASE.2025-04-22T22-12-26Z", "RELEASE.2025-10-15T17-29-54Z"])
def test_an_older_minio_release_is_refused_naming_the_advisory(tag):
    with pytest.raises(helm_python.HelmRenderError, match=f"minio.image.tag {tag} predates {MINIO_FIXED}.*"
                                                          "GHSA-jjjj-jwhf-8rgr"):
        render({"minio": {"image": {"tag": tag}}})


def test_a_tag_in_another_scheme_is_the_operators_call():
    image = render({"minio": {"image": {"repository": "registry.example/minio", "tag": "2025.10.15-build3"}}}).find(
        "StatefulSet", "diffucoder-minio")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/minio:2025.10.15-build3"
