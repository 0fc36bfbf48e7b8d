"""What an RL run reports: one metrics row per step (reduced over ranks), the summary, the plots,
the Markdown report and the exported model (rank 0).

    sums = reward_sums(rewards, group_size)                 # this rank's rollouts
    row = step_row(step, lr, sums, update_stats, batch.mask, seconds, env, rollouts_so_far)
    summary = summarize(log.rows)                           # initial vs final reward / pass rate, ...
    model_dir, uri, report = export_rl_model(module, tokenizer, log, summary, workdir, recipe_yaml, output_uri)

Keys of a step row (``METRIC_KEYS``): ``reward_mean`` / ``reward_std`` (total reward over all
rollouts of the step), ``format_reward`` / ``code_reward`` (means of the two parts),
``pass_rate`` (share of rollouts passing every test), ``zero_adv_fraction`` (share of
groups whose rewards are all equal: no policy gradient), ``kl`` / ``clip_fraction`` /
``ratio_mean`` / ``policy_loss`` / ``loss`` (means over inner iterations and micro-batches),
``grad_norm`` (last update), ``completion_tokens`` (mean tokens up to and including the
first end token), ``logp_var`` (variance of the per-sequence log-likelihood estimate across
mask draws), ``logp_seq_mean``, ``lr``, ``seconds_rollout`` / ``seconds_reward`` /
``seconds_update`` / ``seconds_step``, ``rollouts`` (completions over all ranks so far) and,
on evaluation steps, ``eval_reward_mean`` / ``eval_pass_rate`` (greedy, held-out prompts).

``<workdir>/model`` is the same Hugging Face directory the SFT stage exports (evaluation and
serving load it as they load an SFT model) plus ``training/``: ``metrics.jsonl``,
``rl_curves.png`` (reward, pass rate, KL, clip fraction), ``report.md``, ``recipe.yaml`` and
``summary.json``. ``KFP_METRIC_KEYS`` are the summary's numbers worth a KFP ``Metrics`` entry.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from matplotlib.ticker import MaxNLocator

from diffucoder.plots import pyplot, save_figure
from diffucoder.rl.rewards import Reward
from diffucoder.rl.rollouts import passes_all
from diffucoder.sandbox import layer_rank
from diffucoder.training.distributed import DistEnv
from diffucoder.training.export import finish_model_dir, save_model_dir
from diffucoder.training.metrics import MetricsLog
from diffucoder.training.report import fmt_value, rolling_mean


# -- one row per step --------------------------------------------------------------------------------

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


# -- the end of the run ---------------------------------------------------------------------------

PLOT = "rl_curves.png"
KFP_METRIC_KEYS = ("initial_reward_mean", "final_reward_mean", "initial_pass_rate", "final_pass_rate",
                   "initial_eval_pass_rate", "final_eval_pass_rate", "mean_kl", "mean_clip_fraction",
                   "mean_zero_adv_fraction", "mean_logp_var", "train_seconds", "seconds_per_step", "steps",
                   "rollouts", "prompts", "params", "resumed_from_step", "sandbox_isolation_level")
PANELS = (("reward_mean", "reward (mean total)"), ("pass_rate", "pass rate (all tests)"),
          ("kl", "KL to reference (k3)"), ("clip_fraction", "clip fraction"))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(rows: list[dict[str, Any]], window: int = 0) -> dict[str, Any]:
    """Initial vs final figures: means over the first and the last ``window`` steps (default: a
    quarter of the run, at least one), since a single step's rollouts are few and noisy."""
    steps = [r for r in rows if r.get("reward_mean") is not None]
    window = window or max(1, len(steps) // 4)
    series = lambda key, part: [r[key] for r in part if r.get(key) is not None]  # noqa: E731
    first, last = steps[:window], steps[-window:]
    evals = [r for r in rows if r.get("eval_pass_rate") is not None]
    seconds = series("seconds_step", steps)
    return {
        "summary_window_steps": window,
        "initial_reward_mean": _mean(series("reward_mean", first)),
        "final_reward_mean": _mean(series("reward_mean", last)),
        "initial_pass_rate": _mean(series("pass_rate", first)),
        "final_pass_rate": _mean(series("pass_rate", last)),
        "initial_eval_pass_rate": evals[0]["eval_pass_rate"] if evals else None,
        "final_eval_pass_rate": evals[-1]["eval_pass_rate"] if len(evals) > 1 else None,
        "mean_kl": _mean(series("kl", steps)),
        "mean_clip_fraction": _mean(series("clip_fraction", steps)),
        "mean_zero_adv_fraction": _mean(series("zero_adv_fraction", steps)),
        "mean_logp_var": _mean(series("logp_var", steps)),
        "seconds_per_step": _mean(seconds),
        "seconds_split": {name: _mean(series(f"seconds_{name}", steps))
                          for name in ("rollout", "reward", "update")},
        "rollouts": steps[-1]["rollouts"] if steps else 0,
    }


def sandbox_summary(info: dict[str, Any]) -> dict[str, Any]:
    """Where the rewards' code ran (``Sandbox.describe()``), flat for the summary table: the layer,
    its rank (a KFP metric: see ``diffucoder.sandbox.LAYERS``) and, for the service, its address and
    the layer inside it."""
    out = {"sandbox_isolation": info["isolation"], "sandbox_isolation_level": layer_rank(info["isolation"])}
    if info.get("endpoint"):
        out.update(sandbox_endpoint=info["endpoint"], sandbox_inside=info.get("inside", ""))
    return out


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=100, sharex=True)
    for ax, (key, label) in zip(axes.flat, PANELS):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None and "reward_mean" in r]
        if points:
            steps, values = zip(*points)
            width = max(2, len(values) // 8)
            ax.plot(steps, values, "o-", color="tab:blue", alpha=0.35, markersize=3, label="per step")
            ax.plot(steps, rolling_mean(list(values), width), color="tab:blue",
                    label=f"mean of last {width} steps")
        if key == "pass_rate":
            evals = [(r["step"], r["eval_pass_rate"]) for r in rows if r.get("eval_pass_rate") is not None]
            if evals:
                ax.plot(*zip(*evals), "s--", color="tab:orange", label="held-out, greedy")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("RL step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return save_figure(fig, path)


COLUMNS = ("step", "reward_mean", "reward_std", "pass_rate", "format_reward", "zero_adv_fraction", "kl",
           "clip_fraction", "completion_tokens", "logp_var", "seconds_step")


def render_report(summary: dict[str, Any], rows: list[dict[str, Any]], config_yaml: str,
                  image: str | None = PLOT) -> str:
    lines = ["# RL report: coupled-GRPO", ""]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| {key} | {fmt_value(value)} |" for key, value in summary.items() if not isinstance(value, (dict, list))]
    split = summary.get("seconds_split") or {}
    if any(v is not None for v in split.values()):
        lines += ["", "Seconds per step: " + ", ".join(f"{k} {fmt_value(v)}" for k, v in split.items()) + "."]
    lines += ["", f"Initial / final figures are means over the first / last {summary.get('summary_window_steps')} "
                  "step(s); pass rate = share of rollouts passing every test."]
    if image:
        lines += ["", f"![reward, pass rate, KL, clip fraction]({image})"]
    logged = [r for r in rows if r.get("reward_mean") is not None]
    if logged:
        shown = logged if len(logged) <= 16 else logged[:: max(1, len(logged) // 12)] + [logged[-1]]
        lines += ["", "## Steps", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for r in dict((r["step"], r) for r in shown).values():
            lines.append("| " + " | ".join(fmt_value(r.get(c)) for c in COLUMNS) + " |")
    lines += ["", "## Recipe", "", "```yaml", config_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


def export_rl_model(module, tokenizer, log: MetricsLog, summary: dict[str, Any], workdir: Path, config_yaml: str,
                    output_uri: str) -> tuple[Path, str, str]:
    """Write ``<workdir>/model`` (+ ``training/``) and publish it to ``output_uri`` (if set)."""
    model_dir, training = save_model_dir(module, tokenizer, log, workdir)
    plot_curves(log.rows, training / PLOT,
                title=f"coupled-GRPO: {summary.get('params', 0) / 1e6:.1f}M params, "
                      f"{summary.get('rollouts', 0):,} rollouts")
    report = render_report(summary, log.rows, config_yaml)
    uri = finish_model_dir(model_dir, report, config_yaml, summary, output_uri, {
        "stage": "rl", "params": summary.get("params"), "steps": summary.get("steps"),
        "final_reward_mean": summary.get("final_reward_mean"), "final_pass_rate": summary.get("final_pass_rate")})
    return model_dir, uri, report
