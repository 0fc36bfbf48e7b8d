"""Everything the trainer reads before it computes: data, tokenizer, special ids, model shape.

    inputs = prepare_inputs(cfg, env, workdir)
    inputs.train_rows, inputs.val_rows, inputs.tokenizer, inputs.ids, inputs.model_config

All checks happen here, before any model exists: a missing artifact or shard, a
tokenizer without the diffusion special tokens, a model shape the config rejects
(heads not dividing the hidden size, ...), rows longer than the model's positions.
Each error names the recipe key at fault.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffucoder.config import ConfigError
from diffucoder.data.tokenizer import DLM_PAD_TOKEN, EOS_TOKEN, MASK_TOKEN
from diffucoder.errors import DiffucoderError
from diffucoder.training.config import TrainConfig
from diffucoder.training.data_loader import ChatRows, ShardRows
from diffucoder.training.distributed import DistEnv

SPECIAL_TOKENS = {"eos": EOS_TOKEN, "pad": EOS_TOKEN, "mask": MASK_TOKEN, "dlm_pad": DLM_PAD_TOKEN}


@dataclass
class Inputs:
    tokenizer: Any
    ids: dict[str, int]             # eos, pad, mask, dlm_pad
    model_config: Any               # DreamConfig
    init_dir: Path | None           # checkpoint to start from (None = random init)
    train_rows: Any
    val_rows: Any | None
    seq_len: int
    data_info: dict[str, Any]


def cache_root(cfg: TrainConfig) -> Path:
    return Path(cfg.data.cache_dir or os.environ.get("DIFFUCODER_CACHE")
                or Path.home() / ".cache" / "diffucoder")


def fetch_dir(uri: str, key: str, dest_root: Path) -> Path:
    """A local directory for ``uri``: a path / file:// dir as is, else the store artifact fetched."""
    local = Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)
    if "://" not in uri or uri.startswith("file://"):
        if (local / "config.json").is_file() or (local / "tokenizer.json").is_file():
            return local
    from diffucoder.store import ArtifactNotFound, StoreError, resolve
    try:
        store, name = resolve(uri)
        version = store.read_manifest(name).version
        dest = dest_root / name / version
        if not dest.is_dir():
            store.get_artifact(name, dest, overwrite=True)
        return dest
    except ArtifactNotFound:
        raise ConfigError(f"'{key}': {uri} is neither a local checkpoint/tokenizer directory nor a "
                          "published artifact") from None
    except StoreError as err:
        raise ConfigError(f"'{key}': cannot read {uri}: {err}") from None


def fetch_file(uri: str, name: str, key: str, dest_root: Path) -> Path:
    """A local path of ``name`` in ``uri`` (a file, a directory, or a store artifact)."""
    local = Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)
    if local.is_file():
        return local
    if (local / name).is_file():
        return local / name
    from diffucoder.store import ArtifactNotFound, StoreError, resolve
    try:
        store, artifact = resolve(uri)
        manifest = store.read_manifest(artifact)
        if name not in manifest.files:
            raise ConfigError(f"'{key}': artifact {uri} has no file {name!r} (it holds "
                              f"{sorted(manifest.files)[:10]})")
        dest = dest_root / artifact / manifest.version / name
        if not dest.is_file():
            store.get_file(artifact, name, dest)
        return dest
    except ArtifactNotFound:
        raise ConfigError(f"'{key}': {uri} is neither a file, a directory holding {name!r}, nor a "
                          "published artifact") from None
    except StoreError as err:
        raise ConfigError(f"'{key}': cannot read {uri}: {err}") from None


def load_tokenizer(directory: Path, key: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"'{key}': no Hugging Face tokenizer in {directory}: {err}") from None


def special_ids(tokenizer, key: str) -> dict[str, int]:
    vocab = tokenizer.get_vocab()
    missing = sorted({text for text in SPECIAL_TOKENS.values() if text not in vocab})
    if missing:
        raise ConfigError(f"'{key}': the tokenizer lacks the diffusion special tokens {missing} "
                          "(curation adds them; see diffucoder.data.tokenizer.ensure_special_tokens)")
    return {role: vocab[text] for role, text in SPECIAL_TOKENS.items()}


def _on_local_rank_zero_first(env: DistEnv, fn):
    """Run ``fn`` on local rank 0 first (it fills the shared cache), then on the others."""
    result = fn() if env.local_rank == 0 else None
    env.barrier()
    return result if env.local_rank == 0 else fn()


