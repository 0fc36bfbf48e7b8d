"""The launcher against an in-memory API server with a scripted TrainJob/PyTorchJob controller."""
import os
import signal

import kmock
import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.kube import (JOB_KINDS, LaunchCancelled, LaunchError, TrainingJobSpec, launch,
                             render_job)
from diffucoder.stages.cluster import job_command
from diffucoder.stages.registry import stage
from diffucoder.stages.training import wiring
from diffucoder.kube.objects import RUN_ID, SPEC_HASH, spec_hash, stamp
from kube_emulator import (PYTORCHJOBS, TRAINING_RUNTIMES, TRAINJOBS, add_pod, condition, log_lines, pod,
                           set_status)

NS = "ml-team"
FAST = {"timeout_s": 5.0, "poll_s": 0.01}
RESOURCES = {"trainjob": TRAINJOBS, "pytorchjob": PYTORCHJOBS}
KIND_NAMES = {"trainjob": "TrainJob", "pytorchjob": "PyTorchJob"}


def job(kind: str = "trainjob", name: str = "r1-pretrain", steps: int = 10, run_id: str = "") -> dict:
    values = wiring(stage("pretrain"), store_root="s3://diffucoder", run_name="r1",
                    data_uri="s3://diffucoder/runs/r1/curated")
    spec = TrainingJobSpec(name=name, namespace=NS, image="ghcr.io/x/diffucoder-train:0.1.0",
                           command=job_command(stage("pretrain"), "tiny-cpu", values, [f"train.steps={steps}"]),
                           nodes=2, cpu="2", memory="4Gi", run_id=run_id)
    return render_job(spec, kind)


class Log(list):
    """The ``log`` callable: keeps every line; ``.training`` are the pod's own lines."""

    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def training(self) -> list[str]:
        return [line for line in self if not line.startswith("[launch]")]


def master(kind: str, name: str = "r1-pretrain", **kw) -> dict:
    info = JOB_KINDS[KIND_NAMES[kind]]
    return pod(f"{name}-{'node-0-0-abcde' if kind == 'trainjob' else 'master-0'}", NS,
               info.master_selector(name), container=info.container, **kw)


def worker(kind: str, name: str = "r1-pretrain") -> dict:
    info = JOB_KINDS[KIND_NAMES[kind]]
    labels = ({**info.master_selector(name), "batch.kubernetes.io/job-completion-index": "1"}
              if kind == "trainjob" else {**info.master_selector(name),
                                          "training.kubeflow.org/replica-type": "worker"})
    return pod(f"{name}-worker-1", NS, labels, container=info.container)


def start_pods(kind: str, lines: list[str]):
    def step(cluster, obj):
        pods = [master(kind), worker(kind)]
        for p in pods:
            add_pod(cluster, p)
        cluster.logs[pods[0]["metadata"]["name"]] = list(lines)
        cluster.logs[pods[1]["metadata"]["name"]] = ["2025-01-01T00:00:00Z a worker's line"]
    return step


def more_logs(kind: str, lines: list[str]):
    def step(cluster, obj):
        cluster.logs[master(kind)["metadata"]["name"]] += lines
    return step


def finish(kind: str, ctype: str = "", reason: str = "", message: str = "", then=None):
    ctype = ctype or JOB_KINDS[KIND_NAMES[kind]].succeeded

    def step(cluster, obj):
        if then:
            then(cluster, obj)
        set_status(cluster, RESOURCES[kind], obj, {"conditions": [condition(ctype, reason, message)]})
    return step


@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
def test_creates_follows_the_master_log_and_succeeds(cluster, kind):
    resource = RESOURCES[kind]
    cluster.on_fetch(resource, start_pods(kind, log_lines(0, 3)), more_logs(kind, log_lines(3, 3)),
                     finish(kind, reason="Done", message="all nodes exited 0",
                            then=more_logs(kind, log_lines(6, 2))))
    log = Log()
    result = launch(job(kind), api_client=cluster.api_client(), log=log, **FAST)

    assert result.created and result.kind == KIND_NAMES[kind] and result.message == "all nodes exited 0"
    # Every line of the rank-0 pod exactly once, in order, although each read served them all;
    # the worker's log is not mixed in.
    assert log.training == [f"step {i}" for i in range(8)] and result.log_lines == 8
    reads = cluster.log_requests
    assert {r["name"] for r in reads} == {master(kind)["metadata"]["name"]}
    assert all(r["params"]["timestamps"].lower() == "true" for r in reads)
    assert "sinceSeconds" not in reads[0]["params"] and all("sinceSeconds" in r["params"] for r in reads[1:])
    stored = cluster.get(resource, NS, "r1-pretrain")
    assert stored["metadata"]["annotations"][SPEC_HASH] == spec_hash(job(kind))
    assert result.manifest == stamp(job(kind))
    assert not cluster.requests("DELETE")


