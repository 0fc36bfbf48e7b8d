"""Talking to a cluster: the API client, where we are, errors, and cancellation.

    if in_cluster():                       # a pipeline step's pod (service account token)
        api = api_client()                 # in-cluster config, else ~/.kube/config
    namespace = current_namespace()        # the pod's namespace, or the kubeconfig context's
    with sigterm_raises():                 # SIGTERM -> Cancelled, so clean-up code runs
        ...

Uses the official ``kubernetes`` client, imported inside the functions that call the API (here,
in ``launcher``, ``pod_watch`` and ``deploy``): it is not a dependency of the distribution (the
images install it), and rendering, ``diffucoder kube render-*`` and the local stages import
this package without it. Only ``doctor`` (the cluster preflight) imports it at module level.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Iterator

import urllib3

from diffucoder.errors import DiffucoderError
from diffucoder.kube.objects import describe

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


class Cancelled(DiffucoderError):
    """SIGTERM arrived (Kubeflow Pipelines cancels a step by deleting its pod)."""


def in_cluster() -> bool:
    """True inside a pod that can reach the API server with its service account."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SA_DIR / "token").is_file()


def api_client(kubeconfig: str | None = None, context: str | None = None):
    """An ApiClient from the in-cluster config, else from ``kubeconfig`` / ``context``."""
    # lazy: the kubernetes client is optional (module docstring)
    from kubernetes import client, config

    try:
        if kubeconfig is None and context is None and in_cluster():
            config.load_incluster_config()
            return client.ApiClient()
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=cfg)
        return client.ApiClient(cfg)
    except (config.ConfigException, OSError) as err:
        raise DiffucoderError(f"no Kubernetes cluster configured ({err}); run inside a cluster or "
                              "point --kubeconfig / KUBECONFIG at one") from None


def current_namespace(default: str = "default", kubeconfig: str | None = None,
                      context: str | None = None) -> str:
    """The pod's namespace in a cluster, else the kubeconfig context's, else ``default``."""
    ns_file = SA_DIR / "namespace"
    if kubeconfig is None and context is None and in_cluster() and ns_file.is_file():
        return ns_file.read_text().strip() or default
    try:
        # lazy: the kubernetes client is optional (module docstring)
        from kubernetes import config
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c.get("name") == context), active)
        return (active or {}).get("context", {}).get("namespace") or default
    except Exception:  # no kubeconfig at all: the caller's default
        return default


def api_message(err) -> str:
    """``409 AlreadyExists: trainjobs "x" already exists`` from an ApiException."""
    try:
        body = json.loads(err.body or "{}")
        text = f"{err.status} {body.get('reason') or err.reason}"
        return f"{text}: {body['message']}" if body.get("message") else text
    except (ValueError, AttributeError, TypeError):
        return f"{getattr(err, 'status', '?')} {getattr(err, 'reason', err)}"


def transient(err: BaseException) -> bool:
    """An API server restarting or overloaded, or a dropped connection: worth another poll."""
    # lazy: the kubernetes client is optional (module docstring)
    from kubernetes.client.exceptions import ApiException
    if isinstance(err, ApiException):
        return err.status in TRANSIENT_STATUS
    return isinstance(err, (urllib3.exceptions.HTTPError, ConnectionError))


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn the first SIGTERM into ``Cancelled`` (main thread only; later ones are ignored so
    the clean-up is not interrupted). The previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Cancelled("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CustomObject:
    """The custom-object API calls for one object (a job, an InferenceService): reads that tell
    "absent" (None) from "failed" (``error``, naming the object), and let transient errors through
    so the caller's poll loop retries them."""

    error: type[DiffucoderError] = DiffucoderError

    def __init__(self, api, obj: dict, group: str, version: str, plural: str):
        self.api, self.obj = api, obj
        self.name, self.namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        self.what = describe(obj)
        self._args = (group, version, self.namespace, plural)

    def get(self) -> dict | None:
        # lazy: the kubernetes client is optional (module docstring)
        from kubernetes.client.exceptions import ApiException
        try:
            return self.api.get_namespaced_custom_object(*self._args, self.name)
        except ApiException as err:
            if err.status == 404:
                return None
            if transient(err):
                raise
            raise self.error(f"cannot read {self.what}: {api_message(err)}") from None
