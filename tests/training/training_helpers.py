"""Tiny assets for trainer tests: curated-format token shards and a micro model recipe.

    root = make_shards(tmp_path / "curated", seq_len=32)        # shards.json, train/, val/, tokenizer/
    cfg = micro_config(data_uri=str(root), workdir=tmp_path / "w", steps=4)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from diffucoder.config import load_config
from diffucoder.data.shards import ShardWriter, token_dtype, write_index
from diffucoder.data.tokenizer import encode_texts, save_tokenizer, tokenizer_id, train_bpe
from diffucoder.tasks import generate_suite

MICRO_MODEL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
               "model.num_attention_heads=4", "model.num_key_value_heads=2"]


def corpus() -> list[str]:
    """Real Python source and English: the synthetic suite's requests, prompts and solutions."""
    return [t.instruction + "\n" + t.prompt + t.canonical_solution for t in generate_suite(seed=0)]


def make_shards(root: Path, seq_len: int = 32, vocab_size: int = 512) -> Path:
    texts = corpus()
    tok = train_bpe(texts, vocab_size=vocab_size)
    special = save_tokenizer(tok, root / "tokenizer")
    dtype = token_dtype(len(tok))
    splits = {}
    for name, docs in (("train", texts[:-40]), ("val", texts[-40:])):
        writer = ShardWriter(root / name, seq_len, dtype, shard_tokens=seq_len * 64, eos_id=special["eos"])
        for ids in encode_texts(tok, docs):
            writer.add_document(np.asarray(ids))
        splits[name] = writer.close()
    write_index(root, seq_len, dtype, len(tok), special, tokenizer_id(root / "tokenizer", "train_bpe"), splits)
    return root


def micro_overrides(data_uri: str, workdir: Path, steps: int = 4, extra: list[str] = (),
                    shapes: bool = True) -> list[str]:
    """A few-step recipe; ``shapes=False`` when the model comes from ``model.init_from``."""
    return [f"data.uri={data_uri}", f"output.workdir={workdir}", f"train.steps={steps}",
            "data.batch_size=4", "train.log_every=1", "train.eval_batches=1", "optim.warmup_steps=1",
            "optim.lr=3e-3", *(MICRO_MODEL if shapes else []), *extra]


def micro_config(data_uri: str, workdir: Path, steps: int = 4, extra: list[str] = (), shapes: bool = True):
    from diffucoder.recipes.masked_diffusion import TrainConfig
    return load_config(TrainConfig, None, micro_overrides(data_uri, workdir, steps, extra, shapes))
