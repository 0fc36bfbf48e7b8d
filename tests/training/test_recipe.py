"""The recipe in one process: the loss falls, and every output is written and loadable."""
import json

import pytest
import torch
from safetensors.torch import load_file

from diffucoder.model import load_model
from diffucoder.store import open_store
from diffucoder.tasks import generate_suite, write_suite
from diffucoder.recipes.masked_diffusion import train
from tests.training.training_helpers import make_shards, micro_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("data") / "curated")


@pytest.fixture(scope="module")
def pretrained(shards, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    cfg = micro_config(str(shards), tmp / "work", steps=40, extra=[
        "data.batch_size=8", "train.log_every=5", "train.eval_every=10", "train.eval_batches=2",
        "optim.warmup_steps=4", "diffusion.anneal_steps=10", "diffusion.truncate_prob=0.05",
        "diffusion.prefix_prob=0.05", f"output.uri={(tmp / 'store' / 'runs' / 'r1' / 'pretrain').as_uri()}"])
    return cfg, train(cfg), tmp


def test_pretraining_loss_falls(pretrained):
    _cfg, result, _tmp = pretrained
    rows = [json.loads(line) for line in (result.workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(0, 41, 5))   # step 0: validation before training
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert len(evals) == 5 and evals[-1] < evals[0] - 0.5
    losses = [r["loss"] for r in rows if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert result.summary["final_eval_loss"] == evals[-1] and result.summary["tokens"] == 40 * 8 * 32


def test_metrics_schedule_and_throughput_are_logged(pretrained):
    cfg, result, _tmp = pretrained
    rows = [json.loads(line) for line in (result.workdir / "metrics.jsonl").read_text().splitlines()][1:]
    for row in rows:
        assert {"loss", "lr", "tokens_per_s", "flops_per_s", "mfu", "grad_norm", "tokens"} <= row.keys()
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1
    assert rows[-1]["lr"] == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio)  # cosine floor
    assert result.summary["matmul_peak_flops_per_s"] > result.summary["flops_per_s"] > 0


def test_the_model_is_exported_as_a_hugging_face_dir_and_published(pretrained):
    from transformers import AutoTokenizer
    _cfg, result, tmp = pretrained
    model = load_model(result.model_dir)
    assert model.config.mask_token_id == 1 and model.config.dlm_pad_token_id == 2
    tok = AutoTokenizer.from_pretrained(str(result.model_dir))
    assert tok.convert_tokens_to_ids("<|mask|>") == 1
    training = result.model_dir / "training"
    assert (training / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (training / "report.md").read_text()
    assert "![loss curve](loss_curve.png)" in report and "| final_eval_loss |" in report
    store = open_store(tmp / "store")
    manifest = store.read_manifest("runs/r1/pretrain")
    assert {"config.json", "model.safetensors", "tokenizer.json", "training/metrics.jsonl"} <= set(manifest.files)
    assert result.model_uri == store.uri("runs/r1/pretrain") and manifest.metadata["kind"] == "model"


def test_sft_starts_from_the_pretrained_model_and_learns(pretrained, tmp_path):
    _cfg, result, _tmp = pretrained
    write_suite(generate_suite(seed=0, max_per_family=3), tmp_path / "tasks")
    cfg = micro_config(str(tmp_path / "tasks"), tmp_path / "work", steps=12, extra=[
        "stage=sft", "data.kind=chat_jsonl", "data.seq_len=256", "data.val_file=sft-heldout.jsonl",
        f"model.init_from={result.model_dir}", "train.log_every=4", "train.eval_every=4", "train.eval_batches=2"],
        shapes=False)
    sft = train(cfg)
    assert sft.summary["data"]["rows"] > 20 and sft.summary["stage"] == "sft"
    assert sft.summary["final_eval_loss"] < sft.summary["first_eval_loss"]
    before, after = load_file(result.model_dir / "model.safetensors"), load_file(sft.model_dir / "model.safetensors")
    assert before.keys() == after.keys()
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])


def test_gradient_checkpointing_changes_memory_not_results(shards, tmp_path):
    plain = train(micro_config(str(shards), tmp_path / "plain", steps=2))
    ckpt = train(micro_config(str(shards), tmp_path / "ckpt", steps=2, extra=["train.grad_checkpointing=true"]))
    a, b = load_file(plain.model_dir / "model.safetensors"), load_file(ckpt.model_dir / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_an_ar_warm_start_trains_causally_then_by_masked_diffusion(shards, tmp_path):
    seen = []

    def on_step(state, engine):   # steps done when each loss ran
        seen.append(state.step)
    calls = []
    cfg = micro_config(str(shards), tmp_path / "work", steps=4, extra=["diffusion.ar_warmup=0.5"])
    import diffucoder.recipes.masked_diffusion as recipe
    original = recipe.autoregressive_loss
    recipe.autoregressive_loss = lambda *args, **kwargs: calls.append(len(seen)) or original(*args, **kwargs)
    try:
        result = train(cfg, on_step=on_step)
    finally:
        recipe.autoregressive_loss = original
    assert calls == [0, 1] and seen == [1, 2, 3, 4]
    rows = [json.loads(line) for line in (result.model_dir / "training" / "metrics.jsonl").read_text().splitlines()]
    mean_t = {row["step"]: row["mean_t"] for row in rows if "mean_t" in row}
    assert mean_t[1] == mean_t[2] == 0.0 and mean_t[3] > 0 and mean_t[4] > 0
