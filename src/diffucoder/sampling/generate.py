"""``diffusion_generate``: docs/method.md, section 3.1, for a batch of left-padded prompts.

    from diffucoder.sampling import SamplingConfig, diffusion_generate
    out = diffusion_generate(model, input_ids, attention_mask, SamplingConfig(temperature=0.0),
                             generator=torch.Generator().manual_seed(0), return_commit_order=True)
    out = diffusion_generate(model, input_ids, attention_mask, max_new_tokens=64, steps=32)   # overrides

``max_new_tokens`` mask tokens are appended to every prompt; each step runs the
model on the whole sequence (2-D padding mask, positions ``cumsum(mask) - 1``,
so a left-padded row sees the same positions as when alone), reads the shifted
logits at the completion, and commits what the schedule says. A step that
commits nothing in any row (the first step when steps = max_new_tokens) skips
the model call: it would change nothing (so under ``threshold`` the steps after the last
mask cost nothing). ``mode="approx_*"`` hands over to the
cached block-wise decoder in ``cached.py`` (faster, approximate).

Determinism: the same inputs, generator and batch give the same output. Batched
kernels round a padded row's logits differently from the same row alone (~1e-7),
which can flip a near tie; ``batch_invariant=True`` runs each row's forward on its
own, unpadded, so a row's output never depends on its batch (tested bit for bit).
"""
from __future__ import annotations

import torch

from diffucoder.errors import DiffucoderError
from diffucoder.model import position_ids_from_mask
from diffucoder.sampling.cached import cached_generate
from diffucoder.sampling.config import SamplingConfig, resolve_config
from diffucoder.sampling.output import CommitRecorder, GenerationOutput
from diffucoder.sampling.step import denoise_step, step_commit


class SamplingError(DiffucoderError):
    """A prompt batch or model the sampler cannot decode (empty prompt, right padding, ...)."""


def diffusion_generate(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       config: SamplingConfig | None = None, *, generator: torch.Generator | None = None,
                       return_history: bool = False, return_commit_order: bool = False,
                       **overrides) -> GenerationOutput:
    """Decode ``max_new_tokens`` tokens after each prompt row of ``input_ids`` (B, P), left-padded.

    ``config`` fields may be overridden by keyword (``steps=128``). ``generator`` (on the
    model's device) makes sampling reproducible; without it one is seeded with ``config.seed``.
    """
    if isinstance(attention_mask, SamplingConfig) and config is None:  # generate(model, ids, config)
        attention_mask, config = None, attention_mask
    config = resolve_config(config, **overrides)
    input_ids, attention_mask, mask_id = checked_prompts(model, input_ids, attention_mask, config)
    if generator is None:
        generator = torch.Generator(device=input_ids.device).manual_seed(config.seed)
    if config.approximate:
        return cached_generate(model, input_ids, attention_mask, config, generator, mask_id,
                               return_history, return_commit_order)
    return _exact_generate(model, input_ids, attention_mask, config, generator, mask_id,
                           return_history, return_commit_order)


@torch.no_grad()
def _exact_generate(model, input_ids, attention_mask, config, generator, mask_id,
                    return_history, return_commit_order) -> GenerationOutput:
    batch, prompt_length = input_ids.shape
    new = config.max_new_tokens
    x = torch.cat([input_ids, torch.full((batch, new), mask_id, dtype=torch.long, device=input_ids.device)], 1)
    full_mask = torch.cat([attention_mask, torch.ones((batch, new), dtype=attention_mask.dtype,
                                                      device=attention_mask.device)], 1)
    positions = position_ids_from_mask(full_mask)
    recorder = CommitRecorder(batch, new, x.device, return_history, return_commit_order)
    forward_passes = 0
    for step in range(config.steps):
        completion = x[:, prompt_length:]
        masked = completion == mask_id
        commit, idle = step_commit(masked, step, config.steps, config)
        if idle:  # nothing to commit in any row: the model call would change nothing
            recorder.record(step, x)
            continue
        logits = completion_logits(model, x, full_mask, positions, prompt_length, config.batch_invariant)
        forward_passes += 1
        block, chosen, rank = denoise_step(logits, completion, masked, commit, config, generator)
        x[:, prompt_length:] = block
        recorder.record(step, x, chosen, rank)
    return recorder.finish(x, prompt_length, config.steps, forward_passes, config.mode)


