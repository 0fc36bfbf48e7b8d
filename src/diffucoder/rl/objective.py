"""The coupled-GRPO objective: group-relative advantages and the clipped loss with a k3 KL penalty
(docs/method.md, sections 4.3-4.4).

    from diffucoder.rl.objective import grpo_loss, group_advantages
    rewards = torch.tensor([[2.5, 0.5, 0.5], [1.0, 1.0, 1.0]])   # (prompts N, completions G)
    adv = group_advantages(rewards, baseline="mean").flatten()  # r - mean(group); a flat group -> 0
    out = grpo_loss(logp, old_logp, ref_logp, adv, mask, eps=0.5, beta=0.01)
    out.loss.backward()
    out.stats   # {"policy_loss", "kl", "clip_fraction", "clip_low_fraction", "clip_high_fraction",
                #  "ratio_mean", "ratio_min", "ratio_max", "advantage_mean", "tokens", "sequences"}

**Advantages.** The paper writes ``A_i = r_i - mean(r)``; the released code uses the
leave-one-out mean of the other ``G - 1``; neither divides by the std (``scale_rewards: false``).
The std, when asked for, is the unbiased one (as TRL's). A group whose rewards are all equal gets
exactly zero advantage (set explicitly: ``r - mean(r)`` can round to a tiny non-zero number), so
it contributes no policy gradient.

**Loss.** Per completion token (``mask`` True: up to and including the first end token)::

    rho   = exp(logp - old_logp)
    loss  = -min(rho * A, clip(rho, 1 - eps, 1 + eps) * A) + beta * KL_k3
    KL_k3 = exp(ref - logp) - (ref - logp) - 1          (skipped when beta == 0 or ref is None)

averaged (``normalise``) either over each sequence's tokens, then over the sequences that have
any (``"sequence"``, a row with an empty mask is left out), or over every scored token of the
micro-batch at once (``"token"``: the released trainer's ``(loss * mask).sum() / mask.sum()``, so
a long answer weighs more than a short one). The stats use the same averaging. A token counts as clipped when
the clip is active: ``rho > 1 + eps`` with ``A > 0`` or ``rho < 1 - eps`` with ``A < 0``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from diffucoder.config import setting
from diffucoder.errors import DiffucoderError


# -- advantages -------------------------------------------------------------------------------------

@dataclass
class AdvantageSection:
    baseline: Literal["mean", "leave_one_out"] = setting(
        "mean", help="A = r - mean(group) (paper), or r - mean(the other completions) (released code)")
    scale_rewards: bool = setting(False, help="divide by the group's reward std (the recipe: false)")


BASELINES = ("mean", "leave_one_out")


def _check_rewards(rewards: torch.Tensor) -> torch.Tensor:
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2 or rewards.numel() == 0:
        shape = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise DiffucoderError(f"rewards must be a non-empty (prompts, completions per prompt) tensor, got {shape}")
    rewards = rewards.float()
    if not bool(torch.isfinite(rewards).all()):
        raise DiffucoderError("rewards must be finite (a NaN or inf reward reached the advantages)")
    return rewards


def _all_equal(rewards: torch.Tensor) -> torch.Tensor:
    return (rewards == rewards[:, :1]).all(dim=1)


def group_advantages(rewards: torch.Tensor, baseline: str = "mean", scale: bool = False,
                     eps: float = 1e-4) -> torch.Tensor:
    """(N, G) advantages of (N, G) rewards: minus the group's baseline, optionally over its std."""
    rewards = _check_rewards(rewards)
    if baseline not in BASELINES:
        raise DiffucoderError(f"baseline must be one of {list(BASELINES)}, got {baseline!r}")
    if eps < 0:
        raise DiffucoderError(f"eps must be >= 0, got {eps}")
    group = rewards.shape[1]
    if group < 2 and (baseline == "leave_one_out" or scale):
        raise DiffucoderError(f"a group of {group} completion has no others to compare with: "
                              f"{baseline!r} baseline / std scaling need at least 2 per prompt")
    if baseline == "mean":
        advantages = rewards - rewards.mean(dim=1, keepdim=True)
    else:
        advantages = rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)
    if scale:
        advantages = advantages / (rewards.std(dim=1, keepdim=True) + eps)
    return advantages.masked_fill(_all_equal(rewards)[:, None], 0.0)


