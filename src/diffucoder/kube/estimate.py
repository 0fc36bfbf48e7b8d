"""Per-GPU memory of a stage's job, from its recipe and the job's size.

    est = memory_estimate("7b-gpu", "sft", world_size=64)
    est.plan.summary()     # 7,615,616,512 params, zero2 over 64 ranks: ... per GPU
    est.sharding, est.source    # "zero2", "distributed.backend deepspeed (configs/deepspeed/zero2.json)"

The recipe says which model (``model.preset``) and which back end: ``ddp`` keeps full
states, ``fsdp2`` shards all of them (ZeRO-3's arithmetic), ``deepspeed`` shards what its
JSON's ``zero_optimization.stage`` says. The figure covers weights, gradients and Adam
states (``diffucoder.model.memory_plan``), not activations. An RL recipe with a KL term
(``objective.beta > 0``) also holds a frozen reference model: one more copy of the weights,
sharded like the policy's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffucoder.config import ConfigError, parse_overrides, read_yaml
from diffucoder.config.recipes import recipe_path
from diffucoder.model import build_config, memory_plan
from diffucoder.model.memory import GIB, MemoryPlan
from diffucoder.training.engines import read_deepspeed_json


@dataclass(frozen=True)
class MemoryEstimate:
    plan: MemoryPlan
    sharding: str
    source: str          # how the sharding was decided
    model_preset: str
    reference_bytes: int = 0   # a frozen reference model (RL's KL term), per GPU

    @property
    def total_bytes(self) -> int:
        return self.plan.total_bytes + self.reference_bytes

    def lines(self, gpu_memory_gib: float = 0.0) -> list[str]:
        out = [f"per-GPU memory estimate ({self.source}): {self.plan.summary()}"]
        if self.reference_bytes:
            out.append(f"+ reference model for the KL term {self.reference_bytes / GIB:.2f} GiB: "
                       f"{self.total_bytes / GIB:.2f} GiB per GPU")
        out.append("(model states only: activations, buffers and fragmentation come on top)")
        if gpu_memory_gib:
            spare = gpu_memory_gib - self.total_bytes / GIB
            out.append(f"{'fits' if spare > 0 else 'DOES NOT FIT'} in {gpu_memory_gib:g} GiB per GPU "
                       f"({spare:+.1f} GiB left for activations)")
        return out


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def memory_estimate(preset: str, stage: str, world_size: int,
                    overrides: list[str] | tuple[str, ...] = ()) -> MemoryEstimate:
    recipe: dict[str, Any] = _merge(read_yaml(recipe_path(preset, stage)),
                                    parse_overrides(list(overrides)))
    model_preset = (recipe.get("model") or {}).get("preset")
    if not model_preset:
        raise ConfigError(f"{preset}/{stage}: the recipe names no model.preset")
    dist = recipe.get("distributed") or {}
    backend = dist.get("backend", "none")
    if backend == "deepspeed":
        path = dist.get("deepspeed_config", "")
        zero = read_deepspeed_json(path).get("zero_optimization", {}).get("stage", 0)
        sharding, source = int(zero), f"deepspeed ZeRO-{zero} ({path})"
    elif backend == "fsdp2":
        sharding, source = "fsdp", "fsdp2: weights, grads and optimizer sharded"
    elif backend in ("ddp", "none"):
        sharding, source = "ddp", f"{backend}: nothing sharded"
    else:
        raise ConfigError(f"{preset}/{stage}: distributed.backend {backend!r} is unknown")
    plan = memory_plan(build_config(model_preset), sharding=sharding, world_size=world_size)
    beta = (recipe.get("objective") or {}).get("beta", 0) or 0
    reference = plan.weights_bytes if float(beta) > 0 else 0
    return MemoryEstimate(plan, plan.sharding, source, model_preset, reference)
