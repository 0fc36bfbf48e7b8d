"""Load a benchmark's problems: ``load_benchmark(spec, cfg)`` -> ``Benchmark``.

    bench = load_benchmark(BenchmarkSpec(name="humaneval"), EvaluateConfig())
    len(bench.problems)          # 164
    bench.source                 # where they came from
    bench.skipped                # [{"task_id", "reason"}] (EvalPlus references that failed)

``max_tasks`` keeps a seeded sample of the problems in their original order, so a CPU run
sees a spread of the suite's families rather than the first few.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.config import BenchmarkSpec, EvaluateConfig
from diffucoder.evaluation.groundtruth import evalplus_problems
from diffucoder.evaluation.problems import Problem, problem_from_record
from diffucoder.evaluation.sources import benchmark_file, cache_root, read_records
from diffucoder.tasks import generate_suite


@dataclass
class Benchmark:
    name: str
    problems: list[Problem]
    source: str
    total: int                                   # problems in the source, before max_tasks
    skipped: list[dict] = field(default_factory=list)


def _synthetic_records(cfg: EvaluateConfig, split: str) -> list[tuple[str, dict]]:
    suite = cfg.synthetic
    tasks = generate_suite(**suite.suite_args())
    return [(t.task_id, t.record()) for t in tasks if t.split == split]


def sample_indices(total: int, keep: int, seed: int) -> list[int]:
    """``keep`` of ``range(total)`` (all if keep is 0 or >= total), seeded, in order."""
    if not keep or keep >= total:
        return list(range(total))
    return sorted(random.Random(f"evaluate/{seed}").sample(range(total), keep))


def load_benchmark(spec: BenchmarkSpec, cfg: EvaluateConfig) -> Benchmark:
    path = benchmark_file(spec, cache_root(cfg.cache_dir), cfg.allow_download)
    if path is None:
        records = _synthetic_records(cfg, spec.split)
        source = (f"generated task suite (seed {cfg.synthetic.seed}, max_per_family "
                  f"{cfg.synthetic.max_per_family}), {spec.split} split")
    else:
        records = read_records(path)
        source = spec.path or str(path)
    if spec.name == "synthetic":
        wrong = [where for where, r in records if isinstance(r, dict) and r.get("split") not in (None, spec.split)]
        if wrong:
            raise DiffucoderError(f"{wrong[0]}: a task of split {spec.split!r} was expected; "
                                  f"{len(wrong)} tasks belong to another split")
    if not records:
        raise DiffucoderError(f"benchmark {spec.name!r}: {source} holds no problems")
    total = len(records)
    records = [records[i] for i in sample_indices(total, cfg.max_tasks, cfg.seed)]
    evalplus = [(w, r) for w, r in records if isinstance(r, dict) and "base_input" in r]
    skipped: list[dict] = []
    if evalplus and len(evalplus) != len(records):
        raise DiffucoderError(f"benchmark {spec.name!r}: {source} mixes EvalPlus records "
                              "(base_input) with others")
    if evalplus:
        problems, skipped = evalplus_problems(spec.name, evalplus, plus=spec.name.endswith("_plus"))
    else:
        problems = [problem_from_record(spec.name, record, where) for where, record in records]
    ids = [p.task_id for p in problems]
    if len(set(ids)) != len(ids):
        raise DiffucoderError(f"benchmark {spec.name!r}: {source} repeats task ids")
    if not problems:
        raise DiffucoderError(f"benchmark {spec.name!r}: no usable problem in {source} "
                              f"({len(skipped)} skipped: {skipped[:2]})")
    return Benchmark(spec.name, problems, source, total, skipped)
