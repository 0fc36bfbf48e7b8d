"""kfp component ``deploy``: a model artifact -> a KServe InferenceService (Ready, with its URL).

Wraps ``diffucoder.stages.deploy.run_deploy_stage``: renders the InferenceService for the
preset's serving defaults (``configs/<preset>/cluster.yaml``, section ``serving``), with the
storageUri pinned to the model's published version, then (mode ``auto`` inside a cluster, or
``apply``) creates or patches it idempotently, waits for Ready and rolls back on failure.
Outputs: ``manifest`` (the InferenceService YAML, as applied or as it would be), ``report``
(Markdown), ``endpoint`` (status.url; empty when not applied) and ``applied``.
"""
from typing import NamedTuple

from kfp import dsl

from diffucoder_kfp.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy(
    preset: str,
    model: dsl.Input[dsl.Model],
    name: str,
    namespace: str,
    mode: str,
    timeout_s: int,
    overrides: list,
    manifest: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.Markdown],
) -> NamedTuple("Outputs", [("endpoint", str), ("applied", bool)]):
    """Serve a model with KServe (``configs/<preset>/cluster.yaml``, section ``serving``).

    Args:
        preset: cluster defaults preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        model: the model to serve (the RL or SFT step's output: a reference to the model artifact).
        name: InferenceService name, e.g. ``diffucoder``.
        namespace: its namespace; empty = the step's own namespace.
        mode: ``auto`` (apply when running in a cluster and the model is in s3://; else only
            render), ``apply`` (always; errors without a cluster) or ``render`` (never).
        timeout_s: roll back if not Ready within this many seconds; 0 = the preset's.
        overrides: ``key.sub=value`` overrides of the cluster defaults, e.g.
            ``["serving.gpus=1", "serving.memory=64Gi", "serving.runtime=diffucoder-runtime"]``.

    Returns:
        endpoint: the InferenceService's URL (``status.url``); empty when it was not applied.
        applied: whether it was sent to a cluster (and became Ready).
    """
    from collections import namedtuple
    from pathlib import Path

    from diffucoder.stages.deploy import run_deploy_stage
    from diffucoder.kube.objects import write_manifest
    from diffucoder.stage_io import read_ref

    out = run_deploy_stage(preset, read_ref(model.path), name=name, namespace=namespace, mode=mode,
                           overrides=list(overrides), timeout_s=timeout_s)
    write_manifest(manifest.path, out.objects)
    manifest.metadata.update(out.metadata)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(out.report_md)
    return namedtuple("Outputs", ["endpoint", "applied"])(out.endpoint, out.applied)
