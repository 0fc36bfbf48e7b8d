"""``diffucoder curate``: the command-line door to ``run_curate``.

    diffucoder curate --config configs/tiny-cpu/curate.yaml --output runs/demo/curated
    diffucoder curate --config configs/tiny-cpu/curate.yaml --output s3://bucket/runs/r1/curated \\
        input.paths='[/data/corpus]' dedup.jaccard_threshold=0.8
    diffucoder curate --config configs/tiny-cpu/curate.yaml --print-config
    diffucoder curate --config configs/7b-gpu/curate.yaml --print-plan     # stages, pods, time

One pod's slice of a run spread over a cluster (datatrove engine; every task of a stage
finishes before the next stage starts), then the publishing step. The --workdir is a
directory every pod shares, or a work directory in the store (s3:// or file://): each slice
then downloads what it reads and publishes what it wrote there (diffucoder.data.trove_store):

    diffucoder curate --config R --workdir s3://b/runs/r1/curate-work --stage select --task-rank 7
    diffucoder curate --config R --workdir s3://b/runs/r1/curate-work --stage keep --task-rank 16:32
    diffucoder curate --config R --workdir s3://b/runs/r1/curate-work --stage publish \
        --output s3://b/runs/r1/curated

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
                             "after publishing except report/); with --stage, the slices' "
                             "shared directory or an s3:// / file:// work directory in the store")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved recipe as YAML and exit")
    parser.add_argument("--print-plan", action="store_true",
                        help="print the datatrove stages: tasks, pods, workers and memory per "
                             "worker, expected wall time (the spread.* keys), then exit")
    parser.add_argument("--stage", metavar="NAME",
                        help="run one stage's task (with --task-rank) or 'publish' (add up, "
                             "tokenize, pack and publish the finished stages); needs --workdir")
    parser.add_argument("--task-rank", metavar="I|A:B",
                        help="which task of --stage to run (0-based), or the tasks A..B-1")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="recipe overrides, e.g. pack.seq_len=256 languages='[python]'")


def print_plan(cfg: CurateConfig, workers: int) -> None:
    """The stages as a cluster runs them (``trove.spread_plan``), and what a local run does."""
    from diffucoder.data.trove import spread_plan   # lazy: datatrove (see main)

    sp = cfg.spread
    print(f"datatrove stages ({cfg.tasks or workers} task(s) per per-document stage; a local run "
          f"uses {workers} worker(s)); on a cluster, pods of {sp.tasks_per_pod} task(s):")
    for row in spread_plan(cfg, workers):
        wall = f"~{_duration(row.wall_s)}" if row.wall_s is not None else \
            "not estimated (grows with the number of documents)"
        print(f"{row.stage}: {row.tasks} task(s), {row.pods} pod(s) x {row.workers} worker(s), "
              f"{row.memory_per_worker} per worker ({row.pod_memory} per pod), wall {wall}")
    print("publish: 1 task (adds up, tokenizes and packs in one process)")
    if sp.input_gb:
        print(f"wall times: {sp.input_gb:g} GB read at {sp.mb_per_s_per_core:g} MB/s per core "
              "(spread.mb_per_s_per_core: the rate benchmarks/curate.py measured on one machine, "
              "not measured at scale), every pod of a stage at once; signatures and keep read "
              "only what select kept, so theirs are upper bounds")
    else:
        print("wall times: not estimated (set spread.input_gb)")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main(args: argparse.Namespace) -> int:
    cfg = load_config(CurateConfig, args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    # Lazy on purpose: the curation pulls in datatrove, datasketch and transformers (with
    # torch), which `diffucoder curate --help` and --print-config must not load.
    from diffucoder.data.analyze import default_workers
    from diffucoder.data.curate import run_curate, run_curate_task

    if args.print_plan:
        print_plan(cfg, default_workers(cfg.workers))
        return 0
    if args.stage and not args.workdir:
        raise DiffucoderError("--stage needs --workdir (the directory every task shares)")
    if args.stage and args.stage != "publish":
        if args.task_rank is None:
            raise DiffucoderError(f"--stage {args.stage} needs --task-rank I")
        print(run_curate_task(cfg, args.workdir, args.stage, args.task_rank))
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
