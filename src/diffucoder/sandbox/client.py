"""The ``Sandbox`` interface, served by a sandbox service over HTTP (``diffucoder sandbox serve``).

    from diffucoder.sandbox import SandboxClient, SandboxConfig
    with SandboxClient("http://diffucoder-sandbox:8080", SandboxConfig(timeout_s=5)) as sb:
        r = sb.run("def add(a, b):\\n    return a + b\\n", "assert add(1, 2) == 3")
        results = sb.run_many([(program, tests, "add") for program in programs])   # few requests
        future = sb.submit(program, tests, "add", timeout_s=2.0)
        sb.isolation, sb.inner_isolation      # "service", the layer jobs run under in the service

Results are the service's ``RunResult.to_dict()`` read back (``RunResult.from_dict``): the
same records an in-process pool returns. Tests are checked here first (the pool's
``build_plan``), so bad tests raise SandboxError before anything is sent.

Batching: ``submit`` queues; one thread gathers what is queued (up to ``batch_size``, waiting
at most ``linger_s`` for more) into one ``POST /v1/batch``, with up to ``max_in_flight``
requests under way. An RL step's 80 completions go out as one or two requests.

Retries: 429 (the service's queue is full: its Retry-After), 503 (starting, draining) and
lost connections are retried with backoff for ``retry_s`` seconds; then, as for a name that
does not resolve, SandboxError says the service is unreachable and how to fix it. Running a
program twice is harmless, so a batch whose answer was lost is sent again whole.
"""
from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import math
import queue
import random
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.inside import wire
from diffucoder.sandbox.pool import RunsSubmitted, checked_timeout
from diffucoder.sandbox.results import RunResult, SandboxError, TestCase
from diffucoder.sandbox.testplan import build_plan

RETRYABLE = (429, 502, 503, 504)
GRACE_S = 10.0   # the worker's grace period beyond a job's timeout (worker.GRACE_S)


def encode_tests(tests):
    """The JSON form of ``tests`` (source text, or a list of test objects)."""
    if isinstance(tests, TestCase):
        tests = [tests]
    if isinstance(tests, str):
        return tests
    out = []
    for case in tests:
        if case.code is not None:
            out.append({"code": case.code, "name": case.name})
        else:
            call = wire.encode([list(case.args), dict(case.kwargs), case.expected])
            out.append({"call": base64.b64encode(call).decode(), "name": case.name})
    return out


class ServiceError(SandboxError):
    """The sandbox service refused a request or cannot be reached."""


