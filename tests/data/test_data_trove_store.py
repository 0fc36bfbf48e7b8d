"""Task slices against a work directory in the store (file:// and the real S3 test server):
each slice downloads what it reads and publishes what it wrote; the result is one local run's."""
import numpy as np
import pytest
from data_corpora import planted_humaneval, small_config

from diffucoder.data import TokenShards, run_curate
from diffucoder.data.curate import run_curate_task
from diffucoder.data.trove import stage_slices
from diffucoder.data.trove_store import StoreWorkdir
from diffucoder.errors import DiffucoderError
from diffucoder.stages.curate import curate_slice_plan, run_curate_slice, run_curate_stage
from diffucoder.store import open_store


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def store_root(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "store").as_uri()
    return request.getfixturevalue("s3_uri")


def test_store_backed_slices_equal_one_local_run(corpus, tmp_path, store_root):
    (corpus / "planted").mkdir()
    (corpus / "planted" / "solution.py").write_text(planted_humaneval("HumanEval/3"))
    cfg = small_config(tmp_path, [str(corpus)], "tasks=3", "workers=2", "spread.tasks_per_pod=2")
    whole = run_curate(cfg, f"{store_root}/whole", progress=False)

    work = f"{store_root}/runs/r1/curate-work"
    slices = stage_slices(cfg, workers=2)
    assert slices["select"] == ["0:2", "2:3"] and slices["exact"] == ["0:1"]
    for stage, pods in slices.items():
        for ranks in reversed(pods):                     # pods finish in any order
            assert "published" in run_curate_task(cfg, work, stage, ranks)
    # a retried pod whose slice is published does nothing
    assert run_curate_task(cfg, work, "keep", "2:3").startswith("already published")
    store = open_store(store_root)
    published = store.list_artifacts("runs/r1/curate-work/")
    assert "runs/r1/curate-work/select/00000-00002" in published
    assert len(published) == sum(len(p) for p in slices.values())
    assert StoreWorkdir(work).missing(cfg) == {}
    sliced = run_curate(cfg, f"{store_root}/sliced", workdir=work, progress=False, run_stages=False)

    for key in ("read", "removed", "removed_bytes", "kept"):
        assert whole.stats[key] == sliced.stats[key], key
    assert whole.stats["decontam"]["hits"] == sliced.stats["decontam"]["hits"]
    assert whole.stats["removed"]["dedup"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert whole.stats["decontam"]["hit_count"] == 1
    a = TokenShards.open(whole.uri, cache_dir=tmp_path / "c")
    b = TokenShards.open(sliced.uri, cache_dir=tmp_path / "c")
    assert np.array_equal(a.train[:], b.train[:]) and np.array_equal(a.val[:], b.val[:])


def test_store_slices_refuse_to_run_or_publish_before_the_earlier_stages(corpus, tmp_path):
    cfg = small_config(tmp_path, [str(corpus)], "tasks=2")
    work = (tmp_path / "store" / "runs" / "r1" / "curate-work").as_uri()
    run_curate_task(cfg, work, "select", 0)
    with pytest.raises(DiffucoderError, match=r"stage exact needs the stages before it finished "
                                              r"\(select: ranks \[1\]\)"):
        run_curate_task(cfg, work, "exact", 0)
    with pytest.raises(DiffucoderError, match=r"curation tasks have not all finished in .*curate-work "
                                              r"\(select: ranks \[1\]; exact: ranks \[0\]"):
        run_curate(cfg, (tmp_path / "store" / "c").as_uri(), workdir=work, progress=False,
                   run_stages=False)
    assert not open_store(tmp_path / "store").list_artifacts("c")      # nothing half-published
    with pytest.raises(DiffucoderError, match=r"'--task-rank': 1:3 is outside 0..1"):
        run_curate_task(cfg, work, "keep", "1:3")
    with pytest.raises(DiffucoderError, match=r"'--task-rank': 'x' is not a rank"):
        run_curate_task(cfg, work, "keep", "x")
    # a stage the recipe does not run gets the pipeline's empty slice, and only that
    no_exact = small_config(tmp_path, [str(corpus)], "tasks=2", "dedup.exact=false")
    assert "nothing to do" in run_curate_task(no_exact, work, "exact", "0:0")
    with pytest.raises(DiffucoderError, match=r"'--stage': 'exact' is not a stage of this recipe"):
        run_curate_task(no_exact, work, "exact", "0:1")


def test_the_stage_api_plans_runs_slices_and_publishes_the_run_artifact(corpus, tmp_path):
    """What the pipeline's curate-plan, curate-<stage> pods and curate-publish call, in order."""
    overrides = ["tasks=2", "spread.tasks_per_pod=1", "tokenizer.vocab_size=300", "pack.seq_len=32",
                 "decontam.enabled=false", f"input.paths=[{corpus}]"]
    store = (tmp_path / "store").as_uri()
    plan = curate_slice_plan("tiny-cpu", "", overrides)
    assert plan["select"] == ["0:1", "1:2"] and plan["select_cpu"] == "1"
    for stage in ("select", "exact", "signatures", "buckets", "clusters", "keep"):
        for ranks in plan[stage]:
            assert "published" in run_curate_slice("tiny-cpu", "", store, "r1", overrides, stage, ranks)
    out = run_curate_stage("tiny-cpu", "", store, "r1", overrides, progress=False, from_slices=True)
    assert out.uri == f"{store}/runs/r1/curated"
    assert out.metrics["docs_kept"] > 0 and out.metrics["removed_near_duplicate"] == 1


def test_a_run_that_starts_after_curation_gets_slices_that_do_nothing(tmp_path):
    """start_stage sft: the plan gives every stage "0:0" (tiny-cpu has no fixed tasks: no matter),
    each pod does nothing and never reads the input (it does not exist here)."""
    store = (tmp_path / "store").as_uri()
    absent = str(tmp_path / "no-such-input")
    plan = curate_slice_plan("tiny-cpu", absent, [], "sft")
    for stage in ("select", "exact", "signatures", "buckets", "clusters", "keep"):
        (ranks,) = plan[stage]
        assert ranks == "0:0"
        assert "nothing to do" in run_curate_slice("tiny-cpu", absent, store, "r1", [], stage, ranks, "sft")
    assert not open_store(tmp_path / "store").list_artifacts("")
    with pytest.raises(DiffucoderError, match=r"'--task-rank': 0:0 is outside"):   # a run that curates
        run_curate_slice("tiny-cpu", "", store, "r1", ["tasks=2"], "exact", "0:0")
