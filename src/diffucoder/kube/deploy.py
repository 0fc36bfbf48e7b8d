"""Apply an InferenceService, wait until it is Ready, roll back if it is not.

    from diffucoder.kube import api_client, deploy, render_inference_service
    result = deploy(render_inference_service(spec), api_client=api_client(), timeout_s=900)
    result.url       # status.url, e.g. http://diffucoder-r1.ml-team.example.com
    result.action    # "created" | "updated" | "unchanged"

- Idempotent: the object carries the sha256 of its spec and the spec itself (annotations
  ``diffucoder.io/spec-sha256`` / ``diffucoder.io/applied-spec``, like kubectl's
  last-applied-configuration). The same spec again sends no change; a new one is sent as a
  JSON merge patch computed against the spec we applied last (so fields the server or the
  KServe webhook filled in are left alone, and fields we dropped are removed).
- The ServingRuntime it names must exist (namespaced or cluster-wide), checked first.
- Ready means condition ``Ready=True`` for the current generation; a model that cannot load
  (``modelStatus.transitionStatus`` BlockedByFailedLoad / InvalidSpec) fails at once with
  KServe's ``lastFailureInfo``.
- On failure, timeout or cancellation (SIGTERM, KeyboardInterrupt) it rolls back: a service
  it created is deleted; one it changed gets its previous spec and annotations back.
  Errors are ``DeployError`` with the reason and what was rolled back.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import Cancelled, CustomObject, api_message, sigterm_raises, transient
from diffucoder.kube.inference import ISVC_API
from diffucoder.kube.objects import (APPLIED_SPEC, SPEC_HASH, annotations, applied_spec,
                                     merge_patch, spec_hash, stamp)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")


class DeployError(DiffucoderError):
    """The InferenceService did not become Ready (it was rolled back), or could not be applied."""


@dataclass
class DeployResult:
    name: str
    namespace: str
    url: str
    action: str                  # created | updated | unchanged
    seconds: float
    manifest: dict[str, Any]     # the object as applied (with its annotations)


def _print(line: str) -> None:
    print(line, flush=True)


def isvc_state(obj: dict[str, Any]) -> tuple[str, str]:
    """("ready", url) | ("failed", why) | ("pending", what it waits for)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return "pending", f"the controller has not seen generation {generation} yet"
    model = status.get("modelStatus") or {}
    if model.get("transitionStatus") in FAILED_TRANSITIONS:
        info = model.get("lastFailureInfo") or {}
        detail = ": ".join(x for x in (info.get("reason"), info.get("message")) if x)
        return "failed", f"{model['transitionStatus']}" + (f" ({detail})" if detail else "")
    conditions = status.get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready and ready.get("status") == "True":
        return "ready", status.get("url") or status.get("address", {}).get("url", "")
    waiting = [c for c in conditions if c.get("status") != "True"]
    if waiting:
        c = waiting[0]
        return "pending", f"{c.get('type')}: {c.get('reason') or c.get('status')}" + \
            (f" ({c['message']})" if c.get("message") else "")
    return "pending", "no status yet"


def deploy(isvc: dict[str, Any], *, api_client, timeout_s: float, poll_s: float = 5.0,
           log: Callable[[str], None] = _print) -> DeployResult:
    """Create or patch ``isvc``, wait for Ready, return its URL; roll back on failure."""
    # lazy: the kubernetes client is optional (see diffucoder.kube.client)
    from kubernetes import client

    if isvc.get("apiVersion") != ISVC_API or isvc.get("kind") != "InferenceService":
        raise DeployError(f"deploy takes a {ISVC_API} InferenceService, got "
                          f"{isvc.get('apiVersion')} {isvc.get('kind')}")
    if timeout_s <= 0 or poll_s <= 0:
        raise DeployError(f"timeout_s and poll_s must be > 0, got {timeout_s} and {poll_s}")
    api = _Isvc(client.CustomObjectsApi(api_client), stamp(isvc, keep_spec=True))
    start = time.monotonic()
    with sigterm_raises():
        runtime = ((isvc["spec"].get("predictor") or {}).get("model") or {}).get("runtime")
        if runtime:
            api.check_runtime(runtime, log)
        previous = api.get()
        action = api.apply(previous, log)
        try:
            url = _wait_ready(api, start + timeout_s, poll_s, log)
        except (DeployError, Cancelled, KeyboardInterrupt) as err:
            undone = api.rollback(action, previous, log)
            if isinstance(err, KeyboardInterrupt):
                raise
            why = "cancelled (SIGTERM)" if isinstance(err, Cancelled) else str(err)
            raise DeployError(f"{api.what}: {why}; {undone}") from None
    return DeployResult(api.name, api.namespace, url, action, time.monotonic() - start, api.obj)


