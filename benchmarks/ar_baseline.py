"""An autoregressive baseline of the same size on the same data: is the data, or the budget, the limit?

    from ar_baseline import train_ar, ARCompleter
    model, tokenizer, seconds = train_ar(init_dir, suite / "sft-train.jsonl", steps=1500, lr=2e-3,
                                         batch_size=16, seq_len=160, seed=0)
    completer = ARCompleter(model, tokenizer, max_new_tokens=48)   # greedy, left to right
    evaluate(cfg, None, out_dir, completer=completer)              # the same scoring as the DAG

The model is the masked-diffusion model's architecture (``DreamModel``, same shape, same tokenizer,
same initial weights) run with a causal attention mask and trained with next-token cross-entropy on
the answer tokens only (the prompt is context, as in the SFT recipe), with the same optimizer
settings, batch, rows and steps as the diffusion SFT it is compared with. Decoding is greedy, one
token at a time, without a cache (answers are a few dozen tokens). It exists to tell a data or budget
problem (neither objective learns) from one of the bidirectional objective (only AR learns).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from diffucoder.diffusion.loss import causal_attention_mask
from diffucoder.evaluation.generation import completion_stop_ids
from diffucoder.model import load_model
from diffucoder.sampling import load_tokenizer
from diffucoder.training.data_loader import ChatRows
from diffucoder.training.inputs import special_ids


def train_ar(init_dir: Path, train_file: Path, *, steps: int, lr: float, batch_size: int, seq_len: int,
             seed: int, warmup_steps: int = 50, min_lr_ratio: float = 0.1, log_every: int = 0):
    """Train a causal copy of ``init_dir``'s model on the chat file; (model, tokenizer, seconds, losses)."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(init_dir)
    ids = special_ids(tokenizer, "model.init_from")
    rows = ChatRows.from_jsonl(train_file, tokenizer, seq_len, ids)
    model = load_model(init_dir).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, min(warmup_steps, steps))

    def scale(step: int) -> float:   # the SFT recipe's schedule: linear warm-up, cosine to min_lr_ratio
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + np.cos(np.pi * progress))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
    order = np.random.default_rng(seed)
    losses, started = [], time.perf_counter()
    for step in range(steps):
        batch = rows.batch(order.integers(0, len(rows), batch_size))
        tokens = batch.tokens
        # Only the answer (+ its eos) is scored: targets are tokens 1..L-1 that are not prompt,
        # not <|dlm_pad|> fill and inside the canvas.
        answer = ~batch.prompt_mask & batch.attention_mask.bool() & (tokens != ids["dlm_pad"])
        logits = model(tokens, attention_mask=causal_attention_mask(batch.attention_mask)).logits
        target_mask = answer[:, 1:]
        loss = F.cross_entropy(logits[:, :-1][target_mask], tokens[:, 1:][target_mask])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"  AR step {step + 1}: loss {np.mean(losses[-log_every:]):.3f}", flush=True)
    return model.eval(), tokenizer, time.perf_counter() - started, losses


class ARCompleter:
    """Greedy left-to-right completions of the causal model (the evaluation's ``Completer``)."""

    def __init__(self, model, tokenizer, max_new_tokens: int):
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.stop_ids = set(completion_stop_ids(tokenizer))

    def describe(self) -> dict:
        return {"completer": "autoregressive greedy", "max_new_tokens": self.max_new_tokens}

    @torch.no_grad()
    def complete(self, prompts: Sequence[str], n: int) -> list[list[str]]:
        out = []
        for prompt in prompts:
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer: list[int] = []
            for _ in range(self.max_new_tokens):
                tokens = torch.tensor([ids + answer])
                logits = self.model(tokens, attention_mask=causal_attention_mask(torch.ones_like(tokens))).logits
                token = int(logits[0, -1].argmax())
                if token in self.stop_ids:
                    break
                answer.append(token)
            out.append([self.tokenizer.decode(answer)] * n)   # greedy: every sample is the same
        return out
