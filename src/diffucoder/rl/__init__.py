"""Coupled-GRPO, the library: estimator, rewards, advantages and objective, prompts and rollouts
(docs/method.md, section 4). The recipe that trains with them is ``diffucoder.recipes.coupled_grpo``.

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

Modules: ``estimator`` (coupled / decoupled / full-mask per-token log-prob estimators),
``rewards`` (format and sandboxed code rewards), ``objective`` (group-relative advantages, the
clipped GRPO loss with the k3 KL penalty), ``prompts`` (RL prompt sets, the hard subset),
``rollouts`` (completions from the diffusion sampler, scored), ``hard_filter`` (pass rates of a
policy, the filter), ``report`` (metrics rows, summary, plots, report, export).
"""
from diffucoder.rl.estimator import (ESTIMATORS, EstimatorConfig, MaskPass, completion_mask, estimator_passes,
                                     token_logprobs)
from diffucoder.rl.objective import BASELINES, GRPOLoss, group_advantages, grpo_loss, zero_advantage_fraction
from diffucoder.rl.rewards import Reward, RewardConfig, format_reward, score_completions

__all__ = [
    "BASELINES", "ESTIMATORS", "EstimatorConfig", "GRPOLoss", "MaskPass", "Reward", "RewardConfig",
    "completion_mask", "estimator_passes", "format_reward", "grpo_loss", "group_advantages",
    "score_completions", "token_logprobs", "zero_advantage_fraction",
]
