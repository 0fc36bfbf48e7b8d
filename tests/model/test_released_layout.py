"""A directory in the released Dream / DiffuCoder layout (tests/model/released_layout.py) loads as it is:
sharded bf16 weights, config with auto_map and a top-level rope_theta, and Dream's slow remote-code
tokenizer, read without running its code and tokenizing exactly as that code does."""
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, Qwen2Tokenizer

from diffucoder.config import ConfigError
from diffucoder.model import (DreamModel, TokenizerLoadError, load_checkpoint_tokenizer, load_model,
                              save_checkpoint_tokenizer)
from diffucoder.model.remote_code.modeling_dream import DreamModel as RemoteModel
from diffucoder.sampling import load_tokenizer
from diffucoder.training.inputs import special_ids
from tests.model.released_layout import BASE_SPECIALS, SPARE_ROWS, released_ids, write_released_dir

TEXTS = ["def window_sum(xs, k):\n    return [sum(xs[i:i + k]) for i in range(len(xs) - k + 1)]\n",
         "  Write a function   that\tshifts letters.\r\n\n\n", "naïve café — ünïcödé e\u0301 ½ 12345",
         "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi\n<|im_end|>\n",
         "x<|mask|><|mask|>y<|endoftext|>", "   ", ""]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_released_dir(tmp_path_factory.mktemp("released") / "DiffuCoder-Base-layout")


def test_the_layout_is_the_released_one(base):
    names = {p.name for p in base.iterdir()}
    assert {"config.json", "generation_config.json", "configuration_dream.py", "modeling_dream.py",
            "model.safetensors.index.json", "vocab.json", "merges.txt", "tokenizer_config.json",
            "added_tokens.json", "special_tokens_map.json", "tokenization_dream.py"} <= names
    assert "tokenizer.json" not in names and "model.safetensors" not in names
    assert len([n for n in names if n.startswith("model-0000")]) >= 2
    assert "<|dlm_pad|>" not in released_ids(base) and list(released_ids(base)) == sorted(BASE_SPECIALS)


def test_sharded_bf16_checkpoint_loads_with_its_ids(base):
    model = load_model(base).eval()
    ids = released_ids(base)
    config = model.config
    assert (config.mask_token_id, config.eos_token_id, config.dlm_pad_token_id) == (
        ids["<|mask|>"], ids["<|endoftext|>"], None)
    assert config.rope_parameters["rope_theta"] == 1_000_000.0 and config.vocab_size == len(ids) + 360 + SPARE_ROWS
    index = json.loads((base / "model.safetensors.index.json").read_text())
    stored = {}
    for shard in set(index["weight_map"].values()):
        stored.update(load_file(base / shard))
    assert set(stored) == set(model.state_dict())
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    assert all(torch.equal(model.state_dict()[k], v.float()) for k, v in stored.items())   # bf16 -> fp32, exact


@torch.no_grad()
def test_the_remote_model_code_matches_load_model(base):
    ids = torch.randint(0, 360, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    assert type(AutoModel.from_pretrained(base)) is DreamModel     # in this process "Dream" is registered
    remote = RemoteModel.from_pretrained(base, dtype=torch.float32).eval()   # what auto_map loads elsewhere
    assert torch.equal(remote(ids, attention_mask=mask).logits, load_model(base)(ids, attention_mask=mask).logits)


def test_the_slow_remote_tokenizer_is_read_without_its_code_and_tokenizes_the_same(base):
    ours = load_checkpoint_tokenizer(base)
    assert type(ours) is Qwen2Tokenizer
    theirs = AutoTokenizer.from_pretrained(str(base), trust_remote_code=True)   # the remote DreamTokenizer
    assert type(theirs).__name__ == "DreamTokenizer" and type(theirs).__module__.startswith("transformers_modules.")
    assert ours.get_vocab() == theirs.get_vocab() and len(ours) == len(theirs)
    for text in TEXTS:
        for specials in (True, False):
            mine = ours(text, add_special_tokens=specials)["input_ids"]
            assert mine == theirs(text, add_special_tokens=specials)["input_ids"], text
            assert ours.decode(mine) == theirs.decode(mine)
            assert ours.decode(mine, skip_special_tokens=True) == theirs.decode(mine, skip_special_tokens=True)
    assert (ours.eos_token, ours.pad_token, ours.mask_token) == ("<|endoftext|>", "<|endoftext|>", "<|mask|>")
    assert type(load_tokenizer(base)) is Qwen2Tokenizer                        # the sampler's loader


def test_special_ids_of_a_base_tokenizer(base):
    ids = released_ids(base)
    tok = load_checkpoint_tokenizer(base)
    assert special_ids(tok, "model.init_from", dlm_pad="optional") == {
        "eos": ids["<|endoftext|>"], "pad": ids["<|endoftext|>"], "mask": ids["<|mask|>"], "dlm_pad": None}
    with pytest.raises(ConfigError, match=r"'model.init_from'.*<\|dlm_pad\|>"):
        special_ids(tok, "model.init_from", dlm_pad="require")
    added = special_ids(tok, "model.init_from")                     # "add": what SFT of a Base model does
    assert added["dlm_pad"] == ids["<|mask|>"] + 1 == len(tok) - 1
    assert tok("a<|dlm_pad|>", add_special_tokens=False)["input_ids"][-1] == added["dlm_pad"]
    with pytest.raises(ConfigError, match="dlm_pad must be one of"):
        special_ids(tok, "model.init_from", dlm_pad="maybe")


def test_a_saved_released_tokenizer_drops_the_remote_auto_map(base, tmp_path):
    tok = load_checkpoint_tokenizer(base)
    save_checkpoint_tokenizer(tok, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert "auto_map" not in config and (tmp_path / "out" / "tokenizer.json").is_file()
    again = AutoTokenizer.from_pretrained(str(tmp_path / "out"), trust_remote_code=True)
    assert again(TEXTS[0])["input_ids"] == tok(TEXTS[0])["input_ids"]


def test_an_unknown_remote_tokenizer_is_refused_without_running_it(base, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("vocab.json", "merges.txt", "config.json"):
        (evil / name).write_bytes((base / name).read_bytes())
    marker = tmp_path / "ran"
    (evil / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (evil / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}, "tokenizer_class": "EvilTokenizer"}))
    with pytest.raises(TokenizerLoadError, match="tokenization_evil.EvilTokenizer"):
        load_checkpoint_tokenizer(evil)
    assert not marker.exists()
    with pytest.raises(TokenizerLoadError, match="not a directory"):
        load_checkpoint_tokenizer(tmp_path / "missing")
