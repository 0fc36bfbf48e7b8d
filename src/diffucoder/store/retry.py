"""Retries with exponential backoff and full jitter, for transient errors only.

    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=20.0)
    data = policy.call(lambda: client.get_object(bucket, key).read(), what="get s3://b/k")

``is_transient`` decides what is worth retrying: connection failures, timeouts, HTTP 5xx,
429 and S3 throttling codes. Client errors (NoSuchKey, AccessDenied, bad signature, ...)
are raised at once, since repeating them cannot help. The jitter comes from a stream of its
own: a training checkpoint records python's process-wide ``random`` state, which must not
depend on how many retries the network needed.
"""
from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
    "RequestTimeout", "InternalError", "ServiceUnavailable", "XMinioServerNotInitialized",
})
_CODE = re.compile(r"<Code>\s*([^<\s]+)\s*</Code>")
_JITTER = random.Random()   # never the global stream (see above)


def s3_status(exc: BaseException) -> tuple[int | None, str | None]:
    """(HTTP status, S3 error code) of a minio error, whichever it could learn.

    Some servers (rclone among them) send errors as ``text/xml``, which minio reports as
    ``InvalidResponseError`` with the body as text; the code is recovered from that body.
    """
    if isinstance(exc, S3Error):
        return getattr(exc.response, "status", None), exc.code
    if isinstance(exc, InvalidResponseError):
        match = _CODE.search(getattr(exc, "_body", None) or "")
        return getattr(exc, "_code", None), match.group(1) if match else None
    if isinstance(exc, ServerError):
        return exc.status_code, None
    return None, None


def is_transient(exc: BaseException) -> bool:
    """True for errors that a later attempt may not see (network, 5xx, throttling)."""
    status, code = s3_status(exc)
    if status is not None or code is not None:
        return (code in THROTTLE_CODES) or status == 429 or (status or 0) >= 500
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return exc.reason is None or is_transient(exc.reason)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # a certificate problem does not heal by itself
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


@dataclass
class RetryPolicy:
    """At most ``attempts`` tries; the wait before try n+1 is uniform in [0, base*2^n], capped."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    transient: Callable[[BaseException], bool] = is_transient
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")

    def delay(self, failures: int) -> float:
        return _JITTER.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (failures - 1)))

    def call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn``; on a transient error wait and run it again, up to ``attempts`` times."""
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as exc:
                if attempt >= self.attempts or not self.transient(exc):
                    raise
                wait = self.delay(attempt)
                log.warning("%s: transient error (attempt %d/%d), retrying in %.2fs: %s",
                            what, attempt, self.attempts, wait, _short(exc))
                self.sleep(wait)
                attempt += 1


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
