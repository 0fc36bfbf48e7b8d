"""Back-pressure (a full queue is a 429 with Retry-After) and the draining shutdown on SIGTERM."""
from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving_helpers import start_server

pytestmark = pytest.mark.integration
SLOW = {"prompt": "def f(x):", "max_tokens": 64, "steps": 64}   # ~0.2-1 s per request on the micro model


@pytest.fixture(scope="module")
def small_queue_server(served_model_dir, tmp_path_factory):
    """One row per batch and two waiting rows at most: the third concurrent request is refused."""
    process = start_server(served_model_dir, tmp_path_factory.mktemp("lifecycle"), "batching.max_batch_size=1",
                           "batching.queue_size=2", "batching.max_wait_ms=0", "limits.max_tokens=64",
                           "limits.steps=64", "shutdown_grace_s=60", name="small-queue")
    yield process
    process.stop()


def wait_for_metric(http: httpx.Client, *lines: str) -> None:
    deadline = time.monotonic() + 10
    while not any(line in http.get("/metrics").text.splitlines() for line in lines):
        assert time.monotonic() < deadline, f"never saw {lines}"
        time.sleep(0.01)


def test_a_full_queue_answers_429_with_retry_after(small_queue_server):
    url = small_queue_server.url
    with httpx.Client(base_url=url, timeout=120) as http, ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: http.post("/openai/v1/completions", json=SLOW), range(12)))
        statuses = sorted(r.status_code for r in responses)
        refused = [r for r in responses if r.status_code == 429]
        assert set(statuses) == {200, 429} and len(refused) >= 6, statuses
        for response in refused:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "queue_full"
        assert all(r.json()["choices"][0]["finish_reason"] in ("stop", "length") for r in responses
                   if r.status_code == 200)
        # a streamed request is refused before its event stream starts (the queue is kept full meanwhile)
        stop = threading.Event()

        def keep_busy():
            while not stop.is_set():
                assert http.post("/openai/v1/completions", json=SLOW).status_code in (200, 429)

        with ThreadPoolExecutor(4) as busy:
            workers = [busy.submit(keep_busy) for _ in range(4)]
            for _attempt in range(50):
                time.sleep(0.05)
                streamed = http.post("/openai/v1/completions", json={**SLOW, "stream": True})
                if streamed.status_code == 429:
                    break
                assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
            stop.set()
            [worker.result() for worker in workers]
        assert streamed.status_code == 429 and int(streamed.headers["Retry-After"]) >= 1
        assert streamed.headers["content-type"].startswith("application/json")
        assert http.get("/v2/health/live").status_code == 200
        assert 'diffucoder_requests_total{route="/openai/v1/completions",status="429"}' in http.get("/metrics").text


def test_sigterm_finishes_in_flight_requests_then_exits(small_queue_server):
    url, process = small_queue_server.url, small_queue_server.process
    with httpx.Client(base_url=url, timeout=120) as http, ThreadPoolExecutor(3) as pool:
        # One at a time into the worker first: three at once could find the first still queued
        # (on a busy machine) and overflow the queue of 2 with a 429.
        in_flight = [pool.submit(http.post, "/openai/v1/completions", json=SLOW)]
        wait_for_metric(http, "diffucoder_decoding 1.0")
        in_flight += [pool.submit(http.post, "/openai/v1/completions", json=SLOW) for _ in range(2)]
        wait_for_metric(http, "diffucoder_queue_depth 2.0")  # 1 decoding + 2 queued
        process.send_signal(signal.SIGTERM)
        # the signal is handled on the server's event loop: readiness flips first (on a busy machine
        # that takes a moment; a request sent before it would meet the full queue's 429)
        deadline = time.monotonic() + 10
        while http.get("/v2/health/ready").status_code != 503:
            assert time.monotonic() < deadline, "readiness never flipped after SIGTERM"
            time.sleep(0.01)
        refused = http.post("/openai/v1/completions", json=SLOW)       # arrives while draining
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "shutting_down"
        assert http.get("/v2/health/live").status_code == 200
        finished = [future.result() for future in in_flight]
    assert [r.status_code for r in finished] == [200, 200, 200]
    assert all(r.json()["usage"]["prompt_tokens"] > 0 for r in finished)
    assert process.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/health/live", timeout=2)
