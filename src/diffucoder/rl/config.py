"""The coupled-GRPO recipe: ``RLConfig`` and its sections (``configs/<preset>/rl.yaml``).

    from diffucoder.config import load_config
    from diffucoder.rl.config import RLConfig
    cfg = load_config(RLConfig, "configs/tiny-cpu/rl.yaml",
                      ["model.init_from=file:///abs/store/runs/r1/sft", "data.uri=file:///abs/store/runs/r1/tasks",
                       "rollout.group_size=8", "objective.beta=0"])

Sections: ``model`` / ``optim`` / ``distributed`` / ``checkpoint`` / ``train`` / ``output`` are
the pretrain/SFT trainer's own (``diffucoder.training.config``); ``data`` (prompts),
``rollout`` (the diffusion sampler and group size), ``reward`` (weights + sandbox),
``advantage``, ``objective`` (estimator, clipping, KL, inner iterations) and
``hard_filter`` are RL's. ``train.steps`` counts RL steps (one batch of rollouts each);
each step makes ``objective.mu`` optimizer updates, so the learning-rate schedule runs
over ``train.steps * mu`` updates (``optim.warmup_steps`` is in RL steps too).
``train.eval_every`` / ``train.eval_batches``: greedy pass rate on ``data.eval_file``
(``eval_batches`` batches of ``rollout.prompts_per_step`` prompts), when that file is set.
A metrics row is written every step (``train.log_every`` is the SFT trainer's and unused
here), and ``rollout.sampling.seed`` / ``stop`` are not used: rollouts draw from per-step
seeds and end at the first EOS, ``<|dlm_pad|>`` or single-token ``<|im_end|>``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from diffucoder.config import ConfigError, setting
from diffucoder.rl.logprobs import EstimatorConfig
from diffucoder.rl.rewards import RewardConfig
from diffucoder.sampling.config import SamplingConfig
from diffucoder.training.config import (CheckpointSection, DataSection, DistributedSection, ModelSection,
                                        OptimSection, OutputSection, TrainConfig, TrainSection)

@dataclass
class RLDataSection:
    kind: Literal["synthetic", "acecode_jsonl"] = setting(
        "synthetic", help="synthetic: the task-suite artifact the SFT stage publishes (HumanEval fields + "
                          "asserts); acecode_jsonl: records with 'question' and 'test_cases' (AceCode-87K)")
    uri: str = setting("", help="task-suite artifact URI or directory, or a JSONL file")
    file: str = setting("tasks-train.jsonl", help="the prompts file inside a directory or artifact")
    eval_file: str = setting("", help="held-out prompts beside data.file for train.eval_every "
                                      "(e.g. tasks-heldout.jsonl; '' = no held-out evaluation)")
    max_prompts: int = setting(0, min=0, help="use at most this many prompts, a seeded sample (0 = all)")
    seed: int = setting(0, min=0, help="seed of the max_prompts sample")
    max_prompt_tokens: int = setting(0, min=0, help="skip longer prompts (0 = what the model's positions "
                                                    "leave beside rollout.sampling.max_new_tokens)")
    cache_dir: str = setting("", help="where store artifacts are fetched ('' = $DIFFUCODER_CACHE or "
                                      "~/.cache/diffucoder)")


@dataclass
class RolloutSection:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    group_size: int = setting(8, min=2, help="G: completions per prompt (the group of the advantage)")
    prompts_per_step: int = setting(8, min=1, help="prompts per RL step over all ranks (each rank takes "
                                                   "its slice, so it must divide by the world size)")
    batch_size: int = setting(0, min=0, help="completions decoded together (0 = all of a rank's step)")


@dataclass
class RewardSection(RewardConfig):
    """Reward weights (``RewardConfig``) and the sandbox that runs the tests."""
    timeout_s: float = setting(10.0, min=0.05, max=3600.0, help="wall-clock limit of one completion's test run")
    memory_mb: int = setting(1024, min=32, help="address-space limit of each sandboxed program")
    workers: int = setting(0, min=0, help="programs tested at once (0 = one per core)")
    isolation: str = setting("auto", choices=("auto", "bwrap", "unshare", "none"),
                             help="sandbox isolation layer (auto = strongest available)")

    def sandbox_config(self):
        from diffucoder.sandbox import SandboxConfig
        return SandboxConfig(timeout_s=self.timeout_s, memory_mb=self.memory_mb, workers=self.workers or None,
                             isolation=self.isolation)

    def weights(self) -> RewardConfig:
        names = [f.name for f in dataclasses.fields(RewardConfig)]
        return RewardConfig(**{name: getattr(self, name) for name in names})


@dataclass
class AdvantageSection:
    baseline: Literal["mean", "leave_one_out"] = setting(
        "mean", help="A = r - mean(group) (paper), or r - mean(the other completions) (released code)")
    scale_rewards: bool = setting(False, help="divide by the group's reward std (the recipe: false)")


@dataclass
class ObjectiveSection:
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    eps: float = setting(0.5, help="clip rho to [1 - eps, 1 + eps], in (0, 1)")
    beta: float = setting(0.01, min=0.0, help="weight of the k3 KL to the reference model (0 = no reference)")
    mu: int = setting(2, min=1, help="inner iterations per batch of rollouts, each with fresh mask seeds")
    ref_sync_every: int = setting(64, min=0, help="copy the policy into the reference every N RL steps "
                                                  "(0 = never: the reference stays the initial model)")
    micro_batch: int = setting(0, min=0, help="completions per forward/backward (0 = all of a rank's step); "
                                              "must divide a rank's prompts x group_size")

    def validate(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"'objective.eps': must be in (0, 1), got {self.eps!r}")


@dataclass
class HardFilterSection:
    enabled: bool = setting(False, help="train only on hard prompts (low mean, high variance pass rate)")
    source: Literal["sample", "file", "records"] = setting(
        "sample", help="sample: pass rates of `samples` rollouts of the initial policy; file: "
                       "pass_rates_file (JSONL {id, pass_rates}); records: each record's "
                       "'inferences'[*].pass_rate (AceCode's reference-model completions)")
    pass_rates_file: str = setting("", help="source=file: JSONL of precomputed pass rates "
                                            "(what 'diffucoder rl filter' writes)")
    samples: int = setting(8, min=2, help="source=sample: completions per prompt")
    max_mean: float = setting(0.5, min=0.0, max=1.0, help="keep prompts whose mean pass rate is <= this")
    min_variance: float = setting(0.01, min=0.0, max=0.25, help="... and whose pass-rate variance is >= this")

    def validate(self) -> None:
        if self.source == "file" and not self.pass_rates_file:
            raise ConfigError("'hard_filter.pass_rates_file': required when hard_filter.source is 'file'")


@dataclass
class RLConfig:
    stage: Literal["rl"] = setting("rl", help="names the run in reports")
    model: ModelSection = field(default_factory=ModelSection)
    data: RLDataSection = field(default_factory=RLDataSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    reward: RewardSection = field(default_factory=RewardSection)
    advantage: AdvantageSection = field(default_factory=AdvantageSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    hard_filter: HardFilterSection = field(default_factory=HardFilterSection)
    optim: OptimSection = field(default_factory=OptimSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    def validate(self) -> None:
        if self.optim.warmup_steps > self.train.steps:
            raise ConfigError(f"'optim.warmup_steps': {self.optim.warmup_steps} is more than "
                              f"train.steps={self.train.steps}")
        if self.distributed.backend == "fsdp2":
            raise ConfigError("'distributed.backend': fsdp2 shards the weights, but every rank decodes its "
                              "rollouts with the whole model; use ddp or deepspeed (ZeRO-2)")
        local = self.rollout.group_size * self.rollout.prompts_per_step
        if self.objective.micro_batch and self.objective.micro_batch > local:
            raise ConfigError(f"'objective.micro_batch': {self.objective.micro_batch} is more than the "
                              f"{local} completions of a step")
        if self.hard_filter.enabled and self.hard_filter.source == "records" and self.data.kind != "acecode_jsonl":
            raise ConfigError("'hard_filter.source': 'records' reads AceCode's 'inferences' pass rates; "
                              "use data.kind=acecode_jsonl, or source sample / file")

    def rank_prompts(self, world_size: int) -> int:
        """Prompts per step on one rank (a clear error when the world size does not divide them)."""
        if self.rollout.prompts_per_step % world_size:
            raise ConfigError(f"'rollout.prompts_per_step': {self.rollout.prompts_per_step} prompts do not "
                              f"divide among {world_size} ranks")
        return self.rollout.prompts_per_step // world_size

    def micro_batches(self, world_size: int) -> tuple[int, int]:
        """(completions per micro-batch, micro-batches per update) on one rank."""
        rows = self.rank_prompts(world_size) * self.rollout.group_size
        size = self.objective.micro_batch or rows
        if rows % size:
            raise ConfigError(f"'objective.micro_batch': {size} does not divide a rank's {rows} completions "
                              f"({self.rank_prompts(world_size)} prompts x group_size {self.rollout.group_size})")
        return size, rows // size


def engine_config(cfg: RLConfig, world_size: int) -> TrainConfig:
    """The trainer-shaped view the engines read (``training.engines.build_engine``): one optimizer
    update per inner iteration, so the schedule spans ``train.steps * mu`` updates; a
    micro-batch is ``objective.micro_batch`` completions (DeepSpeed's batch sizes)."""
    size, count = cfg.micro_batches(world_size)
    mu = cfg.objective.mu
    return TrainConfig(stage="sft", model=cfg.model, data=DataSection(batch_size=size, grad_accum=count),
                       optim=dataclasses.replace(cfg.optim, warmup_steps=cfg.optim.warmup_steps * mu),
                       distributed=cfg.distributed, checkpoint=cfg.checkpoint,
                       train=dataclasses.replace(cfg.train, steps=cfg.train.steps * mu), output=cfg.output)
