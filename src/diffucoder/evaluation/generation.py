"""Completions from the diffusion sampler: n per prompt, decoded in batches.

    completer = DiffusionCompleter.from_directory("out/sft", cfg)    # model + tokenizer
    completions = completer.complete(["def add(a, b):\\n"], n=4)      # [[4 strings]]
    completer.describe()                                               # for the report

Anything with ``complete(prompts, n) -> list[list[str]]`` can stand in for it (the
evaluation takes a ``completer`` argument). Rows are sorted by prompt length so a batch
carries little padding; each completion is cut at the first EOS, ``<|dlm_pad|>`` or (when
the tokenizer has it as one token) ``<|im_end|>``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.config import EvaluateConfig
from diffucoder.model import load_model
from diffucoder.sampling import decode_completions, diffusion_generate, encode_prompts, load_tokenizer
from diffucoder.sampling.config import SamplingConfig
from diffucoder.store import StoreError, resolve
from diffucoder.training.chat import IM_END


class Completer(Protocol):
    def complete(self, prompts: Sequence[str], n: int) -> list[list[str]]: ...


def model_directory(uri: str, cache: Path) -> Path:
    """A local model directory for a path, ``file://`` URI or store artifact URI."""
    local = Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri).expanduser()
    if (local / "config.json").is_file():
        return local
    if "://" not in uri and not local.exists():
        raise DiffucoderError(f"model: {uri} does not exist")
    try:
        store, name = resolve(uri)
        version = store.read_manifest(name).version
        dest = cache / "models" / name / version
        if not (dest / "config.json").is_file():
            store.get_artifact(name, dest, overwrite=True)
        return dest
    except StoreError as err:
        raise DiffucoderError(f"model: {uri} is neither a model directory (config.json) nor a "
                              f"published model artifact: {err}") from None


def completion_stop_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] + [vocab.get(t) for t in ("<|dlm_pad|>", IM_END)]
    found = sorted({i for i in ids if i is not None})
    if not found:
        raise DiffucoderError("the tokenizer has no EOS or <|dlm_pad|> token to end completions at")
    return found


class DiffusionCompleter:
    def __init__(self, model, tokenizer, sampling: SamplingConfig, batch_size: int, seed: int = 0,
                 progress: bool = True):
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling
        self.batch_size, self.seed, self.progress = batch_size, seed, progress
        self.stop_ids = completion_stop_ids(tokenizer)

    @classmethod
    def from_directory(cls, directory: str | Path, cfg: EvaluateConfig, progress: bool = True
                       ) -> "DiffusionCompleter":
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise DiffucoderError(f"'device': {cfg.device!r} but this torch sees no GPU; run on a GPU "
                                  "node with a CUDA build of torch, or set device=cpu")
        tokenizer = load_tokenizer(directory)
        model = load_model(directory, dtype=getattr(torch, cfg.dtype), device=cfg.device).eval()
        return cls(model, tokenizer, cfg.sampling, cfg.batch_size, cfg.seed, progress)

    def describe(self) -> dict:
        return {"sampler": dataclasses.asdict(self.sampling), "batch_size": self.batch_size,
                "stop_token_ids": self.stop_ids, "parameters": sum(p.numel() for p in self.model.parameters())}

    def complete(self, prompts: Sequence[str], n: int) -> list[list[str]]:
        if not prompts:
            return []
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
        limit = self.model.config.max_position_embeddings
        if max(lengths) + self.sampling.max_new_tokens > limit:
            raise DiffucoderError(f"a prompt of {max(lengths)} tokens + max_new_tokens "
                                  f"{self.sampling.max_new_tokens} exceeds the model's {limit} positions")
        rows = sorted(((i, j) for i in range(len(prompts)) for j in range(n)), key=lambda r: lengths[r[0]])
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.seed)
        out: list[list[str]] = [[""] * n for _ in prompts]
        batches = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        for batch in tqdm(batches, desc="sampling", unit="batch", disable=not self.progress):
            # SFT encodes prompts without added special tokens; so does the evaluation
            ids, mask = encode_prompts(self.tokenizer, [prompts[i] for i, _ in batch], add_special_tokens=False)
            result = diffusion_generate(self.model, ids, mask, self.sampling, generator=generator)
            for (i, j), text in zip(batch, decode_completions(self.tokenizer, result, stop=self.stop_ids)):
                out[i][j] = text
        return out
