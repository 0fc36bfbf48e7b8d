"""Group-relative advantages: each completion's reward against the others for the same prompt.

    from diffucoder.rl import group_advantages, zero_advantage_fraction
    rewards = torch.tensor([[2.5, 0.5, 0.5], [1.0, 1.0, 1.0]])   # (prompts N, completions G)
    group_advantages(rewards)                                  # r - mean(group)
    group_advantages(rewards, baseline="leave_one_out")         # r - mean(the other G - 1)
    group_advantages(rewards, scale=True)                       # ... / (std(group) + eps)
    zero_advantage_fraction(rewards)                            # 0.5: the second group teaches nothing

METHOD.md section 5: the paper writes ``A_i = r_i - mean(r)``, the released code uses the
leave-one-out mean, and neither divides by the std (``scale_rewards: false``). The std, when
asked for, is the unbiased one (as TRL's). A group whose rewards are all equal gets exactly
zero advantage (set explicitly: ``r - mean(r)`` can round to a tiny non-zero number), so it
contributes no policy gradient.
"""
from __future__ import annotations

import torch

from diffucoder.errors import DiffucoderError

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
