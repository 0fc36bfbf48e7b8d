"""The hard-prompt filter as the trainer and ``diffucoder rl filter`` run it.

    prompts, info, table = filter_prompts(cfg, inputs.prompts, model, tokenizer, sandbox, end_ids, env)
    result = run_filter(cfg, "out/hard.jsonl")      # the CLI: writes the kept records + pass rates

Pass rates come from ``hard_filter.source``: ``sample`` (``hard_filter.samples`` rollouts of
the initial policy per prompt with the rollout sampler, each rank sampling its share of
the prompts), ``file`` (``hard_filter.pass_rates_file``, e.g. what an earlier ``rl filter``
wrote) or ``records`` (AceCode's ``inferences[*].pass_rate``). The selection itself is
``prompts.hard_subset``; a filter that keeps nothing is an error (nothing to train on).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from diffucoder.errors import DiffucoderError
from diffucoder.rl.config import RLConfig
from diffucoder.rl.prompts import RLPrompt, hard_subset, read_pass_rates, record_pass_rates, write_pass_rates
from diffucoder.training.distributed import DistEnv

FILTER_SEED = 104729   # the filter's rollouts draw from their own seed, apart from training's


def pass_rates(cfg: RLConfig, prompts: Sequence[RLPrompt], model, tokenizer, sandbox, end_ids: Sequence[int],
               env: DistEnv, progress: bool = True) -> dict[str, list[float]]:
    """Every prompt's pass rates from ``hard_filter.source`` (collective for ``sample``)."""
    hf = cfg.hard_filter
    if hf.source == "file":
        return read_pass_rates(hf.pass_rates_file)
    if hf.source == "records":
        return record_pass_rates(prompts)
    from tqdm import tqdm

    from diffucoder.rl.rollouts import sample_pass_rates, seed_of
    mine = list(prompts)[env.rank::env.world_size]
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed_of(cfg.train.seed, FILTER_SEED, env.rank))
    with tqdm(total=len(mine), desc="hard filter", unit="prompt", disable=not (progress and env.is_main)) as bar:
        rates = sample_pass_rates(model, tokenizer, mine, hf.samples, cfg.rollout.sampling, sandbox, cfg.reward,
                                  generator, end_ids, cfg.rollout.batch_size, progress=bar)
    merged: dict[str, list[float]] = {}
    for part in env.all_gather_objects(rates):
        merged.update(part)
    return merged


def filter_prompts(cfg: RLConfig, prompts: Sequence[RLPrompt], model, tokenizer, sandbox, end_ids: Sequence[int],
                   env: DistEnv, progress: bool = True) -> tuple[list[RLPrompt], dict[str, Any], list[dict]]:
    """(kept prompts, counts for the report, one table row per prompt)."""
    hf = cfg.hard_filter
    rates = pass_rates(cfg, prompts, model, tokenizer, sandbox, end_ids, env, progress)
    kept, table = hard_subset(prompts, rates, hf.max_mean, hf.min_variance)
    info = {"source": hf.source, "max_mean": hf.max_mean, "min_variance": hf.min_variance,
            "prompts": len(prompts), "kept": len(kept),
            "mean_pass_rate": float(np.mean([row["mean"] for row in table])) if table else 0.0}
    if not kept:
        raise DiffucoderError(f"hard filter kept none of {len(prompts)} prompts (max_mean {hf.max_mean}, "
                              f"min_variance {hf.min_variance}; mean pass rate {info['mean_pass_rate']:.3f}); "
                              "relax hard_filter.max_mean / min_variance or disable it")
    return kept, info, table


@dataclass
class FilterResult:
    path: Path                  # the kept records (same format as the input: usable as data.uri)
    pass_rates_path: Path       # one row per prompt: id, pass_rates, mean, variance, kept
    info: dict[str, Any]


def run_filter(cfg: RLConfig, out: str | Path, progress: bool = True) -> FilterResult:
    """Compute the pass rates, write the hard subset and the table (one process)."""
    from diffucoder.rl.inputs import prepare_rl_inputs
    from diffucoder.sandbox import Sandbox
    from diffucoder.tasks import write_jsonl
    from diffucoder.training.distributed import init_distributed

    if cfg.distributed.backend != "none":
        raise DiffucoderError("'distributed.backend': the filter command runs in one process; set it to none")
    env = init_distributed("none")
    inputs = prepare_rl_inputs(cfg, env)
    model = None
    if cfg.hard_filter.source == "sample":
        from diffucoder.model import load_model
        model = load_model(inputs.init_dir, mask_token_id=inputs.ids["mask"],
                           dlm_pad_token_id=inputs.ids["dlm_pad"]).eval()
    with Sandbox(cfg.reward.sandbox_config()) as sandbox:
        kept, info, table = filter_prompts(cfg, inputs.prompts, model, inputs.tokenizer, sandbox, inputs.end_ids,
                                           env, progress)
    out = Path(out)
    path = write_jsonl(out, (p.record for p in kept))
    rates_path = write_pass_rates(out.with_name(out.stem + ".pass_rates.jsonl"), table)
    info = {**info, "data": inputs.data_info}
    summary = out.with_name(out.stem + ".filter.json")
    tmp = summary.with_name(f".{summary.name}.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, summary)
    return FilterResult(path, rates_path, info)
