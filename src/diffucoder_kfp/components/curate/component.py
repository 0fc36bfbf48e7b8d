"""kfp component ``curate``: raw code -> filtered, deduplicated, decontaminated token shards.

Wraps ``diffucoder.stages.curate.run_curate_stage``; the output ``curated`` is a
reference to the token-shard artifact in the project's store (MinIO on a cluster).

``curate_plan``, ``curate_slice`` and ``curate_publish`` are the same curation spread over
pods (``diffucoder_kfp.pipeline.build_pipeline(curate_pods=N)``): the plan lists every stage's
pods, each slice runs some tasks of one stage against the run's work directory in the store,
and publish produces the same ``curated`` / ``metrics`` / ``report`` as ``curate``.
"""
# No `from __future__ import annotations`: kfp reads the component functions' annotations as types.
from typing import NamedTuple

from kfp import dsl

from diffucoder_kfp.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def curate(
    preset: str,
    input_uri: str,
    store_root: str,
    run_name: str,
    run_id: str,
    overrides: list,
    start_stage: str,
    curated: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
):
    """Curate a code corpus with the preset's recipe (``configs/<preset>/curate.yaml``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        input_uri: source tree, JSONL/Parquet file or ``s3://`` prefix; empty = the recipe's.
        store_root: artifact store root, ``s3://bucket/prefix`` or ``file:///abs/dir``.
        run_name: name of this run in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        overrides: ``key.sub=value`` recipe overrides.
        start_stage: ``curate`` runs the step; ``sft`` / ``rl`` (a run from an existing model)
            skip it: the output is then an empty reference.
    """
    from diffucoder.stage_io import publish
    from diffucoder.stages.curate import run_curate_stage

    out = run_curate_stage(preset=preset, input_uri=input_uri, store_root=store_root,
                           run_name=run_name or run_id, overrides=list(overrides), start_stage=start_stage)
    publish(out, artifact=curated, metrics=metrics, report=report)


# The curation spread over pods (the pipeline compiled with ``--curate-pods``): ``curate_plan``,
# then one ParallelFor per stage over ``curate_slice``, then ``curate_publish``.
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def curate_plan(
    preset: str,
    input_uri: str,
    overrides: list,
    start_stage: str,
) -> NamedTuple("CuratePlan", [
        ("select", list), ("select_cpu", str), ("select_memory", str),
        ("exact", list), ("exact_cpu", str), ("exact_memory", str),
        ("signatures", list), ("signatures_cpu", str), ("signatures_memory", str),
        ("buckets", list), ("buckets_cpu", str), ("buckets_memory", str),
        ("clusters", list), ("clusters_cpu", str), ("clusters_memory", str),
        ("keep", list), ("keep_cpu", str), ("keep_memory", str),
]):
    """The pods of every curation stage, from the preset's recipe (``spread.*``, ``tasks``).

    Args:
        preset: recipe preset, e.g. ``7b-gpu``.
        input_uri: the input (empty = the recipe's); the plan does not read it.
        overrides: ``key.sub=value`` recipe overrides (the run's ``curate_overrides``).
        start_stage: a run that starts after curation gets one empty slice per stage.

    Returns, per stage: its pods' rank ranges (``"a:b"``) and each pod's CPU and memory.
    """
    from collections import namedtuple

    from diffucoder.stages.curate import curate_slice_plan

    plan = curate_slice_plan(preset, input_uri, list(overrides), start_stage)
    for name, value in plan.items():
        print(f"[curate-plan] {name}: {value if not isinstance(value, list) else f'{len(value)} pod(s)'}",
              flush=True)
    return namedtuple("CuratePlan", list(plan))(**plan)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def curate_slice(
    preset: str,
    input_uri: str,
    store_root: str,
    run_name: str,
    run_id: str,
    overrides: list,
    stage: str,
    ranks: str,
    pod_cpu: str,
    pod_memory: str,
    start_stage: str,
):
    """One pod of a curation stage: tasks ``ranks`` of ``stage``, reading what earlier stages
    wrote from ``<store_root>/runs/<run>/curate-work`` and publishing what it wrote there.

    Args:
        preset: recipe preset.
        input_uri: the input (empty = the recipe's); only ``select`` reads it.
        store_root: artifact store root.
        run_name: the run's folder in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        overrides: ``key.sub=value`` recipe overrides.
        stage: ``select``, ``exact``, ``signatures``, ``buckets``, ``clusters`` or ``keep``.
        ranks: ``"a:b"``: tasks a..b-1 (``"0:0"``: a stage the recipe skips, nothing to do).
        pod_cpu: the pod's CPU (``spread.workers_per_pod``), as the plan sized it.
        pod_memory: the pod's memory, as the plan sized it.
        start_stage: ``sft`` / ``rl`` (a run from an existing model) skip curation: the pod
            does nothing (its plan gave it the empty slice ``"0:0"``).
    """
    from diffucoder.stages.curate import run_curate_slice

    # the same values size the pod: given as inputs too, so that kfp passes them into the loop
    print(f"[curate-{stage}] tasks {ranks} on a pod of cpu {pod_cpu}, memory {pod_memory}", flush=True)
    print(run_curate_slice(preset, input_uri, store_root, run_name or run_id, list(overrides), stage, ranks,
                           start_stage), flush=True)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def curate_publish(
    preset: str,
    input_uri: str,
    store_root: str,
    run_name: str,
    run_id: str,
    overrides: list,
    start_stage: str,
    curated: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
):
    """Add up the finished slices in ``<store_root>/runs/<run>/curate-work``, tokenize, pack and
    publish ``<store_root>/runs/<run>/curated``: the same outputs as ``curate``.

    Args:
        preset: recipe preset.
        input_uri: the input the slices read (empty = the recipe's); recorded in the stats.
        store_root: artifact store root.
        run_name: the run's folder in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        overrides: ``key.sub=value`` recipe overrides.
        start_stage: ``sft`` / ``rl`` skip curation: the output is then an empty reference.
    """
    from diffucoder.stage_io import publish
    from diffucoder.stages.curate import run_curate_stage

    out = run_curate_stage(preset=preset, input_uri=input_uri, store_root=store_root,
                           run_name=run_name or run_id, overrides=list(overrides), start_stage=start_stage,
                           from_slices=True)
    publish(out, artifact=curated, metrics=metrics, report=report)
