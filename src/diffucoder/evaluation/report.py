"""Figures of an evaluation: metrics (JSON and KFP names), a Markdown report, two plots.

    metrics = summarize(benchmarks, results, ks=[1, 10])    # {"synthetic": {"pass@1": ...}, ...}
    flat = kfp_metrics(metrics)                              # {"synthetic_pass_at_1": ..., ...}
    plot_pass_at_k(metrics, out / "pass_at_k.png"); plot_pass_rates(results, out / "pass_rates.png")
    text = render_report(metrics, results, context)          # table + plots + settings
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from diffucoder.evaluation.passk import kfp_metric_name
from diffucoder.evaluation.scoring import TaskResult
from diffucoder.plots import pyplot, save_figure

PASS_AT_K_PNG, PASS_RATES_PNG = "pass_at_k.png", "pass_rates.png"


def summarize(benchmarks: list, results: dict[str, list[TaskResult]], ks: list[int],
              skipped: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per benchmark: pass@k (mean over scored tasks), counts, verdicts and extractions."""
    out = {}
    for bench in benchmarks:
        tasks = results[bench.name]
        samples = [s for t in tasks for s in t.samples]
        entry: dict[str, Any] = {"tasks": len(tasks), "source_tasks": bench.total, "source": bench.source,
                                 "n_samples": tasks[0].n if tasks else 0,
                                 "skipped": len(skipped[bench.name])}
        for k in ks:
            entry[f"pass@{k}"] = (sum(t.pass_at(k) for t in tasks) / len(tasks)) if tasks else 0.0
        entry["verdicts"] = dict(Counter(s["verdict"] for s in samples))
        entry["extraction"] = dict(Counter(s["extraction"] for s in samples))
        entry["mean_passed_fraction"] = (sum(s["passed_fraction"] for s in samples) / len(samples)) if samples else 0.0
        out[bench.name] = entry
    return out


def kfp_metrics(metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat scalar metrics with names the Kubeflow UI accepts."""
    flat = {}
    for name, entry in metrics.items():
        for key, value in entry.items():
            if key.startswith("pass@"):
                flat[kfp_metric_name(name, int(key[5:]))] = float(value)
        flat[f"{name}_tasks"] = float(entry["tasks"])
        flat[f"{name}_test_pass_fraction"] = float(entry["mean_passed_fraction"])
    return flat


def plot_pass_at_k(metrics: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = pyplot()

    names = list(metrics)
    ks = sorted({int(key[5:]) for entry in metrics.values() for key in entry if key.startswith("pass@")})
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 4), dpi=100)
    width = 0.8 / max(1, len(ks))
    for index, k in enumerate(ks):
        values = [100 * metrics[n].get(f"pass@{k}", 0.0) for n in names]
        bars = ax.bar([i + index * width for i in range(len(names))], values, width, label=f"pass@{k}")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks([i + width * (len(ks) - 1) / 2 for i in range(len(names))], names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of tasks")
    ax.set_title("pass@k per benchmark")
    ax.legend()
    return save_figure(fig, path)


def plot_pass_rates(results: dict[str, list[TaskResult]], path: Path) -> Path:
    """Histogram of c/n per task: with n samples a task's rate is one of 0, 1/n, ..., 1."""
    plt = pyplot()
    n = max((t.n for tasks in results.values() for t in tasks), default=1)
    rates = {name: [t.passed / t.n for t in tasks if t.n] for name, tasks in results.items()}
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.hist(list(rates.values()), bins=[(i - 0.5) / n for i in range(n + 2)], label=list(rates))
    ax.set_xticks([i / n for i in range(n + 1)] if n <= 10 else [i / 10 for i in range(11)])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"share of a task's {n} samples that pass")
    ax.set_ylabel("tasks")
    ax.set_title("per-task pass rate")
    ax.legend()
    return save_figure(fig, path)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def render_report(metrics: dict[str, dict[str, Any]], ks: list[int], context: dict[str, Any],
                  skipped: dict[str, list[dict]], images: tuple[str, str] = (PASS_AT_K_PNG, PASS_RATES_PNG)) -> str:
    lines = ["# Evaluation report", "", f"Model: `{context['model']}`", ""]
    header = "| benchmark | tasks | samples/task | " + " | ".join(f"pass@{k} (%)" for k in ks) + " |"
    lines += [header, "|---|---|---|" + "---|" * len(ks)]
    for name, entry in metrics.items():
        shown = f"{entry['tasks']}" + (f" of {entry['source_tasks']}" if entry["source_tasks"] != entry["tasks"] else "")
        lines.append(f"| {name} | {shown} | {entry['n_samples']} | "
                     + " | ".join(_pct(entry[f"pass@{k}"]) for k in ks) + " |")
    lines += ["", f"Gate: **{context['gate']} pass@1 = {_pct(context['gate_value'])} %**", ""]
    lines += [f"![pass@k]({images[0]})", "", f"![per-task pass rate]({images[1]})", ""]
    lines += ["## Samples", "", "| benchmark | verdicts | answer extraction | mean share of tests passed |",
              "|---|---|---|---|"]
    for name, entry in metrics.items():
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(entry["verdicts"].items()))
        found = ", ".join(f"{k} {v}" for k, v in sorted(entry["extraction"].items()))
        lines.append(f"| {name} | {verdicts} | {found} | {_pct(entry['mean_passed_fraction'])} % |")
    lines += ["", "## Settings", "",
              f"- prompt style: {context['prompt_style']}; samples per task: {context['n_samples']}",
              f"- sampler: {context['sampler']}",
              f"- sandbox isolation: **{context['isolation']}**{_sandbox_detail(context)}; time limit per sample: max("
              f"{context['time_floor_s']} s, {context['time_factor']} x reference run time); "
              f"memory {context['memory_mb']} MB",
              f"- generation {context['generation_s']:.1f} s, testing {context['testing_s']:.1f} s"]
    for name, entry in metrics.items():
        lines.append(f"- {name}: {entry['source']}")
    dropped = [(name, s) for name, items in skipped.items() for s in items]
    if dropped:
        lines += ["", "## Problems not scored", "",
                  "Their reference solution did not pass its own tests here.", ""]
        lines += [f"- {name} `{s['task_id']}`: {s['reason']}" for name, s in dropped[:50]]
    return "\n".join(lines) + "\n"


def _sandbox_detail(context: dict[str, Any]) -> str:
    """Where the sandbox service ran the answers, and under which layer inside it."""
    info = context.get("sandbox") or {}
    if not info.get("endpoint"):
        return ""
    return f" (the sandbox service at {info['endpoint']}, jobs under {info.get('inside', '?')} there)"


def format_table(metrics: dict[str, dict[str, Any]], ks: list[int]) -> str:
    """A plain-text table for the terminal."""
    head = f"{'benchmark':<16}{'tasks':>7}{'n':>5}" + "".join(f"{'pass@' + str(k):>10}" for k in ks)
    rows = [f"{name:<16}{e['tasks']:>7}{e['n_samples']:>5}" + "".join(f"{100 * e[f'pass@{k}']:>9.1f}%" for k in ks)
            for name, e in metrics.items()]
    return "\n".join([head, *rows])
