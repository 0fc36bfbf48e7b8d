"""A directory in the released Dream / DiffuCoder layout (tests/model/released_layout.py) starts SFT and RL:
sharded bf16 weights, config with auto_map, Dream's remote-code slow tokenizer read without its code, and
a Base model without ``<|dlm_pad|>`` (SFT adds it at the next id, as the released Instruct has it)."""
import json

import pytest
import torch

from diffucoder.config import ConfigError
from diffucoder.model import load_checkpoint_tokenizer, load_model
from diffucoder.recipes.coupled_grpo import prepare_rl_inputs, train_rl
from diffucoder.recipes.masked_diffusion import train
from diffucoder.rl import completion_mask
from diffucoder.tasks import generate_suite, write_suite
from diffucoder.training.distributed import DistEnv
from tests.model.released_layout import released_ids, write_released_dir
from tests.rl.rl_trainer_helpers import make_model_dir, make_suite, micro_rl_config
from tests.training.training_helpers import micro_config

ALONE = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="none")


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


def test_the_loss_scores_up_to_the_first_im_end_when_asked_as_the_release_does(assets, tmp_path):
    """coupled_grpo.py's completion mask ends at the first <|im_end|> only: a completion that stops at
    <|endoftext|> is scored whole. first_stop (the project's) ends at any stop token."""
    base, tasks = assets
    ids = released_ids(base)
    released = prepare_rl_inputs(micro_rl_config(base, str(tasks), tmp_path / "a", extra=[
        "objective.scored_until=im_end"]), ALONE)
    project = prepare_rl_inputs(micro_rl_config(base, str(tasks), tmp_path / "b"), ALONE)
    assert released.scored_end_ids == [ids["<|im_end|>"]]
    assert project.scored_end_ids == project.end_ids == sorted([ids["<|endoftext|>"], ids["<|im_end|>"]])
    eos, im_end = ids["<|endoftext|>"], ids["<|im_end|>"]
    completions = torch.tensor([[7, eos, 8, im_end, 9], [7, eos, 8, 8, 9]])
    assert completion_mask(completions, released.scored_end_ids).tolist() == [[True] * 4 + [False], [True] * 5]
    assert completion_mask(completions, project.scored_end_ids).tolist() == [[True, True] + [False] * 3] * 2


def test_scoring_until_im_end_needs_a_tokenizer_that_has_it(tmp_path):
    model, suite = make_model_dir(tmp_path / "sft"), make_suite(tmp_path / "tasks")
    with pytest.raises(ConfigError, match="'objective.scored_until'.*<\\|im_end\\|>"):
        prepare_rl_inputs(micro_rl_config(model, suite, tmp_path / "w", extra=["objective.scored_until=im_end"]), ALONE)
