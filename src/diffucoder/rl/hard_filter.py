"""The hard-prompt filter: keep the prompts a policy finds hard (low mean, high variance pass rate).

    policy = PolicySampler(model, tokenizer, cfg.rollout.sampling, sandbox, cfg.reward, end_ids,
                           batch_size=0, seed=cfg.train.seed)
    kept, info, table = filter_prompts(cfg.hard_filter, prompts, policy, env)   # what the trainer and
                                                                               # ``diffucoder rl filter`` run

Pass rates come from ``hard_filter.source``: ``sample`` (``hard_filter.samples`` rollouts of
the initial policy per prompt with the rollout sampler, each rank sampling its share of
the prompts), ``file`` (``hard_filter.pass_rates_file``, e.g. what an earlier ``rl filter``
wrote) or ``records`` (AceCode's ``inferences[*].pass_rate``). The selection itself is
``prompts.hard_subset``; a filter that keeps nothing is an error (nothing to train on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
from tqdm import tqdm

from diffucoder.config import ConfigError, setting
from diffucoder.errors import DiffucoderError
from diffucoder.rl.prompts import RLPrompt, hard_subset, read_pass_rates, record_pass_rates, stub_prompt
from diffucoder.rl.rewards import RewardConfig
from diffucoder.rl.rollouts import sample_pass_rates, seed_of
from diffucoder.sampling import SamplingConfig
from diffucoder.training.distributed import DistEnv

FILTER_SEED = 104729   # the filter's rollouts draw from their own seed, apart from training's


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
    thresholds: str = setting("fixed", choices=("fixed", "percentile"),
                              help="fixed: max_mean / min_variance; percentile: the released data script's "
                                   "mean <= mean_percentile-th and std >= std_percentile-th percentile of all prompts")
    max_mean: float = setting(0.5, min=0.0, max=1.0, help="fixed: keep prompts whose mean pass rate is <= this")
    min_variance: float = setting(0.01, min=0.0, max=0.25, help="fixed: ... and whose pass-rate variance is >= this")
    mean_percentile: float = setting(20.0, min=0.0, max=100.0, help="percentile: the mean's cut (released: 20)")
    std_percentile: float = setting(40.0, min=0.0, max=100.0, help="percentile: the std's cut (released: 40)")
    models: list[str] = setting(default_factory=list,
                                help="source=records: the reference models whose pass rates count (released: "
                                     "[qwen_coder_2.5, llama3_instruct]; empty = all)")
    duplicate_stubs: bool = setting(False, help="add each kept AceCode question without 'you' again in the "
                                                "'complete the following function' stub form (released data script)")

    def validate(self) -> None:
        if self.source == "file" and not self.pass_rates_file:
            raise ConfigError("'hard_filter.pass_rates_file': required when hard_filter.source is 'file'")


@dataclass
class PolicySampler:
    """How the filter samples a policy (``source: sample``): the model, its tokenizer, the rollout
    sampler and the sandbox scoring the completions."""
    model: Any
    tokenizer: Any
    sampling: SamplingConfig
    sandbox: Any
    reward: RewardConfig
    end_ids: Sequence[int]
    batch_size: int = 0
    seed: int = 0


def pass_rates(hf: HardFilterSection, prompts: Sequence[RLPrompt], policy: PolicySampler | None, env: DistEnv,
               progress: bool = True) -> dict[str, list[float]]:
    """Every prompt's pass rates from ``hf.source`` (collective for ``sample``)."""
    if hf.source == "file":
        return read_pass_rates(hf.pass_rates_file)
    if hf.source == "records":
        return record_pass_rates(prompts, hf.models)
    if policy is None:
        raise DiffucoderError("hard filter (source sample): no policy to sample")
    mine = list(prompts)[env.rank::env.world_size]
    device = next(policy.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed_of(policy.seed, FILTER_SEED, env.rank))
    with tqdm(total=len(mine), desc="hard filter", unit="prompt", disable=not (progress and env.is_main)) as bar:
        rates = sample_pass_rates(policy.model, policy.tokenizer, mine, hf.samples, policy.sampling, policy.sandbox,
                                  policy.reward, generator, policy.end_ids, policy.batch_size, progress=bar)
    merged: dict[str, list[float]] = {}
    for part in env.all_gather_objects(rates):
        merged.update(part)
    return merged


def with_stubs(prompts: Sequence[RLPrompt], style: str = "project") -> list[RLPrompt]:
    """Each prompt followed by its stub form when it has one (``prompts.stub_prompt``)."""
    out = []
    for prompt in prompts:
        stub = stub_prompt(prompt, style)
        out += [prompt] if stub is None else [prompt, stub]
    return out


def filter_prompts(hf: HardFilterSection, prompts: Sequence[RLPrompt], policy: PolicySampler | None, env: DistEnv,
                   progress: bool = True, prompt_style: str = "project"
                   ) -> tuple[list[RLPrompt], dict[str, Any], list[dict]]:
    """(kept prompts, plus their stub forms with ``duplicate_stubs``; counts for the report; one
    table row per prompt)."""
    rates = pass_rates(hf, prompts, policy, env, progress)
    kept, table = hard_subset(prompts, rates, hf.max_mean, hf.min_variance, hf.thresholds, hf.mean_percentile,
                              hf.std_percentile)
    hard = len(kept)
    if hf.duplicate_stubs:
        kept = with_stubs(kept, prompt_style)
    info = {"source": hf.source, "thresholds": hf.thresholds, "max_mean": hf.max_mean,
            "min_variance": hf.min_variance, "prompts": len(prompts), "hard": hard, "kept": len(kept),
            "mean_pass_rate": float(np.mean([row["mean"] for row in table])) if table else 0.0}
    if not kept:
        raise DiffucoderError(f"hard filter kept none of {len(prompts)} prompts (max_mean {hf.max_mean}, "
                              f"min_variance {hf.min_variance}; mean pass rate {info['mean_pass_rate']:.3f}); "
                              "relax hard_filter.max_mean / min_variance or disable it")
    return kept, info, table
