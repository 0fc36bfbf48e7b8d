"""Training back ends behind one interface: single process, DDP, FSDP2 and DeepSpeed ZeRO.

    layout = BatchLayout(micro_batch=8, grad_accum=2, total_steps=1000)
    engine = build_engine(model, env, backend="ddp", optim=cfg.optim, layout=layout)  # AdamW + schedule
    for micro in range(layout.grad_accum):
        with engine.accumulating(last=micro == layout.grad_accum - 1):
            out = diffusion_loss(engine.model, tokens, ...)
            engine.backward(out.loss)
    grad_norm = engine.step()                    # clip, optimizer step, schedule step
    engine.save_state(local_dir); engine.load_state(local_dir)   # model + optimizer + schedule
    weights = engine.full_state_dict()           # full fp32 tensors on rank 0 (None elsewhere)
    engine.holds_full_weights                    # True: export engine.module as it is (none, ddp)

``backward`` takes the mean loss of one micro-batch; the engines scale it by
``1 / grad_accum`` so a step's gradient is the mean over micro-batches (DeepSpeed
scales by itself); ``DeepSpeedEngine`` has the same interface. An engine reads the
optimizer settings (``OptimSection``) and the ``BatchLayout`` it is given, nothing of a recipe.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from diffucoder.config import ConfigError
from diffucoder.config.recipes import config_dirs
from diffucoder.errors import DiffucoderError
from diffucoder.training.config import OptimSection
from diffucoder.training.distributed import DistEnv
from diffucoder.training.schedule import warmup_cosine

BACKENDS = ("none", "ddp", "fsdp2", "deepspeed")


@dataclass(frozen=True)
class BatchLayout:
    """How a run's optimizer steps are made: ``micro_batch`` rows per device per micro-step,
    ``grad_accum`` micro-steps per optimizer step, ``total_steps`` optimizer steps (the length
    of the learning-rate schedule)."""
    micro_batch: int
    grad_accum: int
    total_steps: int

    def __post_init__(self) -> None:
        for name in ("micro_batch", "grad_accum", "total_steps"):
            value = getattr(self, name)
            assert isinstance(value, int) and value >= 1, f"BatchLayout.{name} must be an int >= 1, got {value!r}"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (linear and embedding weights); never biases or norm gains."""
    decay, keep = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else keep).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, o: OptimSection) -> torch.optim.AdamW:
    # foreach: one batched kernel per state tensor kind (CPU defaults to a per-parameter loop)
    return torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=tuple(o.betas),
                             eps=o.eps, weight_decay=o.weight_decay, foreach=True)


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names and bytes of a state dict (for cross-rank agreement checks)."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TorchEngine:
    """``none``, ``ddp`` (DistributedDataParallel) and ``fsdp2`` (``fully_shard``)."""

    def __init__(self, module: nn.Module, env: DistEnv, backend: str, optim: OptimSection, layout: BatchLayout):
        self.module, self.env, self.backend, self.optim, self.layout = module, env, backend, optim, layout
        self.holds_full_weights = self.backend in ("none", "ddp")  # export ``module`` as it is
        if self.backend == "ddp":
            self.model = DistributedDataParallel(
                module, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        elif self.backend == "fsdp2":
            for layer in module.model.layers:   # one all-gather per decoder layer
                fully_shard(layer)
            fully_shard(module)
            self.model = module
        else:
            self.model = module
        self.optimizer = make_optimizer(self.model, optim)
        self.scheduler = warmup_cosine(self.optimizer, optim.warmup_steps, layout.total_steps, optim.min_lr_ratio)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @contextlib.contextmanager
    def accumulating(self, last: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on micro-steps before the last one."""
        if self.backend == "ddp" and not last:
            with self.model.no_sync():
                yield
        elif self.backend == "fsdp2":
            self.model.set_requires_gradient_sync(last)
            yield
        else:
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.layout.grad_accum).backward()

    def step(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.optim.clip if self.optim.clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
            norm = norm.full_tensor()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    # -- state ------------------------------------------------------------------------------

    def save_state(self, directory: Path) -> None:
        """Model, optimizer and schedule; collective under FSDP2, files written by rank 0."""
        model_state, optim_state = self._full_states()
        if self.env.is_main:
            directory.mkdir(parents=True, exist_ok=True)
            torch.save(model_state, directory / "model.pt")
            torch.save(optim_state, directory / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), directory / "scheduler.pt")

    def load_state(self, directory: Path) -> None:
        self.scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
        if self.backend == "fsdp2":
            main = self.env.is_main
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            # Separate calls: set_state_dict takes an empty model dict (ranks > 0) as "optimizer
            # only" and skips the model broadcast rank 0 is waiting in.
            set_model_state_dict(self.model, torch.load(directory / "model.pt", weights_only=True)
                                 if main else {}, options=options)
            set_optimizer_state_dict(self.model, self.optimizer, torch.load(
                directory / "optimizer.pt", weights_only=True) if main else {}, options=options)
            return
        device = self.env.device
        self.module.load_state_dict(torch.load(directory / "model.pt", map_location=device,
                                               weights_only=True))
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device,
                                                  weights_only=True))

    def _reshard(self) -> None:
        """FSDP2 leaves the root's weights unsharded after a forward without backward (eval)."""
        if self.backend == "fsdp2":
            self.model.reshard()

    def _full_states(self) -> tuple[dict, dict]:
        self._reshard()
        if self.backend == "fsdp2":
            return get_state_dict(self.model, self.optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.module.state_dict(), self.optimizer.state_dict()

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Every weight, unsharded, on CPU, on rank 0 (collective under FSDP2)."""
        self._reshard()
        if self.backend == "fsdp2":
            state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True,
                                                                              cpu_offload=True))
            return state if self.env.is_main else None
        if not self.env.is_main:
            return None
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def replica_digest(self) -> str | None:
        """Digest of this rank's replica of the weights; None under FSDP2 (sharded, no replicas)."""
        if self.backend == "fsdp2":
            return None
        return digest(dict(self.module.named_parameters()))


def check_replicas_agree(engine, env: DistEnv) -> bool | None:
    """True when every rank holds the same weights (collective); None when the weights are sharded
    (no replicas to compare). Diverged replicas are an error, never a silently exported model."""
    digests = env.all_gather_objects(engine.replica_digest())
    if digests[0] is None:
        return None
    if len(set(digests)) != 1:
        raise DiffucoderError(f"ranks disagree on the final weights ({digests}); the replicas diverged")
    return True


# -- DeepSpeed ZeRO ------------------------------------------------------------------------
#
# The JSON (``configs/deepspeed/zero{2,3}.json``) holds what is DeepSpeed's business: the ZeRO
# stage and its buckets, the optimizer type (``AdamW`` with ``torch_adam: true``, so nothing is
# compiled). The recipe stays the one source of the numbers both share: micro batch, gradient
# accumulation, clipping, AdamW hyper-parameters and bf16. They are filled in here; a file that
# sets one of them to a different value is an error, not a silent override. The warm-up + cosine
# schedule is the trainer's, handed to DeepSpeed.

CHECKPOINT_TAG = "state"


def find_deepspeed_json(path: str) -> Path:
    """``path`` as given, else relative to the checkout / config dirs (``configs/deepspeed/...``)."""
    candidates = [Path(path)]
    if not Path(path).is_absolute():
        candidates += [root / path for d in config_dirs() for root in (d.parent, d)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"'distributed.deepspeed_config': {path} does not exist "
                      f"(looked in {[str(c) for c in candidates]})")


def read_deepspeed_json(path: str) -> dict[str, Any]:
    file = find_deepspeed_json(path)
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"'distributed.deepspeed_config': {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"'distributed.deepspeed_config': {path} must hold a JSON object")
    return data


def _fill(data: dict[str, Any], key: str, value: Any, source: str, recipe_key: str) -> None:
    """Set ``data[key]``; a different value already there is a conflict."""
    if key in data and data[key] != value:
        raise ConfigError(f"'distributed.deepspeed_config': {source} sets {key}={data[key]!r} but the "
                          f"recipe's {recipe_key} gives {value!r}; remove it from the JSON")
    data[key] = value


def deepspeed_config(path: str, optim: OptimSection, layout: BatchLayout, world_size: int, bf16: bool = False,
                     keys: tuple[str, str] = ("data.batch_size", "data.grad_accum")) -> dict[str, Any]:
    """The DeepSpeed config dict: the JSON file at ``path`` plus the values the recipe owns
    (``keys`` name the recipe's micro-batch and accumulation keys in errors)."""
    data = read_deepspeed_json(path)
    zero = data.get("zero_optimization", {})
    if not isinstance(zero, dict) or zero.get("stage", 0) not in (0, 1, 2, 3):
        raise ConfigError(f"'distributed.deepspeed_config': {path}: zero_optimization.stage must be 0-3")
    o, (micro_key, accum_key) = optim, keys
    _fill(data, "train_micro_batch_size_per_gpu", layout.micro_batch, path, micro_key)
    _fill(data, "gradient_accumulation_steps", layout.grad_accum, path, accum_key)
    _fill(data, "train_batch_size", layout.micro_batch * layout.grad_accum * world_size, path,
          f"{micro_key} * {accum_key} * world size")
    _fill(data, "gradient_clipping", o.clip, path, "optim.clip")
    optimizer = data.setdefault("optimizer", {"type": "AdamW", "params": {"torch_adam": True}})
    if str(optimizer.get("type", "")).lower() != "adamw":
        raise ConfigError(f"'distributed.deepspeed_config': {path}: optimizer.type must be AdamW "
                          f"(the recipe's optimizer), got {optimizer.get('type')!r}")
    params = optimizer.setdefault("params", {})
    for key, value, recipe_key in (("lr", o.lr, "optim.lr"), ("betas", list(o.betas), "optim.betas"),
                                   ("eps", o.eps, "optim.eps"),
                                   ("weight_decay", o.weight_decay, "optim.weight_decay")):
        _fill(params, key, value, f"{path} (optimizer.params)", recipe_key)
    if "scheduler" in data:
        raise ConfigError(f"'distributed.deepspeed_config': {path}: remove 'scheduler'; the recipe's "
                          "optim.warmup_steps / min_lr_ratio schedule is used")
    data["bf16"] = {**data.get("bf16", {}), "enabled": bool(bf16 and torch.cuda.is_available())}
    data.setdefault("steps_per_print", 10 ** 9)  # progress is the trainer's job
    return data


class DeepSpeedEngine:
    """``distributed.backend: deepspeed``: the same interface as ``TorchEngine``."""

    def __init__(self, module: nn.Module, env: DistEnv, optim: OptimSection, layout: BatchLayout,
                 deepspeed_json: str, bf16: bool = False):
        import deepspeed   # an optional dependency (the train extra), imported when it is used

        self.env = env
        self.config = deepspeed_config(deepspeed_json, optim, layout, env.world_size, bf16)
        self.zero_stage = int(self.config.get("zero_optimization", {}).get("stage", 0))
        o = optim
        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, model_parameters=param_groups(module, o.weight_decay), config=self.config,
            lr_scheduler=lambda opt: warmup_cosine(opt, o.warmup_steps, layout.total_steps, o.min_lr_ratio))
        self.module = self.model.module
        self.holds_full_weights = False  # export gathers the weights (``full_state_dict``)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    @contextlib.contextmanager
    def accumulating(self, last: bool) -> Iterator[None]:
        yield  # DeepSpeed counts micro-steps itself and reduces at the boundary

    def backward(self, loss: torch.Tensor) -> None:
        self.model.backward(loss)   # scales by 1 / gradient_accumulation_steps
        self.model.step()           # a real optimizer step only at the accumulation boundary

    def step(self) -> float:
        """The optimizer step already ran in the last ``backward``; its gradient norm."""
        norm = self.model.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save_state(self, directory: Path) -> None:
        """Every rank writes its partition (collective)."""
        self.model.save_checkpoint(str(directory), tag=CHECKPOINT_TAG, save_latest=False)

    def load_state(self, directory: Path) -> None:
        path, _ = self.model.load_checkpoint(str(directory), tag=CHECKPOINT_TAG,
                                             load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise ConfigError(f"checkpoint in {directory} could not be loaded by DeepSpeed")

    def _gathered(self):
        import deepspeed   # optional, see __init__
        if self.zero_stage == 3:
            return deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        with self._gathered():   # collective under ZeRO-3
            if not self.env.is_main:
                return None
            return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def replica_digest(self) -> str | None:
        """Digest of this rank's replica of the weights; None under ZeRO-3 (sharded, no replicas)."""
        if self.zero_stage == 3:
            return None
        return digest({name: p.detach() for name, p in self.module.named_parameters()})


def build_engine(module: nn.Module, env: DistEnv, *, backend: str, optim: OptimSection, layout: BatchLayout,
                 deepspeed_json: str = "", bf16: bool = False):
    """The engine of ``backend`` (the model is already on ``env.device``). DeepSpeed reads its JSON
    (``deepspeed_json``) for what is its own business; the numbers both share come from here."""
    if backend not in BACKENDS:
        raise DiffucoderError(f"'distributed.backend': must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "deepspeed":
        return DeepSpeedEngine(module, env, optim, layout, deepspeed_json, bf16)
    return TorchEngine(module, env, backend, optim, layout)
