"""The deploy step as the DAG runs it: a model artifact -> an InferenceService (or its manifest).

    out = run_deploy_stage("7b-gpu", "s3://diffucoder/runs/r1/rl", name="diffucoder-r1")
    out.applied, out.endpoint      # True, "http://diffucoder-r1.ml-team.example.com"
    out.objects                    # [the InferenceService as rendered]
    out.report_md                  # what was done and why

``mode`` decides whether the object is sent to a cluster:

- ``auto``: apply when running inside Kubernetes (a pipeline step's pod has a service account
  and ``KUBERNETES_SERVICE_HOST``) *and* the model is in a store KServe can read (s3://);
  otherwise only render. The kfp local runner (``make demo``) has no cluster and a file://
  store, so it renders the manifest and says why it did not apply it. A kubeconfig on the
  developer's machine is deliberately ignored in this mode: a local demo must never deploy
  to whatever cluster the current context points at.
- ``apply``: always apply (in-cluster config, else ``$KUBECONFIG`` / ~/.kube/config); an
  unreachable cluster or a file:// model is an error.
- ``render``: never apply.

Passing ``api_client`` means "this is the cluster" (``auto`` then applies without the
in-cluster check; the tests hand in the in-memory API server this way).

The storageUri pins the artifact's published version (``model_storage_uri``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import api_client as make_client
from diffucoder.kube.client import current_namespace, in_cluster
from diffucoder.kube.config import inference_spec, load_cluster_config
from diffucoder.kube.deploy import DeployResult, deploy
from diffucoder.kube.inference import KSERVE_SCHEMES, model_storage_uri, render_inference_service

MODES = ("auto", "apply", "render")


@dataclass
class DeployOutcome:
    objects: list[dict[str, Any]]
    applied: bool
    endpoint: str
    reason: str                          # why it was (not) applied
    report_md: str
    result: DeployResult | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _print(line: str) -> None:
    print(line, flush=True)


def run_deploy_stage(preset: str, model_uri: str, *, name: str = "diffucoder", namespace: str = "",
                     mode: str = "auto", overrides: list[str] | tuple[str, ...] = (),
                     timeout_s: float = 0, api_client=None,
                     log: Callable[[str], None] = _print) -> DeployOutcome:
    if mode not in MODES:
        raise DiffucoderError(f"mode: {mode!r} is not one of {list(MODES)}")
    if not model_uri:
        raise DiffucoderError("model_uri: empty; pass the model to deploy")
    cfg = load_cluster_config(preset, list(overrides))
    storage = model_storage_uri(model_uri)
    readable = storage.startswith(KSERVE_SCHEMES)
    namespace = namespace or cfg.serving.namespace or current_namespace()
    isvc = render_inference_service(inference_spec(
        cfg, name=name, namespace=namespace, storage_uri=storage, allow_local_uri=not readable))

    if mode == "render":
        apply, reason = False, "mode=render: rendered only"
    elif mode == "apply":
        if not readable:
            raise DiffucoderError(f"cannot deploy {model_uri}: KServe cannot read {storage} (use the "
                                  "s3:// store on a cluster)")
        apply, reason = True, "mode=apply"
    elif not in_cluster() and api_client is None:
        apply, reason = False, ("not applied: no cluster (this step is not running inside "
                                "Kubernetes, e.g. the kfp local runner)")
    elif not readable:
        apply, reason = False, f"not applied: KServe cannot read {storage} (a file:// store)"
    else:
        apply, reason = True, "mode=auto inside a cluster"
    log(f"[deploy] {reason}")

    result = None
    if apply:
        result = deploy(isvc, api_client=api_client or make_client(),
                        timeout_s=timeout_s or cfg.serving.timeout_s, poll_s=cfg.serving.poll_s,
                        log=log)
        isvc = result.manifest
    endpoint = result.url if result else ""
    lines = ["# Deploy", "", f"- model: `{model_uri}`", f"- storageUri: `{storage}` (pinned version)",
             f"- InferenceService: `{namespace}/{name}` (runtime `{cfg.serving.runtime}`, "
             f"service account `{cfg.serving.service_account}`)",
             f"- applied: **{'yes' if result else 'no'}** — {reason}"]
    if result:
        lines += [f"- action: {result.action}, Ready after {result.seconds:.0f} s",
                  f"- endpoint: {endpoint or '(no URL in status)'}"]
    else:
        lines.append("- to apply it by hand: `kubectl apply -f` the manifest artifact")
    metadata = {"applied": bool(result), "reason": reason, "storage_uri": storage,
                "name": name, "namespace": namespace, "endpoint": endpoint}
    return DeployOutcome([isvc], bool(result), endpoint, reason, "\n".join(lines) + "\n", result,
                         metadata)
