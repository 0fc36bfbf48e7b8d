"""Text in and out of the sampler: left-padded prompt batches, completions cut at a stop token.

    from diffucoder.sampling import decode_completions, encode_prompts, load_tokenizer
    tok = load_tokenizer("out/tiny")                       # the tokenizer saved beside the model
    ids, mask = encode_prompts(tok, ["def f(x):", "class A:"])
    texts = decode_completions(tok, out, stop="eos")       # base models: cut at the first EOS
    texts = decode_completions(tok, out, stop="dlm_pad")   # instruct models: first <|dlm_pad|>

EOS and ``<|dlm_pad|>`` are ordinary tokens to the sampler (docs/method.md, section 3.1): the
fixed-length output is cut at the first stop token only when it becomes text.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from diffucoder.errors import DiffucoderError
from diffucoder.model.tokenizer import load_checkpoint_tokenizer
from diffucoder.sampling.output import GenerationOutput

DLM_PAD_TOKEN = "<|dlm_pad|>"


def load_tokenizer(path: str | os.PathLike):
    """The tokenizer saved in a model directory (``diffucoder.model.tokenizer``: a ``tokenizer.json``,
    or a released Dream tokenizer, without running code from the directory)."""
    try:
        return load_checkpoint_tokenizer(path)
    except (OSError, ValueError) as err:
        raise DiffucoderError(f"{path}: no usable tokenizer saved beside the model ({err})") from err


def encode_prompts(tokenizer, prompts: Sequence[str], add_special_tokens: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize ``prompts`` into a left-padded batch: ``(input_ids, attention_mask)``, both (B, P)."""
    if isinstance(prompts, str) or not prompts:
        raise DiffucoderError("encode_prompts takes a non-empty list of prompt strings")
    rows = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    empty = [index for index, row in enumerate(rows) if not row]
    if empty:
        raise DiffucoderError(f"prompt(s) {empty} tokenize to nothing; the sampler needs at least one token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise DiffucoderError("the tokenizer has neither a pad nor an EOS token to left-pad prompts with")
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, width - len(row):] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, width - len(row):] = 1
    return input_ids, attention_mask


def stop_token_ids(tokenizer, stop: str | Sequence[int]) -> list[int]:
    """Token ids that end a completion: ``"eos"``, ``"dlm_pad"`` or an explicit list of ids."""
    if not isinstance(stop, str):
        return [int(token) for token in stop]
    if stop == "eos":
        if tokenizer.eos_token_id is None:
            raise DiffucoderError("stop='eos' but the tokenizer has no EOS token")
        return [tokenizer.eos_token_id]
    if stop == "dlm_pad":
        token_id = tokenizer.convert_tokens_to_ids(DLM_PAD_TOKEN)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise DiffucoderError(f"stop='dlm_pad' but the tokenizer has no {DLM_PAD_TOKEN} token")
        return [token_id]
    raise DiffucoderError(f"stop must be 'eos', 'dlm_pad' or a list of token ids, got {stop!r}")


def cut_at_stop(tokens: Sequence[int], stops: Sequence[int]) -> list[int]:
    """``tokens`` up to (not including) the first stop token."""
    tokens, stop_set = list(tokens), set(stops)
    for index, token in enumerate(tokens):
        if token in stop_set:
            return tokens[:index]
    return tokens


def decode_completions(tokenizer, output: GenerationOutput | torch.Tensor,
                       prompt_lengths: int | Sequence[int] | None = None, stop: str | Sequence[int] = "eos",
                       skip_special_tokens: bool = True) -> list[str]:
    """Completion text per row, cut at the first stop token.

    ``output`` is a ``GenerationOutput`` (the completion starts at its ``prompt_length``) or a
    (B, L) tensor of sequences with ``prompt_lengths`` (one int, or one per row) saying where.
    """
    sequences = output.sequences if isinstance(output, GenerationOutput) else output
    if prompt_lengths is None:
        if not isinstance(output, GenerationOutput):
            raise DiffucoderError("decode_completions: give prompt_lengths with a bare tensor of sequences")
        prompt_lengths = output.prompt_length
    starts = [prompt_lengths] * sequences.shape[0] if isinstance(prompt_lengths, int) else list(prompt_lengths)
    if len(starts) != sequences.shape[0]:
        raise DiffucoderError(f"decode_completions: {len(starts)} prompt lengths for {sequences.shape[0]} rows")
    stops = stop_token_ids(tokenizer, stop)
    texts = []
    for row, start in zip(sequences.tolist(), starts):
        texts.append(tokenizer.decode(cut_at_stop(row[start:], stops), skip_special_tokens=skip_special_tokens))
    return texts
