"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (docs/method.md, section 5).

    from diffucoder.training.schedule import lr_factor, warmup_cosine
    scheduler = warmup_cosine(optimizer, warmup_steps=20, total_steps=200, min_lr_ratio=0.1)
    lr_factor(0, 20, 200, 0.1)      # 0.05: step 0 already trains at lr / warmup_steps

``lr(step) = lr * lr_factor(step)`` where the factor rises linearly to 1 over
``warmup_steps`` (``(step + 1) / warmup_steps``) and then follows
``min + (1 - min) * (1 + cos(pi * progress)) / 2`` down to ``min_lr_ratio`` at the last step.
The scheduler is a plain ``LambdaLR``; its ``state_dict`` goes into checkpoints.
"""
from __future__ import annotations

import math

import torch

from diffucoder.errors import DiffucoderError


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if total_steps < 1 or not 0.0 <= min_lr_ratio <= 1.0 or warmup_steps < 0:
        raise DiffucoderError(f"lr schedule: need total_steps >= 1, warmup_steps >= 0 and "
                              f"0 <= min_lr_ratio <= 1, got {total_steps}, {warmup_steps}, {min_lr_ratio}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 1:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (decay_steps - 1))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, warmup_steps, total_steps, min_lr_ratio)  # check the arguments up front
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, min_lr_ratio))
