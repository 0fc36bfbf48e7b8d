"""deploy(): idempotent apply, Ready wait, rollback — against an in-memory API with a fake KServe."""
import copy
import os
import signal

import pytest

from diffucoder.kube import (DeployError, InferenceSpec, ServingRuntimeSpec, deploy, isvc_state,
                             render_inference_service, render_serving_runtime)
from diffucoder.kube.objects import APPLIED_SPEC, SPEC_HASH, spec_hash, stamp
from kube_emulator import ISVCS, RUNTIMES, condition, set_status

NS = "ml-team"
URL = "http://diffucoder-r1.ml-team.example.com"
FAST = {"timeout_s": 5.0, "poll_s": 0.01}


@pytest.fixture(autouse=True)
def runtime(cluster):
    """The chart's ServingRuntime, as render_serving_runtime gives it."""
    cluster.put(RUNTIMES, render_serving_runtime(ServingRuntimeSpec(namespace=NS, image="serve:0.1.0")))


def isvc(memory: str = "8Gi", **kw) -> dict:
    return render_inference_service(InferenceSpec(
        name="diffucoder-r1", namespace=NS, storage_uri="s3://diffucoder/runs/r1/sft/.versions/v1",
        memory=memory, **kw))


def noop(cluster, obj):
    return None


def ready(url: str = URL, observed: int | None = None):
    def step(cluster, obj):
        status = {"url": url, "conditions": [condition("PredictorReady"), condition("Ready")]}
        if observed is not None:
            status["observedGeneration"] = observed
        set_status(cluster, ISVCS, obj, status)
    return step


def not_ready(reason: str = "RevisionMissing", message: str = "pulling the image"):
    def step(cluster, obj):
        set_status(cluster, ISVCS, obj, {"conditions": [
            condition("Ready", reason, message, status="False")]})
    return step


def failed_load(cluster, obj):
    set_status(cluster, ISVCS, obj, {
        "conditions": [condition("Ready", "ModelLoadFailed", status="False")],
        "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                        "lastFailureInfo": {"reason": "ModelLoadFailed",
                                            "message": "config.json: no such file"}}})


def bump_generation(to: int):
    """What the API server does on a spec change (kmock does not keep generations)."""
    def step(cluster, obj):
        cluster.objects[ISVCS, NS, obj["metadata"]["name"]].patch({"metadata": {"generation": to}})
    return step


def existing(cluster, obj: dict, ours: bool = True, extra_spec: dict | None = None) -> dict:
    """Put a Ready InferenceService as if an earlier deploy (``ours``) or a person made it."""
    live = stamp(obj, keep_spec=True) if ours else copy.deepcopy(obj)
    live["metadata"]["generation"] = 1
    if extra_spec:  # fields a webhook defaulted
        live["spec"]["predictor"]["model"].update(extra_spec)
    live["status"] = {"url": "http://old", "observedGeneration": 1, "conditions": [condition("Ready")]}
    cluster.put(ISVCS, live)
    return live


def test_creates_and_waits_until_ready(cluster):
    cluster.on_fetch(ISVCS, not_ready(), ready())
    log = []
    result = deploy(isvc(), api_client=cluster.api_client(), log=log.append, **FAST)
    assert (result.action, result.url) == ("created", URL)
    stored = cluster.get(ISVCS, NS, "diffucoder-r1")
    assert stored["spec"] == isvc()["spec"]
    assert stored["metadata"]["annotations"][SPEC_HASH] == spec_hash(isvc())
    assert "waiting: Ready: RevisionMissing (pulling the image)" in "\n".join(log)


def test_the_same_spec_twice_changes_nothing(cluster):
    cluster.on_fetch(ISVCS, ready())
    deploy(isvc(), api_client=cluster.api_client(), log=lambda s: None, **FAST)
    again = deploy(isvc(), api_client=cluster.api_client(), log=lambda s: None, **FAST)
    assert (again.action, again.url) == ("unchanged", URL)
    assert len(cluster.requests("POST", ISVCS)) == 1 and not cluster.requests("PATCH", ISVCS)


def test_a_new_spec_is_a_three_way_merge_patch_and_waits_for_the_new_generation(cluster):
    old = existing(cluster, isvc(memory="8Gi"), extra_spec={"protocolVersion": "v2"})
    cluster.on_fetch(ISVCS, noop, bump_generation(2), ready(observed=2))
    log = []
    result = deploy(isvc(memory="16Gi"), api_client=cluster.api_client(), log=log.append, **FAST)
    assert (result.action, result.url) == ("updated", URL)
    patch = cluster.requests("PATCH", ISVCS)[0].data
    assert patch["spec"] == {"predictor": {"model": {"resources": {
        "requests": {"memory": "16Gi"}, "limits": {"memory": "16Gi"}}}}}
    stored = cluster.get(ISVCS, NS, "diffucoder-r1")
    model = stored["spec"]["predictor"]["model"]
    assert model["resources"]["limits"]["memory"] == "16Gi"
    assert model["protocolVersion"] == "v2"  # the webhook's default survives: patch vs. what we applied
    assert stored["metadata"]["annotations"][SPEC_HASH] == spec_hash(isvc(memory="16Gi"))
    assert old["status"]["url"] != URL
    assert "the controller has not seen generation 2 yet" in "\n".join(log)


