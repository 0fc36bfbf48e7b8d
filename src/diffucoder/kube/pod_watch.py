"""Watch a job's pods: why they are stuck or failing, and the rank-0 pod's log.

    watch = PodWatch(core_api, "ml-team", JOB_KINDS["TrainJob"], "r1-pretrain", log=print)
    watch.poll()               # new problems are logged once; new master log lines are logged
    watch.fatal(after_s=600, unschedulable_after_s=3600)   # a lasting problem, or None
    watch.problems             # every PodProblem seen, for the failure message

Two kinds of problem end a launch when they last: a pod that cannot start (a wrong image, a
missing Secret key: ``after_s``), and a pod the scheduler cannot place (``PodScheduled=False``,
reason ``Unschedulable``: no node has the GPUs, a taint nobody tolerates, a gang that does not
fit; ``unschedulable_after_s``, longer, since a cluster autoscaler may still be adding nodes).
The timer of a problem starts when it is first seen on that pod and stops when it heals.

Logs are read with ``timestamps=true`` and ``sinceSeconds`` covering the time since the last
read (plus slack), so each poll reads only recent lines; a line is emitted once, deduplicated
by its timestamp (and its rank among lines sharing one). A restarted master is a new pod and is
followed from its first line. Pods are plain dicts (raw API JSON).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from diffucoder.kube.training_job import JobKind

# Waiting reasons that never heal by themselves (a wrong image, a missing Secret key).
FATAL_WAITING = {"ErrImagePull": "image", "ImagePullBackOff": "image", "InvalidImageName": "image",
                 "CreateContainerConfigError": "config", "CreateContainerError": "config"}
UNSCHEDULABLE = "Unschedulable"   # PodScheduled=False reason: the scheduler found no node
SCHEDULE = "schedule"             # its category (others: "image", "config")
LOG_SLACK_S = 5


@dataclass(frozen=True)
class PodProblem:
    pod: str
    container: str
    reason: str
    message: str = ""
    category: str = ""          # "image"/"config": cannot start; "schedule": no node; "" else

    def __str__(self) -> str:
        where = f"pod {self.pod}" + (f" container {self.container}" if self.container else "")
        return f"{where}: {self.reason}" + (f" ({self.message})" if self.message else "")


def pod_problems(pod: dict[str, Any]) -> list[PodProblem]:
    """What is wrong with one pod now: scheduling, eviction, waiting and terminated containers."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    out = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason"):
            out.append(PodProblem(name, "", cond["reason"], cond.get("message", ""),
                                  SCHEDULE if cond["reason"] == UNSCHEDULABLE else ""))
    if status.get("reason"):  # e.g. Evicted, DeadlineExceeded
        out.append(PodProblem(name, "", status["reason"], status.get("message", "")))
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        container, state = cs.get("name", "?"), cs.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in FATAL_WAITING or reason == "CrashLoopBackOff":
            out.append(PodProblem(name, container, reason, waiting.get("message", ""),
                                  FATAL_WAITING.get(reason, "")))
        for term in (state.get("terminated"), (cs.get("lastState") or {}).get("terminated")):
            if term and (term.get("reason") == "OOMKilled" or term.get("exitCode", 0) != 0):
                detail = f"exit code {term.get('exitCode')}"
                if term.get("message"):
                    detail += f": {term['message'].strip()[-300:]}"
                out.append(PodProblem(name, container, term.get("reason") or "Error", detail))
    return out


def _split_timestamp(line: str) -> tuple[tuple[str, int] | None, str]:
    """``2024-05-01T10:00:00.12Z text`` -> (("2024-05-01T10:00:00", 120000000), "text")."""
    stamp, _, text = line.partition(" ")
    if len(stamp) < 20 or stamp[10:11] != "T" or not stamp.endswith("Z"):
        return None, line
    base, _, frac = stamp[:-1].partition(".")
    if len(base) != 19 or (frac and not frac.isdigit()):
        return None, line
    return (base, int(frac.ljust(9, "0")[:9]) if frac else 0), text


