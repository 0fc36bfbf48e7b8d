"""ServeConfig: the shipped recipes load, and bad values fail naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from diffucoder.config import ConfigError, load_config
from diffucoder.serving import ServeConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", ["tiny-cpu", "7b-gpu"])
def test_recipes_load_and_decode_greedily_by_default(preset):
    cfg = load_config(ServeConfig, ROOT / "configs" / preset / "serve.yaml")
    assert cfg.defaults.temperature == 0.0
    assert cfg.defaults.max_tokens <= cfg.limits.max_tokens
    assert cfg.batching.enabled and cfg.max_batch_size >= 1


def test_batching_off_means_one_row_and_no_wait():
    cfg = load_config(ServeConfig, None, ["batching.enabled=false"])
    assert (cfg.max_batch_size, cfg.max_wait_s) == (1, 0.0)
    assert load_config(ServeConfig, None, ["batching.max_wait_ms=25"]).max_wait_s == pytest.approx(0.025)


@pytest.mark.parametrize("override, key", [
    (["defaults.max_tokens=600"], "defaults.max_tokens"),      # above limits.max_tokens (512)
    (["defaults.alg=bogus"], "defaults.alg"),
    (["defaults.top_p=0"], "defaults.top_p"),
    (["sampler.eps=1.5"], "sampler.eps"),
    (["batching.queue_size=0"], "batching.queue_size"),
    (["model_name=a/b"], "model_name"),
    (["limits.body_bytes=10"], "limits.body_bytes"),
    (["batching.max_batch_sise=4"], "batching.max_batch_sise"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(ServeConfig, None, override)
