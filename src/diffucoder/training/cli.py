"""``diffucoder pretrain``: masked-diffusion pre-training / adaptation from a recipe YAML.

    diffucoder pretrain --config configs/tiny-cpu/pretrain.yaml \\
        --data file:///abs/runs/demo/store/runs/r1/curated --output file:///abs/store/runs/r1/pretrain
    diffucoder pretrain --preset tiny-cpu --data DIR optim.lr=1e-3 train.steps=50   # key=value overrides
    python -m torch.distributed.run --nproc_per_node 2 -m diffucoder.cli pretrain --config ... \\
        distributed.backend=ddp

``--data``, ``--init``, ``--output``, ``--checkpoint`` and ``--workdir`` are shorthands for
``data.uri``, ``model.init_from``, ``output.uri``, ``checkpoint.uri`` and ``output.workdir``.
The same module serves ``diffucoder sft`` (``cli_sft``) with the SFT recipe.
"""
from __future__ import annotations

import argparse
import json

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.training.config import SFTConfig, TrainConfig

STAGE = "pretrain"
SHORTHANDS = {"data": "data.uri", "init": "model.init_from", "output": "output.uri",
              "checkpoint": "checkpoint.uri", "workdir": "output.workdir"}


def add_arguments(parser: argparse.ArgumentParser, stage: str = STAGE) -> None:
    parser.add_argument("--config", default=None,
                        help=f"recipe YAML (default: configs/<preset>/{stage}.yaml)")
    parser.add_argument("--preset", default="tiny-cpu", help="recipe preset when --config is not given")
    parser.add_argument("--data", help="data.uri: " + ("curated shard artifact URI or directory" if stage ==
                                                      "pretrain" else "chat JSONL file, directory or artifact"))
    parser.add_argument("--init", help="model.init_from: checkpoint directory or store URI to start from")
    parser.add_argument("--output", help="output.uri: store URI for the final model artifact")
    parser.add_argument("--checkpoint", help="checkpoint.uri: store URI for resumable checkpoints")
    parser.add_argument("--workdir", help="output.workdir: local directory for model, metrics and report")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")


def shorthand_values(args: argparse.Namespace) -> dict[str, str]:
    """``--data X`` ... as the recipe values they stand for (``{"data.uri": "X"}``)."""
    return {key: getattr(args, name) for name, key in SHORTHANDS.items() if getattr(args, name, None)}


def load_recipe(args: argparse.Namespace, stage: str):
    config_class = SFTConfig if stage == "sft" else TrainConfig
    path = args.config or recipe_path(args.preset, stage)
    return load_config(config_class, path, [f"stage={stage}", *args.overrides], values=shorthand_values(args))


def run(args: argparse.Namespace, stage: str) -> int:
    from diffucoder.training.recipe import train

    result = train(load_recipe(args, stage))
    if result.model_dir is not None:  # rank 0
        shown = {k: v for k, v in result.summary.items() if k != "data"}
        print(json.dumps(shown, indent=1, default=str))
        print(f"model: {result.model_dir}" + (f"\npublished: {result.model_uri}" if result.model_uri else ""))
        print(f"report: {result.model_dir / 'training' / 'report.md'}")
    return 0


def main(args: argparse.Namespace) -> int:
    return run(args, STAGE)
