"""kfp component ``evaluate``: a model -> pass@k on code benchmarks, and the deploy-gate value.

Wraps ``diffucoder.stages.evaluate.run_evaluate_stage``. Outputs: ``results`` (reference to
the evaluation artifact: results.jsonl, metrics.json, report.md, plots), ``metrics``
(``<benchmark>_pass_at_<k>`` ...) and ``report`` for the Kubeflow UI, and the return value
(the output parameter ``Output``): pass@1 of the gate benchmark, which a ``dsl.If`` deploy
gate compares with a pipeline parameter (``dsl.If(task.outputs["Output"] >= min_pass_at_1)``).
It is the single return value, not a named output, because kfp's local runner resolves only
``Output`` in a condition.
"""
from kfp import dsl

from diffucoder_kfp.components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate(
    preset: str,
    model: dsl.Input[dsl.Model],
    tasks: dsl.Input[dsl.Dataset],
    store_root: str,
    run_name: str,
    run_id: str,
    stage_name: str,
    overrides: list,
    results: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
) -> float:
    """Evaluate a model with the preset's recipe (``configs/<preset>/evaluate.yaml``).

    Args:
        preset: recipe preset, e.g. ``tiny-cpu`` or ``7b-gpu``.
        model: the model to evaluate (the SFT or RL step's output: a reference to the model artifact).
        tasks: the SFT step's task suite; the ``synthetic`` benchmark reads its held-out split.
        store_root: artifact store root, ``s3://bucket/prefix`` or ``file:///abs/dir``.
        run_name: name of this run in the store; empty = ``run_id``.
        run_id: the pipeline job id (filled in by the pipeline).
        stage_name: the artifact's name in the run, e.g. ``evaluate-sft`` or ``evaluate-rl``.
        overrides: ``key.sub=value`` recipe overrides, e.g. ``["max_tasks=8", "n_samples=2"]``.

    Returns:
        pass@1 (0..1) of the recipe's gate benchmark (the first one unless
        ``gate_benchmark`` is set).
    """
    from diffucoder.stage_io import publish, read_ref
    from diffucoder.stages.evaluate import run_evaluate_stage

    out = run_evaluate_stage(preset=preset, model_uri=read_ref(model.path), store_root=store_root,
                             run_name=run_name or run_id, tasks_uri=read_ref(tasks.path),
                             overrides=list(overrides), stage=stage_name or "evaluate")
    publish(out, artifact=results, metrics=metrics, report=report)
    return float(out.metadata["pass_at_1"])
