"""A few coupled-GRPO steps end to end on a micro model: real sampler, real sandbox, real store."""
import json

import pytest
import torch
from safetensors.torch import load_file

from diffucoder.config import ConfigError
from diffucoder.errors import DiffucoderError
from diffucoder.model import load_model
from diffucoder.recipes.coupled_grpo import train_rl
from diffucoder.rl.report import KFP_METRIC_KEYS, METRIC_KEYS, PLOT
from diffucoder.sampling import load_tokenizer
from diffucoder.store import open_store, resolve
from tests.rl.rl_trainer_helpers import ACECODE, make_model_dir, make_suite, micro_rl_config, write_acecode


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-trainer")
    return make_model_dir(root / "sft"), make_suite(root / "tasks")


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_steps_write_metrics_report_and_a_loadable_model(assets, tmp_path):
    model_dir, suite = assets
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    store.put_artifact("runs/r1/tasks", suite, metadata={"kind": "task-suite"})
    cfg = micro_rl_config(model_dir, f"{store_root}/runs/r1/tasks", tmp_path / "w", steps=3, extra=[
        f"output.uri={store_root}/runs/r1/rl", "data.eval_file=tasks-heldout.jsonl", "train.eval_batches=1",
        "train.eval_every=2"])
    result = train_rl(cfg)

    rows = _rows(tmp_path / "w")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]            # step 0: the held-out start point
    assert set(METRIC_KEYS) <= set(rows[1]) and rows[1]["rollouts"] == 4 and rows[3]["rollouts"] == 12
    assert {"eval_pass_rate", "eval_reward_mean"} <= set(rows[0]) | set(rows[2]) and "eval_pass_rate" in rows[3]
    for row in rows[1:]:
        assert 0.0 <= row["pass_rate"] <= row["format_reward"] + 1e-9 <= 1.0 + 1e-9
        assert 0.0 <= row["zero_adv_fraction"] <= 1.0 and row["completion_tokens"] <= 16
        assert row["seconds_step"] >= row["seconds_rollout"] + row["seconds_update"] - 1e-6
        assert row["logp_var"] >= 0 and row["kl"] >= 0
    assert rows[1]["lr"] > rows[3]["lr"]                        # cosine decay over the updates

    s = result.summary
    assert s["stage"] == "rl" and s["steps"] == 3 and s["rollouts"] == 12 and s["prompts"] > 4
    assert s["initial_eval_pass_rate"] is not None and s["final_eval_pass_rate"] is not None
    assert all(key in s for key in KFP_METRIC_KEYS)
    training = result.model_dir / "training"
    assert {"metrics.jsonl", PLOT, "report.md", "recipe.yaml", "summary.json"} <= {p.name for p in training.iterdir()}
    assert "# RL report" in result.report_md and f"]({PLOT})" in result.report_md
    # the export is what evaluation and serving load: the same Hugging Face dir as SFT's
    trained = load_model(result.model_dir)
    assert load_tokenizer(result.model_dir).get_vocab() == load_tokenizer(model_dir).get_vocab()
    start = load_file(model_dir / "model.safetensors")
    assert any(not torch.equal(start[k], v) for k, v in trained.state_dict().items())
    assert result.model_uri == f"{store_root}/runs/r1/rl"
    store_, name = resolve(result.model_uri)
    meta = store_.read_manifest(name).metadata
    assert meta["stage"] == "rl" and meta["kind"] == "model"
    assert "training/summary.json" in store_.read_manifest(name).files


def test_beta_zero_has_no_reference(assets, tmp_path, monkeypatch):
    model_dir, suite = assets
    import diffucoder.recipes.coupled_grpo as trainer
    loads = []
    real = trainer.load_policy
    monkeypatch.setattr(trainer, "load_policy", lambda *a, **k: loads.append(1) or real(*a, **k))
    cfg = micro_rl_config(model_dir, suite, tmp_path / "w", steps=2, extra=["objective.beta=0"])
    result = train_rl(cfg)
    assert len(loads) == 1                                      # the policy only
    assert all(r["kl"] == 0.0 for r in _rows(tmp_path / "w")) and result.summary["beta"] == 0.0


def test_acecode_data_with_hard_filter_from_records(assets, tmp_path):
    model_dir, _suite = assets
    data = write_acecode(tmp_path / "ace.jsonl")
    cfg = micro_rl_config(model_dir, data, tmp_path / "w", steps=1, extra=[
        "data.kind=acecode_jsonl", "hard_filter.enabled=true", "hard_filter.source=records",
        "hard_filter.max_mean=0.5", "hard_filter.min_variance=0.04", "rollout.prompts_per_step=2"])
    result = train_rl(cfg)
    assert result.summary["hard_filter"]["kept"] == 2 and result.summary["prompts"] == 2
    assert result.summary["data"]["unusable_tests"] == 1


RELEASED = ["data.prompt_style=released", "data.long_prompts=truncate_left", "data.max_prompt_tokens=40",
            "reward.format_rule=official", "reward.test_runs=each", "reward.test_timeout_s=5",
            "objective.loss_norm=token", "objective.mask_span=completion", "objective.mask_seeds=shared",
            "objective.estimator.ratio=per_batch", "objective.beta=0.01", "objective.ref_sync_every=2",
            "objective.ref_sync_unit=optimizer_steps", "objective.ref_sync_alpha=0.6"]


