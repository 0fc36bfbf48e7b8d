"""The datatrove engine: global near-dedup across input parts, task slices, agreement with
the builtin engine on the standard library."""
from pathlib import Path

import numpy as np
import pytest
from data_corpora import near_copy, python_module, small_config, write_jsonl

from diffucoder.cli import main
from diffucoder.config import load_config
from diffucoder.data import CurateConfig, TokenShards, run_curate
from diffucoder.data.curate import run_curate_task
from diffucoder.data.remote import python_stdlib
from diffucoder.data.dedup import MinHasher
from diffucoder.data.shingles import code_tokens, jaccard, shingle_set, token_hashes
from diffucoder.data.trove import (CodeMinhashSignature, lsh_shape, minhash_config,
                                   stage_plan)
from diffucoder.errors import DiffucoderError

REPO = Path(__file__).resolve().parents[2]


def store_uri(tmp_path, name="curated"):
    return f"file://{tmp_path}/store/{name}"


def two_parts(tmp_path):
    """Two JSONL corpus parts; part 2 holds a near copy of a module of part 1."""
    part1 = [{"content": python_module(i), "path": f"a/m{i}.py"} for i in range(8)]
    part2 = [{"content": python_module(i), "path": f"b/m{i}.py"} for i in range(8, 16)]
    part2.insert(3, {"content": near_copy(python_module(5)), "path": "b/near_m5.py"})
    return [str(write_jsonl(tmp_path / "part-1.jsonl", part1)),
            str(write_jsonl(tmp_path / "part-2.jsonl", part2))]


def test_near_duplicate_split_across_two_parts_is_removed(tmp_path):
    parts = two_parts(tmp_path)
    cfg = small_config(tmp_path, parts, "tasks=2", "decontam.enabled=false")
    assert dict(stage_plan(cfg, workers=1))["select"] == 2       # one part per task
    result = run_curate(cfg, store_uri(tmp_path), progress=False)
    stats = result.stats
    assert stats["removed"]["dedup"] == {"exact_duplicate": 0, "near_duplicate": 1}
    assert stats["kept"]["documents"] == 16
    example = stats["near_dedup"]["examples"][0]
    assert {example["kept"], example["dropped"]} == {"a/m5.py", "b/near_m5.py"}
    assert example["true_jaccard"] > 0.7
    assert stats["near_dedup"]["checked_pairs"] == 1
    assert stats["near_dedup"]["below_threshold"] == 0


def test_builtin_engine_per_part_misses_what_datatrove_finds(tmp_path):
    # what the 7b recipe did before: one run per part, each with its own MinHash index
    parts = two_parts(tmp_path)
    per_part = [run_curate(small_config(tmp_path, [p], "engine=builtin",
                                        "decontam.enabled=false"),
                           store_uri(tmp_path, f"p{i}"), progress=False)
                for i, p in enumerate(parts)]
    assert sum(r.stats["removed"]["dedup"]["near_duplicate"] for r in per_part) == 0


def test_task_slices_run_separately_equal_one_local_run(corpus, tmp_path):
    from data_corpora import planted_humaneval
    (corpus / "planted").mkdir()
    (corpus / "planted" / "solution.py").write_text(planted_humaneval("HumanEval/3"))
    cfg = small_config(tmp_path, [str(corpus)], "tasks=3", "workers=2")
    whole = run_curate(cfg, store_uri(tmp_path, "whole"), progress=False)

    work = tmp_path / "pods"
    for stage, tasks in stage_plan(cfg, workers=2):
        for rank in reversed(range(tasks)):          # pods finish in any order
            run_curate_task(cfg, str(work), stage, rank)
    sliced = run_curate(cfg, store_uri(tmp_path, "sliced"), workdir=str(work),
                        progress=False, run_stages=False)

    for key in ("read", "removed", "removed_bytes", "kept"):
        assert whole.stats[key] == sliced.stats[key], key
    assert whole.stats["decontam"]["hits"] == sliced.stats["decontam"]["hits"]
    assert whole.stats["removed"]["dedup"] == {"exact_duplicate": 1, "near_duplicate": 1}
    a = TokenShards.open(whole.uri, cache_dir=tmp_path / "c")
    b = TokenShards.open(sliced.uri, cache_dir=tmp_path / "c")
    assert np.array_equal(a.train[:], b.train[:]) and np.array_equal(a.val[:], b.val[:])


