"""Coupled / decoupled / full-mask log-prob estimators: masks, weights, averaging, gradients."""
import pytest
import torch

from diffucoder.config import ConfigError, load_config
from diffucoder.errors import DiffucoderError
from diffucoder.model import shift_logits
from diffucoder.rl import EstimatorConfig, MaskPass, completion_mask, estimator_passes, token_logprobs
from rl_core_helpers import END_ID, MASK_ID, batch, micro_model


@pytest.fixture(scope="module")
def model():
    return micro_model()


@pytest.fixture(scope="module")
def inputs():
    prompt_ids, attention, completion = batch()
    return prompt_ids, attention, completion, completion_mask(completion, [END_ID])


def test_completion_mask_keeps_tokens_up_to_and_including_the_first_end():
    ids = torch.tensor([[5, 6, 9, 7, 9, 8], [5, 6, 7, 8, 1, 2], [9, 1, 2, 3, 4, 5], [1, 8, 2, 9, 3, 4]])
    assert completion_mask(ids, [9]).tolist() == [
        [True, True, True, False, False, False], [True] * 6, [True] + [False] * 5, [True] * 4 + [False] * 2]
    # several end ids: whichever comes first ends the completion
    assert completion_mask(ids, [8, 9])[3].tolist() == [True, True, False, False, False, False]
    assert completion_mask(ids, []).all()
    with pytest.raises(DiffucoderError, match="batch, length"):
        completion_mask(ids[0], [9])


def test_coupled_pair_masks_every_completion_token_exactly_once(inputs):
    *_, mask = inputs
    cfg = EstimatorConfig(method="coupled", pairs=3, r_min=0.2, r_max=0.8)
    for seed in range(20):
        passes = estimator_passes(mask, cfg, torch.Generator().manual_seed(seed))
        assert len(passes) == 1 + 2 * 3
        assert torch.equal(passes[0].masked, mask) and torch.equal(passes[0].weight, torch.ones(3))
        for first, second in zip(passes[1::2], passes[2::2]):
            assert torch.equal(first.masked | second.masked, mask)          # each token in one pass ...
            assert not bool((first.masked & second.masked).any())            # ... and in only one
            r = 1.0 / first.weight
            assert bool(((r >= 0.2) & (r <= 0.8)).all())
            torch.testing.assert_close(second.weight, 1.0 / (1.0 - r))
        for one in passes:  # prompt is not part of the masks; tokens after the end never masked
            assert not bool((one.masked & ~mask).any())


def test_coupled_masks_follow_the_drawn_ratio():
    mask = torch.ones(4, 4000, dtype=torch.bool)
    passes = estimator_passes(mask, EstimatorConfig(), torch.Generator().manual_seed(0))
    r = 1.0 / passes[1].weight
    torch.testing.assert_close(passes[1].masked.float().mean(dim=1), r, atol=0.03, rtol=0)


def test_ratio_range_is_respected_over_many_draws():
    mask = torch.ones(64, 3, dtype=torch.bool)
    cfg = EstimatorConfig(r_min=0.3, r_max=0.35)
    ratios = torch.cat([1.0 / estimator_passes(mask, cfg, torch.Generator().manual_seed(s))[1].weight
                        for s in range(10)])
    assert float(ratios.min()) >= 0.3 - 1e-6 and float(ratios.max()) <= 0.35 + 1e-6


def test_decoupled_has_the_same_passes_but_independent_masks(inputs):
    *_, mask = inputs
    cfg = EstimatorConfig(method="decoupled", pairs=2)
    overlap = uncovered = 0
    for seed in range(30):
        passes = estimator_passes(mask, cfg, torch.Generator().manual_seed(seed))
        assert len(passes) == len(estimator_passes(mask, EstimatorConfig(pairs=2), torch.Generator())) == 5
        assert torch.equal(passes[0].masked, mask)
        for first, second in zip(passes[1::2], passes[2::2]):
            assert not bool(((first.masked | second.masked) & ~mask).any())
            r_first, r_second = 1.0 / first.weight, 1.0 - 1.0 / second.weight
            assert bool(((r_first >= 0.2) & (r_first <= 0.8) & (r_second >= 0.2 - 1e-6)
                         & (r_second <= 0.8 + 1e-6)).all())
            overlap += int((first.masked & second.masked).sum())
            uncovered += int((mask & ~first.masked & ~second.masked).sum())
    assert overlap > 0 and uncovered > 0   # not complementary: tokens masked twice, or not at all


