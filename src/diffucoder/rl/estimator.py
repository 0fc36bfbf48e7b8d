"""The coupled estimator: per-token log-probabilities of a completion under a masked-diffusion model
(docs/method.md, sections 4.1-4.2).

    from diffucoder.rl.estimator import EstimatorConfig, completion_mask, estimator_passes, token_logprobs
    mask = completion_mask(completion_ids, end_ids=[eos_id])        # up to AND including the first end
    gen = torch.Generator().manual_seed(step_seed)
    cfg = EstimatorConfig(method="coupled", pairs=1)
    passes = estimator_passes(mask, cfg, gen)                         # draw the masks once ...
    logp = token_logprobs(policy, prompt_ids, prompt_attention, completion_ids, mask, cfg, gen,
                          mask_token_id, passes=passes)               # ... reuse them for old / ref
    # logp: (B, C) float32, differentiable, 0 outside ``mask``

A dLLM gives a token's log-probability only where that token is masked. Each estimator
runs ``1 + 2 * pairs`` forward passes of ``prompt + noisy completion`` (the prompt is
never masked) and reads each pass's log-softmax at the tokens it masks:

* ``coupled`` (the paper's): one pass with the whole completion masked (weight 1), then per
  pair a ratio ``r ~ U(r_min, r_max)`` per row and one uniform ``R`` per token: the tokens
  with ``R < r`` are masked in one pass (weight ``1/r``), the rest in the other (weight
  ``1/(1-r)``), so every completion token is masked exactly once per pair;
* ``decoupled`` (ablation): the same, but the two passes of a pair draw their masks (and
  ratios) independently: a token may be masked in both, or in neither;
* ``full_mask`` (ablation): every pass masks the whole completion (deterministic).

A token's estimate is ``sum over passes of weight * logp_in_that_pass`` (over the passes
that mask it) divided by ``pairs + 1`` — for one pair ``(logp_full + w * logp_pair) / 2``,
as the paper and the released code combine them. Note the expected total weight of a
token is ``(1 + 2 * pairs) / (pairs + 1)`` (1.5 for one pair), not 1: the estimate is a
weighted sum, the same for policy, old and reference log-probs, not a normalised mean.

Draw order (for reproducing a run): per pair, ``r`` for the batch then ``R`` for every
token (``decoupled``: ``r``, ``R`` of the first pass, then of the second), all from ``generator``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from diffucoder.config import ConfigError, setting
from diffucoder.diffusion.loss import uniform
from diffucoder.errors import DiffucoderError

ESTIMATORS = ("coupled", "decoupled", "full_mask")


@dataclass
class EstimatorConfig:
    method: str = setting("coupled", choices=ESTIMATORS,
                          help="coupled: full mask + complementary pairs (the paper); decoupled: independent "
                               "masks, same compute; full_mask: every pass masks the whole completion")
    pairs: int = setting(1, min=1, help="lambda: mask pairs; each estimate costs 1 + 2 * pairs forward passes")
    r_min: float = setting(0.2, help="mask ratio r ~ U(r_min, r_max), with 0 < r_min <= r_max < 1")
    r_max: float = setting(0.8, help="upper end of the mask ratio")
    ratio: str = setting("per_row", choices=("per_row", "per_batch"),
                         help="per_row: each completion draws its own r; per_batch: one r for the whole batch "
                              "(the released code: one random.uniform per forward_process call)")
    stack_passes: bool = setting(True, help="run all passes as one stacked batch; false: one forward per pass "
                                            "(less activation memory, same numbers)")

    def validate(self) -> None:
        if self.method not in ESTIMATORS:
            raise ConfigError(f"'method': must be one of {list(ESTIMATORS)}, got {self.method!r}")
        if isinstance(self.pairs, bool) or not isinstance(self.pairs, int) or self.pairs < 1:
            raise ConfigError(f"'pairs': must be an integer >= 1, got {self.pairs!r}")
        if not 0.0 < self.r_min <= self.r_max < 1.0:
            raise ConfigError(f"'r_min'/'r_max': need 0 < r_min <= r_max < 1, got {self.r_min!r}, {self.r_max!r}")

    @property
    def num_passes(self) -> int:
        return 1 + 2 * self.pairs


class MaskPass(NamedTuple):
    masked: torch.Tensor   # (B, C) bool: the completion tokens this forward pass masks
    weight: torch.Tensor   # (B,) float32: the weight of the log-probs read at those tokens


def completion_mask(completion_ids: torch.Tensor, end_ids: Sequence[int]) -> torch.Tensor:
    """(B, C) bool: True on completion tokens up to and including the first end token of the row."""
    if completion_ids.dim() != 2:
        raise DiffucoderError(f"completion_mask: completion_ids must be (batch, length), "
                              f"got shape {tuple(completion_ids.shape)}")
    ends = torch.tensor(sorted({int(token) for token in end_ids}), dtype=completion_ids.dtype,
                        device=completion_ids.device)
    is_end = torch.isin(completion_ids, ends).long()
    ends_before = is_end.cumsum(dim=1) - is_end     # end tokens strictly before each position
    return ends_before == 0


def _ratio(batch: int, cfg: EstimatorConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(batch,) mask ratios: one draw per row, or one draw shared by the batch (``cfg.ratio``)."""
    draws = uniform((batch if cfg.ratio == "per_row" else 1,), generator, device)
    return (cfg.r_min + (cfg.r_max - cfg.r_min) * draws).expand(batch)


