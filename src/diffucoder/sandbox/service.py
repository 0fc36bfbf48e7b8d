"""``diffucoder sandbox serve``: the worker pool behind HTTP, for pods that must not run model-written code.

    diffucoder sandbox serve --port 8080 --workers 2 --timeout 60 --min-isolation auto
    curl -s localhost:8080/v1/run -d '{"program": "def add(a, b):\\n    return a + b\\n",
                                       "tests": "assert add(1, 2) == 3"}'

    service = SandboxService(SandboxConfig(workers=2), ServiceConfig(port=0))
    service.start()                      # binds, then starts the pool and its self-check
    service.url, service.wait_ready(60)  # http://127.0.0.1:<port>, True
    service.stop()                       # drains: finishes admitted programs, then closes

Routes (JSON in, JSON out; every error is ``{"error": "...", "field": "items[3].tests"}``):

    POST /v1/run    {"program", "tests", "entry_point"?, "timeout_s"?, "memory_mb"?} -> {"result": {...}}
    POST /v1/batch  {"items": [<as /v1/run>, ...], "timeout_s"?, "memory_mb"?}       -> {"results": [...]}
    GET  /v1/info   isolation layer, workers, limits, queue size
    GET  /healthz   200 while the process serves (liveness)
    GET  /readyz    200 once the pool runs and passed its self-check; 503 before, when draining
    GET  /metrics   Prometheus text: programs/s, queue depth, verdict counts, isolation layer

A result is ``RunResult.to_dict()`` of the in-process pool, exactly (``RunResult.from_dict``
reads it back). ``tests`` is assert / ``check()`` source, or a list of test objects:
``{"code": "assert ...", "name"?}`` or ``{"call": <base64 of wire.encode([args, kwargs,
expected])>, "name"?}`` (call values cross in the sandbox's strict plain-data codec, so a
tuple stays a tuple and 1 stays unequal to True). Per-request ``timeout_s`` / ``memory_mb``
are capped at the server's (``--timeout``, ``--memory-mb``).

Back-pressure: at most ``queue`` programs are admitted at once (waiting or running); a
request that does not fit gets 429 with ``Retry-After``, one larger than ``max_batch`` gets
413. Bodies over ``max_body_mb``, programs or tests over ``max_source_kb``, unknown fields,
wrong types and malformed JSON get a 4xx naming the field; nothing a client sends reaches a
worker unless it is well-formed. Connections beyond ``max_connections`` get 503.

The HTTP layer is the standard library's ``ThreadingHTTPServer``: the sandbox image (the base
image, with bubblewrap) then needs neither the ``serve`` extra nor anything but the project;
the routes are few and fixed, and the pool (threads waiting on worker processes) does the work.
"""
from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from diffucoder import __version__
from diffucoder.config import setting
from diffucoder.sandbox.config import LAYERS, MIN_ISOLATION_CHOICES, SandboxConfig, check_settings, layer_rank
from diffucoder.sandbox.inside import wire
from diffucoder.sandbox.inside.spawn import PR_SET_DUMPABLE, prctl
from diffucoder.sandbox.isolation import check_floor, choose_launch
from diffucoder.sandbox.pool import Sandbox
from diffucoder.sandbox.results import RunResult, SandboxError, TestCase, Verdict
from diffucoder.sandbox.selfcheck import self_check
from diffucoder.sandbox.testplan import build_plan

ITEM_FIELDS = {"program", "tests", "entry_point", "timeout_s", "memory_mb"}
BATCH_FIELDS = {"items", "timeout_s", "memory_mb"}
TEST_FIELDS = {"code", "call", "name"}
MAX_TESTS = 10_000
RATE_WINDOW_S = 60.0


