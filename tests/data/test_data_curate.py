import json

import numpy as np
import pytest
from data_corpora import planted_humaneval, small_config, write_jsonl, write_tree

from diffucoder.data import TokenShards, run_curate
from diffucoder.errors import DiffucoderError
from diffucoder.store import open_store


def store_uri(tmp_path, name="curated"):
    return f"file://{tmp_path}/store/{name}"


@pytest.mark.parametrize("engine", ["datatrove", "builtin"])
def test_curate_publishes_shards_report_and_counts(corpus, tmp_path, engine):
    (corpus / "planted").mkdir()
    (corpus / "planted" / "solution.py").write_text(planted_humaneval("HumanEval/2"))
    cfg = small_config(tmp_path, [str(corpus)], f"engine={engine}")
    result = run_curate(cfg, store_uri(tmp_path), progress=False)
    stats = result.stats

    assert result.uri == store_uri(tmp_path)
    assert stats["read"]["bad_input"]["binary"] == 1
    assert stats["read"]["bad_input"]["invalid_utf8"] == 1
    assert stats["removed"]["dedup"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert stats["removed"]["decontam"]["benchmark_overlap"] == 1
    assert stats["decontam"]["hits"][0]["task_id"] == "HumanEval/2"
    assert stats["decontam"]["hits"][0]["path"].endswith("planted/solution.py")
    assert stats["kept"]["documents"] == 12            # 12 distinct modules, all else removed
    example = stats["near_dedup"]["examples"][0]
    assert example["dropped"].endswith("near_mod_1.py") and example["kept"].endswith("mod_1.py")
    assert example["true_jaccard"] > 0.7 and abs(example["estimated_jaccard"]
                                                 - example["true_jaccard"]) < 0.15
    assert result.metrics["docs_kept"] == 12.0 and result.metrics["removed_near_duplicate"] == 1

    report = result.report_md.read_text()
    assert "near_mod_1.py" in report and "HumanEval/2" in report
    assert "| filter | min_file_bytes |" in report
    assert json.loads(result.stats_json.read_text())["kept"]["documents"] == 12
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.plots)

    manifest = open_store(f"{tmp_path}/store").read_manifest("curated")
    assert manifest.metadata["special_tokens"] == {"eos": 0, "pad": 0, "mask": 1, "dlm_pad": 2}
    assert {"train/shard-00000.npy", "val/shard-00000.npy", "tokenizer/tokenizer.json",
            "stats.json", "report.md", "length_histogram.png",
            "removals.png"} <= set(manifest.files)

    shards = TokenShards.open(result.uri, cache_dir=tmp_path / "cache")
    assert shards.seq_len == 32 and shards.dtype == np.uint16
    assert len(shards.train) == manifest.metadata["train_rows"] > 0 and len(shards.val) > 0
    assert stats["pack"]["train"]["documents"] + stats["pack"]["val"]["documents"] == 12
    tok = shards.load_tokenizer()
    text = tok.decode(shards.train[:].ravel().tolist())
    assert "<|endoftext|>" in text and "import math" in text
    assert "has_close_elements" not in text and "# tweaked" not in text
    assert int(shards.train[:].max()) < shards.vocab_size


@pytest.mark.parametrize("engine", ["datatrove", "builtin"])
def test_parallel_workers_give_the_same_result(corpus, tmp_path, engine):
    # the datatrove engine's output depends on the number of tasks, never on the workers
    inline = run_curate(small_config(tmp_path, [str(corpus)], f"engine={engine}", "tasks=2"),
                        store_uri(tmp_path, "a"), progress=False)
    pooled = run_curate(small_config(tmp_path, [str(corpus)], f"engine={engine}", "tasks=2",
                                     "workers=2"), store_uri(tmp_path, "b"), progress=False)
    assert inline.stats["removed"] == pooled.stats["removed"]
    assert inline.metadata["train_rows"] == pooled.metadata["train_rows"]
    a = TokenShards.open(inline.uri, cache_dir=tmp_path / "c")
    b = TokenShards.open(pooled.uri, cache_dir=tmp_path / "c")
    assert np.array_equal(a.train[:], b.train[:])


def test_jsonl_input_with_malformed_lines(tmp_path):
    from data_corpora import python_module
    records = [{"content": python_module(i), "path": f"repo/m{i}.py", "language": "Python",
                "license": "mit"} for i in range(10)]
    path = write_jsonl(tmp_path / "part.jsonl", records, raw_lines=[b"{oops", b"[1, 2]"])
    result = run_curate(small_config(tmp_path, [str(path)]), store_uri(tmp_path),
                        progress=False)
    assert result.stats["read"]["bad_input"]["malformed_record"] == 2
    assert result.stats["kept"]["documents"] == 10


def nothing_published(tmp_path):
    root = tmp_path / "store"
    return not root.exists() or open_store(str(root)).list_artifacts() == []


def test_missing_input_is_a_clear_error_and_publishes_nothing(tmp_path):
    cfg = small_config(tmp_path, [str(tmp_path / "no-such-dir")])
    with pytest.raises(DiffucoderError, match=r"'input.paths\[0\]': .*no-such-dir does not exist"):
        run_curate(cfg, store_uri(tmp_path), workdir=str(tmp_path / "work"), progress=False)
    assert nothing_published(tmp_path)


def test_empty_result_is_a_clear_error_and_publishes_nothing(tmp_path):
    root = write_tree(tmp_path / "tiny", {"a.py": "x = 1\n", "b.py": "y = 2\n"})
    with pytest.raises(DiffucoderError, match="all 2 documents were removed"):
        run_curate(small_config(tmp_path, [str(root)]), store_uri(tmp_path), progress=False)
    assert nothing_published(tmp_path)
    empty = write_tree(tmp_path / "empty", {"README.txt": "no code here\n"})
    with pytest.raises(DiffucoderError, match="no document was read"):
        run_curate(small_config(tmp_path, [str(empty)]), store_uri(tmp_path), progress=False)
    assert nothing_published(tmp_path)


def test_too_little_text_for_one_row_is_an_error(corpus, tmp_path):
    cfg = small_config(tmp_path, [str(corpus)], "pack.seq_len=100000",
                       "pack.shard_tokens=100000")
    with pytest.raises(DiffucoderError, match="fewer than one row of pack.seq_len=100000"):
        run_curate(cfg, store_uri(tmp_path), progress=False)
    assert nothing_published(tmp_path)


def test_own_workdir_is_cleaned_but_a_given_one_is_kept(corpus, tmp_path):
    result = run_curate(small_config(tmp_path, [str(corpus)]), store_uri(tmp_path),
                        progress=False)
    work = result.report_md.parent.parent
    assert sorted(p.name for p in work.iterdir()) == ["report"]
    kept = tmp_path / "mywork"
    run_curate(small_config(tmp_path, [str(corpus)]), store_uri(tmp_path, "again"),
               workdir=str(kept), progress=False)
    assert (kept / "artifact" / "shards.json").is_file()
