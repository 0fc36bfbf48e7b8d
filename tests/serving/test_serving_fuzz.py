"""A mixed run of 1000 requests, 20 % malformed in many ways: zero 5xx, every bad one a 4xx naming its field."""
from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration
C, CHAT = "/openai/v1/completions", "/openai/v1/chat/completions"
V1, V2 = "/v1/models/diffucoder:predict", "/v2/models/diffucoder/infer"
OK = {"max_tokens": 4, "steps": 2}
MSG = [{"role": "user", "content": "Write f."}]


def v2_body(data=("def f():",), name="text_input", datatype="BYTES", **parameters):
    return {"inputs": [{"name": name, "shape": [len(data)], "datatype": datatype, "data": list(data)}],
            "parameters": {**OK, **parameters}}


# (route, body: dict -> JSON, or bytes -> sent as is, expected status, expected error param)
BAD = [
    (C, b'{"prompt": "x"', 400, "body"), (C, b"[1, 2]", 400, "body"), (C, b"", 400, "body"),
    (C, b'{"prompt": "x", "temperature": NaN}', 400, "body"), (C, b"[" * 50_000, 400, "body"),
    (C, b'{"prompt": "\xff\xfe"}', 400, "body"), (C, {"prompt": "x" * 70_000}, 413, "body"),
    (C, {**OK}, 400, "prompt"), (C, {"prompt": 5, **OK}, 400, "prompt"), (C, {"prompt": "", **OK}, 400, "prompt"),
    (C, {"prompt": [], **OK}, 400, "prompt"), (C, {"prompt": [1, 2, 3], **OK}, 400, "prompt"),
    (C, {"prompt": ["a", 3], **OK}, 400, "prompt"), (C, {"prompt": ["x"] * 9, **OK}, 400, "prompt"),
    (C, {"prompt": "def f(x): return x " * 40, **OK}, 400, "prompt"),
    (C, {"prompt": ["ok", ""], **OK}, 400, "prompt[1]"),
    (C, {"prompt": "x <|mask|> y", **OK}, 400, "prompt"),
    (C, {"prompt": "x", "max_tokens": -1}, 400, "max_tokens"), (C, {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": 10**12}, 400, "max_tokens"), (C, {"prompt": "x", "max_tokens": "4"}, 400, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": 2.5}, 400, "max_tokens"), (C, {"prompt": "x", "max_tokens": True}, 400, "max_tokens"),
    (C, {"prompt": "x", "steps": 0}, 400, "steps"), (C, {"prompt": "x", "steps": 10**6}, 400, "steps"),
    (C, {"prompt": "x", "steps": [2]}, 400, "steps"),
    (C, {"prompt": "x", "alg": "bogus"}, 400, "alg"), (C, {"prompt": "x", "alg": 3}, 400, "alg"),
    (C, {"prompt": "x", "temperature": -1}, 400, "temperature"), (C, {"prompt": "x", "temperature": "hot"}, 400, "temperature"),
    (C, {"prompt": "x", "temperature": 1e308}, 400, "temperature"),
    (C, {"prompt": "x", "top_p": 0}, 400, "top_p"), (C, {"prompt": "x", "top_p": 1.5}, 400, "top_p"),
    (C, {"prompt": "x", "top_k": -3}, 400, "top_k"), (C, {"prompt": "x", "alg_temp": -0.5}, 400, "alg_temp"),
    (C, {"prompt": "x", "seed": -1}, 400, "seed"), (C, {"prompt": "x", "seed": "x"}, 400, "seed"),
    (C, {"prompt": "x", "seed": 2**70}, 400, "seed"),
    (C, {"prompt": "x", "stop": 5}, 400, "stop"), (C, {"prompt": "x", "stop": ["", "a"]}, 400, "stop"),
    (C, {"prompt": "x", "stop": ["a"] * 9}, 400, "stop"), (C, {"prompt": "x", "stream": "yes"}, 400, "stream"),
    (C, {"prompt": "x", "stream": True, "stream_options": "x"}, 400, "stream_options"),
    (C, {"prompt": "x", "n": 3}, 400, "n"), (C, {"prompt": "x", "logprobs": 5}, 400, "logprobs"),
    (C, {"prompt": "x", "frequency_penalty": 1}, 400, "frequency_penalty"),
    (C, {"prompt": "x", "echo": 1}, 400, "echo"),
    (C, {"prompt": "x", "model": 123}, 400, "model"), (C, {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    (CHAT, {**OK}, 400, "messages"), (CHAT, {"messages": "hi", **OK}, 400, "messages"),
    (CHAT, {"messages": [], **OK}, 400, "messages"), (CHAT, {"messages": ["hi"], **OK}, 400, "messages[0]"),
    (CHAT, {"messages": [{"role": "bot", "content": "x"}], **OK}, 400, "messages[0].role"),
    (CHAT, {"messages": [{"content": "x"}], **OK}, 400, "messages[0].role"),
    (CHAT, {"messages": [*MSG, {"role": "user", "content": 5}], **OK}, 400, "messages[1].content"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}], **OK}, 400, "messages[0].content"),
    (CHAT, {"messages": MSG, "max_completion_tokens": -2}, 400, "max_completion_tokens"),
    (CHAT, {"messages": MSG, "tools": [{"type": "function"}]}, 400, "tools"),
    (CHAT, {"messages": MSG, "temperature": None, "top_p": "1"}, 400, "top_p"),
    (V1, b"{not json", 400, "body"), (V1, {"instances": "x"}, 400, "instances"), (V1, {"instances": []}, 400, "instances"),
    (V1, {}, 400, "instances"), (V1, {"instances": [5]}, 400, "instances[0]"),
    (V1, {"instances": [{"prompt": 5}]}, 400, "instances[0].prompt"),
    (V1, {"instances": [{"text": "x"}]}, 400, "instances[0].prompt"),
    (V1, {"instances": ["x"], "parameters": "fast"}, 400, "parameters"),
    (V1, {"instances": ["x"], "parameters": {"max_tokens": -1}}, 400, "parameters.max_tokens"),
    (V1, {"instances": [{"prompt": "x", "steps": "2"}]}, 400, "instances[0].steps"),
    (V1, {"instances": [{"messages": [{"role": "user"}]}]}, 400, "instances[0].messages[0].content"),
    (V1, {"instances": ["x", ""]}, 400, "instances[1]"),
    (V2, b"{]", 400, "body"), (V2, {"parameters": {}}, 400, "inputs"), (V2, {"inputs": "x"}, 400, "inputs"),
    (V2, v2_body(name="prompt"), 400, "inputs"), (V2, v2_body(datatype="FP32"), 400, "inputs[0].datatype"),
    (V2, v2_body(data=(1, 2)), 400, "inputs[0].data"), (V2, v2_body(max_tokens=-4), 400, "parameters.max_tokens"),
    (V2, v2_body(alg="nope"), 400, "parameters.alg"), (V2, v2_body(data=("",)), 400, "inputs[0].data[0]"),
    (V2, {"inputs": [{"name": "text_input", "shape": "x", "datatype": "BYTES", "data": ["a"]}]}, 400,
     "inputs[0].shape"),
    (V2, {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
          "parameters": {"stop": ["a"]}}, 400, "parameters.stop"),
    # KServe's binary tensor extension (its parser fails with 5xx on bad input) and CloudEvents headers
    (V2, b"xxxx", 400, "inference-header-content-length", {"inference-header-content-length": "abc"}),
    (V2, b"{}xx", 400, "inference-header-content-length", {"inference-header-content-length": "2"}),
    (V1, b"zz", 400, "body", {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "t", "ce-type": "t"}),
]
GOOD = [
    (C, {"prompt": "def f(x):", **OK}), (C, {"prompt": ["a = 1", "b = 2"], **OK}),
    (C, {"prompt": "x", "stream": True, **OK}), (C, {"prompt": "x", "stop": ["\n"], "seed": 3, **OK}),
    (C, {"prompt": "import os", "model": "diffucoder", "temperature": 0.7, "top_k": 5, **OK}),
    (CHAT, {"messages": MSG, **OK}), (CHAT, {"messages": MSG, "stream": True, **OK}),
    (V1, {"instances": ["x", {"prompt": "y", "max_tokens": 3}], "parameters": OK}),
    (V1, {"instances": [{"messages": MSG}], "parameters": OK}), (V2, v2_body(data=("a", "b"))),
]


