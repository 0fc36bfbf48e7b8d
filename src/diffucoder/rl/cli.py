"""``diffucoder rl train``: coupled-GRPO on an SFT model; ``diffucoder rl filter``: the hard-prompt subset.

    diffucoder rl train --config configs/tiny-cpu/rl.yaml --init file:///abs/store/runs/r1/sft \\
        --data file:///abs/store/runs/r1/tasks --output file:///abs/store/runs/r1/rl
    diffucoder rl train --preset tiny-cpu --init DIR --data DIR train.steps=2 objective.beta=0   # overrides
    python -m torch.distributed.run --nproc_per_node 2 -m diffucoder.cli rl train --config ... distributed.backend=ddp

    # keep the prompts the initial policy finds hard (low mean, high variance pass rate)
    diffucoder rl filter --config configs/tiny-cpu/rl.yaml --init DIR --data DIR --out hard.jsonl \\
        hard_filter.samples=8 hard_filter.max_mean=0.5

``--init``, ``--data``, ``--output``, ``--checkpoint`` and ``--workdir`` are shorthands for
``model.init_from``, ``data.uri``, ``output.uri``, ``checkpoint.uri`` and ``output.workdir``
(as for ``diffucoder sft``). ``filter`` writes the kept records to ``--out`` (a file usable
as ``data.uri``), the pass rates beside it (``<out>.pass_rates.jsonl``, usable as
``hard_filter.pass_rates_file``) and ``<out>.filter.json`` (counts); the filter settings are
``hard_filter.*`` (it filters whatever ``hard_filter.enabled`` says).
"""
from __future__ import annotations

import argparse
import json

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.rl.config import RLConfig
from diffucoder.training.cli import SHORTHANDS, shorthand_values


def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="recipe YAML (default: configs/<preset>/rl.yaml)")
    parser.add_argument("--preset", default="tiny-cpu", help="recipe preset when --config is not given")
    parser.add_argument("--init", help=f"{SHORTHANDS['init']}: the SFT model (directory or store URI)")
    parser.add_argument("--data", help=f"{SHORTHANDS['data']}: task-suite artifact URI or directory, "
                                       "or a prompts JSONL file")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    # allow_abbrev=False: "--out" must not silently mean "--output" on train
    train = sub.add_parser("train", help="improve the model with coupled-GRPO; publish it", allow_abbrev=False)
    _recipe_arguments(train)
    train.add_argument("--output", help=f"{SHORTHANDS['output']}: store URI for the final model artifact")
    train.add_argument("--checkpoint", help=f"{SHORTHANDS['checkpoint']}: store URI for resumable checkpoints")
    train.add_argument("--workdir", help=f"{SHORTHANDS['workdir']}: local directory for model, metrics, report")
    keep = sub.add_parser("filter", help="write the hard-prompt subset of the prompts (hard_filter.*)",
                          allow_abbrev=False)
    _recipe_arguments(keep)
    keep.add_argument("--out", required=True, help="where to write the kept prompt records (JSONL)")


def load_recipe(args: argparse.Namespace) -> RLConfig:
    path = args.config or recipe_path(args.preset, "rl")
    return load_config(RLConfig, path, args.overrides, values=shorthand_values(args))


def main(args: argparse.Namespace) -> int:
    if args.action == "filter":
        from diffucoder.rl.filtering import run_filter   # torch: only when the command runs
        result = run_filter(load_recipe(args), args.out)
        shown = {k: v for k, v in result.info.items() if k != "data"}
        print(json.dumps(shown, indent=1))
        print(f"kept prompts: {result.path}\npass rates: {result.pass_rates_path}")
        return 0
    from diffucoder.rl.trainer import train_rl   # torch: only when the command runs

    result = train_rl(load_recipe(args))
    if result.model_dir is not None:  # rank 0
        shown = {k: v for k, v in result.summary.items() if k not in ("data", "hard_filter")}
        print(json.dumps(shown, indent=1, default=str))
        print(f"model: {result.model_dir}" + (f"\npublished: {result.model_uri}" if result.model_uri else ""))
        print(f"report: {result.model_dir / 'training' / 'report.md'}")
    return 0
