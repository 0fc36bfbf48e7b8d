"""Group advantages (mean, leave-one-out, std scaling) against numbers worked out by hand."""
import math

import pytest
import torch

from diffucoder.errors import DiffucoderError
from diffucoder.rl import group_advantages, zero_advantage_fraction

REWARDS = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.1, 0.1, 0.1, 0.1], [2.5, 0.5, 0.5, 0.5]])


def test_mean_baseline():
    expected = torch.tensor([[-2.0, -1.0, 0.0, 3.0], [0.0] * 4, [1.5, -0.5, -0.5, -0.5]])
    torch.testing.assert_close(group_advantages(REWARDS), expected)


def test_leave_one_out_baseline():
    # r_i - mean of the other three: row 0 sums to 12, row 2 to 4
    expected = torch.tensor([[1 - 11 / 3, 2 - 10 / 3, 3 - 3.0, 6 - 2.0], [0.0] * 4,
                             [2.5 - 0.5, 0.5 - 3.5 / 3, 0.5 - 3.5 / 3, 0.5 - 3.5 / 3]])
    torch.testing.assert_close(group_advantages(REWARDS, baseline="leave_one_out"), expected)
    # leave-one-out is the mean baseline scaled by G / (G - 1)
    torch.testing.assert_close(group_advantages(REWARDS, baseline="leave_one_out"), group_advantages(REWARDS) * 4 / 3)


def test_std_scaling_uses_the_unbiased_group_std():
    std0 = math.sqrt((4 + 1 + 0 + 9) / 3)           # row 0: deviations -2, -1, 0, 3
    std2 = math.sqrt((1.5 ** 2 + 3 * 0.5 ** 2) / 3)
    expected = torch.tensor([[-2 / (std0 + 1e-4), -1 / (std0 + 1e-4), 0.0, 3 / (std0 + 1e-4)], [0.0] * 4,
                             [1.5 / (std2 + 1e-4)] + [-0.5 / (std2 + 1e-4)] * 3])
    torch.testing.assert_close(group_advantages(REWARDS, scale=True), expected)


@pytest.mark.parametrize("baseline", ["mean", "leave_one_out"])
@pytest.mark.parametrize("scale,eps", [(False, 1e-4), (True, 1e-4), (True, 0.0)])
def test_all_equal_group_gets_exactly_zero(baseline, scale, eps):
    rewards = torch.tensor([[0.1, 0.1, 0.1], [0.7, 0.7, 0.7], [1.0, 0.0, 0.0]])
    advantages = group_advantages(rewards, baseline=baseline, scale=scale, eps=eps)
    assert bool((advantages[:2] == 0).all())          # exactly, not approximately
    assert bool(torch.isfinite(advantages).all()) and float(advantages[2].abs().sum()) > 0


def test_zero_advantage_fraction():
    assert zero_advantage_fraction(REWARDS) == pytest.approx(1 / 3)
    assert zero_advantage_fraction(torch.ones(4, 5)) == 1.0
    assert zero_advantage_fraction(torch.eye(3)) == 0.0


def test_bad_rewards_are_named():
    with pytest.raises(DiffucoderError, match="prompts, completions"):
        group_advantages(torch.ones(6))
    with pytest.raises(DiffucoderError, match="finite"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(DiffucoderError, match="at least 2"):
        group_advantages(torch.ones(3, 1), baseline="leave_one_out")
    with pytest.raises(DiffucoderError, match="baseline"):
        group_advantages(REWARDS, baseline="median")
    assert torch.equal(group_advantages(torch.tensor([[3.0], [1.0]])), torch.zeros(2, 1))