def test_full_mask_is_deterministic_and_draws_nothing(inputs):
    *_, mask = inputs
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    passes = estimator_passes(mask, EstimatorConfig(method="full_mask", pairs=2), generator)
    assert torch.equal(generator.get_state(), state)
    assert len(passes) == 5
    for one in passes:
        assert torch.equal(one.masked, mask) and torch.equal(one.weight, torch.ones(3))


def _by_hand(model, prompt_ids, attention, completion, one: MaskPass) -> torch.Tensor:
    """One pass's log p(token) at each completion position, straight from the model's logits."""
    noisy = torch.where(one.masked, torch.full_like(completion, MASK_ID), completion)
    sequence = torch.cat([prompt_ids, noisy], dim=1)
    full_attention = torch.cat([attention, torch.ones_like(completion)], dim=1)
    logits = shift_logits(model(sequence, attention_mask=full_attention).logits)[:, prompt_ids.shape[1]:]
    return torch.log_softmax(logits.double(), dim=-1).gather(-1, completion[..., None])[..., 0]


@torch.no_grad()
def test_coupled_estimate_matches_method_md_by_hand(model, inputs):
    prompt_ids, attention, completion, mask = inputs
    cfg = EstimatorConfig(method="coupled", pairs=1)
    got = token_logprobs(model, prompt_ids, attention, completion, mask, cfg,
                         torch.Generator().manual_seed(11), MASK_ID)
    full, first, second = estimator_passes(mask, cfg, torch.Generator().manual_seed(11))
    logp_full, logp_first, logp_second = (_by_hand(model, prompt_ids, attention, completion, p)
                                          for p in (full, first, second))
    # docs/method.md 4.2: (logp_pass1 + weight * logp from whichever of pass 2 or 3 masked the token) / 2
    pair = torch.where(first.masked, first.weight[:, None].double() * logp_first,
                       second.weight[:, None].double() * logp_second)
    expected = torch.where(mask, (logp_full + pair) / 2, torch.zeros_like(logp_full))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    assert bool((got[~mask] == 0).all()) and bool((got[mask] < 0).all())
    # the masks matter: the coupled estimate is not just the full-mask log-prob
    assert float((expected - torch.where(mask, logp_full, 0)).abs().max()) > 1e-2


def test_one_ratio_per_batch_as_the_released_code_draws_it():
    mask = torch.ones(6, 50, dtype=torch.bool)
    shared = estimator_passes(mask, EstimatorConfig(ratio="per_batch"), torch.Generator().manual_seed(3))
    own = estimator_passes(mask, EstimatorConfig(ratio="per_row"), torch.Generator().manual_seed(3))
    assert len(set(shared[1].weight.tolist())) == 1 and len(set(own[1].weight.tolist())) == 6
    r = 1.0 / float(shared[1].weight[0])
    assert 0.2 <= r <= 0.8
    torch.testing.assert_close(shared[2].weight, torch.full((6,), 1.0 / (1.0 - r)))


