"""Run a TrainJob / PyTorchJob to its end: create (or adopt), follow, judge, clean up.

    from diffucoder.kube import api_client, launch, render_trainjob
    result = launch(render_trainjob(spec), api_client=api_client(), timeout_s=48 * 3600,
                    poll_s=15, log=print)
    result.created, result.seconds, result.log_lines, result.manifest  # manifest: what was sent

- Idempotent: the job carries the sha256 of its spec (annotation ``diffucoder.io/spec-sha256``).
  If a job of that name exists with the same hash it is adopted (a retried step picks up
  its own job); an identical job that already *failed* is deleted and started again; a
  different job of that name is an error, never overwritten.
- Follows the job's conditions (TrainJob ``Complete``/``Failed``, PyTorchJob
  ``Succeeded``/``Failed``), streams the rank-0 pod's log into ``log``, and reports pod
  problems as they appear (Unschedulable, ImagePullBackOff, OOMKilled, CrashLoopBackOff ...).
- Failure raises ``LaunchError`` naming the job condition and the pod problems seen; the
  failed job is kept for inspection. A problem that cannot heal (bad image, missing Secret
  key) for ``stuck_after_s`` fails the launch early and deletes the job.
- Timeout, SIGTERM (how Kubeflow Pipelines cancels a step: it deletes the pod) and
  KeyboardInterrupt delete the job before the error propagates.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import Cancelled, CustomObject, api_message, sigterm_raises, transient
from diffucoder.kube.objects import SPEC_HASH, annotations, spec_hash, stamp
from diffucoder.kube.pod_watch import PodWatch
from diffucoder.kube.training_job import JobKind, job_kind

_UNKNOWN: dict = {}  # a poll that could not read the job


class LaunchError(DiffucoderError):
    """The job failed, timed out, was cancelled, or could not be created."""


class LaunchCancelled(LaunchError, Cancelled):
    """SIGTERM arrived while waiting (the job was deleted)."""


@dataclass
class LaunchResult:
    name: str
    namespace: str
    kind: str
    created: bool                    # False: an identical job was adopted
    message: str                     # the success condition's message
    seconds: float
    log_lines: int
    manifest: dict[str, Any]         # the object as sent (with its spec hash)
    problems: list[str] = field(default_factory=list)   # pod problems seen on the way


def _print(line: str) -> None:
    print(line, flush=True)


def launch(obj: dict[str, Any], *, api_client, timeout_s: float, poll_s: float = 15.0,
           log: Callable[[str], None] = _print, stuck_after_s: float = 600.0) -> LaunchResult:
    """Create or adopt the job ``obj`` and wait until it succeeds (or raise ``LaunchError``)."""
    from kubernetes import client

    kind = job_kind(obj)
    if timeout_s <= 0 or poll_s <= 0:
        raise LaunchError(f"timeout_s and poll_s must be > 0, got {timeout_s} and {poll_s}")
    wanted = stamp(obj)
    jobs = _Jobs(client.CustomObjectsApi(api_client), kind, wanted)
    watch = PodWatch(client.CoreV1Api(api_client), jobs.namespace, kind, jobs.name, log)
    start = time.monotonic()
    deadline = start + timeout_s
    with sigterm_raises():
        try:
            created = jobs.create_or_adopt(log, deadline, poll_s)
            shown: tuple = ()
            while True:
                try:
                    job = jobs.get()
                    watch.poll()
                except Exception as err:
                    if not transient(err):
                        raise
                    log(f"[launch] API error, will retry: {err}")
                    job = _UNKNOWN
                if job is None:
                    raise LaunchError(f"{jobs.what} disappeared while running (deleted by someone "
                                      "else?)")
                if job is not _UNKNOWN:
                    state, cond = job_state(job, kind)
                    shown = _report_conditions(job, shown, jobs.what, log)
                    if state == "succeeded":
                        watch.poll()  # the last lines of the log
                        return LaunchResult(jobs.name, jobs.namespace, kind.kind, created,
                                            cond.get("message", ""), time.monotonic() - start,
                                            watch.follower.lines, wanted,
                                            [str(p) for p in watch.problems])
                    if state == "failed":
                        raise LaunchError(_failure(jobs.what, cond, watch) + " (the job is kept "
                                          "for inspection; a retry with the same spec replaces it)")
                stuck = watch.fatal(stuck_after_s)
                if stuck is not None:
                    jobs.delete(log, f"pods cannot start: {stuck}")
                    raise LaunchError(f"{jobs.what} cannot start: {stuck}; deleted the job")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    jobs.delete(log, "timed out")
                    raise LaunchError(_failure(f"{jobs.what} timed out after {timeout_s:g} s", {}, watch)
                                      + "; deleted the job")
                time.sleep(min(poll_s, remaining))
        except (Cancelled, KeyboardInterrupt) as err:
            jobs.delete(log, "cancelled")
            if isinstance(err, KeyboardInterrupt):
                raise
            raise LaunchCancelled(f"{jobs.what}: cancelled (SIGTERM); deleted the job") from None


def job_state(job: dict[str, Any], kind: JobKind) -> tuple[str, dict[str, Any]]:
    """("succeeded" | "failed" | "suspended" | "running", the deciding condition)."""
    true = {c.get("type"): c for c in ((job.get("status") or {}).get("conditions") or [])
            if c.get("status") == "True"}
    for state, ctype in (("succeeded", kind.succeeded), ("failed", "Failed"),
                         ("suspended", "Suspended")):
        if ctype in true:
            return state, true[ctype]
    return "running", {}


def _report_conditions(job: dict, shown: tuple, what: str, log: Callable[[str], None]) -> tuple:
    """Log the job's true conditions when they change."""
    now = tuple(sorted((c.get("type", ""), c.get("reason", "")) for c in
                       ((job.get("status") or {}).get("conditions") or []) if c.get("status") == "True"))
    if now != shown and now:
        log(f"[launch] {what}: " + ", ".join(f"{t}" + (f" ({r})" if r else "") for t, r in now))
    return now


