"""Step-level decoding: exact-mode rows advanced one denoising step at a time, rows at any step
sharing one forward (what a server's continuous batching runs).

    from diffucoder.sampling.stepwise import RowDecode, step_rows
    rows = [RowDecode.start(model, ids, config, torch.Generator().manual_seed(0)) for ids in prompts]
    while rows:
        step_rows(model, rows)                 # one forward for every row that commits this step
        done = [row for row in rows if row.done]
        rows = [row for row in rows if not row.done]   # new rows may join here, at a step boundary
    done[0].completion                         # (max_new_tokens,) token ids

A row is one prompt (no padding) with its own config, generator and step counter, so rows
of different lengths, schedules, samplers and steps decode together. Each step runs the
sampler's own functions (``step_commit``, ``denoise_step``) on the row alone, so a row's
tokens equal ``diffusion_generate`` on that prompt as a batch of one with the same
generator whenever the logits are equal: always under ``batch_invariant`` (each row's
forward is run unpadded and alone, as the sampler runs it), and up to the ~1e-7 rounding of
a padded batch otherwise (which can flip a near tie). Only the exact mode steps this way:
the approximate cached modes decode block by block and are batched whole (``diffusion_generate``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from diffucoder.model import position_ids_from_mask
from diffucoder.sampling.config import SamplingConfig
from diffucoder.sampling.generate import SamplingError, checked_prompts, completion_logits
from diffucoder.sampling.step import denoise_step, step_commit


@dataclass
class RowDecode:
    """One prompt's exact decode: ``x`` is the prompt then the completion (masks until committed)."""
    x: torch.Tensor                  # (P + N,) long
    prompt_length: int
    config: SamplingConfig
    generator: torch.Generator
    mask_id: int
    step: int = 0
    forward_passes: int = 0

    @classmethod
    def start(cls, model: torch.nn.Module, prompt_ids, config: SamplingConfig,
              generator: torch.Generator) -> "RowDecode":
        """Check one prompt (1-D ids, no padding) as ``diffusion_generate`` would, and mask its completion."""
        if config.approximate:
            raise SamplingError(f"mode {config.mode!r} decodes block by block; only the exact mode steps row by row")
        ids = torch.as_tensor(prompt_ids, dtype=torch.long)
        input_ids, attention_mask, mask_id = checked_prompts(model, ids, None, config)
        masks = torch.full((config.max_new_tokens,), mask_id, dtype=torch.long, device=input_ids.device)
        return cls(torch.cat([input_ids[0], masks]), input_ids.shape[1], config, generator, mask_id)

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    @property
    def completion(self) -> torch.Tensor:
        return self.x[self.prompt_length:]

    @property
    def length(self) -> int:
        return self.x.shape[0]

    def plan(self) -> tuple[torch.Tensor | float, bool]:
        """What this step commits, and whether it is idle (no forward needed)."""
        return step_commit((self.completion == self.mask_id)[None], self.step, self.config.steps, self.config)

    def next_block(self, logits: torch.Tensor | None, commit: torch.Tensor | float) -> torch.Tensor | None:
        """The completion after this step, from its shifted ``logits`` (N, V); None when the step is idle."""
        if logits is None:
            return None
        completion = self.completion[None]
        block, _, _ = denoise_step(logits[None], completion, completion == self.mask_id, commit,
                                   self.config, self.generator)
        return block[0]

    def commit(self, block: torch.Tensor | None) -> None:
        """End the step: ``block`` (from ``next_block``) becomes the completion."""
        if block is not None:
            self.x[self.prompt_length:] = block
            self.forward_passes += 1
        self.step += 1


@torch.no_grad()
def step_rows(model: torch.nn.Module, rows: list[RowDecode]) -> None:
    """Advance every row (none of them done) by one denoising step; one padded forward serves the
    rows that commit, except ``batch_invariant`` rows, which each get their own unpadded forward."""
    plans = [(row, *row.plan()) for row in rows]
    working = [row for row, _, idle in plans if not idle]
    logits = dict(zip(map(id, working), row_logits(model, working)))
    blocks = [row.next_block(logits.get(id(row)), commit) for row, commit, _ in plans]
    for row, block in zip(rows, blocks):   # every row's step computed before any row changes
        row.commit(block)


def row_logits(model: torch.nn.Module, rows: list[RowDecode]) -> list[torch.Tensor]:
    """Each row's shifted completion logits (N_i, V), in order."""
    out: dict[int, torch.Tensor] = {}
    shared = [row for row in rows if not row.config.batch_invariant]
    for row in rows:
        if row.config.batch_invariant:   # the sampler's own call, on the row alone
            ones = torch.ones((1, row.length), dtype=torch.long, device=row.x.device)
            out[id(row)] = completion_logits(model, row.x[None], ones, position_ids_from_mask(ones),
                                              row.prompt_length, True)[0]
    if shared:
        width = max(row.length for row in shared)
        device = shared[0].x.device
        ids = torch.full((len(shared), width), shared[0].mask_id, dtype=torch.long, device=device)
        attention = torch.zeros((len(shared), width), dtype=torch.long, device=device)
        for i, row in enumerate(shared):   # left-padded: every completion ends at the last column
            ids[i, width - row.length:] = row.x
            attention[i, width - row.length:] = 1
        logits = model(ids, attention_mask=attention, position_ids=position_ids_from_mask(attention)).logits
        for i, row in enumerate(shared):
            new = row.config.max_new_tokens
            out[id(row)] = logits[i, width - new - 1:width - 1]
    return [out[id(row)] for row in rows]
