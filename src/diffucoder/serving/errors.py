"""Errors a request can end in, and their JSON body (OpenAI's shape, on every route).

    raise RequestError("max_tokens: must be an integer in [1, 64], got -3", param="max_tokens")
    raise QueueFull(retry_after=2)          # 429 + Retry-After
    body = error_body(err)                  # {"error": {"message", "type", "param", "code"}}
"""
from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request the server will not run; ``status`` is the HTTP status (4xx unless said otherwise)."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400,
                 code: str | None = "invalid_value", type: str = "invalid_request_error",
                 retry_after: int | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code, self.type = message, param, status, code, type
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class QueueFull(RequestError):
    def __init__(self, retry_after: int, waiting: int):
        super().__init__(f"the server is at capacity ({waiting} requests waiting); retry after {retry_after} s",
                         status=429, code="queue_full", type="rate_limit_error", retry_after=retry_after)


class ShuttingDown(RequestError):
    def __init__(self, retry_after: int):
        super().__init__("the server is shutting down; retry on another replica",
                         status=503, code="shutting_down", type="service_unavailable", retry_after=retry_after)


def error_body(err: RequestError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def internal_error_body() -> dict[str, Any]:
    """A 500's body: no internals (they are in the server log)."""
    return {"error": {"message": "internal server error (logged on the server)", "type": "server_error",
                      "param": None, "code": "internal_error"}}
