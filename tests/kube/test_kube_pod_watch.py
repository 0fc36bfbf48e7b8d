"""Pod problems, their time limits and log de-duplication, on plain pod dicts and stub readers."""
import json
from types import SimpleNamespace

from diffucoder.kube import JOB_KINDS, pod_watch
from diffucoder.kube.pod_watch import SCHEDULE, LogFollower, PodWatch, _split_timestamp, pod_problems
from kube_emulator import condition, pod


def test_pod_problems_name_what_went_wrong():
    oom = pod("p", "ns", {}, state={"running": {}},
              last_state={"terminated": {"reason": "OOMKilled", "exitCode": 137}})
    assert [str(p) for p in pod_problems(oom)] == ["pod p container node: OOMKilled (exit code 137)"]
    pulling = pod("p", "ns", {}, phase="Pending",
                  state={"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})
    (problem,) = pod_problems(pulling)
    assert (problem.reason, problem.category) == ("ImagePullBackOff", "image")
    crash = pod("p", "ns", {}, state={"waiting": {"reason": "CrashLoopBackOff"}},
                last_state={"terminated": {"reason": "Error", "exitCode": 1, "message": "Traceback..."}})
    assert [(p.reason, p.category) for p in pod_problems(crash)] == [("CrashLoopBackOff", ""), ("Error", "")]
    pending = pod("p", "ns", {}, phase="Pending", conditions=[
        condition("PodScheduled", "Unschedulable", "Insufficient nvidia.com/gpu", status="False")])
    assert "Unschedulable (Insufficient nvidia.com/gpu)" in str(pod_problems(pending)[0])
    assert pod_problems(pod("p", "ns", {})) == []


def test_timestamps_compare_whatever_the_fraction_length():
    a, _ = _split_timestamp("2025-01-01T00:00:01.5Z x")
    b, _ = _split_timestamp("2025-01-01T00:00:01.123456789Z y")
    c, text = _split_timestamp("2025-01-01T00:00:02Z the text")
    assert b < a < c and text == "the text"
    assert _split_timestamp("no timestamp here") == (None, "no timestamp here")


class StubCore:
    """Answers read_namespaced_pod_log with a growing log (the whole log every time)."""

    def __init__(self):
        self.lines: list[str] = []
        self.calls: list[dict] = []

    def read_namespaced_pod_log(self, name, namespace, **kw):
        self.calls.append(kw)
        return "".join(f"{line}\n" for line in self.lines)


def test_each_line_once_across_overlapping_reads_even_with_equal_timestamps():
    core, out = StubCore(), []
    follower = LogFollower(core, "ns", "node", out.append)
    running = pod("m", "ns", {})
    same = "2025-01-01T00:00:01.000000001Z"
    core.lines = [f"{same} a", f"{same} b"]
    follower.read(running)
    core.lines += [f"{same} c", "2025-01-01T00:00:02Z d", "untimestamped e"]
    follower.read(running)
    follower.read(running)
    assert [line for line in out if not line.startswith("[launch]")] == \
        ["a", "b", "c", "d", "untimestamped e", "untimestamped e"]
    assert "since_seconds" not in core.calls[0] or core.calls[0]["since_seconds"] is None
    assert core.calls[1]["since_seconds"] >= 1 and core.calls[1]["timestamps"] is True
    # A restarted master is a new pod: followed from its first line.
    core.lines = [f"{same} again"]
    follower.read(pod("m2", "ns", {}))
    assert out[-1] == "again" and any("following the log of pod m2" in line for line in out)
    follower.read(pod("m3", "ns", {}, phase="Pending"))  # not started: nothing is read
    assert len(core.calls) == 4


def test_only_a_pod_the_scheduler_cannot_place_counts_as_unschedulable():
    unschedulable = pod("p", "ns", {}, phase="Pending", conditions=[
        condition("PodScheduled", "Unschedulable", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu",
                  status="False")])
    (problem,) = pod_problems(unschedulable)
    assert (problem.reason, problem.category) == ("Unschedulable", SCHEDULE)
    # Held by a scheduling gate (e.g. Kueue's topology-aware scheduling): waiting on purpose.
    gated = pod("p", "ns", {}, phase="Pending", conditions=[
        condition("PodScheduled", "SchedulingGated", "scheduling gates present", status="False")])
    assert [(p.reason, p.category) for p in pod_problems(gated)] == [("SchedulingGated", "")]


class StubPods(StubCore):
    """Also answers list_namespaced_pod with ``self.items`` (raw JSON, as the watch reads it)."""

    def __init__(self):
        super().__init__()
        self.items: list[dict] = []

    def list_namespaced_pod(self, namespace, label_selector, _preload_content):
        return SimpleNamespace(data=json.dumps({"items": self.items}))


def test_each_kind_of_lasting_problem_has_its_own_limit(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(pod_watch.time, "monotonic", lambda: clock[0])
    core, info = StubPods(), JOB_KINDS["TrainJob"]
    watch = PodWatch(core, "ns", info, "r1", log=lambda line: None)
    labels = info.master_selector("r1")
    pending = condition("PodScheduled", "Unschedulable", "0/4 nodes: Insufficient nvidia.com/gpu", status="False")
    core.items = [pod("r1-node-0-0-a", "ns", labels, phase="Pending", conditions=[pending])]
    watch.poll()
    clock[0] += 700   # past the 600 s of a pod that cannot start, short of the hour to be placed
    watch.poll()
    assert watch.fatal(600, unschedulable_after_s=3600) is None
    clock[0] += 3000
    watch.poll()
    stuck = watch.fatal(600, unschedulable_after_s=3600)
    assert stuck is not None and stuck.category == SCHEDULE and "Insufficient nvidia.com/gpu" in stuck.message
    # Placed at last: the timer stops.
    core.items = [pod("r1-node-0-0-a", "ns", labels)]
    watch.poll()
    assert watch.fatal(0, unschedulable_after_s=0) is None
    # A bad image keeps the shorter limit.
    pulling = {"waiting": {"reason": "ImagePullBackOff", "message": "manifest unknown"}}
    core.items = [pod("r1-node-0-0-a", "ns", labels, phase="Pending", state=pulling)]
    watch.poll()
    clock[0] += 601
    assert watch.fatal(600, unschedulable_after_s=3600).reason == "ImagePullBackOff"