def send(http, route, body, headers=None):
    if isinstance(body, bytes):
        return http.post(route, content=body, headers={"content-type": "application/json", **(headers or {})})
    return http.post(route, json=body)


def test_a_mixed_run_of_1000_requests(server, http):
    rng = random.Random(0)
    plan = [(True, GOOD[i % len(GOOD)]) for i in range(800)] + [(False, BAD[i % len(BAD)]) for i in range(200)]
    rng.shuffle(plan)

    def run(item):
        good, case = item
        response = send(http, case[0], case[1], *case[4:])
        return good, case, response.status_code, response.text

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(run, plan))
    problems = []
    for good, case, status, text in results:
        if good and status != 200:
            problems.append(f"good {case[0]} {str(case[1])[:80]} -> {status} {text[:200]}")
        elif not good:
            route, body, want_status, want_param = case[:4]
            error = json.loads(text).get("error", {}) if text.startswith("{") else {}
            if status != want_status or error.get("param") != want_param or not error.get("message"):
                problems.append(f"bad {route} {str(body)[:80]} -> {status} {text[:200]} (wanted {want_status} "
                                f"naming {want_param!r})")
    assert not problems, "\n".join(problems[:20])
    assert sum(1 for _good, _case, status, _text in results if status >= 500) == 0
    assert server.process.poll() is None and http.get("/v2/health/live").status_code == 200
    metrics = http.get("/metrics").text
    # (readiness answered 503 while the model loaded, before the fixture saw it ready: a state,
    # not a failed request)
    assert not [line for line in metrics.splitlines()
                if line.startswith("diffucoder_requests_total") and 'status="5' in line
                and 'route="/v2/health/ready"' not in line]


def test_paths_kserve_would_answer_with_5xx_or_let_clients_unload(http):
    """Model versions / explain (5xx in KServe) are 404s; repository load/unload are refused."""
    assert http.post("/v2/models/diffucoder/versions/1/infer", json=v2_body()).status_code == 404
    assert http.get("/v2/models/diffucoder/versions/1").status_code == 404
    assert http.post("/v1/models/diffucoder:explain", json={"instances": ["x"]}).status_code == 404
    assert http.post("/v2/repository/models/diffucoder/unload").status_code == 403
    assert http.get("/v1/models/diffucoder").json()["ready"] is True
    assert http.post("/v2/models/other/infer", json=v2_body()).status_code == 404
    assert http.get("/no/such/route").status_code == 404
    assert http.put(C, json={"prompt": "x"}).status_code == 405
