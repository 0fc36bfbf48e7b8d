"""A model directory in the layout of the released Dream / DiffuCoder checkpoints, built from tiny shapes.

    base = write_released_dir(tmp_path / "base")                    # like DiffuCoder-7B-Base
    instruct = write_released_dir(tmp_path / "instruct", instruct=True)   # + <|dlm_pad|>
    ids = released_ids(base)                                        # {"<|endoftext|>": 360, ...}

No model hub is reachable here, so the layout is rebuilt from what the release publishes:
``config.json`` with ``model_type: "Dream"``, ``auto_map`` to remote-code
``configuration_dream.py`` / ``modeling_dream.py``, a top-level ``rope_theta`` and transformers
4.46-era keys (``torch_dtype``, ``rope_scaling: null``, ``use_cache: true``), no ``dlm_pad`` id;
bf16 weights in several ``model-0000i-of-0000n.safetensors`` shards with
``model.safetensors.index.json``; ``generation_config.json``; and Dream's tokenizer files:
``vocab.json`` + ``merges.txt`` (a byte-level BPE, trained here on the synthetic tasks),
``added_tokens.json``, ``special_tokens_map.json`` and a ``tokenizer_config.json`` whose
``auto_map`` names the slow remote-code class ``tokenization_dream.DreamTokenizer`` (the tests'
own, ``dream_slow_tokenizer.py``; no ``tokenizer.json``). The special tokens follow the
released order after the BPE vocabulary: ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``
(Qwen2.5's first three), ``<|beginoftext|>``, ``<|mask|>`` (Dream's), then ``<|dlm_pad|>`` for
an instruct model. The embedding has spare rows past the tokenizer, as the released 152064-row
embedding has past its 151666 + 1 tokens.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from diffucoder.data.tokenizer import QWEN2_SPLIT
from diffucoder.model import build_config, build_model
from diffucoder.model.remote_code import AUTO_MAP, REMOTE_CODE_FILES
from diffucoder.tasks import generate_suite

SLOW_TOKENIZER = Path(__file__).with_name("dream_slow_tokenizer.py")
BASE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|beginoftext|>", "<|mask|>"]
SHAPES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=1024, rope_theta=1_000_000.0)
SPARE_ROWS = 13


def train_byte_bpe(vocab_size: int = 360) -> Tokenizer:
    """A Qwen2-style byte-level BPE (no special tokens) trained on the synthetic suite's text."""
    texts = [t.instruction + "\n" + t.prompt + t.canonical_solution for t in generate_suite(seed=0)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def released_ids(path: Path) -> dict[str, int]:
    return json.loads((Path(path) / "added_tokens.json").read_text())


def write_released_dir(path: Path, instruct: bool = False, seed: int = 0, shard_size: str = "60KB") -> Path:
    path = Path(path)
    path.mkdir(parents=True)
    bpe = train_byte_bpe()
    bpe.model.save(str(path))                                   # vocab.json + merges.txt
    first = bpe.get_vocab_size()
    specials = BASE_SPECIALS + (["<|dlm_pad|>"] if instruct else [])
    ids = {token: first + i for i, token in enumerate(specials)}
    (path / "added_tokens.json").write_text(json.dumps(ids, indent=2, sort_keys=True))
    roles = {"bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
             "mask_token": "<|mask|>", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]
             + (["<|dlm_pad|>"] if instruct else [])}
    (path / "special_tokens_map.json").write_text(json.dumps(roles, indent=2))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for t, i in ids.items()},
        **roles, "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "clean_up_tokenization_spaces": False, "errors": "replace", "model_max_length": 131072,
        "split_special_tokens": False, "tokenizer_class": "DreamTokenizer", "unk_token": None}, indent=2))
    shutil.copyfile(SLOW_TOKENIZER, path / "tokenization_dream.py")

    vocab_size = first + len(specials) + SPARE_ROWS
    config = build_config("tiny", vocab_size=vocab_size, mask_token_id=ids["<|mask|>"],
                          pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
                          eos_token_id=ids["<|endoftext|>"], dlm_pad_token_id=None, **SHAPES)
    model = build_model(config, seed=seed, dtype=torch.bfloat16)
    model.save_pretrained(path, max_shard_size=shard_size)
    released = {key: getattr(config, key) for key in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id",
        "pad_token_id", "mask_token_id", "hidden_act", "initializer_range", "attention_dropout")}
    (path / "config.json").write_text(json.dumps({
        **released, "architectures": ["DreamModel"], "auto_map": dict(AUTO_MAP), "model_type": "Dream",
        "rope_theta": SHAPES["rope_theta"], "rope_scaling": None, "max_window_layers": 2, "sliding_window": None,
        "use_sliding_window": False, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "transformers_version": "4.46.2"}, indent=2, sort_keys=True))
    for source in REMOTE_CODE_FILES:
        shutil.copyfile(source, path / source.name)
    (path / "generation_config.json").write_text(json.dumps({
        "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id, "transformers_version": "4.46.2"}, indent=2))
    return path
