"""Every route of a real server over HTTP (httpx and the openai client); greedy results equal the sampler's."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI

from serving_helpers import direct_texts

pytestmark = pytest.mark.integration
PROMPTS = ["def add(a, b):", "import os", "class Point:\n    def __init__(self, x, y):", "for i in range(10):"]


@pytest.fixture(scope="module")
def client(url):
    return OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0, timeout=60)


def test_health_readiness_and_model_listing(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v1/models/diffucoder").json() == {"name": "diffucoder", "ready": True}
    assert http.get("/v2/models/diffucoder/ready").json()["ready"] is True
    assert http.get("/v1/models").json() == {"models": ["diffucoder"]}
    assert http.get("/v1/models/nope").status_code == 404


def test_openai_client_models_and_completion(client, direct):
    assert [m.id for m in client.models.list().data] == ["diffucoder"]
    answer = client.completions.create(model="diffucoder", prompt=PROMPTS[0], max_tokens=8,
                                       extra_body={"steps": 8})
    assert answer.choices[0].text == direct_texts(*direct, PROMPTS[:1], max_new_tokens=8, steps=8)[0]
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens == len(direct[1](PROMPTS[0])["input_ids"])
    assert answer.usage.completion_tokens <= 8


def test_greedy_unbatched_equals_the_sampler(client, direct):
    """One request at a time: each decodes alone, as a direct call on that prompt alone."""
    for prompt in PROMPTS:
        got = client.completions.create(model="diffucoder", prompt=prompt, max_tokens=6,
                                        extra_body={"steps": 3, "alg": "maskgit_plus"}).choices[0].text
        assert got == direct_texts(*direct, [prompt], max_new_tokens=6, steps=3, alg="maskgit_plus")[0]


def test_threshold_decoding_through_the_server_equals_the_sampler(client, direct):
    """A threshold every token passes, capped at 3 a step: 3 forwards, not the schedule's 8."""
    got = client.completions.create(model="diffucoder", prompt=PROMPTS[0], max_tokens=8,
                                    extra_body={"threshold": 1e-6, "max_per_step": 3}).choices[0].text
    assert got == direct_texts(*direct, PROMPTS[:1], max_new_tokens=8, steps=8, threshold=1e-6, max_per_step=3)[0]
    assert got != direct_texts(*direct, PROMPTS[:1], max_new_tokens=8, steps=8)[0]


def test_greedy_batched_equals_the_sampler(http, direct):
    """A v1 request's instances (prompts of unlike lengths) are rows of the running set, packed into
    shared forwards with no padding: in order, each the same as a direct call on its prompt alone."""
    body = {"instances": PROMPTS, "parameters": {"max_tokens": 6, "steps": 6}}
    got = http.post("/v1/models/diffucoder:predict", json=body).json()["predictions"]
    assert got == [direct_texts(*direct, [prompt], max_new_tokens=6, steps=6)[0] for prompt in PROMPTS]


def test_concurrent_requests_are_batched_and_equal_the_sampler(url, http, direct):
    """Concurrent OpenAI requests share denoising steps (continuous batching: each joins the running
    set at a step boundary); with equal-length prompts (no padding) every row equals its direct
    decode alone."""
    tokenizer = direct[1]
    prompts = [p for p in (f"x = {i} + {j}" for i in range(10) for j in range(10))
               if len(tokenizer(p)["input_ids"]) == len(tokenizer("x = 1 + 2")["input_ids"])][:12]
    before = _batch_rows(http)

    def ask(prompt):
        c = OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0, timeout=60)
        return c.completions.create(model="diffucoder", prompt=prompt, max_tokens=5, extra_body={"steps": 5})

    with ThreadPoolExecutor(len(prompts)) as pool:
        answers = list(pool.map(ask, prompts))
    after = _batch_rows(http)
    assert after[0] - before[0] == len(prompts) * 5      # row-steps: 5 steps of each row
    assert after[1] - before[1] < len(prompts) * 5       # in fewer forwards than that: rows shared steps
    for prompt, answer in zip(prompts, answers):
        assert answer.choices[0].text == direct_texts(*direct, [prompt], max_new_tokens=5, steps=5)[0]


