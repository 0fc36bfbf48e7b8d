"""MKL vector math's first call (model.numerics): in a fresh process, the first parallel exp/cos/...
can be inexact in one thread's share; building a DreamModel first makes every call exact.

Each case forks fresh processes from an interpreter that has imported torch but run nothing
(so each child starts MKL and OpenMP from scratch), and in each child compares the first
parallel ``cos`` after an MKL matrix product with the second. ``MKL_DYNAMIC=FALSE`` makes the
race more frequent (about 1 in 7 children on these machines instead of 1 in 15).
"""
import os
import subprocess
import sys

import pytest

CHILDREN = 200

SCRIPT = r"""
import os, sys
import torch
from diffucoder.model import build_config, build_model

def child(build: bool) -> int:
    if build:   # what every process that makes a model does first
        build_model(build_config("tiny", vocab_size=64, num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                 num_attention_heads=2, num_key_value_heads=1))
    a = torch.randn(1024, 1024)
    a @ a                                         # MKL's threads exist
    x = torch.linspace(0, 255, 131072)            # > PyTorch's grain: two threads call vector math at once
    first, second = x.cos(), x.cos()
    return 0 if torch.equal(first, second) else 1

build, count = sys.argv[1] == "build", int(sys.argv[2])
inexact = 0
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        os._exit(child(build))
    inexact += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(inexact)
"""


def inexact_children(build: bool, count: int = CHILDREN) -> int:
    env = {**os.environ, "MKL_DYNAMIC": "FALSE", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, "build" if build else "cold", str(count)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks fresh processes")
def test_after_a_model_is_built_the_first_parallel_vector_math_call_is_exact():
    assert inexact_children(build=True) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks fresh processes")
def test_without_it_the_first_call_is_sometimes_inexact():
    """What the guard is for: the race itself, on this torch and MKL (skipped where it does not occur)."""
    inexact = inexact_children(build=False, count=100)
    if inexact == 0:
        pytest.skip("this torch / MKL build computed the first call exactly in 100 fresh processes")
    assert 0 < inexact < 100