class LogFollower:
    """Emit each line of one container's log once, across polls and reconnects."""

    def __init__(self, core_api, namespace: str, container: str, log: Callable[[str], None]):
        self.core, self.namespace, self.container, self.log = core_api, namespace, container, log
        self.pod: str | None = None
        self.last_ts: tuple[str, int] | None = None
        self.count_at_last = 0
        self.last_read: float | None = None
        self.lines = 0

    def read(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if name != self.pod:
            self.pod, self.last_ts, self.count_at_last, self.last_read = name, None, 0, None
            self.log(f"[launch] following the log of pod {name} (container {self.container})")
        if (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded", "Failed"):
            return  # no container has started: the API answers 400
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        started = time.monotonic()
        since = None if self.last_read is None else \
            max(1, math.ceil(started - self.last_read) + LOG_SLACK_S)
        try:
            text = self.core.read_namespaced_pod_log(
                name, self.namespace, container=self.container, timestamps=True,
                since_seconds=since)
        except ApiException as err:
            if err.status in (400, 404):  # not started yet / already gone
                return
            raise
        self.last_read = started
        old_ts, old_count, same = self.last_ts, self.count_at_last, 0
        for line in (text or "").splitlines():
            ts, message = _split_timestamp(line)
            if ts is not None and old_ts is not None:
                if ts < old_ts:
                    continue
                if ts == old_ts:
                    same += 1
                    if same <= old_count:
                        continue
            if ts is not None:
                if ts == self.last_ts:
                    self.count_at_last += 1
                else:
                    self.last_ts, self.count_at_last = ts, 1
            self.lines += 1
            self.log(message)


class PodWatch:
    """Poll a job's pods: report problems once, follow the rank-0 pod's log."""

    def __init__(self, core_api, namespace: str, kind: JobKind, name: str,
                 log: Callable[[str], None]):
        self.core, self.namespace, self.kind, self.name, self.log = core_api, namespace, kind, name, log
        self.follower = LogFollower(core_api, namespace, kind.container, log)
        self.problems: list[PodProblem] = []
        self._seen: set[PodProblem] = set()
        self._stuck_since: dict[tuple[str, str, str], float] = {}
        self._stuck: dict[tuple[str, str, str], PodProblem] = {}
        self.blind = False  # no right to read pods: status only

    def pods(self) -> list[dict[str, Any]]:
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        selector = self.kind.pod_selector(self.name)
        try:
            resp = self.core.list_namespaced_pod(
                self.namespace, label_selector=",".join(f"{k}={v}" for k, v in selector.items()),
                _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return []
            raise
        items = json.loads(resp.data).get("items") or []
        # Filter here too: the selector is the server's job, but a wrong pod's log is worse than none.
        return [p for p in items if _labels_match(p, selector)]

    def master(self, pods: list[dict[str, Any]]) -> dict[str, Any] | None:
        masters = [p for p in pods if _labels_match(p, self.kind.master_selector(self.name))]
        # After a restart there may be an old and a new one: the newest is the live one.
        masters.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
        return masters[-1] if masters else None

    def poll(self) -> None:
        """One look at the pods. Without the right to read pods (RBAC), say so once and
        carry on with the job's status alone; passing API errors propagate (retried)."""
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        if self.blind:
            return
        try:
            self._poll()
        except ApiException as err:
            if err.status not in (401, 403):
                raise
            self.blind = True
            self.log(f"[launch] cannot read the job's pods or logs ({err.status} {err.reason}): "
                     "following the job's status only; the step's service account needs "
                     "get/list on pods and pods/log")

    def _poll(self) -> None:
        pods = self.pods()
        now, active = time.monotonic(), set()
        for pod in pods:
            for problem in pod_problems(pod):
                if problem not in self._seen:
                    self._seen.add(problem)
                    self.problems.append(problem)
                    self.log(f"[launch] {problem}")
                if problem.category:
                    key = (problem.pod, problem.container, problem.category)
                    active.add(key)
                    self._stuck_since.setdefault(key, now)
                    self._stuck[key] = problem
        for key in set(self._stuck_since) - active:  # healed (e.g. the image finally pulled)
            del self._stuck_since[key], self._stuck[key]
        master = self.master(pods)
        if master is not None:
            self.follower.read(master)

    def fatal(self, after_s: float, unschedulable_after_s: float = math.inf) -> PodProblem | None:
        """A pod that cannot start for at least ``after_s`` seconds, or that the scheduler could
        not place for at least ``unschedulable_after_s`` seconds (the latest such problem)."""
        now = time.monotonic()
        for key, since in self._stuck_since.items():
            limit = unschedulable_after_s if key[2] == SCHEDULE else after_s
            if now - since >= limit:
                return self._stuck[key]
        return None


def _labels_match(pod: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())
