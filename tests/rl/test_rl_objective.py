"""The clipped GRPO objective with k3 KL: fixed numbers re-computed by hand, clipping, zero-advantage groups."""
import math

import pytest
import torch

from diffucoder.errors import DiffucoderError
from diffucoder.rl import EstimatorConfig, completion_mask, group_advantages, grpo_loss, token_logprobs
from rl_core_helpers import END_ID, MASK_ID, batch, micro_model

LOGP = [[-1.0, -2.0, -0.5, -3.0], [-0.2, -1.2, -4.0, -0.7], [-1.5, -0.1, -2.2, -0.9], [-1.0, -1.0, -1.0, -1.0]]
OLD = [[-1.1, -1.2, -0.5, -3.5], [-0.9, -1.0, -3.0, -0.7], [-1.5, -0.6, -2.0, -0.2], [-1.0, -1.0, -1.0, -1.0]]
REF = [[-1.3, -2.2, -0.4, -2.9], [-0.4, -1.1, -3.5, -0.6], [-1.0, -0.3, -2.5, -1.0], [-1.0, -1.0, -1.0, -1.0]]
ADV = [1.5, -0.5, -2.0, 0.7]
MASK = [[True, True, True, False], [True, True, True, True], [True, True, False, False], [False] * 4]


def by_hand(eps: float, beta: float, use_ref: bool = True) -> dict:
    """The loss and stats, token by token in plain Python, as docs/method.md (4.3) writes them."""
    row_losses, row_kls, row_clips, row_ratios = [], [], [], []
    for logp, old, ref, adv, mask in zip(LOGP, OLD, REF, ADV, MASK):
        terms, kls, clips, ratios = [], [], [], []
        for lp, lo, lr, m in zip(logp, old, ref, mask):
            if not m:
                continue
            rho = math.exp(lp - lo)
            clipped = min(max(rho, 1 - eps), 1 + eps)
            kl = math.exp(lr - lp) - (lr - lp) - 1 if use_ref else 0.0
            terms.append(-min(rho * adv, clipped * adv) + beta * kl)
            kls.append(kl)
            clips.append(float((rho > 1 + eps and adv > 0) or (rho < 1 - eps and adv < 0)))
            ratios.append(rho)
        if terms:  # a row with no completion token is left out
            for bucket, values in ((row_losses, terms), (row_kls, kls), (row_clips, clips), (row_ratios, ratios)):
                bucket.append(sum(values) / len(values))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {"loss": mean(row_losses), "kl": mean(row_kls), "clip_fraction": mean(row_clips),
            "ratio_mean": mean(row_ratios)}


def by_hand_per_token(eps: float, beta: float) -> dict:
    """The released trainer's averaging: every scored token of the batch counts once."""
    terms, kls = [], []
    for logp, old, ref, adv, mask in zip(LOGP, OLD, REF, ADV, MASK):
        for lp, lo, lr, m in zip(logp, old, ref, mask):
            if m:
                rho = math.exp(lp - lo)
                clipped = min(max(rho, 1 - eps), 1 + eps)
                kl = math.exp(lr - lp) - (lr - lp) - 1
                terms.append(-min(rho * adv, clipped * adv) + beta * kl)
                kls.append(kl)
    return {"loss": sum(terms) / len(terms), "kl": sum(kls) / len(kls)}


def tensors(requires_grad: bool = False):
    logp = torch.tensor(LOGP, requires_grad=requires_grad)
    return logp, torch.tensor(OLD), torch.tensor(REF), torch.tensor(ADV), torch.tensor(MASK)


@pytest.mark.parametrize("eps,beta", [(0.5, 0.01), (0.2, 0.1), (0.5, 0.0)])
def test_loss_and_stats_match_a_direct_recomputation(eps, beta):
    logp, old, ref, adv, mask = tensors()
    out = grpo_loss(logp, old, ref, adv, mask, eps=eps, beta=beta)
    expected = by_hand(eps, beta)
    assert float(out.loss) == pytest.approx(expected["loss"], rel=1e-5, abs=1e-6)
    assert out.stats["kl"] == pytest.approx(expected["kl"] if beta else 0.0, rel=1e-5, abs=1e-7)
    assert out.stats["clip_fraction"] == pytest.approx(expected["clip_fraction"], abs=1e-6)
    assert out.stats["ratio_mean"] == pytest.approx(expected["ratio_mean"], rel=1e-5)
    assert out.stats["sequences"] == 3 and out.stats["tokens"] == 9


@pytest.mark.parametrize("eps,beta", [(0.5, 0.01), (0.2, 0.1)])
def test_token_level_normalisation_matches_the_released_averaging(eps, beta):
    logp, old, ref, adv, mask = tensors()
    out = grpo_loss(logp, old, ref, adv, mask, eps=eps, beta=beta, normalise="token")
    expected = by_hand_per_token(eps, beta)
    assert float(out.loss) == pytest.approx(expected["loss"], rel=1e-5, abs=1e-6)
    assert out.stats["kl"] == pytest.approx(expected["kl"], rel=1e-5, abs=1e-7)
    per_sequence = grpo_loss(logp, old, ref, adv, mask, eps=eps, beta=beta, normalise="sequence")
    assert abs(float(per_sequence.loss) - float(out.loss)) > 1e-3   # rows of 3, 4 and 2 tokens weigh differently
    with pytest.raises(DiffucoderError, match="normalise"):
        grpo_loss(logp, old, ref, adv, mask, normalise="batch")


