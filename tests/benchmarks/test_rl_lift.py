"""The learning benchmark's statistics, against values worked out by hand, and its command line."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import rl_lift  # noqa: E402


def test_wilson_interval_matches_the_textbook_values():
    low, high = rl_lift.wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = rl_lift.wilson(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775


def test_mcnemar_counts_only_the_tasks_that_changed():
    before, after = [0] * 5 + [1] * 20, [1] * 5 + [1] * 20          # 5 gained, none lost
    assert rl_lift.mcnemar_p(before, after) == pytest.approx(2 / 2 ** 5)
    assert rl_lift.mcnemar_p([1, 0], [1, 0]) == 1.0


def test_paired_bootstrap_of_a_constant_change_is_that_change():
    assert rl_lift.paired_bootstrap([0] * 8, [1] * 8, resamples=200) == (1.0, 1.0)
    low, high = rl_lift.paired_bootstrap([0, 1] * 10, [1, 0] * 10, resamples=400)
    assert low < 0 < high


def test_paired_row_reports_the_change_on_the_same_tasks():
    reference = {"a": 0, "b": 1, "c": 0, "d": 1}
    entry = rl_lift.paired_row("RL", reference, {"a": 1, "b": 1, "c": 1, "d": 0}, 1.0, seed=0)
    assert (entry["solved"], entry["gained"], entry["lost"]) == (3, 2, 1)
    assert entry["change"] == pytest.approx(0.25)


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        rl_lift.main(["--skip", "nonsense"])
    assert "--skip" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rl_lift.main(["--ar-warmup", "1.0"])
    with pytest.raises(SystemExit):
        rl_lift.main(["--hard-samples", "1"])
    assert "--hard-samples" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rl_lift.main(["--rl-fraction", "1.0"])
    assert "--rl-fraction" in capsys.readouterr().err


def test_bootstrap_mean_brackets_the_mean_and_is_exact_for_constants():
    assert rl_lift.bootstrap_mean([0.25] * 6, resamples=100) == (0.25, 0.25)
    low, high = rl_lift.bootstrap_mean([0.0, 1.0] * 20, resamples=400)
    assert low < 0.5 < high and high - low < 0.5


def test_sampled_row_averages_shares_and_counts_tasks_that_moved():
    reference = {"a": 0.25, "b": 1.0, "c": 0.5}
    entry = rl_lift.sampled_row("RL", {"a": 0.75, "b": 1.0, "c": 0.25}, 4, 2.0, seed=0, reference=reference)
    assert entry["pass_at_1"] == pytest.approx(2.0 / 3)
    assert entry["change"] == pytest.approx((0.5 + 0.0 - 0.25) / 3)
    assert (entry["better"], entry["worse"], entry["samples"]) == (1, 1, 4)
    assert entry["change_ci95"][0] <= entry["change"] <= entry["change_ci95"][1]
    assert "change" not in rl_lift.sampled_row("SFT", reference, 4, 1.0, seed=0)


def test_sampled_pass_at_1_needs_a_temperature(capsys):
    with pytest.raises(SystemExit):
        rl_lift.main(["--sampled-temperature", "0"])
    assert "--sampled-n" in capsys.readouterr().err


def test_sampled_steps_must_fit_the_answer(capsys):
    with pytest.raises(SystemExit):
        rl_lift.main(["--sampled-steps", "49", "--max-new-tokens", "48"])
    assert "--sampled-steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rl_lift.main(["--sampled-steps", "0"])
    assert "--sampled-steps" in capsys.readouterr().err


def test_thresholds_must_be_probabilities(capsys):
    with pytest.raises(SystemExit):
        rl_lift.main(["--thresholds", "0.9,1.5"])
    assert "--thresholds" in capsys.readouterr().err
