"""The synthetic task suite: deterministic, honestly split, references pass their own tests."""
import ast
import collections

import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.tasks import (FAMILIES, extract_python_block, generate_suite, read_tasks, split_of,
                              verify_references, write_suite)
from diffucoder.tasks.suite import params_key


def test_suite_is_deterministic_and_has_many_families():
    first, second = generate_suite(seed=3), generate_suite(seed=3)
    assert [t.record() for t in first] == [t.record() for t in second]
    assert len(FAMILIES) >= 15
    assert {t.family for t in first} == set(FAMILIES)
    assert len({t.task_id for t in first}) == len(first)


def test_split_is_by_parameters_and_independent_of_the_seed():
    a, b = generate_suite(seed=0), generate_suite(seed=1)
    heldout_a = {t.task_id for t in a if t.split == "heldout"}
    heldout_b = {t.task_id for t in b if t.split == "heldout"}
    train_a = {t.task_id for t in a if t.split == "train"}
    assert heldout_a == heldout_b and heldout_a and train_a
    assert not heldout_a & train_a
    for task in a:  # the split follows from (family, parameters) alone
        assert task.split == split_of(task.family, task.params, 0.2)
        assert task.task_id == f"synth/{task.family}/{params_key(task.params)}"
    # the seed changes the wording or the test inputs of (almost) every task
    changed = sum(x.test != y.test or x.prompt != y.prompt for x, y in zip(a, b))
    assert changed > 0.9 * len(a)
    share = len(heldout_a) / len(a)
    assert 0.1 < share < 0.3


def test_rl_split_takes_training_parameters_only_and_is_written_for_rl(tmp_path):
    plain = generate_suite(seed=0)
    split = generate_suite(seed=0, rl_fraction=0.25, wordings=2)
    ids = {name: {t.task_id.split("@")[0] for t in split if t.split == name} for name in ("train", "rl", "heldout")}
    # the held-out tasks are those of a suite without an RL split; RL and SFT parameters never meet
    assert ids["heldout"] == {t.task_id for t in plain if t.split == "heldout"}
    assert ids["rl"] and not ids["rl"] & ids["train"] and not ids["rl"] & ids["heldout"]
    assert ids["rl"] | ids["train"] == {t.task_id for t in plain if t.split == "train"}
    assert 0.15 < len(ids["rl"]) / (len(ids["rl"]) + len(ids["train"])) < 0.35
    assert sum(t.task_id.endswith("@wording1") for t in split if t.split == "rl") == len(ids["rl"])
    for task in split:
        assert task.split == split_of(task.family, task.params, 0.2, 0.25)
    paths = write_suite(split, tmp_path / "suite")
    rl_records = read_tasks(paths["tasks-rl"])
    assert {r["task_id"] for r in rl_records} == {t.task_id for t in split if t.split == "rl"}
    sft_ids = {r["task_id"] for r in read_tasks(paths["sft-train"])}
    assert len(sft_ids) == sum(t.split == "train" for t in split)
    assert not sft_ids & {r["task_id"] for r in rl_records}
    assert "tasks-rl" not in write_suite(plain, tmp_path / "plain")
    assert not (tmp_path / "plain" / "tasks-rl.jsonl").exists()
    with pytest.raises(DiffucoderError, match="rl_fraction"):
        generate_suite(seed=0, rl_fraction=1.0)


def test_max_per_family_caps_each_family_and_split():
    tasks = generate_suite(seed=0, max_per_family=5)
    counts = collections.Counter((t.family, t.split) for t in tasks)
    assert max(counts.values()) == 5
    assert counts[("polynomial", "train")] == 5


def test_wordings_reword_training_tasks_only_and_keep_their_parameters():
    one = generate_suite(seed=3, max_per_family=6, families=["affine_map", "replace_char"])
    three = generate_suite(seed=3, max_per_family=6, families=["affine_map", "replace_char"], wordings=3)
    train = [t for t in one if t.split == "train"]
    assert [t for t in three if t.split == "heldout"] == [t for t in one if t.split == "heldout"]
    assert [t for t in three if "@" not in t.task_id] == one
    for base in train:
        variants = [t for t in three if t.task_id.split("@")[0] == base.task_id]
        assert [t.task_id for t in variants] == [base.task_id, f"{base.task_id}@wording1", f"{base.task_id}@wording2"]
        assert all(t.params == base.params and t.split == "train" for t in variants)
        # each extra wording is the one the next seed writes
        reseeded = {t.task_id: t for t in generate_suite(seed=4, max_per_family=0, families=[base.family])}
        if base.task_id in reseeded:
            assert variants[1].instruction == reseeded[base.task_id].instruction
    assert len({t.instruction for t in three if t.split == "train"}) > len(train)
    with pytest.raises(DiffucoderError, match="wordings"):
        generate_suite(wordings=0)


def test_reference_solutions_pass_their_tests():
    tasks = generate_suite(seed=0)
    assert verify_references(tasks) == []
    for task in tasks[::7]:
        assert task.test.startswith("def check(candidate):\n")
        assert task.test.count("assert ") >= 4
        assert len(task.asserts) == task.test.count("assert ")
        ast.parse(task.prompt + task.canonical_solution)


def test_a_wrong_solution_is_caught():
    task = generate_suite(seed=0, families=["caesar_shift"])[0].record()
    task["canonical_solution"] = "    return s\n".replace("s", task["prompt"].split("(")[1].split(":")[0])
    failures = verify_references([task])
    assert len(failures) == 1 and task["task_id"] in failures[0] and "AssertionError" in failures[0]


def test_chat_records_answer_with_one_fenced_block_that_passes_the_asserts():
    for task in generate_suite(seed=2, max_per_family=2):
        chat = task.chat_record()
        user, assistant = chat["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert f"`{task.entry_point}(" in user["content"] and "For example:" in user["content"]
        code = extract_python_block(assistant["content"])
        assert code is not None and code.startswith(f"def {task.entry_point}(")
        scope = {}
        exec(code + "\n" + "\n".join(task.asserts), scope)  # trusted: the suite's own reference


def test_write_and_read_the_suite(tmp_path):
    tasks = generate_suite(seed=0, max_per_family=3)
    paths = write_suite(tasks, tmp_path / "suite")
    assert set(paths) == {"tasks-train", "tasks-heldout", "sft-train", "sft-heldout"}
    heldout = read_tasks(paths["tasks-heldout"])
    assert {r["task_id"] for r in heldout} == {t.task_id for t in tasks if t.split == "heldout"}
    assert set(heldout[0]) >= {"task_id", "prompt", "entry_point", "canonical_solution", "test"}
    sft = read_tasks(paths["sft-train"])
    assert len(sft) == sum(t.split == "train" for t in tasks)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(DiffucoderError, match="unknown task families"):
        generate_suite(families=["no_such_family"])
    with pytest.raises(DiffucoderError, match="heldout_fraction"):
        generate_suite(heldout_fraction=1.5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": 1}\nnot json\n')
    with pytest.raises(DiffucoderError, match="bad.jsonl:2"):
        read_tasks(bad)
