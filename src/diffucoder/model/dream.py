"""``DreamModel``: a bidirectional Qwen2 transformer with an LM head (Dream/DiffuCoder).

    from diffucoder.model import DreamModel, build_config, shift_logits
    model = DreamModel(build_config("tiny"))
    out = model(input_ids, attention_mask=pad_mask)   # pad_mask: (B, L) 1 = token, 0 = pad
    logits = shift_logits(out.logits)                 # logit i-1 predicts token i

The weights are ``transformers``' own Qwen2 modules under Qwen2's state-dict names
(``model.embed_tokens.weight`` ... ``lm_head.weight``), so Qwen2/Qwen2.5(-Coder) and
released Dream/DiffuCoder checkpoints load unchanged. ``attention_mask`` may be

* ``None``: every token attends to every token;
* 2-D ``(B, L)`` padding mask (left or right padding): position ids default to
  ``cumsum(mask) - 1`` clipped at 0, and the attention mask is
  ``m[:, None, None, :] & m[:, None, :, None]`` plus the diagonal, so a pad query
  attends to itself only and never yields NaN (its output is meaningless, but finite);
* 4-D boolean ``(B, 1, L, L)`` (or 3-D ``(B, L, L)``), True = may attend, e.g. an
  annealed ``causal OR Bernoulli`` mask; rows with no True entry get their diagonal.
  Position ids default to ``0..L-1``: pass them explicitly for left-padded input.

Importing this module registers ``DreamConfig``/``DreamModel`` with ``AutoConfig``,
``AutoModel`` and ``AutoModelForCausalLM`` (model type ``"Dream"``).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model, Qwen2PreTrainedModel

from diffucoder.errors import DiffucoderError
from diffucoder.model.allocator import keep_freed_memory
from diffucoder.model.config import DREAM_MODEL_TYPE, DreamConfig
from diffucoder.model.numerics import warm_up_vector_math

# Attention back ends that take a dense 4-D mask; flex_attention with a 4-D mask
# crashes on this stack and flash kernels take no dense mask at all.
DENSE_MASK_ATTENTION = ("sdpa", "eager")


def shift_logits(logits: torch.Tensor) -> torch.Tensor:
    """Align logits with the tokens they predict: ``cat([l[:, :1], l[:, :-1]], 1)``.

    After the shift, ``shifted[:, i]`` is the model's prediction for token ``i``
    (read at masked positions by the sampler). Position 0 gets a copy of its own
    logit: nothing precedes it, so it is never a masked position in practice.
    """
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a padded batch: ``cumsum(mask) - 1`` clipped at 0 (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def padding_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """4-D boolean mask from a 2-D padding mask: real tokens attend to real tokens.

    ``m[:, None, None, :] & m[:, None, :, None]`` as docs/method.md, section 1.2, writes it, OR the diagonal so
    that pad query rows are not empty (an all-False row makes sdpa return NaN).
    """
    real = attention_mask.bool()
    eye = torch.eye(real.shape[-1], dtype=torch.bool, device=real.device)
    return (real[:, None, None, :] & real[:, None, :, None]) | eye


def ensure_attendable(mask: torch.Tensor) -> torch.Tensor:
    """Give every query row with no allowed key its own position (avoids NaN rows)."""
    empty = ~mask.any(dim=-1, keepdim=True)
    eye = torch.eye(mask.shape[-2], mask.shape[-1], dtype=torch.bool, device=mask.device)
    return mask | (empty & eye)


class DreamModel(Qwen2PreTrainedModel):
    """Bidirectional Qwen2 backbone (``self.model``) + untied LM head (``self.lm_head``).

    ``forward`` returns ``MaskedLMOutput`` whose ``logits`` are *unshifted*: use
    ``shift_logits`` to sample, or score ``logits[:, :-1]`` against ``tokens[:, 1:]``.
    """

    config_class = DreamConfig
    config: DreamConfig
    # Tied only if a loaded Qwen2 checkpoint says so (small Qwen2.5 models); Dream is untied.
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: DreamConfig):
        config.validate()  # catches fields edited after construction, before any weight is allocated
        warm_up_vector_math()   # before this process's first forward (model.numerics)
        keep_freed_memory()     # forwards reuse freed activations' pages (model.allocator)
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise DiffucoderError("DreamModel: pass input_ids or inputs_embeds")
        batch, length = reference.shape[0], reference.shape[1]
        mask, default_positions = self._prepare_mask(attention_mask, batch, length, reference.device)
        if position_ids is None:
            position_ids = default_positions
        kwargs.pop("use_cache", None)  # bidirectional: a KV cache would be stale after every step
        outputs = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                             inputs_embeds=inputs_embeds, use_cache=False, **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)
        return MaskedLMOutput(logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)

    def _prepare_mask(self, attention_mask: torch.Tensor | None, batch: int, length: int,
                      device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Turn the caller's mask into what the attention back end takes, plus default position ids."""
        if attention_mask is None:
            return None, None
        implementation = self.config._attn_implementation
        if implementation not in DENSE_MASK_ATTENTION:
            raise DiffucoderError(
                f"DreamModel: attention implementation {implementation!r} cannot take a dense "
                f"padding/annealing mask; load the model with attn_implementation in {DENSE_MASK_ATTENTION}")
        attention_mask = attention_mask.to(device)
        if attention_mask.dim() == 2:
            if tuple(attention_mask.shape) != (batch, length):
                raise DiffucoderError(f"DreamModel: 2-D attention_mask has shape {tuple(attention_mask.shape)}, "
                                      f"expected (batch, length) = {(batch, length)}")
            positions = position_ids_from_mask(attention_mask)
            if bool(attention_mask.bool().all()):
                return None, positions  # no padding: let sdpa take its unmasked fast path
            mask = padding_attention_mask(attention_mask)
        elif attention_mask.dim() in (3, 4):
            if attention_mask.is_floating_point():
                raise DiffucoderError("DreamModel: pass a boolean 3-D/4-D attention_mask (True = may attend), "
                                      "not an additive float mask")
            mask = attention_mask if attention_mask.dim() == 4 else attention_mask[:, None]
            if mask.shape[-2:] != (length, length) or mask.shape[0] not in (1, batch):
                raise DiffucoderError(f"DreamModel: attention_mask has shape {tuple(attention_mask.shape)}, "
                                      f"expected (batch, 1, {length}, {length})")
            mask = ensure_attendable(mask.bool())
            positions = None
        else:
            raise DiffucoderError(f"DreamModel: attention_mask must be 2-D, 3-D or 4-D, "
                                  f"got {attention_mask.dim()}-D")
        if implementation == "eager":
            # The eager kernel adds the mask to the scores, so it needs 0 / -inf, not booleans.
            dtype = self.lm_head.weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)
        return mask, positions


AutoConfig.register(DREAM_MODEL_TYPE, DreamConfig, exist_ok=True)
AutoModel.register(DreamConfig, DreamModel, exist_ok=True)
AutoModelForCausalLM.register(DreamConfig, DreamModel, exist_ok=True)
