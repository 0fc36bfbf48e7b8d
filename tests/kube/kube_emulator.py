"""An in-memory Kubernetes API server for the sync ``kubernetes`` client, and fake controllers.

    with Cluster() as cluster:                 # kmock's KubernetesEmulator on 127.0.0.1
        api = cluster.api_client()             # a kubernetes.client.ApiClient for it
        cluster.on_fetch(TRAINJOBS, step1, step2, ...)   # a fake controller, one step per GET
        cluster.last_version(TRAINJOBS, "ml-team", "r1-pretrain")   # as stored, even once deleted
        cluster.write_kubeconfig(path)         # for code that builds its own client
        assert cluster.invalid_objects() == [] # every CRD object ever stored, schema-checked

kmock runs asyncio; it gets its own event loop in a daemon thread, and the code under test
talks to it over HTTP like to a real API server. It validates nothing, so every version
of every custom object it stored is checked against the vendored CRD schemas
(``tests/platform/k8s_schema``). Controllers are scripted: ``on_fetch`` runs the next step
each time the object is read (each poll), inside the server's loop, so runs are exact.
Steps edit ``Cluster.objects`` (the emulator's store) through the helpers below.
"""
from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import kmock
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
from k8s_schema import validation_errors  # noqa: E402  (tests/platform/k8s_schema.py)

TRAINJOBS = "trainer.kubeflow.org/v1alpha1/trainjobs"
PYTORCHJOBS = "kubeflow.org/v1/pytorchjobs"
ISVCS = "serving.kserve.io/v1beta1/inferenceservices"
RUNTIMES = "serving.kserve.io/v1alpha1/servingruntimes"
TRAINING_RUNTIMES = "trainer.kubeflow.org/v1alpha1/trainingruntimes"
PODS = "v1/pods"
CRDS = (TRAINJOBS, PYTORCHJOBS, ISVCS, RUNTIMES, TRAINING_RUNTIMES)


