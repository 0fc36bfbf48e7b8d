"""MKL vector math's first call (model.numerics): in a fresh process, the first parallel exp/cos/...
can be inexact in one thread's share; building or loading a DreamModel first makes every call exact.

Each case forks fresh processes from an interpreter that has imported torch but run nothing
(so each child starts MKL and OpenMP from scratch), and in each child compares the first
parallel ``cos`` after an MKL matrix product with the second. ``MKL_DYNAMIC=FALSE`` makes the
race more frequent (about 1 in 7 children on these machines instead of 1 in 15).
"""
import os
import subprocess
import sys

import pytest

from diffucoder.model import build_config, build_model, save_model

CHILDREN = 200

SCRIPT = r"""
import os, sys
import torch
from diffucoder.model import build_config, build_model, load_model

def child(how: str) -> int:
    if how == "build":   # what every process that makes a model does first (pretraining)
        build_model(build_config("tiny", vocab_size=64, num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                 num_attention_heads=2, num_key_value_heads=1))
    elif how != "cold":  # or loads one (SFT, RL, evaluation, serving): from_pretrained builds it on "meta"
        load_model(how)
    a = torch.randn(1024, 1024)
    a @ a                                         # MKL's threads exist
    x = torch.linspace(0, 255, 131072)            # > PyTorch's grain: two threads call vector math at once
    first, second = x.cos(), x.cos()
    return 0 if torch.equal(first, second) else 1

how, count = sys.argv[1], int(sys.argv[2])
inexact = 0
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        os._exit(child(how))
    inexact += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(inexact)
"""


def inexact_children(how: str, count: int = CHILDREN) -> int:
    """How many of ``count`` fresh children computed their first parallel cos inexactly, after
    ``how``: "cold" (nothing), "build" (a model built) or a model directory (loaded)."""
    env = {**os.environ, "MKL_DYNAMIC": "FALSE", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, how, str(count)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks fresh processes")
def test_after_a_model_is_built_the_first_parallel_vector_math_call_is_exact():
    assert inexact_children("build") == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks fresh processes")
def test_after_a_model_is_loaded_the_first_parallel_vector_math_call_is_exact(tmp_path):
    """from_pretrained constructs the model under torch.device("meta"): a warm-up that let the
    ambient device choose computed nothing there, and resumed SFT runs diverged."""
    save_model(build_model(build_config("tiny", vocab_size=64, num_hidden_layers=1, hidden_size=32,
                                        intermediate_size=64, num_attention_heads=2, num_key_value_heads=1)),
               tmp_path / "model")   # in this process: the children's interpreter starts cold
    assert inexact_children(str(tmp_path / "model")) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks fresh processes")
def test_without_it_the_first_call_is_sometimes_inexact():
    """What the guard is for: the race itself, on this torch and MKL (skipped where it does not occur)."""
    inexact = inexact_children("cold", count=100)
    if inexact == 0:
        pytest.skip("this torch / MKL build computed the first call exactly in 100 fresh processes")
    assert 0 < inexact < 100
