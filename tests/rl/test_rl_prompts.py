"""RL prompts from both data kinds, and the hard-prompt filter on fixed numbers."""
import json

import numpy as np
import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.rl.prompts import (PromptSet, acecode_instruction, hard_subset, is_hard, limit_prompts,
                                   read_pass_rates, read_prompts, record_pass_rates, write_pass_rates)
from diffucoder.tasks import read_tasks
from diffucoder.training.chat import split_chat
from tests.rl.rl_trainer_helpers import ACECODE, make_suite, write_acecode


def test_synthetic_prompts_use_the_sft_template_and_every_assert(tmp_path):
    suite = make_suite(tmp_path / "suite")
    prompts, skipped = read_prompts(suite / "tasks-train.jsonl", "synthetic")
    records = read_tasks(suite / "tasks-train.jsonl")
    chats = {json.loads(line)["task_id"]: json.loads(line)
             for line in (suite / "sft-train.jsonl").read_text().splitlines()}
    assert len(prompts) == len(records) > 5 and skipped == {"unusable_tests": 0, "duplicate_id": 0}
    for prompt, record in zip(prompts, records):
        sft_prompt, _answer = split_chat(chats[record["task_id"]])
        assert prompt.text == sft_prompt                 # exactly what SFT trained the model to answer
        assert prompt.prompt_id == record["task_id"] and prompt.entry_point is None
        assert prompt.tests.splitlines() == record["asserts"]
    # a HumanEval-style record without 'asserts' falls back to its check() test
    record = dict(records[0])
    del record["asserts"]
    (tmp_path / "he.jsonl").write_text(json.dumps(record) + "\n")
    (prompt,), _ = read_prompts(tmp_path / "he.jsonl", "synthetic")
    assert prompt.tests == record["test"] and prompt.entry_point == record["entry_point"]


def test_acecode_prompts_show_the_first_test_and_run_all(tmp_path):
    prompts, skipped = read_prompts(write_acecode(tmp_path / "ace.jsonl"), "acecode_jsonl")
    assert [p.prompt_id for p in prompts] == ["ace-add", "ace-rev", "ace-hard"]
    assert skipped["unusable_tests"] == 1                # 'ace-broken' has a test that is not Python
    add = prompts[0]
    assert acecode_instruction(ACECODE[0]["question"], "assert add(1, 2) == 3") in add.text
    assert add.text.index(ACECODE[0]["question"]) < add.text.index("assert add(1, 2) == 3")
    assert "assert add(-1, 1) == 0" not in add.text      # only the first test is shown ...
    assert add.tests.splitlines() == ACECODE[0]["test_cases"]   # ... all of them are run
    assert add.text.startswith("<|im_start|>user\n") and add.text.endswith("<|im_start|>assistant\n")


def test_bad_records_are_named(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1, "question": "q", "test_cases": []}\n')
    with pytest.raises(DiffucoderError, match=r"a.jsonl:1: 'test_cases' must be a non-empty list"):
        read_prompts(tmp_path / "a.jsonl", "acecode_jsonl")
    (tmp_path / "b.jsonl").write_text("not json\n")
    with pytest.raises(DiffucoderError, match="b.jsonl:1: not JSON"):
        read_prompts(tmp_path / "b.jsonl", "synthetic")
    with pytest.raises(DiffucoderError, match="no such prompts file"):
        read_prompts(tmp_path / "missing.jsonl", "synthetic")
    doubled = [ACECODE[0], ACECODE[0]]
    prompts, skipped = read_prompts(write_acecode(tmp_path / "d.jsonl", doubled), "acecode_jsonl")
    assert len(prompts) == 1 and skipped["duplicate_id"] == 1
    with pytest.raises(DiffucoderError, match="no usable prompts"):
        PromptSet([])


class _CharTokenizer:
    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [list(t) for t in texts]}


