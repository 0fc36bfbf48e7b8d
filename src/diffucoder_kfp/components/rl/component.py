"""kfp component ``rl``: SFT model + task suite -> coupled-GRPO model (Hugging Face dir).

Wraps ``diffucoder.stages.rl.run_rl_stage``: rollouts from the diffusion sampler, rewards from
the sandbox, the clipped objective with coupled log-prob estimates (``configs/<preset>/rl.yaml``).
Outputs: ``rl_model`` (reference to the model artifact), ``metrics`` (initial / final reward
and pass rate, KL, clip fraction, estimator variance) and ``report`` (curves inlined) for the
Kubeflow UI, ``job`` (the cluster job it sent, or a note that it trained in its own pod).
"""
from kfp import dsl

from diffucoder_kfp.components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def rl(
    preset: str,
    model: dsl.Input[dsl.Model],
    tasks: dsl.Input[dsl.Dataset],
    store_root: str,
    run_name: str,
    run_id: str,
    store_secret: str,
    overrides: list,
    launcher: str,
    cluster: list,
    job_image: str,
    rl_model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    job: dsl.Output[dsl.Artifact],
):
    """Improve a model with coupled-GRPO (``configs/<preset>/rl.yaml``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        model: the SFT step's model (or a released instruct model's artifact).
        tasks: the prompts: the SFT step's task suite (its training split), or an AceCode-style
            JSONL artifact with ``overrides=["data.kind=acecode_jsonl"]``.
        store_root: artifact store root, ``s3://bucket/prefix`` or ``file:///abs/dir``.
        run_name: name of this run in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        store_secret: the Secret this step reads the store with; a cluster job's pods get it too.
        overrides: ``key.sub=value`` recipe overrides, e.g. ``["train.steps=8", "objective.beta=0"]``.
        launcher: ``in-process`` (train in this step's pod), ``trainjob`` or ``pytorchjob``.
        cluster: ``key.sub=value`` overrides of ``configs/<preset>/cluster.yaml`` for the job.
        job_image: the image of the cluster job's pods (the placement step's ``job_image``: the
            train image of the pipeline's registry); empty = the project's default.
    """
    from diffucoder.stage_io import publish, read_ref
    from diffucoder.stages.cluster import step_launcher
    from diffucoder.stages.rl import run_rl_stage

    cluster_job = step_launcher(launcher, list(cluster), job.path, run_id=run_id, store_secret=store_secret,
                                image=job_image)
    out = run_rl_stage(preset=preset, model_uri=read_ref(model.path), tasks_uri=read_ref(tasks.path),
                       store_root=store_root, run_name=run_name or run_id, overrides=list(overrides),
                       launcher=cluster_job)
    publish(out, artifact=rl_model, metrics=metrics, report=report)
    job.metadata.update({"launcher": launcher, **out.metadata.get("job", {})})