def test_a_retry_adopts_the_job_it_already_created(cluster):
    cluster.on_fetch(TRAINJOBS, start_pods("trainjob", log_lines(0, 2)), finish("trainjob"))
    first = launch(job(), api_client=cluster.api_client(), log=Log(), **FAST)
    log = Log()
    second = launch(job(), api_client=cluster.api_client(), log=log, **FAST)
    assert first.created and not second.created
    assert any("adopted" in line for line in log)
    assert len(cluster.requests("POST", TRAINJOBS)) == 2  # the second one answered 409
    assert not cluster.requests("DELETE") and cluster.get(TRAINJOBS, NS, "r1-pretrain") is not None


def test_a_different_job_of_the_same_name_is_never_overwritten(cluster):
    cluster.on_fetch(TRAINJOBS, finish("trainjob"))
    launch(job(steps=10), api_client=cluster.api_client(), log=Log(), **FAST)
    with pytest.raises(LaunchError, match="already exists with a different spec"):
        launch(job(steps=20), api_client=cluster.api_client(), log=Log(), **FAST)
    stored = cluster.get(TRAINJOBS, NS, "r1-pretrain")
    assert stored["metadata"]["annotations"][SPEC_HASH] == spec_hash(job(steps=10))
    assert not cluster.requests("DELETE")


def test_an_identical_job_that_failed_is_replaced_on_retry(cluster):
    failed = stamp(job())
    failed["status"] = {"conditions": [condition("Failed", "TrainJobFailed", "node 1 exited 1")]}
    cluster.put(TRAINJOBS, failed)
    cluster.on_fetch(TRAINJOBS, lambda c, obj: None, finish("trainjob"))
    result = launch(job(), api_client=cluster.api_client(), log=Log(), **FAST)
    assert result.created
    assert len(cluster.requests("DELETE", TRAINJOBS)) == 1
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain")["status"]["conditions"][0]["type"] == "Complete"


def test_failure_names_the_condition_and_the_pod_problems(cluster):
    oom = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}

    def crash(cluster_, obj):
        add_pod(cluster_, master("trainjob", last_state=oom))
        cluster_.logs[master("trainjob")["metadata"]["name"]] = log_lines(0, 1)

    cluster.on_fetch(TRAINJOBS, crash, finish("trainjob", "Failed", "TrainJobFailed",
                                              "jobset failed: node exceeded backoff"))
    log = Log()
    with pytest.raises(LaunchError) as err:
        launch(job(), api_client=cluster.api_client(), log=log, **FAST)
    text = str(err.value)
    assert "TrainJob ml-team/r1-pretrain failed: TrainJobFailed: jobset failed" in text
    assert "OOMKilled (exit code 137)" in text and "kept for inspection" in text
    assert sum("OOMKilled" in line for line in log) == 1  # reported once, not every poll
    assert log.training == ["step 0"]
    assert not cluster.requests("DELETE")


def test_timeout_deletes_the_job(cluster):
    unschedulable = condition("PodScheduled", "Unschedulable", "0/3 nodes have nvidia.com/gpu",
                              status="False")
    cluster.on_fetch(TRAINJOBS, lambda c, obj: add_pod(c, master("trainjob", phase="Pending",
                                                                 conditions=[unschedulable])))
    log = Log()
    with pytest.raises(LaunchError, match=r"timed out after 0.3 s.*Unschedulable.*deleted the job"):
        launch(job(), api_client=cluster.api_client(), log=log, timeout_s=0.3, poll_s=0.01)
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain") is None
    assert len(cluster.requests("DELETE", TRAINJOBS)) == 1
    assert sum("Unschedulable" in line for line in log) == 1


def test_pods_that_cannot_start_fail_early_and_delete_the_job(cluster):
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "manifest unknown"}}
    cluster.on_fetch(TRAINJOBS, lambda c, obj: add_pod(c, master("trainjob", phase="Pending",
                                                                 state=waiting)))
    with pytest.raises(LaunchError, match="cannot start: pod .* ImagePullBackOff .manifest unknown."):
        launch(job(), api_client=cluster.api_client(), log=Log(), stuck_after_s=0.0, **FAST)
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain") is None


