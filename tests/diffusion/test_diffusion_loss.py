import math

import pytest
import torch

from diffucoder.diffusion import forward_process, masked_diffusion_loss, scorable_mask
from diffucoder.errors import DiffucoderError

MASK, VOCAB = 31, 32


def fixed_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 30, (4, 10), generator=g)
    attention = torch.ones(4, 10, dtype=torch.long)
    attention[1, :3] = 0  # left padding
    attention[2, 7:] = 0  # right padding
    eligible = scorable_mask(torch.ones_like(tokens, dtype=torch.bool), attention)
    noisy, masked, t = forward_process(tokens, eligible, MASK, eps=1e-3, generator=g)
    logits = torch.randn(4, 10, VOCAB, generator=g)
    return tokens, attention, eligible, masked, t, logits


def reference_loss(logits, x0, masked, t, eligible, normaliser):
    """docs/method.md 2.2 written as loops: sum over masked (1/t) CE(logit at i-1, token at i) / N."""
    batch, length = x0.shape
    per_row = [0.0] * batch
    for b in range(batch):
        for i in range(length):
            if masked[b, i]:
                log_probs = torch.log_softmax(logits[b, i - 1].double(), dim=-1)
                per_row[b] += -log_probs[x0[b, i]].item() / t[b].item()
    total = sum(per_row)
    if normaliser == "tokens":
        return total / eligible.sum().item()
    if normaliser == "masked":
        return total / masked.sum().item()
    if normaliser == "batch":
        return total / (batch * (length - 1))
    if normaliser == "sequence":
        return sum(per_row[b] / max(eligible[b].sum().item(), 1) for b in range(batch)) / batch
    return total / normaliser


@pytest.mark.parametrize("normaliser", ["tokens", "masked", "batch", "sequence", 123.0])
def test_vectorised_loss_matches_the_loop_reference(normaliser):
    tokens, _, eligible, masked, t, logits = fixed_batch()
    assert masked.sum() > 5
    got = masked_diffusion_loss(logits, tokens, masked, t, eligible=eligible, normaliser=normaliser)
    assert got.item() == pytest.approx(reference_loss(logits, tokens, masked, t, eligible, normaliser), rel=1e-5)


def test_only_the_logit_before_a_masked_token_gets_gradient():
    tokens, _, eligible, masked, t, logits = fixed_batch(seed=1)
    logits.requires_grad_(True)
    masked_diffusion_loss(logits, tokens, masked, t, eligible=eligible).backward()
    touched = logits.grad.abs().sum(-1) > 0
    expected = torch.zeros_like(masked)
    expected[:, :-1] = masked[:, 1:]
    assert torch.equal(touched, expected)


def test_uniform_predictor_scores_log_vocab_in_expectation():
    """With the 1/t weight and the eligible-token normaliser, E[loss] = mean CE = log V."""
    rows, length, vocab = 20000, 33, 8
    tokens = torch.zeros(rows, length, dtype=torch.long)
    eligible = scorable_mask(torch.ones_like(tokens, dtype=torch.bool))
    _, masked, t = forward_process(tokens, eligible, 7, generator=torch.Generator().manual_seed(0))
    logits = torch.zeros(rows, length, vocab)
    loss = masked_diffusion_loss(logits, tokens, masked, t, eligible=eligible)
    assert loss.item() == pytest.approx(math.log(vocab), rel=0.02)


def test_scorable_mask_drops_positions_with_no_real_predictor():
    maskable = torch.ones(3, 5, dtype=torch.bool)
    attention = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert scorable_mask(maskable, attention).int().tolist() == [
        [0, 1, 1, 1, 1],   # position 0 has no predecessor
        [0, 0, 0, 1, 1],   # first real token follows a pad
        [0, 1, 1, 0, 0],   # pads are never eligible
    ]
    assert scorable_mask(maskable)[:, 0].sum() == 0


def test_masking_position_zero_or_missing_eligible_is_an_error():
    tokens, _, eligible, masked, t, logits = fixed_batch()
    bad = masked.clone()
    bad[0, 0] = True
    with pytest.raises(DiffucoderError, match="position 0"):
        masked_diffusion_loss(logits, tokens, bad, t, eligible=eligible)
    with pytest.raises(DiffucoderError, match="needs eligible"):
        masked_diffusion_loss(logits, tokens, masked, t)
    with pytest.raises(DiffucoderError, match="normaliser"):
        masked_diffusion_loss(logits, tokens, masked, t, eligible=eligible, normaliser="mean")
    with pytest.raises(DiffucoderError, match="do not agree"):
        masked_diffusion_loss(logits[:, :5], tokens, masked, t, eligible=eligible)
