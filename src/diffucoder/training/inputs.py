"""What a recipe reads before it computes: artifacts fetched into the local cache, the tokenizer
and its diffusion special tokens.

    cache = cache_root(cfg.data.cache_dir)
    model_dir = rank_zero_first(env, lambda: fetch_dir(cfg.model.init_from, "model.init_from", cache / "models"))
    path = fetch_file(cfg.data.uri, "sft-train.jsonl", "data.uri", cache / "data")
    tokenizer = load_tokenizer(model_dir, "model.init_from")   # tokenizer.json or a released Dream one
    ids = special_ids(tokenizer, "model.init_from")       # {"eos", "pad", "mask", "dlm_pad"}
    ids = special_ids(tokenizer, "model.init_from", dlm_pad="optional")   # a Base model: dlm_pad None

Every error names the recipe key at fault (the ``key`` argument), before any model exists.

A released Base model's tokenizer has no ``<|dlm_pad|>`` (the Instruct model added it for SFT's
fixed-length canvas). ``special_ids`` appends it at the next free id by default (``"add"``):
what SFT of a Base model needs, as the release did (the 7B embedding has 152064 rows for the
151668 tokens up to <|dlm_pad|> 151667). ``"optional"`` leaves a Base tokenizer as it is
(``dlm_pad`` None: completions end at EOS), for RL or evaluation of a Base model; ``"require"``
refuses it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from diffucoder.config import ConfigError
from diffucoder.data.tokenizer import DLM_PAD_TOKEN, EOS_TOKEN, MASK_TOKEN, add_special_token
from diffucoder.errors import DiffucoderError
from diffucoder.model.tokenizer import load_checkpoint_tokenizer
from diffucoder.store import ArtifactNotFound, StoreError, resolve
from diffucoder.store.cache import cached_artifact, cached_file
from diffucoder.training.distributed import DistEnv

SPECIAL_TOKENS = {"eos": EOS_TOKEN, "pad": EOS_TOKEN, "mask": MASK_TOKEN, "dlm_pad": DLM_PAD_TOKEN}
DLM_PAD_MODES = ("add", "optional", "require")


def cache_root(cache_dir: str = "") -> Path:
    """Where fetched artifacts are kept: ``cache_dir``, else ``$DIFFUCODER_CACHE``, else ~/.cache/diffucoder."""
    return Path(cache_dir or os.environ.get("DIFFUCODER_CACHE") or Path.home() / ".cache" / "diffucoder")


def fetch_dir(uri: str, key: str, dest_root: Path) -> Path:
    """A local directory for ``uri``: a path / file:// dir as is, else the store artifact in the
    cache (``diffucoder.store.cache``: a copy that no longer matches its manifest is fetched again)."""
    local = Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)
    if "://" not in uri or uri.startswith("file://"):
        if (local / "config.json").is_file() or (local / "tokenizer.json").is_file():
            return local
    try:
        store, name = resolve(uri)
        return cached_artifact(store, name, dest_root / name)
    except ArtifactNotFound:
        raise ConfigError(f"'{key}': {uri} is neither a local checkpoint/tokenizer directory nor a "
                          "published artifact") from None
    except StoreError as err:
        raise ConfigError(f"'{key}': cannot read {uri}: {err}") from None


def fetch_file(uri: str, name: str, key: str, dest_root: Path) -> Path:
    """A local path of ``name`` in ``uri`` (a file, a directory, or a store artifact's file, cached and
    checked like ``fetch_dir``'s)."""
    local = Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)
    if local.is_file():
        return local
    if (local / name).is_file():
        return local / name
    try:
        store, artifact = resolve(uri)
        try:
            return cached_file(store, artifact, name, dest_root / artifact)
        except KeyError:
            raise ConfigError(f"'{key}': artifact {uri} has no file {name!r} (it holds "
                              f"{sorted(store.read_manifest(artifact).files)[:10]})") from None
    except ArtifactNotFound:
        raise ConfigError(f"'{key}': {uri} is neither a file, a directory holding {name!r}, nor a "
                          "published artifact") from None
    except StoreError as err:
        raise ConfigError(f"'{key}': cannot read {uri}: {err}") from None


def load_tokenizer(directory: Path, key: str):
    try:
        return load_checkpoint_tokenizer(directory)
    except (OSError, ValueError, DiffucoderError) as err:
        raise ConfigError(f"'{key}': no Hugging Face tokenizer in {directory}: {err}") from None


def special_ids(tokenizer, key: str, dlm_pad: str = "add") -> dict[str, int | None]:
    """The ids of the diffusion special tokens by role (``eos``, ``pad``, ``mask``, ``dlm_pad``).

    ``dlm_pad`` says what a tokenizer without ``<|dlm_pad|>`` (a released Base model's) gets
    (module docstring): ``"add"`` appends it, ``"optional"`` gives None, ``"require"`` refuses.
    """
    if dlm_pad not in DLM_PAD_MODES:
        raise ConfigError(f"special_ids: dlm_pad must be one of {list(DLM_PAD_MODES)}, got {dlm_pad!r}")
    vocab = tokenizer.get_vocab()
    needed = {EOS_TOKEN, MASK_TOKEN} | ({DLM_PAD_TOKEN} if dlm_pad == "require" else set())
    missing = sorted(text for text in needed if text not in vocab)
    if missing:
        raise ConfigError(f"'{key}': the tokenizer lacks the diffusion special tokens {missing} "
                          "(curation adds them; see diffucoder.data.tokenizer.ensure_special_tokens)")
    ids: dict[str, int | None] = {role: vocab.get(text) for role, text in SPECIAL_TOKENS.items()}
    if ids["dlm_pad"] is None and dlm_pad == "add":
        ids["dlm_pad"] = add_special_token(tokenizer, DLM_PAD_TOKEN)
    return ids


def rank_zero_first(env: DistEnv, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on local rank 0 first (it fills the shared cache), then on the other ranks."""
    result = fn() if env.local_rank == 0 else None
    env.barrier()
    return result if env.local_rank == 0 else fn()
