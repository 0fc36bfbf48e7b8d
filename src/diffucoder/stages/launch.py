"""Where a training stage runs: in this process (the local runner, a CPU pod) or as a cluster job.

    launcher = step_launcher("trainjob", ["training.stages.pretrain.nodes=10"], job_artifact.path)
    out = launcher.run("pretrain", "7b-gpu", store_root="s3://diffucoder", run_name="r1",
                       data_uri="s3://diffucoder/runs/r1/curated")
    out.uri            # s3://diffucoder/runs/r1/pretrain, published by rank 0 of the job
    out.metadata["job"]  # kind, name, namespace, seconds, whether it was created or adopted

``in-process`` returns ``None``: the stage trains where it runs. ``trainjob`` / ``pytorchjob``
render the stage's job from ``configs/<preset>/cluster.yaml`` (+ ``cluster`` overrides), record
it at ``manifest_path``, launch it and follow it to its end (``diffucoder.kube.launch_stage_job``);
the job runs the same recipe with the same wiring (``recipe_wiring``), so the published model is
the one the in-process stage would have published.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffucoder.errors import DiffucoderError
from diffucoder.stage_io import StageOutput
from diffucoder.stages import stage_uri

LAUNCHERS = ("in-process", "trainjob", "pytorchjob")


@dataclass
class ClusterLauncher:
    kind: str                                   # trainjob | pytorchjob
    cluster: list[str] = field(default_factory=list)
    manifest_path: str = ""
    api_client: Any = None                      # None: in-cluster config, else $KUBECONFIG

    def run(self, stage: str, preset: str, *, store_root: str, run_name: str, data_uri: str,
            init_from: str = "", overrides: list[str] | None = None,
            metric_keys: tuple[str, ...] | None = None) -> StageOutput:
        from diffucoder.kube import launch_stage_job
        from diffucoder.stages.pretrain import METRIC_KEYS, describe_model

        result = launch_stage_job(stage, preset, store_root=store_root, run_name=run_name, data_uri=data_uri,
                                  init_from=init_from, overrides=list(overrides or []),
                                  cluster=[f"training.kind={self.kind}", *self.cluster],
                                  manifest_path=self.manifest_path, api_client=self.api_client)
        out = describe_model(stage_uri(store_root, run_name, stage), stage, metric_keys or METRIC_KEYS)
        out.metadata["job"] = {"kind": result.kind, "name": result.name, "namespace": result.namespace,
                               "created": result.created, "seconds": round(result.seconds, 1)}
        out.metrics["job_seconds"] = float(result.seconds)
        return out


def stage_launcher(name: str, cluster: list[str] | None = None, manifest_path: str = "") -> ClusterLauncher | None:
    """``None`` for ``in-process``; a ``ClusterLauncher`` for ``trainjob`` / ``pytorchjob``."""
    if name not in LAUNCHERS:
        raise DiffucoderError(f"launcher: must be one of {list(LAUNCHERS)}, got {name!r}")
    if name == "in-process":
        if cluster:
            raise DiffucoderError(f"cluster overrides {list(cluster)} were given, but launcher is 'in-process' "
                                  "(they size cluster jobs); use launcher trainjob or pytorchjob")
        return None
    return ClusterLauncher(kind=name, cluster=[str(item) for item in cluster or []], manifest_path=manifest_path)


def step_launcher(name: str, cluster: list[str] | None, job_path: str) -> ClusterLauncher | None:
    """What a training component calls first: its launcher, and the ``job`` output recorded for
    in-process training (a cluster launcher records the job it sends there itself)."""
    launcher = stage_launcher(name, cluster, manifest_path=job_path)
    if launcher is None:
        from diffucoder.kube.objects import write_manifest
        write_manifest(job_path, [], header="launcher: in-process - the step trained in its own pod; "
                                            "no cluster job was created")
    return launcher
