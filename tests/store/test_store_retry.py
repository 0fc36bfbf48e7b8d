"""Retries: transient errors are retried with bounded backoff, client errors never."""
from __future__ import annotations

import http.server
import random
import threading

import pytest
import urllib3.exceptions
from minio.error import InvalidResponseError, ServerError

from diffucoder.store import Manifest, S3Credentials, S3Options, StoreError, open_store
from diffucoder.store.retry import RetryPolicy, is_transient

CREDS = S3Credentials("AKIARETRYTEST0000001", "retry-secret-0123456789abcdef0123456789")


def _flaky(failures: list[BaseException], result="done"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result
    return fn, calls


def test_transient_errors_are_retried_with_growing_bounded_waits():
    waits = []
    policy = RetryPolicy(attempts=4, base_delay=0.5, max_delay=0.8, sleep=waits.append)
    fn, calls = _flaky([ConnectionRefusedError(), TimeoutError(), ServerError("busy", 503)])
    assert policy.call(fn, "op") == "done"
    assert len(calls) == 4 and len(waits) == 3
    assert 0 <= waits[0] <= 0.5 and 0 <= waits[1] <= 0.8 and 0 <= waits[2] <= 0.8


def test_gives_up_after_the_attempt_budget_with_the_last_error():
    waits = []
    policy = RetryPolicy(attempts=3, base_delay=0.01, sleep=waits.append)
    fn, calls = _flaky([ConnectionResetError("a"), ConnectionResetError("b"),
                        ConnectionResetError("c")])
    with pytest.raises(ConnectionResetError, match="c"):
        policy.call(fn, "op")
    assert len(calls) == 3 and len(waits) == 2


@pytest.mark.parametrize("error", [
    InvalidResponseError(404, "text/xml", "<Error><Code>NoSuchKey</Code></Error>"),
    InvalidResponseError(403, "text/xml", "<Error><Code>AccessDenied</Code></Error>"),
    ValueError("a bug is not a network problem"),
    FileNotFoundError("local file"),
])
def test_client_errors_are_not_retried(error):
    fn, calls = _flaky([error])
    with pytest.raises(type(error)):
        RetryPolicy(attempts=5, sleep=lambda s: None).call(fn, "op")
    assert len(calls) == 1


@pytest.mark.parametrize("error, transient", [
    (ServerError("x", 500), True),
    (InvalidResponseError(503, "text/html", "<html>bad gateway</html>"), True),
    (InvalidResponseError(400, "text/xml", "<Error><Code>SlowDown</Code></Error>"), True),
    (InvalidResponseError(429, "text/plain", "slow down"), True),
    (urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.NewConnectionError(
        None, "refused")), True),
    (urllib3.exceptions.ProtocolError("connection dropped"), True),
    (urllib3.exceptions.SSLError("certificate verify failed"), False),
    (InvalidResponseError(400, "text/xml", "<Error><Code>InvalidArgument</Code></Error>"),
     False),
])
def test_transient_classification(error, transient):
    assert is_transient(error) is transient


class _ScriptedS3(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next scripted (status, code) or, when the script runs
    out, with the served body; counts requests."""
    script: list[tuple[int, str]] = []
    body = b""
    requests = 0

    def _answer(self):
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.script:
            status, code = self.script.pop(0)
            payload = f"<Error><Code>{code}</Code><Message>scripted</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
        else:
            payload = self.body
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_HEAD = _answer

    def log_message(self, *args):  # keep pytest output clean
        return


@pytest.fixture
def scripted_s3():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedS3)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _ScriptedS3.requests, _ScriptedS3.script = 0, []
    opts = S3Options(endpoint=f"http://127.0.0.1:{server.server_address[1]}",
                     region="us-east-1", attempts=3, backoff=0.01)
    yield _ScriptedS3, open_store("s3://bucket/p", s3=opts, credentials=CREDS)
    server.shutdown()
    server.server_close()


def test_5xx_and_throttling_over_http_are_retried_then_succeed(scripted_s3):
    handler, store = scripted_s3
    handler.body = Manifest.new("m", "20250101T000000Z-0123456789abcdef", {}).to_json()
    handler.script = [(503, "SlowDown"), (500, "InternalError")]
    assert store.read_manifest("m").version == "20250101T000000Z-0123456789abcdef"
    assert handler.requests == 3  # one client-level retry loop: no hidden urllib3 retries


def test_persistent_5xx_gives_up_after_the_attempt_budget(scripted_s3):
    handler, store = scripted_s3
    handler.script = [(503, "ServiceUnavailable")] * 10
    with pytest.raises(StoreError, match="failed after 3 attempts"):
        store.read_manifest("m")
    assert handler.requests == 3


@pytest.mark.parametrize("status, code", [(403, "AccessDenied"), (400, "InvalidRequest")])
def test_4xx_over_http_is_not_retried(scripted_s3, status, code):
    handler, store = scripted_s3
    handler.script = [(status, code)] * 10
    with pytest.raises(StoreError, match=code if status == 400 else "refused"):
        store.read_manifest("m")
    assert handler.requests == 1


def test_a_refused_connection_is_retried_then_reported(caplog):
    import socket
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    opts = S3Options(endpoint=f"http://127.0.0.1:{port}", region="us-east-1", attempts=3,
                     backoff=0.01)
    store = open_store("s3://bucket/p", s3=opts, credentials=CREDS)
    with caplog.at_level("WARNING", logger="diffucoder.store"):
        with pytest.raises(StoreError, match=f"127.0.0.1:{port}: failed after 3 attempts"):
            store.has_artifact("x")
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
    assert CREDS.secret_key not in caplog.text and CREDS.access_key not in caplog.text


def test_retries_leave_the_global_random_stream_alone():
    """A checkpoint records python's ``random`` state: retries of a flaky store must not move it."""
    random.seed(7)
    before = random.getstate()
    policy = RetryPolicy(attempts=4, base_delay=0.01, sleep=lambda s: None)
    fn, calls = _flaky([ConnectionRefusedError(), TimeoutError(), ServerError("busy", 503)])
    assert policy.call(fn, "op") == "done" and len(calls) == 4
    assert random.getstate() == before
