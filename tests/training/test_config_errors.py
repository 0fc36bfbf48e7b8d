"""A bad recipe fails before any compute, with a message naming what is wrong."""
import json

import pytest

from diffucoder.cli import main as cli_main
from diffucoder.config import ConfigError, load_config
from diffucoder.recipes.masked_diffusion import TrainConfig, train
from diffucoder.recipes import masked_diffusion as recipe_module
from diffucoder.training.engines import deepspeed_config
from tests.training.training_helpers import make_shards, micro_config, micro_overrides


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("data") / "curated")


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a model is ever built."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("compute started before the config was rejected")
    monkeypatch.setattr(recipe_module, "_build_model", refuse)


def test_heads_not_dividing_hidden_size(shards, tmp_path, no_compute):
    cfg = micro_config(str(shards), tmp_path / "w", extra=["model.num_attention_heads=3",
                                                           "model.num_key_value_heads=1"])
    with pytest.raises(ConfigError, match="'num_attention_heads': 3 does not divide hidden_size 32"):
        train(cfg)


def test_missing_shard_is_named(shards, tmp_path, no_compute):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    (broken / "train" / "shard-00000.npy").unlink()
    with pytest.raises(ConfigError, match=r"'data.uri': .*train/shard-00000.npy"):
        train(micro_config(str(broken), tmp_path / "w"))


def test_missing_artifact_is_named(tmp_path, no_compute):
    uri = (tmp_path / "store" / "runs" / "r1" / "curated").as_uri()
    with pytest.raises(ConfigError, match="'data.uri'.*runs/r1/curated"):
        train(micro_config(uri, tmp_path / "w"))


def test_rows_longer_than_the_model_positions(shards, tmp_path, no_compute):
    cfg = micro_config(str(shards), tmp_path / "w", extra=["model.max_position_embeddings=16"])
    with pytest.raises(ConfigError, match="'data.seq_len'.*max_position_embeddings 16"):
        train(cfg)


def test_recipe_values_are_checked_when_loading(tmp_path):
    with pytest.raises(ConfigError, match="'optim.warmup_steps'"):
        load_config(TrainConfig, None, ["train.steps=5", "optim.warmup_steps=10"])
    with pytest.raises(ConfigError, match="did you mean 'grad_accum'"):
        load_config(TrainConfig, None, ["data.grad_acum=2"])
    with pytest.raises(ConfigError, match="'data.seq_len'"):
        load_config(TrainConfig, None, ["data.kind=chat_jsonl"])
    with pytest.raises(ConfigError, match="'distributed.deepspeed_config': required"):
        load_config(TrainConfig, None, ["distributed.backend=deepspeed"])
    with pytest.raises(ConfigError, match="'model.hidden_size': shape overrides apply to a random init"):
        load_config(TrainConfig, None, ["model.init_from=/models/x", "model.hidden_size=64"])


def test_deepspeed_json_may_not_contradict_the_recipe(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 99}))
    cfg = load_config(TrainConfig, None, ["distributed.backend=deepspeed", f"distributed.deepspeed_config={path}",
                                          "data.batch_size=4"])
    with pytest.raises(ConfigError, match="train_micro_batch_size_per_gpu=99 but the recipe's data.batch_size"):
        deepspeed_config(cfg.distributed.deepspeed_config, cfg.optim, cfg.layout(), world_size=2)
    zero3 = load_config(TrainConfig, None, [
        "distributed.backend=deepspeed", "distributed.deepspeed_config=configs/deepspeed/zero3.json",
        "data.batch_size=4", "data.grad_accum=2", "optim.lr=0.01"])
    filled = deepspeed_config(zero3.distributed.deepspeed_config, zero3.optim, zero3.layout(), world_size=2)
    assert filled["train_batch_size"] == 16 and filled["optimizer"]["params"]["lr"] == 0.01
    assert filled["optimizer"]["params"]["torch_adam"] is True and filled["zero_optimization"]["stage"] == 3
    missing = load_config(TrainConfig, None, ["distributed.backend=deepspeed",
                                              "distributed.deepspeed_config=nowhere.json"])
    with pytest.raises(ConfigError, match="nowhere.json does not exist"):
        deepspeed_config(missing.distributed.deepspeed_config, missing.optim, missing.layout(), world_size=1)


def test_cli_prints_the_error_and_exits_2(shards, tmp_path, capsys, no_compute):
    code = cli_main(["pretrain", "--preset", "tiny-cpu",
                     *micro_overrides(str(shards), tmp_path / "w", extra=["model.hidden_size=30"])])
    assert code == 2
    err = capsys.readouterr().err
    assert "diffucoder pretrain: error:" in err and "hidden_size" in err and "Traceback" not in err


def test_7b_adaptation_divides_by_the_masked_tokens_as_diffullama():
    """DiffuLLaMA's train.py: ``(dsigma[:, None] * loss).sum() / loss_mask.sum()``, loss_mask = the masked
    tokens; the 7B SFT keeps the eligible-token normaliser."""
    from diffucoder.config.recipes import recipe_path
    from diffucoder.recipes.masked_diffusion import SFTConfig
    assert load_config(TrainConfig, recipe_path("7b-gpu", "pretrain")).diffusion.normaliser == "masked"
    assert load_config(SFTConfig, recipe_path("7b-gpu", "sft")).diffusion.normaliser == "tokens"
    assert load_config(TrainConfig, recipe_path("tiny-cpu", "pretrain")).diffusion.normaliser == "tokens"


def test_7b_midtrain_is_the_papers_stage_2():
    """Paper, stage 2: 16 B tokens x 4 epochs on 8 nodes x 8 A100, lr 1e-5, 2 k warm-up; the step count
    is 64e9 tokens over 64 GPUs x 4 rows x 4096 tokens = 1,048,576 tokens per step = 61,035 steps."""
    from diffucoder.config.recipes import recipe_path
    cfg = load_config(TrainConfig, recipe_path("7b-gpu", "midtrain"))
    assert (cfg.stage, cfg.model.preset) == ("midtrain", "7b")
    assert (cfg.optim.lr, cfg.optim.warmup_steps) == (1e-5, 2000)
    assert cfg.distributed.nproc_per_node == 8 and cfg.train.precision == "bf16"
    tokens_per_step = 64 * cfg.data.batch_size * cfg.data.grad_accum * cfg.data.seq_len
    assert tokens_per_step == 1_048_576
    assert abs(cfg.train.steps - 64e9 / tokens_per_step) / cfg.train.steps < 0.001
    assert cfg.diffusion.normaliser == "masked"
