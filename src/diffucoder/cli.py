"""``diffucoder <command> ...``: the one entry point users, components and images share.

    diffucoder --help
    diffucoder curate --config configs/tiny-cpu/curate.yaml --output runs/x/curated input.paths='[/usr/lib/python3.11]'
    diffucoder pipeline run-local --preset tiny-cpu

A stage's command comes from the stage registry (``diffucoder.stages.registry``); the tools
are listed here. Each command lives in the package that implements it, as a module exposing
``add_arguments(parser)`` and ``main(args) -> int``, imported only when its command runs
(``diffucoder sandbox ...`` never imports torch; ``diffucoder pipeline`` needs the
``pipeline`` extra, kfp).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import sys

from diffucoder import __version__
from diffucoder.errors import DiffucoderError
from diffucoder.stages.registry import STAGES

# Commands that are not a stage of the run: name -> (module with add_arguments/main, summary).
TOOLS: dict[str, tuple[str, str]] = {
    "store": ("diffucoder.store.cli", "list, fetch and verify artifacts in the artifact store"),
    "tasks": ("diffucoder.tasks.cli", "write the synthetic function-writing task suite"),
    "generate": ("diffucoder.sampling.cli", "decode prompts with the diffusion sampler"),
    "analyze-arness": ("diffucoder.sampling.arness_cli", "measure how left-to-right decoding is (AR-ness@k)"),
    "sandbox": ("diffucoder.sandbox.cli", "run untrusted code against tests, isolated"),
    "serve": ("diffucoder.serving.cli", "serve a model over HTTP (KServe + OpenAI routes)"),
    "kube": ("diffucoder.stages.kube_cli", "render/launch training jobs, deploy to KServe"),
    "pipeline": ("diffucoder_kfp.cli", "compile, run locally, upload or submit the Kubeflow pipeline"),
    "doctor": ("diffucoder.doctor_cli", "preflight checks of a cluster (--cluster)"),
}

COMMANDS: dict[str, tuple[str, str]] = {
    **{s.name: (s.cli, s.summary) for s in STAGES if s.cli}, **TOOLS}


def _installed(module: str) -> bool:
    """Whether ``module``'s top-level package is importable (``diffucoder_kfp`` ships with the
    distribution; an install without it has no ``pipeline`` command)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffucoder",
        description="Train, evaluate and serve masked-diffusion code LLMs "
                    "(DiffuCoder-class) locally or on Kubeflow.",
        epilog="Run 'diffucoder <command> --help' for a command's options. Config values "
               "are given as key.sub=value after the options.")
    parser.add_argument("--version", action="version", version=f"diffucoder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module, summary) in sorted(COMMANDS.items()):
        if _installed(module):
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def _load(name: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name in ("kfp", "kfp_kubernetes") or (err.name or "").startswith("kfp."):
            raise DiffucoderError(f"'diffucoder {name}' needs Kubeflow Pipelines' SDK: "
                                  "pip install 'diffucoder[pipeline]'") from None
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        parser.parse_args(argv)
    name = argv[0]
    if name not in COMMANDS or not _installed(COMMANDS[name][0]):
        parser.error(f"unknown command '{name}' (choose from {', '.join(sorted(COMMANDS))})")
    module_name, summary = COMMANDS[name]
    try:
        module = _load(name, module_name)
        cmd_parser = argparse.ArgumentParser(prog=f"diffucoder {name}", description=summary)
        cmd_parser.set_defaults(command=name)   # a module serving several commands reads which one ran
        module.add_arguments(cmd_parser)
        args = cmd_parser.parse_args(argv[1:])
        return int(module.main(args) or 0)
    except DiffucoderError as err:
        print(f"diffucoder {name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"diffucoder {name}: error: {err.strerror} writing {err.filename or 'a file'}: free space and "
              "rerun (published artifacts and checkpoints are whole or absent, never partial)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffucoder {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
