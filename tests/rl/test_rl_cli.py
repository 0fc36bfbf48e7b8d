"""``diffucoder rl train`` and ``diffucoder rl filter``: options, overrides, outputs, errors (exit 2)."""
import json

import pytest

from diffucoder.cli import main as cli_main
from diffucoder.rl.prompts import read_pass_rates, read_prompts
from tests.rl.rl_trainer_helpers import make_model_dir, make_suite, micro_overrides, write_acecode


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-cli")
    return make_model_dir(root / "sft"), make_suite(root / "tasks")


def _options(overrides: list[str]) -> list[str]:
    """The helper's overrides minus the ones the command's options give."""
    skip = ("model.init_from=", "data.uri=", "output.workdir=")
    return [o for o in overrides if not o.startswith(skip)]


def test_rl_command_trains_and_publishes(assets, tmp_path, capsys):
    model_dir, suite = assets
    store = (tmp_path / "store").as_uri()
    code = cli_main(["rl", "train", "--config", "configs/tiny-cpu/rl.yaml", "--init", str(model_dir), "--data", str(suite),
                     "--output", f"{store}/runs/r1/rl", "--workdir", str(tmp_path / "w"),
                     *_options(micro_overrides(model_dir, suite, tmp_path / "w", steps=1))])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out[:out.index("\nmodel: ")])
    assert summary["stage"] == "rl" and summary["steps"] == 1 and summary["rollouts"] == 4
    assert f"published: {store}/runs/r1/rl" in out and "report: " in out
    assert (tmp_path / "w" / "model" / "training" / "report.md").is_file()


def test_filter_mode_writes_the_subset_and_pass_rates(assets, tmp_path, capsys):
    model_dir, _suite = assets
    data = write_acecode(tmp_path / "ace.jsonl")
    out_file = tmp_path / "hard" / "ace-hard.jsonl"
    code = cli_main(["rl", "filter", "--init", str(model_dir), "--data", str(data), "--out", str(out_file),
                     "data.kind=acecode_jsonl", "hard_filter.source=records", "hard_filter.max_mean=0.5",
                     "hard_filter.min_variance=0.04", f"data.cache_dir={tmp_path / 'cache'}"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    kept, _ = read_prompts(out_file, "acecode_jsonl")                 # usable as data.uri
    assert [p.prompt_id for p in kept] == ["ace-rev", "ace-hard"]
    rates = read_pass_rates(tmp_path / "hard" / "ace-hard.pass_rates.jsonl")
    assert rates["ace-add"] == [1.0, 1.0] and len(rates) == 3
    info = json.loads((tmp_path / "hard" / "ace-hard.filter.json").read_text())
    assert info["kept"] == 2 and info["prompts"] == 3 and '"kept": 2' in printed


def test_filter_by_sampling_the_model(assets, tmp_path, capsys):
    model_dir, suite = assets
    out_file = tmp_path / "hard.jsonl"
    code = cli_main(["rl", "filter", "--init", str(model_dir), "--data", str(suite), "--out", str(out_file),
                     "hard_filter.source=sample", "hard_filter.samples=2", "hard_filter.max_mean=1.0",
                     "hard_filter.min_variance=0.0", "data.max_prompts=3", "rollout.sampling.max_new_tokens=8",
                     "rollout.sampling.steps=2", "reward.workers=2", f"data.cache_dir={tmp_path / 'cache'}"])
    assert code == 0, capsys.readouterr()
    assert len(read_pass_rates(tmp_path / "hard.pass_rates.jsonl")) == 3
    assert all(len(r) == 2 for r in read_pass_rates(tmp_path / "hard.pass_rates.jsonl").values())
    assert len(out_file.read_text().splitlines()) == 3


def test_errors_exit_2_with_a_message(assets, tmp_path, capsys):
    model_dir, suite = assets
    assert cli_main(["rl", "train", "--data", str(suite), "train.steps=1"]) == 2
    assert "'model.init_from': required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing_out:   # argparse: usage and exit 2
        cli_main(["rl", "filter", "--init", str(model_dir), "--data", str(suite)])
    assert missing_out.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as out_on_train:
        cli_main(["rl", "train", "--init", str(model_dir), "--data", str(suite), "--out", "x.jsonl"])
    assert out_on_train.value.code == 2 and "--out" in capsys.readouterr().err
    assert cli_main(["rl", "train", "--init", str(model_dir), "objective.kl=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_the_action_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as no_action:
        cli_main(["rl", "--init", "x"])
    assert no_action.value.code == 2 and "train" in capsys.readouterr().err
