"""Every pod the chart or the overlays make runs locked down, with limits and pinned images."""
import pytest
from platform_support import OVERLAYS, pod_specs

LONG_RUNNING = ("StatefulSet", "Deployment", "DaemonSet", "ServingRuntime")


def pod_problems(where: str, spec: dict, has_pod_context: bool, kind: str) -> list[str]:
    problems = []
    pod_ctx = spec.get("securityContext", {}) if has_pod_context else {}
    if has_pod_context:
        if pod_ctx.get("runAsNonRoot") is not True:
            problems.append("pod runAsNonRoot is not true")
        if not pod_ctx.get("runAsUser"):
            problems.append("pod runAsUser is unset or 0")
        if pod_ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append("pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append("service account token is automounted")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{flag} is set")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        problems.append("mounts a hostPath")
    for c in spec.get("initContainers", []) + spec["containers"]:
        name, ctx = c["name"], c.get("securityContext", {})

        def effective(key):
            return ctx.get(key, pod_ctx.get(key))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if not effective("runAsUser"):
            problems.append(f"{name}: runAsUser is unset or 0")
        if (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type") \
                != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []) \
                or ctx.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities not dropped to none")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        resources = c.get("resources", {})
        for section in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(section, {}))
            if missing:
                problems.append(f"{name}: no {section} for {sorted(missing)}")
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
        if not tag or tag == "latest":
            problems.append(f"{name}: image {image!r} is not pinned to a tag")
        if kind in LONG_RUNNING and not (c.get("livenessProbe") and c.get("readinessProbe")):
            problems.append(f"{name}: long-running container without liveness/readiness probes")
    return [f"{where}: {p}" for p in problems]


def all_problems(objects: list[dict]) -> tuple[int, list[str]]:
    pods, problems = 0, []
    for obj in objects:
        for where, spec, has_ctx in pod_specs(obj):
            pods += 1
            problems += pod_problems(where, spec, has_ctx, obj["kind"])
    return pods, problems


@pytest.mark.parametrize("which", ["chart_default", "chart_gpu"])
def test_chart_pods_are_locked_down(which, request):
    pods, problems = all_problems(request.getfixturevalue(which).objects)
    assert pods == 8  # MinIO, 2 hook Jobs, 2 test pods, ServingRuntime, TrainingRuntime, sandbox
    assert problems == []


@pytest.mark.parametrize("overlay", ("base",) + OVERLAYS)
def test_overlay_pods_are_locked_down(overlay, kustomize_builds):
    pods, problems = all_problems(kustomize_builds[overlay])
    assert pods == 6  # the chart's, less the helm test pods
    assert problems == []


def test_the_checker_catches_an_insecure_pod():
    spec = {"securityContext": {"runAsUser": 0},
            "containers": [{"name": "app", "image": "nginx:latest",
                            "securityContext": {"privileged": True},
                            "resources": {"limits": {"cpu": "1"}}}]}
    problems = pod_problems("Pod/bad", spec, True, "Deployment")
    for expected in ("pod runAsNonRoot", "pod runAsUser", "token is automounted",
                     "app: privileged", "app: root filesystem", "no requests",
                     "no limits for ['memory']", "not pinned", "without liveness"):
        assert any(expected in p for p in problems), (expected, problems)
