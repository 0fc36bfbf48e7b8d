"""Learning you can see on a CPU: SFT solves held-out tasks, coupled-GRPO lifts them, with intervals.

    .venv/bin/python benchmarks/rl_lift.py                          # everything, ~62 min on 2 cores
    .venv/bin/python benchmarks/rl_lift.py --workdir /tmp/lift      # keep (and on a rerun reuse) the SFT model
    .venv/bin/python benchmarks/rl_lift.py --estimators coupled --skip ar_baseline,decoding --json lift.json
    .venv/bin/python benchmarks/rl_lift.py --workdir /tmp/lift --estimators coupled --rl-steps 90 --sampled-n 8

1. The task suite: the project's synthetic function-writing tasks of ``--families``; SFT, RL
   (``--rl-fraction`` of the training parameter sets) and held-out splits are disjoint by task
   parameters (``diffucoder.tasks``), SFT and RL tasks in ``--wordings`` wordings each.
2. SFT (the project's recipe, ``configs/tiny-cpu/sft.yaml`` with this script's budget): a fresh
   ``tiny`` model (BPE trained on the suite's texts) trained ``--sft-steps``, the first
   ``--ar-warmup`` of them autoregressively, the rest by masked diffusion. Every ``--curve-every``
   steps the model is saved and decoded greedily on a fixed sample of held-out tasks: the learning
   curve (held-out pass@1 and the loss against steps) is ``sft_curve.png``. Its evaluation time is
   not counted as training time.
3. The AR baseline: the same model trained for the same steps autoregressively only, decoded left
   to right (``ar_baseline.py``): a sanity check of the data and the budget.
4. Held-out pass@1 of the SFT model (greedy, every held-out task, the DAG's evaluate step).
5. Decoding on the SFT model: AR-ness (local and global) against temperature (``arness/``), and
   held-out pass@1 of ``steps = N/2``, of the approximate cached modes and of confidence-threshold
   parallel decoding (``--thresholds``, alone and with the dual cache) against exact decoding with
   ``steps = N`` (paired over tasks), with their decoding times.
6. RL's prompts: the RL split's prompts that are hard for the SFT model (``--hard-samples``
   rollouts each, mean pass rate <= ``--hard-max-mean`` and not all equal: method 4.7), found once.
   For each of ``--estimators``: coupled-GRPO from the SFT model with the same budget (``--rl-steps``
   of ``configs/tiny-cpu/rl.yaml`` on those prompts, rewards from the sandbox), then held-out
   pass@1 again, paired against the SFT model.
7. Held-out pass@1 sampled (``--sampled-n`` completions per task at ``--sampled-temperature``, by
   default RL's rollout temperature) for the SFT model and every RL model, paired over tasks:
   RL optimises the sampled policy, and a small model's greedy answer (its mode) is the last
   thing it moves (see below).

Measured on 2 CPU cores (2026-12-05, defaults, from a fresh clone, one run: 3734 s in all; before
the threshold rows existed): SFT 90/126 held-out tasks (71.4 %, [63.0, 78.6]) after 800 steps in
277 s of training (400 autoregressive; the curve on 64 tasks: 0, 1, 5, 17 while autoregressive,
then 35, 41, 43, 46); the AR baseline 100/126. RL, 60 steps at lr 1e-4 on the 90 hard prompts of
the RL split's 464 (about 650 s each). Held-out pass@1 sampled at temperature 1 in 24 steps, 8 per
task: SFT 60.1 %; coupled-GRPO 64.2 %, +4.1 % [+1.2, +7.4] (23 tasks better, 9 worse): a lift
beyond the interval; decoupled +2.3 % [-0.4, +5.1]; full_mask +0.3 % [-3.0, +3.5]. Greedy: coupled
90/126 (+4/-4), decoupled 87 (+4/-7), full_mask 84 (+0/-6, -4.8 % [-8.7, -1.6]). Halving the
decoding steps: -4.8 % [-9.5, -0.8]; the approximate cached modes: -26.2 % [-34.1, -18.3].
docs/method.md, section 4.8, has the other RL runs.

Intervals: 95 % Wilson for a pass rate; for a change against a reference on the same tasks, a 95 %
paired-bootstrap interval over tasks and the exact McNemar p-value. "Lift beyond the interval"
means the paired interval of the change lies above 0. Figures go to stdout, ``report.md``, the JSON
and the plots in the work directory.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffucoder.config import load_config  # noqa: E402
from diffucoder.config.recipes import recipe_path  # noqa: E402
from diffucoder.errors import DiffucoderError  # noqa: E402
from diffucoder.evaluation import EvaluateConfig, evaluate  # noqa: E402
from diffucoder.model import load_model, save_model  # noqa: E402
from diffucoder.recipes.coupled_grpo import RLConfig, run_filter, train_rl  # noqa: E402
from diffucoder.recipes.masked_diffusion import SFTConfig, train  # noqa: E402
from diffucoder.sampling import load_tokenizer  # noqa: E402
from diffucoder.sampling.arness_report import measure_arness, write_arness_report  # noqa: E402
from diffucoder.serving.smoke import random_model_dir  # noqa: E402
from diffucoder.tasks import SPLITS, generate_suite, verify_references  # noqa: E402
from diffucoder.tasks import write_suite as write_tasks  # noqa: E402
from diffucoder.training.chat import render_prompt, split_chat  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ar_baseline import ARCompleter, train_ar  # noqa: E402

FAMILIES = ("affine_map,aggregate_divisible,count_compare,filter_mod,clamp,running,window_sum,rotate,pair_sums,"
            "polynomial,digit_sum,recurrence,replace_char,count_char")
STUDIES = ("ar_baseline", "decoding")


# -- statistics -----------------------------------------------------------------------------------

def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: list[float], resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean(values) over tasks resampled with replacement."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(values) for _ in values) / len(values) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def paired_bootstrap(before: list[float], after: list[float], resamples: int = 4000,
                     seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean(after - before) over tasks resampled with replacement."""
    return bootstrap_mean([a - b for a, b in zip(after, before)], resamples, seed)


