"""``evaluate``: load benchmarks, sample completions, run them in the sandbox, write the figures.

    cfg = load_config(EvaluateConfig, "configs/tiny-cpu/evaluate.yaml")
    result = evaluate(cfg, model="file:///abs/store/runs/r1/sft", out_dir="out/eval",
                      output_uri="file:///abs/store/runs/r1/evaluate")
    result.pass_at_1, result.metrics["synthetic"]["pass@1"], result.uri
    evaluate(cfg, model=None, out_dir=d, completer=my_completer)   # any complete(prompts, n)

``out_dir`` receives ``results.jsonl`` (one line per task: samples with their programs,
verdicts and test shares, passed count, pass@k), ``metrics.json``, ``report.md``,
``pass_at_k.png``, ``pass_rates.png`` and ``config.yaml``; with ``output_uri`` the directory
is published to the artifact store as one artifact.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffucoder.config import dump_yaml
from diffucoder.errors import DiffucoderError
from diffucoder.evaluation import report
from diffucoder.evaluation.benchmarks import load_benchmark
from diffucoder.evaluation.config import EvaluateConfig
from diffucoder.evaluation.generation import Completer, DiffusionCompleter, model_directory
from diffucoder.evaluation.prompts import build_prompt, extract_answer
from diffucoder.evaluation.scoring import Scorer
from diffucoder.evaluation.sources import cache_root
from diffucoder.sandbox import layer_rank
from diffucoder.store import resolve


@dataclass
class EvaluationResult:
    out_dir: Path
    metrics: dict[str, dict[str, Any]]     # per benchmark: pass@k, counts, verdicts
    kfp_metrics: dict[str, float]          # flat, Kubeflow-safe names
    gate_benchmark: str
    pass_at_1: float                       # the gate value: pass@1 of gate_benchmark
    report_md: str
    uri: str = ""


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _check_completions(completions: Any, prompts: int, n: int, name: str) -> None:
    ok = (isinstance(completions, list) and len(completions) == prompts
          and all(isinstance(row, list) and len(row) == n and all(isinstance(t, str) for t in row)
                  for row in completions))
    if not ok:
        raise DiffucoderError(f"{name}: the completer must return {prompts} lists of {n} strings")


def evaluate(cfg: EvaluateConfig, model: str | os.PathLike | None, out_dir: str | os.PathLike,
             completer: Completer | None = None, output_uri: str = "", progress: bool = True
             ) -> EvaluationResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    benches = [load_benchmark(spec, cfg) for spec in cfg.benchmarks]  # bad inputs fail before the model loads
    if completer is None and model is None:
        raise DiffucoderError("evaluate: give a model directory / URI or a completer")
    # The sandbox first: below sandbox.min_isolation, unreachable or broken, the stage stops here,
    # before a model is loaded or a completion generated.
    with Scorer(cfg.limits, cfg.sandbox, progress) as scorer:
        if completer is None:
            completer = DiffusionCompleter.from_directory(model_directory(str(model), cache_root(cfg.cache_dir)),
                                                          cfg, progress)
        started = time.perf_counter()
        completions, answers = {}, {}
        for bench in benches:
            prompts = [build_prompt(p, cfg.prompt_style, cfg.chat.template) for p in bench.problems]
            completions[bench.name] = completer.complete(prompts, cfg.n_samples)
            _check_completions(completions[bench.name], len(prompts), cfg.n_samples, bench.name)
            answers[bench.name] = [[extract_answer(p, text, cfg.prompt_style, cfg.stop_sequences) for text in row]
                                   for p, row in zip(bench.problems, completions[bench.name])]
        generated = time.perf_counter()
        results, skipped = {}, {}
        for bench in benches:
            results[bench.name], failed = scorer.score(bench.problems, answers[bench.name], completions[bench.name])
            skipped[bench.name] = bench.skipped + failed
            if not results[bench.name]:
                raise DiffucoderError(f"benchmark {bench.name!r}: no task could be scored; the reference "
                                      f"solutions fail here: {skipped[bench.name][:2]}")
        isolation, sandbox_info = scorer.isolation, scorer.sandbox_info
    tested = time.perf_counter()

    ks = cfg.reported_ks()
    metrics = report.summarize(benches, results, ks, skipped)
    gate_value = float(metrics[cfg.gate]["pass@1"])
    flat = {**report.kfp_metrics(metrics), "pass_at_1": gate_value,
            "sandbox_isolation_level": float(layer_rank(isolation))}
    describe = getattr(completer, "describe", None)
    sampler = describe() if callable(describe) else {"completer": type(completer).__name__}
    context = {"model": str(model) if model is not None else type(completer).__name__,
               "gate": cfg.gate, "gate_value": gate_value, "prompt_style": cfg.prompt_style,
               "n_samples": cfg.n_samples, "sampler": _sampler_line(sampler), "isolation": isolation,
               "sandbox": sandbox_info,
               "time_floor_s": cfg.limits.time_floor_s, "time_factor": cfg.limits.time_factor,
               "memory_mb": cfg.limits.memory_mb, "generation_s": generated - started,
               "testing_s": tested - generated}
    report.plot_pass_at_k(metrics, out_dir / report.PASS_AT_K_PNG)
    report.plot_pass_rates(results, out_dir / report.PASS_RATES_PNG)
    report_md = report.render_report(metrics, ks, context, skipped)
    lines = [json.dumps(task.to_dict(ks)) for bench in benches for task in results[bench.name]]
    _write_text(out_dir / "results.jsonl", "\n".join(lines) + "\n")
    summary = {"benchmarks": metrics, "gate": {"benchmark": cfg.gate, "pass_at_1": gate_value},
               "isolation": isolation, "sandbox": sandbox_info, "model": context["model"], "completer": sampler,
               "skipped": skipped, "generation_s": round(context["generation_s"], 3),
               "testing_s": round(context["testing_s"], 3)}
    _write_text(out_dir / "metrics.json", json.dumps(summary, indent=1, default=str) + "\n")
    _write_text(out_dir / "report.md", report_md)
    _write_text(out_dir / "config.yaml", dump_yaml(cfg))
    uri = _publish(out_dir, output_uri, cfg, gate_value, isolation) if output_uri else ""
    return EvaluationResult(out_dir, metrics, flat, cfg.gate, gate_value, report_md, uri)


def _sampler_line(described: dict) -> str:
    sampler = described.get("sampler")
    if not isinstance(sampler, dict):
        return ", ".join(f"{k}={v}" for k, v in described.items())
    keys = ("mode", "alg", "max_new_tokens", "steps", "temperature", "top_p", "top_k", "alg_temp")
    approximate = " (APPROXIMATE cached decoding)" if sampler.get("mode", "exact") != "exact" else ""
    return ", ".join(f"{k}={sampler[k]}" for k in keys if k in sampler) + \
        f", batch_size={described.get('batch_size')}{approximate}"


def _publish(out_dir: Path, output_uri: str, cfg: EvaluateConfig, gate_value: float, isolation: str) -> str:
    store, name = resolve(output_uri)
    store.put_artifact(name, out_dir, metadata={
        "kind": "evaluation", "pass_at_1": gate_value, "gate_benchmark": cfg.gate,
        "benchmarks": [b.name for b in cfg.benchmarks], "n_samples": cfg.n_samples,
        "prompt_style": cfg.prompt_style, "isolation": isolation,
        "sampling": dataclasses.asdict(cfg.sampling)})
    return store.uri(name)
