"""Coupled-GRPO: reinforcement learning for a masked-diffusion coder (METHOD.md section 5).

    import torch
    from diffucoder.rl import (EstimatorConfig, RewardConfig, completion_mask, estimator_passes,
                               grpo_loss, group_advantages, score_completions, token_logprobs)

    mask = completion_mask(completion_ids, end_ids=[tok.eos_token_id])     # up to the first end token
    gen = torch.Generator().manual_seed(0)
    passes = estimator_passes(mask, EstimatorConfig(method="coupled", pairs=1), gen)
    logp = token_logprobs(model, prompt_ids, prompt_attention, completion_ids, mask,
                          EstimatorConfig(), gen, mask_token_id, passes=passes)
    rewards = score_completions(sandbox, texts, tests, entry_points, RewardConfig())
    adv = group_advantages(torch.tensor([[r.total for r in rewards]]), baseline="mean")
    out = grpo_loss(logp, old_logp, ref_logp, adv.flatten(), mask, eps=0.5, beta=0.01)
    out.loss.backward()

Modules: ``logprobs`` (coupled / decoupled / full-mask per-token log-prob estimators),
``rewards`` (format and sandboxed code rewards), ``advantages`` (group-relative baselines),
``objective`` (the clipped GRPO loss with the k3 KL penalty).
"""
from diffucoder.rl.advantages import BASELINES, group_advantages, zero_advantage_fraction
from diffucoder.rl.logprobs import (
    ESTIMATORS, EstimatorConfig, MaskPass, completion_mask, estimator_passes, token_logprobs,
)
from diffucoder.rl.objective import GRPOLoss, grpo_loss
from diffucoder.rl.rewards import Reward, RewardConfig, format_reward, score_completions

__all__ = [
    "BASELINES", "ESTIMATORS", "EstimatorConfig", "GRPOLoss", "MaskPass", "Reward", "RewardConfig",
    "completion_mask", "estimator_passes", "format_reward", "grpo_loss", "group_advantages",
    "score_completions", "token_logprobs", "zero_advantage_fraction",
]

# The trainer (coupled-GRPO recipe, CLI ``diffucoder rl``): config, prompts, rollouts, update, trainer.
from diffucoder.rl.config import RLConfig  # noqa: E402
from diffucoder.rl.trainer import train_rl  # noqa: E402

__all__ += ["RLConfig", "train_rl"]