def _failure(head: str, cond: dict[str, Any], watch: PodWatch) -> str:
    """``head``, the failed condition's reason and message, and the last pod problems seen."""
    text = head
    if cond:
        text += f" failed: {cond.get('reason') or 'Failed'}"
        if cond.get("message"):
            text += f": {cond['message']}"
    if watch.problems:
        text += "; pod problems: " + "; ".join(str(p) for p in watch.problems[-5:])
    return text


class _Jobs(CustomObject):
    """The custom-object calls for one job."""

    error = LaunchError

    def __init__(self, api, kind: JobKind, obj: dict[str, Any]):
        super().__init__(api, obj, kind.group, kind.version, kind.plural)
        self.kind = kind

    def create(self) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self.api.create_namespaced_custom_object(*self._args, self.obj)
        except ApiException as err:
            if err.status == 409:
                raise
            raise LaunchError(f"cannot create {self.what}: {api_message(err)}") from None

    def create_or_adopt(self, log: Callable[[str], None], deadline: float, poll_s: float) -> bool:
        from kubernetes.client.exceptions import ApiException
        try:
            self.create()
            log(f"[launch] created {self.what}")
            return True
        except ApiException:  # create() lets only 409 through: a job of that name exists
            live = self.get()
        if live is None:  # deleted between our create and get: try once more
            self.create()
            log(f"[launch] created {self.what}")
            return True
        theirs = annotations(live).get(SPEC_HASH, "none")
        if theirs != spec_hash(self.obj):
            raise LaunchError(f"{self.what} already exists with a different spec (spec-sha256 "
                              f"{theirs[:12]}, ours {spec_hash(self.obj)[:12]}); delete it or choose "
                              "another name")
        if job_state(live, self.kind)[0] == "failed" or (live.get("metadata") or {}).get(
                "deletionTimestamp"):
            log(f"[launch] {self.what}: an identical job failed or is being deleted; starting again")
            self.delete(log, "replaced by a retry")
            self.wait_gone(deadline, poll_s)
            self.create()
            log(f"[launch] created {self.what}")
            return True
        log(f"[launch] adopted {self.what} (same spec, already created by an earlier attempt)")
        return False

    def delete(self, log: Callable[[str], None], why: str) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self.api.delete_namespaced_custom_object(*self._args, self.name,
                                                     body={"propagationPolicy": "Background"})
            log(f"[launch] deleted {self.what} ({why})")
        except ApiException as err:
            if err.status != 404:
                log(f"[launch] could not delete {self.what}: {api_message(err)}")

    def wait_gone(self, deadline: float, poll_s: float) -> None:
        while self.get() is not None:
            if time.monotonic() >= deadline:
                raise LaunchError(f"{self.what} was not deleted before the timeout")
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
