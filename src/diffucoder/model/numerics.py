"""Process-wide numerics the model's results depend on.

    from diffucoder.model.numerics import warm_up_vector_math
    warm_up_vector_math()      # once per process, before any parallel tensor op (DreamModel() calls it)

PyTorch's CPU kernels for exp, log, sin, cos and the like call Intel MKL's vector math (VML),
which sets itself up on its first call. When that first call comes from two OpenMP threads at
once (a tensor big enough for PyTorch to split, >= 32768 elements, after MKL's threads exist),
one thread's share is sometimes computed by a far less accurate routine: cos off by up to 1.5e-4
where it is otherwise exact to 4e-8. On these machines that happened in 6-13 % of fresh
processes; every later call was exact. A resumed training run makes its first such call inside
its first training step (the rotary embedding's cos), while a fresh run makes it in the step-0
evaluation. So a resume from a bit-identical checkpoint sometimes continued with slightly
different weights: the divergence the fault campaign found (``benchmarks/faults.py``).
One single-threaded call first (16 elements, below PyTorch's parallel grain) sets VML up, and no
later call is inexact. ``tests/model/test_numerics.py`` forks hundreds of fresh processes to check.

The call names its device: ``from_pretrained`` builds the model under ``torch.device("meta")``,
where a tensor without a device is a shape with no data and the warm-up would compute nothing.
That was a second divergence, on every path that loads a model rather than building one (SFT and
RL start from a checkpoint; evaluation and serving load one): a resumed SFT run diverged in 4 of
20 campaign trials until the warm-up ran on the CPU whatever the ambient device.
"""
from __future__ import annotations

import functools

import torch


@functools.cache
def warm_up_vector_math() -> None:
    """Make this process's first MKL vector-math call a single-threaded one (see the module doc)."""
    torch.exp(torch.zeros(16, device="cpu"))   # "cpu" even under from_pretrained's meta-device context
