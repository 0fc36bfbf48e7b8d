"""The masked-diffusion training loss, end to end: noise, score, anneal, augment (docs/method.md, section 2).

    from diffucoder.diffusion.loss import DiffusionLossConfig, diffusion_loss
    cfg = DiffusionLossConfig(anneal_steps=10_000, truncate_prob=0.01, prefix_prob=0.01)  # adaptation
    out = diffusion_loss(model, tokens, attention_mask=pad_mask, step=step, config=cfg,
                         mask_token_id=151666, pad_token_id=151643, generator=g)
    out.loss.backward()
    # SFT: prompt_mask=batch.prompt_mask (the prompt is never masked nor scored)

Read top to bottom, one batch goes through:

1. **noise** (``forward_process``): one level per sequence, ``t = (1 - eps) u + eps`` with
   ``u ~ U(0, 1)``; each maskable token becomes the mask token with probability ``t``. Draw
   order (for reproducing a run): ``u`` for the batch, then one ``U(0, 1)`` per token, both from
   ``generator``.
2. **score** (``masked_diffusion_loss``): ``sum over masked of CE(logits[b, i - 1], x0[b, i]) / t_b``
   divided by a normaliser ``N``. Targets are shifted: the token at ``i`` is predicted by the logit
   at ``i - 1``, so position 0 (and a token right after a pad) can never be scored; ``scorable_mask``
   keeps them out. ``N``: ``"tokens"`` (default) the loss-eligible tokens of the batch, an unbiased
   per-token NELBO estimate; ``"masked"`` the masked tokens (not an ELBO, lower variance;
   DiffuLLaMA's adaptation); ``"sequence"`` each row's sum over its own eligible count, then the mean
   over rows (LLaDA's SFT); ``"batch"`` ``B * (L - 1)`` (LLaDA's pre-training); or a fixed number.
3. **anneal** (``annealed_attention_mask``, adaptation only): for the first ``anneal_steps`` steps
   the attention is ``causal(i >= j) OR Bernoulli(ratio)``, ``ratio = min(1, (step + 1) / anneal_steps)``,
   AND-ed with the padding mask; pad query rows attend to themselves only (never an empty row).
4. **augment** (adaptation only): disjoint row sets, ``truncate_prob`` of rows cut to a random
   length (the rest becomes padding, so shapes never change), ``prefix_prob`` keep a random clean
   prefix that is never masked nor scored.

Every random draw takes a ``torch.Generator`` so a run is reproducible. ``DiffusionLossConfig``
is the typed ``diffusion`` section of the pretrain / SFT recipe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from diffucoder.config import ConfigError, setting
from diffucoder.errors import DiffucoderError
from diffucoder.model.dream import position_ids_from_mask


# -- The forward (noising) process -------------------------------------------------------------

class NoisedBatch(NamedTuple):
    noisy: torch.Tensor   # (B, L) tokens with masked positions set to the mask id
    masked: torch.Tensor  # (B, L) bool, True where a token was replaced
    t: torch.Tensor       # (B,) float32 noise level of each sequence, in [eps, 1]


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``U(0, 1)`` float32 draws from ``generator`` (on its own device), moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def sample_t(batch_size: int, eps: float = 1e-3, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-sequence noise levels ``t = (1 - eps) * u + eps``, shape ``(batch_size,)``."""
    if not 0.0 < eps < 1.0:
        raise DiffucoderError(f"'eps': must be in (0, 1), got {eps}")
    u = uniform((batch_size,), generator, torch.device(device))
    return (1.0 - eps) * u + eps


