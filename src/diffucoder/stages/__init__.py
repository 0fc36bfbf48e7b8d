"""The stages of a run, each one door shared by the kfp components and the CLI.

    from diffucoder.stages.registry import STAGES            # the stage list, in DAG order
    from diffucoder.stages.pretrain import run_pretrain_stage
    out = run_pretrain_stage("tiny-cpu", curated_uri, store_root, run_name)   # -> StageOutput

Each ``run_<stage>_stage(...)`` loads the preset's recipe with the run's wiring and the
caller's overrides, runs the library function (or launches it as a cluster job), publishes
to the artifact store and returns a ``StageOutput``. Modules: ``registry`` (the stages and
their artifacts), ``plan`` (where a run starts), ``training`` (a training recipe here or under
torchrun), ``cluster`` (a training recipe as a TrainJob / PyTorchJob), one module per stage
(``curate``, ``pretrain``, ``sft``, ``rl``, ``evaluate``, ``deploy``) and ``kube_cli``
(``diffucoder kube``). Nothing here imports kfp: ``diffucoder_kfp`` wraps these functions.
"""
from diffucoder.stages.registry import STAGES, Stage, stage, stage_uri

__all__ = ["STAGES", "Stage", "stage", "stage_uri"]
