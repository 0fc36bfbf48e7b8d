"""How many masked positions a denoising step commits (docs/method.md, section 3.2), as pure functions.

    from diffucoder.sampling.schedule import commit_counts, commit_schedule, timesteps
    ts = timesteps(256, 1e-3)                  # linspace(1, eps, steps + 1), float64
    commit_schedule(256, 256, 1e-3)            # [0, 1, 1, ..., 1, 2]: what each step commits
    commit_counts(masked_per_row, step=3, steps=256, eps=1e-3)   # k per row at one step

With ``n`` masks left in a row at step ``i``: ``k = int(n * (1 - s / t))`` for
``i < steps - 1`` and ``k = n`` at the last step, ``t, s = ts[i], ts[i + 1]``.
The reference code uses ``n = masks in the batch / batch``; it equals the
per-row count used here whenever every row has as many masks left, which is
always true for the confidence algorithms (each row commits exactly ``k`` per
step). Per-row counts keep a row's result independent of its batch.
The arithmetic is float64 (the reference's float32 gives the same counts for
every ``max_new_tokens`` < 300 with steps in {1, 2, N/4, N/2, N-1, N, N+1, 2N}).
"""
from __future__ import annotations

import torch


def timesteps(steps: int, eps: float) -> torch.Tensor:
    """``linspace(1, eps, steps + 1)`` in float64: ``t`` runs from 1 (all masked) down to ``eps``."""
    return torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)


def unmask_fraction(step: int, steps: int, eps: float) -> float:
    """``1 - s / t`` at ``step``, and 1 at the last step: the share of remaining masks to commit."""
    if step == steps - 1:
        return 1.0
    ts = timesteps(steps, eps)
    return float(1.0 - ts[step + 1] / ts[step])


def commit_counts(masked: torch.Tensor, step: int, steps: int, eps: float) -> torch.Tensor:
    """Per-row number of positions to commit at ``step`` given ``masked`` (B,) masks left per row."""
    if step == steps - 1:
        return masked.long().clone()
    fraction = unmask_fraction(step, steps, eps)
    return (masked.double() * fraction).floor().long()


def commit_schedule(length: int, steps: int, eps: float) -> list[int]:
    """What each of ``steps`` steps commits for one row of ``length`` masks (confidence algorithms)."""
    remaining, schedule = length, []
    for step in range(steps):
        count = int(commit_counts(torch.tensor([remaining]), step, steps, eps)[0])
        schedule.append(count)
        remaining -= count
    return schedule
