"""``diffucoder tasks``: writes the suite's files, with the RL split when asked."""
import argparse
import json

from diffucoder.tasks import cli


def run(tmp_path, *argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(["--out", str(tmp_path), "--max-per-family", "3", *argv]))


def test_writes_both_splits_and_no_rl_file_by_default(tmp_path, capsys):
    assert run(tmp_path / "plain") == 0
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "sft-heldout.jsonl", "sft-train.jsonl", "tasks-heldout.jsonl", "tasks-train.jsonl"]
    assert "'heldout'" in capsys.readouterr().out


def test_rl_fraction_writes_an_rl_prompt_file_disjoint_from_sft(tmp_path, capsys):
    assert run(tmp_path / "split", "--rl-fraction", "0.3") == 0
    out = capsys.readouterr().out
    assert "tasks-rl:" in out and "'rl'" in out
    read = lambda name: [json.loads(line) for line in (tmp_path / "split" / name).read_text().splitlines()]
    rl_ids = {r["task_id"] for r in read("tasks-rl.jsonl")}
    assert rl_ids and not rl_ids & {r["task_id"] for r in read("sft-train.jsonl")}
    assert not rl_ids & {r["task_id"] for r in read("tasks-heldout.jsonl")}
    assert all(r["split"] == "rl" for r in read("tasks-rl.jsonl"))