def _below(mask: torch.Tensor, r: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Tokens of ``mask`` whose own uniform draw falls below their row's ratio."""
    return mask & (uniform(tuple(mask.shape), generator, mask.device) < r[:, None])


def estimator_passes(mask: torch.Tensor, cfg: EstimatorConfig, generator: torch.Generator) -> list[MaskPass]:
    """The ``1 + 2 * pairs`` masks and weights of ``cfg.method`` over the positions of ``mask``; the
    rest stays visible. ``mask`` is what may be masked: the scored tokens (up to the first end
    token), or the whole completion canvas as the released code masks it (``objective.mask_span``).
    Checks ``cfg`` (once per draw; ``token_logprobs`` then checks the passes it is given)."""
    cfg.validate()
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise DiffucoderError(f"estimator_passes: mask must be a (batch, length) bool tensor, "
                              f"got {mask.dtype} of shape {tuple(mask.shape)}")
    batch, device = mask.shape[0], mask.device
    ones = torch.ones(batch, dtype=torch.float32, device=device)
    passes = [MaskPass(mask.clone(), ones)]
    for _ in range(cfg.pairs):
        if cfg.method == "full_mask":
            passes += [MaskPass(mask.clone(), ones.clone()), MaskPass(mask.clone(), ones.clone())]
        elif cfg.method == "coupled":
            r = _ratio(batch, cfg, generator, device)
            below = _below(mask, r, generator)
            passes += [MaskPass(below, 1.0 / r), MaskPass(mask & ~below, 1.0 / (1.0 - r))]
        else:  # decoupled: the second pass masks with probability 1 - r', like the coupled complement
            r_first = _ratio(batch, cfg, generator, device)
            first = _below(mask, r_first, generator)
            r_second = _ratio(batch, cfg, generator, device)
            second = mask & ~_below(mask, r_second, generator)
            passes += [MaskPass(first, 1.0 / r_first), MaskPass(second, 1.0 / (1.0 - r_second))]
    return passes


def _check_inputs(prompt_ids, prompt_attention, completion_ids, mask) -> None:
    if prompt_ids.dim() != 2 or completion_ids.dim() != 2:
        raise DiffucoderError(f"token_logprobs: prompt_ids {tuple(prompt_ids.shape)} and completion_ids "
                              f"{tuple(completion_ids.shape)} must both be (batch, length)")
    batch, prompt_len = prompt_ids.shape
    if prompt_len < 1 or completion_ids.shape[0] != batch:
        raise DiffucoderError(f"token_logprobs: need >= 1 prompt column and one completion row per prompt; got "
                              f"prompt_ids {tuple(prompt_ids.shape)}, completion_ids {tuple(completion_ids.shape)}")
    if prompt_attention.shape != prompt_ids.shape:
        raise DiffucoderError(f"token_logprobs: prompt_attention has shape {tuple(prompt_attention.shape)}, "
                              f"expected {tuple(prompt_ids.shape)}")
    if mask.shape != completion_ids.shape or mask.dtype != torch.bool:
        raise DiffucoderError(f"token_logprobs: mask must be a bool tensor shaped like completion_ids "
                              f"{tuple(completion_ids.shape)}, got {mask.dtype} {tuple(mask.shape)}")
    # Left padding keeps the last prompt column real: it predicts the first completion token.
    if not bool(prompt_attention[:, -1].bool().all()):
        raise DiffucoderError("token_logprobs: every prompt row must end in a real token (left padding, as "
                              "encode_prompts makes); a right-padded or empty prompt row was given")


def _check_passes(passes: list[MaskPass], mask: torch.Tensor, cfg: EstimatorConfig) -> None:
    if len(passes) != cfg.num_passes:
        raise DiffucoderError(f"token_logprobs: {len(passes)} passes given, but pairs={cfg.pairs} means "
                              f"{cfg.num_passes} (the estimate is divided by pairs + 1)")
    for index, one in enumerate(passes):
        if one.masked.shape != mask.shape or one.weight.shape != (mask.shape[0],):
            raise DiffucoderError(f"token_logprobs: pass {index} has masked {tuple(one.masked.shape)} and weight "
                                  f"{tuple(one.weight.shape)}; expected {tuple(mask.shape)} and ({mask.shape[0]},)")
    if bool((mask & ~passes[0].masked).any()):
        raise DiffucoderError("token_logprobs: the first pass must mask every scored token (the mask); it leaves "
                              "some visible")


def _completion_logprobs(model, prompt_ids, attention, noisy, targets) -> torch.Tensor:
    """log p(target token) at every completion position of one (possibly stacked) forward pass."""
    prompt_len, length = prompt_ids.shape[1], targets.shape[1]
    logits = model(torch.cat([prompt_ids, noisy], dim=1), attention_mask=attention).logits
    # shift_logits(logits)[:, P + i] == logits[:, P + i - 1]: slice instead of copying the full tensor.
    logits = logits[:, prompt_len - 1:prompt_len - 1 + length].float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_logprobs(model, prompt_ids: torch.Tensor, prompt_attention: torch.Tensor, completion_ids: torch.Tensor,
                   mask: torch.Tensor, cfg: EstimatorConfig, generator: torch.Generator, mask_token_id: int,
                   passes: list[MaskPass] | None = None) -> torch.Tensor:
    """(B, C) float32 per-token log-prob estimate of ``completion_ids`` given the left-padded prompt.

    Differentiable w.r.t. the model's parameters (wrap in ``torch.no_grad()`` for old/reference
    log-probs); 0 where ``mask`` (the scored tokens) is False. ``passes`` (from ``estimator_passes``)
    reuses masks already drawn, possibly over more of the completion than ``mask``; otherwise they
    are drawn from ``generator`` over ``mask``.
    """
    _check_inputs(prompt_ids, prompt_attention, completion_ids, mask)
    if passes is None:
        passes = estimator_passes(mask, cfg, generator)
    _check_passes(passes, mask, cfg)
    batch, length = completion_ids.shape
    attention = torch.cat([prompt_attention.long(), torch.ones_like(completion_ids, dtype=torch.long)], dim=1)
    noisy = [completion_ids.masked_fill(one.masked, mask_token_id) for one in passes]
    if cfg.stack_passes:
        count = len(passes)
        stacked = _completion_logprobs(model, prompt_ids.repeat(count, 1), attention.repeat(count, 1),
                                       torch.cat(noisy, dim=0), completion_ids.repeat(count, 1))
        per_pass = stacked.view(count, batch, length).unbind(0)
    else:
        per_pass = [_completion_logprobs(model, prompt_ids, attention, one, completion_ids) for one in noisy]
    total = torch.zeros(batch, length, dtype=torch.float32, device=completion_ids.device)
    for one, logp in zip(passes, per_pass):
        weight = one.weight.to(device=logp.device, dtype=torch.float32)[:, None]
        total = total + torch.where(one.masked, weight * logp, torch.zeros_like(logp))
    return torch.where(mask, total, torch.zeros_like(total)) / (cfg.pairs + 1)
