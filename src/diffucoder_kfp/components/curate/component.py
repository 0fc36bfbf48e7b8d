"""kfp component ``curate``: raw code -> filtered, deduplicated, decontaminated token shards.

Wraps ``diffucoder.stages.curate.run_curate_stage``; the output ``curated`` is a
reference to the token-shard artifact in the project's store (MinIO on a cluster).
"""
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
