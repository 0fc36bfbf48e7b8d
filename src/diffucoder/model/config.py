"""``DreamConfig``: the Dream/DiffuCoder architecture config (a Qwen2 config, bidirectional).

    from diffucoder.model import DreamConfig
    cfg = DreamConfig(vocab_size=4096, hidden_size=256, intermediate_size=704,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                      mask_token_id=4095, pad_token_id=4093, bos_token_id=4093, eos_token_id=4093)

Defaults are the released 7B shapes (docs/method.md, section 1.3), so a released Dream
``config.json`` (``model_type: "Dream"``, legacy ``rope_theta`` key) loads as is.
Every shape and special-token id is checked when the config is built, before
any tensor exists; a bad value raises ``ModelConfigError`` naming the field.
"""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import Qwen2Config
from transformers.activations import ACT2FN

from diffucoder.config import ConfigError

DREAM_MODEL_TYPE = "Dream"


class ModelConfigError(ConfigError):
    """A model shape or special-token id is impossible (raised before any allocation)."""


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"'{name}': must be a positive integer, got {value!r}")


def _token_in_vocab(name: str, value: object, vocab_size: int, required: bool = False) -> None:
    if value is None:
        if required:
            raise ModelConfigError(f"'{name}': is required for a masked-diffusion model")
        return
    ids = value if isinstance(value, list) else [value]
    for token_id in ids:
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise ModelConfigError(
                f"'{name}': {token_id!r} is not a token id inside the vocabulary [0, {vocab_size})")


@strict
class DreamConfig(Qwen2Config):
    """Qwen2 layout (RMSNorm, SwiGLU, RoPE, GQA, q/k/v bias) with bidirectional attention.

    Extra fields over ``Qwen2Config``: ``mask_token_id`` (``<|mask|>``) and
    ``dlm_pad_token_id`` (``<|dlm_pad|>``, instruct models; None for base models).
    ``is_causal`` is always False: causal or annealed attention is requested per
    call with a 4-D boolean mask, never through the config.
    """

    model_type = DREAM_MODEL_TYPE
    default_theta = 1_000_000.0

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1e-6
    use_cache: bool = False
    tie_word_embeddings: bool = False
    pad_token_id: int | None = 151643
    bos_token_id: int | None = 151643
    eos_token_id: int | list[int] | None = 151643
    mask_token_id: int | None = 151666
    dlm_pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if kwargs.pop("is_causal", False):
            raise ModelConfigError(
                "'is_causal': Dream attention is bidirectional; pass a 4-D boolean attention mask "
                "(e.g. diffucoder.diffusion.annealed_attention_mask) for causal or annealed attention")
        super().__post_init__(**kwargs)
        # Read by transformers' `merge_with_config_defaults`: it builds a bidirectional
        # padding mask and passes is_causal=False down to the sdpa call.
        self.is_causal = False

    def validate_dream(self) -> None:
        """Shape and token-id checks (run by the strict dataclass right after __init__)."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            _positive(name, getattr(self, name))
        heads, kv_heads = self.num_attention_heads, self.num_key_value_heads
        if self.hidden_size % heads:
            raise ModelConfigError(
                f"'num_attention_heads': {heads} does not divide hidden_size {self.hidden_size}")
        if (self.hidden_size // heads) % 2:
            raise ModelConfigError(
                f"'hidden_size': head dim {self.hidden_size // heads} (hidden_size / "
                f"num_attention_heads) must be even for rotary embeddings")
        if heads % kv_heads:
            raise ModelConfigError(
                f"'num_key_value_heads': {kv_heads} does not divide num_attention_heads {heads}")
        if self.hidden_act not in ACT2FN:
            raise ModelConfigError(f"'hidden_act': unknown activation {self.hidden_act!r}")
        if self.use_sliding_window:
            raise ModelConfigError("'use_sliding_window': sliding-window attention is not supported "
                                   "by the bidirectional Dream model")
        if not self.rms_norm_eps > 0:
            raise ModelConfigError(f"'rms_norm_eps': must be > 0, got {self.rms_norm_eps}")
        _token_in_vocab("mask_token_id", self.mask_token_id, self.vocab_size, required=True)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "dlm_pad_token_id"):
            _token_in_vocab(name, getattr(self, name), self.vocab_size)
        clashes = {name: getattr(self, name) for name in ("pad_token_id", "eos_token_id", "dlm_pad_token_id")}
        for name, value in clashes.items():
            if self.mask_token_id == value or (isinstance(value, list) and self.mask_token_id in value):
                raise ModelConfigError(
                    f"'mask_token_id': {self.mask_token_id} is also the {name}; the mask token must be unique")