def mcnemar_p(before: list[int], after: list[int]) -> float:
    """Exact two-sided McNemar test: a binomial test on the tasks that changed verdict."""
    gained = sum(1 for b, a in zip(before, after) if a and not b)
    lost = sum(1 for b, a in zip(before, after) if b and not a)
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def row(name: str, verdicts: dict[str, int], seconds: float) -> dict:
    solved, total = sum(verdicts.values()), len(verdicts)
    low, high = wilson(solved, total)
    return {"model": name, "solved": solved, "tasks": total, "pass_at_1": solved / total, "ci95": [low, high],
            "seconds": round(seconds, 1)}


def sampled_row(name: str, rates: dict[str, float], samples: int, seconds: float, seed: int,
                reference: dict[str, float] | None = None) -> dict:
    """Sampled pass@1: the mean over tasks of each task's share of passing samples, a bootstrap
    interval over tasks, and (given ``reference``) the paired change on the same tasks."""
    ids = sorted(rates)
    values = [rates[i] for i in ids]
    entry = {"model": name, "tasks": len(ids), "samples": samples, "pass_at_1": sum(values) / len(values),
             "ci95": list(bootstrap_mean(values, seed=seed)), "seconds": round(seconds, 1)}
    if reference is not None:
        before = [reference[i] for i in ids]
        entry.update(change=entry["pass_at_1"] - sum(before) / len(before),
                     change_ci95=list(paired_bootstrap(before, values, seed=seed)),
                     better=sum(a > b for a, b in zip(values, before)),
                     worse=sum(a < b for a, b in zip(values, before)))
    return entry


def paired_row(name: str, reference: dict[str, int], verdicts: dict[str, int], seconds: float, seed: int) -> dict:
    """``row`` plus the change against ``reference`` on the same tasks."""
    ids = sorted(reference)
    b, a = [reference[i] for i in ids], [verdicts[i] for i in ids]
    entry = row(name, verdicts, seconds)
    entry.update(change=sum(a) / len(a) - sum(b) / len(b), change_ci95=list(paired_bootstrap(b, a, seed=seed)),
                 mcnemar_p=mcnemar_p(b, a), gained=sum(1 for x, y in zip(b, a) if y and not x),
                 lost=sum(1 for x, y in zip(b, a) if x and not y))
    return entry


# -- the suite and the models -----------------------------------------------------------------------

