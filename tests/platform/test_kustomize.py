"""The kustomize base and overlays: in sync with the chart, build, validate, GPU-equal to values-gpu."""
import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from platform_support import MANIFESTS_DIR, OVERLAYS, chart_sync, kustomize, tool
from k8s_schema import validation_errors

BASE_NAMESPACE = "diffucoder"


def test_base_is_the_chart_rendered_and_in_sync():
    stale = chart_sync.stale_files()
    assert stale == [], f"stale generated files {stale}: run `make chart-sync`"


def test_base_has_the_charts_objects_less_secret_and_helm_test(chart_default, kustomize_builds):
    chart = {(k, n) for k, n in chart_default.kinds_names()
             if k != "Secret" and n not in ("diffucoder-test-store", "diffucoder-test-sandbox")}
    for overlay, objs in kustomize_builds.items():
        assert {(o["kind"], o["metadata"]["name"]) for o in objs} == chart, overlay


@pytest.mark.parametrize("overlay", ("base",) + OVERLAYS)
def test_overlay_objects_validate_and_live_in_one_namespace(overlay, kustomize_builds):
    objs = kustomize_builds[overlay]
    assert [e for o in objs for e in validation_errors(o)] == []
    assert {o["metadata"].get("namespace") for o in objs} == {BASE_NAMESPACE}
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == BASE_NAMESPACE
    assert not [o for o in objs if "helm.sh/chart" in o["metadata"].get("labels", {})]


def _find(objs, kind, name):
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _scheduling(objs):
    """What the GPU settings change: resources, node selection, the serve preset and load
    budget, MinIO's size."""
    serving = _find(objs, "ServingRuntime", "diffucoder-runtime")["spec"]
    train_job = _find(objs, "TrainingRuntime", "diffucoder-torch")["spec"]["template"]["spec"]
    train = train_job["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    minio = _find(objs, "StatefulSet", "diffucoder-minio")["spec"]
    return {
        "serving": (serving["containers"][0]["resources"], serving.get("nodeSelector"),
                    serving.get("tolerations"), serving["containers"][0]["args"],
                    serving["containers"][0]["startupProbe"]),
        "train": (train["containers"][0]["resources"], train.get("nodeSelector"),
                  train.get("tolerations"), train["volumes"]),
        "minio": (minio["template"]["spec"]["containers"][0]["resources"],
                  minio["volumeClaimTemplates"][0]["spec"]["resources"]),
    }


def test_gpu_overlay_equals_the_chart_with_gpu_values(chart_gpu, kustomize_builds):
    assert _scheduling(kustomize_builds["gpu-cluster"]) == _scheduling(chart_gpu.objects)


def _memory_gib(quantity: str) -> float:
    units = {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_local_overlay_is_small_and_has_no_gpu(kustomize_builds):
    local, base = kustomize_builds["local"], kustomize_builds["base"]
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(local)
    small, large = _scheduling(local), _scheduling(base)
    for part in ("serving", "train", "minio"):
        assert _memory_gib(small[part][0]["limits"]["memory"]) < \
            _memory_gib(large[part][0]["limits"]["memory"]), part
    assert small["minio"][1]["requests"]["storage"] == "5Gi"


def test_gvisor_component_equals_the_charts_runtime_class(tmp_path):
    from platform_support import render

    rel = Path(os.path.relpath(MANIFESTS_DIR, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [{rel / 'base'}]
        components: [{rel / 'components' / 'sandbox-gvisor'}]
        """))
    (built,) = [o for o in kustomize(tmp_path) if o["kind"] == "RuntimeClass"]
    chart = render({"sandbox": {"runtimeClass": {"enabled": True}}}).find("RuntimeClass", "gvisor")
    assert (built["metadata"]["name"], built["handler"]) == \
        (chart["metadata"]["name"], chart["handler"]) == ("gvisor", "runsc")
    assert validation_errors(built) == []


FAKE_KUBECTL = """\
#!{python}
# Stands in for a cluster: records calls; `create` goes to the real kubectl, client-side.
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "get" in args:
    sys.exit(0 if os.environ.get("FAKE_EXISTS") else 1)
if "create" in args:
    env_arg = next(a for a in args if a.startswith("--from-env-file="))
    with open(env_arg.split("=", 1)[1]) as pipe:
        content = pipe.read()
    copy = os.environ["FAKE_LOG"] + ".env"
    with open(copy, "w") as f:
        f.write(content)
    args = [f"--from-env-file={{copy}}" if a == env_arg else a for a in args]
    out = subprocess.run([os.environ["REAL_KUBECTL"], *args, "--dry-run=client", "-o", "json"],
                         capture_output=True, text=True)
    with open(os.environ["FAKE_LOG"] + ".secret.json", "w") as f:
        f.write(out.stdout)
    sys.exit(out.returncode)
"""


def _run_create_secret(tmp_path, exists=False):
    fake = tmp_path / "kubectl"
    fake.write_text(FAKE_KUBECTL.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "KUBECTL": str(fake), "FAKE_LOG": str(log),
           "REAL_KUBECTL": tool("kubectl"), "KUBECONFIG": str(tmp_path / "none")}
    if exists:
        env["FAKE_EXISTS"] = "1"
    result = subprocess.run(["bash", str(MANIFESTS_DIR / "create-secret.sh"), "ml-team"],
                            env=env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls, log


def test_create_secret_makes_random_keys_off_the_command_line(tmp_path):
    result, calls, log = _run_create_secret(tmp_path)
    assert result.returncode == 0, result.stderr
    secret = json.loads(Path(str(log) + ".secret.json").read_text())
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["DIFFUCODER_S3_ENDPOINT"] == "diffucoder-minio:9000"
    assert data["DIFFUCODER_S3_SECURE"] == "false"
    assert len(data["AWS_ACCESS_KEY_ID"]) == 20 and data["AWS_ACCESS_KEY_ID"].isalnum()
    assert len(data["AWS_SECRET_ACCESS_KEY"]) == 40 and data["AWS_SECRET_ACCESS_KEY"].isalnum()
    flat = " ".join(a for call in calls for a in call)
    assert data["AWS_SECRET_ACCESS_KEY"] not in flat and data["AWS_SECRET_ACCESS_KEY"] not in \
        result.stdout + result.stderr
    annotate = next(c for c in calls if "annotate" in c)
    assert "serving.kserve.io/s3-usehttps=0" in annotate
    assert "serving.kserve.io/s3-endpoint=diffucoder-minio:9000" in annotate


def test_create_secret_keeps_an_existing_secret(tmp_path):
    result, calls, _ = _run_create_secret(tmp_path, exists=True)
    assert result.returncode == 0 and "kept" in result.stdout
    assert not [c for c in calls if "create" in c or "annotate" in c]
