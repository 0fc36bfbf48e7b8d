"""kfp component ``midtrain``: the pre-trained model -> mid-trained on a code corpus (the paper's stage 2).

Wraps ``diffucoder.stages.midtrain.run_midtrain_stage``. Optional: with ``enabled`` false (the
pipeline's ``midtrain`` parameter, off by default) or a run that starts at ``sft`` / ``rl``, the
step passes the pre-trained model on unchanged. The output ``model`` is a reference to the model
artifact in the store; ``metrics`` and ``report`` show in the Kubeflow UI. With ``launcher``
``trainjob`` or ``pytorchjob`` the step launches the recipe as a cluster job and follows it;
``job`` holds the job it sent.
"""
from kfp import dsl

from diffucoder_kfp.components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def midtrain(
    preset: str,
    model: dsl.Input[dsl.Model],
    curated: dsl.Input[dsl.Dataset],
    data_uri: str,
    enabled: bool,
    store_root: str,
    run_name: str,
    run_id: str,
    store_secret: str,
    overrides: list,
    launcher: str,
    cluster: list,
    job_image: str,
    start_stage: str,
    midtrain_model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    job: dsl.Output[dsl.Artifact],
):
    """Mid-train the pre-trained model with the preset's recipe (``configs/<preset>/midtrain.yaml``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        model: the pretrain step's output (a reference to the pre-trained model).
        curated: the curate step's output: the corpus mid-training reads unless ``data_uri`` is set.
        data_uri: store URI of the mid-training corpus (curated token shards); empty = ``curated``.
        enabled: whether this run mid-trains; false passes ``model`` on.
        store_root: artifact store root, ``s3://bucket/prefix`` or ``file:///abs/dir``.
        run_name: name of this run in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        store_secret: the Secret this step reads the store with; a cluster job's pods get it too.
        overrides: ``key.sub=value`` recipe overrides, e.g. ``["train.steps=50"]``.
        launcher: ``in-process`` (train in this step's pod), ``trainjob`` (Kubeflow Trainer) or
            ``pytorchjob`` (training operator).
        cluster: ``key.sub=value`` overrides of ``configs/<preset>/cluster.yaml`` for the job.
        job_image: the image of the cluster job's pods (the placement step's ``job_image``: the
            train image of the pipeline's registry); empty = the project's default.
        start_stage: ``curate`` trains when enabled; ``sft`` / ``rl`` pass the model on.
    """
    from diffucoder.stage_io import publish, read_ref
    from diffucoder.stages.cluster import step_launcher
    from diffucoder.stages.midtrain import run_midtrain_stage

    cluster_job = step_launcher(launcher, list(cluster), job.path, run_id=run_id, store_secret=store_secret,
                                image=job_image)
    out = run_midtrain_stage(preset=preset, model_uri=read_ref(model.path),
                             data_uri=data_uri or read_ref(curated.path), store_root=store_root,
                             run_name=run_name or run_id, overrides=list(overrides), launcher=cluster_job,
                             enabled=enabled, start_stage=start_stage)
    publish(out, artifact=midtrain_model, metrics=metrics, report=report)
    job.metadata.update({"launcher": launcher, **out.metadata.get("job", {})})
