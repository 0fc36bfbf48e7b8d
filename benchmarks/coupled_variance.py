"""Variance of the per-sequence log-likelihood estimate: coupled vs decoupled vs full-mask masks.

    .venv/bin/python benchmarks/coupled_variance.py                  # build + briefly SFT a tiny model
    .venv/bin/python benchmarks/coupled_variance.py --model DIR      # a saved model + tokenizer (e.g. SFT'd)
    .venv/bin/python benchmarks/coupled_variance.py --draws 500 --pairs 1,2,4 --sequences 6 --json out.json

For fixed completions and a fixed model, ``diffucoder.rl.token_logprobs`` is evaluated under
many independent mask draws; the per-sequence estimate is the sum of its per-token log-probs
over the completion (up to and including the end token). Each method uses the same number of
forward passes, ``1 + 2 * pairs``. The fixed sequences are synthetic tasks (one per family)
rendered through the SFT chat template (``diffucoder.training.chat``): prompt = the user turn
+ assistant header, completion = the reference answer + ``<|im_end|>`` + EOS, then a few
``<|dlm_pad|>`` (the model sees them, the estimate ignores them), as a rollout would look.

The table gives, per method: passes, the mean estimate (averaged over sequences), the variance
and std over draws (per sequence, averaged over sequences), the variance ratio to ``coupled``
at the same pairs (with a 95 % bootstrap interval over draws), and the per-token variance
(averaged over completion tokens). ``full_mask`` draws no random numbers: its variance is 0 by
construction, but it estimates a different quantity (the all-masked conditional only); it is
evaluated twice, to show that it is deterministic, not once per draw.

Without ``--model`` a ``tiny``-preset model is built with a BPE trained on the suite's chat
texts and trained for ``--train-steps`` SFT steps, so its log-probs are not those of random
weights. Threads: 1 (``torch.set_num_threads``), no gradients.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from diffucoder.diffusion import DiffusionLossConfig, diffusion_loss, sft_batch
from diffucoder.model import build_config, build_model, load_model
from diffucoder.rl import EstimatorConfig, completion_mask, token_logprobs
from diffucoder.sampling import encode_prompts, load_tokenizer
from diffucoder.tasks import generate_suite
from diffucoder.training.chat import split_chat

METHODS = ("coupled", "decoupled", "full_mask")


def fixed_texts(count: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(SFT training pairs, ``count`` fixed benchmark pairs: one held-out task per family)."""
    tasks = generate_suite(seed=seed, max_per_family=20)
    train = [split_chat(t.chat_record()) for t in tasks if t.split == "train"]
    chosen, families = [], set()
    for task in tasks:
        if task.split == "heldout" and task.family not in families:
            families.add(task.family)
            chosen.append(split_chat(task.chat_record()))
    if len(chosen) < count:
        sys.exit(f"only {len(chosen)} task families; ask for --sequences <= {len(chosen)}")
    return train, chosen[:count]


def special_ids(tokenizer, config) -> dict[str, int]:
    return {"eos": tokenizer.eos_token_id, "mask": config.mask_token_id,
            "dlm_pad": config.dlm_pad_token_id if config.dlm_pad_token_id is not None else tokenizer.eos_token_id}


