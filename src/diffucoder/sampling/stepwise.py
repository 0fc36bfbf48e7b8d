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
of different lengths, schedules, samplers and steps decode together, packed end to end in one
forward with no padding (each attends only to itself). Each step runs the sampler's own
functions (``step_commit``, ``denoise_step``) on the row alone, or on rows that draw no random
numbers batched as the sampler batches them (row by row independent), so a row's tokens equal
``diffusion_generate`` on that prompt as a batch of one with the same generator whenever the
logits are equal: always under ``batch_invariant`` (each row's forward is run alone, as the
sampler runs it), and up to the ~1e-7 rounding of a packed forward otherwise (which can flip a
near tie). Only the exact mode steps this way:
the approximate cached modes decode block by block and are batched whole (``diffusion_generate``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from diffucoder.model import position_ids_from_mask
from diffucoder.model.packing import packed_hidden_states
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

    def commit(self, block: torch.Tensor | None) -> None:
        """End the step: ``block`` (None when the step was idle) becomes the completion."""
        if block is not None:
            self.x[self.prompt_length:] = block
            self.forward_passes += 1
        self.step += 1


@torch.no_grad()
def step_rows(model: torch.nn.Module, rows: list[RowDecode]) -> None:
    """Advance every row (none of them done) by one denoising step. The rows that commit share one
    packed forward (``model.packing``: no padding, logits only at the completions; ``batch_invariant``
    rows: one forward each, the sampler's own); rows whose step draws no random number
    and that share a config then take their step together (the sampler's batched step, whose
    rows are independent), every other row alone with its own generator."""
    plans = [(row, *row.plan()) for row in rows]
    working = [row for row, _, idle in plans if not idle]
    logits = dict(zip(map(id, working), row_logits(model, working)))
    together: dict[object, list[tuple[RowDecode, torch.Tensor | float]]] = {}
    for row, commit, idle in plans:
        if not idle:
            together.setdefault(_step_key(row), []).append((row, commit))
    blocks: dict[int, torch.Tensor] = {}
    for members in together.values():   # a random row is alone in its group, with its own generator
        group = [row for row, _ in members]
        completions = torch.stack([row.completion for row in group])
        commits = members[0][1] if len(members) == 1 else torch.cat([c for _, c in members])  # origin: a float
        new, _, _ = denoise_step(torch.stack([logits[id(row)] for row in group]), completions,
                                 completions == group[0].mask_id, commits, group[0].config, group[0].generator)
        blocks.update((id(row), block) for row, block in zip(group, new))
    for row in rows:   # every row's step computed before any row changes
        row.commit(blocks.get(id(row)))


def _step_key(row: RowDecode) -> object:
    """Rows with equal keys can take their step as one batch: deterministic steps of one config."""
    if row.config.random:
        return id(row)   # draws from its own generator
    return dataclasses.astuple(dataclasses.replace(row.config, seed=0))


def row_logits(model: torch.nn.Module, rows: list[RowDecode]) -> list[torch.Tensor]:
    """Each row's shifted completion logits (N_i, V), in order (see ``step_rows``)."""
    out: dict[int, torch.Tensor] = {}
    shared = [row for row in rows if not row.config.batch_invariant]
    for row in rows:
        if row.config.batch_invariant:   # the sampler's own call, on the row alone
            ones = torch.ones((1, row.length), dtype=torch.long, device=row.x.device)
            out[id(row)] = completion_logits(model, row.x[None], ones, position_ids_from_mask(ones),
                                              row.prompt_length, True)[0]
    if shared:   # one packed forward: no padding; logits only where the step reads them
        hidden = packed_hidden_states(model, [row.x for row in shared])
        read, end = [], 0
        for row in shared:   # the logit at column j - 1 predicts token j
            end += row.length
            read.append(torch.arange(end - row.config.max_new_tokens - 1, end - 1, device=hidden.device))
        logits = model.lm_head(hidden[torch.cat(read)])
        for row, part in zip(shared, logits.split([row.config.max_new_tokens for row in shared])):
            out[id(row)] = part
    return [out[id(row)] for row in rows]
