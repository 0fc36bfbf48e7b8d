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
