"""kfp component ``pretrain``: curated token shards -> masked-diffusion model (Hugging Face dir).

Wraps ``diffucoder.stages.pretrain.run_pretrain_stage``; the output ``model`` is a
reference to the model artifact in the project's store (MinIO on a cluster), ``metrics``
and ``report`` (loss curve inlined) show in the Kubeflow UI. With ``launcher`` ``trainjob``
or ``pytorchjob`` the step trains nothing itself: it launches the recipe as a multi-node
cluster job (``diffucoder.stages.cluster``), follows it, and ``job`` holds the job it sent.
"""
from kfp import dsl

from diffucoder_kfp.components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def pretrain(
    preset: str,
    curated: dsl.Input[dsl.Dataset],
    store_root: str,
    run_name: str,
    run_id: str,
    store_secret: str,
    overrides: list,
    launcher: str,
    cluster: list,
    job_image: str,
    start_stage: str,
    start_model: str,
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    job: dsl.Output[dsl.Artifact],
):
    """Pre-train (or adapt) a Dream model with the preset's recipe (``configs/<preset>/pretrain.yaml``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        curated: the curate step's output (a reference to the token-shard artifact).
        store_root: artifact store root, ``s3://bucket/prefix`` or ``file:///abs/dir``.
        run_name: name of this run in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        store_secret: the Secret this step reads the store with; a cluster job's pods get it too.
        overrides: ``key.sub=value`` recipe overrides, e.g. ``["train.steps=50"]``.
        launcher: ``in-process`` (train in this step's pod), ``trainjob`` (Kubeflow Trainer) or
            ``pytorchjob`` (training operator).
        cluster: ``key.sub=value`` overrides of ``configs/<preset>/cluster.yaml`` for the job,
            e.g. ``["training.stages.pretrain.nodes=10"]``; only with a cluster launcher.
        job_image: the image of the cluster job's pods (the placement step's ``job_image``: the
            train image of the pipeline's registry); empty = the project's default.
        start_stage: ``curate`` trains; ``sft`` / ``rl`` skip pre-training and pass ``start_model`` on.
        start_model: store URI of the model to start from: the checkpoint adaptation starts from
            (``model.init_from``), or the model a later start stage tunes; empty = from scratch.
    """
    from diffucoder.stage_io import publish, read_ref
    from diffucoder.stages.cluster import step_launcher
    from diffucoder.stages.pretrain import run_pretrain_stage

    cluster_job = step_launcher(launcher, list(cluster), job.path, run_id=run_id, store_secret=store_secret,
                                image=job_image)
    out = run_pretrain_stage(preset=preset, curated_uri=read_ref(curated.path), store_root=store_root,
                             run_name=run_name or run_id, overrides=list(overrides), launcher=cluster_job,
                             start_stage=start_stage, start_model=start_model)
    publish(out, artifact=model, metrics=metrics, report=report)
    job.metadata.update({"launcher": launcher, **out.metadata.get("job", {})})
