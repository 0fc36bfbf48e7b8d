"""One registry and its pull Secrets, set once in the chart's values, reach every image: the chart's
pods (Jobs, MinIO, the helm test pod), the ServingRuntime KServe runs InferenceServices with, the
TrainingRuntime of TrainJobs, the ServiceAccounts (whose pull Secrets go to the pods that run under
them: pipeline steps, PyTorchJob and InferenceService pods), and the pipeline the upload Job
uploads, whose every step and job image is then in that registry (the Job's own command, run
against an in-process KFP API). The pipeline's side: tests/pipelines/test_pipeline_registry.py."""
import json
import re

import pytest
import yaml
from platform_support import render

from diffucoder import __version__
from diffucoder.cli import main
from diffucoder.kube.config import DEFAULT_REGISTRY
from tests.pipelines.fake_kfp_server import FakeKFP

REGISTRY = "registry.example.com:5000/team/ml"
PULL_SECRETS = ["regcred", "mirror-cred"]
# An image reference: <registry>/diffucoder-<image>:<tag> (not a Service or Job named diffucoder-minio-*).
IMAGE = re.compile(r"[\w.:-]+(?:/[\w.-]+)*/diffucoder-(?:base|train|serve|minio):[\w.@:-]+")
MINIO_RELEASE = "RELEASE.2025-10-15T17-29-55Z"


@pytest.fixture(scope="module")
def custom():
    return render({"images": {"registry": REGISTRY, "pullSecrets": PULL_SECRETS}})


def pod_specs(rendered) -> list[tuple[str, dict]]:
    """(object, pod spec) of every pod template the chart renders, ServingRuntime included."""
    out = []
    for obj in rendered.objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = obj.get("spec", {})
        if obj["kind"] == "Pod":
            out.append((name, spec))
        elif obj["kind"] in ("Job", "StatefulSet", "Deployment"):
            out.append((name, spec["template"]["spec"]))
        elif obj["kind"] == "ServingRuntime":
            out.append((name, spec))
        elif obj["kind"] == "TrainingRuntime":
            for job in spec["template"]["spec"]["replicatedJobs"]:
                out.append((name, job["template"]["spec"]["template"]["spec"]))
    return out


def test_every_image_of_the_chart_is_in_the_registry_and_pulled_with_its_secrets(custom):
    specs = pod_specs(custom)
    kinds = {name.split("/")[0] for name, _ in specs}
    assert kinds >= {"Job", "StatefulSet", "Pod", "ServingRuntime", "TrainingRuntime"}
    for name, spec in specs:
        images = [c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])]
        assert images and all(i.startswith(f"{REGISTRY}/diffucoder-") for i in images), (name, images)
        assert spec.get("imagePullSecrets") == [{"name": s} for s in PULL_SECRETS], name
    minio = custom.find("StatefulSet", "diffucoder-minio")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert minio == f"{REGISTRY}/diffucoder-minio:{MINIO_RELEASE}"   # built from source by images/build.sh
    for account in ("diffucoder-pipeline-runner", "diffucoder-jobs", "diffucoder-kserve", "diffucoder-minio"):
        assert custom.find("ServiceAccount", account)["imagePullSecrets"] == [{"name": s} for s in PULL_SECRETS]


def test_no_other_registry_is_named_outside_the_shipped_pipeline(custom):
    """The ConfigMap carries the compiled pipeline as shipped; the upload Job moves it (next test)."""
    for obj in custom.objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "diffucoder-pipeline":
            continue
        refs = IMAGE.findall(json.dumps(obj))
        assert all(r.startswith(f"{REGISTRY}/") for r in refs), (obj["kind"], obj["metadata"]["name"], refs)
        assert DEFAULT_REGISTRY not in json.dumps(obj), (obj["kind"], obj["metadata"]["name"])


def test_without_pull_secrets_no_empty_lists_are_rendered():
    default = render()
    for account in ("diffucoder-pipeline-runner", "diffucoder-jobs", "diffucoder-kserve"):
        assert "imagePullSecrets" not in default.find("ServiceAccount", account)
    minio = default.find("StatefulSet", "diffucoder-minio")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert minio == f"{DEFAULT_REGISTRY}/diffucoder-minio:{MINIO_RELEASE}"


def test_the_upload_job_uploads_the_pipeline_in_the_registry_with_its_pull_secrets(custom, tmp_path):
    """Run the upload Job's container command (args, env, the mounted pipeline file) against an
    in-process KFP API: the pipeline version it creates names only the chart's registry, and every
    step pulls with the chart's pull Secrets."""
    (job,) = [o for o in custom.objects if o["kind"] == "Job" and "pipeline-upload" in o["metadata"]["name"]]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    configmap = custom.find("ConfigMap", "diffucoder-pipeline")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "pipeline")["mountPath"]
    for key, text in configmap["data"].items():
        (tmp_path / key).write_text(text)
    args = [a.replace(f"{mount}/", f"{tmp_path}/") for a in container["args"]]
    assert args[:3] == ["diffucoder", "pipeline", "upload"]
    with FakeKFP() as kfp:
        host = {e["name"]: e["value"] for e in container["env"]}["KFP_HOST"]
        assert main([a.replace("$(KFP_HOST)", kfp.host) for a in args[1:]]) == 0, host
        (pipeline,) = kfp.pipelines.values()
        named = [v for v in kfp.versions[pipeline["pipeline_id"]] if v["display_name"].startswith(__version__)]
        (version,) = named
        docs = list(yaml.safe_load_all(kfp.uploads[version["pipeline_version_id"]]))
    text = yaml.safe_dump_all(docs)
    refs = IMAGE.findall(text)
    assert refs and all(r.startswith(f"{REGISTRY}/") for r in refs) and DEFAULT_REGISTRY not in text
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(docs[0]["deploymentSpec"]["executors"])
    assert all([s["secretName"] for s in e["imagePullSecret"]] == PULL_SECRETS for e in executors.values())
