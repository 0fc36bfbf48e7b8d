"""A training stage as a cluster job: what a pipeline step runs instead of training in its pod.

    launcher = step_launcher("trainjob", ["training.stages.pretrain.nodes=10"], job_artifact.path,
                             run_id="8f1c...", store_secret="diffucoder-s3")
    out = launcher.run(stage("pretrain"), "7b-gpu", store_root="s3://diffucoder", run_name="r1",
                       data_uri="s3://diffucoder/runs/r1/curated")
    out.uri              # s3://diffucoder/runs/r1/pretrain, published by rank 0 of the job
    out.metadata["job"]  # kind, name, namespace, seconds, whether it was created or adopted

    job, lines, cfg = render_stage_job(stage("sft"), "7b-gpu", store_root="s3://diffucoder",
                                       run_name="r1", data_uri="s3://diffucoder/runs/r1/tasks")

``in-process`` gives no launcher (``None``): the stage trains where it runs. ``trainjob`` /
``pytorchjob`` render the stage's job from ``configs/<preset>/cluster.yaml`` (+ ``cluster``
overrides): every node runs ``torchrun -m diffucoder.cli <stage> --preset <preset>`` with the
stage's wiring (``stages.training.wiring``) and the caller's recipe overrides as ``key='value'``
arguments, so the job publishes the model the in-process stage would have published. The job is
recorded at ``manifest_path``, launched and followed to its end (``diffucoder.kube.launch``).

Its name is ``<run>-<stage>`` and it carries the pipeline's run id (``run_id``, the Kubeflow
Pipelines run): a retried step of the same run adopts its own job instead of starting another,
while a new run reusing the run name replaces a finished job of the old run rather than
inheriting its result (``diffucoder.kube.launcher``). The job's pods read the store with the
Secret the step itself was given (``store_secret``; the chart's ``s3.existingSecret`` or
``diffucoder-s3``), so a custom Secret reaches the job.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import api_client as make_api_client
from diffucoder.kube.client import current_namespace
from diffucoder.kube.config import ClusterConfig, load_cluster_config, training_job_spec
from diffucoder.kube.estimate import memory_estimate
from diffucoder.kube.launcher import LaunchResult, launch
from diffucoder.kube.objects import label_value, safe_name, write_manifest
from diffucoder.kube.training_job import render_job, torchrun_command
from diffucoder.stage_io import StageOutput
from diffucoder.stages.registry import Stage, stage_uri
from diffucoder.stages.training import METRIC_KEYS, as_overrides, describe_model, wiring

LAUNCHERS = ("in-process", "trainjob", "pytorchjob")


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


def job_command(stage: Stage, preset: str, values: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
                ) -> list[str]:
    """What every node of the stage's job runs: torchrun around the stage's command, its wiring
    ``values`` and the recipe ``overrides`` as ``key='value'`` arguments (the process boundary)."""
    return torchrun_command([*stage.job_argv(preset), *as_overrides(values), *overrides])


def render_stage_job(stage: Stage, preset: str, *, store_root: str, run_name: str, data_uri: str,
                     init_from: str = "", overrides: list[str] | tuple[str, ...] = (),
                     cluster: dict[str, Any] | list[str] | None = None, name: str = "",
                     namespace: str = "", kubeconfig: str | None = None, context: str | None = None,
                     cluster_values: dict[str, Any] | None = None, run_id: str = "",
                     store_secret: str = "") -> tuple[dict[str, Any], list[str], ClusterConfig]:
    """(the job, a size + per-GPU memory summary, the cluster config used). ``cluster_values``
    (typed, by dotted key) and ``cluster`` (text overrides, last) adjust ``configs/<preset>/cluster.yaml``.
    ``run_id`` labels the job with its pipeline run; ``store_secret`` (the Secret the calling step
    reads the store with) becomes ``training.s3_secret``, and an override naming another is an error."""
    values_in = dict(cluster_values or {})
    if store_secret:
        values_in["training.s3_secret"] = store_secret
    cfg = load_cluster_config(preset, cluster_overrides(cluster), values=values_in)
    t = cfg.training
    if store_secret and t.s3_secret != store_secret:
        raise DiffucoderError(f"cluster override training.s3_secret={t.s3_secret!r} contradicts the step's "
                              f"store Secret {store_secret!r} (store_secret): the job must read the store "
                              "the step reads; drop the override or pass that Secret as store_secret")
    values = wiring(stage, store_root=store_root, run_name=run_name, data_uri=data_uri, init_from=init_from,
                    checkpoint_dir=t.checkpoint_mount if t.checkpoint_pvc else "")
    command = job_command(stage, preset, values, overrides)
    spec = training_job_spec(cfg, stage.name, name=name or safe_name(run_name, stage.name),
                             namespace=namespace or t.namespace or current_namespace(
                                 kubeconfig=kubeconfig, context=context),
                             command=command, labels={"diffucoder.io/run": label_value(run_name)},
                             run_id=run_id)
    estimate = memory_estimate(preset, stage.name, spec.nodes * spec.nproc_per_node, overrides)
    lines = [f"{spec.nodes} node(s) x {spec.nproc_per_node} process(es), "
             f"{spec.gpus_per_node} GPU(s) per node", *estimate.lines(t.shape(stage.name).gpu_memory_gib)]
    return render_job(spec, t.kind), lines, cfg


def launch_stage_job(stage: Stage, preset: str, *, store_root: str, run_name: str, data_uri: str,
                     init_from: str = "", overrides: list[str] | tuple[str, ...] = (),
                     cluster: dict[str, Any] | list[str] | None = None, name: str = "",
                     namespace: str = "", api_client=None, manifest_path: str = "",
                     kubeconfig: str | None = None, context: str | None = None,
                     cluster_values: dict[str, Any] | None = None, run_id: str = "",
                     store_secret: str = "", log: Callable[[str], None] | None = None) -> LaunchResult:
    """Render, record (``manifest_path``), launch and follow the stage's job until it succeeds."""
    log = log or (lambda line: print(line, flush=True))
    job, lines, cfg = render_stage_job(stage, preset, store_root=store_root, run_name=run_name,
                                       data_uri=data_uri, init_from=init_from, overrides=overrides,
                                       cluster=cluster, name=name, namespace=namespace,
                                       kubeconfig=kubeconfig, context=context, cluster_values=cluster_values,
                                       run_id=run_id, store_secret=store_secret)
    for line in lines:
        log(f"[launch] {line}")
    if manifest_path:
        write_manifest(manifest_path, [job])
    return launch(job, api_client=api_client or make_api_client(kubeconfig, context), log=log,
                  **cfg.training.launch_options())


