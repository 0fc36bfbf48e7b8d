"""SFT (instruction tuning) batches: the prompt is never masked, response + ``<|dlm_pad|>`` are.

    from diffucoder.diffusion import sft_batch, sft_maskable
    batch = sft_batch(prompts, responses, seq_len=2048, dlm_pad_token_id=dlm_pad, eos_token_id=eos)
    maskable = sft_maskable(batch.prompt_mask, batch.attention_mask)

Each sample is ``prompt + response (+ eos) + <|dlm_pad|> ...`` filled to ``seq_len``.
The ``<|dlm_pad|>`` tail is ordinary, attended content that the model must learn to
produce (that is how it learns the output length), so ``attention_mask`` is all
ones and the tail is maskable and scored. Responses too long for ``seq_len`` are
cut on the right; a prompt that leaves no room for a response is an error.

``canvas_lengths`` (one per row) ends a row's canvas early: positions past it are padding
(attention 0, never scored), so the row looks like a shorter sequence. Sampling writes into
``prompt + max_new_tokens`` positions, whatever length training used; rows of one fixed
length teach a small model that its canvas always ends at ``seq_len`` (see
``training.data_loader.ChatRows``, ``data.canvas_jitter``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from diffucoder.diffusion.loss import scorable_mask
from diffucoder.errors import DiffucoderError


class SFTBatch(NamedTuple):
    tokens: torch.Tensor          # (B, seq_len) long
    prompt_mask: torch.Tensor     # (B, seq_len) bool, True on prompt tokens
    attention_mask: torch.Tensor  # (B, seq_len) long, ones up to each row's canvas length


def sft_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], seq_len: int,
              dlm_pad_token_id: int, eos_token_id: int | None = None,
              canvas_lengths: Sequence[int] | None = None) -> SFTBatch:
    """Lay out ``prompt + response [+ eos] + dlm_pad*`` rows of exactly ``seq_len`` tokens."""
    if len(prompts) != len(responses):
        raise DiffucoderError(f"sft_batch: {len(prompts)} prompts but {len(responses)} responses")
    if canvas_lengths is not None and len(canvas_lengths) != len(prompts):
        raise DiffucoderError(f"sft_batch: {len(canvas_lengths)} canvas lengths for {len(prompts)} rows")
    tokens = torch.full((len(prompts), seq_len), dlm_pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), seq_len), dtype=torch.bool)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        if not 1 <= len(prompt) < seq_len:
            raise DiffucoderError(f"sft_batch: sample {row}: prompt of {len(prompt)} tokens needs "
                                  f"1 <= length < seq_len ({seq_len}) to leave room for a response")
        body = list(prompt) + list(response) + ([eos_token_id] if eos_token_id is not None else [])
        body = body[:seq_len]
        tokens[row, :len(body)] = torch.tensor(body, dtype=torch.long)
        prompt_mask[row, :len(prompt)] = True
    attention_mask = torch.ones_like(tokens)
    for row, length in enumerate(canvas_lengths or ()):
        if not len(prompts[row]) < length <= seq_len:
            raise DiffucoderError(f"sft_batch: sample {row}: canvas length {length} must exceed the "
                                  f"prompt ({len(prompts[row])} tokens) and be at most seq_len ({seq_len})")
        attention_mask[row, length:] = 0
    return SFTBatch(tokens=tokens, prompt_mask=prompt_mask, attention_mask=attention_mask)


def sft_maskable(prompt_mask: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Loss-eligible SFT tokens: every real, scorable token that is not part of the prompt."""
    return scorable_mask(~prompt_mask.bool(), attention_mask)
