"""``diffucoder analyze-arness``: how left-to-right a model decodes, per temperature.

    diffucoder analyze-arness --model out/tiny --prompts prompts.jsonl \\
        --temperatures 0.2,0.6,1.0 --output out/arness --max-new-tokens 64
    diffucoder analyze-arness --model out/tiny --prompts prompts.txt --output out/arness \\
        --config configs/tiny-cpu/sampling.yaml --max-k 16 top_p=1.0

Writes ``arness.md`` (table), ``arness.json`` and ``arness.png`` (AR-ness@k vs k,
one line per temperature) into ``--output``. Prompts: ``.jsonl`` with a ``"prompt"``
field, or any other file with one prompt per line.
"""
from __future__ import annotations

import argparse

import torch

from diffucoder.config import load_config
from diffucoder.errors import DiffucoderError
from diffucoder.model import load_model
from diffucoder.sampling.arness_report import arness_table, measure_arness, read_prompts, write_arness_report
from diffucoder.sampling.config import SamplingConfig
from diffucoder.sampling.text import load_tokenizer


def _temperatures(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"temperatures are comma-separated numbers, got {text!r}") from None
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"give one or more temperatures >= 0, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("Decode a prompt set one token per step at several temperatures and report local "
                          "and global AR-ness@k (docs/method.md, section 3.5).")
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory with its tokenizer")
    parser.add_argument("--prompts", required=True, metavar="FILE", help=".jsonl ('prompt' field) or .txt")
    parser.add_argument("--temperatures", type=_temperatures, default=[0.2, 0.6, 1.0], metavar="T1,T2,...",
                        help="decoding temperatures (default 0.2,0.6,1.0)")
    parser.add_argument("--output", required=True, metavar="DIR", help="where to write the table, JSON and plot")
    parser.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                        help="completion length; steps = N (default 256)")
    parser.add_argument("--max-k", type=int, default=8, metavar="K", help="report k = 1..K (default 8)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="prompts decoded together")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="model weights dtype (default float32; bf16 on CPU is slow)")
    parser.add_argument("--config", metavar="FILE", help="sampling YAML (alg, top_p, ...); temperature is swept")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="sampling overrides, e.g. alg=maskgit_plus")


def main(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1 or args.max_k < 1:
        raise DiffucoderError("--max-new-tokens and --max-k must be >= 1")
    config = load_config(SamplingConfig, args.config, args.overrides)
    prompts = read_prompts(args.prompts)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=getattr(torch, args.dtype), device=args.device).eval()
    result = measure_arness(model, tokenizer, prompts, args.temperatures, args.max_new_tokens,
                            ks=range(1, args.max_k + 1), config=config, batch_size=args.batch_size, seed=args.seed)
    paths = write_arness_report(result, args.output)
    print(arness_table(result), end="")
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0
