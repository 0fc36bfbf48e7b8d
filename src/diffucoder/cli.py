"""``diffucoder <command> ...``: the one entry point users, components and images share.

    diffucoder --help
    diffucoder curate --config configs/tiny-cpu/curate.yaml --output runs/x/curated input.paths='[/usr/lib/python3.11]'
    diffucoder pipeline run-local --preset tiny-cpu

Each command lives in the package that implements it, as a module exposing
``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported only
when their command runs, so ``diffucoder sandbox ...`` never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from diffucoder import __version__
from diffucoder.errors import DiffucoderError

# name -> (module with add_arguments/main, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "curate": ("diffucoder.data.cli",
               "filter, dedup, decontaminate, tokenize and pack a code corpus"),
    "store": ("diffucoder.store.cli", "list, fetch and verify artifacts in the artifact store"),
    "pipeline": ("diffucoder.pipeline_cli",
                 "compile, run locally, upload or submit the Kubeflow pipeline"),
}


def register(name: str, module: str, summary: str) -> None:
    """Add a command (used by stages as they land, and by tests)."""
    COMMANDS[name] = (module, summary)


def _load_optional_commands() -> None:
    """Commands of stages whose packages are present in this install."""
    optional = {
        "pretrain": ("diffucoder.training.cli", "masked-diffusion pre-training / adaptation"),
        "sft": ("diffucoder.training.cli_sft", "masked-diffusion instruction tuning"),
        "generate": ("diffucoder.sampling.cli", "decode prompts with the diffusion sampler"),
        "analyze-arness": ("diffucoder.sampling.arness_cli",
                           "measure how left-to-right decoding is (AR-ness@k)"),
        "sandbox": ("diffucoder.sandbox.cli", "run untrusted code against tests, isolated"),
        "evaluate": ("diffucoder.evaluation.cli", "pass@k of a model on code benchmarks"),
        "rl": ("diffucoder.rl.cli", "coupled-GRPO reinforcement learning"),
        "tasks": ("diffucoder.tasks.cli", "write the synthetic function-writing task suite"),
        "serve": ("diffucoder.serving.cli", "serve a model over HTTP (KServe + OpenAI routes)"),
        "kube": ("diffucoder.kube.cli", "render/launch training jobs, deploy to KServe"),
    }
    for name, (module, summary) in optional.items():
        if name not in COMMANDS and _module_exists(module):
            COMMANDS[name] = (module, summary)


def _module_exists(module: str) -> bool:
    """True if ``diffucoder.x.y`` is a file of this package (without importing ``diffucoder.x``,
    which would pull in torch just to print help)."""
    package_dir = Path(__file__).resolve().parent
    relative = Path(*module.split(".")[1:])
    return (package_dir / relative.with_suffix(".py")).is_file() or \
        (package_dir / relative / "__init__.py").is_file()


def build_parser() -> argparse.ArgumentParser:
    _load_optional_commands()
    parser = argparse.ArgumentParser(
        prog="diffucoder",
        description="Train, evaluate and serve masked-diffusion code LLMs "
                    "(DiffuCoder-class) locally or on Kubeflow.",
        epilog="Run 'diffucoder <command> --help' for a command's options. Config values "
               "are given as key.sub=value after the options.")
    parser.add_argument("--version", action="version", version=f"diffucoder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_module, summary) in sorted(COMMANDS.items()):
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        parser.parse_args(argv)
    name = argv[0]
    if name not in COMMANDS:
        parser.error(f"unknown command '{name}' (choose from {', '.join(sorted(COMMANDS))})")
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    cmd_parser = argparse.ArgumentParser(prog=f"diffucoder {name}", description=summary)
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except DiffucoderError as err:
        print(f"diffucoder {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffucoder {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
