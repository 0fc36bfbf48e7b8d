"""Pod problems and log de-duplication, on plain pod dicts and a stub log reader."""
from diffucoder.kube.pod_watch import LogFollower, _split_timestamp, pod_problems
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
