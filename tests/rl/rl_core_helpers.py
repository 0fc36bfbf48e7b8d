"""Helpers for the coupled-GRPO core tests: a micro Dream model and a left-padded prompt/completion batch."""
from __future__ import annotations

import torch

from diffucoder.model import build_config, build_model

VOCAB = 64
MASK_ID = VOCAB - 1
END_ID = VOCAB - 3          # the preset's eos id
PAD_ID = VOCAB - 3
# initializer_range well above the default so that logits differ between masks (a freshly
# initialised model is otherwise nearly uniform and every estimator agrees trivially).
MICRO = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, initializer_range=0.3)


def micro_model(seed: int = 0):
    return build_model(build_config("tiny", vocab_size=VOCAB, **MICRO), seed=seed).eval()


def batch(seed: int = 0, prompt_lengths=(5, 3, 4), completion_length: int = 7, end_at=(4, None, 0)):
    """(prompt_ids, prompt_attention, completion_ids): left-padded prompts; row i's completion holds
    the end token at ``end_at[i]`` (None: no end token), followed by more ordinary tokens."""
    generator = torch.Generator().manual_seed(seed)
    width = max(prompt_lengths)
    prompt_ids = torch.full((len(prompt_lengths), width), PAD_ID, dtype=torch.long)
    attention = torch.zeros((len(prompt_lengths), width), dtype=torch.long)
    for row, length in enumerate(prompt_lengths):
        prompt_ids[row, width - length:] = torch.randint(0, VOCAB - 3, (length,), generator=generator)
        attention[row, width - length:] = 1
    completion = torch.randint(0, VOCAB - 3, (len(prompt_lengths), completion_length), generator=generator)
    for row, end in enumerate(end_at):
        if end is not None:
            completion[row, end] = END_ID
    return prompt_ids, attention, completion
