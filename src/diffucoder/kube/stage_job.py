"""A training stage as a cluster job: what a pipeline step calls instead of training in process.

    result = launch_stage_job("pretrain", "7b-gpu", store_root="s3://diffucoder", run_name=run_id,
                              data_uri=curated_uri, overrides=["train.steps=1000"],
                              cluster={"training": {"kind": "pytorchjob"}},
                              manifest_path=job_artifact.path)
    # the job published <store_root>/runs/<run>/pretrain, exactly as the in-process stage does

The job runs ``torchrun -m diffucoder.cli <stage> --preset <preset>`` with the same wiring as
``diffucoder.stages.pretrain.training_config`` (data, output and checkpoint URIs, init), sized
and placed by ``configs/<preset>/cluster.yaml`` with ``cluster`` applied on top. Its name is
``<run>-<stage>``: a retried step finds and adopts its own job instead of starting another.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from diffucoder.kube.config import ClusterConfig, load_cluster_config, training_job_spec
from diffucoder.kube.launcher import LaunchResult, launch
from diffucoder.kube.objects import label_value, safe_name, write_manifest
from diffucoder.kube.training_job import render_job, stage_command
from diffucoder.stages import recipe_wiring


def cluster_overrides(cluster: dict[str, Any] | list[str] | tuple[str, ...] | None) -> list[str]:
    """``{"training": {"kind": "pytorchjob"}, "training.stages.sft.nodes": 4}`` ->
    ``["training.kind=pytorchjob", "training.stages.sft.nodes=4"]`` (lists pass through)."""
    if not cluster:
        return []
    if isinstance(cluster, (list, tuple)):
        return [str(item) for item in cluster]
    out: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:  # JSON is YAML: lists, dicts, strings and numbers read back as they were
            out.append(f"{prefix}={json.dumps(value)}")

    walk("", cluster)
    return out


def render_stage_job(stage: str, preset: str, *, store_root: str, run_name: str, data_uri: str,
                     init_from: str = "", overrides: list[str] | tuple[str, ...] = (),
                     cluster: dict[str, Any] | list[str] | None = None, name: str = "",
                     namespace: str = "", kubeconfig: str | None = None,
                     context: str | None = None) -> tuple[dict[str, Any], list[str], ClusterConfig]:
    """(the job, a size + per-GPU memory summary, the cluster config used)."""
    from diffucoder.kube.client import current_namespace
    from diffucoder.kube.estimate import memory_estimate

    cfg = load_cluster_config(preset, cluster_overrides(cluster))
    t = cfg.training
    wiring = recipe_wiring(stage, store_root=store_root, run_name=run_name, data_uri=data_uri,
                             init_from=init_from,
                             checkpoint_dir=t.checkpoint_mount if t.checkpoint_pvc else "")
    spec = training_job_spec(cfg, stage, name=name or safe_name(run_name, stage),
                             namespace=namespace or t.namespace or current_namespace(
                                 kubeconfig=kubeconfig, context=context),
                             command=stage_command(stage, preset, [*wiring, *overrides]),
                             labels={"diffucoder.io/run": label_value(run_name)})
    estimate = memory_estimate(preset, stage, spec.nodes * spec.nproc_per_node, overrides)
    lines = [f"{spec.nodes} node(s) x {spec.nproc_per_node} process(es), "
             f"{spec.gpus_per_node} GPU(s) per node", *estimate.lines(t.shape(stage).gpu_memory_gib)]
    return render_job(spec, t.kind), lines, cfg


def launch_stage_job(stage: str, preset: str, *, store_root: str, run_name: str, data_uri: str,
                     init_from: str = "", overrides: list[str] | tuple[str, ...] = (),
                     cluster: dict[str, Any] | list[str] | None = None, name: str = "",
                     namespace: str = "", api_client=None, manifest_path: str = "",
                     kubeconfig: str | None = None, context: str | None = None,
                     log: Callable[[str], None] | None = None) -> LaunchResult:
    """Render, record (``manifest_path``), launch and follow the stage's job until it succeeds."""
    from diffucoder.kube.client import api_client as make_client

    log = log or (lambda line: print(line, flush=True))
    job, lines, cfg = render_stage_job(stage, preset, store_root=store_root, run_name=run_name,
                                       data_uri=data_uri, init_from=init_from, overrides=overrides,
                                       cluster=cluster, name=name, namespace=namespace,
                                       kubeconfig=kubeconfig, context=context)
    for line in lines:
        log(f"[launch] {line}")
    if manifest_path:
        write_manifest(manifest_path, [job])
    t = cfg.training
    return launch(job, api_client=api_client or make_client(kubeconfig, context), timeout_s=t.timeout_s,
                  poll_s=t.poll_s, stuck_after_s=t.stuck_after_s, log=log)
