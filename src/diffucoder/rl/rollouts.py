"""Rollouts: G completions per prompt from the diffusion sampler, scored in the sandbox.

    from diffucoder.rl.rollouts import generate_rollouts, score_rollouts
    batch = generate_rollouts(model, tokenizer, prompts, group_size=8, sampling=cfg.rollout.sampling,
                              generator=torch.Generator().manual_seed(0), end_ids=end_ids)
    batch.completion_ids, batch.mask          # (B, C); mask: up to and including the first end token
    rewards = score_rollouts(sandbox, batch, RewardConfig())     # one Reward per row
    rates = sample_pass_rates(model, tokenizer, prompts, samples=8, ...)   # the hard filter's numbers

Rows are prompt-major: row ``i * G + g`` is completion ``g`` of prompt ``i``. Every prompt
is left-padded to one width (``encode_prompts``, no added special tokens, as SFT
encoded them); a decoding chunk drops the pad columns all its rows share. The policy
decodes in eval mode without gradients. An answer is scored up to its first
``<|im_end|>`` (the end of the assistant turn, as the evaluation reads it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from diffucoder.rl.estimator import completion_mask
from diffucoder.rl.prompts import RLPrompt
from diffucoder.rl.rewards import Reward, RewardConfig, score_completions
from diffucoder.sampling import SamplingConfig, decode_completions, diffusion_generate, encode_prompts
from diffucoder.training.chat import IM_END


@dataclass
class Rollouts:
    prompts: list[RLPrompt]             # N prompts
    group_size: int                     # G
    prompt_ids: torch.Tensor            # (N*G, P) left-padded
    prompt_attention: torch.Tensor      # (N*G, P) 1 = token, 0 = pad
    completion_ids: torch.Tensor        # (N*G, C)
    mask: torch.Tensor                  # (N*G, C) bool: completion up to and including the first end token
    texts: list[str]                    # decoded completions, cut at the first end token
    full_texts: list[str]               # the whole completions decoded, special tokens skipped (as the
                                        # released trainer reads them for its format rule)

    @property
    def rows(self) -> int:
        return self.completion_ids.shape[0]

    def answers(self, format_rule: str = "lenient") -> list[str]:
        """What ``format_rule`` scores: the whole decoded completion (``official``), or each completion
        up to the end of the assistant turn (``lenient``)."""
        if format_rule == "official":
            return list(self.full_texts)
        return [text.split(IM_END, 1)[0] for text in self.texts]

    def select(self, rows: slice) -> "Rollouts":
        """Rows ``rows`` (whole groups or not) with the pad columns they all share dropped."""
        ids, attention = trim_left_padding(self.prompt_ids[rows], self.prompt_attention[rows])
        return Rollouts(self.prompts, self.group_size, ids, attention, self.completion_ids[rows],
                        self.mask[rows], self.texts[rows], self.full_texts[rows])


def trim_left_padding(ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the leading columns that are padding in every row (left padding only)."""
    real = attention.bool().any(0).nonzero()
    first = int(real[0]) if len(real) else 0
    return ids[:, first:], attention[:, first:]


@torch.no_grad()
def generate_rollouts(model, tokenizer, prompts: Sequence[RLPrompt], group_size: int, sampling: SamplingConfig,
                      generator: torch.Generator, end_ids: Sequence[int], batch_size: int = 0,
                      prompt_budget: int = 0, scored_end_ids: Sequence[int] | None = None) -> Rollouts:
    """``group_size`` completions of every prompt, decoded ``batch_size`` rows at a time (0 = all).
    ``prompt_budget`` > 0 keeps each prompt's last that many tokens (the released trainer's
    ``prompt_ids[:, -max_prompt_length:]`` on the left-padded batch). The text ends at the first
    of ``end_ids``; the completion mask at the first of ``scored_end_ids`` (default ``end_ids``)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts = [p.text for p in prompts for _ in range(group_size)]
    ids, attention = encode_prompts(tokenizer, texts, add_special_tokens=False)
    if prompt_budget:
        ids, attention = ids[:, -prompt_budget:], attention[:, -prompt_budget:]
    chunk = batch_size or len(texts)
    completions = []
    try:
        for start in range(0, len(texts), chunk):
            rows = slice(start, start + chunk)
            chunk_ids, chunk_attention = trim_left_padding(ids[rows], attention[rows])
            out = diffusion_generate(model, chunk_ids, chunk_attention, sampling, generator=generator)
            completions.append(out.sequences[:, out.prompt_length:].cpu())
    finally:
        model.train(was_training)
    completion_ids = torch.cat(completions)
    mask = completion_mask(completion_ids, end_ids if scored_end_ids is None else scored_end_ids)
    decoded = decode_completions(tokenizer, completion_ids, prompt_lengths=0, stop=list(end_ids))
    whole = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return Rollouts(list(prompts), group_size, ids.to(device), attention.to(device), completion_ids.to(device),
                    mask.to(device), decoded, whole)


def score_rollouts(sandbox, batch: Rollouts, cfg: RewardConfig) -> list[Reward]:
    """One ``Reward`` per row: format of the answer, share of the prompt's tests that pass."""
    tests = [p.tests for p in batch.prompts for _ in range(batch.group_size)]
    entries = [p.entry_point for p in batch.prompts for _ in range(batch.group_size)]
    return score_completions(sandbox, batch.answers(cfg.format_rule), tests, entries, cfg)


def seed_of(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (seed, step, rank, iteration ...): every draw of a run is a
    function of where it happens, so a resumed run draws exactly what the straight run drew."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def passes_all(reward: Reward) -> bool:
    return reward.tests_total > 0 and reward.tests_passed == reward.tests_total


def sample_pass_rates(model, tokenizer, prompts: Sequence[RLPrompt], samples: int, sampling: SamplingConfig,
                      sandbox, cfg: RewardConfig, generator: torch.Generator, end_ids: Sequence[int],
                      batch_size: int = 0, progress=None) -> dict[str, list[float]]:
    """Per prompt, the code reward (share of tests passed, 0 unless well formatted) of ``samples``
    completions of ``model``: the pass rates the hard filter reads."""
    per_chunk = max(1, (batch_size or 64) // samples)   # prompts decoded together
    out = {}
    for start in range(0, len(prompts), per_chunk):
        chunk = list(prompts[start:start + per_chunk])
        batch = generate_rollouts(model, tokenizer, chunk, samples, sampling, generator, end_ids, batch_size)
        rewards = score_rollouts(sandbox, batch, cfg)
        for index, prompt in enumerate(chunk):
            out[prompt.prompt_id] = [r.code for r in rewards[index * samples:(index + 1) * samples]]
        if progress is not None:
            progress.update(len(chunk))
    return out


def greedy_scores(model, tokenizer, prompts: Sequence[RLPrompt], sampling: SamplingConfig, sandbox,
                  cfg: RewardConfig, end_ids: Sequence[int], batch_size: int = 0) -> list[Reward]:
    """One greedy (temperature 0) answer per prompt, scored: the held-out evaluation during RL."""
    greedy = dataclasses.replace(sampling, temperature=0.0, alg_temp=0.0)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(sampling.seed)
    out = []
    chunk = batch_size or len(prompts)
    for start in range(0, len(prompts), chunk):
        batch = generate_rollouts(model, tokenizer, prompts[start:start + chunk], 1, greedy, generator, end_ids)
        out += score_rollouts(sandbox, batch, cfg)
    return out