def write_suite(root: Path, families: list[str], seed: int, wordings: int, rl_fraction: float) -> dict[str, int]:
    """Every task of ``families``: held-out tasks in one wording, SFT and RL tasks in ``wordings``
    (``generate_suite``). The splits are by parameters and do not depend on the seed: no held-out
    parameter set is ever trained on, and RL's parameter sets are not SFT's."""
    tasks = generate_suite(seed=seed, max_per_family=0, families=families, wordings=wordings,
                           rl_fraction=rl_fraction)
    failures = verify_references(tasks)
    if failures:
        sys.exit(f"reference solutions fail: {failures[:3]}")
    write_tasks(tasks, root)
    return {split: sum(t.split == split for t in tasks) for split in SPLITS}


def fresh_model(root: Path, suite: Path, vocab: int, seed: int) -> Path:
    """A random ``tiny`` model whose BPE is trained on the suite's chat texts (short sequences)."""
    records = [json.loads(line) for line in (suite / "sft-train.jsonl").read_text().splitlines()]
    texts = ["".join(split_chat(r)) for r in records]
    return random_model_dir(root, preset="tiny", vocab_size=vocab, seed=seed, texts=texts)


def snapshot(model, tokenizer_dir: Path, out: Path) -> Path:
    """A loadable model directory of ``model``'s current weights, with ``tokenizer_dir``'s tokenizer."""
    save_model(model, out)
    for path in tokenizer_dir.iterdir():
        if path.name.startswith("tokenizer") or path.name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            shutil.copy2(path, out / path.name)
    return out


def heldout_results(model: Path | None, suite: Path, out_dir: Path, args: argparse.Namespace, max_tasks: int = 0,
                    overrides: tuple[str, ...] = (), completer=None, samples: int = 1) -> list[dict]:
    """The DAG's evaluate step on the held-out tasks (greedy unless overridden): its result rows."""
    cfg = load_config(EvaluateConfig, recipe_path("tiny-cpu", "evaluate"), [
        f"benchmarks=[{{name: synthetic, path: '{suite}', split: heldout}}]", f"max_tasks={max_tasks}",
        f"n_samples={samples}", f"sampling.max_new_tokens={args.max_new_tokens}",
        f"sampling.steps={args.max_new_tokens}", "batch_size=32", *overrides])
    evaluate(cfg, str(model) if model else None, out_dir, completer=completer, progress=False)
    return [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]


def heldout_verdicts(model: Path | None, suite: Path, out_dir: Path, args: argparse.Namespace, max_tasks: int = 0,
                     overrides: tuple[str, ...] = (), completer=None) -> dict[str, int]:
    """task id -> 1 if the (greedy unless overridden) answer passes every test."""
    rows = heldout_results(model, suite, out_dir, args, max_tasks, overrides, completer)
    return {r["task_id"]: int(r["passed"] == r["n"]) for r in rows}