def prepare_inputs(cfg: TrainConfig, env: DistEnv, workdir: Path) -> Inputs:
    from diffucoder.model import build_config
    from diffucoder.model.io import read_checkpoint_config
    d, cache = cfg.data, cache_root(cfg)
    if not d.uri:
        raise ConfigError("'data.uri': required (curated shard artifact or chat JSONL)")
    init_dir = None
    if cfg.model.init_from:
        init_dir = _on_local_rank_zero_first(env, lambda: fetch_dir(cfg.model.init_from, "model.init_from",
                                                                    cache / "models"))
    if d.kind == "token_shards":
        from diffucoder.data.shards import TokenShards
        try:
            shards = _on_local_rank_zero_first(env, lambda: TokenShards.open(d.uri, cache_dir=cache))
        except DiffucoderError as err:
            raise ConfigError(f"'data.uri': {err}") from None
        train_rows = ShardRows(shards.train, d.seq_len)
        val_rows = ShardRows(shards.val, d.seq_len) if len(shards.val) else None
        tok_dir = (fetch_dir(d.tokenizer, "data.tokenizer", cache / "tokenizers") if d.tokenizer
                   else shards.tokenizer_dir)
        tokenizer = load_tokenizer(tok_dir, "data.tokenizer")
        ids = special_ids(tokenizer, "data.tokenizer")
        differ = {role: (ids[role], shard_id) for role, shard_id in shards.special_tokens.items()
                  if role in ids and ids[role] != shard_id}
        if differ:
            raise ConfigError(f"'data.tokenizer': special ids (tokenizer, shards) differ: {differ}; "
                              "use the tokenizer the shards were made with")
        vocab_size, seq_len = shards.vocab_size, train_rows.seq_len
        info = {"rows": len(train_rows), "val_rows": len(val_rows) if val_rows else 0,
                "packed_seq_len": shards.seq_len, "tokenizer_id": shards.tokenizer_id}
    else:
        source = d.tokenizer or cfg.model.init_from
        if not source:
            raise ConfigError("'data.tokenizer': chat_jsonl needs a tokenizer: set data.tokenizer or "
                              "model.init_from (a checkpoint directory holding one)")
        tok_dir = fetch_dir(source, "data.tokenizer", cache / "tokenizers") if d.tokenizer else init_dir
        tokenizer = load_tokenizer(tok_dir, "data.tokenizer" if d.tokenizer else "model.init_from")
        ids = special_ids(tokenizer, "data.tokenizer")
        path = _on_local_rank_zero_first(env, lambda: fetch_file(d.uri, d.file, "data.uri", cache / "data"))
        train_rows = ChatRows.from_jsonl(path, tokenizer, d.seq_len, ids, d.canvas_jitter)
        val_rows = None
        if d.val_file:
            val_path = _on_local_rank_zero_first(
                env, lambda: fetch_file(d.uri, d.val_file, "data.val_file", cache / "data"))
            val_rows = ChatRows.from_jsonl(val_path, tokenizer, d.seq_len, ids)
        vocab_size, seq_len = len(tokenizer), d.seq_len
        info = {"rows": len(train_rows), "skipped_long_prompts": train_rows.skipped,
                "truncated_responses": train_rows.truncated(), "file": str(path)}
    if init_dir is not None:
        raw = read_checkpoint_config(init_dir)
        model_config = None
        if raw.get("vocab_size", 0) < vocab_size:
            raise ConfigError(f"'model.init_from': the checkpoint's vocab_size {raw.get('vocab_size')} is "
                              f"smaller than the tokenizer's {vocab_size}")
        max_positions = raw.get("max_position_embeddings", 0)
    else:
        try:
            model_config = build_config(
                cfg.model.preset, vocab_size=vocab_size, mask_token_id=ids["mask"], pad_token_id=ids["pad"],
                bos_token_id=ids["eos"], eos_token_id=ids["eos"], dlm_pad_token_id=ids["dlm_pad"],
                **cfg.model.shape_overrides())
        except ConfigError as err:
            raise ConfigError(f"model (preset {cfg.model.preset!r}): {err}") from None
        max_positions = model_config.max_position_embeddings
    if seq_len > max_positions:
        raise ConfigError(f"'data.seq_len': rows of {seq_len} tokens exceed the model's "
                          f"max_position_embeddings {max_positions}")
    return Inputs(tokenizer=tokenizer, ids=ids, model_config=model_config, init_dir=init_dir,
                  train_rows=train_rows, val_rows=val_rows, seq_len=seq_len, data_info=info)
