"""kfp component ``sft``: pretrained model + synthetic task suite -> instruction-tuned model.

Wraps ``diffucoder.stages.sft.run_sft_stage``. Outputs: ``sft_model`` (reference to the
model artifact), ``tasks`` (reference to the task suite the evaluation and RL steps read:
HumanEval-style train / held-out JSONL), ``metrics`` and ``report`` for the Kubeflow UI.
With ``launcher`` ``trainjob`` or ``pytorchjob`` the step publishes the task suite, then
launches the recipe as a cluster job and follows it; ``job`` holds the job it sent.
"""
from kfp import dsl

from diffucoder_kfp.components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def sft(
    preset: str,
    model: dsl.Input[dsl.Model],
    store_root: str,
    run_name: str,
    run_id: str,
    store_secret: str,
    overrides: list,
    launcher: str,
    cluster: list,
    job_image: str,
    start_stage: str,
    sft_model: dsl.Output[dsl.Model],
    tasks: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    job: dsl.Output[dsl.Artifact],
):
    """Instruction-tune with the preset's recipe (``configs/<preset>/sft.yaml``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        model: the pretrain step's output (a reference to the model artifact).
        store_root: artifact store root, ``s3://bucket/prefix`` or ``file:///abs/dir``.
        run_name: name of this run in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        store_secret: the Secret this step reads the store with; a cluster job's pods get it too.
        overrides: ``key.sub=value`` overrides; ``tasks.*`` shape the task suite
            (``tasks.seed``, ``tasks.max_per_family``, ``tasks.heldout_fraction``), the rest
            the trainer recipe.
        launcher: ``in-process`` (train in this step's pod), ``trainjob`` or ``pytorchjob``.
        cluster: ``key.sub=value`` overrides of ``configs/<preset>/cluster.yaml`` for the job.
        job_image: the image of the cluster job's pods (the placement step's ``job_image``: the
            train image of the pipeline's registry); empty = the project's default.
        start_stage: ``curate`` / ``sft`` train; ``rl`` only publishes the task suite and passes
            ``model`` on (a run that improves an existing instruct model).
    """
    from diffucoder.stage_io import publish, read_ref, write_ref
    from diffucoder.stages.cluster import step_launcher
    from diffucoder.stages.sft import run_sft_stage

    cluster_job = step_launcher(launcher, list(cluster), job.path, run_id=run_id, store_secret=store_secret,
                                image=job_image)
    out = run_sft_stage(preset=preset, model_uri=read_ref(model.path), store_root=store_root,
                        run_name=run_name or run_id, overrides=list(overrides), launcher=cluster_job,
                        start_stage=start_stage)
    publish(out, artifact=sft_model, metrics=metrics, report=report)
    job.metadata.update({"launcher": launcher, **out.metadata.get("job", {})})
    write_ref(tasks.path, out.metadata["tasks_uri"], {"kind": "task-suite"})
    tasks.metadata.update({"store_uri": out.metadata["tasks_uri"]})