def _wait_ready(api: "_Isvc", deadline: float, poll_s: float, log: Callable[[str], None]) -> str:
    last = ""
    while True:
        try:
            live = api.get()
            if live is None:
                raise DeployError("it was deleted while waiting for Ready")
            state, detail = isvc_state(live)
        except Exception as err:
            if not transient(err):
                raise
            state, detail = "pending", f"API error, will retry: {err}"
        if state == "ready":
            log(f"[deploy] {api.what} is Ready at {detail or '(no URL in status)'}")
            return detail
        if state == "failed":
            raise DeployError(f"the model failed: {detail}")
        if detail != last:
            log(f"[deploy] waiting: {detail}")
            last = detail
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeployError(f"not Ready before the timeout (last: {detail})")
        time.sleep(min(poll_s, remaining))


class _Isvc(CustomObject):
    """The custom-object calls for one InferenceService."""

    error = DeployError

    def __init__(self, api, obj: dict[str, Any]):
        super().__init__(api, obj, GROUP, VERSION, PLURAL)

    def check_runtime(self, runtime: str, log: Callable[[str], None]) -> None:
        """Fail before applying when the named runtime exists neither in the namespace nor
        cluster-wide (KServe would only time out); a 403 means we cannot tell, so go on."""
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        try:
            self.api.get_namespaced_custom_object(GROUP, "v1alpha1", self.namespace,
                                                  "servingruntimes", runtime)
            return
        except ApiException as err:
            if err.status != 404:
                log(f"[deploy] cannot check ServingRuntime {runtime}: {api_message(err)}")
                return
        try:
            self.api.get_cluster_custom_object(GROUP, "v1alpha1", "clusterservingruntimes", runtime)
        except ApiException as err:
            if err.status == 404:
                raise DeployError(
                    f"{self.what}: no ServingRuntime {runtime!r} in namespace {self.namespace} nor a "
                    f"ClusterServingRuntime of that name: install the chart there (kserve.enabled), "
                    "or apply diffucoder.kube.render_serving_runtime(...)") from None
            log(f"[deploy] cannot check ClusterServingRuntime {runtime}: {api_message(err)}")

    def _call(self, verb: str, fn, *args, **kwargs) -> Any:
        # lazy: the kubernetes client is optional (see diffucoder.kube.client)
        from kubernetes.client.exceptions import ApiException
        try:
            return fn(*self._args, *args, **kwargs)
        except ApiException as err:
            raise DeployError(f"cannot {verb} {self.what}: {api_message(err)}") from None

    def apply(self, live: dict[str, Any] | None, log: Callable[[str], None]) -> str:
        if live is None:
            self._call("create", self.api.create_namespaced_custom_object, self.obj)
            log(f"[deploy] created {self.what}")
            return "created"
        if annotations(live).get(SPEC_HASH) == spec_hash(self.obj):
            log(f"[deploy] {self.what} already has this spec; nothing to change")
            return "unchanged"
        base = applied_spec(live) or live.get("spec") or {}
        meta = self.obj["metadata"]
        patch = {"metadata": {"labels": meta.get("labels", {}),
                              "annotations": {k: meta["annotations"][k] for k in (SPEC_HASH, APPLIED_SPEC)}},
                 "spec": merge_patch(base, self.obj["spec"])}
        self._call("patch", self.api.patch_namespaced_custom_object, self.name, patch)
        log(f"[deploy] updated {self.what} (merge patch of {sorted(patch['spec'])})")
        return "updated"

    def rollback(self, action: str, previous: dict[str, Any] | None,
                 log: Callable[[str], None]) -> str:
        """Undo ``apply``; a sentence saying what was done (never raises)."""
        try:
            if action == "created":
                self._call("delete", self.api.delete_namespaced_custom_object, self.name,
                           body={"propagationPolicy": "Background"})
                done = "rolled back: deleted the service this deploy created"
            elif action == "updated" and previous is not None:
                current = self.get() or {}
                old_notes = annotations(previous)
                patch = {"metadata": {
                    "labels": merge_patch((current.get("metadata") or {}).get("labels") or {},
                                          (previous.get("metadata") or {}).get("labels") or {}),
                    "annotations": {k: old_notes.get(k) for k in (SPEC_HASH, APPLIED_SPEC)}},
                    "spec": merge_patch(current.get("spec") or {},
                                        copy.deepcopy(previous.get("spec") or {}))}
                self._call("patch", self.api.patch_namespaced_custom_object, self.name, patch)
                done = "rolled back: restored the previous spec"
            else:
                done = "nothing to roll back (the spec was already in place)"
        except Exception as err:  # report, do not mask the deploy's own error
            done = f"ROLLBACK FAILED ({err}); fix {self.what} by hand"
        log(f"[deploy] {done}")
        return done