@dataclass
class ServiceConfig:
    host: str = setting("0.0.0.0", help="address to listen on")
    port: int = setting(8080, min=0, max=65535, help="TCP port (0 = any free port)")
    queue: int = setting(256, min=1, max=1 << 20,
                         help="programs admitted at once (waiting or running); more get 429")
    max_batch: int = setting(0, min=0, help="programs per request (0 = queue)")
    max_body_mb: int = setting(64, min=1, max=4096, help="largest request body")
    max_source_kb: int = setting(1024, min=1, help="largest program, and largest tests source")
    max_connections: int = setting(64, min=1, max=4096, help="connections served at once; more get 503")
    read_timeout_s: float = setting(60.0, min=1.0, help="a client must send its request within this")
    min_isolation: str = setting("auto", choices=MIN_ISOLATION_CHOICES,
                                 help="refuse to start below this layer (auto = the strongest "
                                      "available here, and at least unshare-n+uid)")
    drain_s: float = setting(120.0, min=0.0, help="on SIGTERM: wait this long for admitted programs")

    @property
    def batch_limit(self) -> int:
        return min(self.max_batch or self.queue, self.queue)

    def validate(self) -> None:
        check_settings(self)


class RequestError(Exception):
    """A request the service refuses: HTTP status, message, the field at fault."""

    def __init__(self, status: int, message: str, field: str = "", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


@dataclass
class Item:
    program: str
    tests: Any
    entry_point: str | None
    timeout_s: float
    memory_mb: int


# -- parsing a request: every refusal names its field ------------------------------------------------

def _number(value, field: str, integer: bool = False):
    kinds = (int,) if integer else (int, float)
    if type(value) not in kinds:
        raise RequestError(400, f"must be {'an integer' if integer else 'a number'}, "
                                f"got {type(value).__name__}", field)
    if not math.isfinite(value) or value <= 0:
        raise RequestError(400, f"must be a positive finite number, got {value!r}", field)
    return value


def _source(value, field: str, limit: int) -> str:
    if type(value) is not str:
        raise RequestError(400, f"must be a string, got {type(value).__name__}", field)
    if len(value) > limit:  # characters: a UTF-8 byte limit could only be larger
        raise RequestError(413, f"longer than the server's limit of {limit} characters", field)
    return value


def _test_case(obj, field: str, limit: int) -> TestCase:
    if type(obj) is not dict:
        raise RequestError(400, f"must be an object with 'code' or 'call', got {type(obj).__name__}", field)
    unknown = sorted(set(obj) - TEST_FIELDS)
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r} (allowed: {sorted(TEST_FIELDS)})",
                           f"{field}.{unknown[0]}")
    name = obj.get("name", "")
    if type(name) is not str:
        raise RequestError(400, f"must be a string, got {type(name).__name__}", f"{field}.name")
    if ("code" in obj) == ("call" in obj):
        raise RequestError(400, "give exactly one of 'code' and 'call'", field)
    if "code" in obj:
        return TestCase(code=_source(obj["code"], f"{field}.code", limit), name=name[:200])
    raw = obj["call"]
    if type(raw) is not str:
        raise RequestError(400, f"must be a base64 string, got {type(raw).__name__}", f"{field}.call")
    try:
        value = wire.decode(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f"not base64 of wire-encoded [args, kwargs, expected]: {err}",
                           f"{field}.call") from None
    if not (type(value) is list and len(value) == 3 and type(value[0]) is list and type(value[1]) is dict
            and all(type(k) is str for k in value[1])):
        raise RequestError(400, "must decode to [args list, kwargs dict with string keys, expected]",
                           f"{field}.call")
    return TestCase(args=tuple(value[0]), kwargs=value[1], expected=value[2], name=name[:200])


