"""Run a TrainJob / PyTorchJob to its end: create (or adopt), follow, judge, clean up.

    from diffucoder.kube import api_client, launch, render_trainjob
    result = launch(render_trainjob(spec), api_client=api_client(), timeout_s=48 * 3600,
                    poll_s=15, log=print)
    result.created, result.seconds, result.log_lines, result.manifest  # manifest: what was sent
    launch(job, api_client=api, **cfg.training.launch_options())        # configs/<preset>/cluster.yaml

- Idempotent within a run: the job carries the sha256 of its spec (annotation
  ``diffucoder.io/spec-sha256``) and the pipeline run that launched it (``diffucoder.io/run-id``).
  When a job of that name exists:

  - same run id (a retried step of the same Kubeflow Pipelines run) and same spec: adopted,
    whatever its state: the retry picks up its own running or finished job; if it *failed* it
    is deleted and started again (checkpoints make the restart resume);
  - another run id (a new run reusing ``run_name``): if that job has *finished* (succeeded or
    failed) it is deleted and created anew, so the new run trains instead of inheriting the old
    run's result (hidden caching); if it is still running, launching is an error naming the
    other run: two runs would train into the same store folder at once, and adopting it would
    end this step when the other run's job ends. Replacing a finished job loses nothing the
    old run needs: its outputs are in the store and its log in its own step's log;
  - no run id on our side (``diffucoder kube launch``): the same-spec rule alone;
  - a different spec under the same name within a run: an error, never overwritten.
- Follows the job's conditions (TrainJob ``Complete``/``Failed``, PyTorchJob
  ``Succeeded``/``Failed``), streams the rank-0 pod's log into ``log``, and reports pod
  problems as they appear (Unschedulable, ImagePullBackOff, OOMKilled, CrashLoopBackOff ...).
- Failure raises ``LaunchError`` naming the job condition and the pod problems seen; the
  failed job is kept for inspection. A pod that cannot start (bad image, missing Secret key)
  for ``stuck_after_s``, or that the scheduler cannot place (``Unschedulable``) for
  ``unschedulable_after_s``, fails the launch with the reason and deletes the job.
- Success: with ``delete_after_success`` the job is deleted once its log is read (nothing else
  garbage-collects a TrainJob; a PyTorchJob also has ``ttlSecondsAfterFinished``).
- ``gang_scheduling`` with a TrainJob: its TrainingRuntime must have a ``podGroupPolicy``
  (coscheduling or volcano; Kubeflow Trainer >= v2.1 for volcano) or the launch fails before
  creating anything: a job asked to start all-or-nothing is not started piecemeal.
- Timeout, SIGTERM (how Kubeflow Pipelines cancels a step: it deletes the pod) and
  KeyboardInterrupt delete the job before the error propagates.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import Cancelled, CustomObject, api_message, sigterm_raises, transient
from diffucoder.kube.objects import RUN_ID, SPEC_HASH, annotations, spec_hash, stamp
from diffucoder.kube.pod_watch import SCHEDULE, PodWatch
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
           log: Callable[[str], None] = _print, stuck_after_s: float = 600.0,
           unschedulable_after_s: float = 3600.0, delete_after_success: bool = False,
           gang_scheduling: bool = False) -> LaunchResult:
    """Create or adopt the job ``obj`` and wait until it succeeds (or raise ``LaunchError``)."""
    # lazy: the kubernetes client is optional (see diffucoder.kube.client)
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
            if gang_scheduling and kind.kind == "TrainJob":
                jobs.check_pod_group_policy(log)
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
                        if delete_after_success:
                            jobs.delete(log, "succeeded; training.delete_after_success")
                        return LaunchResult(jobs.name, jobs.namespace, kind.kind, created,
                                            cond.get("message", ""), time.monotonic() - start,
                                            watch.follower.lines, wanted,
                                            [str(p) for p in watch.problems])
                    if state == "failed":
                        raise LaunchError(_failure(jobs.what, cond, watch) + " (the job is kept "
                                          "for inspection; a retry with the same spec replaces it)")
                stuck = watch.fatal(stuck_after_s, unschedulable_after_s)
                if stuck is not None and stuck.category == SCHEDULE:
                    jobs.delete(log, f"pods cannot be scheduled: {stuck}")
                    raise LaunchError(f"{jobs.what} cannot be scheduled: {stuck}, for "
                                      f"{unschedulable_after_s:g} s (training.unschedulable_after_s); "
                                      "deleted the job")
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
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        try:
            self.api.create_namespaced_custom_object(*self._args, self.obj)
        except ApiException as err:
            if err.status == 409:
                raise
            raise LaunchError(f"cannot create {self.what}: {api_message(err)}") from None

    def create_or_adopt(self, log: Callable[[str], None], deadline: float, poll_s: float) -> bool:
        """Create the job; if one of that name exists, adopt it or replace it (module docstring)."""
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        try:
            self.create()
            log(f"[launch] created {self.what}")
            return True
        except ApiException:  # create() lets only 409 through: a job of that name exists
            live = self.get()
        if live is not None and not self._replaceable(live, log):
            log(f"[launch] adopted {self.what} (same run, same spec: created by an earlier attempt)")
            return False
        if live is not None:
            self.delete(log, "replaced")
            self.wait_gone(deadline, poll_s)
        self.create()  # (live is None: deleted between our create and get)
        log(f"[launch] created {self.what}")
        return True

    def _replaceable(self, live: dict[str, Any], log: Callable[[str], None]) -> bool:
        """True: delete ``live`` and create ours; False: adopt it; LaunchError: neither."""
        state = job_state(live, self.kind)[0]
        going = bool((live.get("metadata") or {}).get("deletionTimestamp"))
        ours, theirs = annotations(self.obj).get(RUN_ID, ""), annotations(live).get(RUN_ID, "")
        if ours and theirs != ours:
            other = f"run {theirs}" if theirs else "a launch outside a pipeline run (no run id)"
            if state in ("succeeded", "failed") or going:
                log(f"[launch] {self.what} is a finished job ({state}) of {other}; this is run {ours}, "
                    "which trains anew: replacing it")
                return True
            raise LaunchError(
                f"{self.what} belongs to {other} and has not finished ({state}); this is run {ours}. Two "
                "runs with the same run_name would train into the same store folder: wait for it, "
                "delete it, or give this run another run_name")
        theirs_hash = annotations(live).get(SPEC_HASH, "none")
        if theirs_hash != spec_hash(self.obj):
            raise LaunchError(f"{self.what} already exists with a different spec (spec-sha256 "
                              f"{theirs_hash[:12]}, ours {spec_hash(self.obj)[:12]}); delete it or choose "
                              "another name")
        if state == "failed" or going:
            log(f"[launch] {self.what}: an identical job failed or is being deleted; starting again")
            return True
        return False

    def check_pod_group_policy(self, log: Callable[[str], None]) -> None:
        """Gang scheduling asked for a TrainJob: its runtime must define a podGroupPolicy
        (fail closed when it does not, or when the runtime cannot be read)."""
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        ref = (self.obj.get("spec") or {}).get("runtimeRef") or {}
        name, cluster_wide = ref.get("name", ""), ref.get("kind") == "ClusterTrainingRuntime"
        what = f"{'ClusterTrainingRuntime' if cluster_wide else 'TrainingRuntime'} {name}"
        try:
            if cluster_wide:
                runtime = self.api.get_cluster_custom_object(self.kind.group, self.kind.version,
                                                             "clustertrainingruntimes", name)
            else:
                runtime = self.api.get_namespaced_custom_object(self.kind.group, self.kind.version,
                                                                self.namespace, "trainingruntimes", name)
        except ApiException as err:
            raise LaunchError(f"training.gang_scheduling: cannot read {what} to check its podGroupPolicy "
                              f"({api_message(err)}); the step's service account needs get on "
                              "trainingruntimes (the chart's Role has it)") from None
        policy = (runtime.get("spec") or {}).get("podGroupPolicy") or {}
        if not any(policy.get(source) is not None for source in ("coscheduling", "volcano")):
            raise LaunchError(f"training.gang_scheduling: {what} has no podGroupPolicy, so the TrainJob's "
                              "nodes would be placed one by one: set trainer.runtime.podGroupPolicy in the "
                              "chart ({coscheduling: {scheduleTimeoutSeconds: N}} or {volcano: {}}), or "
                              "training.gang_scheduling=false")
        log(f"[launch] gang scheduling: {what} has podGroupPolicy {sorted(policy)}")

    def delete(self, log: Callable[[str], None], why: str) -> None:
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
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
