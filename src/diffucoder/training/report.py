"""The loss-curve PNG and the Markdown report of a training run.

    plot_loss_curve(log.rows, Path("out/loss_curve.png"), title="pretrain (tiny)")
    text = render_report(summary, log.rows, config_yaml, image="loss_curve.png")

The plot shows the per-window training loss, a short trailing mean of it (the
diffusion loss is noisy: each sequence draws its own noise level) and the validation
loss, which uses the same masks at every evaluation and so is directly comparable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from diffucoder.plots import pyplot, save_figure


def rolling_mean(values: list[float], width: int) -> list[float]:
    """Trailing mean over ``width`` points (fewer at the start): smooths without long lag."""
    return [sum(values[max(0, i - width + 1):i + 1]) / len(values[max(0, i - width + 1):i + 1])
            for i in range(len(values))]


def plot_loss_curve(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    plt = pyplot()
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        steps, losses = zip(*train)
        width = max(2, len(losses) // 8)
        ax.plot(steps, losses, color="tab:blue", alpha=0.35, label="train loss (per log window)")
        ax.plot(steps, rolling_mean(list(losses), width), color="tab:blue",
                label=f"train loss (mean of last {width} windows)")
    if evals:
        steps, losses = zip(*evals)
        ax.plot(steps, losses, "o-", color="tab:orange", label="validation loss (fixed masks)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("masked-diffusion loss (nats / eligible token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def fmt_value(value: Any) -> str:
    """A report table cell: floats to 4 significant digits, None as '-'."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def render_report(summary: dict[str, Any], rows: list[dict[str, Any]], config_yaml: str,
                  image: str | None = "loss_curve.png") -> str:
    """Markdown: headline figures, the curve, a table of logged steps, the recipe."""
    lines = [f"# Training report: {summary.get('stage', 'train')}", ""]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| {key} | {fmt_value(value)} |" for key, value in summary.items()
              if not isinstance(value, (dict, list))]
    if image:
        lines += ["", f"![loss curve]({image})"]
    logged = [r for r in rows if r.get("loss") is not None]
    if logged:
        shown = logged if len(logged) <= 12 else logged[:: max(1, len(logged) // 10)] + [logged[-1]]
        lines += ["", "## Logged steps", "",
                  "| step | loss | eval loss | lr | tokens/s | FLOP/s | grad norm |", "|---|---|---|---|---|---|---|"]
        for r in dict((r["step"], r) for r in shown).values():
            lines.append(f"| {r['step']} | {fmt_value(r['loss'])} | {fmt_value(r.get('eval_loss', '-'))} | "
                         f"{fmt_value(r.get('lr'))} | {fmt_value(r.get('tokens_per_s'))} | "
                         f"{fmt_value(r.get('flops_per_s'))} | {fmt_value(r.get('grad_norm'))} |")
    lines += ["", "## Recipe", "", "```yaml", config_yaml.rstrip(), "```", ""]
    return "\n".join(lines)
