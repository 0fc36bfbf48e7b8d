"""The coupled-GRPO recipe: improve an SFT model with reinforcement learning on code-execution rewards.

    diffucoder rl train --config configs/tiny-cpu/rl.yaml --init file:///abs/store/runs/r1/sft \\
        --data file:///abs/store/runs/r1/tasks --output file:///abs/store/runs/r1/rl [key=value ...]
    diffucoder rl filter --config configs/tiny-cpu/rl.yaml --init DIR --data DIR --out hard.jsonl
    python -m torch.distributed.run --nproc_per_node 2 -m diffucoder.cli rl train --config ... \\
        distributed.backend=ddp

    from diffucoder.config import load_config
    from diffucoder.recipes.coupled_grpo import RLConfig, train_rl
    result = train_rl(load_config(RLConfig, "configs/tiny-cpu/rl.yaml", ["model.init_from=...", "data.uri=..."]))

The file reads top to bottom: the recipe's config, what it reads before computing, its typed
train state, the loop (``train_rl``, one ``rl_step`` per batch of prompts, ``grpo_update`` inside
it), the hard-prompt filter command, the command line. The library it stands on is
``diffucoder.rl`` (estimator, rewards, objective, prompts, rollouts, report) and the training
core (``diffucoder.training``); the method is docs/method.md, section 4.

A step: ``rollout.prompts_per_step`` prompts (each rank its slice, in a resumable seeded order),
``group_size`` completions each from the diffusion sampler (the policy in eval mode, no
gradients, a generator seeded by (seed, step, rank)); rewards from the sandbox; group
advantages; then ``objective.mu`` optimizer updates (fresh masks per iteration; old and
reference log-probs computed once, before any update). The reference model is a frozen copy of
the initial policy, re-synced from the policy every ``objective.ref_sync_every`` steps (``beta =
0``: no reference at all). Every ``checkpoint.every_steps`` the engine, the reference weights
(once re-synced) and the ``RLState`` (step, prompt position, metrics, the hard-filter subset,
RNG) are published to the store; a restarted run resumes from them and ends with bit-identical
weights on CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from tqdm import tqdm

from diffucoder.config import ConfigError, dump_yaml, load_config, setting
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.generation import completion_stop_ids
from diffucoder.model import load_model, param_count
from diffucoder.model.io import read_checkpoint_config
from diffucoder.rl.estimator import EstimatorConfig, MaskPass, estimator_passes, token_logprobs
from diffucoder.rl.hard_filter import HardFilterSection, PolicySampler, filter_prompts, with_stubs
from diffucoder.rl.objective import AdvantageSection, group_advantages, grpo_loss
from diffucoder.rl.prompts import PromptSet, RLPrompt, limit_prompts, read_prompts, write_pass_rates
from diffucoder.rl.report import (KFP_METRIC_KEYS, eval_row, export_rl_model, reward_matrix, reward_sums,
                                  sandbox_summary, step_row, summarize)
from diffucoder.rl.rewards import RewardSection
from diffucoder.rl.rollouts import Rollouts, generate_rollouts, greedy_scores, score_rollouts, seed_of
from diffucoder.sampling.config import SamplingConfig
from diffucoder.tasks import write_jsonl
from diffucoder.training.chat import IM_END
from diffucoder.training.checkpoint import Checkpoints, rng_state, seeded_streams, set_rng_state
from diffucoder.training.config import (CheckpointSection, DistributedSection, ModelSection, OptimSection,
                                        OutputSection, TrainSection, check_warmup, shorthand_values)
from diffucoder.training.data_loader import RowLoader
from diffucoder.training.distributed import DistEnv, init_distributed, shutdown
from diffucoder.training.engines import BatchLayout, build_engine, check_replicas_agree, deepspeed_config
from diffucoder.training.export import TrainResult, exportable_module, gather_weights
from diffucoder.training.inputs import cache_root, fetch_dir, fetch_file, load_tokenizer, rank_zero_first, special_ids
from diffucoder.training.metrics import MetricsLog

__all__ = ["KFP_METRIC_KEYS", "RLConfig", "RLState", "grpo_update", "train_rl"]

ROLLOUT_STREAM, MASK_STREAM = 1, 2   # separate seed streams for rollouts and estimator masks
PROCESS_STREAM = 3                   # the process-wide streams a checkpoint records (seeded_streams)
REFERENCE_FILE = "reference.pt"


# -- the recipe ----------------------------------------------------------------------------------

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
    max_prompt_tokens: int = setting(0, min=0, help="the prompt budget in tokens (0 = what the model's positions "
                                                    "leave beside rollout.sampling.max_new_tokens)")
    long_prompts: Literal["drop", "truncate_left"] = setting(
        "drop", help="a prompt over max_prompt_tokens: drop it (counted), or keep its last max_prompt_tokens "
                     "tokens as the released trainer does (max_prompt_length: 200)")
    prompt_style: Literal["project", "released"] = setting(
        "project", help="released: a system turn 'You are a helpful assistant.' and '\\nTest cases: ' + the first "
                        "case unless the question holds a fenced block; project: one user turn, the case after "
                        "'Your code should pass this test:'")
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
class ObjectiveSection:
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    eps: float = setting(0.5, help="clip rho to [1 - eps, 1 + eps], in (0, 1)")
    beta: float = setting(0.01, min=0.0, help="weight of the k3 KL to the reference model (0 = no reference)")
    mu: int = setting(2, min=1, help="inner iterations per batch of rollouts, each with fresh mask seeds")
    ref_sync_every: int = setting(64, min=0, help="copy the policy into the reference every N RL steps "
                                                  "(0 = never: the reference stays the initial model)")
    micro_batch: int = setting(0, min=0, help="completions per forward/backward (0 = all of a rank's step); "
                                              "must divide a rank's prompts x group_size")
    loss_norm: Literal["sequence", "token"] = setting(
        "sequence", help="token: the per-token loss averaged over all scored tokens of the micro-batch (released); "
                         "sequence: over each completion's tokens, then over completions")
    mask_span: Literal["answer", "completion"] = setting(
        "answer", help="which completion positions the estimator masks: completion = all of them, the <|dlm_pad|> "
                       "tail too (released); answer = up to the first end token (the model never sees the length). "
                       "Either way only the answer's tokens are scored")
    scored_until: Literal["first_stop", "im_end"] = setting(
        "first_stop", help="which completion tokens the loss scores: up to and including the first stop token "
                           "(EOS, <|dlm_pad|>, <|im_end|>); im_end: up to and including the first <|im_end|>, "
                           "the whole completion when it has none (released)")
    mask_seeds: Literal["fresh", "shared"] = setting(
        "fresh", help="fresh: each of the mu iterations draws new masks (the paper); shared: every iteration "
                      "reuses the same masks, as the released trainer's bookkeeping ends up doing")
    ref_sync_alpha: float = setting(1.0, help="reference re-sync: ref = alpha * policy + (1 - alpha) * ref, in (0, 1] "
                                              "(1 = copy; TRL's ref_model_mixup_alpha in the release: 0.6)")
    ref_sync_unit: Literal["rl_steps", "optimizer_steps"] = setting(
        "rl_steps", help="what ref_sync_every counts: RL steps, or optimizer updates (mu per RL step; the release)")

    def validate(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"'objective.eps': must be in (0, 1), got {self.eps!r}")
        if not 0.0 < self.ref_sync_alpha <= 1.0:
            raise ConfigError(f"'objective.ref_sync_alpha': must be in (0, 1], got {self.ref_sync_alpha!r}")

    def ref_sync_due(self, done: int) -> bool:
        """Whether the reference is re-synced after RL step ``done`` (1-based)."""
        if not self.ref_sync_every:
            return False
        if self.ref_sync_unit == "rl_steps":
            return done % self.ref_sync_every == 0
        # optimizer updates: mu per RL step; due when this step's updates cross a multiple of the period
        return (done * self.mu) // self.ref_sync_every > ((done - 1) * self.mu) // self.ref_sync_every


@dataclass
class RLConfig:
    """The recipe (``configs/<preset>/rl.yaml``). ``train.steps`` counts RL steps (one batch of rollouts
    each); each step makes ``objective.mu`` optimizer updates, so the learning-rate schedule runs over
    ``train.steps * mu`` updates (``optim.warmup_steps`` is in RL steps too). ``train.eval_every`` /
    ``train.eval_batches``: greedy pass rate on ``data.eval_file`` (``eval_batches`` batches of
    ``rollout.prompts_per_step`` prompts). A metrics row is written every step (``train.log_every`` is
    unused here), and ``rollout.sampling.seed`` / ``stop`` are not used: rollouts draw from per-step
    seeds and end at the first EOS, ``<|dlm_pad|>`` or single-token ``<|im_end|>``."""
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
        check_warmup(self.optim, self.train)
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

    def layout(self, world_size: int) -> BatchLayout:
        """The engine's view: one optimizer update per inner iteration (the schedule spans
        ``train.steps * mu`` updates), a micro-batch of ``objective.micro_batch`` completions."""
        size, count = self.micro_batches(world_size)
        return BatchLayout(micro_batch=size, grad_accum=count, total_steps=self.train.steps * self.objective.mu)

    def engine_optim(self) -> OptimSection:
        """``optim`` with the warm-up counted in optimizer updates (RL steps x mu)."""
        return dataclasses.replace(self.optim, warmup_steps=self.optim.warmup_steps * self.objective.mu)


# -- what the run reads before it computes --------------------------------------------------------

@dataclass
class RLInputs:
    init_dir: Path
    tokenizer: Any
    ids: dict[str, int]             # eos, pad, mask, dlm_pad
    end_ids: list[int]              # tokens that end a completion (EOS, <|dlm_pad|>, <|im_end|> if one token)
    scored_end_ids: list[int]       # the loss scores a completion up to and including the first of these
    max_positions: int
    prompt_budget: int              # rollouts keep the last this many prompt tokens (0 = whole prompts)
    prompts: list[RLPrompt]
    eval_prompts: list[RLPrompt]
    data_info: dict[str, Any]


def _read_prompts(cfg: RLConfig, env: DistEnv, name: str, key: str, tokenizer, max_tokens: int, cache: Path,
                  max_prompts: int) -> tuple[list[RLPrompt], dict[str, Any]]:
    path = rank_zero_first(env, lambda: fetch_file(cfg.data.uri, name, key, cache / "data"))
    prompts, skipped = read_prompts(path, cfg.data.kind, cfg.data.prompt_style)
    prompts, too_long = limit_prompts(prompts, tokenizer, max_tokens, max_prompts, cfg.data.seed,
                                      keep_long=cfg.data.long_prompts == "truncate_left")
    return prompts, {"file": str(path), "prompts": len(prompts), "skipped_too_long": too_long, **skipped}


def prepare_rl_inputs(cfg: RLConfig, env: DistEnv) -> RLInputs:
    """The SFT model's directory and tokenizer and the prompts, checked before a model is loaded:
    prompts too long to leave room for ``rollout.sampling.max_new_tokens`` are skipped (counted)."""
    if not cfg.model.init_from:
        raise ConfigError("'model.init_from': required: the SFT model to improve (directory or store URI)")
    if not cfg.data.uri:
        raise ConfigError("'data.uri': required: the task-suite artifact (synthetic) or a JSONL file")
    cache = cache_root(cfg.data.cache_dir)
    init_dir = rank_zero_first(env, lambda: fetch_dir(cfg.model.init_from, "model.init_from", cache / "models"))
    if not (init_dir / "config.json").is_file():
        raise ConfigError(f"'model.init_from': {cfg.model.init_from} holds no model (config.json)")
    tokenizer = load_tokenizer(init_dir, "model.init_from")
    ids = special_ids(tokenizer, "model.init_from", dlm_pad="optional")   # a Base model stops at EOS
    max_positions = int(read_checkpoint_config(init_dir).get("max_position_embeddings", 0))
    new_tokens = cfg.rollout.sampling.max_new_tokens
    room = max_positions - new_tokens
    max_tokens = min(cfg.data.max_prompt_tokens or room, room)
    if max_tokens < 1:
        raise ConfigError(f"'rollout.sampling.max_new_tokens': {new_tokens} leaves no room for a prompt in "
                          f"the model's {max_positions} positions")
    prompts, info = _read_prompts(cfg, env, cfg.data.file, "data.uri", tokenizer, max_tokens, cache,
                                  cfg.data.max_prompts)
    if not prompts:
        raise ConfigError(f"'data.uri': no usable prompts in {info['file']} ({info})")
    eval_prompts: list[RLPrompt] = []
    if cfg.data.eval_file and cfg.train.eval_batches:
        wanted = cfg.train.eval_batches * cfg.rollout.prompts_per_step
        eval_prompts, eval_info = _read_prompts(cfg, env, cfg.data.eval_file, "data.eval_file", tokenizer,
                                                max_tokens, cache, wanted)
        if eval_info["file"] == info["file"]:
            raise ConfigError(f"'data.eval_file': data.uri {cfg.data.uri} is a single file, so the held-out "
                              "prompts would be the training prompts; give a directory or artifact")
        info["eval"] = eval_info
    budget = max_tokens if cfg.data.long_prompts == "truncate_left" else 0
    end_ids = completion_stop_ids(tokenizer)
    if cfg.objective.scored_until == "im_end":
        im_end = tokenizer.get_vocab().get(IM_END)
        if im_end is None:
            raise ConfigError(f"'objective.scored_until': im_end, but the tokenizer of {cfg.model.init_from} has no "
                              f"{IM_END} token; use first_stop")
        scored_end_ids = [im_end]
    else:
        scored_end_ids = end_ids
    return RLInputs(init_dir=init_dir, tokenizer=tokenizer, ids=ids, end_ids=end_ids, scored_end_ids=scored_end_ids,
                    max_positions=max_positions, prompt_budget=budget, prompts=prompts, eval_prompts=eval_prompts,
                    data_info=info)


def load_policy(cfg: RLConfig, inputs: RLInputs, env: DistEnv, dtype: torch.dtype = torch.float32):
    return load_model(inputs.init_dir, dtype=dtype, device=env.device, mask_token_id=inputs.ids["mask"],
                      dlm_pad_token_id=inputs.ids["dlm_pad"], attn_implementation=cfg.model.attn_implementation)


# -- the train state ------------------------------------------------------------------------------

@dataclass
class RLState:
    """Everything beyond the engine that a resumed run needs to draw exactly what the straight run
    drew; saved whole in every checkpoint, by every rank. RL draws from per-step seeds
    (``seed_of``), so ``noise`` only records the process-wide RNG streams. The prompt loader is
    attached once the prompt set is known (it may be the hard subset the checkpoint carries)."""
    log: MetricsLog
    loader: RowLoader | None = None
    noise: torch.Generator = field(default_factory=torch.Generator)
    step: int = 0                      # RL steps done
    rollouts: int = 0                  # completions over all ranks so far
    ref_synced_at: int = 0             # the step the reference was last copied from the policy (0 = never)
    prompt_ids: list[str] | None = None   # the hard-filter subset, when one was computed
    hard_filter: dict[str, Any] = field(default_factory=dict)
    prior_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    restored_position: dict[str, Any] | None = None   # the loader's, until a loader is attached

    @property
    def train_seconds(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.started

    def attach_loader(self, loader: RowLoader) -> None:
        if self.restored_position is not None:
            loader.load_state_dict(self.restored_position)
        self.loader = loader

    def state_dict(self) -> dict[str, Any]:
        assert self.loader is not None, "RLState.state_dict before attach_loader"
        return {"step": self.step, "rollouts": self.rollouts, "ref_synced_at": self.ref_synced_at,
                "prompt_ids": self.prompt_ids, "hard_filter": self.hard_filter, "train_seconds": self.train_seconds,
                "data": self.loader.state_dict(), "metrics": self.log.rows, "rng": rng_state(self.noise)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.rollouts = int(state["step"]), int(state["rollouts"])
        self.ref_synced_at = int(state["ref_synced_at"])
        self.prompt_ids, self.hard_filter = state["prompt_ids"], state["hard_filter"]
        self.prior_seconds, self.started = float(state["train_seconds"]), time.perf_counter()
        self.restored_position = state["data"]
        if self.loader is not None:
            self.loader.load_state_dict(self.restored_position)
        self.log.restore(state["metrics"])
        set_rng_state(state["rng"], self.noise)


class WithReference:
    """The engine as ``Checkpoints`` sees it, plus the reference weights once they were re-synced
    (before that the reference is the initial model, re-read from ``model.init_from``)."""

    def __init__(self, engine, reference, state: RLState, env: DistEnv):
        self.engine, self.reference, self.state, self.env = engine, reference, state, env

    @torch.no_grad()
    def sync(self, step: int, alpha: float = 1.0) -> None:
        """``ref = alpha * policy + (1 - alpha) * ref`` (alpha 1: a copy), as TRL's SyncRefModelCallback."""
        policy = self.engine.module.state_dict()
        for name, ref in self.reference.state_dict().items():
            if alpha < 1.0:
                ref.mul_(1.0 - alpha).add_(policy[name].to(ref.dtype), alpha=alpha)
            else:
                ref.copy_(policy[name])
        self.state.ref_synced_at = step

    def save_state(self, directory: Path) -> None:
        self.engine.save_state(directory)
        if self.reference is not None and self.state.ref_synced_at and self.env.is_main:
            torch.save(self.reference.state_dict(), directory / REFERENCE_FILE)

    def load_state(self, directory: Path) -> None:
        self.engine.load_state(directory)
        if self.reference is not None and (directory / REFERENCE_FILE).is_file():
            self.reference.load_state_dict(torch.load(directory / REFERENCE_FILE, map_location=self.env.device,
                                                      weights_only=True))


