"""Run a training recipe as its command would, but stop and wait after step N: the kill-and-resume
tests start this, wait for the line it prints, and SIGKILL it there.

    python -m tests.training.paused_run --pause-after 5 pretrain --config recipe.yaml
    python -m torch.distributed.run --nproc_per_node 2 -m tests.training.paused_run --pause-after 3 \\
        rl train --config recipe.yaml

The pause is the recipes' ``on_step`` callback, so the loop that runs is the shipped one.
"""
import argparse
import sys
import time

from diffucoder.recipes import coupled_grpo, masked_diffusion


def pause_after(step: int):
    def on_step(state) -> None:
        if state.step == step:
            print(f"paused after step {step}", flush=True)
            time.sleep(3600)
    return on_step


def main(argv: list[str]) -> int:
    head = argparse.ArgumentParser()
    head.add_argument("--pause-after", type=int, required=True)
    head.add_argument("command", choices=("pretrain", "sft", "rl"))
    known, rest = head.parse_known_args(argv)
    parser = argparse.ArgumentParser()
    if known.command == "rl":
        coupled_grpo.add_arguments(parser)
        args = parser.parse_args(rest)
        coupled_grpo.train_rl(coupled_grpo.load_recipe(args), on_step=pause_after(known.pause_after))
    else:
        masked_diffusion.add_arguments(parser)
        args = parser.parse_args(rest)
        masked_diffusion.train(masked_diffusion.load_recipe(args, known.command),
                               on_step=pause_after(known.pause_after))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