@pytest.mark.integration
def test_the_released_trainers_choices_run_end_to_end_and_resume(assets, tmp_path):
    """Every released-trainer option at once, on AceCode records filtered as the released data
    script does (percentiles over two named reference models, stub duplicates)."""
    model_dir, _suite = assets
    records = [{**r, "inferences": [{**i, "completion": f"def {r['id'].split('-')[1]}(x):\n    return x"}
                                    for i in r["inferences"]]} for r in ACECODE]
    data = write_acecode(tmp_path / "ace.jsonl", records)
    filtering = ["data.kind=acecode_jsonl", "hard_filter.enabled=true", "hard_filter.source=records",
                 "hard_filter.thresholds=percentile", "hard_filter.mean_percentile=70",
                 "hard_filter.std_percentile=30", "hard_filter.models=[m1, m2]", "hard_filter.duplicate_stubs=true"]
    ckpt = [f"checkpoint.uri={(tmp_path / 'ckpt').as_uri()}", "checkpoint.every_steps=1"]
    cfg = micro_rl_config(model_dir, data, tmp_path / "w", steps=2, extra=[*RELEASED, *filtering, *ckpt])
    result = train_rl(cfg)
    info = result.summary["hard_filter"]
    # m1/m2 means: add 1.0, rev 0.5, sq 0.25 (70th percentile 0.7); stds: 0, 0.5, 0.25 (30th: 0.15):
    # rev and sq are hard; neither question says "you", so both come back as stubs too
    assert (info["hard"], info["kept"], result.summary["prompts"]) == (2, 4, 4)
    rows = _rows(tmp_path / "w")
    assert [r["step"] for r in rows] == [1, 2] and all(r["kl"] >= 0 for r in rows)
    # resuming after the last checkpoint keeps the stub prompts the checkpoint names
    again = train_rl(micro_rl_config(model_dir, data, tmp_path / "w2", steps=2,
                                     extra=[*RELEASED, *filtering, *ckpt]))
    assert again.summary["resumed_from_step"] == 2 and again.summary["prompts"] == 4


def test_hard_filter_by_sampling_and_one_that_keeps_nothing(assets, tmp_path):
    model_dir, suite = assets
    keep_all = ["hard_filter.enabled=true", "hard_filter.source=sample", "hard_filter.samples=2",
                "hard_filter.max_mean=1.0", "hard_filter.min_variance=0.0", "data.max_prompts=4"]
    result = train_rl(micro_rl_config(model_dir, suite, tmp_path / "a", steps=1, extra=keep_all))
    assert result.summary["hard_filter"]["prompts"] == 4 == result.summary["hard_filter"]["kept"]
    # a random model passes nothing: no prompt has any variance, so nothing is hard
    with pytest.raises(DiffucoderError, match="hard filter kept none of 4 prompts"):
        train_rl(micro_rl_config(model_dir, suite, tmp_path / "b", steps=1,
                                 extra=[*keep_all, "hard_filter.min_variance=0.01"]))


def test_resume_restores_weights_reference_and_prompt_order(assets, tmp_path):
    """Resuming from step 2 of 3 (after a reference re-sync at step 2) ends bit-identical."""
    model_dir, suite = assets
    ckpt = (tmp_path / "ckpt").as_uri()
    cfg = micro_rl_config(model_dir, suite, tmp_path / "w", steps=3, extra=[
        f"checkpoint.uri={ckpt}", "checkpoint.every_steps=1", "checkpoint.keep_last=2",
        "objective.ref_sync_every=2", "objective.beta=0.5"])
    straight = train_rl(cfg)
    weights = load_file(tmp_path / "w" / "model" / "model.safetensors")
    store = open_store(ckpt)
    assert store.list_artifacts("step-") == ["step-00000002", "step-00000003"]
    assert "engine/reference.pt" in store.read_manifest("step-00000002").files
    store.delete_artifact("step-00000003")                      # as if killed during step 3
    resumed = train_rl(cfg)
    assert resumed.summary["resumed_from_step"] == 2
    again = load_file(tmp_path / "w" / "model" / "model.safetensors")
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
    assert [r["step"] for r in _rows(tmp_path / "w")] == [1, 2, 3]
    assert resumed.summary["final_reward_mean"] == straight.summary["final_reward_mean"]


def test_inputs_are_checked_before_any_model(assets, tmp_path):
    model_dir, suite = assets
    with pytest.raises(ConfigError, match="'model.init_from': required"):
        train_rl(micro_rl_config("", suite, tmp_path / "w", extra=["model.init_from=''"]))
    with pytest.raises(ConfigError, match="'data.uri'"):
        train_rl(micro_rl_config(model_dir, tmp_path / "nothing", tmp_path / "w"))
    with pytest.raises(ConfigError, match="leaves no room for a prompt"):
        train_rl(micro_rl_config(model_dir, suite, tmp_path / "w", extra=[
            "rollout.sampling.max_new_tokens=1024", "rollout.sampling.steps=4"]))
    single = suite / "tasks-train.jsonl"
    with pytest.raises(ConfigError, match="'data.eval_file'"):
        train_rl(micro_rl_config(model_dir, single, tmp_path / "w", extra=["data.eval_file=tasks-heldout.jsonl",
                                                                             "train.eval_batches=1"]))