def forward_process(tokens: torch.Tensor, maskable: torch.Tensor, mask_token_id: int, eps: float = 1e-3,
                    generator: torch.Generator | None = None, t: torch.Tensor | None = None) -> NoisedBatch:
    """Mask each ``maskable`` token of ``tokens`` (B, L) with its sequence's probability ``t``.

    Pass ``t`` (shape ``(B,)``) to fix the noise levels instead of sampling them.
    """
    if tokens.dim() != 2 or maskable.shape != tokens.shape:
        raise DiffucoderError(f"forward_process: tokens {tuple(tokens.shape)} and maskable "
                              f"{tuple(maskable.shape)} must both be (batch, length)")
    batch, length = tokens.shape
    if t is None:
        t = sample_t(batch, eps, generator, tokens.device)
    elif t.shape != (batch,):
        raise DiffucoderError(f"forward_process: t has shape {tuple(t.shape)}, expected ({batch},)")
    t = t.to(device=tokens.device, dtype=torch.float32)
    masked = maskable.bool() & (uniform((batch, length), generator, tokens.device) < t[:, None])
    noisy = tokens.masked_fill(masked, mask_token_id)
    return NoisedBatch(noisy=noisy, masked=masked, t=t)


# -- The loss with shifted targets and its normalisers -----------------------------------------

NORMALISERS = ("tokens", "masked", "sequence", "batch")


