"""The tokenizer saved beside a model, loaded without running any code from the model directory.

    from diffucoder.model.tokenizer import load_checkpoint_tokenizer, save_checkpoint_tokenizer
    tok = load_checkpoint_tokenizer("out/sft/model")              # tokenizer.json (what exports write)
    tok = load_checkpoint_tokenizer("ckpt/DiffuCoder-7B-Instruct")  # released: remote-code slow tokenizer
    save_checkpoint_tokenizer(tok, "out/rl/model")                # tokenizer.json, loadable anywhere

Released Dream / DiffuCoder directories name a remote-code tokenizer class in
``tokenizer_config.json`` (``auto_map`` → ``tokenization_dream.DreamTokenizer``) and ship
``vocab.json`` + ``merges.txt`` instead of ``tokenizer.json``; ``AutoTokenizer`` would want
``trust_remote_code=True`` (and asks on a terminal). That class is Qwen2's byte-level BPE
(the same split pattern, NFC normalisation, special tokens never split), so this module loads
those files with transformers' own ``Qwen2Tokenizer``: the same ids (tests/model/
test_released_layout.py compares them with the remote class), no foreign code executed. Any
other remote tokenizer is refused: re-save it as ``tokenizer.json`` to use it here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import AutoTokenizer, Qwen2Tokenizer

from diffucoder.errors import DiffucoderError

DREAM_REMOTE_TOKENIZER = "tokenization_dream.DreamTokenizer"


class TokenizerLoadError(DiffucoderError):
    """A model directory's tokenizer cannot be loaded without running its own code."""


def remote_tokenizer_class(directory: Path) -> str | None:
    """The remote-code class ``tokenizer_config.json`` maps ``AutoTokenizer`` to, if any."""
    config_file = directory / "tokenizer_config.json"
    if not config_file.is_file():
        return None
    try:
        auto_map = json.loads(config_file.read_text()).get("auto_map") or {}
    except (json.JSONDecodeError, AttributeError) as err:
        raise TokenizerLoadError(f"{config_file}: not a JSON object ({err})") from None
    entry = auto_map if isinstance(auto_map, (list, tuple)) else auto_map.get("AutoTokenizer")
    if not entry:
        return None
    classes = [entry] if isinstance(entry, str) else [name for name in entry if name]
    return " / ".join(classes) or None


def load_checkpoint_tokenizer(path: str | os.PathLike):
    """The tokenizer of a model directory: ``tokenizer.json`` through ``AutoTokenizer``, or a
    released Dream tokenizer (``vocab.json`` + ``merges.txt``) as ``Qwen2Tokenizer``."""
    directory = Path(path)
    if not directory.is_dir():   # never a hub name: a model directory is local
        raise TokenizerLoadError(f"{path}: not a directory")
    remote = remote_tokenizer_class(directory)
    if remote is None:
        return AutoTokenizer.from_pretrained(str(directory))
    if remote != DREAM_REMOTE_TOKENIZER:
        raise TokenizerLoadError(
            f"{directory}: tokenizer_config.json maps AutoTokenizer to remote code {remote!r}; diffucoder runs no "
            f"code from a model directory and only knows {DREAM_REMOTE_TOKENIZER!r} (loaded as Qwen2Tokenizer). "
            "Save the tokenizer as tokenizer.json (tokenizer.save_pretrained with a fast tokenizer) to use it")
    missing = [name for name in ("vocab.json", "merges.txt") if not (directory / name).is_file()]
    if missing and not (directory / "tokenizer.json").is_file():
        raise TokenizerLoadError(f"{directory}: a Dream tokenizer needs {missing} (or tokenizer.json)")
    return Qwen2Tokenizer.from_pretrained(str(directory))


def save_checkpoint_tokenizer(tokenizer, path: str | os.PathLike) -> None:
    """``tokenizer.save_pretrained(path)``, without the ``auto_map`` a released tokenizer's config
    carries over: the saved ``tokenizer.json`` loads with transformers' own classes, and the
    remote module it named is not in ``path`` (``trust_remote_code=True`` would look for it)."""
    tokenizer.save_pretrained(str(path))
    config_file = Path(path) / "tokenizer_config.json"
    if config_file.is_file():
        values = json.loads(config_file.read_text())
        if values.pop("auto_map", None) is not None:
            config_file.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n")