# -- the loop -------------------------------------------------------------------------------------

def train_rl(cfg: RLConfig, on_step: Callable[[RLState, Any], None] | None = None) -> TrainResult:
    """Run the recipe in this process (one rank of a torchrun launch, or alone). ``on_step(state,
    engine)`` is called after every RL step (and its checkpoint), e.g. to profile, to stop early,
    or to measure the policy (``engine.model``) as it trains."""
    if cfg.distributed.backend == "deepspeed":   # the JSON's errors before any work
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        deepspeed_config(cfg.distributed.deepspeed_config, cfg.engine_optim(), cfg.layout(world), world,
                         keys=("objective.micro_batch", "objective.micro_batch (micro-batches per update)"))
    env = init_distributed(cfg.distributed.backend, cfg.distributed.dist_backend)
    try:
        return _train(cfg, env, on_step)
    finally:
        shutdown()


def _train(cfg: RLConfig, env: DistEnv, on_step: Callable[[RLState, Any], None] | None) -> TrainResult:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    workdir = Path(cfg.output.workdir or tempfile.mkdtemp(prefix="diffucoder-rl-"))
    workdir.mkdir(parents=True, exist_ok=True)
    per_rank = cfg.rank_prompts(env.world_size)      # layout errors before any model exists
    micro, _ = cfg.micro_batches(env.world_size)
    cfg.reward.check_sandbox()   # below reward.sandbox.min_isolation, or no service: stop before any model
    inputs = prepare_rl_inputs(cfg, env)
    policy = load_policy(cfg, inputs, env).train()
    if cfg.train.grad_checkpointing:
        policy.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    engine = build_engine(policy, env, backend=cfg.distributed.backend, optim=cfg.engine_optim(),
                          layout=cfg.layout(env.world_size), deepspeed_json=cfg.distributed.deepspeed_config,
                          bf16=cfg.train.precision == "bf16")
    if getattr(engine, "zero_stage", 0) == 3:
        raise ConfigError("'distributed.deepspeed_config': ZeRO-3 shards the weights, but every rank decodes its "
                          "rollouts with the whole model; use ZeRO-2 (configs/deepspeed/zero2.json)")
    reference = None
    if cfg.objective.beta > 0:
        reference = load_policy(cfg, inputs, env, next(engine.module.parameters()).dtype).eval().requires_grad_(False)
    log = MetricsLog(workdir / "metrics.jsonl", enabled=env.is_main)
    ckpts = Checkpoints(cfg.checkpoint.uri, env, workdir, cfg.checkpoint.keep_last) if cfg.checkpoint.uri else None
    state = RLState(log=log, noise=seeded_streams(seed_of(cfg.train.seed, PROCESS_STREAM, env.rank)))
    held = WithReference(engine, reference, state, env)
    # the sandbox service or a local pool, self-checked: a known-good program passes, known-bad ones fail
    with cfg.reward.open_sandbox() as sandbox:
        sandbox_info = sandbox.describe()
        resumed = ckpts is not None and cfg.checkpoint.resume and ckpts.restore(held, state) is not None
        prompts = _training_prompts(cfg, inputs, engine, sandbox, env, state)
        state.attach_loader(RowLoader(PromptSet(prompts), per_rank, env.rank, env.world_size, cfg.train.seed))
        start_step = state.step
        evaluating = bool(inputs.eval_prompts)
        if not resumed and evaluating:
            log.add({"step": 0, **_evaluate(cfg, engine, inputs, sandbox, env)})
        bar = tqdm(total=cfg.train.steps, initial=start_step, disable=not env.is_main, file=sys.stderr,
                   desc="rl", dynamic_ncols=True, mininterval=1.0)
        while state.step < cfg.train.steps:
            row = rl_step(cfg, state, engine, reference, inputs, sandbox, env, micro)
            state.step += 1
            state.rollouts = row["rollouts"]
            done = state.step
            if evaluating and ((cfg.train.eval_every and done % cfg.train.eval_every == 0) or done == cfg.train.steps):
                row.update(_evaluate(cfg, engine, inputs, sandbox, env))
            log.add(row)
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", pass_rate=f"{row['pass_rate']:.2f}",
                            kl=f"{row['kl']:.2e}")
            bar.update(1)
            if reference is not None and cfg.objective.ref_sync_due(done):
                held.sync(done, cfg.objective.ref_sync_alpha)
            if ckpts is not None and cfg.checkpoint.every_steps and done % cfg.checkpoint.every_steps == 0:
                ckpts.save(done, held, state)
            if on_step is not None:
                on_step(state, engine)
        bar.close()
    return _export(cfg, engine, inputs, state, prompts, start_step, workdir, env, sandbox_info)


