"""``diffucoder evaluate``: pass@k of a model directory (or store URI) on code benchmarks.

    diffucoder evaluate --model out/sft --config configs/tiny-cpu/evaluate.yaml
    diffucoder evaluate --model file:///abs/store/runs/r1/sft --preset tiny-cpu \\
        --output file:///abs/store/runs/r1/evaluate max_tasks=8 n_samples=2 sampling.temperature=0.4
    diffucoder evaluate --model DIR --preset 7b-gpu 'benchmarks=[{name: humaneval}]' prompt_style=base

Prints the pass@k table; the files (results.jsonl, metrics.json, report.md, plots) go to
``--out-dir`` and, with ``--output``, to the artifact store. Trailing ``key=value``
arguments override ``EvaluateConfig`` (values are YAML).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.evaluation.config import EvaluateConfig
from diffucoder.evaluation.report import format_table
from diffucoder.evaluation.run import evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Sample completions with the diffusion sampler, test them in the sandbox, report pass@k."
    parser.add_argument("--model", required=True, metavar="DIR_OR_URI",
                        help="model directory (weights + tokenizer) or store URI of a model artifact")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="evaluation YAML, e.g. configs/tiny-cpu/evaluate.yaml")
    source.add_argument("--preset", metavar="NAME", help="use configs/<NAME>/evaluate.yaml")
    parser.add_argument("--output", metavar="URI", default="",
                        help="publish the results as this store artifact (file:// or s3://)")
    parser.add_argument("--out-dir", metavar="DIR", type=Path, default=None,
                        help="where the files are written (default: ./evaluation, or a temporary "
                             "directory when --output is given)")
    parser.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. n_samples=4")


def main(args: argparse.Namespace) -> int:
    path = args.config or (recipe_path(args.preset, "evaluate") if args.preset else None)
    cfg = load_config(EvaluateConfig, path, args.overrides)
    with tempfile.TemporaryDirectory(prefix="diffucoder-evaluate-") as tmp:
        out_dir = args.out_dir or (Path(tmp) if args.output else Path("evaluation"))
        result = evaluate(cfg, args.model, out_dir, output_uri=args.output, progress=not args.quiet)
        if args.json:
            print((out_dir / "metrics.json").read_text().rstrip())
        else:
            print(format_table(result.metrics, cfg.reported_ks()))
            print(f"\ngate: {result.gate_benchmark} pass@1 = {100 * result.pass_at_1:.1f}%")
            if args.out_dir or not args.output:
                print(f"report: {out_dir / 'report.md'}")
            if result.uri:
                print(f"published: {result.uri}")
    return 0
