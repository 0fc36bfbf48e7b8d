"""``diffucoder tasks``: write the synthetic task suite (and optionally publish it to the store).

    python -m diffucoder.tasks.cli --out runs/tasks --seed 0 --max-per-family 40 --verify
    python -m diffucoder.tasks.cli --out /tmp/tasks --publish file:///abs/store/tasks/v1
"""
from __future__ import annotations

import argparse
import collections
import sys

from diffucoder.errors import DiffucoderError
from diffucoder.store import resolve
from diffucoder.tasks.suite import generate_suite, verify_references, write_suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory for the JSONL files")
    parser.add_argument("--seed", type=int, default=0, help="wording and test-input seed")
    parser.add_argument("--heldout-fraction", type=float, default=0.2,
                        help="share of parameter sets held out (default: %(default)s)")
    parser.add_argument("--max-per-family", type=int, default=0,
                        help="at most this many tasks per family and split (0 = all)")
    parser.add_argument("--rl-fraction", type=float, default=0.0,
                        help="share of the other parameter sets kept out of SFT for RL, tasks-rl.jsonl "
                             "(default: %(default)s)")
    parser.add_argument("--verify", action="store_true",
                        help="run every reference solution against its tests first")
    parser.add_argument("--publish", default="", help="also publish the files as this store artifact URI")


def main(args: argparse.Namespace) -> int:
    tasks = generate_suite(args.seed, args.heldout_fraction, args.max_per_family, rl_fraction=args.rl_fraction)
    if args.verify:
        failures = verify_references(tasks)
        if failures:
            raise DiffucoderError(f"{len(failures)} reference solutions fail their tests: {failures[:5]}")
    paths = write_suite(tasks, args.out)
    counts = collections.Counter(t.split for t in tasks)
    print(f"{len(tasks)} tasks ({dict(counts)}) from {len({t.family for t in tasks})} families")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    if args.publish:
        store, name = resolve(args.publish)
        store.put_artifact(name, args.out, metadata={"kind": "task-suite", "seed": args.seed,
                                                     "counts": dict(counts)})
        print(f"published {store.uri(name)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="diffucoder tasks", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except DiffucoderError as err:
        print(f"diffucoder tasks: error: {err}", file=sys.stderr)
        sys.exit(2)