def test_fixed_numbers_actually_clip():
    # eps=0.2: only row 1's third token is clipped (rho = e^-1 < 0.8 with A < 0); row 1's first token
    # (rho = e^0.7 > 1.2, but A < 0) is not: the clip binds only where it lowers the objective.
    # 1 of row 1's 4 tokens, averaged over the 3 scored rows = 1/12.
    expected = by_hand(0.2, 0.0)["clip_fraction"]
    assert expected == pytest.approx(1 / 12)
    out = grpo_loss(*tensors()[:2], None, *tensors()[3:], eps=0.2, beta=0.0)
    assert out.stats["clip_fraction"] == pytest.approx(expected)
    assert out.stats["clip_low_fraction"] == pytest.approx(expected) and out.stats["clip_high_fraction"] == 0


def test_kl_is_skipped_without_reference_or_beta():
    logp, old, ref, adv, mask = tensors()
    no_ref = grpo_loss(logp, old, None, adv, mask, beta=0.01)
    no_beta = grpo_loss(logp, old, ref, adv, mask, beta=0.0)
    assert float(no_ref.loss) == pytest.approx(by_hand(0.5, 0.0, use_ref=False)["loss"], rel=1e-5)
    assert float(no_ref.loss) == pytest.approx(float(no_beta.loss)) and no_ref.stats["kl"] == 0.0
    with_kl = grpo_loss(logp, old, ref, adv, mask, beta=0.5)
    assert float(with_kl.loss) > float(no_beta.loss)          # k3 >= 0, and > 0 where ref != logp


def test_clipped_tokens_get_no_gradient_and_others_do():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -0.1]])                        # rho = e (clipped at 1.5 for A > 0), e^0.1
    out = grpo_loss(logp, old, None, torch.tensor([1.0]), torch.tensor([[True, True]]), eps=0.5, beta=0.0)
    out.loss.backward()
    assert logp.grad[0, 0] == 0
    assert float(logp.grad[0, 1]) == pytest.approx(-math.exp(0.1) / 2)   # d(-rho*A)/dlogp averaged over 2
    assert out.stats["clip_fraction"] == 0.5


def test_empty_rows_are_excluded_and_an_empty_batch_gives_zero():
    logp, old, ref, adv, mask = tensors()
    full = grpo_loss(logp, old, ref, adv, mask)
    without_empty = grpo_loss(logp[:3], old[:3], ref[:3], adv[:3], mask[:3])
    assert float(full.loss) == pytest.approx(float(without_empty.loss))
    nothing = grpo_loss(logp.requires_grad_(), old, ref, adv, torch.zeros_like(mask))
    assert float(nothing.loss.detach()) == 0.0
    nothing.loss.backward()
    assert bool((logp.grad == 0).all())


def test_group_with_equal_rewards_contributes_no_policy_gradient():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [2.5, 0.5, 0.0]])          # group 0: all equal
    advantages = group_advantages(rewards, baseline="leave_one_out").flatten()
    logp = (torch.tensor(LOGP[:3] * 2) * 0.9).requires_grad_()
    old = torch.tensor(LOGP[:3] * 2)
    mask = torch.ones(6, 4, dtype=torch.bool)
    grpo_loss(logp, old, None, advantages, mask, beta=0.0).loss.backward()
    assert bool((logp.grad[:3] == 0).all())                          # exactly zero, not just small
    assert bool((logp.grad[3:].abs() > 0).all())


def test_equal_rewards_give_zero_gradient_to_every_model_parameter():
    model = micro_model(seed=2).train()
    prompt_ids, attention, completion = batch(seed=1)
    mask = completion_mask(completion, [END_ID])
    cfg = EstimatorConfig()
    generator = torch.Generator().manual_seed(0)
    logp = token_logprobs(model, prompt_ids, attention, completion, mask, cfg, generator, MASK_ID)
    advantages = group_advantages(torch.full((1, 3), 0.5)).flatten()
    grpo_loss(logp, logp.detach() - 0.3, None, advantages, mask, beta=0.0).loss.backward()
    assert all(p.grad is None or bool((p.grad == 0).all()) for p in model.parameters())
    # the same batch with distinct rewards does move the model
    model.zero_grad()
    logp = token_logprobs(model, prompt_ids, attention, completion, mask, cfg, generator, MASK_ID)
    advantages = group_advantages(torch.tensor([[2.5, 0.5, 0.0]])).flatten()
    grpo_loss(logp, logp.detach(), None, advantages, mask, beta=0.0).loss.backward()
    assert float(model.lm_head.weight.grad.abs().sum()) > 0


def test_bad_shapes_are_named():
    logp, old, ref, adv, mask = tensors()
    with pytest.raises(DiffucoderError, match="old_logp"):
        grpo_loss(logp, old[:, :3], ref, adv, mask)
    with pytest.raises(DiffucoderError, match="one per sequence"):
        grpo_loss(logp, old, ref, adv[:2], mask)
    with pytest.raises(DiffucoderError, match="mask must be bool"):
        grpo_loss(logp, old, ref, adv, mask.float())
    with pytest.raises(DiffucoderError, match="eps"):
        grpo_loss(logp, old, ref, adv, mask, eps=1.5)
