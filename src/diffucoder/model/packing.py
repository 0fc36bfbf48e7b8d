"""Packed forwards: several unpadded sequences in one row, each attending only to itself.

    from diffucoder.model.packing import packed_hidden_states
    hidden = packed_hidden_states(model, [ids_a, ids_b])   # (len_a + len_b, hidden_size): no padding
    logits = model.lm_head(hidden[wanted])                  # logits only where they are read

A padded batch runs every layer over its longest row's width; a packed one over the tokens there
are. Each sequence keeps its own positions (0, 1, ...) and attends only to itself: attention runs
segment by segment with the model's own kernel (sdpa or eager), unmasked, as on that sequence
alone, so only the shapes of the matrix products differ from a forward of the sequence alone
(equal up to float rounding). Continuous batching's shared forwards use it (``sampling.stepwise``).

The model's attention implementation is switched to the packed one for the call and back after
it, so a model must not run another forward at the same time (the server's decoder runs its
forwards one after another).
"""
from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

from diffucoder.errors import DiffucoderError
from diffucoder.model.dream import DENSE_MASK_ATTENTION

PACKED_ATTENTION = "diffucoder_packed"


def _attention_by_segment(module, query, key, value, attention_mask, *, segments: list[int], unpacked: str,
                          **kwargs):
    """``query``/``key``/``value`` (1, heads, T, d) hold the sequences end to end; each one's
    attention is the ``unpacked`` kernel's on that sequence alone."""
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(unpacked, eager_attention_forward)   # as Qwen2Attention
    outputs, start = [], 0
    for length in segments:
        part = slice(start, start + length)
        out, _ = attend(module, query[:, :, part], key[:, :, part], value[:, :, part], None, **kwargs)
        outputs.append(out)   # (1, length, heads, d)
        start += length
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(PACKED_ATTENTION, _attention_by_segment)


def packed_hidden_states(model: torch.nn.Module, sequences: list[torch.Tensor]) -> torch.Tensor:
    """The final hidden states (sum of lengths, hidden_size) of 1-D id ``sequences``, end to end."""
    if not sequences or any(s.dim() != 1 or s.numel() == 0 for s in sequences):
        raise DiffucoderError("packed_hidden_states: pass one or more non-empty 1-D id tensors")
    config = model.config
    unpacked = config._attn_implementation
    if unpacked not in DENSE_MASK_ATTENTION:
        raise DiffucoderError(f"packed_hidden_states: attention implementation {unpacked!r} is not one of "
                              f"{DENSE_MASK_ATTENTION}")
    ids = torch.cat(sequences)[None]
    positions = torch.cat([torch.arange(s.numel(), device=ids.device) for s in sequences])[None]
    config._attn_implementation = PACKED_ATTENTION
    try:
        # A mask mapping (no mask) keeps transformers from building one from the packed positions.
        out = model.model(input_ids=ids, position_ids=positions, attention_mask={"full_attention": None},
                          use_cache=False, segments=[s.numel() for s in sequences], unpacked=unpacked)
    finally:
        config._attn_implementation = unpacked
    return out.last_hidden_state[0]
