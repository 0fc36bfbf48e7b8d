"""The Kubeflow Pipelines side of DiffuCoder: components, the DAG, compile, local runs, upload.

    diffucoder pipeline compile --output-dir pipelines/compiled     # the versioned IR YAML
    diffucoder pipeline run-local --preset tiny-cpu --output runs/demo
    from diffucoder_kfp.pipeline import diffucoder_pipeline          # the @dsl.pipeline

The only package of the distribution that imports kfp (it needs the ``pipeline`` extra). The
components in ``components/<stage>/`` are thin wrappers over ``diffucoder.stages``; the DAG is
``pipeline`` (``build_pipeline(registry, pull_secrets)`` for another image registry);
``placement`` decides each model-holding step's pod at run time (``components/placement``);
``compile`` (and ``retarget``), ``cli`` (``diffucoder pipeline``) and ``remote`` (``kfp.Client``,
both KFP modes) act on it.
"""
