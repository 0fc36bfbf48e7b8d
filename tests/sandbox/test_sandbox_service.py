"""The sandbox service over HTTP: the pool's verdict records, back-pressure, limits, health and
metrics, and requests that are malformed in every way a client could manage (none crashes it).

One service on 127.0.0.1 is shared by the module (2 workers); tests that need other settings
start their own. Raw HTTP goes through ``http.client``, so the tests see exactly what a client
sends and gets.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from diffucoder.sandbox import (RunResult, Sandbox, SandboxClient, SandboxConfig, SandboxError, TestCase,
                                Verdict)
from diffucoder.sandbox.client import ServiceError, encode_tests
from diffucoder.sandbox.inside import wire
from diffucoder.sandbox.service import SandboxService, ServiceConfig, stop_requested

pytestmark = pytest.mark.integration

ADD = "def add(a, b):\n    return a + b\n"
SLOW = "import time\ndef add(a, b):\n    time.sleep(1.5)\n    return a + b\n"
PROGRAMS = [  # (program, tests, entry point): a spread of verdicts and test styles
    (ADD, "assert add(1, 2) == 3\nassert add(2, 2) == 5\n", None),
    (ADD, "def check(candidate):\n    assert candidate(1, 1) == 2\n", "add"),
    (ADD, [TestCase(args=(1, 2), expected=3), TestCase(args=([1], [2]), expected=(1, 2), name="a list")], "add"),
    ("def add(a, b):\n    return a +\n", "assert add(1, 1) == 2", None),
    ("import os\nos._exit(0)\n" + ADD, "assert add(1, 1) == 2", None),
    ("def add(a, b):\n    while True:\n        pass\n", "assert add(1, 1) == 2", None),
    ("def add(a, b):\n    return [0] * (10 ** 10)\n", "assert add(1, 1) == 2", None),
    ("# a lone surrogate: \ud800\n" + ADD, "assert add(1, 1) == 2", None),   # crosses JSON intact
    ("import sys\nprint('out')\nsys.stderr.write('err')\n" + ADD, "assert add(1, 1) == 2", None),
]


def start(sandbox_cfg: SandboxConfig, **service) -> SandboxService:
    svc = SandboxService(sandbox_cfg, ServiceConfig(host="127.0.0.1", port=0, min_isolation="none", **service))
    svc.start()
    assert svc.wait_ready(60)
    return svc


@pytest.fixture(scope="module")
def service():
    svc = start(SandboxConfig(timeout_s=2, memory_mb=256, workers=2), max_source_kb=64, max_body_mb=1)
    yield svc
    svc.stop(drain_s=0)


def request(svc: SandboxService, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
    """(status, headers, decoded JSON or text) of one request on a fresh connection."""
    host, port = svc.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    text = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, dict(response.getheaders()), json.loads(text) if "json" in kind else text.decode()


def item(program=ADD, tests="assert add(1, 2) == 3", entry_point=None, **extra):
    return {"program": program, "tests": encode_tests(tests), "entry_point": entry_point, **extra}


def comparable(result: RunResult) -> dict:
    data = result.to_dict()
    data.pop("duration_s")
    return data


# -- the same verdict records as in process --------------------------------------------------------

def test_results_are_the_in_process_pools_records(service):
    with Sandbox(SandboxConfig(timeout_s=2, memory_mb=256, workers=2)) as pool:
        local = pool.run_many(PROGRAMS)
    with SandboxClient(service.url, SandboxConfig(timeout_s=2, memory_mb=256), retry_s=5) as client:
        remote = client.run_many(PROGRAMS)
        assert client.isolation == "service" and client.inner_isolation == service.isolation
    assert [r.verdict for r in local] == [Verdict.FAIL, Verdict.PASS, Verdict.FAIL, Verdict.ERROR, Verdict.ERROR,
                                          Verdict.TIMEOUT, Verdict.MEMORY, Verdict.ERROR, Verdict.PASS]
    assert [comparable(r) for r in remote] == [comparable(r) for r in local]
    assert "surrogates not allowed" in remote[7].message
    assert (remote[8].stdout, remote[8].stderr) == ("out\n", "err")
    for result in remote:   # the wire form reads back to itself
        assert RunResult.from_dict(json.loads(json.dumps(result.to_dict()))).to_dict() == result.to_dict()


def test_single_runs_and_batches_over_raw_http(service):
    status, _, body = request(service, "POST", "/v1/run", item())
    assert status == 200 and body["result"]["verdict"] == "pass" and body["isolation"] == service.isolation
    call = item(tests=[TestCase(args=(True, False), expected=1), TestCase(args=(1, 1), expected=2.0)],
                entry_point="add")
    status, _, body = request(service, "POST", "/v1/batch", {"items": [item(), call], "timeout_s": 2})
    assert status == 200 and [r["verdict"] for r in body["results"]] == ["pass", "pass"]
    assert [t["verdict"] for t in body["results"][1]["tests"]] == ["pass", "pass"]  # 1 == 1.0, True + False == 1


def test_request_limits_are_capped_by_the_servers(service):
    slower = "import time\ndef add(a, b):\n    time.sleep(4)\n    return a + b\n"
    status, _, body = request(service, "POST", "/v1/run", item(slower, timeout_s=3600, memory_mb=1 << 20))
    assert status == 200
    assert body["result"]["verdict"] == "timeout"              # capped at the server's 2 s
    assert "2s" in body["result"]["message"]
    hog = "def add(a, b):\n    return len(bytearray(300 << 20))\n"
    status, _, body = request(service, "POST", "/v1/run", item(hog, "assert add(1, 1) == 314572800",
                                                                memory_mb=4096))
    assert body["result"]["verdict"] == "memory"               # capped at the server's 256 MB


def test_health_readiness_info_and_metrics(service):
    assert request(service, "GET", "/healthz")[:1] == (200,)
    status, _, body = request(service, "GET", "/readyz")
    assert status == 200 and body["ready"] is True
    status, _, info = request(service, "GET", "/v1/info")
    assert info["isolation"] == service.isolation and info["workers"] == 2
    assert info["limits"]["timeout_s"] == 2 and info["max_batch"] == info["queue"]

    def passed_so_far() -> float:
        families = {f.name: f for f in text_string_to_metric_families(request(service, "GET", "/metrics")[2])}
        return {s.labels["verdict"]: s.value for s in families["diffucoder_sandbox_programs"].samples}["pass"], families

    before, _ = passed_so_far()
    request(service, "POST", "/v1/batch", {"items": [item(), item()]})
    after, families = passed_so_far()
    assert after == before + 2
    isolation = families["diffucoder_sandbox_isolation_info"].samples[0]
    assert isolation.labels == {"layer": service.isolation} and isolation.value == 1
    for name in ("queue_depth", "in_flight", "programs_per_second", "workers", "ready", "isolation_level"):
        assert f"diffucoder_sandbox_{name}" in families
    assert families["diffucoder_sandbox_programs_per_second"].samples[0].value > 0
    assert families["diffucoder_sandbox_workers"].samples[0].value == 2


# -- back-pressure ---------------------------------------------------------------------------------------

def test_a_full_queue_answers_429_with_retry_after_and_the_client_waits_its_turn():
    svc = start(SandboxConfig(timeout_s=5, workers=1), queue=2)
    try:
        busy = threading.Thread(target=request, args=(svc, "POST", "/v1/batch",
                                                      {"items": [item(SLOW), item(SLOW)]}))
        busy.start()
        deadline = time.monotonic() + 10
        while svc.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, headers, body = request(svc, "POST", "/v1/run", item())
        assert status == 429 and int(headers["Retry-After"]) >= 1 and "busy" in body["error"]
        status, _, body = request(svc, "POST", "/v1/batch", {"items": [item()] * 3})
        assert status == 413 and body["field"] == "items"
        with SandboxClient(svc.url, SandboxConfig(timeout_s=5), retry_s=30) as client:
            assert client.run(ADD, "assert add(1, 2) == 3").passed    # retried after the 429s
        busy.join()
        metrics = request(svc, "GET", "/metrics")[2]
        assert 'diffucoder_sandbox_responses_total{route="/v1/run",code="429"}' in metrics
    finally:
        svc.stop(drain_s=0)


def test_run_many_is_batched_into_few_requests(service):
    def batch_requests() -> float:
        families = text_string_to_metric_families(request(service, "GET", "/metrics")[2])
        samples = next(f for f in families if f.name == "diffucoder_sandbox_responses").samples
        return sum(s.value for s in samples if s.labels == {"route": "/v1/batch", "code": "200"})

    before = batch_requests()
    items = [(f"def add(a, b):\n    return a + b + {i % 2}\n", "assert add(1, 1) == 2", None) for i in range(80)]
    with SandboxClient(service.url, SandboxConfig(timeout_s=2), batch_size=64, retry_s=5) as client:
        results = client.run_many(items)
    assert [r.passed for r in results] == [i % 2 == 0 for i in range(80)]
    assert batch_requests() - before <= 3     # 80 completions: 2 requests (one of 64), not 80


def test_too_many_connections_get_503():
    svc = start(SandboxConfig(timeout_s=2, workers=1), max_connections=1, read_timeout_s=5)
    try:
        idle = socket.create_connection(svc.httpd.server_address[:2])   # holds the only slot
        time.sleep(0.2)
        status, headers, body = request(svc, "GET", "/healthz")
        assert status == 503 and body["error"] == "too many connections"
        idle.close()
        deadline = time.monotonic() + 5
        while request(svc, "GET", "/healthz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        svc.stop(drain_s=0)


def test_stopping_drains_admitted_programs_and_refuses_new_ones():
    svc = start(SandboxConfig(timeout_s=5, workers=1))
    answers = {}
    slow = threading.Thread(target=lambda: answers.update(r=request(svc, "POST", "/v1/run", item(SLOW))))
    slow.start()
    while svc.in_flight == 0:
        time.sleep(0.01)
    stopper = threading.Thread(target=svc.stop)
    stopper.start()
    while not svc.draining:
        time.sleep(0.01)
    assert request(svc, "GET", "/readyz")[0] == 503
    status, headers, body = request(svc, "POST", "/v1/run", item())
    assert status == 503 and "draining" in body["error"] and headers["Retry-After"]
    slow.join()
    stopper.join()
    assert answers["r"][0] == 200 and answers["r"][2]["result"]["verdict"] == "pass"


# -- bad requests: a 4xx naming the field, and the service carries on ---------------------------------

def b64(value) -> str:
    return base64.b64encode(wire.encode(value)).decode()


BAD = [  # (body, status, field)
    ({"tests": "assert add(1, 2) == 3"}, 400, "program"),
    ({"program": ADD}, 400, "tests"),
    ({"program": 3, "tests": "assert 1"}, 400, "program"),
    ({"program": ADD, "tests": 3}, 400, "tests"),
    ({"program": ADD, "tests": "assert add(1, 2) == 3", "extra": 1}, 400, "extra"),
    ({"program": ADD, "tests": "x = 1"}, 400, "tests"),
    ({"program": ADD, "tests": "assert ("}, 400, "tests"),
    ({"program": ADD, "tests": "-" * 60000 + "1"}, 400, "tests"),
    ({"program": ADD, "tests": "assert 1", "timeout_s": "1"}, 400, "timeout_s"),
    ({"program": ADD, "tests": "assert 1", "timeout_s": True}, 400, "timeout_s"),
    ({"program": ADD, "tests": "assert 1", "timeout_s": -1}, 400, "timeout_s"),
    ({"program": ADD, "tests": "assert 1", "memory_mb": 1.5}, 400, "memory_mb"),
    ({"program": ADD, "tests": "assert 1", "memory_mb": 8}, 400, "memory_mb"),
    ({"program": ADD, "tests": "assert 1", "entry_point": ["add"]}, 400, "entry_point"),
    ({"program": ADD, "tests": [], "entry_point": "add"}, 400, "tests"),
    ({"program": ADD, "tests": ["assert 1"]}, 400, "tests[0]"),
    ({"program": ADD, "tests": [{"code": "assert 1", "call": b64([[], {}, 1])}]}, 400, "tests[0]"),
    ({"program": ADD, "tests": [{"call": "not base64!"}], "entry_point": "add"}, 400, "tests[0].call"),
    ({"program": ADD, "tests": [{"call": b64({"a": 1})}], "entry_point": "add"}, 400, "tests[0].call"),
    ({"program": ADD, "tests": [{"call": b64([[], {1: 2}, 3])}], "entry_point": "add"}, 400, "tests[0].call"),
    ({"program": ADD, "tests": [{"call": base64.b64encode(b"l\xff\xff\xff\xff").decode()}],
      "entry_point": "add"}, 400, "tests[0].call"),
    ({"program": ADD, "tests": [{"call": b64([[1, 2], {}, 3])}]}, 400, "tests"),   # no entry point
    ({"program": ADD, "tests": [{"code": "assert 1", "weight": 2}]}, 400, "tests[0].weight"),
    ({"program": ADD, "tests": "assert 1", "entry_point": "no way"}, 200, ""),      # no check(): ignored
    ({"program": "x" * (65 << 10), "tests": "assert 1"}, 413, "program"),
    ({"program": ADD, "tests": "assert 1\n" * (10 << 10)}, 413, "tests"),
]


@pytest.mark.parametrize("body,status,field", BAD, ids=range(len(BAD)))
def test_bad_fields_get_a_4xx_naming_the_field(service, body, status, field):
    got, _, answer = request(service, "POST", "/v1/run", body)
    assert got == status, answer
    if status != 200:
        assert answer["field"] == field and answer["error"]
    batch, _, answer = request(service, "POST", "/v1/batch", {"items": [item(), body]})
    assert batch == status, answer
    if status != 200:
        assert answer["field"] == f"items[1].{field}"


@pytest.mark.parametrize("raw,headers,status,field", [
    (b"{not json", {}, 400, "body"),
    (b"\xff\xfe\x00garbage", {}, 400, "body"),
    (b"[1, 2]", {}, 400, "body"),
    (b"[" * 100000 + b"]" * 100000, {}, 400, "body"),
    (b'{"program": "x", "tests": "assert 1", "timeout_s": NaN}', {}, 400, "timeout_s"),
    (b'{"program": "x", "tests": "assert 1", "memory_mb": ' + b"9" * 5000 + b"}", {}, 400, "body"),
], ids=["truncated", "not-utf8", "array", "deep", "nan", "huge-int"])
def test_malformed_bodies_get_400(service, raw, headers, status, field):
    got, _, answer = request(service, "POST", "/v1/run", raw=raw, headers=headers)
    assert (got, answer["field"]) == (status, field)


def test_framing_errors_routes_and_methods(service):
    host, port = service.httpd.server_address[:2]

    def raw_exchange(data: bytes) -> bytes:
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)   # the client is done sending: a short body ends here
            chunks = []
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    too_big = raw_exchange(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{")
    assert too_big.startswith(b"HTTP/1.1 413") and b'"field": "body"' in too_big
    no_length = raw_exchange(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert no_length.startswith(b"HTTP/1.1 411")
    chunked = raw_exchange(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411")
    short = raw_exchange(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{}")
    assert short.startswith(b"HTTP/1.1 400") and b"body ended after 2 of 50 bytes" in short
    garbage = raw_exchange(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400") and b'"field": "request"' in garbage
    assert raw_exchange(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414")
    header_flood = b"".join(b"X-%d: y\r\n" % i for i in range(200))
    assert raw_exchange(b"GET /healthz HTTP/1.1\r\n" + header_flood + b"\r\n").startswith(b"HTTP/1.1 431")
    assert request(service, "GET", "/v1/run")[:1] == (405,)
    assert request(service, "POST", "/v2/run", {"program": ADD})[0] == 404
    assert request(service, "DELETE", "/v1/run")[0] == 501
    assert request(service, "POST", "/v1/batch", {"items": []})[2]["field"] == "items"
    assert request(service, "POST", "/v1/batch", {"items": [item()], "timeout_s": 0})[2]["field"] == "timeout_s"
    assert request(service, "POST", "/v1/batch", {"items": [item()], "priority": 1})[2]["field"] == "priority"


def test_random_mutations_never_crash_the_service(service):
    """Seeded fuzzing: valid bodies with fields dropped, retyped, duplicated or truncated."""
    rng = random.Random(17)
    junk = [None, True, -1, 0, 1e308, "", "x" * 100, [], {}, [1, [2, [3]]], {"a": {"b": None}}, "\x00"]
    seen = set()
    for _ in range(150):
        body = {"items": [item(), item(ADD, [TestCase(args=(1, 2), expected=3)], "add")]}
        target = body["items"][rng.randrange(2)]
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(sorted(target) + ["tests", "unknown"])
            action = rng.random()
            if action < 0.4:
                target[key] = rng.choice(junk)
            elif action < 0.6:
                target.pop(key, None)
            elif action < 0.8 and isinstance(target.get("tests"), list):
                target["tests"] = [rng.choice(junk + [{"call": rng.choice(junk)}])]
            else:
                body = rng.choice(junk + [body])
        raw = json.dumps(body).encode()
        if rng.random() < 0.2:
            raw = raw[:rng.randrange(len(raw) + 1)]
        status, _, answer = request(service, "POST", "/v1/batch", raw=raw)
        assert status in (200, 400, 413), (status, answer, raw[:300])
        if status != 200:
            assert answer["error"] and isinstance(answer["field"], str)
        seen.add(status)
    assert seen >= {200, 400}
    status, _, body = request(service, "POST", "/v1/run", item())
    assert status == 200 and body["result"]["verdict"] == "pass"      # still healthy


# -- the client -------------------------------------------------------------------------------------------

def test_the_client_checks_tests_before_sending(service):
    with SandboxClient(service.url, SandboxConfig(timeout_s=2), retry_s=5) as client:
        with pytest.raises(SandboxError, match="no top-level assert"):
            client.submit(ADD, "x = 1")
        with pytest.raises(SandboxError, match="plain data"):
            client.submit(ADD, [TestCase(args=(object(),), expected=1)], "add")
    with pytest.raises(SandboxError, match="closed"):
        client.run(ADD, "assert add(1, 2) == 3")


def test_an_unreachable_service_is_a_clear_error():
    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ServiceError, match=f"127.0.0.1:{port} is unreachable.*Fix: deploy it"):
        SandboxClient(f"http://127.0.0.1:{port}", retry_s=1.0)
    assert time.monotonic() - started < 10
    with pytest.raises(ServiceError, match="cannot resolve 'no-such-sandbox.invalid'"):
        SandboxClient("http://no-such-sandbox.invalid:8080", retry_s=60)      # no waiting on a name
    with pytest.raises(ServiceError, match="must look like"):
        SandboxClient("ftp://127.0.0.1:21")


def test_a_service_below_its_floor_refuses_to_start():
    with pytest.raises(SandboxError, match="refusing to run model-written code under 'rlimits-only'"):
        SandboxService(SandboxConfig(isolation="none"), ServiceConfig(port=0, min_isolation="auto"))
    with pytest.raises(SandboxError, match="--isolation=none forces it"):
        SandboxService(SandboxConfig(isolation="none"), ServiceConfig(port=0, min_isolation="bwrap"))


def test_stop_signals_count_unless_a_job_may_have_sent_them():
    assert stop_requested(0, busy=True)[0]                       # the kubelet, a terminal
    assert stop_requested(os.getppid(), busy=True)[0]            # a live process not below us
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert stop_requested(child.pid, busy=False) == (False, f"from pid {child.pid}, one of the jobs")
    finally:
        child.kill()
        child.wait()
    assert not stop_requested(child.pid, busy=True)[0]           # gone while jobs run: maybe one of them
    assert stop_requested(child.pid, busy=False)[0]              # gone, nothing running: not a job