@torch.no_grad()
def test_masking_the_whole_canvas_scores_only_the_answer(model, inputs):
    """The released code masks every completion position (the tail after the end token too) and
    scores the tokens up to the end; the estimate is still the weighted sum at the scored tokens."""
    prompt_ids, attention, completion, mask = inputs
    canvas = torch.ones_like(mask)
    cfg = EstimatorConfig(method="coupled", pairs=1)
    full, first, second = estimator_passes(canvas, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(full.masked, canvas) and torch.equal(first.masked | second.masked, canvas)
    got = token_logprobs(model, prompt_ids, attention, completion, mask, cfg, torch.Generator(), MASK_ID,
                         passes=[full, first, second])
    logp_full, logp_first, logp_second = (_by_hand(model, prompt_ids, attention, completion, p)
                                          for p in (full, first, second))
    pair = torch.where(first.masked, first.weight[:, None].double() * logp_first,
                       second.weight[:, None].double() * logp_second)
    expected = torch.where(mask, (logp_full + pair) / 2, torch.zeros_like(logp_full))
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    answer_only = token_logprobs(model, prompt_ids, attention, completion, mask, cfg,
                                 torch.Generator().manual_seed(4), MASK_ID)
    # hiding the tail (and so the answer's length) changes what the model predicts
    assert float((answer_only - got).abs().max()) > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("method", ["coupled", "decoupled", "full_mask"])
def test_every_method_is_the_weighted_sum_over_passes(model, inputs, method):
    prompt_ids, attention, completion, mask = inputs
    cfg = EstimatorConfig(method=method, pairs=2)
    passes = estimator_passes(mask, cfg, torch.Generator().manual_seed(5))
    expected = sum(torch.where(p.masked, p.weight[:, None].double() * _by_hand(model, prompt_ids, attention,
                                                                               completion, p), 0.0)
                   for p in passes) / 3
    stacked = token_logprobs(model, prompt_ids, attention, completion, mask, cfg, torch.Generator(), MASK_ID,
                             passes=passes)
    one_by_one = token_logprobs(model, prompt_ids, attention, completion, mask,
                                EstimatorConfig(method=method, pairs=2, stack_passes=False),
                                torch.Generator(), MASK_ID, passes=passes)
    torch.testing.assert_close(stacked.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_by_one, stacked, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_left_padding_does_not_change_a_rows_estimate(model, inputs):
    prompt_ids, attention, completion, mask = inputs
    cfg = EstimatorConfig()
    passes = estimator_passes(mask, cfg, torch.Generator().manual_seed(2))
    batched = token_logprobs(model, prompt_ids, attention, completion, mask, cfg, torch.Generator(), MASK_ID,
                             passes=passes)
    row = 1                                    # the shortest prompt: most left padding
    real = attention[row].bool()
    alone = token_logprobs(model, prompt_ids[row:row + 1, real], attention[row:row + 1, real],
                           completion[row:row + 1], mask[row:row + 1], cfg, torch.Generator(), MASK_ID,
                           passes=[MaskPass(p.masked[row:row + 1], p.weight[row:row + 1]) for p in passes])
    torch.testing.assert_close(alone[0], batched[row], atol=1e-4, rtol=1e-4)


def test_gradients_flow_through_token_logprobs(inputs):
    model = micro_model(seed=1).train()
    prompt_ids, attention, completion, mask = inputs
    logp = token_logprobs(model, prompt_ids, attention, completion, mask, EstimatorConfig(),
                          torch.Generator().manual_seed(0), MASK_ID)
    assert logp.requires_grad
    logp.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert float(model.lm_head.weight.grad.abs().sum()) > 0
    assert float(model.model.embed_tokens.weight.grad.abs().sum()) > 0


def test_bad_inputs_are_named(model, inputs):
    prompt_ids, attention, completion, mask = inputs
    cfg, gen = EstimatorConfig(), torch.Generator()
    right_padded = attention.flip(1)
    with pytest.raises(DiffucoderError, match="left padding"):
        token_logprobs(model, prompt_ids, right_padded, completion, mask, cfg, gen, MASK_ID)
    with pytest.raises(DiffucoderError, match="bool tensor"):
        token_logprobs(model, prompt_ids, attention, completion, mask.long(), cfg, gen, MASK_ID)
    passes = estimator_passes(mask, cfg, gen)
    with pytest.raises(DiffucoderError, match="3 passes"):
        token_logprobs(model, prompt_ids, attention, completion, mask, EstimatorConfig(pairs=2), gen, MASK_ID,
                       passes=passes)
    uncovered = [MaskPass(torch.zeros_like(mask), passes[0].weight), *passes[1:]]
    with pytest.raises(DiffucoderError, match="first pass must mask every scored token"):
        token_logprobs(model, prompt_ids, attention, completion, mask, cfg, gen, MASK_ID, passes=uncovered)
    with pytest.raises(ConfigError, match="r_min"):
        estimator_passes(mask, EstimatorConfig(r_min=0.9, r_max=0.8), gen)
    with pytest.raises(ConfigError, match="method"):
        load_config(EstimatorConfig, None, ["method=antithetic"])
    assert load_config(EstimatorConfig, None, ["pairs=2", "method=decoupled"]).num_passes == 5
