"""One denoising step: draw tokens at masked positions, score them, choose which to commit.

    from diffucoder.sampling.step import denoise_step, filter_logits, sample_tokens, step_commit
    logits = filter_logits(logits, top_p=0.95, top_k=0)          # -inf outside the nucleus
    tokens, confidence = sample_tokens(logits, temperature=0.2, top_p=0.95, top_k=0,
                                       alg="entropy", generator=g)
    counts, idle = step_commit(masked, step, steps, config)        # idle: skip the model call
    new_block, chosen, rank = denoise_step(block_logits, block, masked, counts, config, g)

``sample_tokens`` follows the reference sampler: logits / temperature (if > 0),
top-p then top-k filtering (transformers' warpers), softmax, a categorical draw
(argmax at temperature 0); the confidence is p(token) (``maskgit_plus``),
p1 - p2 (``topk_margin``) or sum p log p (``entropy``). All of it runs in
``compute_dtype``: float32 by default, or the logits' own dtype (``"model"``: bf16 for a bf16
model, as the reference sampler computes) or ``"bfloat16"`` (docs/method.md, section 3.3).
With ``threshold`` > 0 (Fast-dLLM's confidence-threshold parallel decoding) a step commits the
schedule's count or every masked position whose drawn token has probability >= threshold,
whichever is more, and at least one (docs/method.md, section 3.6).
"""
from __future__ import annotations

import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from diffucoder.sampling.config import SamplingConfig
from diffucoder.sampling.schedule import commit_counts, unmask_fraction

_ENTROPY_EPS = 1e-10  # as the reference: log(p + 1e-10) keeps filtered (p = 0) tokens finite


