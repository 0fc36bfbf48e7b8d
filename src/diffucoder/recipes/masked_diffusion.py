"""The masked-diffusion recipe: pre-training (adaptation) and SFT of a Dream model, one loop.

    diffucoder pretrain --config configs/tiny-cpu/pretrain.yaml --data URI --output URI [key=value ...]
    diffucoder midtrain --config configs/7b-gpu/midtrain.yaml --init URI --data URI --output URI
    diffucoder sft --config configs/tiny-cpu/sft.yaml --init URI --data URI --output URI
    python -m torch.distributed.run --nproc_per_node 2 -m diffucoder.cli pretrain --config ... \\
        distributed.backend=fsdp2

    from diffucoder.config import load_config
    from diffucoder.recipes.masked_diffusion import TrainConfig, train
    cfg = load_config(TrainConfig, "configs/tiny-cpu/pretrain.yaml",
                      ["data.uri=file:///abs/store/runs/r1/curated", "output.uri=file:///abs/store/runs/r1/pretrain"])
    result = train(cfg)            # result.summary, result.model_dir, result.report_md

The file reads top to bottom: the recipe's config, what it reads before computing (every check
happens there, before a model exists), its typed train state, the loop, the end of the run, the
command line. A step: ``data.grad_accum`` micro-batches of the masked-diffusion loss
(``diffucoder.diffusion.loss``: annealed attention, truncation / clean prefix, SFT prompt never
masked), backward, clip, AdamW, warm-up + cosine. Every ``checkpoint.every_steps`` the engine
(weights, optimizer, schedule) and the ``TrainState`` (step, data position, metrics, every RNG)
are published to the store; a restarted run resumes from the newest complete checkpoint and ends
with bit-identical weights on CPU. Rank 0 writes ``metrics.jsonl``, ``loss_curve.png`` and
``report.md`` and exports the model (+ tokenizer) as a Hugging Face directory to ``output.uri``.
The method is docs/method.md, section 2.
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
from typing import Any, Callable, Literal

import torch
from tqdm import tqdm

from diffucoder.config import ConfigError, dump_yaml, load_config, setting
from diffucoder.config.recipes import recipe_path
from diffucoder.data.shards import TokenShards
from diffucoder.diffusion.loss import DiffusionLossConfig, autoregressive_loss, diffusion_loss
from diffucoder.errors import DiffucoderError
from diffucoder.model import build_config, build_model, load_model, param_count
from diffucoder.model.io import read_checkpoint_config
from diffucoder.tasks.config import TaskSuiteConfig
from diffucoder.training.chat import ChatConfig
from diffucoder.training.checkpoint import Checkpoints, rng_state, seeded_streams, set_rng_state
from diffucoder.training.config import (CheckpointSection, DistributedSection, ModelSection, OptimSection,
                                        OutputSection, TrainSection, check_warmup, shorthand_values)
from diffucoder.training.data_loader import ChatRows, RowLoader, ShardRows
from diffucoder.training.distributed import DistEnv, init_distributed, shutdown
from diffucoder.training.engines import BatchLayout, build_engine, check_replicas_agree, deepspeed_config
from diffucoder.training.export import (TrainResult, exportable_module, finish_model_dir, gather_weights,
                                        save_model_dir)
from diffucoder.training.flops import flops_per_token, measure_matmul_peak
from diffucoder.training.inputs import cache_root, fetch_dir, fetch_file, load_tokenizer, rank_zero_first, special_ids
from diffucoder.training.metrics import MetricsLog, Window
from diffucoder.training.report import plot_loss_curve, render_report

EVAL_SEED_OFFSET = 7919  # validation masks come from their own, fixed generator


# -- the recipe ----------------------------------------------------------------------------------

@dataclass
class DataSection:
    kind: Literal["token_shards", "chat_jsonl"] = setting(
        "token_shards", help="curated token shards (pretrain) or chat JSONL (sft)")
    uri: str = setting("", help="curated shard artifact (URI or dir), or chat JSONL file / artifact URI")
    file: str = setting("sft-train.jsonl", help="chat_jsonl: the file inside a directory or artifact")
    val_file: str = setting("", help="chat_jsonl: validation file beside data.file ('' = none); "
                                     "token_shards use the shards' val split")
    tokenizer: str = setting("", help="HF tokenizer dir or store URI; '' = the one in data.uri "
                                      "(token_shards) or in model.init_from (chat_jsonl)")
    seq_len: int = setting(0, min=0, help="tokens per row; 0 = the shards' packed length. For shards "
                                         "it must divide the packed length")
    canvas_jitter: float = setting(0.0, min=0.0, max=1.0, help="chat_jsonl: share of training rows whose canvas "
                                   "ends at a random length in [prompt + response + eos, seq_len]; "
                                   "teaches a small model to answer in sampling's shorter canvases")
    batch_size: int = setting(8, min=1, help="rows per device per micro-step")
    grad_accum: int = setting(1, min=1, help="micro-steps per optimizer step")
    shuffle: bool = setting(True, help="reshuffle rows every epoch (seeded)")
    cache_dir: str = setting("", help="where store artifacts are downloaded ('' = $DIFFUCODER_CACHE "
                                      "or ~/.cache/diffucoder)")


@dataclass
class TrainConfig:
    """The recipe (``configs/<preset>/pretrain.yaml``); ``data.kind`` says whether rows come from
    curated token shards (pre-training / adaptation) or from chat JSONL (SFT)."""
    stage: Literal["pretrain", "midtrain", "sft"] = setting("pretrain", help="names the run in reports")
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    diffusion: DiffusionLossConfig = field(default_factory=DiffusionLossConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)   # chat_jsonl: how records become prompt text
    distributed: DistributedSection = field(default_factory=DistributedSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    def validate(self) -> None:
        check_warmup(self.optim, self.train)
        if self.data.kind == "chat_jsonl" and not self.data.seq_len:
            raise ConfigError("'data.seq_len': chat_jsonl rows need a fixed length (e.g. 256)")
        if self.data.kind == "chat_jsonl" and self.diffusion.anneal_steps:
            raise ConfigError("'diffusion.anneal_steps': attention annealing is for adaptation "
                              "pre-training; set it to 0 for chat_jsonl (SFT)")

    def layout(self) -> BatchLayout:
        return BatchLayout(micro_batch=self.data.batch_size, grad_accum=self.data.grad_accum,
                           total_steps=self.train.steps)

    def ar_steps(self) -> int:
        """The first steps, trained autoregressively (``diffusion.ar_warmup`` of ``train.steps``)."""
        return int(self.diffusion.ar_warmup * self.train.steps)


@dataclass
class SFTConfig(TrainConfig):
    """The SFT recipe (``configs/<preset>/sft.yaml``): the trainer's, plus ``tasks``, the synthetic
    task suite the pipeline's SFT stage generates and trains on (``diffucoder.stages.sft``). The
    trainer itself reads ``data.uri``; ``tasks`` is recorded with the recipe."""
    stage: Literal["sft"] = setting("sft", help="names the run in reports")
    tasks: TaskSuiteConfig = field(default_factory=TaskSuiteConfig)


# -- what the run reads before it computes --------------------------------------------------------

@dataclass
class Inputs:
    tokenizer: Any
    ids: dict[str, int]             # eos, pad, mask, dlm_pad
    model_config: Any               # DreamConfig of a random init (None when starting from a checkpoint)
    init_dir: Path | None           # checkpoint to start from (None = random init)
    train_rows: Any
    val_rows: Any | None
    seq_len: int
    data_info: dict[str, Any]


def prepare_inputs(cfg: TrainConfig, env: DistEnv) -> Inputs:
    """Data, tokenizer, special ids and model shape, every one checked; errors name the recipe key."""
    d, cache = cfg.data, cache_root(cfg.data.cache_dir)
    if not d.uri:
        raise ConfigError("'data.uri': required (curated shard artifact or chat JSONL)")
    init_dir = None
    if cfg.model.init_from:
        init_dir = rank_zero_first(env, lambda: fetch_dir(cfg.model.init_from, "model.init_from", cache / "models"))
    if d.kind == "token_shards":
        try:
            shards = rank_zero_first(env, lambda: TokenShards.open(d.uri, cache_dir=cache))
        except DiffucoderError as err:
            raise ConfigError(f"'data.uri': {err}") from None
        train_rows = ShardRows(shards.train, d.seq_len)
        val_rows = ShardRows(shards.val, d.seq_len) if len(shards.val) else None
        tok_dir = (fetch_dir(d.tokenizer, "data.tokenizer", cache / "tokenizers") if d.tokenizer
                   else shards.tokenizer_dir)
        tokenizer = load_tokenizer(tok_dir, "data.tokenizer")
        ids = special_ids(tokenizer, "data.tokenizer")
        differ = {role: (ids[role], shard_id) for role, shard_id in shards.special_tokens.items()
                  if role in ids and ids[role] != shard_id}
        if differ:
            raise ConfigError(f"'data.tokenizer': special ids (tokenizer, shards) differ: {differ}; "
                              "use the tokenizer the shards were made with")
        vocab_size, seq_len = shards.vocab_size, train_rows.seq_len
        info = {"rows": len(train_rows), "val_rows": len(val_rows) if val_rows else 0,
                "packed_seq_len": shards.seq_len, "tokenizer_id": shards.tokenizer_id}
    else:
        source = d.tokenizer or cfg.model.init_from
        if not source:
            raise ConfigError("'data.tokenizer': chat_jsonl needs a tokenizer: set data.tokenizer or "
                              "model.init_from (a checkpoint directory holding one)")
        tok_dir = fetch_dir(source, "data.tokenizer", cache / "tokenizers") if d.tokenizer else init_dir
        tokenizer = load_tokenizer(tok_dir, "data.tokenizer" if d.tokenizer else "model.init_from")
        ids = special_ids(tokenizer, "data.tokenizer")
        path = rank_zero_first(env, lambda: fetch_file(d.uri, d.file, "data.uri", cache / "data"))
        train_rows = ChatRows.from_jsonl(path, tokenizer, d.seq_len, ids, d.canvas_jitter, cfg.chat.template)
        val_rows = None
        if d.val_file:
            val_path = rank_zero_first(env, lambda: fetch_file(d.uri, d.val_file, "data.val_file", cache / "data"))
            val_rows = ChatRows.from_jsonl(val_path, tokenizer, d.seq_len, ids, chat_template=cfg.chat.template)
        vocab_size, seq_len = len(tokenizer), d.seq_len
        info = {"rows": len(train_rows), "skipped_long_prompts": train_rows.skipped,
                "truncated_responses": train_rows.truncated(), "file": str(path)}
    if init_dir is not None:
        raw = read_checkpoint_config(init_dir)
        model_config = None
        if raw.get("vocab_size", 0) < vocab_size:
            raise ConfigError(f"'model.init_from': the checkpoint's vocab_size {raw.get('vocab_size')} is "
                              f"smaller than the tokenizer's {vocab_size}")
        max_positions = raw.get("max_position_embeddings", 0)
    else:
        try:
            model_config = build_config(
                cfg.model.preset, vocab_size=vocab_size, mask_token_id=ids["mask"], pad_token_id=ids["pad"],
                bos_token_id=ids["eos"], eos_token_id=ids["eos"], dlm_pad_token_id=ids["dlm_pad"],
                **cfg.model.shape_overrides())
        except ConfigError as err:
            raise ConfigError(f"model (preset {cfg.model.preset!r}): {err}") from None
        max_positions = model_config.max_position_embeddings
    if seq_len > max_positions:
        raise ConfigError(f"'data.seq_len': rows of {seq_len} tokens exceed the model's "
                          f"max_position_embeddings {max_positions}")
    return Inputs(tokenizer=tokenizer, ids=ids, model_config=model_config, init_dir=init_dir,
                  train_rows=train_rows, val_rows=val_rows, seq_len=seq_len, data_info=info)


# -- the train state ------------------------------------------------------------------------------

@dataclass
class TrainState:
    """Everything beyond the engine (weights, optimizer, schedule) that a resumed run needs to draw
    exactly what the straight run drew: saved whole in every checkpoint, by every rank."""
    loader: RowLoader
    log: MetricsLog
    noise: torch.Generator          # this rank's masking / augmentation draws
    window: Window = field(default_factory=Window)   # the sums of the log line being made
    step: int = 0                   # optimizer steps done
    tokens_seen: int = 0
    prior_seconds: float = 0.0      # training time of earlier processes of this run
    started: float = field(default_factory=time.perf_counter)

    @property
    def train_seconds(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds,
                "data": self.loader.state_dict(), "metrics": self.log.rows, "window": self.window.state_dict(),
                "rng": rng_state(self.noise)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.prior_seconds, self.started = float(state["train_seconds"]), time.perf_counter()
        self.loader.load_state_dict(state["data"])
        self.log.restore(state["metrics"])
        if "window" in state:   # checkpoints written before it was saved start a fresh window
            self.window.load_state_dict(state["window"])
        set_rng_state(state["rng"], self.noise)


# -- the loop -------------------------------------------------------------------------------------

def train(cfg: TrainConfig, on_step: Callable[[TrainState, Any], None] | None = None) -> TrainResult:
    """Run the recipe in this process (one rank of a torchrun launch, or alone). ``on_step(state,
    engine)`` is called after every optimizer step (and its checkpoint), e.g. to profile, to stop
    early, or to measure the model (``engine.model``) as it trains."""
    if cfg.distributed.backend == "deepspeed":   # the JSON's errors before any work
        deepspeed_config(cfg.distributed.deepspeed_config, cfg.optim, cfg.layout(),
                         int(os.environ.get("WORLD_SIZE", "1") or 1))
    env = init_distributed(cfg.distributed.backend, cfg.distributed.dist_backend)
    try:
        return _train(cfg, env, on_step)
    finally:
        shutdown()


def _train(cfg: TrainConfig, env: DistEnv, on_step: Callable[[TrainState, Any], None] | None) -> TrainResult:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    workdir = Path(cfg.output.workdir or tempfile.mkdtemp(prefix=f"diffucoder-{cfg.stage}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(cfg, env)                    # every input check, before any compute
    model = _build_model(cfg, inputs, env)
    engine = build_engine(model, env, backend=cfg.distributed.backend, optim=cfg.optim, layout=cfg.layout(),
                          deepspeed_json=cfg.distributed.deepspeed_config, bf16=cfg.train.precision == "bf16")
    state = TrainState(loader=RowLoader(inputs.train_rows, cfg.data.batch_size, env.rank, env.world_size,
                                        cfg.train.seed, cfg.data.shuffle),
                       log=MetricsLog(workdir / "metrics.jsonl", enabled=env.is_main),
                       noise=seeded_streams(cfg.train.seed * 1_000_003 + env.rank))
    ckpts = Checkpoints(cfg.checkpoint.uri, env, workdir, cfg.checkpoint.keep_last) if cfg.checkpoint.uri else None
    resumed = ckpts is not None and cfg.checkpoint.resume and ckpts.restore(engine, state) is not None
    start_step = state.step
    if not resumed and inputs.val_rows is not None and cfg.train.eval_batches:
        state.log.add({"step": 0, "tokens": 0, "lr": engine.lr,           # the curve's starting point
                       "eval_loss": evaluate(engine, cfg, inputs, env)})
    peak = env.all_reduce_sum(measure_matmul_peak(1024, device=env.device))  # all ranks at once
    per_token = flops_per_token(model.config, inputs.seq_len)
    tokens_per_step = cfg.data.batch_size * inputs.seq_len * cfg.data.grad_accum
    window = state.window
    bar = tqdm(total=cfg.train.steps, initial=start_step, disable=not env.is_main, file=sys.stderr,
               desc=cfg.stage, dynamic_ncols=True, mininterval=1.0)
    while state.step < cfg.train.steps:
        loss_sum, masked, t_sum = 0.0, 0, 0.0
        for micro in range(cfg.data.grad_accum):
            batch = state.loader.next_batch()
            with engine.accumulating(last=micro == cfg.data.grad_accum - 1), _autocast(cfg, env):
                out = _loss(engine, batch, cfg, inputs, env, state.step, state.noise,
                            autoregressive=state.step < cfg.ar_steps())
                engine.backward(out.loss)
            loss_sum += float(out.loss.detach())
            masked, t_sum = masked + out.num_masked, t_sum + out.mean_t
        grad_norm = engine.step()
        state.step += 1
        state.tokens_seen += tokens_per_step * env.world_size
        window.add(loss_sum / cfg.data.grad_accum, tokens_per_step, masked, t_sum / cfg.data.grad_accum, grad_norm)
        done = state.step
        if done % cfg.train.log_every == 0 or done == cfg.train.steps:
            row = _log_row(window, env, per_token, peak, done, engine.lr, state.tokens_seen)
            if (cfg.train.eval_every and done % cfg.train.eval_every == 0) or done == cfg.train.steps:
                row["eval_loss"] = evaluate(engine, cfg, inputs, env)
            state.log.add(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
            window.reset()
        bar.update(1)
        if ckpts is not None and cfg.checkpoint.every_steps and done % cfg.checkpoint.every_steps == 0:
            ckpts.save(done, engine, state)
        if on_step is not None:
            on_step(state, engine)
    bar.close()
    summary = _summary(cfg, env, model.config, state, inputs, start_step, per_token, peak)
    summary["ranks_agree"] = check_replicas_agree(engine, env)
    return _export(cfg, engine, model.config, inputs, state, summary, workdir, env)


def _build_model(cfg: TrainConfig, inputs: Inputs, env: DistEnv):
    if inputs.init_dir is not None:
        model = load_model(inputs.init_dir, mask_token_id=inputs.ids["mask"], dlm_pad_token_id=inputs.ids["dlm_pad"],
                           attn_implementation=cfg.model.attn_implementation)
    else:
        model = build_model(inputs.model_config, attn_implementation=cfg.model.attn_implementation,
                            seed=cfg.train.seed)
    if cfg.train.grad_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model.to(env.device).train()


def _autocast(cfg: TrainConfig, env: DistEnv):
    if cfg.train.precision == "bf16" and env.device.type == "cuda" and cfg.distributed.backend != "deepspeed":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # CPU bf16 autocast is ~30x slower here: fp32 on CPU


def _loss(engine, batch, cfg: TrainConfig, inputs: Inputs, env: DistEnv, step: int,
          generator: torch.Generator, diffusion: DiffusionLossConfig | None = None, autoregressive: bool = False):
    to = env.device
    attention = batch.attention_mask.to(to) if batch.attention_mask is not None else None
    prompt = batch.prompt_mask.to(to) if batch.prompt_mask is not None else None
    if autoregressive:
        return autoregressive_loss(engine.model, batch.tokens.to(to), attention, prompt)
    return diffusion_loss(
        engine.model, batch.tokens.to(to), mask_token_id=inputs.ids["mask"], pad_token_id=inputs.ids["pad"],
        config=diffusion or cfg.diffusion, attention_mask=attention, prompt_mask=prompt,
        step=max(0, step - cfg.ar_steps()), generator=generator)   # annealing counts from the switch


def evaluate(engine, cfg: TrainConfig, inputs: Inputs, env: DistEnv) -> float | None:
    """Mean validation loss over fixed rows and fixed masks (comparable across evaluations)."""
    rows = inputs.val_rows
    if rows is None or cfg.train.eval_batches == 0:
        return None
    generator = torch.Generator().manual_seed(cfg.train.seed + EVAL_SEED_OFFSET + env.rank)
    plain = dataclasses.replace(cfg.diffusion, anneal_steps=0, truncate_prob=0.0, prefix_prob=0.0)
    b, total, count = cfg.data.batch_size, 0.0, 0
    engine.model.eval()
    with torch.no_grad(), _autocast(cfg, env):
        for k in range(cfg.train.eval_batches):
            start = (k * env.world_size + env.rank) * b
            indices = torch.arange(start, start + b).numpy() % len(rows)
            total += float(_loss(engine, rows.batch(indices), cfg, inputs, env, 0, generator, plain).loss)
            count += 1
    engine.model.train()
    return env.all_reduce_sum(total) / env.all_reduce_sum(count)


def _log_row(window: Window, env: DistEnv, per_token: float, peak: float, step: int, lr: float,
             tokens_seen: int) -> dict[str, Any]:
    local = window.summary(per_token, None)
    row = {"step": step, "lr": lr, "tokens": tokens_seen,
           "loss": env.all_reduce_sum(local["loss"]) / env.world_size,
           "tokens_per_s": env.all_reduce_sum(local["tokens_per_s"]),
           "grad_norm": local["grad_norm"], "mean_t": local["mean_t"],
           "masked_tokens": int(env.all_reduce_sum(local["masked_tokens"]))}
    row["flops_per_s"] = row["tokens_per_s"] * per_token
    row["mfu"] = row["flops_per_s"] / peak
    return row


# -- the end of the run ---------------------------------------------------------------------------

def _summary(cfg: TrainConfig, env: DistEnv, config, state: TrainState, inputs: Inputs, start_step: int,
             per_token: float, peak: float) -> dict[str, Any]:
    losses = state.log.series("loss")[1]
    evals = state.log.series("eval_loss")[1]
    rates = state.log.series("tokens_per_s")[1]
    mean_rate = sum(rates) / len(rates) if rates else 0.0
    return {"stage": cfg.stage, "steps": cfg.train.steps, "resumed_from_step": start_step,
            "params": param_count(config), "seq_len": inputs.seq_len, "world_size": env.world_size,
            "backend": cfg.distributed.backend, "tokens": state.tokens_seen,
            "train_seconds": round(state.train_seconds, 2),
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "first_eval_loss": evals[0] if evals else None, "final_eval_loss": evals[-1] if evals else None,
            "tokens_per_s": mean_rate, "flops_per_s": mean_rate * per_token,
            "matmul_peak_flops_per_s": peak, "mfu": mean_rate * per_token / peak, "data": inputs.data_info}


def _export(cfg: TrainConfig, engine, config, inputs: Inputs, state: TrainState, summary: dict[str, Any],
            workdir: Path, env: DistEnv) -> TrainResult:
    """Rank 0 writes the model directory, its plot and report, and publishes it to ``output.uri``."""
    weights = gather_weights(engine)   # collective
    model_dir, model_uri, report = None, "", ""
    if env.is_main:
        recipe = dump_yaml(cfg)
        model_dir, training = save_model_dir(exportable_module(engine, weights, config), inputs.tokenizer,
                                             state.log, workdir)
        plot_loss_curve(state.log.rows, training / "loss_curve.png",
                        title=f"{cfg.stage}: {summary['params'] / 1e6:.1f}M params, {summary['tokens']:,} tokens")
        report = render_report(summary, state.log.rows, recipe, image="loss_curve.png")
        model_uri = finish_model_dir(model_dir, report, recipe, summary, cfg.output.uri, {
            "stage": cfg.stage, "params": summary["params"], "steps": summary["steps"],
            "tokens": summary["tokens"], "final_loss": summary["final_loss"],
            "final_eval_loss": summary["final_eval_loss"]})
    env.barrier()
    return TrainResult(summary=summary, workdir=workdir, model_dir=model_dir, model_uri=model_uri, report_md=report)


# -- the command line: diffucoder pretrain | midtrain | sft ----------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="recipe YAML (default: configs/<preset>/<command>.yaml)")
    parser.add_argument("--preset", default="tiny-cpu", help="recipe preset when --config is not given")
    parser.add_argument("--data", help="data.uri: curated shard artifact (pretrain) or chat JSONL file, "
                                       "directory or artifact (sft)")
    parser.add_argument("--init", help="model.init_from: checkpoint directory or store URI to start from")
    parser.add_argument("--output", help="output.uri: store URI for the final model artifact")
    parser.add_argument("--checkpoint", help="checkpoint.uri: store URI for resumable checkpoints")
    parser.add_argument("--workdir", help="output.workdir: local directory for model, metrics and report")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")


def load_recipe(args: argparse.Namespace, stage: str) -> TrainConfig:
    """The recipe a ``diffucoder pretrain`` / ``sft`` command line asks for."""
    config_class = SFTConfig if stage == "sft" else TrainConfig
    path = args.config or recipe_path(args.preset, stage)
    return load_config(config_class, path, [f"stage={stage}", *args.overrides], values=shorthand_values(args))


def main(args: argparse.Namespace) -> int:
    result = train(load_recipe(args, args.command))
    if result.model_dir is not None:  # rank 0
        shown = {k: v for k, v in result.summary.items() if k != "data"}
        print(json.dumps(shown, indent=1, default=str))
        print(f"model: {result.model_dir}" + (f"\npublished: {result.model_uri}" if result.model_uri else ""))
        print(f"report: {result.model_dir / 'training' / 'report.md'}")
    return 0
