"""Rows for the trainer: a resumable, seeded sampler over token shards or chat JSONL.

    rows = ShardRows(TokenShards.open(uri).train, seq_len=256)          # pretraining
    rows = ChatRows.from_jsonl("sft-train.jsonl", tokenizer, seq_len=256, ids=special_ids)
    loader = RowLoader(rows, batch_size=8, rank=0, world_size=1, seed=0)
    batch = loader.next_batch()        # Batch(tokens, attention_mask, prompt_mask)
    state = loader.state_dict()        # {"epoch": 0, "offset": 8}: part of every checkpoint
    loader.load_state_dict(state)      # continue exactly where the checkpoint was taken

Order: epoch ``e`` visits the rows in the permutation drawn by ``numpy`` from
``[seed, e]`` (no state beyond ``(epoch, offset)``). Every micro-step consumes
``world_size * batch_size`` rows of it and rank ``r`` takes the ``r``-th slice; an
epoch's remainder smaller than that is skipped, so all ranks always agree.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from diffucoder.diffusion.sft import sft_batch
from diffucoder.errors import DiffucoderError
from diffucoder.training.chat import split_chat


class Batch(NamedTuple):
    tokens: torch.Tensor                   # (B, L) long
    attention_mask: torch.Tensor | None    # (B, L) or None (packed rows: all real)
    prompt_mask: torch.Tensor | None       # (B, L) bool, SFT only: never masked nor scored


class ShardRows:
    """Packed rows of a ``TokenSplit``, optionally cut into ``packed_len / seq_len`` pieces."""

    def __init__(self, split, seq_len: int = 0):
        packed = split.seq_len
        self.seq_len = seq_len or packed
        if packed % self.seq_len:
            raise DiffucoderError(f"'data.seq_len': {self.seq_len} does not divide the shards' packed "
                                  f"row length {packed}")
        self.split, self.pieces = split, packed // self.seq_len

    def __len__(self) -> int:
        return len(self.split) * self.pieces

    def batch(self, indices: np.ndarray) -> Batch:
        packed = self.split[indices // self.pieces]
        starts = (indices % self.pieces) * self.seq_len
        rows = np.stack([row[s:s + self.seq_len] for row, s in zip(packed, starts)])
        return Batch(torch.from_numpy(rows.astype(np.int64)), None, None)


class ChatRows:
    """Tokenised (prompt, response) pairs, laid out by ``sft_batch`` (dlm_pad fills the rest).

    ``canvas_jitter`` > 0 ends some rows' canvases at random lengths (``sft_batch``'s
    ``canvas_lengths``), so the model also answers in canvases shorter than ``seq_len``, as
    sampling with ``prompt + max_new_tokens`` positions asks it to."""

    def __init__(self, prompts: list[list[int]], responses: list[list[int]], seq_len: int,
                 dlm_pad_id: int, eos_id: int, skipped: int = 0, canvas_jitter: float = 0.0):
        self.prompts, self.responses, self.seq_len = prompts, responses, seq_len
        self.dlm_pad_id, self.eos_id, self.skipped = dlm_pad_id, eos_id, skipped
        self.canvas_jitter = canvas_jitter

    @classmethod
    def from_jsonl(cls, path: str | Path, tokenizer, seq_len: int, ids: dict[str, int],
                   canvas_jitter: float = 0.0, chat_template: str = "project") -> ChatRows:
        """Read chat records, rendered with ``chat_template`` (``training.chat``: ``project`` or
        ``released``); samples whose prompt leaves no room for an answer are skipped."""
        prompts, responses, skipped = [], [], 0
        path = Path(path)
        texts: list[tuple[str, str]] = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DiffucoderError(f"{path}:{number}: not JSON: {err}") from None
                texts.append(split_chat(record, where=f"{path}:{number}", template=chat_template))
        if not texts:
            raise DiffucoderError(f"{path}: no chat records")
        prompt_ids = _encode(tokenizer, [p for p, _ in texts])
        response_ids = _encode(tokenizer, [r for _, r in texts])
        for prompt, response in zip(prompt_ids, response_ids):
            if len(prompt) >= seq_len - 1:
                skipped += 1
                continue
            prompts.append(prompt)
            responses.append(response)
        if not prompts:
            raise DiffucoderError(f"{path}: every prompt is longer than data.seq_len={seq_len} "
                                  "allows; raise data.seq_len")
        return cls(prompts, responses, seq_len, ids["dlm_pad"], ids["eos"], skipped, canvas_jitter)

    def __len__(self) -> int:
        return len(self.prompts)

    def body_length(self, i: int) -> int:
        """Tokens of sample ``i``'s prompt + response + eos (before any cut to ``seq_len``)."""
        return len(self.prompts[i]) + len(self.responses[i]) + 1

    def truncated(self) -> int:
        """Samples whose response (+ eos) does not fit and is cut."""
        return sum(self.body_length(i) > self.seq_len for i in range(len(self)))

    def canvas_lengths(self, indices: np.ndarray) -> list[int] | None:
        """With probability ``canvas_jitter`` per row, a canvas length drawn uniformly between the
        row's prompt + response + eos and ``seq_len`` (else ``seq_len``). Drawn from the row indices
        alone, so a resumed run sees the same lengths."""
        if not self.canvas_jitter:
            return None
        rng = np.random.default_rng([int(i) for i in indices])
        lengths = []
        for i in indices:
            body = min(self.body_length(i), self.seq_len)
            jitter = rng.random() < self.canvas_jitter
            lengths.append(int(rng.integers(body, self.seq_len + 1)) if jitter else self.seq_len)
        return lengths

    def batch(self, indices: np.ndarray) -> Batch:
        out = sft_batch([self.prompts[i] for i in indices], [self.responses[i] for i in indices],
                        self.seq_len, dlm_pad_token_id=self.dlm_pad_id, eos_token_id=self.eos_id,
                        canvas_lengths=self.canvas_lengths(indices))
        return Batch(out.tokens, out.attention_mask, out.prompt_mask)


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


class RowLoader:
    def __init__(self, rows, batch_size: int, rank: int, world_size: int, seed: int,
                 shuffle: bool = True):
        self.rows, self.batch_size, self.rank, self.world_size = rows, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.per_step = batch_size * world_size
        if len(rows) < self.per_step:
            raise DiffucoderError(f"data: {len(rows)} rows cannot fill one micro-step of "
                                  f"{world_size} ranks x data.batch_size={batch_size}")
        self.epoch, self.offset = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.rows))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))

    def next_batch(self) -> Batch:
        if self.offset + self.per_step > len(self._order):
            self.epoch, self.offset = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        start = self.offset + self.rank * self.batch_size
        indices = self._order[start:start + self.batch_size]
        self.offset += self.per_step
        return self.rows.batch(indices)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "rows": len(self.rows),
                "world_size": self.world_size, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {"rows": len(self.rows), "world_size": self.world_size, "batch_size": self.batch_size}
        found = {k: state.get(k) for k in expected}
        if found != expected:
            raise DiffucoderError(f"checkpoint: data position was saved for {found}, but this run has "
                                  f"{expected}; resume with the same data and layout")
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._permutation(self.epoch)