class SandboxClient(RunsSubmitted):
    """A sandbox service, used like ``Sandbox``: ``run``, ``run_many``, ``submit``, ``close``."""

    isolation = "service"

    def __init__(self, endpoint: str, config: SandboxConfig | None = None, *, batch_size: int = 64,
                 max_in_flight: int = 4, retry_s: float = 300.0, connect_timeout_s: float = 10.0,
                 linger_s: float = 0.002, **overrides):
        cfg = dataclasses.replace(config or SandboxConfig(), **overrides)
        cfg.validate()
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ServiceError(f"sandbox endpoint: must look like http://host:port, got {endpoint!r}")
        self.config, self.endpoint = cfg, endpoint.rstrip("/")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self.retry_s, self.connect_timeout_s, self.linger_s = retry_s, connect_timeout_s, linger_s
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.info = self._call("GET", "/v1/info", None, timeout=connect_timeout_s + 5)
        self.inner_isolation = self.info["isolation"]
        self.batch_size = max(1, min(batch_size, int(self.info.get("max_batch") or batch_size)))
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._senders = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="sandbox-client")
        self._batcher = threading.Thread(target=self._gather, name="sandbox-client-batcher", daemon=True)
        self._batcher.start()

    # --- the Sandbox interface ----------------------------------------------------------------------
    def submit(self, program: str, tests, entry_point: str | None = None, timeout_s: float | None = None,
               memory_mb: int | None = None) -> Future:
        """Queue one run; the Future holds its RunResult. Bad tests raise SandboxError here."""
        timeout = checked_timeout(program, timeout_s, self.config.timeout_s)
        build_plan(tests, entry_point)
        item = {"program": program, "tests": encode_tests(tests), "entry_point": entry_point,
                "timeout_s": timeout, "memory_mb": self.config.memory_mb if memory_mb is None else memory_mb}
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox client is closed")
            self._queue.put((item, future))
        return future

    def describe(self) -> dict:
        return {"isolation": self.isolation, "inside": self.inner_isolation, "endpoint": self.endpoint}

    def close(self) -> None:
        """Send what is queued, wait for the answers, close the connections (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._batcher.join()
        self._senders.shutdown(wait=True)
        for conn in self._connections:
            conn.close()

    def __enter__(self) -> "SandboxClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- batching ------------------------------------------------------------------------------------
    def _gather(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                return
            batch, deadline = [first], time.monotonic() + self.linger_s
            while len(batch) < self.batch_size:
                try:
                    entry = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if entry is None:
                    done = True
                    break
                batch.append(entry)
            self._slots.acquire()
            self._senders.submit(self._send_batch, batch)

    def _send_batch(self, batch: list) -> None:
        try:
            items = [item for item, _ in batch]
            longest = max(item["timeout_s"] for item in items)
            waves = math.ceil((len(items) + int(self.info.get("queue", 0))) / max(1, int(self.info.get("workers", 1))))
            answer = self._call("POST", "/v1/batch", {"items": items},
                                timeout=60.0 + (waves + 1) * (longest + GRACE_S))
            results = answer.get("results")
            if type(results) is not list or len(results) != len(items):
                raise ServiceError(f"the sandbox service at {self.endpoint} answered {len(results or [])} "
                                   f"results for {len(items)} programs")
            for (_, future), data in zip(batch, results):
                try:
                    future.set_result(RunResult.from_dict(data))
                except (KeyError, TypeError, ValueError) as err:
                    future.set_exception(ServiceError(f"the sandbox service sent a malformed result: {err!r}"))
        except BaseException as err:  # every future gets an answer, whatever went wrong
            for _, future in batch:
                if not future.done():
                    future.set_exception(err if isinstance(err, SandboxError)
                                         else ServiceError(f"sandbox service request failed: {err!r}"))
        finally:
            self._slots.release()

    # --- HTTP ------------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.connect_timeout_s)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _unreachable(self, why: str) -> ServiceError:
        return ServiceError(
            f"the sandbox service at {self.endpoint} is unreachable ({why}). Fix: deploy it (the Helm "
            f"chart's sandbox Deployment and Service, or 'diffucoder sandbox serve' on that host and port) "
            f"and check the endpoint setting; the NetworkPolicy admits pipeline steps and training pods only")

    def _call(self, method: str, path: str, payload, timeout: float) -> dict:
        """One request, retried on 429 / 503 / lost connections until ``retry_s`` has passed."""
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        give_up = time.monotonic() + self.retry_s
        attempt, why = 0, ""
        while True:
            attempt += 1
            conn = self._connection()
            try:
                if conn.sock is None:
                    conn.timeout = self.connect_timeout_s
                    conn.connect()
                conn.sock.settimeout(timeout)   # for the answer: a batch may take a while
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status, retry_after = response.status, response.getheader("Retry-After")
                if response.will_close:
                    self._drop_connection()
            except socket.gaierror as err:
                self._drop_connection()
                if err.errno != socket.EAI_AGAIN:   # the name does not exist: nothing to wait for
                    raise self._unreachable(f"cannot resolve {self._host!r}: {err.strerror}") from None
                status, retry_after, why = 0, None, f"name lookup failed: {err.strerror}"
            except socket.timeout:
                self._drop_connection()
                if method == "POST":
                    raise ServiceError(f"the sandbox service at {self.endpoint} did not answer within "
                                       f"{timeout:.0f} s") from None
                status, retry_after, why = 0, None, "timed out"
            except (ConnectionError, http.client.HTTPException, OSError) as err:
                self._drop_connection()
                status, retry_after, why = 0, None, f"{type(err).__name__}: {err}"
            if status == 200:
                try:
                    return json.loads(data)
                except ValueError as err:
                    raise ServiceError(f"the sandbox service at {self.endpoint} sent invalid JSON: {err}") from None
            if status and status not in RETRYABLE:
                try:
                    detail = json.loads(data)
                    message = f"{detail.get('error')} (field {detail.get('field') or '-'})"
                except (ValueError, AttributeError):
                    message = data[:300].decode(errors="replace")
                raise ServiceError(f"the sandbox service at {self.endpoint} refused {method} {path}: "
                                   f"HTTP {status}: {message}")
            if status:
                why = f"HTTP {status}"
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                if status:
                    raise ServiceError(f"the sandbox service at {self.endpoint} stayed busy or unready "
                                       f"for {self.retry_s:g} s (last answer: {why})")
                raise self._unreachable(why)
            backoff = min(10.0, 0.25 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2)
            if retry_after and retry_after.strip().isdigit():
                backoff = max(backoff, float(retry_after))
            time.sleep(min(backoff, remaining))
