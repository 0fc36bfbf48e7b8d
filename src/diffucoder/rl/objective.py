"""The clipped GRPO objective with a k3 KL penalty to a reference model (METHOD.md section 5).

    from diffucoder.rl import grpo_loss
    out = grpo_loss(logp, old_logp, ref_logp, advantages, mask, eps=0.5, beta=0.01)
    out.loss.backward()
    out.stats   # {"policy_loss", "kl", "clip_fraction", "clip_low_fraction", "clip_high_fraction",
                #  "ratio_mean", "ratio_min", "ratio_max", "advantage_mean", "tokens", "sequences"}

Per completion token (``mask`` True: up to and including the first end token)::

    rho   = exp(logp - old_logp)
    loss  = -min(rho * A, clip(rho, 1 - eps, 1 + eps) * A) + beta * KL_k3
    KL_k3 = exp(ref - logp) - (ref - logp) - 1          (skipped when beta == 0 or ref is None)

averaged over each sequence's tokens, then over the sequences that have any (a row with an
empty mask is left out). The stats use the same averaging. A token counts as clipped when
the clip is active: ``rho > 1 + eps`` with ``A > 0`` or ``rho < 1 - eps`` with ``A < 0``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from diffucoder.errors import DiffucoderError


class GRPOLoss(NamedTuple):
    loss: torch.Tensor           # scalar, differentiable w.r.t. logp
    stats: dict[str, float]


def _check(logp, old_logp, ref_logp, advantages, mask, eps, beta) -> None:
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


def _sequence_mean(values: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over each row's masked tokens, then over the rows that have any (``rows``)."""
    counts = mask.sum(dim=1)
    per_row = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1) / counts.clamp(min=1)
    if not bool(rows.any()):
        return per_row.sum() * 0.0   # keeps the graph (and a zero gradient) when nothing is scored
    return per_row[rows].mean()


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, eps: float = 0.5, beta: float = 0.01) -> GRPOLoss:
    """The clipped surrogate (+ beta * k3 KL) per token, averaged per sequence then over sequences."""
    _check(logp, old_logp, ref_logp, advantages, mask, eps, beta)
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
    loss = _sequence_mean(per_token, mask, rows)

    with torch.no_grad():
        high = (ratio > 1.0 + eps) & (adv > 0)
        low = (ratio < 1.0 - eps) & (adv < 0)
        average = lambda values: float(_sequence_mean(values.float(), mask, rows))  # noqa: E731
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
