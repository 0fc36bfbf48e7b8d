"""A directory in the released Dream / DiffuCoder layout (tests/model/released_layout.py) starts SFT and RL:
sharded bf16 weights, config with auto_map, Dream's remote-code slow tokenizer read without its code, and
a Base model without ``<|dlm_pad|>`` (SFT adds it at the next id, as the released Instruct has it)."""
import json

import pytest
import torch

from diffucoder.model import load_checkpoint_tokenizer, load_model
from diffucoder.recipes.coupled_grpo import train_rl
from diffucoder.recipes.masked_diffusion import train
from diffucoder.tasks import generate_suite, write_suite
from tests.model.released_layout import released_ids, write_released_dir
from tests.rl.rl_trainer_helpers import micro_rl_config
from tests.training.training_helpers import micro_config


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("released-training")
    write_suite(generate_suite(seed=0, max_per_family=1), root / "tasks")
    return write_released_dir(root / "base"), root / "tasks"


def test_sft_of_a_released_base_model_adds_dlm_pad_and_exports_a_loadable_model(assets, tmp_path):
    base, tasks = assets
    ids = released_ids(base)
    cfg = micro_config(str(tasks), tmp_path / "work", steps=2, shapes=False, extra=[
        "stage=sft", "data.kind=chat_jsonl", "data.seq_len=256", "data.batch_size=2", f"model.init_from={base}",
        "train.eval_batches=0"])
    result = train(cfg)
    assert result.summary["stage"] == "sft" and result.summary["data"]["rows"] > 5
    dlm_pad = ids["<|mask|>"] + 1                          # the next id, as 151667 follows 151666
    model = load_model(result.model_dir)
    assert (model.config.mask_token_id, model.config.dlm_pad_token_id) == (ids["<|mask|>"], dlm_pad)
    tokenizer = load_checkpoint_tokenizer(result.model_dir)
    assert tokenizer.convert_tokens_to_ids("<|dlm_pad|>") == dlm_pad and len(tokenizer) == dlm_pad + 1
    assert "auto_map" not in json.loads((result.model_dir / "tokenizer_config.json").read_text())
    assert json.loads((result.model_dir / "config.json").read_text())["auto_map"]["AutoModel"] == \
        "modeling_dream.DreamModel"
    start = load_model(base)
    assert not torch.equal(start.lm_head.weight, model.lm_head.weight)


def test_one_rl_step_from_a_released_base_layout(assets, tmp_path):
    base, tasks = assets
    cfg = micro_rl_config(base, str(tasks), tmp_path / "w", steps=1)
    result = train_rl(cfg)
    rows = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["rollouts"] == 4
    assert result.summary["steps"] == 1
    trained = load_model(result.model_dir)
    assert trained.config.mask_token_id == released_ids(base)["<|mask|>"]
    assert any(not torch.equal(a, b) for a, b in zip(load_model(base).state_dict().values(),
                                                     trained.state_dict().values()))
