"""``diffucoder rl``: coupled-GRPO on an SFT model; ``diffucoder rl filter``: the hard-prompt subset.

    diffucoder rl --config configs/tiny-cpu/rl.yaml --init file:///abs/store/runs/r1/sft \\
        --data file:///abs/store/runs/r1/tasks --output file:///abs/store/runs/r1/rl
    diffucoder rl --preset tiny-cpu --init DIR --data DIR train.steps=2 objective.beta=0   # overrides
    python -m torch.distributed.run --nproc_per_node 2 -m diffucoder.cli rl --config ... distributed.backend=ddp

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

MODES = ("train", "filter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="recipe YAML (default: configs/<preset>/rl.yaml)")
    parser.add_argument("--preset", default="tiny-cpu", help="recipe preset when --config is not given")
    parser.add_argument("--init", help="model.init_from: the SFT model (directory or store URI)")
    parser.add_argument("--data", help="data.uri: task-suite artifact URI or directory, or a prompts JSONL file")
    parser.add_argument("--output", help="output.uri: store URI for the final model artifact")
    parser.add_argument("--checkpoint", help="checkpoint.uri: store URI for resumable checkpoints")
    parser.add_argument("--workdir", help="output.workdir: local directory for model, metrics and report")
    parser.add_argument("--out", help="filter mode: where to write the kept prompt records (JSONL)")
    parser.add_argument("overrides", nargs="*", metavar="[filter] key.sub=value",
                        help="'filter' (first) selects the filter mode; then recipe overrides")
    # 'diffucoder rl filter --config X a=b': the mode word and the overrides around the options
    parser.parse_args = parser.parse_intermixed_args


def split_mode(overrides: list[str]) -> tuple[str, list[str]]:
    if overrides and overrides[0] in MODES:
        return overrides[0], overrides[1:]
    return "train", list(overrides)


def load_recipe(args: argparse.Namespace, overrides: list[str]):
    from diffucoder.config import load_config
    from diffucoder.config.recipes import recipe_path
    from diffucoder.rl.config import RLConfig
    from diffucoder.training.cli import shorthand_overrides

    path = args.config or recipe_path(args.preset, "rl")
    shorthands = shorthand_overrides(args)
    return load_config(RLConfig, path, [*shorthands, *overrides])


def main(args: argparse.Namespace) -> int:
    from diffucoder.errors import DiffucoderError

    mode, overrides = split_mode(args.overrides)
    if mode == "filter":
        if not args.out:
            raise DiffucoderError("rl filter: --out FILE is required (where the kept prompts go)")
        from diffucoder.rl.filtering import run_filter
        result = run_filter(load_recipe(args, overrides), args.out)
        shown = {k: v for k, v in result.info.items() if k != "data"}
        print(json.dumps(shown, indent=1))
        print(f"kept prompts: {result.path}\npass rates: {result.pass_rates_path}")
        return 0
    if args.out:
        raise DiffucoderError("rl: --out is for 'diffucoder rl filter'; training writes to --output / --workdir")
    from diffucoder.rl.trainer import train_rl

    result = train_rl(load_recipe(args, overrides))
    if result.model_dir is not None:  # rank 0
        shown = {k: v for k, v in result.summary.items() if k not in ("data", "hard_filter")}
        print(json.dumps(shown, indent=1, default=str))
        print(f"model: {result.model_dir}" + (f"\npublished: {result.model_uri}" if result.model_uri else ""))
        print(f"report: {result.model_dir / 'training' / 'report.md'}")
    return 0