def parse_item(obj, field: str, defaults: dict, caps: SandboxConfig, limit: int) -> Item:
    """One program to run, checked and capped; RequestError names what is wrong."""
    if type(obj) is not dict:
        raise RequestError(400, f"must be an object, got {type(obj).__name__}", field)
    where = f"{field}." if field else ""
    unknown = sorted(set(obj) - ITEM_FIELDS)
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r} (allowed: {sorted(ITEM_FIELDS)})",
                           where + unknown[0])
    for required in ("program", "tests"):
        if required not in obj:
            raise RequestError(400, "required", where + required)
    program = _source(obj["program"], where + "program", limit)
    tests = obj["tests"]
    if type(tests) is list:
        if not tests or len(tests) > MAX_TESTS:
            raise RequestError(400, f"must hold 1 to {MAX_TESTS} tests, got {len(tests)}", where + "tests")
        tests = [_test_case(t, f"{where}tests[{i}]", limit) for i, t in enumerate(tests)]
    else:
        tests = _source(tests, where + "tests", limit)
    entry = obj.get("entry_point")
    if entry is not None and type(entry) is not str:
        raise RequestError(400, f"must be a string or null, got {type(entry).__name__}", where + "entry_point")
    timeout = obj.get("timeout_s", defaults.get("timeout_s", caps.timeout_s))
    memory = obj.get("memory_mb", defaults.get("memory_mb", caps.memory_mb))
    timeout = min(float(_number(timeout, where + "timeout_s")), caps.timeout_s)
    memory = min(_number(memory, where + "memory_mb", integer=True), caps.memory_mb)
    if memory < 32:
        raise RequestError(400, f"must be >= 32, got {memory}", where + "memory_mb")
    try:
        build_plan(tests, entry)   # the pool's own check, before anything is admitted
    except SandboxError as err:
        raise RequestError(400, str(err), where + "tests") from None
    return Item(program, tests, entry, timeout, memory)


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise RequestError(400, f"not valid JSON: {str(err)[:200]}", "body") from None
    if type(body) is not dict:
        raise RequestError(400, f"must be a JSON object, got {type(body).__name__}", "body")
    return body


# -- metrics -------------------------------------------------------------------------------------------

class Metrics:
    """Counters and gauges of the service, written in the Prometheus text format."""

    def __init__(self):
        self.lock = threading.Lock()
        self.verdicts = collections.Counter({v.value: 0 for v in Verdict})
        self.responses: collections.Counter = collections.Counter()
        self.seconds_sum = 0.0
        self.finished_at: collections.deque = collections.deque()
        self.started = time.monotonic()

    def finished(self, result: RunResult) -> None:
        now = time.monotonic()
        with self.lock:
            self.verdicts[result.verdict.value] += 1
            self.seconds_sum += result.duration_s
            self.finished_at.append(now)
            self._trim(now)

    def responded(self, route: str, status: int) -> None:
        with self.lock:
            self.responses[(route, status)] += 1

    def _trim(self, now: float) -> None:
        while self.finished_at and self.finished_at[0] < now - RATE_WINDOW_S:
            self.finished_at.popleft()

    def programs_per_s(self) -> float:
        now = time.monotonic()
        with self.lock:
            self._trim(now)
            window = min(RATE_WINDOW_S, max(now - self.started, 1e-9))
            return len(self.finished_at) / window

    def render(self, gauges: dict, isolation: str) -> str:
        rate = self.programs_per_s()
        with self.lock:
            verdicts, responses = dict(self.verdicts), dict(self.responses)
            total, seconds = sum(verdicts.values()), self.seconds_sum
        out = []

        def metric(name, kind, help_text, samples):
            out.append(f"# HELP diffucoder_sandbox_{name} {help_text}")
            out.append(f"# TYPE diffucoder_sandbox_{name} {kind}")
            for labels, value in samples:
                shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
                out.append(f"diffucoder_sandbox_{name}{{{shown}}} {value}" if shown
                           else f"diffucoder_sandbox_{name} {value}")

        metric("programs_total", "counter", "Programs run, by verdict.",
               [({"verdict": v}, n) for v, n in sorted(verdicts.items())])
        metric("programs_per_second", "gauge", f"Programs finished per second over the last "
               f"{RATE_WINDOW_S:g} s.", [({}, f"{rate:.6g}")])
        metric("program_seconds", "summary", "Wall-clock seconds of the programs run.", [])
        out.append(f"diffucoder_sandbox_program_seconds_sum {seconds:.6g}")
        out.append(f"diffucoder_sandbox_program_seconds_count {total}")
        metric("queue_depth", "gauge", "Programs waiting for a worker.", [({}, gauges["queue_depth"])])
        metric("in_flight", "gauge", "Programs admitted and not finished (waiting or running).",
               [({}, gauges["in_flight"])])
        metric("queue_limit", "gauge", "Programs admitted at most at once.", [({}, gauges["queue_limit"])])
        metric("workers", "gauge", "Worker processes of the pool.", [({}, gauges["workers"])])
        metric("ready", "gauge", "1 when the service accepts programs.", [({}, gauges["ready"])])
        metric("isolation_info", "gauge", "The isolation layer programs run under (label layer).",
               [({"layer": isolation}, 1)])
        metric("isolation_level", "gauge", "That layer's rank: " + ", ".join(
            f"{i} {name}" for i, name in enumerate(LAYERS)) + ".", [({}, layer_rank(isolation))])
        metric("responses_total", "counter", "HTTP responses, by route and status.",
               [({"route": r, "code": c}, n) for (r, c), n in sorted(responses.items())])
        return "\n".join(out) + "\n"