def test_sigterm_deletes_the_job_and_restores_the_handler(cluster):
    cluster.on_fetch(TRAINJOBS, start_pods("trainjob", log_lines(0, 3)))
    before = signal.getsignal(signal.SIGTERM)
    seen = Log()

    def log(line):  # KFP cancels a step by deleting its pod: the launcher gets SIGTERM
        seen(line)
        if line == "step 0":
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(LaunchCancelled, match="cancelled .SIGTERM.; deleted the job"):
        launch(job(), api_client=cluster.api_client(), log=log, **FAST)
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain") is None
    assert signal.getsignal(signal.SIGTERM) == before
    assert any("deleted TrainJob ml-team/r1-pretrain (cancelled)" in line for line in seen)


def test_keyboard_interrupt_deletes_the_job(cluster):
    cluster.on_fetch(TRAINJOBS, start_pods("trainjob", log_lines(0, 3)))

    def log(line):
        if line == "step 1":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(job(), api_client=cluster.api_client(), log=log, **FAST)
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain") is None


def test_a_passing_api_error_is_retried(cluster):
    outage = kmock.KubernetesError(status=503, reason="ServiceUnavailable", message="etcd leader changed")
    cluster.on_fetch(TRAINJOBS, lambda c, obj: outage, finish("trainjob"))
    log = Log()
    assert launch(job(), api_client=cluster.api_client(), log=log, **FAST).created
    assert any("API error, will retry" in line and "503" in line for line in log)


def test_a_job_deleted_by_someone_else_is_an_error(cluster):
    def vanish(c, obj):
        c.objects[TRAINJOBS, NS, obj["metadata"]["name"]].delete()
        return kmock.KubernetesObjectNotFoundError()

    cluster.on_fetch(TRAINJOBS, vanish)
    with pytest.raises(LaunchError, match="disappeared while running"):
        launch(job(), api_client=cluster.api_client(), log=Log(), **FAST)


def test_only_training_jobs_are_launched(cluster):
    with pytest.raises(DiffucoderError, match="only trainer.kubeflow.org/v1alpha1 TrainJob"):
        launch({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "namespace": NS}},
               api_client=cluster.api_client(), **FAST)
    with pytest.raises(LaunchError, match="must be > 0"):
        launch(job(), api_client=cluster.api_client(), timeout_s=0, poll_s=1)
    assert not cluster.requests("POST")


def test_without_the_right_to_read_pods_it_follows_the_status_alone(cluster):
    cluster.handler[kmock.action.LIST, kmock.resource("v1/pods")] << kmock.KubernetesError(
        status=403, reason="Forbidden", message='pods is forbidden: User "system:serviceaccount:x"')
    cluster.on_fetch(TRAINJOBS, lambda c, obj: None, finish("trainjob"))
    log = Log()
    assert launch(job(), api_client=cluster.api_client(), log=log, **FAST).created
    assert sum("cannot read the job's pods or logs (403" in line for line in log) == 1


# -- a retry of this run, or a new run reusing the run name ---------------------------------------


def left_by(run_id: str, state: str) -> dict:
    """The job an earlier launch left: created by run ``run_id`` ("" = no run id), now ``state``."""
    old = stamp(job(run_id=run_id))
    if state != "running":
        ctype = "Complete" if state == "succeeded" else "Failed"
        old["status"] = {"conditions": [condition(ctype, "Done" if state == "succeeded" else "Failed")]}
    return old


def test_a_retry_of_the_same_run_adopts_its_finished_job(cluster):
    cluster.put(TRAINJOBS, left_by("run-a", "succeeded"))
    log = Log()
    result = launch(job(run_id="run-a"), api_client=cluster.api_client(), log=log, **FAST)
    assert not result.created and any("adopted" in line for line in log)
    assert not cluster.requests("DELETE")


@pytest.mark.parametrize("state", ["succeeded", "failed"])
@pytest.mark.parametrize("before", ["run-a", ""])
def test_a_new_run_replaces_a_finished_job_instead_of_inheriting_it(cluster, state, before):
    cluster.put(TRAINJOBS, left_by(before, state))
    cluster.on_fetch(TRAINJOBS, lambda c, obj: None, finish("trainjob"))
    log = Log()
    result = launch(job(run_id="run-b"), api_client=cluster.api_client(), log=log, **FAST)
    # Before the fix the completed job was adopted: the step "succeeded" without training.
    assert result.created
    assert len(cluster.requests("DELETE", TRAINJOBS)) == 1 and len(cluster.requests("POST", TRAINJOBS)) == 2
    live = cluster.get(TRAINJOBS, NS, "r1-pretrain")
    assert live["metadata"]["annotations"][RUN_ID] == "run-b"
    assert live["status"]["conditions"][0]["type"] == "Complete"
    other = f"run {before}" if before else "a launch outside a pipeline run (no run id)"
    assert any(f"finished job ({state}) of {other}; this is run run-b" in line for line in log)


