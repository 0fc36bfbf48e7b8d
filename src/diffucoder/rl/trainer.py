"""The coupled-GRPO recipe (torchtune style): ``train_rl(cfg)`` improves an SFT model with RL.

    from diffucoder.config import load_config
    from diffucoder.rl.config import RLConfig
    from diffucoder.rl.trainer import train_rl
    cfg = load_config(RLConfig, "configs/tiny-cpu/rl.yaml",
                      ["model.init_from=file:///abs/store/runs/r1/sft", "data.uri=file:///abs/store/runs/r1/tasks",
                       "output.uri=file:///abs/store/runs/r1/rl"])
    result = train_rl(cfg)       # TrainResult: summary, workdir, model_dir, model_uri, report_md

    # distributed: the same recipe under torchrun (DDP, or DeepSpeed ZeRO-2 as the 7B recipe)
    python -m torch.distributed.run --nproc_per_node 2 -m diffucoder.cli rl train --config ... distributed.backend=ddp

A step: ``rollout.prompts_per_step`` prompts (each rank its slice, resumable seeded order),
``group_size`` completions each from the diffusion sampler (policy in eval mode, no
gradients, a generator seeded by (seed, step, rank)); rewards from the sandbox; group
advantages; then ``objective.mu`` updates (``update.grpo_update``: fresh masks per
iteration, old and reference log-probs once before any update). The reference model is a
frozen copy of the initial policy, re-synced from the policy every
``objective.ref_sync_every`` steps (``beta = 0``: no reference at all). Every
``checkpoint.every_steps`` the state (weights, optimizer, schedule, prompt position,
reference weights once re-synced, the hard-filter subset, RNG) is published to the store;
a restarted run resumes from it and ends with bit-identical weights on CPU. Rank 0 writes
``metrics.jsonl`` (``diagnostics``), the plots and report and exports the model as the SFT
stage does (``report``). ``DIFFUCODER_TRAIN_PAUSE_AFTER_STEP=N`` pauses after step N (the
kill-and-resume tests' hook, shared with the SFT trainer).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from diffucoder.config import ConfigError, dump_yaml
from diffucoder.errors import DiffucoderError
from diffucoder.rl.advantages import group_advantages
from diffucoder.rl.config import RLConfig, engine_config
from diffucoder.rl.diagnostics import eval_row, reward_matrix, reward_sums, step_row
from diffucoder.rl.inputs import RLInputs, prepare_rl_inputs
from diffucoder.rl.prompts import PromptSet, RLPrompt
from diffucoder.rl.report import export_rl_model, summarize
from diffucoder.rl.rollouts import generate_rollouts, greedy_scores, score_rollouts, seed_of
from diffucoder.rl.update import grpo_update
from diffucoder.training.checkpoint import Checkpoints, rng_state, set_rng_state
from diffucoder.training.data_loader import RowLoader
from diffucoder.training.distributed import DistEnv, init_distributed, shutdown
from diffucoder.training.engines import build_engine
from diffucoder.training.metrics import MetricsLog
from diffucoder.training.recipe import PAUSE_ENV, TrainResult

ROLLOUT_STREAM, MASK_STREAM = 1, 2   # separate seed streams for rollouts and estimator masks
REFERENCE_FILE = "reference.pt"


def train_rl(cfg: RLConfig) -> TrainResult:
    """Run the recipe in this process (one rank of a torchrun launch, or alone)."""
    if cfg.distributed.backend == "deepspeed":
        from diffucoder.training.deepspeed_engine import deepspeed_config
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        deepspeed_config(engine_config(cfg, world), world)   # JSON errors before any work
    env = init_distributed(cfg.distributed.backend, cfg.distributed.dist_backend)
    try:
        return _train(cfg, env)
    finally:
        shutdown()


class ReferenceState:
    """The engine as ``Checkpoints`` sees it, plus the reference weights once they were re-synced
    (before that the reference is the initial model, re-read from ``model.init_from``)."""

    def __init__(self, engine, reference, env: DistEnv):
        self.engine, self.reference, self.env = engine, reference, env
        self.synced_at = 0

    def sync(self, step: int) -> None:
        self.reference.load_state_dict(self.engine.module.state_dict())
        self.synced_at = step

    def save_state(self, directory: Path) -> None:
        self.engine.save_state(directory)
        if self.reference is not None and self.synced_at and self.env.is_main:
            torch.save(self.reference.state_dict(), directory / REFERENCE_FILE)

    def load_state(self, directory: Path) -> None:
        self.engine.load_state(directory)
        if self.reference is not None and (directory / REFERENCE_FILE).is_file():
            self.reference.load_state_dict(torch.load(directory / REFERENCE_FILE, map_location=self.env.device,
                                                      weights_only=True))


def _load(cfg: RLConfig, inputs: RLInputs, env: DistEnv, dtype: torch.dtype = torch.float32):
    from diffucoder.model import load_model
    return load_model(inputs.init_dir, dtype=dtype, device=env.device, mask_token_id=inputs.ids["mask"],
                      dlm_pad_token_id=inputs.ids["dlm_pad"], attn_implementation=cfg.model.attn_implementation)


def _build(cfg: RLConfig, inputs: RLInputs, env: DistEnv):
    policy = _load(cfg, inputs, env).train()
    if cfg.train.grad_checkpointing:
        policy.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    engine = build_engine(policy, engine_config(cfg, env.world_size), env)
    if getattr(engine, "zero_stage", 0) == 3:
        raise ConfigError("'distributed.deepspeed_config': ZeRO-3 shards the weights, but every rank decodes its "
                          "rollouts with the whole model; use ZeRO-2 (configs/deepspeed/zero2.json)")
    reference = None
    if cfg.objective.beta > 0:
        reference = _load(cfg, inputs, env, next(engine.module.parameters()).dtype).eval().requires_grad_(False)
    return engine, ReferenceState(engine, reference, env)


def _evaluate(cfg: RLConfig, engine, inputs: RLInputs, sandbox, env: DistEnv) -> dict:
    mine = inputs.eval_prompts[env.rank::env.world_size]
    rewards = greedy_scores(engine.module, inputs.tokenizer, mine, cfg.rollout.sampling, sandbox, cfg.reward,
                            inputs.end_ids, cfg.rollout.batch_size) if mine else []
    return eval_row(rewards, env)


def _training_prompts(cfg, inputs, engine, sandbox, env, state) -> tuple[list[RLPrompt], dict]:
    """All prompts, or the hard subset: computed once, then carried by the checkpoints."""
    if state is not None and state.get("prompt_ids") is not None:
        by_id = {p.prompt_id: p for p in inputs.prompts}
        missing = [i for i in state["prompt_ids"] if i not in by_id]
        if missing:
            raise DiffucoderError(f"checkpoint: {len(missing)} prompts it trained on are not in data.uri "
                                  f"(e.g. {missing[:3]}); resume with the same data")
        return [by_id[i] for i in state["prompt_ids"]], state.get("hard_filter") or {}
    if not cfg.hard_filter.enabled:
        return inputs.prompts, {}
    from diffucoder.rl.filtering import filter_prompts
    kept, info, _table = filter_prompts(cfg, inputs.prompts, engine.module, inputs.tokenizer, sandbox,
                                        inputs.end_ids, env)
    return kept, info


def _train(cfg: RLConfig, env: DistEnv) -> TrainResult:
    from diffucoder.model import param_count
    from diffucoder.sandbox import Sandbox

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    workdir = Path(cfg.output.workdir) if cfg.output.workdir else Path(tempfile.mkdtemp(prefix="diffucoder-rl-"))
    workdir.mkdir(parents=True, exist_ok=True)
    per_rank = cfg.rank_prompts(env.world_size)      # layout errors before any model exists
    micro, _ = cfg.micro_batches(env.world_size)
    inputs = prepare_rl_inputs(cfg, env)
    engine, holder = _build(cfg, inputs, env)
    noise = torch.Generator()   # RL draws from per-step seeds; kept for the checkpoint's RNG record
    log = MetricsLog(workdir / "metrics.jsonl", enabled=env.is_main)
    ckpts = Checkpoints(cfg.checkpoint.uri, env, workdir, cfg.checkpoint.keep_last) if cfg.checkpoint.uri else None
    state, start_step, prior_seconds, rollouts = None, 0, 0.0, 0
    with Sandbox(cfg.reward.sandbox_config()) as sandbox:
        if ckpts is not None and cfg.checkpoint.resume:
            restored = ckpts.restore(holder)
            if restored is not None:
                state, rng = restored
                start_step, prior_seconds = state["step"], state.get("train_seconds", 0.0)
                rollouts, holder.synced_at = state.get("rollouts", 0), state.get("ref_synced_at", 0)
                log.restore(state["metrics"])
                set_rng_state(rng, noise)
        prompts, filter_info = _training_prompts(cfg, inputs, engine, sandbox, env, state)
        loader = RowLoader(PromptSet(prompts), per_rank, env.rank, env.world_size, cfg.train.seed)
        if state is not None:
            loader.load_state_dict(state["data"])
        evaluating = bool(inputs.eval_prompts)
        if start_step == 0 and evaluating:
            log.add({"step": 0, **_evaluate(cfg, engine, inputs, sandbox, env)})
        pause_after = int(os.environ.get(PAUSE_ENV, "0") or 0)
        began = time.perf_counter()
        bar = tqdm(total=cfg.train.steps, initial=start_step, disable=not env.is_main, file=sys.stderr,
                   desc="rl", dynamic_ncols=True, mininterval=1.0)
        for step in range(start_step, cfg.train.steps):
            row = _step(cfg, step, loader, engine, holder, inputs, sandbox, env, micro, rollouts)
            rollouts = row["rollouts"]
            done = step + 1
            if evaluating and ((cfg.train.eval_every and done % cfg.train.eval_every == 0)
                               or done == cfg.train.steps):
                row.update(_evaluate(cfg, engine, inputs, sandbox, env))
            log.add(row)
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", pass_rate=f"{row['pass_rate']:.2f}",
                            kl=f"{row['kl']:.2e}")
            bar.update(1)
            every = cfg.objective.ref_sync_every
            if holder.reference is not None and every and done % every == 0:
                holder.sync(done)
            if ckpts is not None and cfg.checkpoint.every_steps and done % cfg.checkpoint.every_steps == 0:
                ckpts.save(done, holder, {
                    "step": done, "data": loader.state_dict(), "metrics": log.rows, "rollouts": rollouts,
                    "train_seconds": prior_seconds + time.perf_counter() - began, "ref_synced_at": holder.synced_at,
                    "prompt_ids": [p.prompt_id for p in prompts] if cfg.hard_filter.enabled else None,
                    "hard_filter": filter_info}, rng_state(noise))
            if pause_after and done == pause_after:
                print(f"paused after step {done} ({PAUSE_ENV})", flush=True)
                time.sleep(3600)
        bar.close()
    seconds = prior_seconds + time.perf_counter() - began
    digests = env.all_gather_objects(engine.replica_digest())
    if digests[0] is not None and len(set(digests)) != 1:
        raise DiffucoderError(f"ranks disagree on the final weights ({digests}); the replicas diverged")
    config = engine.module.config
    summary = {"stage": "rl", "steps": cfg.train.steps, "resumed_from_step": start_step,
               "params": param_count(config), "world_size": env.world_size, "backend": cfg.distributed.backend,
               "prompts": len(prompts), "group_size": cfg.rollout.group_size,
               "prompts_per_step": cfg.rollout.prompts_per_step, "mu": cfg.objective.mu,
               "estimator": cfg.objective.estimator.method, "beta": cfg.objective.beta,
               "train_seconds": round(seconds, 2), **summarize(log.rows),
               "ranks_agree": True if digests[0] is not None else None,
               "hard_filter": filter_info, "data": inputs.data_info}
    full = None if engine.holds_full_weights else engine.full_state_dict()   # collective
    model_dir, model_uri, report = None, "", ""
    if env.is_main:
        module = engine.module
        if not engine.holds_full_weights:
            from diffucoder.model import DreamModel
            module = DreamModel(config)
            module.load_state_dict(full)
        model_dir, model_uri, report = export_rl_model(cfg, module, inputs.tokenizer, log, summary, workdir,
                                                       dump_yaml(cfg))
    env.barrier()
    return TrainResult(summary=summary, workdir=workdir, model_dir=model_dir, model_uri=model_uri, report_md=report)


def _step(cfg: RLConfig, step: int, loader: RowLoader, engine, holder: ReferenceState, inputs: RLInputs,
          sandbox, env: DistEnv, micro: int, rollouts: int) -> dict:
    """One RL step: rollouts, rewards, advantages, mu updates; its metrics row (collective)."""
    seed, group = cfg.train.seed, cfg.rollout.group_size
    started = time.perf_counter()
    prompts = loader.next_batch()
    generator = torch.Generator(device=env.device).manual_seed(seed_of(seed, ROLLOUT_STREAM, step, env.rank))
    batch = generate_rollouts(engine.module, inputs.tokenizer, prompts, group, cfg.rollout.sampling, generator,
                              inputs.end_ids, cfg.rollout.batch_size)
    rolled = time.perf_counter()
    rewards = score_rollouts(sandbox, batch, cfg.reward)
    advantages = group_advantages(reward_matrix(rewards, group), cfg.advantage.baseline,
                                  cfg.advantage.scale_rewards).flatten()
    scored = time.perf_counter()
    seeds = [seed_of(seed, MASK_STREAM, step, env.rank, iteration) for iteration in range(cfg.objective.mu)]
    lr = engine.lr   # the rate this step's updates start with
    update = grpo_update(engine, holder.reference, batch, advantages, cfg, inputs.ids["mask"], seeds, micro)
    updated = time.perf_counter()
    seconds = {"rollout": rolled - started, "reward": scored - rolled, "update": updated - scored,
               "step": updated - started}
    return step_row(step + 1, lr, reward_sums(rewards, group), update, batch.mask, seconds, env,
                    rollouts + group * cfg.rollout.prompts_per_step)