def plain(value: Any) -> Any:
    """kmock's mapping views -> plain dicts/lists (what jsonschema and == expect)."""
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {k: plain(value[k]) for k in value.keys()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Cluster:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.handler = kmock.KubernetesEmulator()
        self.server = kmock.Server(self.handler)
        self._call(self._start())
        self.url = str(self.server.url).rstrip("/")
        self.logs: dict[str, list[str]] = {}          # pod name -> log lines (with timestamps)
        self.log_requests: list[dict] = []             # {name, params} of each log read
        self.handler.resources[PODS] = {}
        self.handler["get", kmock.resource(PODS), kmock.subresource("log")] << self._serve_log

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self):
        await self.handler.__aenter__()
        await self.server.__aenter__()

    async def _stop(self):
        await self.server.__aexit__(None, None, None)
        await self.handler.__aexit__(None, None, None)

    def close(self) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- clients ----------------------------------------------------------------------------

    def api_client(self):
        from kubernetes import client
        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    def write_kubeconfig(self, path: Path, namespace: str = "ml-team") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester",
                                                        "namespace": namespace}}]}))
        return path

    # -- the store (call from controller steps, which run in the server's loop) -------------

    @property
    def objects(self):
        return self.handler.objects

    def get(self, resource: str, namespace: str, name: str) -> dict | None:
        """The live object (plain dict) or None; safe from the test's thread too."""
        async def read():
            try:
                obj = self.handler.objects[resource, namespace, name]
            except KeyError:
                return None
            return None if obj.deleted else plain(obj.raw)
        return self._call(read())

    def last_version(self, resource: str, namespace: str, name: str) -> dict | None:
        """The object as last stored, even if it has since been deleted (None: never stored)."""
        async def read():
            try:
                obj = self.handler.objects[resource, namespace, name]
            except KeyError:
                return None
            versions = [v for v in obj.history if v is not None]
            return plain(versions[-1]) if versions else None
        return self._call(read())

    def put(self, resource: str, obj: dict) -> None:
        async def write():
            meta = obj["metadata"]
            self.handler.objects[resource, meta["namespace"], meta["name"]] = obj
        self._call(write())

    def requests(self, method: str = "", resource: str = "") -> list:
        """Requests served so far (kmock Request objects), filtered by method and resource."""
        return [r for r in list(self.handler)
                if (not method or str(getattr(r.method, "value", r.method)) == method)
                and (not resource or (r.resource is not None and _res(r.resource) == resource))]

    def invalid_objects(self) -> list[str]:
        """Schema errors of every version of every custom object stored (empty when all valid)."""
        async def versions():
            out = []
            for (resource, _ns, _name), obj in list(self.handler.objects.items()):
                if _res(resource) in CRDS:
                    out += [plain(v) for v in obj.history if v is not None]
            return out
        return [e for version in self._call(versions()) for e in validation_errors(version)]

    # -- fake controllers -------------------------------------------------------------------

    def on_fetch(self, resource: str, *steps: Callable[["Cluster", dict], None]) -> list[int]:
        """Run the next step on each GET of an object of ``resource``; returns the GET counter."""
        pending, count = list(steps), [0]

        def react(request):
            count[0] += 1
            try:
                obj = self.handler.objects[resource, request.namespace, request.name]
            except KeyError:
                return kmock.KubernetesObjectNotFoundError()
            if obj.deleted:
                return kmock.KubernetesObjectNotFoundError()
            if pending:
                result = pending.pop(0)(self, plain(obj.raw))
                if isinstance(result, BaseException):  # a step may answer with an API error
                    return result
            return plain(self.handler.objects[resource, request.namespace, request.name].raw)

        self.handler[kmock.action.FETCH, kmock.resource(resource)] << react
        return count

    def _serve_log(self, request) -> bytes:
        self.log_requests.append({"name": request.name, "params": dict(request.params)})
        if request.name not in self.logs:
            return kmock.KubernetesObjectNotFoundError()
        return "".join(line + "\n" for line in self.logs[request.name]).encode()


def _res(resource) -> str:
    group = f"{resource.group}/" if resource.group else ""
    return f"{group}{resource.version}/{resource.plural}"


# -- what controllers write -------------------------------------------------------------------


def set_status(cluster: Cluster, resource: str, obj: dict, status: dict) -> None:
    meta = obj["metadata"]
    cluster.objects[resource, meta["namespace"], meta["name"]].patch({"status": status})


def condition(ctype: str, reason: str = "", message: str = "", status: str = "True") -> dict:
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2025-01-01T00:00:00Z"}


def pod(name: str, namespace: str, labels: dict[str, str], phase: str = "Running",
        container: str = "node", state: dict | None = None, last_state: dict | None = None,
        conditions: list[dict] | None = None, created: str = "2025-01-01T00:00:00Z") -> dict:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{
        "name": container, "ready": phase == "Running", "restartCount": 0, "image": "img",
        "imageID": "", "state": state or ({"running": {"startedAt": created}} if phase == "Running"
                                          else {"waiting": {"reason": "ContainerCreating"}}),
        "lastState": last_state or {}}]}
    if conditions:
        status["conditions"] = conditions
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                         "creationTimestamp": created},
            "spec": {"containers": [{"name": container, "image": "img"}]}, "status": status}


def add_pod(cluster: Cluster, pod_obj: dict) -> None:
    meta = pod_obj["metadata"]
    cluster.objects[PODS, meta["namespace"], meta["name"]] = pod_obj


def log_lines(start: int, count: int, text: str = "step {i}") -> list[str]:
    """Timestamped log lines as the kubelet serves them (fractions of varying length)."""
    out = []
    for i in range(start, start + count):
        frac = f"{i:03d}".rstrip("0") or "0"
        out.append(f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}.{frac}Z " + text.format(i=i))
    return out
