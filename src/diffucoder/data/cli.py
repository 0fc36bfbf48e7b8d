"""``diffucoder curate``: the command-line door to ``run_curate``.

    diffucoder curate --config configs/tiny-cpu/curate.yaml --output runs/demo/curated
    diffucoder curate --config configs/tiny-cpu/curate.yaml --output s3://bucket/runs/r1/curated \\
        input.paths='[/data/corpus]' dedup.jaccard_threshold=0.8
    diffucoder curate --config configs/tiny-cpu/curate.yaml --print-config
    diffucoder curate --config configs/7b-gpu/curate.yaml --print-plan     # stages and tasks

One pod's slice of a run spread over a cluster (datatrove engine; every task of a stage
finishes before the next stage starts; the --workdir is shared), then the publishing step:

    diffucoder curate --config R --workdir /shared/w --stage select --task-rank 7
    diffucoder curate --config R --workdir /shared/w --stage publish --output s3://b/runs/r1/c

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
    parser.add_argument("--print-plan", action="store_true",
                        help="print the datatrove stages and their task counts, then exit")
    parser.add_argument("--stage", metavar="NAME",
                        help="run one stage's task (with --task-rank) or 'publish' (add up, "
                             "tokenize, pack and publish the finished stages); needs --workdir")
    parser.add_argument("--task-rank", type=int, metavar="I",
                        help="which task of --stage to run (0-based)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="recipe overrides, e.g. pack.seq_len=256 languages='[python]'")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(CurateConfig, args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    # Lazy on purpose: the curation pulls in datatrove, datasketch and transformers (with
    # torch), which `diffucoder curate --help` and --print-config must not load.
    from diffucoder.data.analyze import default_workers
    from diffucoder.data.curate import run_curate, run_curate_task
    from diffucoder.data.trove import stage_plan

    if args.print_plan:
        for stage, tasks in stage_plan(cfg, default_workers(cfg.workers)):
            print(f"{stage}: {tasks} task(s)")
        print("publish: 1 task")
        return 0
    if args.stage and not args.workdir:
        raise DiffucoderError("--stage needs --workdir (the directory every task shares)")
    if args.stage and args.stage != "publish":
        if args.task_rank is None:
            raise DiffucoderError(f"--stage {args.stage} needs --task-rank I")
        run_curate_task(cfg, args.workdir, args.stage, args.task_rank)
        print(f"finished task {args.task_rank} of stage {args.stage} in {args.workdir}")
        return 0
    if not args.output:
        raise DiffucoderError("--output URI is required (where to publish the curated shards)")
    result = run_curate(cfg, args.output, workdir=args.workdir, progress=not args.no_progress,
                        run_stages=args.stage != "publish")
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