def completion_logits(model, x, full_mask, positions, prompt_length: int, row_by_row: bool) -> torch.Tensor:
    """Shifted logits (B, N, V) at the completion columns: the logit at column j - 1 predicts token j."""
    if not row_by_row:
        return model(x, attention_mask=full_mask, position_ids=positions).logits[:, prompt_length - 1:-1]
    rows = []
    for row in range(x.shape[0]):  # each row unpadded and alone: the same computation as a batch of one
        first = int(prompt_length - full_mask[row, :prompt_length].sum())
        logits = model(x[row:row + 1, first:], attention_mask=full_mask[row:row + 1, first:],
                       position_ids=positions[row:row + 1, first:]).logits
        rows.append(logits[0, prompt_length - first - 1:-1])
    return torch.stack(rows)


def checked_prompts(model: torch.nn.Module, input_ids, attention_mask, config: SamplingConfig
                    ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``check_prompts``, then what the model allows: no mask token in a prompt, and prompt +
    completion within its positions. Returns (ids, mask) on the model's device and the mask id."""
    input_ids, attention_mask = check_prompts(input_ids, attention_mask, next(model.parameters()).device)
    mask_id = mask_token_id(model)
    if bool((input_ids[attention_mask.bool()] == mask_id).any()):
        raise SamplingError(f"a prompt contains the mask token id {mask_id}; only the completion is denoised")
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and input_ids.shape[1] + config.max_new_tokens > limit:
        raise SamplingError(f"prompt width {input_ids.shape[1]} + max_new_tokens {config.max_new_tokens} exceeds "
                            f"the model's {limit} positions")
    return input_ids, attention_mask, mask_id


def mask_token_id(model: torch.nn.Module) -> int:
    """The model's ``<|mask|>`` id (``config.mask_token_id``)."""
    value = getattr(getattr(model, "config", None), "mask_token_id", None)
    if not isinstance(value, int):
        raise SamplingError("the model config has no integer mask_token_id; not a masked-diffusion model")
    return value


def check_prompts(input_ids, attention_mask, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a left-padded prompt batch; returns (ids, mask) as long tensors on ``device``."""
    if not isinstance(input_ids, torch.Tensor):
        raise SamplingError(f"input_ids must be a tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
        attention_mask = attention_mask[None] if isinstance(attention_mask, torch.Tensor) \
            and attention_mask.dim() == 1 else attention_mask
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise SamplingError(f"input_ids must be integer ids of shape (batch, prompt_length), "
                            f"got {input_ids.dtype} {tuple(input_ids.shape)}")
    if input_ids.shape[0] == 0:
        raise SamplingError("input_ids has no rows: nothing to decode")
    if input_ids.shape[1] == 0:
        raise SamplingError("the prompts are empty: the first completion token is predicted from the last "
                            "prompt token, so give at least one (e.g. BOS)")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if not isinstance(attention_mask, torch.Tensor):
        raise SamplingError(f"attention_mask must be a tensor of 0/1, got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise SamplingError(f"attention_mask has shape {tuple(attention_mask.shape)}, "
                            f"input_ids {tuple(input_ids.shape)}")
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise SamplingError("attention_mask must hold only 0 (pad) and 1 (token)")
    attention_mask = attention_mask.long()
    empty = (attention_mask.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise SamplingError(f"prompt row(s) {empty} are empty (all padding); give each prompt at least one token")
    if bool((attention_mask[:, 1:] < attention_mask[:, :-1]).any()):
        raise SamplingError("prompts must be left-padded (zeros before ones in attention_mask): the completion "
                            "follows the last prompt column")
    return input_ids.to(device).long(), attention_mask.to(device)