@dataclass
class ClusterLauncher:
    kind: str                                   # trainjob | pytorchjob
    cluster: list[str] = field(default_factory=list)
    manifest_path: str = ""
    api_client: Any = None                      # None: in-cluster config, else $KUBECONFIG
    run_id: str = ""                            # the pipeline run (labels the job; see module doc)
    store_secret: str = ""                      # the step's store Secret, given to the job's pods
    image: str = ""                             # the job's image (the step's registry); '' = image_ref

    def run(self, stage: Stage, preset: str, *, store_root: str, run_name: str, data_uri: str,
            init_from: str = "", overrides: list[str] | None = None,
            metric_keys: tuple[str, ...] = METRIC_KEYS) -> StageOutput:
        result = launch_stage_job(stage, preset, store_root=store_root, run_name=run_name, data_uri=data_uri,
                                  init_from=init_from, overrides=list(overrides or []),
                                  cluster=self.cluster, cluster_values={"training.kind": self.kind,
                                                                        **({"training.image": self.image}
                                                                           if self.image else {})},
                                  manifest_path=self.manifest_path, api_client=self.api_client,
                                  run_id=self.run_id, store_secret=self.store_secret)
        out = describe_model(stage_uri(store_root, run_name, stage.output), stage.name, metric_keys)
        out.metadata["job"] = {"kind": result.kind, "name": result.name, "namespace": result.namespace,
                               "created": result.created, "seconds": round(result.seconds, 1)}
        out.metrics["job_seconds"] = float(result.seconds)
        return out


def stage_launcher(name: str, cluster: list[str] | None = None, manifest_path: str = "", *,
                   run_id: str = "", store_secret: str = "", image: str = "") -> ClusterLauncher | None:
    """``None`` for ``in-process``; a ``ClusterLauncher`` for ``trainjob`` / ``pytorchjob``."""
    if name not in LAUNCHERS:
        raise DiffucoderError(f"launcher: must be one of {list(LAUNCHERS)}, got {name!r}")
    if name == "in-process":
        if cluster:
            raise DiffucoderError(f"cluster overrides {list(cluster)} were given, but launcher is 'in-process' "
                                  "(they size cluster jobs); use launcher trainjob or pytorchjob")
        return None
    return ClusterLauncher(kind=name, cluster=[str(item) for item in cluster or []], manifest_path=manifest_path,
                           run_id=run_id, store_secret=store_secret, image=image)


def step_launcher(name: str, cluster: list[str] | None, job_path: str, *, run_id: str = "",
                  store_secret: str = "", image: str = "") -> ClusterLauncher | None:
    """What a training component calls first: its launcher, and the ``job`` output recorded for
    in-process training (a cluster launcher records the job it sends there itself). ``run_id`` is
    the pipeline run's id, ``store_secret`` the Secret the step reads the store with, ``image`` the
    job's image (the train image of the registry the pipeline runs from; a ``training.image``
    cluster override still wins)."""
    launcher = stage_launcher(name, cluster, manifest_path=job_path, run_id=run_id, store_secret=store_secret,
                              image=image)
    if launcher is None:
        write_manifest(job_path, [], header="launcher: in-process - the step trained in its own pod; "
                                            "no cluster job was created")
    return launcher