def test_a_failed_new_service_is_deleted(cluster):
    cluster.on_fetch(ISVCS, failed_load)
    with pytest.raises(DeployError, match=r"BlockedByFailedLoad \(ModelLoadFailed: config.json: no such "
                                          r"file\); rolled back: deleted the service"):
        deploy(isvc(), api_client=cluster.api_client(), log=lambda s: None, **FAST)
    assert cluster.get(ISVCS, NS, "diffucoder-r1") is None


@pytest.mark.parametrize("ours", [True, False], ids=["deployed-before", "made-by-hand"])
def test_a_failed_update_restores_the_previous_spec(cluster, ours):
    before = existing(cluster, isvc(memory="8Gi"), ours=ours)
    cluster.on_fetch(ISVCS, noop, failed_load)
    with pytest.raises(DeployError, match="rolled back: restored the previous spec"):
        deploy(isvc(memory="16Gi", gpus=1), api_client=cluster.api_client(), log=lambda s: None, **FAST)
    stored = cluster.get(ISVCS, NS, "diffucoder-r1")
    assert stored["spec"] == before["spec"]
    notes = stored["metadata"].get("annotations") or {}
    if ours:
        assert notes[SPEC_HASH] == before["metadata"]["annotations"][SPEC_HASH]
        assert notes[APPLIED_SPEC] == before["metadata"]["annotations"][APPLIED_SPEC]
    else:
        assert SPEC_HASH not in notes and APPLIED_SPEC not in notes


def test_timeout_rolls_back(cluster):
    cluster.on_fetch(ISVCS, not_ready("RevisionMissing", "0/2 nodes are available"))
    with pytest.raises(DeployError, match=r"not Ready before the timeout \(last: Ready: RevisionMissing "
                                          r"\(0/2 nodes are available\)\); rolled back: deleted"):
        deploy(isvc(), api_client=cluster.api_client(), log=lambda s: None, timeout_s=0.2, poll_s=0.01)
    assert cluster.get(ISVCS, NS, "diffucoder-r1") is None


def test_sigterm_rolls_back(cluster):
    existing(cluster, isvc(memory="8Gi"))
    cluster.on_fetch(ISVCS, noop, not_ready())
    before = signal.getsignal(signal.SIGTERM)

    def log(line):
        if line.startswith("[deploy] waiting"):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(DeployError, match=r"cancelled \(SIGTERM\); rolled back: restored"):
        deploy(isvc(memory="16Gi"), api_client=cluster.api_client(), log=log, **FAST)
    assert cluster.get(ISVCS, NS, "diffucoder-r1")["spec"] == isvc(memory="8Gi")["spec"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_missing_runtime_fails_before_anything_is_applied(cluster):
    cluster.objects[RUNTIMES, NS, "diffucoder-runtime"].delete()
    with pytest.raises(DeployError, match="no ServingRuntime 'diffucoder-runtime' in namespace ml-team "
                                          "nor a ClusterServingRuntime"):
        deploy(isvc(), api_client=cluster.api_client(), log=lambda s: None, **FAST)
    assert not cluster.requests("POST") and cluster.get(ISVCS, NS, "diffucoder-r1") is None


def test_only_inference_services_are_deployed(cluster):
    with pytest.raises(DeployError, match="takes a serving.kserve.io/v1beta1 InferenceService"):
        deploy({"apiVersion": "v1", "kind": "Pod"}, api_client=cluster.api_client(), **FAST)


@pytest.mark.parametrize("status,metadata,expected", [
    ({}, {}, ("pending", "no status yet")),
    ({"url": "http://x", "conditions": [condition("Ready")]}, {}, ("ready", "http://x")),
    ({"url": "http://x", "observedGeneration": 1, "conditions": [condition("Ready")]},
     {"generation": 2}, ("pending", "the controller has not seen generation 2 yet")),
    ({"modelStatus": {"transitionStatus": "InvalidSpec"}}, {}, ("failed", "InvalidSpec")),
    ({"conditions": [condition("IngressReady", "Pending", status="Unknown"), condition("Ready", status="False")]},
     {}, ("pending", "IngressReady: Pending")),
])
def test_isvc_state(status, metadata, expected):
    assert isvc_state({"metadata": metadata, "status": status}) == expected
