"""Curation throughput and counts on a corpus of your choice (prints figures; not a test).

    STDLIB=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
    python benchmarks/curate.py --input "$STDLIB"          # both engines, 1 and 2 workers
    python benchmarks/curate.py --input ~/src --engines datatrove --workers 2 \
        languages='[python, c]'

Runs the whole ``run_curate`` (recipe ``configs/tiny-cpu/curate.yaml`` unless --config)
into a temporary file store once per engine and worker count, in the same process run, and
prints MB/s per core for each phase and overall, then what the filters, decontamination and
dedup removed; a last table puts the engines side by side.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> float:
    own, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(cfg, run_curate):
    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        started, cpu0 = time.perf_counter(), _cpu_seconds()
        result = run_curate(cfg, f"file://{tmp}/store/curated", workdir=f"{tmp}/work",
                            progress=sys.stderr.isatty())
        return result.stats, time.perf_counter() - started, _cpu_seconds() - cpu0


def _print_run(s, paths, engine, workers, wall, cpu) -> None:
    cores = os.cpu_count() or 1
    mb = s["read"]["bytes"] / 1e6
    t = s["timings"]
    print(f"\n=== engine {engine}, {workers} worker(s) ===")
    print(f"corpus: {paths}")
    print(f"read {s['read']['documents']:,} documents, {mb:.1f} MB; {cores} core(s)")
    print(f"{'phase':<34}{'seconds':>9}{'MB/s':>9}{'MB/s/core':>11}")
    rows = [("select (filters, decontam, dedup)", t["select_s"], workers),
            ("tokenizer (BPE training)", t["tokenizer_s"], cores),
            ("pack (tokenize + write shards)", t["pack_s"], cores),
            ("total (incl. report, publish)", wall, cores)]
    for name, sec, used in rows:
        rate = mb / sec if sec > 0 else float("inf")
        print(f"{name:<34}{sec:>9.2f}{rate:>9.2f}{rate / used:>11.2f}")
    print(f"CPU time {cpu:.1f} s (this process + workers): {mb / cpu:.2f} MB per CPU-second "
          "(per-core speed, not skewed by other load on the machine)")
    print("removed (documents):")
    for reason, n in s["read"]["bad_input"].items():
        print(f"  read/{reason:<28}{n:>8,}")
    for stage in ("filter", "decontam", "dedup"):
        for reason, n in s["removed"][stage].items():
            print(f"  {stage}/{reason:<{34 - len(stage)}}{n:>6,}")
    near = s["near_dedup"]
    if near.get("enabled"):
        print(f"near-dup clusters {near['clusters']:,} (largest {near['largest_cluster']}); "
              f"LSH {near['bands']} bands x {near['rows']} rows")
        if "checked_pairs" in near:
            print(f"  exact-Jaccard check: {near['below_threshold']} of {near['checked_pairs']} "
                  "dropped files below the threshold against their cluster's kept file")
        for ex in near["examples"][:5]:
            print(f"  J est {ex['estimated_jaccard']:.2f} true {ex['true_jaccard']:.2f}: "
                  f"{ex['kept']}  ~  {ex['dropped']}")
    print(f"kept {s['kept']['documents']:,} documents, {s['kept']['bytes'] / 1e6:.1f} MB -> "
          f"{s['pack']['train']['tokens']:,} train + {s['pack']['val']['tokens']:,} val tokens "
          f"(vocab {s['tokenizer']['vocab_size']:,}, seq_len {s['pack']['seq_len']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, nargs="+", help="directories or files")
    parser.add_argument("--max-files", type=int, default=0, help="read at most N files")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to measure (0 = one per core)")
    parser.add_argument("--engines", nargs="+", default=["builtin", "datatrove"],
                        choices=["builtin", "datatrove"])
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny-cpu" / "curate.yaml"))
    parser.add_argument("overrides", nargs="*", help="key.sub=value recipe overrides")
    args = parser.parse_args()

    from diffucoder.config import load_config
    from diffucoder.data import CurateConfig, run_curate
    from diffucoder.data.analyze import default_workers

    paths = ", ".join(str(Path(p).expanduser().absolute()) for p in args.input)
    summary = []
    for engine in args.engines:
        for requested in args.workers:
            cfg = load_config(CurateConfig, args.config, [
                f"input.paths=[{paths}]", f"input.max_files={args.max_files}",
                f"workers={requested}", f"engine={engine}", *args.overrides])
            stats, wall, cpu = _run(cfg, run_curate)
            workers = default_workers(cfg.workers)
            _print_run(stats, paths, engine, workers, wall, cpu)
            mb = stats["read"]["bytes"] / 1e6
            summary.append((engine, workers, stats["timings"]["select_s"], wall, mb, cpu,
                            stats["removed"]["dedup"]))
    print("\nside by side (select = read, filters, decontamination, exact + near dedup):")
    print("(MB/CPU-s counts this process and the children it waited for: datatrove's pool "
          "workers are children of its forkserver, so with more than 1 worker its figure "
          "misses them and reads too high)")
    print(f"{'engine':<11}{'workers':>8}{'select s':>10}{'select MB/s/core':>18}"
          f"{'total s':>9}{'MB/CPU-s':>10}{'exact dups':>12}{'near dups':>11}")
    for engine, workers, select_s, wall, mb, cpu, dedup in summary:
        print(f"{engine:<11}{workers:>8}{select_s:>10.2f}{mb / select_s / workers:>18.2f}"
              f"{wall:>9.2f}{mb / cpu:>10.2f}{dedup['exact_duplicate']:>12}"
              f"{dedup['near_duplicate']:>11}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    sys.exit(main())