def _training_prompts(cfg: RLConfig, inputs: RLInputs, engine, sandbox, env: DistEnv,
                      state: RLState) -> list[RLPrompt]:
    """All prompts, or the hard subset: computed once, then carried by the checkpoints."""
    if state.prompt_ids is not None:
        known = with_stubs(inputs.prompts, cfg.data.prompt_style) if cfg.hard_filter.duplicate_stubs else inputs.prompts
        by_id = {p.prompt_id: p for p in known}
        missing = [i for i in state.prompt_ids if i not in by_id]
        if missing:
            raise DiffucoderError(f"checkpoint: {len(missing)} prompts it trained on are not in data.uri "
                                  f"(e.g. {missing[:3]}); resume with the same data")
        return [by_id[i] for i in state.prompt_ids]
    if not cfg.hard_filter.enabled:
        return inputs.prompts
    policy = PolicySampler(engine.module, inputs.tokenizer, cfg.rollout.sampling, sandbox, cfg.reward,
                           inputs.end_ids, cfg.rollout.batch_size, cfg.train.seed)
    kept, state.hard_filter, _table = filter_prompts(cfg.hard_filter, inputs.prompts, policy, env,
                                                     prompt_style=cfg.data.prompt_style)
    state.prompt_ids = [p.prompt_id for p in kept]
    return kept