def heldout_rates(model: Path, suite: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """task id -> the share of ``--sampled-n`` completions at ``--sampled-temperature`` in
    ``--sampled-steps`` that pass every test. The evaluation's sampling seed is fixed, so two models
    decode with the same random streams."""
    rows = heldout_results(model, suite, out_dir, args, samples=args.sampled_n,
                           overrides=(f"sampling.temperature={args.sampled_temperature}",
                                      f"sampling.steps={args.sampled_steps}", "ks=[1]"))
    return {r["task_id"]: r["passed"] / r["n"] for r in rows}


# -- the stages of the benchmark ------------------------------------------------------------------------

def sft(init: Path, suite: Path, workdir: Path, args: argparse.Namespace) -> tuple[Path, dict, list[dict]]:
    """The SFT recipe with a held-out pass@1 point every ``--curve-every`` steps; (model, summary, curve)."""
    cfg = load_config(SFTConfig, recipe_path("tiny-cpu", "sft"), [
        f"model.init_from={init}", f"data.uri={suite}", f"output.workdir={workdir}", f"train.steps={args.sft_steps}",
        f"optim.lr={args.sft_lr}", f"optim.warmup_steps={min(20, args.sft_steps)}", f"data.seq_len={args.seq_len}",
        f"data.batch_size={args.batch_size}", f"diffusion.ar_warmup={args.ar_warmup}", "checkpoint.every_steps=0",
        f"train.eval_every={args.curve_every}", f"train.threads={args.threads}", f"train.seed={args.seed}"])
    curve, measuring = [], [0.0]

    def on_step(state, engine) -> None:
        if state.step % args.curve_every and state.step != args.sft_steps:
            return
        began = time.perf_counter()
        model_dir = snapshot(engine.model, init, workdir / "curve" / f"step-{state.step}")
        verdicts = heldout_verdicts(model_dir, suite, model_dir / "eval", args, max_tasks=args.curve_tasks)
        engine.model.train()
        measuring[0] += time.perf_counter() - began
        point = {"step": state.step, "solved": sum(verdicts.values()), "tasks": len(verdicts),
                 "train_seconds": round(state.train_seconds - measuring[0], 1)}
        curve.append(point)
        print(f"  SFT step {state.step}: held-out pass@1 {point['solved']}/{point['tasks']} "
              f"({point['train_seconds']:.0f} s of training)", flush=True)
    result = train(cfg, on_step=on_step)
    summary = dict(result.summary, train_seconds=round(result.summary["train_seconds"] - measuring[0], 1),
                   ar_steps=cfg.ar_steps())
    print(f"SFT: {args.sft_steps} steps ({cfg.ar_steps()} autoregressive) in {summary['train_seconds']:.0f} s of "
          f"training, loss {summary['first_loss']:.2f} -> {summary['final_loss']:.2f}", flush=True)
    return result.model_dir, summary, curve


def plot_curve(curve: list[dict], metrics: Path, ar_steps: int, out: Path) -> None:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot([p["step"] for p in curve], [p["solved"] / p["tasks"] for p in curve], marker="o")
    top.set_ylabel("held-out pass@1 (greedy)")
    top.set_ylim(0, 1)
    bottom.plot([r["step"] for r in rows if "loss" in r], [r["loss"] for r in rows if "loss" in r], label="train loss")
    bottom.plot([r["step"] for r in rows if r.get("eval_loss") is not None],
                [r["eval_loss"] for r in rows if r.get("eval_loss") is not None], marker=".",
                label="held-out diffusion loss")
    bottom.set_yscale("log")
    bottom.set_xlabel("SFT step")
    bottom.legend()
    for axis in (top, bottom):
        axis.axvline(ar_steps, color="grey", linestyle=":", label="autoregressive -> masked diffusion")
        axis.grid(alpha=0.3)
    top.legend(loc="upper left")
    fig.suptitle("SFT learning curve (tiny model, 2 CPU cores)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def ar_baseline(init: Path, suite: Path, work: Path, args: argparse.Namespace) -> dict:
    model, tokenizer, seconds, losses = train_ar(init, suite / "sft-train.jsonl", steps=args.sft_steps,
                                                 lr=args.sft_lr, batch_size=args.batch_size, seq_len=args.seq_len,
                                                 seed=args.seed)
    verdicts = heldout_verdicts(None, suite, work / "eval-ar", args,
                                completer=ARCompleter(model, tokenizer, args.max_new_tokens))
    entry = row("AR baseline", verdicts, seconds)
    entry["final_loss"] = sum(losses[-20:]) / len(losses[-20:])
    return entry


def decoding(model_dir: Path, suite: Path, work: Path, exact: dict[str, int], args: argparse.Namespace) -> dict:
    """AR-ness against temperature, and fast decoding (N/2 steps, cached modes, threshold parallel
    decoding) against exact."""
    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir).eval()
    tasks = [json.loads(line) for line in (suite / "tasks-heldout.jsonl").read_text().splitlines()]
    prompts = [render_prompt([{"role": "user", "content": t["instruction"]}]) for t in tasks[:args.arness_prompts]]
    began = time.perf_counter()
    arness = measure_arness(model, tokenizer, prompts, args.temperatures, args.max_new_tokens, ks=range(1, 5),
                            batch_size=16, seed=args.seed)
    write_arness_report(arness, work / "arness")
    arness_seconds = time.perf_counter() - began
    n = args.max_new_tokens
    variants = {f"exact, {n // 2} steps": (f"sampling.steps={n // 2}",),
                f"approx_prefix_cache, {n} steps": ("sampling.mode=approx_prefix_cache",
                                                   f"sampling.block_size={args.block_size}"),
                f"approx_dual_cache, {n} steps": ("sampling.mode=approx_dual_cache",
                                                 f"sampling.block_size={args.block_size}")}
    for threshold in args.thresholds:   # Fast-dLLM's parallel rule, alone and with the dual cache
        variants[f"exact, threshold {threshold:g}"] = (f"sampling.threshold={threshold}",)
        variants[f"approx_dual_cache, threshold {threshold:g}"] = (
            "sampling.mode=approx_dual_cache", f"sampling.block_size={args.block_size}",
            f"sampling.threshold={threshold}")
    rows = []
    for index, (name, overrides) in enumerate(variants.items()):
        began = time.perf_counter()
        verdicts = heldout_verdicts(model_dir, suite, work / f"eval-decoding-{index}", args, overrides=overrides)
        rows.append(paired_row(name, exact, verdicts, time.perf_counter() - began, args.seed))
    return {"arness": arness, "arness_seconds": round(arness_seconds, 1), "modes": rows}


def rl_config(model: Path, data: Path, workdir: Path, args: argparse.Namespace, *extra: str) -> RLConfig:
    """``configs/tiny-cpu/rl.yaml`` with this script's budget, from ``model``, on the prompts ``data``."""
    return load_config(RLConfig, recipe_path("tiny-cpu", "rl"), [
        f"model.init_from={model}", f"data.uri={data}", f"output.workdir={workdir}", f"train.steps={args.rl_steps}",
        f"optim.lr={args.rl_lr}", f"train.seed={args.seed}", f"rollout.sampling.temperature={args.rollout_temperature}",
        f"train.threads={args.threads}", f"rollout.group_size={args.group_size}",
        f"rollout.prompts_per_step={args.prompts_per_step}", f"rollout.sampling.max_new_tokens={args.max_new_tokens}",
        f"rollout.sampling.steps={args.rollout_steps}", "objective.ref_sync_every=0", "checkpoint.every_steps=0",
        *extra])


def rl_prompts(model: Path, suite: Path, work: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """RL's prompts: the ``rl`` split (parameters SFT never saw; SFT's own prompts without one),
    cut to the hard ones by ``--hard-samples`` rollouts of the SFT model each (method 4.7): a
    prompt the model always or never solves gives a group without advantages. Computed once and
    shared by every estimator, so they train on the same prompts."""
    source = suite / ("tasks-rl.jsonl" if (suite / "tasks-rl.jsonl").is_file() else "tasks-train.jsonl")
    if not args.hard_samples:
        return source, {"prompts": len(source.read_text().splitlines()), "kept": None, "seconds": 0.0}
    began = time.perf_counter()
    cfg = rl_config(model, source, work / "rl-filter", args, "hard_filter.enabled=true", "hard_filter.source=sample",
                    f"hard_filter.samples={args.hard_samples}", f"hard_filter.max_mean={args.hard_max_mean}",
                    "hard_filter.min_variance=0.01")
    try:
        result = run_filter(cfg, work / "rl-filter" / "hard.jsonl", progress=False)
    except DiffucoderError as err:   # e.g. a model that solves none of them: say so, train on them all
        print(f"RL prompts: {err}; training on all of {source.name}", flush=True)
        return source, {"prompts": len(source.read_text().splitlines()), "kept": None, "no_hard": str(err),
                        "seconds": round(time.perf_counter() - began, 1)}
    info = {"prompts": result.info["prompts"], "kept": result.info["kept"],
            "mean_pass_rate": result.info["mean_pass_rate"], "samples": args.hard_samples,
            "max_mean": args.hard_max_mean, "seconds": round(time.perf_counter() - began, 1)}
    print(f"RL prompts: {info['kept']} of {info['prompts']} are hard (mean pass rate of {args.hard_samples} rollouts "
          f"<= {args.hard_max_mean}, not all equal; {info['seconds']:.0f} s)", flush=True)
    return result.path, info


def rl(model: Path, prompts: Path, workdir: Path, estimator: str, args: argparse.Namespace) -> tuple[Path, dict]:
    cfg = rl_config(model, prompts, workdir, args, f"objective.estimator.method={estimator}")
    result = train_rl(cfg)
    return result.model_dir, result.summary


# -- the report ----------------------------------------------------------------------------------------

def table(rows: list[dict], reference: str = "") -> list[str]:
    head = (f"| model | solved | pass@1 | 95% CI | change vs {reference or '-'} | paired 95% CI | +/- | McNemar p "
            f"| time |")
    lines = [head, "|---" * 9 + "|"]
    for r in rows:
        ci = f"[{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]"
        if "change" in r:
            extra = (f"{r['change']:+.1%} | [{r['change_ci95'][0]:+.1%}, {r['change_ci95'][1]:+.1%}] | "
                     f"+{r['gained']}/-{r['lost']} | {r['mcnemar_p']:.3f}")
        else:
            extra = "- | - | - | -"
        lines.append(f"| {r['model']} | {r['solved']}/{r['tasks']} | {r['pass_at_1']:.1%} | {ci} | {extra} | "
                     f"{r['seconds']:.0f} s |")
    return lines


def sampled_table(rows: list[dict]) -> list[str]:
    lines = ["| model | pass@1 (sampled) | 95% CI | change vs SFT | paired 95% CI | tasks better/worse | time |",
             "|---" * 7 + "|"]
    for r in rows:
        extra = (f"{r['change']:+.1%} | [{r['change_ci95'][0]:+.1%}, {r['change_ci95'][1]:+.1%}] | "
                 f"{r['better']}/{r['worse']}" if "change" in r else "- | - | -")
        lines.append(f"| {r['model']} | {r['pass_at_1']:.1%} | [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] | {extra} | "
                     f"{r['seconds']:.0f} s |")
    return lines


def verdict(r: dict) -> str:
    return ("lift beyond the interval" if r["change_ci95"][0] > 0 else
            "a drop beyond the interval" if r["change_ci95"][1] < 0 else "no change beyond the interval")


def render(out: dict, args: argparse.Namespace) -> str:
    lines = ["# Learning on a CPU: SFT, the AR baseline, decoding, coupled-GRPO", "",
             f"Suite: {args.families} ({out['suite']['train']} SFT prompts, {out['suite']['rl']} RL prompts, "
             f"{out['suite']['heldout']} held-out tasks, the three disjoint by parameters). Greedy decoding of {args.max_new_tokens} tokens in "
             f"{args.max_new_tokens} steps unless said otherwise.", "",
             f"## SFT ({out['sft']['steps']} steps, the first {out['sft']['ar_steps']} autoregressive; "
             f"{out['sft']['train_seconds']:.0f} s of training)", "",
             "| step | held-out pass@1 (sample) | training seconds |", "|---|---|---|"]
    lines += [f"| {p['step']} | {p['solved']}/{p['tasks']} | {p['train_seconds']:.0f} |" for p in out["curve"]]
    lines += ["", "![SFT learning curve](sft_curve.png)", "", "## Held-out pass@1 (greedy)", ""]
    lines += table(out["models"], "SFT")
    lines += [""] + [f"- {r['model']}: {r['change']:+.1%} ({verdict(r)})" for r in out["models"] if "change" in r]
    if out.get("sampled"):
        lines += ["", f"Sampled at temperature {args.sampled_temperature:g} in {args.sampled_steps} steps "
                  f"({args.sampled_n} completions per task, the evaluation's fixed sampling seed for every model): pass@1 is the mean over tasks of each "
                  "task's share of passing completions; intervals bootstrap the tasks.", ""]
        lines += sampled_table(out["sampled"])
        lines += [""] + [f"- {r['model']}: {r['change']:+.1%} ({verdict(r)})" for r in out["sampled"] if "change" in r]
    if out.get("rl_prompts"):
        info = out["rl_prompts"]
        lines += ["", f"RL prompts: the RL split's {info['prompts']}" + (
            f" (no hard ones: {info['no_hard']})." if info.get("no_hard") else "." if info["kept"] is None else
            f", of which {info['kept']} hard ones (mean pass rate of {info['samples']} SFT-model rollouts <= "
            f"{info['max_mean']} and not all equal; {info['seconds']:.0f} s to find) are trained on.")]
    if out.get("rl"):
        lines += ["", "RL runs (in the order measured): " + ", ".join(
            f"{r['model']}: train reward {r['train_reward'][0]:.2f} -> {r['train_reward'][1]:.2f}, "
            f"pass rate {r['train_pass_rate'][0]:.2f} -> {r['train_pass_rate'][1]:.2f}, KL {r['mean_kl']:.2e}"
            for r in out["rl"] if None not in r["train_reward"] + r["train_pass_rate"] and r["mean_kl"] is not None)]
    if out.get("decoding"):
        decoding_out = out["decoding"]
        lines += ["", "## Decoding the SFT model", "", "Fast decoding against exact decoding with "
                  f"{args.max_new_tokens} steps (the SFT row above), paired over the same tasks:", ""]
        lines += table(decoding_out["modes"], "exact")
        lines += ["", f"AR-ness@k against temperature ({decoding_out['arness']['prompts']} held-out prompts, one "
                  "token per step; `arness/arness.png`):", "",
                  "| temperature | local@1 | global@1 | local@4 | global@4 |", "|---|---|---|---|---|"]
        for name, curve in decoding_out["arness"]["temperatures"].items():
            lines.append(f"| {name} | {curve['local'][0]:.3f} | {curve['global'][0]:.3f} | {curve['local'][3]:.3f} | "
                         f"{curve['global'][3]:.3f} |")
    lines += ["", f"Total wall time {out['total_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep everything here; an SFT model found here is reused")
    parser.add_argument("--families", default=FAMILIES, help="task families (comma-separated)")
    parser.add_argument("--wordings", type=int, default=4, help="wordings of each training task (seeds)")
    parser.add_argument("--rl-fraction", type=float, default=0.25,
                        help="share of the training parameter sets kept for RL only (0 = RL on SFT's prompts)")
    parser.add_argument("--sft-steps", type=int, default=800)
    parser.add_argument("--ar-warmup", type=float, default=0.5, help="share of the SFT steps trained autoregressively")
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=160, help="SFT sequence length (prompt + answer + pad)")
    parser.add_argument("--vocab", type=int, default=1024, help="BPE size of a fresh model")
    parser.add_argument("--curve-every", type=int, default=100, help="SFT steps between learning-curve points")
    parser.add_argument("--curve-tasks", type=int, default=64, help="held-out tasks decoded per curve point")
    parser.add_argument("--estimators", default="coupled,decoupled,full_mask",
                        help="comma-separated RL runs to make ('' = none), in this order")
    parser.add_argument("--rl-steps", type=int, default=60)
    parser.add_argument("--rl-lr", type=float, default=1e-4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--rollout-steps", type=int, default=24, help="sampler steps of a rollout")
    parser.add_argument("--rollout-temperature", type=float, default=1.0)
    parser.add_argument("--hard-samples", type=int, default=4,
                        help="rollouts per RL prompt that pick the hard ones (0 = train on every RL prompt)")
    parser.add_argument("--hard-max-mean", type=float, default=0.75,
                        help="a hard prompt's largest mean pass rate over --hard-samples rollouts")
    parser.add_argument("--sampled-n", type=int, default=8,
                        help="held-out samples per task for the sampled pass@1 of SFT and RL models (0 = greedy only)")
    parser.add_argument("--sampled-temperature", type=float,
                        help="temperature of those samples (default: --rollout-temperature, what RL optimises)")
    parser.add_argument("--sampled-steps", type=int,
                        help="sampler steps of those samples (default: --rollout-steps, the policy RL optimises)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--block-size", type=int, default=16, help="block of the approximate cached modes")
    parser.add_argument("--thresholds", default="0.9",
                        help="confidence thresholds of the parallel decoding rows (comma-separated; '' = none)")
    parser.add_argument("--temperatures", default="0,0.4,0.8,1.2", help="AR-ness temperatures")
    parser.add_argument("--arness-prompts", type=int, default=64)
    parser.add_argument("--skip", default="", help=f"comma-separated studies to leave out: {', '.join(STUDIES)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    estimators = [e for e in args.estimators.split(",") if e]
    skip = {s for s in args.skip.split(",") if s}
    args.temperatures = [float(t) for t in args.temperatures.split(",") if t]
    args.thresholds = [float(t) for t in args.thresholds.split(",") if t]
    if any(not 0 < t <= 1 for t in args.thresholds):
        parser.error(f"--thresholds: probabilities in (0, 1], got {args.thresholds}")
    if skip - set(STUDIES):
        parser.error(f"--skip: unknown studies {sorted(skip - set(STUDIES))}; known: {', '.join(STUDIES)}")
    if min(args.rl_steps, args.sft_steps, args.wordings, args.curve_every) < 1 or not 0 <= args.ar_warmup < 1:
        parser.error("need --rl-steps, --sft-steps, --wordings, --curve-every >= 1 and 0 <= --ar-warmup < 1")
    if args.hard_samples == 1 or args.hard_samples < 0:
        parser.error(f"--hard-samples: 0 (no filter) or at least 2, got {args.hard_samples}")
    if not 0 <= args.rl_fraction < 1:
        parser.error(f"--rl-fraction: must be in [0, 1), got {args.rl_fraction}")
    if args.sampled_temperature is None:
        args.sampled_temperature = args.rollout_temperature
    if args.sampled_steps is None:
        args.sampled_steps = args.rollout_steps
    if not 1 <= args.sampled_steps <= args.max_new_tokens:
        parser.error(f"--sampled-steps: between 1 and --max-new-tokens ({args.max_new_tokens}), got {args.sampled_steps}")
    if args.sampled_n < 0 or (args.sampled_n and args.sampled_temperature <= 0):
        parser.error(f"--sampled-n: 0 (greedy only) or samples at a temperature > 0, got {args.sampled_n} "
                     f"at {args.sampled_temperature}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="diffucoder-rl-lift-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    suite = work / "suite"
    counts = write_suite(suite, args.families.split(","), args.seed, args.wordings, args.rl_fraction)
    print(f"suite: {counts['train']} SFT prompts, {counts['rl']} RL prompts, {counts['heldout']} held-out tasks "
          f"(workdir {work})", flush=True)
    init = work / "init"
    if not (init / "config.json").is_file():
        fresh_model(init, suite, args.vocab, args.seed)
    state_file = work / "sft" / "benchmark.json"
    model = work / "sft" / "model"
    if (model / "config.json").is_file() and state_file.is_file():
        saved = json.loads(state_file.read_text())
        sft_summary, curve = saved["summary"], saved["curve"]
        print(f"SFT: reusing {model}")
    else:
        model, sft_summary, curve = sft(init, suite, work / "sft", args)
        state_file.write_text(json.dumps({"summary": sft_summary, "curve": curve}, default=str))
    plot_curve(curve, work / "sft" / "metrics.jsonl", sft_summary["ar_steps"], work / "sft_curve.png")
    began = time.perf_counter()
    before = heldout_verdicts(model, suite, work / "eval-sft", args)
    models = [dict(row("SFT", before, time.perf_counter() - began), train_seconds=sft_summary["train_seconds"])]
    print(f"SFT held-out pass@1: {models[0]['solved']}/{models[0]['tasks']}", flush=True)
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "suite": counts, "sft": sft_summary, "curve": curve,
           "models": models, "rl": [], "sampled": []}
    if args.sampled_n:
        began = time.perf_counter()
        before_rates = heldout_rates(model, suite, work / "eval-sft-sampled", args)
        out["sampled"].append(sampled_row("SFT", before_rates, args.sampled_n, time.perf_counter() - began, args.seed))
        print(f"SFT held-out pass@1 sampled at T={args.sampled_temperature:g}: {out['sampled'][0]['pass_at_1']:.1%}",
              flush=True)
    if "ar_baseline" not in skip:
        models.append(ar_baseline(init, suite, work, args))
        print(f"AR baseline held-out pass@1: {models[-1]['solved']}/{models[-1]['tasks']}", flush=True)
    if "decoding" not in skip:
        out["decoding"] = decoding(model, suite, work, before, args)
    if estimators:
        prompts, out["rl_prompts"] = rl_prompts(model, suite, work, args)
    for estimator in estimators:
        began = time.perf_counter()
        rl_model, summary = rl(model, prompts, work / f"rl-{estimator}", estimator, args)
        rl_seconds = time.perf_counter() - began
        after = heldout_verdicts(rl_model, suite, work / f"eval-rl-{estimator}", args)
        models.append(paired_row(f"RL ({estimator})", before, after, rl_seconds, args.seed))
        out["rl"].append({"model": f"RL ({estimator})", "seconds": round(rl_seconds, 1),
                          "train_reward": [summary.get("initial_reward_mean"), summary.get("final_reward_mean")],
                          "train_pass_rate": [summary.get("initial_pass_rate"), summary.get("final_pass_rate")],
                          "mean_kl": summary.get("mean_kl"), "rollouts": summary.get("rollouts")})
        print(f"RL ({estimator}): {models[-1]['solved']}/{models[-1]['tasks']} ({verdict(models[-1])})", flush=True)
        if args.sampled_n:
            began = time.perf_counter()
            rates = heldout_rates(rl_model, suite, work / f"eval-rl-{estimator}-sampled", args)
            out["sampled"].append(sampled_row(f"RL ({estimator})", rates, args.sampled_n, time.perf_counter() - began,
                                              args.seed, reference=before_rates))
            print(f"RL ({estimator}) sampled: {out['sampled'][-1]['pass_at_1']:.1%} "
                  f"({verdict(out['sampled'][-1])})", flush=True)
    out["total_seconds"] = round(time.perf_counter() - start, 1)
    report = render(out, args)
    (work / "report.md").write_text(report)
    print("\n" + report)
    print(f"report, plots and JSON in {work}")
    (work / "results.json").write_text(json.dumps(out, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
