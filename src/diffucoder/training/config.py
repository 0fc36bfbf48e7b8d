"""The config sections every training recipe nests (``configs/<preset>/{pretrain,sft,rl}.yaml``).

    from dataclasses import dataclass, field
    from diffucoder.training.config import ModelSection, OptimSection, TrainSection

    @dataclass
    class MyRecipeConfig:
        model: ModelSection = field(default_factory=ModelSection)
        optim: OptimSection = field(default_factory=OptimSection)
        train: TrainSection = field(default_factory=TrainSection)

The recipes (``diffucoder.recipes.masked_diffusion``: pretrain and SFT;
``diffucoder.recipes.coupled_grpo``: RL) own their configs and add their own sections (data,
diffusion, rollout ...). The training core (engines, checkpoints, export) takes explicit values
read from these sections, never a whole recipe config. Every value is checked when the recipe
loads; an error names the dotted key.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from diffucoder.config import ConfigError, setting

# The recipes' command-line shorthands: ``--data X`` is ``data.uri=X`` ...
SHORTHANDS = {"data": "data.uri", "init": "model.init_from", "output": "output.uri",
              "checkpoint": "checkpoint.uri", "workdir": "output.workdir"}


def shorthand_values(args: argparse.Namespace) -> dict[str, str]:
    """The shorthands given on a command line, as the recipe values they stand for."""
    return {key: getattr(args, name) for name, key in SHORTHANDS.items() if getattr(args, name, None)}


@dataclass
class ModelSection:
    preset: str = setting("tiny", choices=("tiny", "small", "7b"),
                          help="model shape preset for a random init (model.init_from fixes the shapes)")
    init_from: str = setting("", help="'' = random init; else a Hugging Face dir or store URI of a "
                                      "Dream or Qwen2 checkpoint")
    hidden_size: int = setting(0, min=0, help="override the preset (0 = keep)")
    intermediate_size: int = setting(0, min=0, help="override the preset (0 = keep)")
    num_hidden_layers: int = setting(0, min=0, help="override the preset (0 = keep)")
    num_attention_heads: int = setting(0, min=0, help="override the preset (0 = keep)")
    num_key_value_heads: int = setting(0, min=0, help="override the preset (0 = keep)")
    max_position_embeddings: int = setting(0, min=0, help="override the preset (0 = keep)")
    attn_implementation: str = setting("sdpa", choices=("sdpa", "eager"),
                                       help="attention kernel (both take the dense diffusion masks)")

    def validate(self) -> None:
        if self.init_from and self.shape_overrides():
            key = next(iter(self.shape_overrides()))
            raise ConfigError(f"'model.{key}': shape overrides apply to a random init only; the "
                              f"checkpoint in model.init_from fixes the shapes")

    def shape_overrides(self) -> dict[str, int]:
        names = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings")
        return {name: getattr(self, name) for name in names if getattr(self, name)}


@dataclass
class OptimSection:
    lr: float = setting(3e-4, min=0.0, help="peak learning rate (AdamW)")
    betas: list[float] = setting(default_factory=lambda: [0.9, 0.95], help="AdamW betas")
    eps: float = setting(1e-8, min=0.0, help="AdamW epsilon")
    weight_decay: float = setting(0.1, min=0.0, help="decoupled weight decay (not on norms/biases)")
    warmup_steps: int = setting(0, min=0, help="linear warm-up steps")
    min_lr_ratio: float = setting(0.1, min=0.0, max=1.0, help="cosine floor as a share of lr")
    clip: float = setting(1.0, min=0.0, help="max global gradient norm (0 = no clipping)")

    def validate(self) -> None:
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"'optim.betas': need two values in [0, 1), got {self.betas}")


@dataclass
class DistributedSection:
    backend: Literal["none", "ddp", "fsdp2", "deepspeed"] = setting(
        "none", help="none (one process), ddp, fsdp2 (fully_shard) or deepspeed (ZeRO)")
    deepspeed_config: str = setting("", help="DeepSpeed JSON (configs/deepspeed/zero2.json ...)")
    dist_backend: Literal["auto", "gloo", "nccl"] = setting(
        "auto", help="process-group back end (auto: nccl on CUDA, gloo on CPU)")
    nproc_per_node: int = setting(1, min=1, help="processes the stage launches with torchrun")

    def validate(self) -> None:
        if self.backend == "deepspeed" and not self.deepspeed_config:
            raise ConfigError("'distributed.deepspeed_config': required when distributed.backend "
                              "is 'deepspeed' (e.g. configs/deepspeed/zero2.json)")


@dataclass
class CheckpointSection:
    every_steps: int = setting(0, min=0, help="publish a checkpoint every N optimizer steps (0 = never)")
    uri: str = setting("", help="store URI under which checkpoints are published ('' = no checkpoints, "
                                "whatever every_steps says)")
    keep_last: int = setting(2, min=1, help="complete checkpoints kept in the store")
    resume: bool = setting(True, help="continue from the newest complete checkpoint under uri")


@dataclass
class TrainSection:
    steps: int = setting(100, min=1, help="optimizer steps")
    seed: int = setting(0, min=0, help="model init, data order and noise seed")
    grad_checkpointing: bool = setting(False, help="recompute activations in backward")
    precision: Literal["fp32", "bf16"] = setting(
        "fp32", help="bf16 autocast (CUDA only; CPU runs fp32 whatever this says)")
    log_every: int = setting(10, min=1, help="optimizer steps per metrics line")
    eval_every: int = setting(0, min=0, help="validation loss every N steps (0 = at the end only)")
    eval_batches: int = setting(4, min=0, help="validation batches per evaluation (0 = none)")
    threads: int = setting(0, min=0, help="torch CPU threads per process (0 = torch default)")


@dataclass
class OutputSection:
    uri: str = setting("", help="store URI of the final model artifact ('' = keep it local only)")
    workdir: str = setting("", help="local dir for the model, metrics, plot and report "
                                    "('' = a fresh temporary dir)")


def check_warmup(optim: OptimSection, train: TrainSection) -> None:
    """A recipe's warm-up fits in its run (both counted in the recipe's steps)."""
    if optim.warmup_steps > train.steps:
        raise ConfigError(f"'optim.warmup_steps': {optim.warmup_steps} is more than train.steps={train.steps}")
