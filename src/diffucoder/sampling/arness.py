"""AR-ness@k: how left-to-right a decode was, from its commit order (docs/method.md, section 3.5).

    from diffucoder.sampling import arness_curves, global_arness, local_arness
    local_arness([0, 1, 2, 3], k=1)        # 1.0: every commit continues the previous one
    local_arness([3, 2, 1, 0], k=1)        # 0.0
    global_arness([1, 0, 3, 2], k=1)       # 0.5: half the commits took the left-most mask
    arness_curves(out.commit_order, ks=range(1, 9))   # {"local": [...], "global": [...]} mean over rows

``order[t]`` is the completion position (0-based) committed t-th; T = len(order).

* local AR-ness@k = (1/T) sum_t 1[p_{t-i} = p_t - i for i = 1..k]: the last k commits
  form a left-to-right run ending at p_t. The prompt counts as already written, so a
  commit at position j with fewer than k commits before it continues the run through
  the prompt (virtual commits p_{-i} = -i): left to right scores 1, reversed 0.
  Non-increasing in k.
* global AR-ness@k = (1/T) sum_t 1[p_t is among the k left-most still-masked positions].
  Non-decreasing in k; 1 for every k when the order is left to right.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from diffucoder.errors import DiffucoderError


def _as_order(order, length: int | None = None) -> np.ndarray:
    """Validated positions; with ``length``, all must lie in [0, length)."""
    values = np.asarray(order.tolist() if hasattr(order, "tolist") else list(order), dtype=np.int64)
    if values.ndim != 1 or values.size == 0:
        raise DiffucoderError(f"a commit order is a non-empty 1-D sequence of positions, got shape {values.shape}")
    too_far = length is not None and values.max() >= length
    if values.min() < 0 or too_far or np.unique(values).size != values.size:
        bound = f"[0, {length})" if length is not None else ">= 0"
        raise DiffucoderError(f"a commit order must hold distinct positions {bound}, got {values.tolist()}")
    return values


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DiffucoderError(f"AR-ness k must be a positive integer, got {k!r}")


def run_lengths(order) -> np.ndarray:
    """``runs[t]``: how many commits before t continue left to right into p_t (prompt counts as infinite)."""
    values = _as_order(order)
    runs = np.zeros(values.size, dtype=np.float64)
    for t, position in enumerate(values):
        previous_run = np.inf if t == 0 else runs[t - 1]
        previous = -1 if t == 0 else values[t - 1]  # before the first commit: the prompt's last token
        runs[t] = previous_run + 1 if position == previous + 1 else 0
    return runs


def local_arness(order, k: int) -> float:
    """Share of commits that end a left-to-right run of length >= k (see module docstring)."""
    _check_k(k)
    return float(np.mean(run_lengths(order) >= k))


def masked_ranks(order, length: int | None = None) -> np.ndarray:
    """``ranks[t]``: number of still-masked positions left of p_t when it was committed (0 = left-most)."""
    values = _as_order(order)
    values = _as_order(values, values.size if length is None else length)
    earlier = np.tril(np.ones((values.size, values.size), dtype=bool), k=-1)  # earlier[t, j]: j < t
    committed_left = (earlier & (values[None, :] < values[:, None])).sum(axis=1)
    return values - committed_left


def global_arness(order, k: int, length: int | None = None) -> float:
    """Share of commits at one of the k left-most masked positions; ``length`` = completion length
    (default: the order's length, i.e. the order covers every position)."""
    _check_k(k)
    return float(np.mean(masked_ranks(order, length) < k))


def arness_curves(orders: Sequence | Iterable, ks: Iterable[int]) -> dict[str, list[float]]:
    """Mean local and global AR-ness@k over the rows of ``orders`` (B, T), for each k in ``ks``."""
    rows = [_as_order(row) for row in (orders.tolist() if hasattr(orders, "tolist") else orders)]
    if not rows:
        raise DiffucoderError("no commit orders to measure")
    ks = list(ks)
    for k in ks:
        _check_k(k)
    runs = [run_lengths(row) for row in rows]
    ranks = [masked_ranks(row) for row in rows]
    return {"k": ks,
            "local": [float(np.mean([np.mean(r >= k) for r in runs])) for k in ks],
            "global": [float(np.mean([np.mean(r < k) for r in ranks])) for k in ks]}
