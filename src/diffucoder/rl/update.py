"""One coupled-GRPO update of the policy on a batch of scored rollouts (METHOD.md section 5).

    stats = grpo_update(engine, reference, batch, advantages, cfg, mask_token_id, mask_seeds=[11, 12])
    stats["loss"], stats["kl"], stats["clip_fraction"], stats["grad_norm"], stats["logp_var"]

For each of the ``mu`` inner iterations a fresh mask seed draws the estimator's masks
(``estimator_passes``). Before any update, the old log-probs (the current policy) and the
reference log-probs are computed with each iteration's masks, without gradients. Then
per iteration: the policy log-probs with the same masks, the clipped loss + beta * k3 KL
(``grpo_loss``), backward over ``objective.micro_batch``-row micro-batches, clip and one
optimizer step (``engine.step``). Iteration 0 therefore has rho = 1 exactly (a pure
policy-gradient step); later iterations see the policy move and get clipped.

``logp_var`` is the variance of the per-sequence log-likelihood estimate (sum of the
token estimates) across the iterations' mask draws of the unchanged policy, averaged
over sequences: the estimator's noise, measured on the run's own data. With ``mu = 1``
one extra draw is made for it (no gradients).
"""
from __future__ import annotations

from typing import Sequence

import torch

from diffucoder.rl.config import RLConfig
from diffucoder.rl.logprobs import EstimatorConfig, MaskPass, estimator_passes, token_logprobs
from diffucoder.rl.objective import grpo_loss
from diffucoder.rl.rollouts import Rollouts

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


def grpo_update(engine, reference, batch: Rollouts, advantages: torch.Tensor, cfg: RLConfig, mask_token_id: int,
                mask_seeds: Sequence[int], micro: int) -> dict[str, float]:
    """``len(mask_seeds)`` (= mu) optimizer steps on ``batch``; the step's averaged statistics."""
    obj = cfg.objective
    device = batch.mask.device
    advantages = advantages.to(device=device, dtype=torch.float32)
    policy = engine.module
    passes = [estimator_passes(batch.mask, obj.estimator, _generator(seed, device)) for seed in mask_seeds]
    was_training = policy.training
    policy.eval()   # no dropout in these models; eval mode documents that old / ref are read-only
    try:
        old = [batch_logprobs(policy, batch, p, obj.estimator, mask_token_id, micro) for p in passes]
        extra = []
        if len(passes) == 1:   # a second draw, only to measure the estimator's variance
            spare = estimator_passes(batch.mask, obj.estimator, _generator(mask_seeds[0] + 1, device))
            extra = [batch_logprobs(policy, batch, spare, obj.estimator, mask_token_id, micro)]
        ref = ([batch_logprobs(reference, batch, p, obj.estimator, mask_token_id, micro) for p in passes]
               if reference is not None and obj.beta > 0 else [None] * len(passes))
    finally:
        policy.train(was_training)
    sums = {key: 0.0 for key in ("loss", *STAT_KEYS)}
    norms, count = [], 0
    unused = _generator(0, device)
    micro_steps = -(-batch.rows // micro)
    for iteration, iteration_passes in enumerate(passes):
        for index, start in enumerate(range(0, batch.rows, micro)):
            rows = slice(start, start + micro)
            part = batch.select(rows)
            with engine.accumulating(last=index == micro_steps - 1):
                logp = token_logprobs(engine.model, part.prompt_ids, part.prompt_attention, part.completion_ids,
                                      part.mask, obj.estimator, unused, mask_token_id,
                                      passes=_slice(iteration_passes, rows))
                ref_rows = ref[iteration][rows] if ref[iteration] is not None else None
                out = grpo_loss(logp, old[iteration][rows], ref_rows, advantages[rows], part.mask,
                                eps=obj.eps, beta=obj.beta)
                engine.backward(out.loss)
            sums["loss"] += float(out.loss.detach())
            for key in STAT_KEYS:
                sums[key] += float(out.stats.get(key, 0.0))
            count += 1
        norms.append(engine.step())
    stats = {key: value / count for key, value in sums.items()}
    stats["grad_norm"] = norms[-1]
    stats["grad_norm_mean"] = sum(norms) / len(norms)
    stats["logp_var"] = estimator_variance(old + extra, batch.mask)
    stats["logp_seq_mean"] = float(torch.stack([o.sum(dim=1) for o in old]).mean())
    return stats