def build_and_train(train: list[tuple[str, str]], args: argparse.Namespace):
    """A tiny-preset model + BPE tokenizer, trained for a few SFT steps on the suite's chat records."""
    from diffucoder.data.tokenizer import ensure_special_tokens, train_bpe
    tokenizer = train_bpe([p + r for p, r in train], vocab_size=args.vocab)
    ids = ensure_special_tokens(tokenizer)
    config = build_config("tiny", vocab_size=len(tokenizer), mask_token_id=ids["mask"],
                          dlm_pad_token_id=ids["dlm_pad"], pad_token_id=ids["pad"], bos_token_id=ids["eos"],
                          eos_token_id=ids["eos"])
    model = build_model(config, seed=args.seed).train()
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p, _ in train]
    responses = [tokenizer(r, add_special_tokens=False)["input_ids"] for _, r in train]
    seq_len = min(256, max(len(p) + len(r) for p, r in zip(prompts, responses)) + 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    loss_cfg = DiffusionLossConfig()
    start, losses = time.perf_counter(), []
    for step in range(args.train_steps):
        rows = torch.randint(0, len(prompts), (args.train_batch,), generator=generator).tolist()
        batch = sft_batch([prompts[i] for i in rows], [responses[i] for i in rows], seq_len,
                          dlm_pad_token_id=ids["dlm_pad"], eos_token_id=ids["eos"])
        out = diffusion_loss(model, batch.tokens, mask_token_id=ids["mask"], pad_token_id=ids["pad"],
                             config=loss_cfg, prompt_mask=batch.prompt_mask, step=step, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(out.loss.item())
    first, last = sum(losses[:5]) / max(1, len(losses[:5])), sum(losses[-5:]) / max(1, len(losses[-5:]))
    print(f"model: tiny preset, vocab {len(tokenizer)}, {args.train_steps} SFT steps of {args.train_batch} x "
          f"{seq_len} tokens in {time.perf_counter() - start:.0f}s (loss {first:.2f} -> {last:.2f})")
    return model.eval(), tokenizer


def fixed_batch(tokenizer, ids: dict[str, int], pairs: list[tuple[str, str]], pad_tail: int):
    """Left-padded prompts and completions = answer + EOS + <|dlm_pad|> tail, with the estimate's mask."""
    prompt_ids, prompt_attention = encode_prompts(tokenizer, [p for p, _ in pairs], add_special_tokens=False)
    answers = [tokenizer(r, add_special_tokens=False)["input_ids"] + [ids["eos"]] for _, r in pairs]
    width = max(len(a) for a in answers) + pad_tail
    completion = torch.full((len(pairs), width), ids["dlm_pad"], dtype=torch.long)
    for row, answer in enumerate(answers):
        completion[row, :len(answer)] = torch.tensor(answer)
    return prompt_ids, prompt_attention, completion, completion_mask(completion, [ids["eos"]])


@torch.no_grad()
def draw_estimates(model, inputs, cfg: EstimatorConfig, draws: int, chunk: int, mask_id: int,
                   seed: int) -> torch.Tensor:
    """(draws, B, C) per-token estimates; each replicated row of a chunk gets its own independent masks."""
    prompt_ids, attention, completion, mask = inputs
    generator = torch.Generator().manual_seed(seed)
    out = []
    for done in range(0, draws, chunk):
        k = min(chunk, draws - done)
        logp = token_logprobs(model, prompt_ids.repeat(k, 1), attention.repeat(k, 1), completion.repeat(k, 1),
                              mask.repeat(k, 1), cfg, generator, mask_id)
        out.append(logp.view(k, *completion.shape))
    return torch.cat(out)


def summarise(per_token: torch.Tensor, mask: torch.Tensor) -> dict:
    sequence = per_token.sum(dim=-1)                              # (draws, B)
    token_var = per_token.var(dim=0) if per_token.shape[0] > 1 else torch.zeros_like(per_token[0])
    return {"mean_estimate": float(sequence.mean()), "variance": float(sequence.var(dim=0).mean()),
            "token_variance": float(token_var[mask].mean()), "sequence": sequence}


def ratio_interval(seq: torch.Tensor, base: torch.Tensor, resamples: int = 400, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval (over draws, independently per method) of var(seq) / var(base)."""
    generator = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(resamples):
        a = seq[torch.randint(0, seq.shape[0], (seq.shape[0],), generator=generator)]
        b = base[torch.randint(0, base.shape[0], (base.shape[0],), generator=generator)]
        ratios.append(float(a.var(dim=0).mean() / b.var(dim=0).mean()))
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    train, chosen = fixed_texts(args.sequences, args.seed)
    if args.model:
        model, tokenizer = load_model(args.model).eval(), load_tokenizer(args.model)
        print(f"model: {args.model}")
    else:
        model, tokenizer = build_and_train(train, args)
    ids = special_ids(tokenizer, model.config)
    inputs = fixed_batch(tokenizer, ids, chosen, args.pad_tail)
    mask = inputs[3]
    print(f"{len(chosen)} fixed sequences: prompts {inputs[0].shape[1]} tokens wide (left-padded), completions "
          f"{mask.sum(1).tolist()} scored tokens of {mask.shape[1]}; {args.draws} mask draws per method\n")
    rows = []
    for pairs in args.pairs:
        results = {}
        for method in METHODS:
            cfg = EstimatorConfig(method=method, pairs=pairs)
            draws = 2 if method == "full_mask" else args.draws
            start = time.perf_counter()
            per_token = draw_estimates(model, inputs, cfg, draws, args.chunk, ids["mask"], args.seed + pairs)
            results[method] = dict(summarise(per_token, mask), seconds=time.perf_counter() - start, draws=draws)
        base = results["coupled"]
        for method, result in results.items():
            low, high = (ratio_interval(result["sequence"], base["sequence"], seed=args.seed)
                         if method != "full_mask" else (0.0, 0.0))
            rows.append({"method": method, "pairs": pairs, "passes": 1 + 2 * pairs, "draws": result["draws"],
                         "mean_estimate": result["mean_estimate"], "variance": result["variance"],
                         "std": math.sqrt(result["variance"]),
                         "ratio_to_coupled": result["variance"] / base["variance"],
                         "ratio_ci95": [low, high], "token_variance": result["token_variance"],
                         "seconds": result["seconds"]})
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'method':<10} {'pairs':>5} {'passes':>6} {'draws':>5} {'mean est.':>10} {'variance':>10} "
            f"{'std':>8} {'var/coupled':>11} {'95% CI':>15} {'token var':>10} {'time':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ci = f"[{r['ratio_ci95'][0]:.2f}, {r['ratio_ci95'][1]:.2f}]" if r["method"] != "full_mask" else "-"
        print(f"{r['method']:<10} {r['pairs']:>5} {r['passes']:>6} {r['draws']:>5} {r['mean_estimate']:>10.3f} "
              f"{r['variance']:>10.4f} {r['std']:>8.4f} {r['ratio_to_coupled']:>11.3f} {ci:>15} "
              f"{r['token_variance']:>10.5f} {r['seconds']:>5.1f}s")
    for pairs in sorted({r["pairs"] for r in rows}):
        by = {r["method"]: r for r in rows if r["pairs"] == pairs}
        verdict = "coupled < decoupled" if by["decoupled"]["ratio_ci95"][0] > 1 else (
            "no significant difference" if by["decoupled"]["ratio_ci95"][1] >= 1 else "coupled > decoupled")
        print(f"pairs={pairs}: var(decoupled) / var(coupled) = {by['decoupled']['ratio_to_coupled']:.2f} "
              f"(95% CI {by['decoupled']['ratio_ci95'][0]:.2f}-{by['decoupled']['ratio_ci95'][1]:.2f}): {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved model directory with its tokenizer (default: build and train one)")
    parser.add_argument("--draws", type=int, default=100, help="mask draws per method (report: 200)")
    parser.add_argument("--pairs", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                        help="comma-separated numbers of mask pairs (passes = 1 + 2 * pairs)")
    parser.add_argument("--sequences", type=int, default=2, help="fixed prompt/completion pairs (one task family each)")
    parser.add_argument("--pad-tail", type=int, default=4, help="<|dlm_pad|> tokens after each completion's EOS")
    parser.add_argument("--chunk", type=int, default=25, help="draws per batched call")
    parser.add_argument("--train-steps", type=int, default=40, help="SFT steps of the built model")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--vocab", type=int, default=1024, help="BPE size of the built model's tokenizer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.draws < 3 or args.sequences < 1 or min(args.pairs) < 1:
        parser.error("need --draws >= 3, --sequences >= 1 and every --pairs >= 1")
    start = time.perf_counter()
    rows = run(args)
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
