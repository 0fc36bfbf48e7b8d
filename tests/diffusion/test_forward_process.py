import pytest
import torch

from diffucoder.diffusion import forward_process, sample_t
from diffucoder.errors import DiffucoderError

MASK = 99


def test_matches_method_formula_on_a_fixed_seed():
    tokens = torch.randint(0, 90, (5, 12), generator=torch.Generator().manual_seed(1))
    maskable = torch.rand(5, 12, generator=torch.Generator().manual_seed(2)) < 0.7
    noisy, masked, t = forward_process(tokens, maskable, MASK, eps=1e-3, generator=torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)  # docs/method.md 2.1, written out
    u = torch.rand(5, generator=g)
    expected_t = (1 - 1e-3) * u + 1e-3
    draws = torch.rand(5, 12, generator=g)
    for b in range(5):
        assert t[b].item() == pytest.approx(expected_t[b].item())
        for i in range(12):
            replace = bool(maskable[b, i]) and draws[b, i].item() < expected_t[b].item()
            assert bool(masked[b, i]) == replace
            assert noisy[b, i].item() == (MASK if replace else tokens[b, i].item())


def test_masking_rate_follows_t_and_respects_maskable():
    rows, length = 4000, 64
    tokens = torch.zeros(rows, length, dtype=torch.long)
    maskable = torch.ones(rows, length, dtype=torch.bool)
    maskable[:, :8] = False
    noisy, masked, t = forward_process(tokens, maskable, MASK, generator=torch.Generator().manual_seed(0))
    assert not masked[:, :8].any() and (noisy[:, :8] == 0).all()
    assert t.min() >= 1e-3 and t.max() <= 1.0
    assert abs(t.mean().item() - 0.5) < 0.02
    rate = masked[:, 8:].float().mean(dim=1)
    assert torch.corrcoef(torch.stack([rate, t]))[0, 1] > 0.95          # one t per sequence
    assert (rate - t).abs().mean() < 0.06                              # masked with probability t
    assert torch.equal(noisy == MASK, masked)


def test_generator_makes_it_reproducible_and_fixed_t_is_used():
    tokens = torch.arange(40).reshape(2, 20)
    maskable = torch.ones_like(tokens, dtype=torch.bool)
    first = forward_process(tokens, maskable, MASK, generator=torch.Generator().manual_seed(5))
    again = forward_process(tokens, maskable, MASK, generator=torch.Generator().manual_seed(5))
    other = forward_process(tokens, maskable, MASK, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first.noisy, again.noisy) and torch.equal(first.t, again.t)
    assert not torch.equal(first.t, other.t)
    everything = forward_process(tokens, maskable, MASK, t=torch.ones(2), generator=torch.Generator())
    assert everything.masked.all()


def test_bad_input():
    with pytest.raises(DiffucoderError, match="eps"):
        sample_t(3, eps=0.0)
    with pytest.raises(DiffucoderError, match="maskable"):
        forward_process(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool), MASK)
    with pytest.raises(DiffucoderError, match="t has shape"):
        forward_process(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.bool), MASK,
                        t=torch.ones(3))