def test_chat_uses_the_chat_template(client, direct):
    from diffucoder.training.chat import IM_END, render_prompt
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Add two numbers."}]
    answer = client.chat.completions.create(model="diffucoder", messages=messages, max_tokens=6,
                                            extra_body={"steps": 6})
    expected = direct_texts(*direct, [render_prompt(messages)], max_new_tokens=6, steps=6)[0].split(IM_END)[0]
    assert answer.choices[0].message.content == expected
    assert answer.choices[0].message.role == "assistant"
    assert answer.usage.prompt_tokens == len(direct[1](render_prompt(messages))["input_ids"])


def test_streaming_completion_and_chat(client, direct):
    chunks = list(client.completions.create(model="diffucoder", prompt=PROMPTS[1], max_tokens=6, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"steps": 6}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == direct_texts(*direct, PROMPTS[1:2], max_new_tokens=6, steps=6)[0]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    stream = client.chat.completions.create(model="diffucoder", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=4, stream=True)
    deltas = [c.choices[0].delta for c in stream]
    assert deltas[0].role == "assistant"
    non_stream = client.chat.completions.create(model="diffucoder", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=4)
    assert "".join(d.content or "" for d in deltas) == non_stream.choices[0].message.content


def test_stream_is_server_sent_events(http):
    with http.stream("POST", "/openai/v1/completions", json={"prompt": "x", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in events)
    assert json.loads(events[0][6:])["object"] == "text_completion"


def test_kserve_v1_and_v2(http, direct):
    v1 = http.post("/v1/models/diffucoder:predict", json={
        "instances": [{"prompt": PROMPTS[0], "max_tokens": 5, "steps": 5}]}).json()
    assert v1 == {"predictions": direct_texts(*direct, PROMPTS[:1], max_new_tokens=5, steps=5)}
    v1_text_plain = http.post("/v1/models/diffucoder:predict", content=json.dumps({"instances": ["x"]}),
                              headers={"content-type": "text/plain"})
    assert v1_text_plain.status_code == 200
    v2 = http.post("/v2/models/diffucoder/infer", json={
        "id": "r1", "parameters": {"max_tokens": 5, "steps": 5},
        "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": PROMPTS[:2]}]})
    assert v2.status_code == 200, v2.text
    out = v2.json()
    assert out["id"] == "r1" and out["model_name"] == "diffucoder"
    assert out["outputs"][0]["name"] == "text_output" and out["outputs"][0]["shape"] == [2]
    assert out["outputs"][0]["data"] == direct_texts(*direct, PROMPTS[:2], max_new_tokens=5, steps=5)
    assert http.get("/v2/models/diffucoder").json()["name"] == "diffucoder"


def test_stop_strings_and_echo(client):
    full = client.completions.create(model="diffucoder", prompt="def f(x):", max_tokens=8).choices[0].text
    if len(full) >= 2:
        cut = client.completions.create(model="diffucoder", prompt="def f(x):", max_tokens=8, stop=[full[1:2]])
        assert cut.choices[0].text == full[:full.index(full[1:2])]
        assert cut.choices[0].finish_reason == "stop"
    echoed = client.completions.create(model="diffucoder", prompt="def f(x):", max_tokens=8, echo=True)
    assert echoed.choices[0].text == "def f(x):" + full


def test_metrics_are_exported(http):
    http.post("/openai/v1/completions", json={"prompt": "x", "max_tokens": 3})
    http.post("/openai/v1/completions", json={"prompt": "x", "max_tokens": -3})
    text = http.get("/metrics").text
    assert 'diffucoder_requests_total{route="/openai/v1/completions",status="200"}' in text
    assert 'diffucoder_requests_total{route="/openai/v1/completions",status="400"}' in text
    assert 'diffucoder_request_seconds_bucket{le="0.5",route="/openai/v1/completions"}' in text
    for name in ("diffucoder_batch_size_count", "diffucoder_step_rows_count", "diffucoder_generated_tokens_total",
                 "diffucoder_generated_tokens_per_second", "diffucoder_queue_depth", "diffucoder_batch_seconds_sum"):
        assert name in text
    assert _metric(text, "diffucoder_generated_tokens_total") >= 3


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _batch_rows(http) -> tuple[float, float]:
    """Rows summed over the running set's steps, and the number of steps."""
    text = http.get("/metrics").text
    return _metric(text, "diffucoder_step_rows_sum"), _metric(text, "diffucoder_step_rows_count")
