"""The stages of a DiffuCoder run, in DAG order: the one list every orchestrator reads.

    from diffucoder.stages.registry import STAGES, stage
    [s.name for s in STAGES]        # ['curate', 'pretrain', 'sft', 'rl', 'evaluate', 'deploy']
    stage("sft").data_from          # 'tasks': an SFT run reads the task suite it publishes
    stage("rl").job_argv("7b-gpu")  # ['rl', 'train', '--preset', '7b-gpu']: what a cluster job runs

Who reads it:

- the CLI (``diffucoder.cli``): one ``diffucoder <stage>`` command per stage that has one;
- the run plan (``stages.plan``): which stages a run may start at, and their order;
- the pipeline (``diffucoder_kfp``): one ``<stage>_overrides`` parameter per stage, and the
  stage names ``diffucoder pipeline run-local --set STAGE.KEY=VALUE`` accepts;
- the cluster job launcher (``stages.cluster``): the command a training job runs and the
  artifacts it reads by default.

Adding a stage: see ``docs/architecture.md`` ("Adding a stage").
"""
from __future__ import annotations

from dataclasses import dataclass

from diffucoder.errors import DiffucoderError


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    cli: str = ""             # module of its ``diffucoder <name>`` command ('' = none of its own)
    recipe: str = ""          # configs/<preset>/<recipe>.yaml ('' = none)
    output: str = ""          # its artifact under <store>/runs/<run>/
    trains: bool = False      # a training recipe: in process, under torchrun or as a cluster job
    data_from: str = ""       # the artifact of the run its data.uri defaults to
    init_from: str = ""       # the artifact of the run its model.init_from defaults to
    can_start: bool = False   # a run may start here (pipeline parameter start_stage)
    subcommand: str = ""      # the command's action that trains (``diffucoder rl train``)

    def job_argv(self, preset: str) -> list[str]:
        """``diffucoder`` arguments that run this stage's recipe (torchrun, cluster jobs)."""
        if not self.trains:
            raise DiffucoderError(f"stage {self.name!r} is not a training stage; it runs no job")
        return [self.name, *([self.subcommand] if self.subcommand else []), "--preset", preset]


STAGES: tuple[Stage, ...] = (
    Stage("curate", "filter, dedup, decontaminate, tokenize and pack a code corpus",
          cli="diffucoder.data.cli", recipe="curate", output="curated", can_start=True),
    Stage("pretrain", "masked-diffusion pre-training / adaptation",
          cli="diffucoder.recipes.masked_diffusion", recipe="pretrain", output="pretrain", trains=True,
          data_from="curated"),
    Stage("midtrain", "masked-diffusion mid-training (optional; the paper's stage 2)",
          cli="diffucoder.recipes.masked_diffusion", recipe="midtrain", output="midtrain", trains=True,
          data_from="curated", init_from="pretrain"),
    Stage("sft", "masked-diffusion instruction tuning (publishes the task suite first)",
          cli="diffucoder.recipes.masked_diffusion", recipe="sft", output="sft", trains=True,
          data_from="tasks", init_from="pretrain", can_start=True),
    Stage("rl", "coupled-GRPO reinforcement learning (rl train, rl filter)",
          cli="diffucoder.recipes.coupled_grpo", recipe="rl", output="rl", trains=True, data_from="tasks",
          init_from="sft", can_start=True, subcommand="train"),
    Stage("evaluate", "pass@k of a model on code benchmarks",
          cli="diffucoder.evaluation.cli", recipe="evaluate", output="evaluate"),
    Stage("deploy", "serve a model with KServe (diffucoder kube deploy)", recipe="cluster"),
)

NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
START_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.can_start)
TRAINING_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.trains)


def stage(name: str) -> Stage:
    """The stage called ``name``; an error lists the stages."""
    for s in STAGES:
        if s.name == name:
            return s
    raise DiffucoderError(f"stage {name!r}: not one of {list(NAMES)}")


def stage_uri(store_root: str, run_name: str, artifact: str) -> str:
    """Where a run's artifact lives in the store: ``<root>/runs/<run>/<artifact>``."""
    if not store_root:
        raise DiffucoderError("store_root: empty; give file:///abs/dir or s3://bucket/prefix")
    if not run_name or "/" in run_name:
        raise DiffucoderError(f"run_name: invalid {run_name!r}")
    return f"{store_root.rstrip('/')}/runs/{run_name}/{artifact}"
