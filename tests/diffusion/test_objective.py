import pytest
import torch

from diffucoder.config import ConfigError, load_config
from diffucoder.diffusion import (DiffusionLossConfig, diffusion_loss, forward_process, masked_diffusion_loss,
                                  scorable_mask)
from diffucoder.diffusion.loss import autoregressive_loss
from diffucoder.model import build_config, build_model

VOCAB, MASK, PAD = 64, 63, 61


def micro_model(seed: int = 0):
    cfg = build_config("tiny", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2)
    return build_model(cfg, seed=seed)


def padded_batch():
    tokens = torch.randint(0, 60, (3, 16), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(tokens)
    attention[0, :4] = 0
    return tokens.masked_fill(attention == 0, PAD), attention


def test_plain_objective_is_the_composition_of_its_parts():
    model = micro_model().eval()
    tokens, attention = padded_batch()
    out = diffusion_loss(model, tokens, attention_mask=attention, mask_token_id=MASK, pad_token_id=PAD,
                         generator=torch.Generator().manual_seed(4))
    eligible = scorable_mask(torch.ones_like(tokens, dtype=torch.bool), attention)
    noisy, masked, t = forward_process(tokens, eligible, MASK, 1e-3, torch.Generator().manual_seed(4))
    expected = masked_diffusion_loss(model(noisy, attention_mask=attention).logits, tokens, masked, t,
                                     eligible=eligible)
    torch.testing.assert_close(out.loss, expected)
    assert out.num_eligible == int(eligible.sum()) and out.num_masked == int(masked.sum())
    assert out.anneal_ratio == 1.0


def test_annealing_passes_a_4d_mask_and_mask_position_ids():
    model = micro_model()
    calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    tokens, attention = padded_batch()
    cfg = DiffusionLossConfig(anneal_steps=100)
    out = diffusion_loss(model, tokens, attention_mask=attention, mask_token_id=MASK, pad_token_id=PAD,
                         config=cfg, step=9, generator=torch.Generator().manual_seed(0))
    assert out.anneal_ratio == pytest.approx(0.1)
    mask = calls[-1]["attention_mask"]
    assert mask.shape == (3, 1, 16, 16) and mask.dtype == torch.bool
    assert calls[-1]["position_ids"][0].tolist() == [0, 0, 0, 0] + list(range(12))
    diffusion_loss(model, tokens, attention_mask=attention, mask_token_id=MASK, pad_token_id=PAD,
                   config=cfg, step=500, generator=torch.Generator())
    assert calls[-1]["attention_mask"].dim() == 2  # annealing over: the padding mask alone


def held_out_loss(model, tokens) -> float:
    """The loss at a fixed t = 0.5 over fixed masks: a low-variance yardstick."""
    eligible = scorable_mask(torch.ones_like(tokens, dtype=torch.bool))
    total = 0.0
    with torch.no_grad():
        for seed in range(8):
            noisy, masked, t = forward_process(tokens, eligible, MASK, t=torch.full((tokens.shape[0],), 0.5),
                                               generator=torch.Generator().manual_seed(1000 + seed))
            total += masked_diffusion_loss(model(noisy).logits, tokens, masked, t, eligible=eligible).item()
    return total / 8


def test_training_with_annealing_and_augmentations_learns():
    model = micro_model()
    tokens = (torch.arange(16) + 7 * torch.arange(4)[:, None]) % 60  # learnable: each token is its left + 1
    cfg = DiffusionLossConfig(anneal_steps=40, truncate_prob=0.2, prefix_prob=0.2)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = held_out_loss(model, tokens)
    for step in range(100):
        out = diffusion_loss(model, tokens, attention_mask=torch.ones_like(tokens), mask_token_id=MASK,
                             pad_token_id=PAD, config=cfg, step=step, generator=torch.Generator().manual_seed(step))
        assert torch.isfinite(out.loss)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    assert held_out_loss(model, tokens) < 0.8 * before


def test_config_section_loads_and_validates(tmp_path):
    recipe = tmp_path / "loss.yaml"
    recipe.write_text("anneal_steps: 10000\ntruncate_prob: 0.01\nprefix_prob: 0.01\n")
    cfg = load_config(DiffusionLossConfig, recipe, ["normaliser=masked"])
    assert (cfg.anneal_steps, cfg.truncate_prob, cfg.normaliser) == (10000, 0.01, "masked")
    with pytest.raises(ConfigError, match="normaliser"):
        load_config(DiffusionLossConfig, None, ["normaliser=mean"])
    with pytest.raises(ConfigError, match="prefix_prob"):
        load_config(DiffusionLossConfig, None, ["truncate_prob=0.6", "prefix_prob=0.6"])


def test_autoregressive_loss_scores_every_answer_token_on_its_causal_prefix():
    model = micro_model().eval()
    tokens, attention = padded_batch()
    prompt = torch.zeros_like(tokens, dtype=torch.bool)
    prompt[:, :6] = True
    out = autoregressive_loss(model, tokens, attention, prompt)
    # Reference written apart: a per-row loop over the causal prefix of each real, non-prompt target.
    total, count = 0.0, 0
    for row in range(tokens.shape[0]):
        real = attention[row].nonzero().flatten().tolist()
        for i in real:
            if i == 0 or prompt[row, i] or not attention[row, i - 1]:
                continue
            seen = torch.tensor([j for j in real if j <= i - 1])
            causal = torch.ones(len(seen), len(seen), dtype=torch.bool).tril()[None, None]
            with torch.no_grad():
                logits = model(tokens[row, seen][None], attention_mask=causal,
                               position_ids=torch.arange(len(seen))[None]).logits[0, -1]
            total += float(torch.nn.functional.cross_entropy(logits[None], tokens[row, i][None]))
            count += 1
    assert out.num_masked == count and out.mean_t == 0.0
    assert float(out.loss.detach()) == pytest.approx(total / count, rel=1e-4)


def test_ar_warmup_is_a_share_of_the_run_and_hands_over_to_diffusion(tmp_path):
    from diffucoder.recipes.masked_diffusion import TrainConfig
    cfg = load_config(TrainConfig, None, ["train.steps=10", "diffusion.ar_warmup=0.6"])
    assert cfg.ar_steps() == 6
    assert load_config(TrainConfig, None, ["train.steps=1", "diffusion.ar_warmup=0.6"]).ar_steps() == 0
    with pytest.raises(ConfigError, match="ar_warmup"):
        load_config(TrainConfig, None, ["diffusion.ar_warmup=1.0"])