def _evaluate(cfg: RLConfig, engine, inputs: RLInputs, sandbox, env: DistEnv) -> dict:
    mine = inputs.eval_prompts[env.rank::env.world_size]
    rewards = greedy_scores(engine.module, inputs.tokenizer, mine, cfg.rollout.sampling, sandbox, cfg.reward,
                            inputs.end_ids, cfg.rollout.batch_size) if mine else []
    return eval_row(rewards, env)


def rl_step(cfg: RLConfig, state: RLState, engine, reference, inputs: RLInputs, sandbox, env: DistEnv,
            micro: int) -> dict:
    """RL step ``state.step + 1``: rollouts, rewards, advantages, mu updates; its metrics row (collective)."""
    seed, group, step = cfg.train.seed, cfg.rollout.group_size, state.step
    started = time.perf_counter()
    prompts = state.loader.next_batch()
    generator = torch.Generator(device=env.device).manual_seed(seed_of(seed, ROLLOUT_STREAM, step, env.rank))
    batch = generate_rollouts(engine.module, inputs.tokenizer, prompts, group, cfg.rollout.sampling, generator,
                              inputs.end_ids, cfg.rollout.batch_size, inputs.prompt_budget, inputs.scored_end_ids)
    rolled = time.perf_counter()
    rewards = score_rollouts(sandbox, batch, cfg.reward)
    advantages = group_advantages(reward_matrix(rewards, group), cfg.advantage.baseline,
                                  cfg.advantage.scale_rewards).flatten()
    scored = time.perf_counter()
    seeds = [seed_of(seed, MASK_STREAM, step, env.rank, 0 if cfg.objective.mask_seeds == "shared" else iteration)
             for iteration in range(cfg.objective.mu)]
    lr = engine.lr   # the rate this step's updates start with
    update = grpo_update(engine, reference, batch, advantages, cfg.objective, inputs.ids["mask"], seeds, micro)
    updated = time.perf_counter()
    seconds = {"rollout": rolled - started, "reward": scored - rolled, "update": updated - scored,
               "step": updated - started}
    return step_row(step + 1, lr, reward_sums(rewards, group), update, batch.mask, seconds, env,
                    state.rollouts + group * cfg.rollout.prompts_per_step)


