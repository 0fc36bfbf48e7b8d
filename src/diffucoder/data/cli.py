"""``diffucoder curate``: the command-line door to ``run_curate``.

    diffucoder curate --config configs/tiny-cpu/curate.yaml --output runs/demo/curated
    diffucoder curate --config configs/tiny-cpu/curate.yaml --output s3://bucket/runs/r1/curated \\
        input.paths='[/data/corpus]' dedup.jaccard_threshold=0.8
    diffucoder curate --config configs/tiny-cpu/curate.yaml --print-config

Trailing ``key.sub=value`` arguments override the recipe (values are YAML).
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from diffucoder.config import dump_yaml, load_config
from diffucoder.data.config import CurateConfig
from diffucoder.errors import DiffucoderError


def _recipe_keys(cls: type, prefix: str = "") -> list[str]:
    """One line per config key: dotted name, default, help (for the --help epilog)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            lines += _recipe_keys(hints[f.name], key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {key} = {default!r}\n      {f.metadata.get('help', '')}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Curate a code corpus: read source trees or JSONL/Parquet (local or s3://), keep the "
        "chosen languages, apply quality filters, remove exact and near duplicates (MinHash "
        "LSH) and benchmark overlap (HumanEval by default), tokenize (trained BPE or a "
        "Hugging Face tokenizer), pack fixed-length train/validation shards and publish them "
        "with a report (stats.json, report.md, PNG plots) to the artifact store.")
    parser.epilog = ("Recipe keys (set in the YAML or as key.sub=value; "
                     "'<python-stdlib>' is this Python's standard library):\n"
                     + "\n".join(_recipe_keys(CurateConfig)))
    parser.add_argument("--config", metavar="FILE",
                        help="recipe YAML, e.g. configs/tiny-cpu/curate.yaml (default: "
                             "built-in defaults)")
    parser.add_argument("--output", metavar="URI",
                        help="artifact to publish: file:///abs/dir/name, a path, or "
                             "s3://bucket/prefix/name (required unless --print-config)")
    parser.add_argument("--workdir", metavar="DIR",
                        help="build here and keep it (default: a temporary directory, removed "
                             "after publishing except report/)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved recipe as YAML and exit")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="recipe overrides, e.g. pack.seq_len=256 languages='[python]'")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(CurateConfig, args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if not args.output:
        raise DiffucoderError("--output URI is required (where to publish the curated shards)")
    # Lazy on purpose: the curation pulls in datasketch and transformers (with torch), which
    # `diffucoder curate --help` and --print-config must not load.
    from diffucoder.data.curate import run_curate

    result = run_curate(cfg, args.output, workdir=args.workdir, progress=not args.no_progress)
    m = result.metrics
    print(f"published {result.uri}")
    print(f"  documents: {int(m['docs_read']):,} read, {int(m['docs_kept']):,} kept; "
          f"near-duplicate clusters {int(m['near_dup_clusters'])}, "
          f"decontaminated {int(m['decontam_hits'])}")
    print(f"  tokens: train {int(m['train_tokens']):,} ({int(m['train_rows']):,} rows), "
          f"validation {int(m['val_tokens']):,} ({int(m['val_rows']):,} rows), "
          f"vocabulary {int(m['vocab_size']):,}")
    print(f"  took {m.get('seconds_total', 0.0):.1f} s")
    print(f"report: {result.report_md}")
    print(f"stats:  {result.stats_json}")
    return 0
