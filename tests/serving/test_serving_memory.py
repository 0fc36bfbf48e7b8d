"""The serving memory estimate: its arithmetic from the model's shapes, the 7B preset fitting one
80 GiB GPU, and ``diffucoder serve --estimate``."""
from __future__ import annotations

from pathlib import Path

import pytest

from diffucoder.cli import main as cli_main
from diffucoder.config import load_config
from diffucoder.model import build_config
from diffucoder.model.memory import GIB
from diffucoder.serving import ServeConfig
from diffucoder.serving.memory import serve_memory_estimate

ROOT = Path(__file__).resolve().parents[2]
SERVE_7B = ROOT / "configs" / "7b-gpu" / "serve.yaml"
# DiffuCoder-7B (Qwen2.5-Coder-7B shapes): 7,615,616,512 parameters, vocab 152064, hidden 3584,
# MLP 18944, 28 layers, 4 KV heads of 128.
PARAMS_7B, V, H, I, LAYERS, KV_HEADS, HEAD_DIM = 7_615_616_512, 152_064, 3_584, 18_944, 28, 4, 128
# Per masked position and vocabulary entry while sampling: the gathered bf16 logit (2), then fp32
# logits (4), top-p sort values (4) and int64 indices (8), softmax (4), cumsum (4), probs (4),
# entropy product (4).
SAMPLING_BYTES = 2 + 4 + 4 + 8 + 4 + 4 + 4 + 4


def test_the_7b_preset_is_bf16_on_cuda_and_fits_one_80_gib_gpu():
    cfg = load_config(ServeConfig, SERVE_7B)
    assert (cfg.device, cfg.dtype, cfg.sampler.mode) == ("cuda", "bfloat16", "exact")
    batch, prompt, new = cfg.max_batch_size, cfg.limits.prompt_tokens, cfg.limits.max_tokens
    assert (batch, prompt, new) == (4, 4096, 1024)
    est = serve_memory_estimate(build_config("7b"), cfg)
    length = prompt + new
    assert est.weights_bytes == PARAMS_7B * 2
    assert est.kv_cache_bytes == 0                              # the exact mode caches nothing
    assert est.logits_bytes == batch * length * V * 2
    assert est.sampling_bytes == batch * new * V * SAMPLING_BYTES
    assert est.activation_bytes == batch * length * (4 * H + 3 * I) * 2 + batch * length * length
    assert 40 < est.total_bytes / GIB < 80 - 8     # room for the CUDA context and fragmentation
    assert cfg.batching.queue_size <= 64           # a 7B decode takes seconds: keep waits bounded


def test_a_bigger_batch_would_not_fit_and_cached_modes_hold_a_kv_cache():
    big = load_config(ServeConfig, SERVE_7B, ["batching.max_batch_size=16"])
    assert serve_memory_estimate(build_config("7b"), big).total_bytes > 80 * GIB
    cached = load_config(ServeConfig, SERVE_7B, ["sampler.mode=approx_prefix_cache"])
    est = serve_memory_estimate(build_config("7b"), cached)
    assert est.kv_cache_bytes == 2 * LAYERS * KV_HEADS * HEAD_DIM * 4 * (4096 + 1024) * 2
    assert est.sampling_bytes == 4 * cached.sampler.block_size * V * SAMPLING_BYTES
    off = load_config(ServeConfig, SERVE_7B, ["batching.enabled=false"])
    assert serve_memory_estimate(build_config("7b"), off).logits_bytes == 1 * 5120 * V * 2


def test_serve_estimate_prints_the_figures(capsys, served_model_dir):
    assert cli_main(["serve", "--estimate", "--model-preset", "7b", "--config", str(SERVE_7B),
                     "--gpu-memory-gib", "80"]) == 0
    out = capsys.readouterr().out
    assert "7,615,616,512 params in bfloat16, exact mode, batch 4 x (4096 prompt + 1024 new tokens)" in out
    assert "weights 14.19 GiB" in out and "fits in 80 GiB per GPU" in out
    assert cli_main(["serve", "--estimate", "--model-preset", "7b", "--config", str(SERVE_7B),
                     "--gpu-memory-gib", "80", "batching.max_batch_size=16"]) == 0
    assert "DOES NOT FIT in 80 GiB per GPU" in capsys.readouterr().out
    # a model directory's own shape (config.json; no weights are read)
    assert cli_main(["serve", "--estimate", "--model", str(served_model_dir)]) == 0
    assert "float32, exact mode, batch 16 x (2048 prompt + 512 new tokens)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["serve", "--estimate"], "--model-preset NAME or --model DIR"),
    (["serve", "--estimate", "--model-preset", "70b"], "unknown model preset"),
    (["serve", "--port", "0"], "--model: required"),
])
def test_estimate_and_serve_name_what_is_missing(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err