def scorable_mask(maskable: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``maskable`` minus the tokens the shifted head cannot predict.

    A token at ``i`` is scorable if it is a real token, ``i >= 1`` and the token at
    ``i - 1`` (whose logit predicts it) is real too.
    """
    scorable = maskable.bool().clone()
    if attention_mask is not None:
        real = attention_mask.bool()
        scorable &= real
        scorable[:, 1:] &= real[:, :-1]
    scorable[:, 0] = False
    return scorable


def masked_diffusion_loss(logits: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor, t: torch.Tensor, *,
                          eligible: torch.Tensor | None = None,
                          normaliser: str | float = "tokens") -> torch.Tensor:
    """``sum over masked of CE(shifted logits, x0) / t``, divided by the chosen normaliser.

    ``logits``: (B, L, V) unshifted model output; ``x0``: (B, L) clean tokens;
    ``masked``: (B, L) bool; ``t``: (B,) noise levels; ``eligible``: (B, L) bool
    loss-eligible tokens (needed by the ``"tokens"`` and ``"sequence"`` normalisers).
    """
    batch, length = x0.shape
    if logits.shape[:2] != (batch, length) or masked.shape != (batch, length) or t.shape != (batch,):
        raise DiffucoderError(f"masked_diffusion_loss: shapes logits {tuple(logits.shape)}, x0 {tuple(x0.shape)}, "
                              f"masked {tuple(masked.shape)}, t {tuple(t.shape)} do not agree")
    if bool(masked[:, 0].any()):
        raise DiffucoderError("masked_diffusion_loss: position 0 is masked but nothing precedes it to predict "
                              "it (shifted logits); build maskable with scorable_mask")
    targets_masked = masked[:, 1:].bool()
    predicted = logits[:, :-1][targets_masked]                      # (M, V) logits of masked targets only
    targets = x0[:, 1:][targets_masked]                             # (M,)
    weights = (1.0 / t.float())[:, None].expand(batch, length - 1)[targets_masked]
    per_token = F.cross_entropy(predicted.float(), targets, reduction="none") * weights
    if normaliser == "sequence":
        row = torch.arange(batch, device=x0.device)[:, None].expand(batch, length - 1)[targets_masked]
        sums = torch.zeros(batch, device=per_token.device, dtype=per_token.dtype).index_add(0, row, per_token)
        counts = _eligible(eligible, normaliser)[:, 1:].sum(dim=1).clamp(min=1)
        return (sums / counts).mean()
    return per_token.sum() / _denominator(normaliser, eligible, targets_masked, batch, length)


def _eligible(eligible: torch.Tensor | None, normaliser: str) -> torch.Tensor:
    if eligible is None:
        raise DiffucoderError(f"masked_diffusion_loss: normaliser {normaliser!r} needs eligible= "
                              f"(the loss-eligible tokens, e.g. scorable_mask(maskable, attention_mask))")
    return eligible.bool()


def _denominator(normaliser: str | float, eligible: torch.Tensor | None, targets_masked: torch.Tensor,
                 batch: int, length: int) -> torch.Tensor | float:
    if isinstance(normaliser, (int, float)) and not isinstance(normaliser, bool):
        if normaliser <= 0:
            raise DiffucoderError(f"'normaliser': a fixed denominator must be > 0, got {normaliser}")
        return float(normaliser)
    if normaliser == "tokens":
        return _eligible(eligible, normaliser)[:, 1:].sum().clamp(min=1)
    if normaliser == "masked":
        return targets_masked.sum().clamp(min=1)
    if normaliser == "batch":
        return float(batch * (length - 1))
    raise DiffucoderError(f"'normaliser': must be one of {NORMALISERS} or a positive number, got {normaliser!r}")


# -- Attention-mask annealing (adaptation) -----------------------------------------------------

def anneal_ratio(step: int, anneal_steps: int) -> float:
    """Share of non-causal pairs opened at ``step``: ``min(1, (step + 1) / anneal_steps)``."""
    if step < 0:
        raise DiffucoderError(f"'step': must be >= 0, got {step}")
    if anneal_steps <= 0:
        return 1.0  # annealing disabled: fully bidirectional from the start
    return min(1.0, (step + 1) / anneal_steps)


def annealed_attention_mask(seq_len: int, step: int, anneal_steps: int, generator: torch.Generator | None = None,
                            *, batch_size: int = 1, attention_mask: torch.Tensor | None = None,
                            per_sample: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(B, 1, L, L)`` mask (True = may attend) for training step ``step``.

    ``attention_mask``: optional (B, L) padding mask (sets ``batch_size`` and ``device``).
    ``per_sample``: draw a Bernoulli matrix per sequence (else one shared by the batch).
    """
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[1] != seq_len:
            raise DiffucoderError(f"annealed_attention_mask: attention_mask has shape "
                                  f"{tuple(attention_mask.shape)}, expected (batch, {seq_len})")
        batch_size, device = attention_mask.shape[0], attention_mask.device
    device = torch.device(device or "cpu")
    ratio = anneal_ratio(step, anneal_steps)
    positions = torch.arange(seq_len, device=device)
    causal = positions[:, None] >= positions[None, :]
    if ratio >= 1.0:
        mask = torch.ones(batch_size, 1, seq_len, seq_len, dtype=torch.bool, device=device)
    else:
        draws = batch_size if per_sample else 1
        opened = uniform((draws, 1, seq_len, seq_len), generator, device) < ratio
        mask = (causal | opened).expand(batch_size, 1, seq_len, seq_len)
    if attention_mask is not None:
        real = attention_mask.bool()
        mask = mask & real[:, None, None, :] & real[:, None, :, None]
    return mask | torch.eye(seq_len, dtype=torch.bool, device=device)


# -- Random truncation and clean prefixes (adaptation) -----------------------------------------

def choose_augmented_rows(batch_size: int, truncate_prob: float = 0.01, prefix_prob: float = 0.01,
                          generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint boolean row selections ``(truncate, clean_prefix)``, shape ``(batch_size,)`` each."""
    if truncate_prob < 0 or prefix_prob < 0 or truncate_prob + prefix_prob > 1:
        raise DiffucoderError(f"'truncate_prob'/'prefix_prob': need probabilities >= 0 with sum <= 1, "
                              f"got {truncate_prob} and {prefix_prob}")
    u = uniform((batch_size,), generator, torch.device(device))
    return u < truncate_prob, (u >= truncate_prob) & (u < truncate_prob + prefix_prob)


def _real_rank(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token index among the row's real tokens (0-based) and each row's real-token count."""
    real = attention_mask.bool()
    return real.long().cumsum(dim=1) - 1, real.sum(dim=1)


def _uniform_int(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One integer uniform in ``[low, high]`` (inclusive) per row."""
    u = uniform(tuple(low.shape), generator, low.device)
    span = (high - low + 1).clamp(min=1)
    return low + (u * span).long().clamp(max=span - 1)


def random_truncation(tokens: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor, pad_token_id: int,
                      generator: torch.Generator | None = None,
                      min_length: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each selected row to ``n ~ U{min_length .. real length}`` real tokens.

    Returns new ``(tokens, attention_mask)``; unselected rows are unchanged.
    ``min_length`` defaults to 2 so a truncated row still has a token to score.
    """
    if tokens.shape != attention_mask.shape or rows.shape != tokens.shape[:1]:
        raise DiffucoderError(f"random_truncation: tokens {tuple(tokens.shape)}, attention_mask "
                              f"{tuple(attention_mask.shape)} and rows {tuple(rows.shape)} do not agree")
    rank, length = _real_rank(attention_mask)
    keep = _uniform_int(torch.full_like(length, min_length).minimum(length), length, generator)
    cut = rows.to(tokens.device)[:, None] & attention_mask.bool() & (rank >= keep[:, None])
    return tokens.masked_fill(cut, pad_token_id), attention_mask.masked_fill(cut, 0)


def clean_prefix(maskable: torch.Tensor, attention_mask: torch.Tensor | None, rows: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Make the first ``n ~ U{1 .. real length - 1}`` real tokens of each selected row un-maskable.

    At least one real token stays maskable, so the row still has something to learn.
    """
    real = attention_mask if attention_mask is not None else torch.ones_like(maskable, dtype=torch.bool)
    if maskable.shape != real.shape or rows.shape != maskable.shape[:1]:
        raise DiffucoderError(f"clean_prefix: maskable {tuple(maskable.shape)}, attention_mask "
                              f"{tuple(real.shape)} and rows {tuple(rows.shape)} do not agree")
    rank, length = _real_rank(real)
    prefix = _uniform_int(torch.ones_like(length), (length - 1).clamp(min=0), generator)
    prefix = torch.where(length >= 2, prefix, torch.zeros_like(prefix))
    frozen = rows.to(maskable.device)[:, None] & real.bool() & (rank < prefix[:, None])
    return maskable.bool() & ~frozen


# -- The whole loss of one batch ---------------------------------------------------------------

@dataclass
class DiffusionLossConfig:
    eps: float = setting(1e-3, min=1e-6, max=0.5, help="t = (1 - eps) u + eps: lowest noise level")
    normaliser: str = setting("tokens", choices=NORMALISERS,
                              help="loss denominator: tokens = loss-eligible tokens in the batch")
    anneal_steps: int = setting(0, min=0, help="attention-mask annealing steps, causal -> bidirectional "
                                               "(10000 in the adaptation recipe; 0 = off)")
    truncate_prob: float = setting(0.0, min=0.0, max=1.0,
                                   help="share of samples truncated to a random length (0.01 in adaptation)")
    prefix_prob: float = setting(0.0, min=0.0, max=1.0,
                                 help="share of samples keeping a random clean prefix (0.01 in adaptation)")
    ar_warmup: float = setting(0.0, min=0.0, max=0.95,
                               help="share of the run's first steps trained autoregressively (autoregressive_loss: "
                                    "an AR warm start for a model trained from scratch, what the 7B recipe gets from "
                                    "its AR base), then masked diffusion; annealing counts from the switch")

    def validate(self) -> None:
        if self.truncate_prob + self.prefix_prob > 1.0:
            raise ConfigError(f"'prefix_prob': truncate_prob + prefix_prob must be <= 1, "
                              f"got {self.truncate_prob} + {self.prefix_prob}")


def causal_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, 1, L, L)``: each real token sees the real tokens up to itself (pad rows: themselves)."""
    length, device = attention_mask.shape[1], attention_mask.device
    positions = torch.arange(length, device=device)
    real = attention_mask.bool()
    mask = (positions[:, None] >= positions[None, :]) & real[:, None, None, :] & real[:, None, :, None]
    return mask | torch.eye(length, dtype=torch.bool, device=device)


def autoregressive_loss(model: torch.nn.Module, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        prompt_mask: torch.Tensor | None = None) -> "DiffusionLossOutput":
    """Next-token cross-entropy under a causal mask, over the tokens the diffusion loss could score
    (SFT: the answer and its fill, never the prompt): the ``ar_warmup`` part of a run. The same
    shifted head predicts token ``i`` from position ``i - 1``, so the warm-started model is the one
    the diffusion steps continue."""
    if attention_mask is None:
        attention_mask = torch.ones_like(tokens)
    maskable = ~prompt_mask.bool() if prompt_mask is not None else torch.ones_like(tokens, dtype=torch.bool)
    scored = scorable_mask(maskable, attention_mask)
    logits = model(tokens, attention_mask=causal_attention_mask(attention_mask),
                   position_ids=position_ids_from_mask(attention_mask)).logits
    targets = scored[:, 1:]
    loss = F.cross_entropy(logits[:, :-1][targets].float(), tokens[:, 1:][targets])
    count = int(scored.sum())
    return DiffusionLossOutput(loss=loss, num_eligible=count, num_masked=count, mean_t=0.0, anneal_ratio=0.0)


class DiffusionLossOutput(NamedTuple):
    loss: torch.Tensor          # scalar, differentiable
    num_eligible: int           # loss-eligible tokens in the batch
    num_masked: int             # tokens masked (and scored)
    mean_t: float               # mean noise level of the batch
    anneal_ratio: float         # share of non-causal attention pairs opened (1 = bidirectional)


def diffusion_loss(model: torch.nn.Module, tokens: torch.Tensor, *, mask_token_id: int, pad_token_id: int,
                   config: DiffusionLossConfig | None = None, attention_mask: torch.Tensor | None = None,
                   prompt_mask: torch.Tensor | None = None, step: int = 0,
                   generator: torch.Generator | None = None) -> DiffusionLossOutput:
    """The masked-diffusion loss of ``model`` on clean ``tokens`` (B, L) at training ``step``."""
    config = config or DiffusionLossConfig()
    if attention_mask is None:
        attention_mask = torch.ones_like(tokens)
    if config.truncate_prob > 0 or config.prefix_prob > 0:
        truncate_rows, prefix_rows = choose_augmented_rows(tokens.shape[0], config.truncate_prob,
                                                           config.prefix_prob, generator, tokens.device)
        tokens, attention_mask = random_truncation(tokens, attention_mask, truncate_rows, pad_token_id, generator)
    maskable = ~prompt_mask.bool() if prompt_mask is not None else torch.ones_like(tokens, dtype=torch.bool)
    maskable = scorable_mask(maskable, attention_mask)
    if config.prefix_prob > 0:
        maskable = clean_prefix(maskable, attention_mask, prefix_rows, generator)
    noisy, masked, t = forward_process(tokens, maskable, mask_token_id, config.eps, generator)
    ratio = anneal_ratio(step, config.anneal_steps)
    if ratio < 1.0:
        attention = annealed_attention_mask(tokens.shape[1], step, config.anneal_steps, generator,
                                            attention_mask=attention_mask)
        logits = model(noisy, attention_mask=attention,
                       position_ids=position_ids_from_mask(attention_mask)).logits
    else:
        logits = model(noisy, attention_mask=attention_mask).logits
    loss = masked_diffusion_loss(logits, tokens, masked, t, eligible=maskable, normaliser=config.normaliser)
    return DiffusionLossOutput(loss=loss, num_eligible=int(maskable.sum()), num_masked=int(masked.sum()),
                               mean_t=float(t.mean()), anneal_ratio=ratio)
