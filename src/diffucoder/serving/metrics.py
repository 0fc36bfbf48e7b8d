"""Prometheus metrics of the server (scraped at ``/metrics`` with KServe's own).

    diffucoder_requests_total{route, status}        requests answered, by route template and status
    diffucoder_request_seconds{route}               latency histogram (until the response ended)
    diffucoder_batch_size                           rows per whole-batch decode
    diffucoder_batch_seconds                        wall time of one whole-batch decode
    diffucoder_step_rows                            rows per denoising step of the running set (continuous)
    diffucoder_step_seconds                         wall time of one such step
    diffucoder_generated_tokens_total               completion tokens decoded (rows x max_tokens)
    diffucoder_generated_tokens_per_second          of the last batch
    diffucoder_queue_depth                          requests waiting for the decoder
    diffucoder_decoding                             rows being decoded now

``MetricsMiddleware`` labels a request with its route template (``/v1/models/{model_name}:predict``),
or ``unmatched``, so clients cannot grow the label set.
"""
from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("diffucoder_requests", "HTTP requests answered", ["route", "status"])
LATENCY = Histogram("diffucoder_request_seconds", "request latency until the response ended", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
BATCH_SIZE = Histogram("diffucoder_batch_size", "rows per whole-batch decode",
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128))
BATCH_SECONDS = Histogram("diffucoder_batch_seconds", "wall time of one whole-batch decode",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
TOKENS = Counter("diffucoder_generated_tokens", "completion tokens decoded (rows x max_tokens)")
TOKENS_PER_SECOND = Gauge("diffucoder_generated_tokens_per_second", "decode throughput of the last batch")
STEP_ROWS = Histogram("diffucoder_step_rows", "rows per denoising step of the running set (continuous batching)",
                      buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128))
STEP_SECONDS = Histogram("diffucoder_step_seconds", "wall time of one denoising step of the running set",
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
QUEUE_DEPTH = Gauge("diffucoder_queue_depth", "requests waiting for the decoder")
DECODING = Gauge("diffucoder_decoding", "rows being decoded now")


def observe_batch(rows: int, tokens: int, seconds: float) -> None:
    BATCH_SIZE.observe(rows)
    BATCH_SECONDS.observe(seconds)
    TOKENS.inc(tokens)
    if seconds > 0:
        TOKENS_PER_SECOND.set(tokens / seconds)


def observe_step(rows: int, seconds: float) -> None:
    STEP_ROWS.observe(rows)
    STEP_SECONDS.observe(seconds)


class MetricsMiddleware:
    """Pure ASGI (streaming-safe): counts each HTTP request by route template and final status."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route, str(status[0])).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)