def test_limit_prompts_drops_long_ones_then_samples(tmp_path):
    prompts, _ = read_prompts(write_acecode(tmp_path / "ace.jsonl"), "acecode_jsonl")
    lengths = sorted(len(p.text) for p in prompts)
    kept, too_long = limit_prompts(prompts, _CharTokenizer(), lengths[1], 0, 0)
    assert too_long == 1 and len(kept) == 2 and all(len(p.text) <= lengths[1] for p in kept)
    sample, _ = limit_prompts(prompts, _CharTokenizer(), 10_000, 2, seed=3)
    again, _ = limit_prompts(prompts, _CharTokenizer(), 10_000, 2, seed=3)
    assert sample == again and len(sample) == 2
    assert [prompts.index(p) for p in sample] == sorted(prompts.index(p) for p in sample)   # file order


def test_hard_filter_keeps_low_mean_high_variance(tmp_path):
    prompts, _ = read_prompts(write_acecode(tmp_path / "ace.jsonl"), "acecode_jsonl")
    rates = {"ace-add": [1.0, 1.0, 1.0, 1.0],     # solved: mean 1, no variance
             "ace-rev": [0.0, 0.0, 0.0, 0.0],     # never solved: nothing to compare
             "ace-hard": [0.0, 1.0, 0.0, 0.0]}    # mean 0.25, variance 0.1875
    kept, table = hard_subset(prompts, rates, max_mean=0.5, min_variance=0.01)
    assert [p.prompt_id for p in kept] == ["ace-hard"]
    row = {r["id"]: r for r in table}["ace-hard"]
    assert row["mean"] == pytest.approx(0.25) and row["variance"] == pytest.approx(np.var([0, 1, 0, 0]))
    assert [r["kept"] for r in table] == [False, False, True]
    # the thresholds are inclusive, and both must hold
    assert is_hard([0.0, 1.0], 0.5, 0.25) and not is_hard([0.0, 1.0], 0.49, 0.0)
    assert not is_hard([0.5, 0.5], 1.0, 0.001) and not is_hard([], 1.0, 0.0)
    with pytest.raises(DiffucoderError, match="no pass rates for 1 prompt"):
        hard_subset(prompts, {"ace-add": [1.0], "ace-rev": [0.0]}, 0.5, 0.0)


def test_pass_rates_from_records_and_files(tmp_path):
    prompts, _ = read_prompts(write_acecode(tmp_path / "ace.jsonl"), "acecode_jsonl")
    rates = record_pass_rates(prompts)
    assert rates == {"ace-add": [1.0, 1.0], "ace-rev": [0.0, 1.0], "ace-hard": [0.0, 0.5, 0.0]}
    kept, table = hard_subset(prompts, rates, max_mean=0.5, min_variance=0.04)
    assert [p.prompt_id for p in kept] == ["ace-rev", "ace-hard"]
    path = write_pass_rates(tmp_path / "rates.jsonl", table)
    assert read_pass_rates(path) == rates
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(DiffucoderError, match="bad.jsonl:1"):
        read_pass_rates(tmp_path / "bad.jsonl")
    no_inferences = [dict(ACECODE[0], inferences=None)]
    plain, _ = read_prompts(write_acecode(tmp_path / "plain.jsonl", no_inferences), "acecode_jsonl")
    with pytest.raises(DiffucoderError, match="no 'inferences' list"):
        record_pass_rates(plain)


def test_prompt_set_serves_the_row_loader(tmp_path):
    from diffucoder.training.data_loader import RowLoader
    prompts, _ = read_prompts(make_suite(tmp_path / "suite") / "tasks-train.jsonl", "synthetic")
    ranks = [RowLoader(PromptSet(prompts), 2, rank, 2, seed=0) for rank in (0, 1)]
    first = [loader.next_batch() for loader in ranks]
    assert all(len(batch) == 2 for batch in first)
    assert not {p.prompt_id for p in first[0]} & {p.prompt_id for p in first[1]}   # disjoint slices
