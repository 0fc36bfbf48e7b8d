"""``Engine``: the loaded model and tokenizer; whole padded batches, or rows one step at a time.

    engine = Engine.load("/mnt/models", cfg)               # cfg: ServeConfig
    ids = engine.encode("def add(a, b):")
    completions = engine.generate(rows)                    # rows: GenerationRequest, one batch key
    state = engine.start(row); engine.step([state, ...])   # continuous batching (exact mode)
    completion = engine.complete(row, state)               # once state.done

A batch is the rows' prompts left-padded together (as ``encode_prompts`` does) and
decoded by ``diffusion_generate`` with one generator; a stepped row has a generator of its
own (``sampling.stepwise``). A generator is seeded with the config's seed when the decode is
deterministic, the request's seed when it gave one, else a fresh random seed. Text is cut
at the first stop token (``sampler.stop``), then at the first stop string.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import torch

from diffucoder.sampling import diffusion_generate, load_tokenizer, stop_token_ids
from diffucoder.sampling.stepwise import RowDecode, step_rows
from diffucoder.sampling.text import cut_at_stop
from diffucoder.serving.config import ServeConfig


@dataclass
class Completion:
    text: str
    finish_reason: str          # "stop" (a stop token or string ended it) or "length"
    prompt_tokens: int
    completion_tokens: int


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer, cfg: ServeConfig):
        self.model, self.tokenizer, self.cfg = model.eval(), tokenizer, cfg
        self.mask_id = int(model.config.mask_token_id)
        limit = getattr(model.config, "max_position_embeddings", None)
        self.max_positions = limit if isinstance(limit, int) else None
        self.stop_ids = stop_token_ids(tokenizer, cfg.sampler.stop)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            from diffucoder.errors import DiffucoderError
            raise DiffucoderError("the tokenizer has neither a pad nor an EOS token to left-pad prompts with")
        self.pad_id = int(pad)
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: str | Path, cfg: ServeConfig) -> "Engine":
        from diffucoder.model import load_model
        tokenizer = load_tokenizer(model_dir)
        model = load_model(model_dir, dtype=getattr(torch, cfg.dtype), device=cfg.device)
        return cls(model, tokenizer, cfg)

    def encode(self, text: str) -> list[int]:
        """Prompt ids exactly as ``encode_prompts`` makes them (special tokens added as it does)."""
        return list(self.tokenizer([text], add_special_tokens=True)["input_ids"][0])

    def generate(self, rows: list) -> list[Completion]:
        """Decode rows that share one ``batch_key``; one ``Completion`` per row, in order."""
        config = rows[0].sampling
        width = max(len(row.prompt_ids) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row.prompt_ids):] = torch.tensor(row.prompt_ids, dtype=torch.long)
            attention_mask[index, width - len(row.prompt_ids):] = 1
        output = diffusion_generate(self.model, input_ids, attention_mask, config, generator=self.generator(rows[0]))
        return [self.finish(row, tokens) for row, tokens in zip(rows, output.completions.tolist())]

    def generator(self, row) -> torch.Generator:
        """The config's seed for a deterministic decode or a seeded request (a seeded random row
        decodes alone: see ``GenerationRequest.batch_key``); else a fresh random seed."""
        seed = secrets.randbits(63) if row.random and not row.seeded else row.sampling.seed
        return torch.Generator(device=self.device).manual_seed(seed)

    # -- continuous batching (``Batcher``'s stepper): exact-mode rows, one denoising step at a time --

    def steppable(self, row) -> bool:
        return not row.sampling.approximate

    def start(self, row) -> RowDecode:
        """The row's decode state: its prompt alone, its own generator (as ``generate`` on a batch of one)."""
        return RowDecode.start(self.model, row.prompt_ids, row.sampling, self.generator(row))

    def step(self, states: list[RowDecode]) -> None:
        step_rows(self.model, states)

    def complete(self, row, state: RowDecode) -> Completion:
        return self.finish(row, state.completion.tolist())

    def finish(self, row, tokens: list[int]) -> Completion:
        kept = cut_at_stop(tokens, self.stop_ids)
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        stopped = len(kept) < len(tokens)
        cut = min((i for i in (text.find(s) for s in row.stop_strings) if i >= 0), default=-1)
        count = len(kept)
        if cut >= 0:
            text, stopped = text[:cut], True
            count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return Completion(text, "stop" if stopped else "length", len(row.prompt_ids), count)
