"""The corpus tokenizer: a byte-level BPE trained here, or a Hugging Face tokenizer directory.

    tok = train_bpe(texts, vocab_size=8192)                  # tokenizers, Qwen2-style split
    tok = load_pretrained("/models/Qwen2.5-Coder-7B")        # or a store URI of such a dir
    ids = save_tokenizer(tok, Path("out/tokenizer"))         # {"eos": 0, "pad": 0, "mask": 1, ...}
    encode_texts(tok, ["def f(): pass"])                     # [[...ids...]] (no specials added)

Either way the saved directory loads with ``transformers.AutoTokenizer.from_pretrained``
and carries the diffusion special tokens ``<|endoftext|>`` (eos and pad), ``<|mask|>``
and ``<|dlm_pad|>``; they are added when a pretrained tokenizer lacks them (on Qwen2.5-Coder's
vocabulary at the released ids: ``<|mask|>`` 151666, see ``ensure_special_tokens``), and their
ids are returned for the manifest. A trained BPE puts them first (ids 0, 1, 2).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from diffucoder.errors import DiffucoderError
from diffucoder.store import resolve

EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mask|>"
DLM_PAD_TOKEN = "<|dlm_pad|>"
BEGIN_TOKEN = "<|beginoftext|>"   # Dream's, added before <|mask|> to a pretrained vocabulary
SPECIAL_TOKENS = (EOS_TOKEN, MASK_TOKEN, DLM_PAD_TOKEN)
# Qwen2's pre-tokenizer split: digits one by one, punctuation runs, newline runs kept apart.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              progress: bool = False):
    """A byte-level BPE (``PreTrainedTokenizerFast``) trained on ``texts``."""
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=progress,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN,
                                   pad_token=EOS_TOKEN, mask_token=MASK_TOKEN,
                                   additional_special_tokens=[DLM_PAD_TOKEN])


def load_pretrained(path: str, download_dir: Path):
    """A fast Hugging Face tokenizer from a local directory or a store artifact URI."""
    local = Path(path)
    if "://" in path and not path.startswith("file://"):
        store, name = resolve(path)
        local = download_dir / name
        store.get_artifact(name, local)
    elif path.startswith("file://"):
        local = Path(path[len("file://"):])
    if not local.is_dir():
        raise DiffucoderError(f"'tokenizer.path': {path} is not a tokenizer directory")
    try:
        tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
    except (OSError, ValueError) as err:
        raise DiffucoderError(f"'tokenizer.path': cannot load a tokenizer from {path}: {err}") \
            from None
    if not getattr(tok, "is_fast", False):
        raise DiffucoderError(f"'tokenizer.path': {path} has no fast (tokenizer.json) tokenizer")
    return tok


def add_special_token(tok, text: str) -> int:
    """``text`` as one special token, appended at the next free id when the vocabulary lacks it; its id."""
    if text not in tok.get_vocab():
        tok.add_tokens([AddedToken(text, special=True, normalized=False)], special_tokens=True)
    return tok.convert_tokens_to_ids(text)


def ensure_special_tokens(tok) -> dict[str, int]:
    """Add the diffusion special tokens if missing; their ids by role.

    A pretrained tokenizer without ``<|mask|>`` gets ``<|beginoftext|>`` and then ``<|mask|>``
    appended, in the order Dream's adaptation of Qwen2.5 added them: on Qwen2.5(-Coder)'s
    vocabulary (its added tokens end with ``<|file_sep|>`` at 151664) ``<|mask|>`` lands on
    151666, the id of Dream and DiffuCoder, not on the 151665 appending it alone would give.
    ``<|dlm_pad|>`` comes next (151667), the token the released Instruct model adds.
    """
    tok.add_special_tokens({"eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN})
    if MASK_TOKEN not in tok.get_vocab():
        add_special_token(tok, BEGIN_TOKEN)
    tok.add_special_tokens({"mask_token": MASK_TOKEN})
    add_special_token(tok, DLM_PAD_TOKEN)
    ids = {role: tok.convert_tokens_to_ids(text) for role, text in
           (("eos", EOS_TOKEN), ("pad", EOS_TOKEN), ("mask", MASK_TOKEN),
            ("dlm_pad", DLM_PAD_TOKEN))}
    for role, token_id in ids.items():
        if token_id is None or (tok.unk_token_id is not None and token_id == tok.unk_token_id):
            raise DiffucoderError(f"tokenizer: special token for '{role}' has no id")
    return ids


def save_tokenizer(tok, out_dir: Path) -> dict[str, int]:
    """Write ``tok`` in Hugging Face format; the special-token ids."""
    ids = ensure_special_tokens(tok)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    return ids


def tokenizer_id(out_dir: Path, kind: str) -> str:
    """``<kind>-<sha256 of tokenizer.json, 16 hex>``: names the exact vocabulary."""
    digest = hashlib.sha256((out_dir / "tokenizer.json").read_bytes()).hexdigest()
    return f"{kind}-{digest[:16]}"


def encode_texts(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added (Rust, all cores)."""
    backend = tok.backend_tokenizer
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [enc.ids for enc in encode(texts, add_special_tokens=False)]


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

