"""``diffucoder generate``: decode prompts with the diffusion sampler and print the completions.

    diffucoder generate --model out/tiny --prompt 'def add(a, b):'
    diffucoder generate --model out/tiny --prompt 'import os' --prompt 'class A:' \\
        --config configs/tiny-cpu/sampling.yaml temperature=0 steps=32 max_new_tokens=32
    diffucoder generate --model out/tiny --prompt 'x =' mode=approx_prefix_cache block_size=16

The model directory holds the weights (``save_model``) and the tokenizer saved beside
them. Trailing ``key=value`` arguments override ``SamplingConfig`` (values are YAML).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from diffucoder.config import load_config
from diffucoder.model import load_model
from diffucoder.sampling.config import SamplingConfig
from diffucoder.sampling.generate import diffusion_generate
from diffucoder.sampling.text import decode_completions, encode_prompts, load_tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = "Decode prompts with the masked-diffusion sampler (docs/method.md, section 3)."
    parser.epilog = "Sampling keys (key=value):\n" + "\n".join(
        f"  {f.name} = {f.default!r}\n      {f.metadata.get('help', '')}" for f in dataclasses.fields(SamplingConfig))
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory with its tokenizer")
    parser.add_argument("--prompt", action="append", required=True, metavar="TEXT",
                        help="prompt text; repeat to decode a batch")
    parser.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="model weights dtype (default float32; bf16 on CPU is slow)")
    parser.add_argument("--config", metavar="FILE", help="sampling YAML, e.g. configs/tiny-cpu/sampling.yaml")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per prompt (completion, timing) instead of plain text")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="sampling overrides, e.g. steps=128")


def main(args: argparse.Namespace) -> int:
    config = load_config(SamplingConfig, args.config, args.overrides)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=getattr(torch, args.dtype), device=args.device).eval()
    input_ids, attention_mask = encode_prompts(tokenizer, args.prompt)
    started = time.perf_counter()
    output = diffusion_generate(model, input_ids, attention_mask, config)
    seconds = time.perf_counter() - started
    texts = decode_completions(tokenizer, output, stop=config.stop)
    for prompt, text in zip(args.prompt, texts):
        if args.json:
            print(json.dumps({"prompt": prompt, "completion": text, "mode": config.mode,
                              "forward_passes": output.forward_passes, "seconds": round(seconds, 3)}))
        else:
            print(text)
    return 0