def filter_logits(logits: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Top-p (nucleus, kept mass reaches ``top_p``) then top-k filtering; removed tokens get -inf."""
    if top_p < 1.0:
        logits = TopPLogitsWarper(top_p=top_p)(None, logits)
    if top_k > 0:
        logits = TopKLogitsWarper(top_k=min(top_k, logits.shape[-1]))(None, logits)
    return logits


def sample_tokens(logits: torch.Tensor, *, temperature: float, top_p: float, top_k: int, alg: str,
                  generator: torch.Generator | None, compute_dtype: str = "float32"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens drawn from ``logits`` (R, V) and their confidence (R,) under ``alg``, computed in
    ``compute_dtype`` (``"float32"``, ``"bfloat16"``, or ``"model"``: the logits' dtype)."""
    tokens, confidence, _ = draw_tokens(logits, temperature=temperature, top_p=top_p, top_k=top_k, alg=alg,
                                        generator=generator, compute_dtype=compute_dtype)
    return tokens, confidence


def draw_tokens(logits: torch.Tensor, *, temperature: float, top_p: float, top_k: int, alg: str,
                generator: torch.Generator | None, compute_dtype: str = "float32"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sample_tokens`` and each drawn token's probability (R,), which the threshold rule reads."""
    logits = logits.to(logits.dtype if compute_dtype == "model" else getattr(torch, compute_dtype))
    if temperature > 0:
        logits = logits / temperature
    probs = torch.softmax(filter_logits(logits, top_p, top_k), dim=-1)
    if temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    else:
        tokens = probs.argmax(dim=-1)
    probability = probs.gather(-1, tokens[:, None]).squeeze(-1)
    if alg == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        confidence = top2[:, 0] - top2[:, 1]
    elif alg == "entropy":
        confidence = (probs * torch.log(probs + _ENTROPY_EPS)).sum(dim=-1)
    else:  # maskgit_plus (and origin, which ignores it)
        confidence = probability
    return tokens, confidence, probability


def choose_positions(confidence: torch.Tensor, counts: torch.Tensor, alg_temp: float,
                     generator: torch.Generator | None, first: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``counts[b]`` positions of row ``b`` to commit, from ``confidence`` (B, N; -inf = not eligible);
    positions in ``first`` (B, N bool, the threshold rule's) come before all others.

    alg_temp == 0: the most confident (ties: left-most first, so the choice never depends on
    how a kernel orders equal values). alg_temp > 0: drawn without replacement from
    softmax(confidence / alg_temp), via the Gumbel-top-k trick (same distribution as
    sequential draws, and no failure when tiny probabilities underflow to 0).
    Returns ``chosen`` (B, N) bool and ``rank`` (B, N): order of choice within the step, -1 if not chosen.
    """
    scores = confidence
    if alg_temp > 0:
        uniform = torch.rand(confidence.shape, generator=generator, device=confidence.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        scores = confidence / alg_temp + gumbel
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    if first is not None:   # a stable sort on the flag keeps the score order within each group
        order = order.gather(1, torch.sort(first.gather(1, order).byte(), dim=-1, descending=True,
                                           stable=True).indices)
    take = torch.arange(order.shape[1], device=order.device)[None, :] < counts[:, None]
    rank = torch.full_like(order, -1)
    rank.scatter_(1, order, torch.where(take, torch.arange(order.shape[1], device=order.device)[None, :], -1))
    return rank >= 0, rank


def step_commit(masked: torch.Tensor, step: int, steps: int, config: SamplingConfig
                ) -> tuple[torch.Tensor | float, bool]:
    """What the schedule commits at ``step`` of ``steps`` given ``masked`` (B, N): per-row counts, or
    the share ``1 - s/t`` for ``origin``; and whether the step is idle (commits nothing: no model call).
    Under the threshold rule a step commits at least one position while any is masked."""
    if config.alg == "origin":
        return unmask_fraction(step, steps, config.eps), not bool(masked.any())
    counts = commit_counts(masked.sum(1), step, steps, config.eps)
    return counts, not bool((masked.any() if config.threshold > 0 else counts.any()))


def denoise_step(logits: torch.Tensor, block: torch.Tensor, masked: torch.Tensor, commit: torch.Tensor | float,
                 config: SamplingConfig, generator: torch.Generator | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Commit tokens into ``block`` (B, N) at masked positions; ``logits`` (B, N, V) are already shifted.

    ``commit`` is the per-row count (B,) for confidence algorithms, or the probability ``1 - s/t``
    for ``origin``. With ``config.threshold`` the count grows to the positions whose token has that
    probability (at most ``max_per_step`` of them), and to at least one; those are taken first.
    Returns the new block, the committed positions (B, N) and their rank in the step.
    """
    sampling = dict(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k, alg=config.alg,
                    generator=generator, compute_dtype=config.compute_dtype)
    block = block.clone()
    if config.alg == "origin":
        draw = torch.rand(masked.shape, generator=generator, device=masked.device)
        chosen = masked & (draw < float(commit))
        if chosen.any():
            block[chosen], _ = sample_tokens(logits[chosen], **sampling)
        # Independent draws have no order: rank committed positions left to right.
        rank = torch.where(chosen, chosen.long().cumsum(1) - 1, -1)
        return block, chosen, rank
    tokens, confidence, probability = draw_tokens(logits[masked], **sampling)
    full_confidence = torch.full(masked.shape, -torch.inf, dtype=confidence.dtype, device=masked.device)
    full_confidence[masked] = confidence
    proposal = block.clone()
    proposal[masked] = tokens
    confident = None
    if config.threshold > 0:
        confident = torch.zeros_like(masked)
        confident[masked] = probability >= config.threshold
        extra = confident.sum(1)
        if config.max_per_step:
            extra = extra.clamp(max=config.max_per_step)
        commit = torch.maximum(commit, extra).clamp(min=1).minimum(masked.sum(1))   # at least one, if any left
    chosen, rank = choose_positions(full_confidence, commit, config.alg_temp, generator, first=confident)
    chosen &= masked  # counts never exceed a row's masks; this only guards the invariant
    block[chosen] = proposal[chosen]
    return block, chosen, rank.masked_fill(~chosen, -1)