# -- one update: mu optimizer steps on a batch of rollouts ------------------------------------------
#
# For each of the mu inner iterations a fresh mask seed draws the estimator's masks. Before any
# update, the old log-probs (the current policy) and the reference log-probs are computed with
# each iteration's masks, without gradients. Then per iteration: the policy log-probs with the
# same masks, the clipped loss + beta * k3 KL, backward over ``objective.micro_batch``-row
# micro-batches, clip and one optimizer step. Iteration 0 therefore has rho = 1 exactly (a pure
# policy-gradient step); later iterations see the policy move and get clipped. ``logp_var`` is the
# variance of the per-sequence log-likelihood estimate across the iterations' mask draws of the
# unchanged policy, averaged over sequences: the estimator's noise, measured on the run's own
# data (with mu = 1 one extra draw is made for it, without gradients).

STAT_KEYS = ("kl", "clip_fraction", "ratio_mean", "policy_loss")


def _slice(passes: list[MaskPass], rows: slice) -> list[MaskPass]:
    return [MaskPass(one.masked[rows], one.weight[rows]) for one in passes]


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def batch_logprobs(model, batch: Rollouts, passes: list[MaskPass], estimator: EstimatorConfig, mask_token_id: int,
                   micro: int) -> torch.Tensor:
    """(B, C) token log-probs of the whole batch, ``micro`` rows per forward, without gradients."""
    out = []
    unused = _generator(0, batch.mask.device)   # the masks are given: nothing is drawn
    with torch.no_grad():
        for start in range(0, batch.rows, micro):
            rows = slice(start, start + micro)
            part = batch.select(rows)
            out.append(token_logprobs(model, part.prompt_ids, part.prompt_attention, part.completion_ids,
                                      part.mask, estimator, unused, mask_token_id, passes=_slice(passes, rows)))
    return torch.cat(out)


