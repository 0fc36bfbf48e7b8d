"""Request parsing without a server: defaults, caps, batch keys, and errors that name the field."""
from __future__ import annotations

import pytest

from diffucoder.config import load_config
from diffucoder.serving import RequestError, ServeConfig
from diffucoder.serving.engine import Engine
from diffucoder.serving.fields import parse_json_body
from diffucoder.serving.requests import RequestParser
from diffucoder.training.chat import IM_END, render_prompt


@pytest.fixture(scope="module")
def engine(served_model_dir):
    return Engine.load(served_model_dir, ServeConfig())


def parser(engine, *overrides):
    return RequestParser(load_config(ServeConfig, None, ["defaults.max_tokens=16", *overrides]), engine)


def test_defaults_fill_missing_fields_and_steps_follow_max_tokens(engine):
    row = parser(engine).completion({"prompt": "def f():"}).requests[0]
    s = row.sampling
    assert (s.max_new_tokens, s.steps, s.temperature, s.alg, s.top_p) == (16, 16, 0.0, "entropy", 0.95)
    row = parser(engine).completion({"prompt": "x", "max_tokens": 8}).requests[0]
    assert row.sampling.steps == 8
    row = parser(engine, "defaults.steps=4").completion({"prompt": "x", "max_tokens": 8}).requests[0]
    assert row.sampling.steps == 4
    assert row.prompt_ids == tuple(engine.encode("x"))


def test_batch_keys_group_compatible_requests(engine):
    p = parser(engine)
    a, b = (p.completion({"prompt": text, "max_tokens": 4}).requests[0] for text in ("x", "def g():"))
    assert a.batch_key == b.batch_key                       # different prompts, same decode: one batch
    assert p.completion({"prompt": "x", "max_tokens": 5}).requests[0].batch_key != a.batch_key
    assert p.completion({"prompt": "x", "max_tokens": 4, "seed": 7}).requests[0].batch_key == a.batch_key  # greedy
    seeded = [p.completion({"prompt": "x", "max_tokens": 4, "seed": 7, "temperature": 0.5}).requests[0]
              for _ in range(2)]
    assert seeded[0].batch_key != seeded[1].batch_key       # a seeded sample decodes alone: reproducible
    unseeded = [p.completion({"prompt": "x", "max_tokens": 4, "temperature": 0.5}).requests[0] for _ in range(2)]
    assert unseeded[0].batch_key == unseeded[1].batch_key


def test_chat_renders_the_template_and_stops_at_im_end(engine):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Write "}, {"type": "text", "text": "f."}]}]
    parsed = parser(engine).chat({"messages": messages, "max_completion_tokens": 6})
    assert parsed.prompts == [render_prompt([{"role": "user", "content": "Write f."}])]
    assert IM_END in parsed.requests[0].stop_strings and parsed.requests[0].sampling.max_new_tokens == 6


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "max_tokens": 513}, "max_tokens"),
    ({"prompt": "x", "steps": 513}, "steps"),
    ({"prompt": "x", "temperature": 101}, "temperature"),
    ({"prompt": "x", "top_p": -0.1}, "top_p"),
    ({"prompt": ["x", 2]}, "prompt"),
    ({"prompt": "x", "stop": "a", "best_of": 3}, "best_of"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "model": "other"}, "model"),
])
def test_bad_fields_are_named(engine, body, param):
    with pytest.raises(RequestError) as err:
        parser(engine).completion(body)
    assert err.value.param == param and param in err.value.message and 400 <= err.value.status < 500


def test_threshold_fields_default_cap_and_split_batches(engine):
    p = parser(engine, "limits.min_threshold=0.5")
    plain = p.completion({"prompt": "x"}).requests[0]
    fast = p.completion({"prompt": "x", "threshold": 0.9, "max_per_step": 4}).requests[0]
    assert (plain.sampling.threshold, fast.sampling.threshold, fast.sampling.max_per_step) == (0.0, 0.9, 4)
    assert plain.batch_key != fast.batch_key                 # one batch decodes under one rule
    for body, param in (({"prompt": "x", "threshold": 0.2}, "threshold"),       # below the server's floor
                        ({"prompt": "x", "threshold": 1.5}, "threshold"),
                        ({"prompt": "x", "max_per_step": 2}, "max_per_step"),   # a cap without a threshold
                        ({"prompt": "x", "threshold": 0.9, "alg": "origin"}, "threshold")):
        with pytest.raises(RequestError) as err:
            p.completion(body)
        assert err.value.param == param and err.value.status == 400, body


def test_prompt_length_limits(engine):
    with pytest.raises(RequestError, match="at most 4"):
        parser(engine, "limits.prompt_tokens=4").completion({"prompt": "def add(a, b): return a + b"})
    with pytest.raises(RequestError, match="positions") as err:
        parser(engine, "limits.max_tokens=5000", "limits.steps=5000").completion(
            {"prompt": "x", "max_tokens": 4096, "steps": 1})
    assert err.value.param == "prompt"


def test_approx_mode_needs_a_step_per_block(engine):
    p = parser(engine, "sampler.mode=approx_prefix_cache", "sampler.block_size=4")
    assert p.completion({"prompt": "x", "max_tokens": 8, "steps": 2}).requests[0].sampling.mode == "approx_prefix_cache"
    with pytest.raises(RequestError) as err:
        p.completion({"prompt": "x", "max_tokens": 8, "steps": 1})
    assert err.value.param == "steps"


def test_v1_instances_take_shared_parameters_and_own_fields(engine):
    parsed = parser(engine).instances(["x", {"prompt": "y", "max_tokens": 3}], {"max_tokens": 5, "steps": 5})
    assert [r.sampling.max_new_tokens for r in parsed.requests] == [5, 3]
    with pytest.raises(RequestError) as err:
        parser(engine).instances(["x"] * 17, None)
    assert err.value.param == "instances"


@pytest.mark.parametrize("raw", [b"", b"   ", b"{", b"[]", b'"x"', b"NaN", b'{"a": Infinity}', b"\xff", b"[" * 20000])
def test_json_bodies_that_are_not_objects_are_400s(raw):
    with pytest.raises(RequestError) as err:
        parse_json_body(raw)
    assert err.value.param == "body" and err.value.status == 400