# -- the service ---------------------------------------------------------------------------------------

class SandboxService:
    """The pool behind an HTTP server; admission control, readiness and metrics live here."""

    def __init__(self, sandbox_config: SandboxConfig | None = None, config: ServiceConfig | None = None):
        self.service_config = config or ServiceConfig()
        self.service_config.validate()
        # The pool's own queue holds every admitted program, so submit never blocks a request.
        self.config = dataclasses.replace(sandbox_config or SandboxConfig(),
                                          queue_size=self.service_config.queue)
        self.config.validate()
        launch = choose_launch(self.config)   # what runs here, checked before anything starts
        check_floor(launch.name, self.service_config.min_isolation, self.config, section=None,
                    isolation_key="--isolation", min_key="--min-isolation")
        self.isolation = launch.name
        self.metrics = Metrics()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.last_finished = -math.inf   # time.monotonic() when a program last finished
        self.ready = False
        self.draining = False
        self.failure = ""
        self.pool: Sandbox | None = None
        self.httpd: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._ready_event = threading.Event()
        self._job_seconds = 1.0   # moving average, for Retry-After

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}"

    def start(self) -> "SandboxService":
        """Bind (healthz answers at once), then start the pool and self-check in the background."""
        cfg = self.service_config
        self.httpd = _Server((cfg.host, cfg.port), _Handler, self)
        serving = threading.Thread(target=self.httpd.serve_forever, name="sandbox-http", daemon=True)
        starting = threading.Thread(target=self._start_pool, name="sandbox-start", daemon=True)
        self._threads = [serving, starting]
        for thread in self._threads:
            thread.start()
        return self

    def _start_pool(self) -> None:
        try:
            self.pool = Sandbox(self.config)
            self_check(self.pool)
        except Exception as err:  # noqa: BLE001 - reported by readyz and wait_ready, never served
            self.failure = f"{type(err).__name__}: {err}"
        else:
            with self.lock:
                self.ready = not self.draining
        self._ready_event.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once ready; False on timeout; SandboxError if the pool failed to start."""
        if not self._ready_event.wait(timeout):
            return False
        if self.failure:
            raise SandboxError(f"the sandbox service cannot start: {self.failure}")
        return self.ready

    def stop(self, drain_s: float | None = None) -> None:
        """Refuse new programs, wait up to ``drain_s`` for admitted ones, then close everything."""
        with self.lock:
            self.draining, self.ready = True, False
        deadline = time.monotonic() + (self.service_config.drain_s if drain_s is None else drain_s)
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight == 0:
                    break
            time.sleep(0.05)
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        self._ready_event.wait()
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> "SandboxService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(drain_s=0)

    # -- requests ----------------------------------------------------------------------------------------
    def info(self) -> dict:
        return {"service": "diffucoder-sandbox", "version": __version__, "isolation": self.isolation,
                "isolation_level": layer_rank(self.isolation), "ready": self.ready,
                "workers": self.config.pool_size, "queue": self.service_config.queue,
                "max_batch": self.service_config.batch_limit,
                "limits": {"timeout_s": self.config.timeout_s, "memory_mb": self.config.memory_mb,
                           "max_source_kb": self.service_config.max_source_kb,
                           "max_body_mb": self.service_config.max_body_mb}}

    def gauges(self) -> dict:
        with self.lock:
            in_flight, ready = self.in_flight, self.ready
        return {"queue_depth": self.pool.queue_depth if self.pool is not None else 0,
                "in_flight": in_flight, "queue_limit": self.service_config.queue,
                "workers": self.config.pool_size, "ready": int(ready)}

    def run_request(self, body: dict, batch: bool) -> dict:
        """Parse, admit, run and answer one /v1/run or /v1/batch body."""
        limit = self.service_config.max_source_kb << 10
        if batch:
            unknown = sorted(set(body) - BATCH_FIELDS)
            if unknown:
                raise RequestError(400, f"unknown field {unknown[0]!r} (allowed: {sorted(BATCH_FIELDS)})",
                                   unknown[0])
            items = body.get("items")
            if type(items) is not list or not items:
                raise RequestError(400, "must be a non-empty list of programs", "items")
            if len(items) > self.service_config.batch_limit:
                raise RequestError(413, f"{len(items)} programs; at most {self.service_config.batch_limit} "
                                        f"per request", "items")
            defaults = {}
            for key in ("timeout_s", "memory_mb"):
                if key in body:
                    defaults[key] = _number(body[key], key, integer=key == "memory_mb")
            parsed = [parse_item(obj, f"items[{i}]", defaults, self.config, limit)
                      for i, obj in enumerate(items)]
        else:
            parsed = [parse_item(body, "", {}, self.config, limit)]
        futures = self._admit_and_submit(parsed)
        results = [f.result().to_dict() for f in futures]
        return {"results": results, "isolation": self.isolation} if batch else \
            {"result": results[0], "isolation": self.isolation}

    def _admit_and_submit(self, items: list[Item]) -> list[Future]:
        n = len(items)
        with self.lock:
            if not self.ready:
                why = "draining" if self.draining else (self.failure or "starting")
                raise RequestError(503, f"not ready ({why})", "", {"Retry-After": "2"})
            if self.in_flight + n > self.service_config.queue:
                waiting = self.in_flight + n - self.service_config.queue
                wait = math.ceil(waiting * self._job_seconds / max(1, self.config.pool_size))
                raise RequestError(429, f"busy: {self.in_flight} programs admitted, room for "
                                        f"{self.service_config.queue}", "",
                                   {"Retry-After": str(min(60, max(1, wait)))})
            self.in_flight += n
        futures = []
        try:
            for item in items:
                future = self.pool.submit(item.program, item.tests, item.entry_point,
                                          timeout_s=item.timeout_s, memory_mb=item.memory_mb)
                future.add_done_callback(self._finished)
                futures.append(future)
        except BaseException:
            with self.lock:
                self.in_flight -= n - len(futures)
            raise
        return futures

    def _finished(self, future: Future) -> None:
        with self.lock:
            self.in_flight -= 1
            self.last_finished = time.monotonic()
        if future.exception() is None:
            result = future.result()
            self.metrics.finished(result)
            self._job_seconds = 0.9 * self._job_seconds + 0.1 * result.duration_s


_BUSY = json.dumps({"error": "too many connections", "field": ""}).encode()
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, service: SandboxService):
        self.service = service
        self.slots = threading.BoundedSemaphore(service.service_config.max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):  # too many connections: answer and hang up
            with contextlib.suppress(OSError):
                request.sendall(BUSY_RESPONSE)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"   # an unparseable request still gets a status line
    server_version = f"diffucoder-sandbox/{__version__}"
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.service.service_config.read_timeout_s
        super().setup()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """Silent: one line per request would drown the pod's log; /metrics counts responses."""

    def _send(self, status: int, payload, content_type: str = "application/json",
              headers: dict | None = None, route: str = "") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.server.service.metrics.responded(route or "other", status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (bad request line, unknown method, header too long) as JSON."""
        self.close_connection = True
        field = "method" if code == 501 else "request"
        text = message or HTTPStatus(code).phrase
        self._send(code, {"error": text, "field": field}, headers={"Connection": "close"})

    def _error(self, err: RequestError, route: str) -> None:
        self._send(err.status, {"error": err.message, "field": err.field}, headers=err.headers, route=route)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        service = self.server.service
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, {"status": "ok"}, route=path)
        elif path == "/readyz":
            ready = service.ready
            why = "ready" if ready else ("draining" if service.draining else service.failure or "starting")
            self._send(200 if ready else 503, {"ready": ready, "status": why}, route=path)
        elif path == "/v1/info":
            self._send(200, service.info(), route=path)
        elif path == "/metrics":
            text = service.metrics.render(service.gauges(), service.isolation)
            self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8", route=path)
        elif path in ("/v1/run", "/v1/batch"):
            self._error(RequestError(405, "use POST", "method", {"Allow": "POST"}), path)
        else:
            self._error(RequestError(404, f"no route {path[:100]!r}", "path"), "other")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/run", "/v1/batch"):
            self.close_connection = True  # the body was not read
            self._error(RequestError(404, f"no route {path[:100]!r}", "path"), "other")
            return
        try:
            body = parse_body(self._read_body())
            self._send(200, self.server.service.run_request(body, batch=path == "/v1/batch"), route=path)
        except RequestError as err:
            self._error(err, path)
        except SandboxError as err:  # the pool refused (closed while draining)
            self._error(RequestError(503, str(err), "", {"Retry-After": "2"}), path)
        except (socket.timeout, ConnectionError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - a bug must answer 500, never kill the server
            self._error(RequestError(500, f"internal error: {type(err).__name__}: {err}"[:300]), path)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length, not chunked", "Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise RequestError(411, "a Content-Length header (a number) is required", "Content-Length")
        size, limit = int(length), self.server.service.service_config.max_body_mb << 20
        if size > limit:
            self.close_connection = True  # not read: the connection cannot be reused
            raise RequestError(413, f"body of {size} bytes exceeds the limit of {limit}", "body")
        data = self.rfile.read(size)
        if len(data) < size:
            self.close_connection = True
            raise RequestError(400, f"body ended after {len(data)} of {size} bytes", "body")
        return data


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# A job can send a stop signal and be finished (and gone) before this process takes the signal,
# the more so on a loaded machine: for this long after the last program finished, a signal from a
# process that no longer exists still counts as possibly a job's.
JOB_SIGNAL_GRACE_S = 5.0


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def stop_requested(sender: int, busy: bool) -> tuple[bool, str]:
    """Whether a stop signal sent by ``sender`` (its pid; 0 = from outside this PID namespace: the
    kubelet, a terminal) counts, and why. Without root a job shares our uid and could signal us:
    a signal from one of our descendants never stops the service, nor one from a process already
    gone while jobs run or have just run (``busy``: it may have been a job, killed since)."""
    if sender == 0:
        return True, "from outside this PID namespace"
    pid, me = sender, os.getpid()
    for _ in range(256):
        parent = _parent_of(pid)
        if parent is None:
            if pid != sender:
                return True, f"from pid {sender}"
            return (not busy), (f"from pid {sender}, gone" + (" while jobs ran: it may have been one; "
                                                              "send it again" if busy else ""))
        if parent == me:
            return False, f"from pid {sender}, one of the jobs"
        if parent <= 1:
            return True, f"from pid {sender}"
        pid = parent
    return False, f"from pid {sender}, too deep to trace"


def serve(sandbox_config: SandboxConfig, config: ServiceConfig, stream=sys.stderr) -> int:
    """Run the service until SIGTERM / SIGINT, then drain (``diffucoder sandbox serve``)."""
    # Not dumpable: a job that shares our uid (layers without root) cannot ptrace this process
    # or read its memory or /proc/<pid>/environ. Stop signals are blocked in every thread and
    # taken here with their sender, so a job cannot stop the service (see stop_requested).
    prctl(PR_SET_DUMPABLE, 0)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return _serve_until_stopped(sandbox_config, config, stream)
    finally:   # a caller in the same process (a test, an embedding) gets its signals back
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _serve_until_stopped(sandbox_config: SandboxConfig, config: ServiceConfig, stream) -> int:
    service = SandboxService(sandbox_config, config).start()
    print(f"diffucoder sandbox service on {service.url} ({service.config.pool_size} workers, "
          f"isolation {service.isolation}, queue {config.queue})", file=stream, flush=True)
    try:
        service.wait_ready()
    except SandboxError as err:
        print(f"diffucoder sandbox serve: error: {err}", file=stream, flush=True)
        service.stop(drain_s=0)
        return 1
    print("ready", file=stream, flush=True)
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        with service.lock:
            busy = (service.in_flight > 0
                    or time.monotonic() - service.last_finished < JOB_SIGNAL_GRACE_S)
        stop, why = stop_requested(info.si_pid, busy)
        name = signal.Signals(info.si_signo).name
        if stop:
            break
        print(f"ignored {name} {why}", file=stream, flush=True)
    print(f"draining ({name} {why})", file=stream, flush=True)
    service.stop()
    return 0