def estimator_variance(estimates: Sequence[torch.Tensor], mask: torch.Tensor) -> float:
    """Mean over sequences (with tokens) of the variance, across draws, of the summed estimate."""
    if len(estimates) < 2:
        return float("nan")
    sums = torch.stack([e.sum(dim=1) for e in estimates]).double()     # (draws, B)
    rows = mask.any(dim=1)
    if not bool(rows.any()):
        return 0.0
    return float(sums[:, rows].var(dim=0, unbiased=True).mean())


def grpo_update(engine, reference, batch: Rollouts, advantages: torch.Tensor, obj: ObjectiveSection,
                mask_token_id: int, mask_seeds: Sequence[int], micro: int) -> dict[str, float]:
    """``len(mask_seeds)`` (= mu) optimizer steps on ``batch``; the step's averaged statistics. Equal
    seeds (``objective.mask_seeds: shared``) draw the same masks, whose old / reference log-probs
    are computed once."""
    device = batch.mask.device
    advantages = advantages.to(device=device, dtype=torch.float32)
    policy = engine.module
    maskable = torch.ones_like(batch.mask) if obj.mask_span == "completion" else batch.mask
    drawn = {seed: estimator_passes(maskable, obj.estimator, _generator(seed, device))
             for seed in dict.fromkeys(mask_seeds)}
    was_training = policy.training
    policy.eval()   # no dropout in these models; eval mode documents that old / ref are read-only
    try:
        old = {seed: batch_logprobs(policy, batch, p, obj.estimator, mask_token_id, micro) for seed, p in drawn.items()}
        extra = []
        if len(drawn) == 1:   # a second draw, only to measure the estimator's variance
            spare = estimator_passes(maskable, obj.estimator, _generator(mask_seeds[0] + 1, device))
            extra = [batch_logprobs(policy, batch, spare, obj.estimator, mask_token_id, micro)]
        use_ref = reference is not None and obj.beta > 0
        ref = {seed: batch_logprobs(reference, batch, p, obj.estimator, mask_token_id, micro) if use_ref else None
               for seed, p in drawn.items()}
    finally:
        policy.train(was_training)
    sums = {key: 0.0 for key in ("loss", *STAT_KEYS)}
    norms, count = [], 0
    unused = _generator(0, device)
    micro_steps = -(-batch.rows // micro)
    for seed in mask_seeds:
        for index, start in enumerate(range(0, batch.rows, micro)):
            rows = slice(start, start + micro)
            part = batch.select(rows)
            with engine.accumulating(last=index == micro_steps - 1):
                logp = token_logprobs(engine.model, part.prompt_ids, part.prompt_attention, part.completion_ids,
                                      part.mask, obj.estimator, unused, mask_token_id,
                                      passes=_slice(drawn[seed], rows))
                ref_rows = ref[seed][rows] if ref[seed] is not None else None
                out = grpo_loss(logp, old[seed][rows], ref_rows, advantages[rows], part.mask,
                                eps=obj.eps, beta=obj.beta, normalise=obj.loss_norm)
                engine.backward(out.loss)
            sums["loss"] += float(out.loss.detach())
            for key in STAT_KEYS:
                sums[key] += float(out.stats.get(key, 0.0))
            count += 1
        norms.append(engine.step())
    stats = {key: value / count for key, value in sums.items()}
    stats["grad_norm"] = norms[-1]
    stats["grad_norm_mean"] = sum(norms) / len(norms)
    stats["logp_var"] = estimator_variance([*old.values(), *extra], batch.mask)
    stats["logp_seq_mean"] = float(torch.stack([o.sum(dim=1) for o in old.values()]).mean())
    return stats


# -- the end of the run ---------------------------------------------------------------------------

def _export(cfg: RLConfig, engine, inputs: RLInputs, state: RLState, prompts: list[RLPrompt], start_step: int,
            workdir: Path, env: DistEnv, sandbox_info: dict) -> TrainResult:
    ranks_agree = check_replicas_agree(engine, env)
    config = engine.module.config
    summary = {"stage": "rl", "steps": cfg.train.steps, "resumed_from_step": start_step,
               "params": param_count(config), "world_size": env.world_size, "backend": cfg.distributed.backend,
               "prompts": len(prompts), "group_size": cfg.rollout.group_size,
               "prompts_per_step": cfg.rollout.prompts_per_step, "mu": cfg.objective.mu,
               "estimator": cfg.objective.estimator.method, "beta": cfg.objective.beta,
               "train_seconds": round(state.train_seconds, 2), **summarize(state.log.rows),
               "ranks_agree": ranks_agree, "hard_filter": state.hard_filter, "data": inputs.data_info,
               **sandbox_summary(sandbox_info)}
    weights = gather_weights(engine)   # collective
    model_dir, model_uri, report = None, "", ""
    if env.is_main:
        model_dir, model_uri, report = export_rl_model(exportable_module(engine, weights, config), inputs.tokenizer,
                                                       state.log, summary, workdir, dump_yaml(cfg), cfg.output.uri)
    env.barrier()
    return TrainResult(summary=summary, workdir=workdir, model_dir=model_dir, model_uri=model_uri, report_md=report)


# -- the hard-prompt filter as a command: diffucoder rl filter -------------------------------------

@dataclass
class FilterResult:
    path: Path                  # the kept records (same format as the input: usable as data.uri)
    pass_rates_path: Path       # one row per prompt: id, pass_rates, mean, variance, kept
    info: dict[str, Any]


def run_filter(cfg: RLConfig, out: str | Path, progress: bool = True) -> FilterResult:
    """Compute the pass rates, write the hard subset and the table (one process)."""
    if cfg.distributed.backend != "none":
        raise DiffucoderError("'distributed.backend': the filter command runs in one process; set it to none")
    env = init_distributed("none")
    sampling = cfg.hard_filter.source == "sample"   # only then does code run (records: pass rates given)
    if sampling:
        cfg.reward.check_sandbox()   # stop before the model loads
    inputs = prepare_rl_inputs(cfg, env)
    with cfg.reward.open_sandbox() if sampling else contextlib.nullcontext() as sandbox:
        policy = None
        if cfg.hard_filter.source == "sample":
            policy = PolicySampler(load_policy(cfg, inputs, env).eval(), inputs.tokenizer, cfg.rollout.sampling,
                                   sandbox, cfg.reward, inputs.end_ids, cfg.rollout.batch_size, cfg.train.seed)
        kept, info, table = filter_prompts(cfg.hard_filter, inputs.prompts, policy, env, progress,
                                           cfg.data.prompt_style)
    out = Path(out)
    path = write_jsonl(out, (p.record for p in kept))
    rates_path = write_pass_rates(out.with_name(out.stem + ".pass_rates.jsonl"), table)
    info = {**info, "data": inputs.data_info}
    summary = out.with_name(out.stem + ".filter.json")
    tmp = summary.with_name(f".{summary.name}.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, summary)
    return FilterResult(path, rates_path, info)


# -- the command line: diffucoder rl train | filter -------------------------------------------------

def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="recipe YAML (default: configs/<preset>/rl.yaml)")
    parser.add_argument("--preset", default="tiny-cpu", help="recipe preset when --config is not given")
    parser.add_argument("--init", help="model.init_from: the SFT model (directory or store URI)")
    parser.add_argument("--data", help="data.uri: task-suite artifact URI or directory, or a prompts JSONL file")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    # allow_abbrev=False: "--out" must not silently mean "--output" on train
    train = sub.add_parser("train", help="improve the model with coupled-GRPO; publish it", allow_abbrev=False)
    _recipe_arguments(train)
    train.add_argument("--output", help="output.uri: store URI for the final model artifact")
    train.add_argument("--checkpoint", help="checkpoint.uri: store URI for resumable checkpoints")
    train.add_argument("--workdir", help="output.workdir: local directory for model, metrics and report")
    keep = sub.add_parser("filter", help="write the hard-prompt subset of the prompts (hard_filter.*)",
                          allow_abbrev=False)
    _recipe_arguments(keep)
    keep.add_argument("--out", required=True, help="where to write the kept prompt records (JSONL); the pass "
                                                    "rates go to <out>.pass_rates.jsonl, counts to <out>.filter.json")


def load_recipe(args: argparse.Namespace) -> RLConfig:
    path = args.config or recipe_path(args.preset, "rl")
    return load_config(RLConfig, path, args.overrides, values=shorthand_values(args))


def main(args: argparse.Namespace) -> int:
    if args.action == "filter":
        result = run_filter(load_recipe(args), args.out)
        shown = {k: v for k, v in result.info.items() if k != "data"}
        print(json.dumps(shown, indent=1))
        print(f"kept prompts: {result.path}\npass rates: {result.pass_rates_path}")
        return 0
    result = train_rl(load_recipe(args))
    if result.model_dir is not None:  # rank 0
        shown = {k: v for k, v in result.summary.items() if k not in ("data", "hard_filter")}
        print(json.dumps(shown, indent=1, default=str))
        print(f"model: {result.model_dir}" + (f"\npublished: {result.model_uri}" if result.model_uri else ""))
        print(f"report: {result.model_dir / 'training' / 'report.md'}")
    return 0
