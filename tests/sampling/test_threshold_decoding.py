"""Confidence-threshold parallel decoding (Fast-dLLM): a step commits every masked position whose
drawn token is at least ``threshold`` probable, the schedule's count if that is more, and at least one."""
import pytest
import torch

from diffucoder.config import ConfigError
from diffucoder.sampling import SamplingConfig, diffusion_generate
from diffucoder.sampling.step import denoise_step, step_commit

from sampling_helpers import left_pad, micro_model, random_prompts

MASK = 7


def peaked_logits(probabilities: list[float], vocab: int = 5) -> torch.Tensor:
    """(1, N, vocab) logits whose argmax (token 0) has the given probability at each position."""
    rows = []
    for p in probabilities:
        rest = (1.0 - p) / (vocab - 1)
        rows.append(torch.log(torch.tensor([p] + [rest] * (vocab - 1))))
    return torch.stack(rows)[None]


def step(probabilities, counts, **config):
    block = torch.full((1, len(probabilities)), MASK)
    masked = block == MASK
    cfg = SamplingConfig(temperature=0.0, top_p=1.0, alg="maskgit_plus", **config)
    return denoise_step(peaked_logits(probabilities), block, masked, torch.tensor([counts]), cfg, None)


def test_every_position_above_the_threshold_is_committed_most_confident_first():
    _, chosen, rank = step([0.5, 0.95, 0.3, 0.99, 0.91], counts=1, threshold=0.9)
    assert chosen[0].tolist() == [False, True, False, True, True]
    assert rank[0].tolist() == [-1, 1, -1, 0, 2]


def test_the_cap_keeps_the_most_confident_of_them():
    _, chosen, _ = step([0.5, 0.95, 0.3, 0.99, 0.91], counts=1, threshold=0.9, max_per_step=2)
    assert chosen[0].tolist() == [False, True, False, True, False]


def test_at_least_one_position_when_none_passes_and_the_schedule_says_none():
    _, chosen, _ = step([0.5, 0.6, 0.3], counts=0, threshold=0.9)
    assert chosen[0].tolist() == [False, True, False]


def test_the_schedule_count_still_holds_when_it_is_more():
    _, chosen, rank = step([0.5, 0.95, 0.3, 0.6], counts=3, threshold=0.9)
    assert chosen[0].tolist() == [True, True, False, True]
    assert rank[0, 1] == 0   # the confident one first, then the schedule's pick by confidence


def test_without_a_threshold_the_schedule_alone_decides():
    _, chosen, _ = step([0.5, 0.95, 0.3, 0.99], counts=1)
    assert chosen[0].tolist() == [False, False, False, True]


def test_a_threshold_step_is_idle_only_once_nothing_is_masked():
    cfg = SamplingConfig(threshold=0.9)
    masked = torch.tensor([[True, False, False, False]])
    counts, idle = step_commit(masked, step=0, steps=4, config=cfg)   # the schedule commits 0 here
    assert counts.tolist() == [0] and not idle
    assert step_commit(masked, 0, 4, SamplingConfig())[1]             # ... so without threshold: idle
    assert step_commit(torch.zeros_like(masked), 1, 4, cfg)[1]


@pytest.mark.parametrize("mode", ["exact", "approx_prefix_cache", "approx_dual_cache"])
def test_a_threshold_every_token_passes_decodes_each_block_in_one_forward(mode):
    model = micro_model()
    ids, mask = left_pad(random_prompts([3, 5], seed=2), pad=model.config.pad_token_id)
    out = diffusion_generate(model, ids, mask, max_new_tokens=16, steps=16, temperature=0.0, mode=mode,
                             block_size=8, threshold=1e-9)
    assert not bool((out.completions == model.config.mask_token_id).any())
    assert out.forward_passes == (1 if mode == "exact" else 2)


def test_the_cap_sets_the_number_of_forwards():
    model = micro_model()
    ids, mask = left_pad(random_prompts([4], seed=3), pad=model.config.pad_token_id)
    out = diffusion_generate(model, ids, mask, max_new_tokens=16, steps=16, temperature=0.0,
                             threshold=1e-9, max_per_step=3)
    assert out.forward_passes == 6   # ceil(16 / 3)
    assert not bool((out.completions == model.config.mask_token_id).any())


def test_an_unreachable_threshold_decodes_like_one_token_per_step():
    """No drawn token of a random model is certain: the rule falls back to one per step."""
    model = micro_model()
    ids, mask = left_pad(random_prompts([4, 2], seed=4), pad=model.config.pad_token_id)
    out = diffusion_generate(model, ids, mask, max_new_tokens=12, steps=12, temperature=0.0, threshold=1.0,
                             return_commit_order=True)
    assert out.forward_passes == 12
    assert sorted(out.commit_steps[0].tolist()) == list(range(12))


@pytest.mark.parametrize("overrides, named", [
    (dict(threshold=1.5), "threshold"),
    (dict(threshold=0.9, alg="origin"), "threshold"),
    (dict(max_per_step=2), "max_per_step"),
])
def test_bad_threshold_settings_are_refused(overrides, named):
    from diffucoder.sampling.config import resolve_config
    with pytest.raises(ConfigError, match=named):
        resolve_config(**overrides)
