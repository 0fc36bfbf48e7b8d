"""Run a training recipe as its command would, but stop and wait at a chosen moment: the
kill-and-resume tests start this, wait for the line it prints, and SIGKILL it there.

    python -m tests.training.paused_run --pause-after 5 pretrain --config recipe.yaml
    python -m tests.training.paused_run --pause-in-save 6 --at uploaded:2 pretrain --config recipe.yaml
    python -m torch.distributed.run --nproc_per_node 2 -m tests.training.paused_run --pause-after 3 \\
        rl train --config recipe.yaml

``--pause-after N`` is the recipes' ``on_step`` callback (after step N and its checkpoint), so the
loop that runs is the shipped one. ``--pause-in-save N --at POINT`` stops inside the checkpoint
write of step N, in rank 0's publish of ``step-N``: ``staged`` (its files written locally, none
uploaded), ``uploaded:K`` (K of its files in the store, no manifest yet) or ``published`` (the
manifest written, the older checkpoints not yet pruned).
"""
import argparse
import sys
import time

from diffucoder.recipes import coupled_grpo, masked_diffusion
from diffucoder.store import ArtifactStore
from diffucoder.training.checkpoint import step_name

SAVE_POINTS = ("staged", "uploaded:K", "published")


def pause(why: str) -> None:
    print(f"paused {why}", flush=True)
    time.sleep(3600)


def pause_after(step: int):
    def on_step(state, _engine) -> None:
        if state.step == step:
            pause(f"after step {step}")
    return on_step


def pause_in_save(step: int, point: str) -> None:
    """Make the store's publish of ``step-<step>`` stop at ``point`` (a test-only wrap)."""
    publish, name = ArtifactStore.put_artifact, step_name(step)
    where = f"in the save of step {step} at {point}"

    def put_artifact(self, artifact, source, metadata=None, progress=None):
        if artifact != name:
            return publish(self, artifact, source, metadata, progress)
        if point == "staged":
            pause(where)
        uploaded = []

        def counted(relpath: str, size: int) -> None:   # runs in the upload threads
            uploaded.append(relpath)
            if point == f"uploaded:{len(uploaded)}":
                pause(where)
        manifest = publish(self, artifact, source, metadata, counted)
        if point == "published":
            pause(where)
        return manifest

    ArtifactStore.put_artifact = put_artifact


def main(argv: list[str]) -> int:
    head = argparse.ArgumentParser()
    head.add_argument("--pause-after", type=int, default=0, help="stop after this step (and its checkpoint)")
    head.add_argument("--pause-in-save", type=int, default=0, help="stop inside the checkpoint write of this step")
    head.add_argument("--at", default="staged", help=f"where in that write: {', '.join(SAVE_POINTS)}")
    head.add_argument("command", choices=("pretrain", "sft", "rl"))
    known, rest = head.parse_known_args(argv)
    if bool(known.pause_after) == bool(known.pause_in_save):
        head.error("give one of --pause-after or --pause-in-save")
    on_step = pause_after(known.pause_after) if known.pause_after else None
    if known.pause_in_save:
        pause_in_save(known.pause_in_save, known.at)
    parser = argparse.ArgumentParser()
    if known.command == "rl":
        coupled_grpo.add_arguments(parser)
        args = parser.parse_args(rest)
        coupled_grpo.train_rl(coupled_grpo.load_recipe(args), on_step=on_step)
    else:
        masked_diffusion.add_arguments(parser)
        args = parser.parse_args(rest)
        masked_diffusion.train(masked_diffusion.load_recipe(args, known.command), on_step=on_step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
