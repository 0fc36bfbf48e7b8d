"""``SamplingConfig``: every knob of ``diffusion_generate`` (see ``configs/*/sampling.yaml``).

    from diffucoder.config import load_config
    from diffucoder.sampling import SamplingConfig
    cfg = SamplingConfig()                                    # the released models' recommended decoding
    cfg = load_config(SamplingConfig, "configs/tiny-cpu/sampling.yaml", ["temperature=0.4"])
    cfg = resolve_config(cfg, steps=128)                      # keyword overrides, re-validated

Defaults are the released models' recommended decoding (docs/method.md, section 5.5):
256 new tokens in 256 steps, top_p 0.95, alg ``entropy``, alg_temp 0, temperature 0.2.
``compute_dtype`` float32 computes the draw and the confidences in float32 whatever the model's
dtype; ``model`` (or ``bfloat16``) reproduces the released sampler's bf16 numerics.
``threshold`` > 0 adds Fast-dLLM's confidence-threshold parallel decoding to any mode: each step
also commits the masked positions whose token is that probable (fewer steps, fewer forwards).
``mode="exact"`` runs the method as written; the ``approx_*`` modes are the
Fast-dLLM-style cached, block-wise decoders: faster, and *not* the same distribution.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from diffucoder.config import ConfigError, setting

ALGORITHMS = ("origin", "maskgit_plus", "topk_margin", "entropy")
MODES = ("exact", "approx_prefix_cache", "approx_dual_cache")
STOPS = ("eos", "dlm_pad")
COMPUTE_DTYPES = ("float32", "bfloat16", "model")


@dataclass
class SamplingConfig:
    max_new_tokens: int = setting(256, min=1, help="fixed completion length (masks appended to the prompt)")
    steps: int = setting(256, min=1, help="denoising steps; steps = max_new_tokens commits ~1 token per step. "
                                          "More steps than tokens is allowed: the extra steps commit nothing")
    alg: str = setting("entropy", choices=ALGORITHMS,
                       help="origin: random order; maskgit_plus: p(x0); topk_margin: p1 - p2; "
                            "entropy: negative entropy as confidence")
    temperature: float = setting(0.2, min=0.0, help="token temperature; 0 = argmax")
    top_p: float = setting(0.95, help="nucleus filtering, in (0, 1]; 1 = off")
    top_k: int = setting(0, min=0, help="keep the k most likely tokens; 0 = off")
    alg_temp: float = setting(0.0, min=0.0, help="0: commit the top-k confident positions; "
                                                 "> 0: draw them from softmax(confidence / alg_temp)")
    eps: float = setting(1e-3, help="final time of the schedule ts = linspace(1, eps, steps + 1), in (0, 1)")
    seed: int = setting(0, min=0, help="seed of the sampler's generator when none is passed")
    mode: str = setting("exact", choices=MODES,
                        help="exact: docs/method.md, section 3.1. approx_prefix_cache / approx_dual_cache: "
                             "APPROXIMATE block-wise decoding reusing cached keys/values (Fast-dLLM)")
    block_size: int = setting(32, min=1, help="approx modes: tokens per semi-autoregressive block")
    batch_invariant: bool = setting(
        False, help="exact mode: run each row's forward pass on its own (unpadded) so a row's result never "
                    "depends on its batch, bit for bit; batched kernels round differently by ~1e-7, which "
                    "can flip near-tied choices. Slower: no batching of the model")
    stop: str = setting("eos", choices=STOPS,
                        help="where decoded text is cut: first EOS (base models) or <|dlm_pad|> (instruct)")
    threshold: float = setting(
        0.0, min=0.0, max=1.0, help="confidence-threshold parallel decoding (Fast-dLLM): a step also commits every masked "
                           "position whose drawn token has probability >= threshold, and at least one position; "
                           "0 = off (the schedule alone). The loop ends once nothing is masked")
    max_per_step: int = setting(0, min=0, help="with threshold: at most this many positions per step from the "
                                               "threshold (the schedule's count still holds); 0 = no cap")
    compute_dtype: str = setting(
        "float32", choices=COMPUTE_DTYPES,
        help="dtype of the token draw and the confidences (docs/method.md, section 3.3): float32, or as the "
             "released sampler does, the model's dtype (model; bfloat16 on GPU), where exact ties are common")

    def validate(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"'top_p': must be in (0, 1], got {self.top_p!r}")
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"'eps': must be in (0, 1), got {self.eps!r}")
        if self.threshold > 0 and self.alg == "origin":
            raise ConfigError("'threshold': needs a confidence algorithm (maskgit_plus, topk_margin, entropy); "
                              "alg 'origin' commits positions by a coin flip")
        if self.max_per_step and not self.threshold:
            raise ConfigError(f"'max_per_step': caps the threshold rule; set 'threshold' > 0 or leave it 0, "
                              f"got {self.max_per_step}")
        if self.mode != "exact" and self.batch_invariant:
            raise ConfigError(f"'batch_invariant': only the exact mode has it, got mode={self.mode!r}")
        if self.mode != "exact":
            blocks = -(-self.max_new_tokens // self.block_size)
            if self.steps < blocks:
                raise ConfigError(f"'steps': {self.mode} needs at least one step per block: "
                                  f"{self.max_new_tokens} tokens in blocks of {self.block_size} "
                                  f"make {blocks} blocks, got steps={self.steps}")

    @property
    def random(self) -> bool:
        """Whether a decode draws random numbers (otherwise its generator's seed is irrelevant)."""
        return self.temperature > 0 or self.alg_temp > 0 or self.alg == "origin"

    @property
    def approximate(self) -> bool:
        """True for the cached modes, whose outputs differ from the exact method."""
        return self.mode != "exact"


def check_config(config: SamplingConfig) -> SamplingConfig:
    """Range, choice and cross-field checks for a config built in code (``load_config`` runs them itself)."""
    if not isinstance(config, SamplingConfig):
        raise ConfigError(f"'config': expected a SamplingConfig, got {type(config).__name__}")
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        expected = {"int": int, "float": (int, float), "str": str, "bool": bool}[str(f.type)]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            raise ConfigError(f"'{f.name}': expected {f.type}, got {value!r}")
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"'{f.name}': must be one of {list(meta['choices'])}, got {value!r}")
        if meta.get("min") is not None and value < meta["min"]:
            raise ConfigError(f"'{f.name}': must be >= {meta['min']}, got {value!r}")
        if meta.get("max") is not None and value > meta["max"]:
            raise ConfigError(f"'{f.name}': must be <= {meta['max']}, got {value!r}")
    config.validate()
    return config


def resolve_config(config: SamplingConfig | None = None, **overrides: Any) -> SamplingConfig:
    """``config`` (default: ``SamplingConfig()``) with keyword ``overrides``, checked."""
    base = config if config is not None else SamplingConfig()
    if not isinstance(base, SamplingConfig):
        raise ConfigError(f"'config': expected a SamplingConfig, got {type(base).__name__}")
    known = {f.name for f in dataclasses.fields(SamplingConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"'{unknown[0]}': unknown sampling setting; known: {sorted(known)}")
    return check_config(dataclasses.replace(base, **overrides))
