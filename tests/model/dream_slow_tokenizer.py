"""A slow (pure Python) remote-code tokenizer like the one released Dream/DiffuCoder directories carry.

The released layout ships ``tokenization_dream.py`` and a ``tokenizer_config.json`` whose
``auto_map`` points ``AutoTokenizer`` at ``tokenization_dream.DreamTokenizer``: Qwen2's byte-level
BPE (the same split regex, NFC-normalised input, specials never split), written as a
``PreTrainedTokenizer`` that reads ``vocab.json`` and ``merges.txt``. This file is the tests'
own minimal version of that class: ``released_layout.write_released_dir`` copies it into a
directory as ``tokenization_dream.py``, and a test loads it with ``trust_remote_code=True`` to
check that diffucoder's loader (which runs no remote code) tokenizes exactly as it does.
"""
import json
import os
import unicodedata

import regex
from transformers.tokenization_utils import AddedToken, PreTrainedTokenizer

SPLIT = regex.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_alphabet():
    """GPT-2's reversible map of the 256 byte values to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


class DreamTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, merges_file, errors="replace", unk_token="<|endoftext|>", bos_token=None,
                 eos_token="<|endoftext|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False,
                 split_special_tokens=False, **kwargs):
        def special(token):
            return AddedToken(token, special=True, normalized=False) if isinstance(token, str) else token

        with open(vocab_file, encoding="utf-8") as handle:
            self.encoder = json.load(handle)
        self.decoder = {index: token for token, index in self.encoder.items()}
        with open(merges_file, encoding="utf-8") as handle:
            merges = [tuple(line.split()) for i, line in enumerate(handle.read().splitlines())
                      if line.strip() and not (i == 0 and line.startswith("#version"))]
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = byte_alphabet()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}
        self.errors, self.cache = errors, {}
        super().__init__(errors=errors, bos_token=special(bos_token), eos_token=special(eos_token),
                         pad_token=special(pad_token), unk_token=special(unk_token),
                         clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                         split_special_tokens=split_special_tokens, **kwargs)

    @property
    def vocab_size(self):
        return len(self.encoder)

    def get_vocab(self):
        return dict(self.encoder, **self.added_tokens_encoder)

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:   # merge every occurrence of the best-ranked adjacent pair, repeatedly
            rank, first = min((self.ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(parts, parts[1:])))
            if rank == float("inf"):
                break
            pair = (parts[first], parts[first + 1])
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def prepare_for_tokenization(self, text, **kwargs):
        return unicodedata.normalize("NFC", text), kwargs

    def _tokenize(self, text):
        tokens = []
        for piece in SPLIT.findall(text):
            tokens.extend(self.bpe("".join(self.byte_encoder[b] for b in piece.encode("utf-8"))))
        return tokens

    def _convert_token_to_id(self, token):
        return self.encoder.get(token, self.encoder.get(str(self.unk_token)))

    def _convert_id_to_token(self, index):
        return self.decoder.get(index)

    def convert_tokens_to_string(self, tokens):
        return bytearray(self.byte_decoder[c] for c in "".join(tokens)).decode("utf-8", errors=self.errors)

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False,
               spaces_between_special_tokens=False, **kwargs):
        return super().decode(token_ids, skip_special_tokens=skip_special_tokens,
                              clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                              spaces_between_special_tokens=spaces_between_special_tokens, **kwargs)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab = os.path.join(save_directory, prefix + "vocab.json")
        merges = os.path.join(save_directory, prefix + "merges.txt")
        with open(vocab, "w", encoding="utf-8") as handle:
            json.dump(self.encoder, handle, ensure_ascii=False)
        with open(merges, "w", encoding="utf-8") as handle:
            handle.write("#version: 0.2\n" + "".join(" ".join(pair) + "\n" for pair in self.ranks))
        return vocab, merges