def zero_advantage_fraction(rewards: torch.Tensor) -> float:
    """Share of groups whose rewards are all equal (they give no learning signal)."""
    return float(_all_equal(_check_rewards(rewards)).float().mean())


# -- the clipped objective ----------------------------------------------------------------------

NORMALISATIONS = ("sequence", "token")


class GRPOLoss(NamedTuple):
    loss: torch.Tensor           # scalar, differentiable w.r.t. logp
    stats: dict[str, float]


def _check(logp, old_logp, ref_logp, advantages, mask, eps, beta, normalise) -> None:
    if normalise not in NORMALISATIONS:
        raise DiffucoderError(f"grpo_loss: normalise must be one of {list(NORMALISATIONS)}, got {normalise!r}")
    shape = tuple(logp.shape)
    if logp.dim() != 2:
        raise DiffucoderError(f"grpo_loss: logp must be (batch, completion length), got {shape}")
    for name, tensor in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if tensor is not None and tuple(tensor.shape) != shape:
            raise DiffucoderError(f"grpo_loss: {name} has shape {tuple(tensor.shape)}, expected {shape} like logp")
    if mask.dtype != torch.bool:
        raise DiffucoderError(f"grpo_loss: mask must be bool, got {mask.dtype}")
    if tuple(advantages.shape) != (shape[0],):
        raise DiffucoderError(f"grpo_loss: advantages must be ({shape[0]},), one per sequence, "
                              f"got {tuple(advantages.shape)}")
    if not 0.0 < eps < 1.0:
        raise DiffucoderError(f"grpo_loss: eps must be in (0, 1), got {eps}")
    if beta < 0.0:
        raise DiffucoderError(f"grpo_loss: beta must be >= 0, got {beta}")


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over every masked token of the batch (a zero, with its graph, when there is none)."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp(min=1)


def _sequence_mean(values: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over each row's masked tokens, then over the rows that have any (``rows``)."""
    counts = mask.sum(dim=1)
    per_row = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1) / counts.clamp(min=1)
    if not bool(rows.any()):
        return per_row.sum() * 0.0   # keeps the graph (and a zero gradient) when nothing is scored
    return per_row[rows].mean()


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, eps: float = 0.5, beta: float = 0.01,
              normalise: str = "sequence") -> GRPOLoss:
    """The clipped surrogate (+ beta * k3 KL) per token, averaged as ``normalise`` says."""
    _check(logp, old_logp, ref_logp, advantages, mask, eps, beta, normalise)
    logp = logp.float()
    zeros = torch.zeros_like(logp)
    # Outside the mask the inputs are arbitrary: zero them so exp() cannot make inf * 0 = NaN.
    log_ratio = torch.where(mask, logp - old_logp.detach().float(), zeros)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach().float()[:, None]
    clipped = torch.clamp(ratio, 1.0 - eps, 1.0 + eps)
    policy = -torch.minimum(ratio * adv, clipped * adv)
    per_token = policy
    use_kl = beta != 0.0 and ref_logp is not None
    if use_kl:
        ref_minus = torch.where(mask, ref_logp.detach().float() - logp, zeros)
        kl = torch.exp(ref_minus) - ref_minus - 1.0
        per_token = policy + beta * kl
    rows = mask.any(dim=1)

    def mean(values: torch.Tensor) -> torch.Tensor:
        return _token_mean(values, mask) if normalise == "token" else _sequence_mean(values, mask, rows)

    loss = mean(per_token)
    with torch.no_grad():
        high = (ratio > 1.0 + eps) & (adv > 0)
        low = (ratio < 1.0 - eps) & (adv < 0)
        average = lambda values: float(mean(values.float()))  # noqa: E731
        scored = ratio[mask]
        stats = {
            "policy_loss": average(policy),
            "kl": average(kl) if use_kl else 0.0,
            "clip_fraction": average(high | low),
            "clip_high_fraction": average(high),
            "clip_low_fraction": average(low),
            "ratio_mean": average(ratio),
            "ratio_min": float(scored.min()) if scored.numel() else 1.0,
            "ratio_max": float(scored.max()) if scored.numel() else 1.0,
            "advantage_mean": float(advantages.float()[rows].mean()) if bool(rows.any()) else 0.0,
            "tokens": float(mask.sum()),
            "sequences": float(rows.sum()),
        }
    return GRPOLoss(loss=loss, stats=stats)
