"""What one RL step is worth knowing about, reduced over ranks: one ``metrics.jsonl`` row.

    rows = reward_stats(rewards, group_size)                # this rank's rollouts
    row = step_row(step, lr, rows, update_stats, batch.mask, seconds, env)
    row["reward_mean"], row["pass_rate"], row["zero_adv_fraction"], row["kl"], row["logp_var"]

Keys of a row (``METRIC_KEYS``): ``reward_mean`` / ``reward_std`` (total reward over all
rollouts of the step), ``format_reward`` / ``code_reward`` (means of the two parts),
``pass_rate`` (share of rollouts passing every test), ``zero_adv_fraction`` (share of
groups whose rewards are all equal: no policy gradient), ``kl`` / ``clip_fraction`` /
``ratio_mean`` / ``policy_loss`` / ``loss`` (means over inner iterations and micro-batches),
``grad_norm`` (last update), ``completion_tokens`` (mean tokens up to and including the
first end token), ``logp_var`` (variance of the per-sequence log-likelihood estimate across
mask draws), ``logp_seq_mean``, ``lr``, ``seconds_rollout`` / ``seconds_reward`` /
``seconds_update`` / ``seconds_step``, ``rollouts`` (completions over all ranks so far) and,
on evaluation steps, ``eval_reward_mean`` / ``eval_pass_rate`` (greedy, held-out prompts).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from diffucoder.rl.rewards import Reward
from diffucoder.rl.rollouts import passes_all
from diffucoder.training.distributed import DistEnv

METRIC_KEYS = ("reward_mean", "reward_std", "format_reward", "code_reward", "pass_rate", "zero_adv_fraction",
               "kl", "clip_fraction", "ratio_mean", "policy_loss", "loss", "grad_norm", "completion_tokens",
               "logp_var", "logp_seq_mean", "lr", "seconds_rollout", "seconds_reward", "seconds_update",
               "seconds_step", "rollouts")
# Averaged over ranks as they are (each rank has the same number of rollouts).
RANK_MEANS = ("kl", "clip_fraction", "ratio_mean", "policy_loss", "loss", "logp_var", "logp_seq_mean",
              "completion_tokens")


def reward_matrix(rewards: Sequence[Reward], group_size: int) -> torch.Tensor:
    """(N, G) total rewards of prompt-major rollouts."""
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not make groups of {group_size}")
    return torch.tensor([r.total for r in rewards], dtype=torch.float32).view(-1, group_size)


def reward_sums(rewards: Sequence[Reward], group_size: int) -> dict[str, float]:
    """Sums that reduce over ranks into the step's reward statistics."""
    totals = [r.total for r in rewards]
    matrix = reward_matrix(rewards, group_size)
    return {"n": float(len(rewards)), "total": sum(totals), "total_sq": sum(t * t for t in totals),
            "format": sum(r.format for r in rewards), "code": sum(r.code for r in rewards),
            "passed": float(sum(passes_all(r) for r in rewards)),
            "groups": float(matrix.shape[0]),
            "zero_groups": float((matrix == matrix[:, :1]).all(dim=1).sum())}


def summarize_rewards(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["n"], 1.0)
    mean = sums["total"] / n
    variance = max(sums["total_sq"] / n - mean * mean, 0.0)
    return {"reward_mean": mean, "reward_std": math.sqrt(variance), "format_reward": sums["format"] / n,
            "code_reward": sums["code"] / n, "pass_rate": sums["passed"] / n,
            "zero_adv_fraction": sums["zero_groups"] / max(sums["groups"], 1.0)}


def reduce_sums(sums: dict[str, float], env: DistEnv) -> dict[str, float]:
    return {key: env.all_reduce_sum(value) for key, value in sorted(sums.items())}


def step_row(step: int, lr: float, sums: dict[str, float], update: dict[str, Any], mask: torch.Tensor,
             seconds: dict[str, float], env: DistEnv, rollouts_so_far: int) -> dict[str, Any]:
    """The metrics row of RL step ``step`` (collective: every rank calls it)."""
    row: dict[str, Any] = {"step": step, "lr": lr, "rollouts": rollouts_so_far}
    row.update(summarize_rewards(reduce_sums(sums, env)))
    local = dict(update)
    local["completion_tokens"] = float(mask.sum(dim=1).float().mean())
    for key in RANK_MEANS:
        value = local.get(key, float("nan"))
        row[key] = env.all_reduce_sum(value) / env.world_size
    row["grad_norm"] = update.get("grad_norm")
    for name, value in seconds.items():
        row[f"seconds_{name}"] = env.all_reduce_sum(value) / env.world_size
    return row


def eval_row(rewards: Sequence[Reward], env: DistEnv) -> dict[str, float]:
    """Greedy held-out reward and pass rate over every rank's share of the evaluation prompts."""
    sums = reduce_sums({"n": float(len(rewards)), "total": sum(r.total for r in rewards),
                        "passed": float(sum(passes_all(r) for r in rewards))}, env)
    n = max(sums["n"], 1.0)
    return {"eval_reward_mean": sums["total"] / n, "eval_pass_rate": sums["passed"] / n,
            "eval_prompts": int(sums["n"])}