@pytest.mark.parametrize("before", ["run-a", ""])
def test_a_running_job_of_another_run_is_an_error_and_is_left_alone(cluster, before):
    cluster.put(TRAINJOBS, left_by(before, "running"))
    with pytest.raises(LaunchError, match=r"belongs to .* has not finished \(running\); this is run run-b.*"
                                          "another run_name"):
        launch(job(run_id="run-b"), api_client=cluster.api_client(), log=Log(), **FAST)
    assert not cluster.requests("DELETE")
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain")["metadata"].get("annotations", {}).get(RUN_ID, "") == before


# -- pods the scheduler cannot place ------------------------------------------------------------


def test_pods_unschedulable_too_long_fail_with_the_schedulers_reason_and_delete_the_job(cluster):
    reason = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available"
    unschedulable = condition("PodScheduled", "Unschedulable", reason, status="False")
    cluster.on_fetch(TRAINJOBS, lambda c, obj: add_pod(c, master("trainjob", phase="Pending",
                                                                 conditions=[unschedulable])))
    with pytest.raises(LaunchError) as err:
        launch(job(), api_client=cluster.api_client(), log=Log(), timeout_s=30, poll_s=0.01,
               unschedulable_after_s=0.2)
    text = str(err.value)
    assert "cannot be scheduled: pod r1-pretrain-node-0-0-abcde: Unschedulable" in text
    assert "3 Insufficient nvidia.com/gpu" in text and "training.unschedulable_after_s" in text
    assert "deleted the job" in text and "timed out" not in text
    assert cluster.get(TRAINJOBS, NS, "r1-pretrain") is None


def test_pods_placed_before_the_limit_carry_on(cluster):
    unschedulable = condition("PodScheduled", "Unschedulable", "waiting for a node", status="False")
    cluster.on_fetch(TRAINJOBS,
                     lambda c, obj: add_pod(c, master("trainjob", phase="Pending", conditions=[unschedulable])),
                     start_pods("trainjob", log_lines(0, 2)), finish("trainjob"))
    log = Log()
    result = launch(job(), api_client=cluster.api_client(), log=log, unschedulable_after_s=30, **FAST)
    assert result.created and log.training == ["step 0", "step 1"]
    assert any("Unschedulable (waiting for a node)" in p for p in result.problems)


# -- clean-up after success ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
def test_delete_after_success_removes_the_job_once_its_log_is_read(cluster, kind):
    cluster.on_fetch(RESOURCES[kind], start_pods(kind, log_lines(0, 2)),
                     finish(kind, then=more_logs(kind, log_lines(2, 1))))
    log = Log()
    launch(job(kind), api_client=cluster.api_client(), log=log, delete_after_success=True, **FAST)
    assert log.training == ["step 0", "step 1", "step 2"]
    assert cluster.get(RESOURCES[kind], NS, "r1-pretrain") is None
    assert len(cluster.requests("DELETE", RESOURCES[kind])) == 1


# -- gang scheduling of a TrainJob ----------------------------------------------------------------


def training_runtime(pod_group_policy: dict | None) -> dict:
    spec = {"mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {"spec": {"replicatedJobs": [{"name": "node", "template": {"spec": {"template": {
                "spec": {"containers": [{"name": "node", "image": "img"}]}}}}}]}}}
    if pod_group_policy is not None:
        spec["podGroupPolicy"] = pod_group_policy
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime",
            "metadata": {"name": "diffucoder-torch", "namespace": NS}, "spec": spec}


@pytest.mark.parametrize("policy", [{"coscheduling": {"scheduleTimeoutSeconds": 300}}, {"volcano": {}}])
def test_gang_scheduling_launches_on_a_runtime_with_a_pod_group_policy(cluster, policy):
    cluster.put(TRAINING_RUNTIMES, training_runtime(policy))
    cluster.on_fetch(TRAINJOBS, finish("trainjob"))
    log = Log()
    assert launch(job(), api_client=cluster.api_client(), log=log, gang_scheduling=True, **FAST).created
    assert any(f"has podGroupPolicy {sorted(policy)}" in line for line in log)


@pytest.mark.parametrize("runtime, message", [
    (training_runtime(None), "has no podGroupPolicy.*trainer.runtime.podGroupPolicy"),
    (training_runtime({}), "has no podGroupPolicy"),
    (None, "cannot read TrainingRuntime diffucoder-torch.*404"),
])
def test_gang_scheduling_fails_closed_before_creating_anything(cluster, runtime, message):
    if runtime is not None:
        cluster.put(TRAINING_RUNTIMES, runtime)
    with pytest.raises(LaunchError, match=message):
        launch(job(), api_client=cluster.api_client(), log=Log(), gang_scheduling=True, **FAST)
    assert not cluster.requests("POST", TRAINJOBS)