def test_publishing_before_every_task_finished_names_the_missing_ones(corpus, tmp_path):
    cfg = small_config(tmp_path, [str(corpus)], "tasks=2")
    work = tmp_path / "pods"
    run_curate_task(cfg, str(work), "select", 0)
    with pytest.raises(DiffucoderError, match=r"select: ranks \[1\]"):
        run_curate(cfg, store_uri(tmp_path), workdir=str(work), progress=False,
                   run_stages=False)
    needs = r"stage exact needs the stages before it finished \(select: ranks \[1\]\)"
    with pytest.raises(DiffucoderError, match=needs):
        run_curate_task(cfg, str(work), "exact", 0)
    with pytest.raises(DiffucoderError, match=r"'--task-rank': 2 is outside 0..1"):
        run_curate_task(cfg, str(work), "select", 2)
    with pytest.raises(DiffucoderError, match=r"'--stage': 'sort' is not a stage"):
        run_curate_task(cfg, str(work), "sort", 0)
    with pytest.raises(DiffucoderError, match=r"'tasks': give a fixed number of tasks"):
        run_curate_task(small_config(tmp_path, [str(corpus)], "tasks=0"), str(work), "select", 0)


def test_code_signature_is_the_builtin_one_and_estimates_jaccard(tmp_path):
    cfg = small_config(tmp_path, ["x"], "dedup.num_perm=256")
    bands, rows = lsh_shape(256, 0.7)
    hasher = CodeMinhashSignature(str(tmp_path / "sigs"), minhash_config(cfg), 256)
    assert hasher.config.num_buckets == bands and hasher.config.hashes_per_bucket == rows
    assert bands * rows <= 256
    base = python_module(1, functions=10)
    builtin = MinHasher(num_perm=256, seed=1, shingle_size=5)
    assert np.array_equal(hasher.signature(base),
                          builtin.signature(token_hashes(code_tokens(base))))
    reindented = base.replace("    ", "\t").replace(" + ", "+")
    assert np.array_equal(hasher.signature(base), hasher.signature(reindented))
    copy = near_copy(base)
    estimate = np.mean(hasher.signature(base) == hasher.signature(copy))
    true_j = jaccard(shingle_set(base, 5), shingle_set(copy, 5))
    assert abs(estimate - true_j) < 0.12 and true_j > 0.7
    assert hasher.signature("") is None and hasher.signature("x = 1").shape == (256,)


def test_cli_runs_one_task_then_publishes(corpus, tmp_path, capsys):
    small_config(tmp_path, [str(corpus)])                  # writes recipe.yaml
    recipe, work = str(tmp_path / "recipe.yaml"), str(tmp_path / "pods")
    overrides = ["workers=1", "tasks=2"]
    assert main(["curate", "--config", recipe, "--print-plan", *overrides]) == 0
    plan = capsys.readouterr().out
    assert "select: 2 task(s)" in plan and "buckets: 14 task(s)" in plan
    for stage, tasks in stage_plan(load_config(CurateConfig, recipe, overrides), workers=1):
        for rank in range(tasks):
            assert main(["curate", "--config", recipe, "--workdir", work, "--stage", stage,
                         "--task-rank", str(rank), *overrides]) == 0
    out = capsys.readouterr().out
    assert "finished task 1 of stage keep" in out and "finished task 13 of stage buckets" in out
    assert main(["curate", "--config", recipe, "--workdir", work, "--stage", "publish",
                 "--output", str(tmp_path / "store" / "c"), "--no-progress", *overrides]) == 0
    assert f"published file://{tmp_path}/store/c" in capsys.readouterr().out
    assert main(["curate", "--config", recipe, "--stage", "select", "--task-rank", "0"]) == 2
    assert "--stage needs --workdir" in capsys.readouterr().err


@pytest.mark.integration
def test_stdlib_slice_agrees_with_the_builtin_engine(tmp_path):
    stdlib = python_stdlib()
    slice_ = ", ".join(str(stdlib / d) for d in ("encodings", "json", "email", "unittest",
                                                  "asyncio"))
    runs = {}
    for engine, tasks in (("builtin", 1), ("datatrove", 1), ("datatrove", 3)):
        cfg = load_config(CurateConfig, REPO / "configs" / "tiny-cpu" / "curate.yaml", [
            f"input.paths=[{slice_}]", f"engine={engine}", f"tasks={tasks}", "workers=2",
            "tokenizer.vocab_size=512", "pack.seq_len=128", "report.plots=false"])
        stats = run_curate(cfg, store_uri(tmp_path, f"{engine}{tasks}"), progress=False).stats
        runs[f"{engine}/{tasks}"] = {**stats["removed"]["dedup"],
                                     "kept": stats["kept"]["documents"]}
    builtin, one, three = runs["builtin/1"], runs["datatrove/1"], runs["datatrove/3"]
    assert builtin["near_duplicate"] >= 20, runs
    # one task meets the files in the builtin engine's order: the same decisions
    assert one == builtin, runs
    # three tasks meet them in (task, position) order: the same exact duplicates, and the
    # near-duplicate count within 10% (another member of a group may be the kept one)
    assert three["exact_duplicate"] == builtin["exact_duplicate"], runs
    assert abs(three["near_duplicate"] - builtin["near_duplicate"]) <= \
        0.1 * builtin["near_duplicate"], runs
