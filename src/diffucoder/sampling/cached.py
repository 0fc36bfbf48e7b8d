"""APPROXIMATE fast decoding: block-wise (semi-autoregressive) with cached keys/values (Fast-dLLM).

    out = diffusion_generate(model, ids, mask, mode="approx_prefix_cache", block_size=32)
    out = diffusion_generate(model, ids, mask, mode="approx_dual_cache", block_size=32)

The completion is decoded in blocks of ``block_size`` tokens, left to right; the
``steps`` are shared out over the blocks and each block runs the exact schedule (docs/method.md, section 3.2)
on its own masks. The first model call runs the whole sequence and keeps the
prompt's keys/values; later calls feed only the tokens after the cached prefix:

* ``approx_prefix_cache``: feed the current block and every masked token after it;
* ``approx_dual_cache``: at a block's first call also cache the keys/values of the
  masked suffix after the block, then feed the block alone.

When a block is finished, its keys/values join the prefix at the next call. Cached
entries are never refreshed, so they are *stale*: the prompt's were computed while
the whole completion was masked. That is the approximation (exact for a one-layer
model, where keys/values depend on the token and position only). The token just
before the block is always re-fed: the shifted logit of the block's first position
is read from it.
"""
from __future__ import annotations

import torch

from diffucoder.model import position_ids_from_mask
from diffucoder.sampling.config import SamplingConfig
from diffucoder.sampling.output import CommitRecorder, GenerationOutput
from diffucoder.sampling.step import denoise_step, step_commit


class StaleKVCache:
    """Per-layer keys/values of the cached prefix (and, in dual mode, suffix), in the layout
    transformers' attention layers expect of ``past_key_values``: they call ``update(k, v, layer)``
    with the fed tokens' keys/values and attend over what it returns."""

    def __init__(self, layers: int):
        self.prefix: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * layers
        self.suffix: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * layers
        self.append_first = 0           # fed tokens whose keys/values join the prefix after this call
        self.store_suffix_from: int | None = None  # fed index where the suffix to keep starts
        self.use_suffix = False

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        prefix, suffix = self.prefix[layer_idx], self.suffix[layer_idx]
        parts = ([prefix] if prefix is not None else []) + [(key, value)]
        if self.use_suffix and suffix is not None:
            parts.append(suffix)
        keys, values = torch.cat([k for k, _ in parts], 2), torch.cat([v for _, v in parts], 2)
        if self.append_first:
            head = (key[:, :, :self.append_first], value[:, :, :self.append_first])
            self.prefix[layer_idx] = head if prefix is None else (torch.cat([prefix[0], head[0]], 2),
                                                                  torch.cat([prefix[1], head[1]], 2))
        if self.store_suffix_from is not None:
            self.suffix[layer_idx] = (key[:, :, self.store_suffix_from:], value[:, :, self.store_suffix_from:])
        return keys, values


class CachedForward:
    """Runs the model on ``x[:, start:end]`` against a ``StaleKVCache``; returns shifted logits."""

    def __init__(self, model: torch.nn.Module, attention_mask: torch.Tensor, dual: bool):
        self.model, self.dual = model, dual
        self.attention_mask = attention_mask           # (B, L) over prompt + completion
        self.positions = position_ids_from_mask(attention_mask)
        self.cache = StaleKVCache(model.config.num_hidden_layers)
        self.cached = 0                                 # columns [0, cached) are in the prefix cache
        self.suffix_from: int | None = None             # column where the cached suffix starts
        self.calls = 0

    def block_logits(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Shifted logits (B, end - start, V) for columns ``start:end`` (the current block)."""
        length = x.shape[1]
        reuse_suffix = self.dual and self.suffix_from == end
        feed_end = end if reuse_suffix else length
        keep = max(0, start - 1 - self.cached)          # finished tokens before the block join the prefix
        cache = self.cache
        cache.append_first = keep
        cache.use_suffix = reuse_suffix
        cache.store_suffix_from = (end - self.cached) if self.dual and not reuse_suffix and end < length else None
        fed = x[:, self.cached:feed_end]
        mask = self._mask(fed.shape[1], length - feed_end if reuse_suffix else 0)
        hidden = self.model.model(input_ids=fed, attention_mask=mask, past_key_values=cache, use_cache=False,
                                  position_ids=self.positions[:, self.cached:feed_end]).last_hidden_state
        self.calls += 1
        # Shifted prediction: the hidden state at column j - 1 predicts token j.
        logits = self.model.lm_head(hidden[:, start - 1 - self.cached:end - 1 - self.cached])
        if cache.store_suffix_from is not None:
            self.suffix_from = end
        self.cached += keep
        return logits

    def _mask(self, fed: int, suffix: int) -> torch.Tensor:
        """4-D boolean mask, queries = fed columns, keys = [cached prefix | fed | cached suffix].

        Real tokens attend to real tokens; a pad query (only in a call that feeds the prompt)
        attends to itself alone, as in the model's own padding mask, so no row is NaN.
        """
        am = self.attention_mask.bool()
        batch, feed_end = am.shape[0], self.cached + fed
        keys = torch.cat([am[:, :feed_end], torch.ones((batch, suffix), dtype=torch.bool, device=am.device)], 1)
        queries = am[:, self.cached:feed_end]
        diagonal = torch.zeros((fed, keys.shape[1]), dtype=torch.bool, device=am.device)
        diagonal[torch.arange(fed), self.cached + torch.arange(fed)] = True
        mask = (keys[:, None, None, :] & queries[:, None, :, None]) | diagonal
        if self.model.config._attn_implementation == "eager":  # eager adds the mask to the scores
            dtype = self.model.lm_head.weight.dtype
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        return mask


def block_bounds(length: int, block_size: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` blocks covering ``range(length)``; the last may be shorter."""
    return [(start, min(start + block_size, length)) for start in range(0, length, block_size)]


def steps_per_block(steps: int, blocks: int) -> list[int]:
    """``steps`` shared out as evenly as possible, earlier blocks taking the remainder."""
    base, extra = divmod(steps, blocks)
    return [base + (1 if index < extra else 0) for index in range(blocks)]


@torch.no_grad()
def cached_generate(model, input_ids, attention_mask, config: SamplingConfig, generator, mask_id,
                    return_history, return_commit_order) -> GenerationOutput:
    batch, prompt_length = input_ids.shape
    new = config.max_new_tokens
    x = torch.cat([input_ids, torch.full((batch, new), mask_id, dtype=torch.long, device=input_ids.device)], 1)
    full_mask = torch.cat([attention_mask, torch.ones((batch, new), dtype=attention_mask.dtype,
                                                      device=attention_mask.device)], 1)
    runner = CachedForward(model, full_mask, dual=config.mode == "approx_dual_cache")
    recorder = CommitRecorder(batch, new, x.device, return_history, return_commit_order)
    blocks = block_bounds(new, config.block_size)
    global_step = 0
    for (block_start, block_end), block_steps in zip(blocks, steps_per_block(config.steps, len(blocks))):
        start, end = prompt_length + block_start, prompt_length + block_end
        for step in range(block_steps):
            block = x[:, start:end]
            masked = block == mask_id
            commit, idle = step_commit(masked, step, block_steps, config)
            if not idle:
                logits = runner.block_logits(x, start, end)
                new_block, chosen, rank = denoise_step(logits, block, masked, commit, config, generator)
                x[:, start:end] = new_block
                recorder.record(global_step, x, chosen, rank, offset=block_start)
            else:
                recorder.record(global_step, x)
            global_step += 1
    return recorder.finish(x, prompt_length, config.steps, runner.calls, config.mode)
