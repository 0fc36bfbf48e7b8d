"""Training metrics: one JSON object per logged step, kept in memory and in ``metrics.jsonl``.

    log = MetricsLog(Path("out/metrics.jsonl"), enabled=env.is_main)
    log.add({"step": 10, "loss": 5.1, "lr": 3e-4, "tokens_per_s": 812.0, "flops_per_s": 1.2e11})
    log.rows                       # every row so far (saved in checkpoints, so a resumed
    log.restore(rows)              # run keeps one continuous curve)

``Window`` accumulates what happens between two log lines (loss sum, tokens, time) so
each line reports means and rates over its window, not one noisy step. Its sums are part of
a checkpoint (``state_dict``): a run resumed between two log lines averages the same steps.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        self.rows: list[dict[str, Any]] = []
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rewrite()

    def add(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.rows.append(clean)
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(clean, sort_keys=True) + "\n")

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self.rows = [dict(r) for r in rows]
        if self.enabled:
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))
        os.replace(tmp, self.path)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        pairs = [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class Window:
    """Sums over the optimizer steps since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.steps, self.loss_sum, self.tokens, self.masked, self.t_sum = 0, 0.0, 0, 0, 0.0
        self.grad_norm = float("nan")
        self.start = time.perf_counter()

    def add(self, loss: float, tokens: int, masked: int, mean_t: float, grad_norm: float) -> None:
        self.steps += 1
        self.loss_sum += loss
        self.tokens += tokens
        self.masked += masked
        self.t_sum += mean_t
        self.grad_norm = grad_norm

    def state_dict(self) -> dict[str, Any]:
        """The sums so far, for a checkpoint taken between two log lines (the clock restarts)."""
        return {"steps": self.steps, "loss_sum": self.loss_sum, "tokens": self.tokens,
                "masked": self.masked, "t_sum": self.t_sum, "grad_norm": self.grad_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.tokens, self.masked = int(state["steps"]), int(state["tokens"]), int(state["masked"])
        self.loss_sum, self.t_sum = float(state["loss_sum"]), float(state["t_sum"])
        self.grad_norm = float(state["grad_norm"])

    def summary(self, flops_per_token: float, peak_flops: float | None) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        tokens_per_s = self.tokens / seconds
        row = {"loss": self.loss_sum / max(self.steps, 1), "tokens_per_s": tokens_per_s,
               "flops_per_s": tokens_per_s * flops_per_token, "grad_norm": self.grad_norm,
               "mean_t": self.t_sum / max(self.steps, 1), "masked_tokens": self.masked}
        if peak_flops:
            row["mfu"] = row["flops_per_s"] / peak_flops
        return row
