"""Training-step throughput: tokens/s, achieved FLOP/s and MFU against this machine's matmul peak.

    python benchmarks/train_throughput.py                          # tiny and small, fp32, CPU
    python benchmarks/train_throughput.py --presets tiny --batch-size 8 --seq-len 256 --steps 10
    python benchmarks/train_throughput.py --grad-checkpointing --threads 2

Each step is the trainer's own: masked-diffusion loss (``diffusion_loss``), backward, clip,
AdamW, schedule (``TorchEngine``), on random tokens. Model FLOPs per token follow
``diffucoder.training.flops`` (6 N + attention; recomputation not counted). The peak is
the best rate of a square fp32 matmul measured in the same process, with the same threads,
just before the steps, so MFU = achieved / peak compares like with like.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from diffucoder.config import load_config
from diffucoder.diffusion.loss import DiffusionLossConfig, diffusion_loss
from diffucoder.model import build_config, build_model, param_count
from diffucoder.recipes.masked_diffusion import TrainConfig
from diffucoder.training.distributed import DistEnv
from diffucoder.training.engines import TorchEngine
from diffucoder.training.flops import flops_per_token, measure_matmul_peak

VOCAB = {"tiny": 4096, "small": 8192}   # the curation's BPE sizes for these presets


def bench_preset(preset: str, args: argparse.Namespace, peak: float) -> dict:
    config = build_config(preset, vocab_size=VOCAB.get(preset, 8192))
    model = build_model(config, seed=0)
    if args.grad_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    cfg = load_config(TrainConfig, None, [f"train.steps={args.warmup + args.steps}", "optim.warmup_steps=1",
                                          f"data.batch_size={args.batch_size}"])
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="none")
    engine = TorchEngine(model, env, "none", cfg.optim, cfg.layout())
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, config.vocab_size, (args.batch_size, args.seq_len), generator=gen)
    loss_cfg = DiffusionLossConfig(anneal_steps=0)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        out = diffusion_loss(engine.model, tokens, mask_token_id=config.mask_token_id,
                             pad_token_id=config.pad_token_id, config=loss_cfg, step=step, generator=gen)
        engine.backward(out.loss)
        engine.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    per_token = flops_per_token(config, args.seq_len)
    tokens_per_s = args.batch_size * args.seq_len / seconds
    return {"preset": preset, "params": param_count(config), "step_s": seconds, "tokens_per_s": tokens_per_s,
            "flops_per_s": tokens_per_s * per_token, "mfu": tokens_per_s * per_token / peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = measure_matmul_peak(args.peak_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU; "
          f"batch {args.batch_size} x seq {args.seq_len}; measured {args.peak_size}^2 matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s")
    print(f"{'preset':<8}{'params':>12}{'step s':>10}{'tokens/s':>12}{'GFLOP/s':>10}{'MFU':>8}")
    for preset in args.presets:
        r = bench_preset(preset, args, peak)
        print(f"{r['preset']:<8}{r['params']:>12,}{r['step_s']:>10.3f}{r['tokens_per_s']:>12.0f}"
              f"{r['flops_per_s'] / 1e9:>10.2f}{r['mfu']:>8.1%}")


if __name__ == "__main__":
    main()
