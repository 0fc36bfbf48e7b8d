"""RL prompts from both data kinds, and the hard-prompt filter on fixed numbers."""
import json

import numpy as np
import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.rl.prompts import (PromptSet, RLPrompt, acecode_instruction, hard_subset, is_hard, limit_prompts,
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


def test_released_prompt_style_has_a_system_turn_and_appends_the_first_case_to_plain_questions(tmp_path):
    from diffucoder.rl.prompts import acecode_prompt
    plain = {"id": "p", "question": "Write add(a, b).", "test_cases": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    coded = {"id": "c", "question": "Complete this:\n```\ndef add(a, b):\n```\n", "test_cases": ["assert add(1, 2) == 3"]}
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert acecode_prompt(plain, "x", "released").text == (
        system + "<|im_start|>user\nWrite add(a, b).\nTest cases: assert add(1, 2) == 3\n<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert acecode_prompt(coded, "x", "released").text == (      # the question holds a fenced block: no case
        system + "<|im_start|>user\nComplete this:\n```\ndef add(a, b):\n```\n<|im_end|>\n<|im_start|>assistant\n")
    assert acecode_prompt(plain, "x", "project").text == (
        "<|im_start|>user\nWrite add(a, b).\n\nYour code should pass this test:\nassert add(1, 2) == 3<|im_end|>\n"
        "<|im_start|>assistant\n")
    with pytest.raises(DiffucoderError, match="prompt_style"):
        acecode_prompt(plain, "x", "chatty")


def test_percentile_thresholds_over_every_prompt_as_the_released_script():
    # five prompts; means 0, .25, .5, .5, 1 and population stds 0, .25, .5, 0, 0
    rates = {"a": [0.0, 0.0], "b": [0.0, 0.5], "c": [0.0, 1.0], "d": [0.5, 0.5], "e": [1.0, 1.0]}
    prompts = [RLPrompt(i, i, "assert True\n", None) for i in rates]
    # 20th percentile of the sorted means [0, .25, .5, .5, 1]: rank 0.2 * 4 = 0.8 -> 0 + 0.8 * (.25 - 0) = 0.2
    # 40th percentile of the sorted stds [0, 0, 0, .25, .5]: rank 1.6 -> 0 + 0.6 * (0 - 0) = 0
    kept, table = hard_subset(prompts, rates, 0.0, 0.0, thresholds="percentile", mean_percentile=20,
                              std_percentile=40)
    assert [p.prompt_id for p in kept] == ["a"]          # mean 0 <= 0.2 and std 0 >= 0
    # 60th percentile of the means: rank 2.4 -> .5; 60th of the stds: rank 2.4 -> 0 + 0.4 * .25 = 0.1
    kept, _ = hard_subset(prompts, rates, 0.0, 0.0, thresholds="percentile", mean_percentile=60,
                          std_percentile=60)
    assert [p.prompt_id for p in kept] == ["b", "c"]     # means .25/.5 <= .5 and stds .25/.5 >= .1
    assert [row["std"] for row in table] == [0.0, 0.25, 0.5, 0.0, 0.0]


def test_record_pass_rates_of_the_named_reference_models_only():
    from diffucoder.rl.prompts import acecode_prompt
    prompts = [acecode_prompt(r, r["id"]) for r in ACECODE if r["id"] != "ace-broken"]
    assert record_pass_rates(prompts, ["m1", "m3"]) == {"ace-add": [1.0], "ace-rev": [0.0], "ace-hard": [0.0, 0.0]}
    with pytest.raises(DiffucoderError, match="of m9"):
        record_pass_rates(prompts, ["m9"])


def test_stub_form_of_questions_without_you():
    from diffucoder.rl.prompts import acecode_prompt, stub_prompt
    record = {"id": "sq", "question": "Return x squared.", "test_cases": ["assert sq(2) == 4"],
              "inferences": [{"pass_rate": 0.2, "completion": "def bad(x):\n    return x"},
                             {"pass_rate": 1.0, "completion": "def sq(x: int) -> int:\n    return x * x\n"}]}
    stub = stub_prompt(acecode_prompt(record, "sq", "released"), "released")
    assert stub.prompt_id == "sq-stub" and stub.tests == "assert sq(2) == 4\n"
    assert stub.record["question"] == ('Please complete the following problem:\n```\ndef sq(x: int) -> int:\n'
                                       '    """\n    Return x squared.\n    """\n```\n')
    assert "Test cases:" not in stub.text                  # the stub holds a fenced block
    asked = {**record, "question": "Can you return x squared?"}
    assert stub_prompt(acecode_prompt(asked, "sq", "released"), "released") is None


def test_long_prompts_keep_their_last_tokens_when_asked(tmp_path):
    from diffucoder.rl.prompts import limit_prompts
    from tests.rl.rl_trainer_helpers import make_model_dir
    from diffucoder.sampling import load_tokenizer
    tokenizer = load_tokenizer(make_model_dir(tmp_path / "m"))
    prompts, _ = read_prompts(write_acecode(tmp_path / "a.jsonl"), "acecode_jsonl")
    dropped, too_long = limit_prompts(prompts, tokenizer, 8, 0, 0)
    kept, none_dropped = limit_prompts(prompts, tokenizer, 8, 0, 0, keep_long=True)
    assert too_long == len(prompts) and dropped == [] and none_dropped == 0 and kept == prompts
