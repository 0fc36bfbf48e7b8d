"""Start-up as a pod sees it, over real HTTP: the port answers while the model loads, readiness
flips only once it is loaded, a failed load ends the process, and ``--model_name`` routes.

The slow load is real: the model is an ``s3://`` artifact whose download goes through a proxy
that holds every connection until the test opens it (``GatedProxy``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import time

import httpx
import pytest

from diffucoder.serving.cli import add_arguments
from diffucoder.serving.smoke import ServerProcess, server_command
from diffucoder.store import open_store
from serving_helpers import TEST_OVERRIDES, GatedProxy, direct_texts

pytestmark = pytest.mark.integration
NAME = "coder-r1"            # an InferenceService name other than the config's "diffucoder"
PROMPT = "def add(a, b):"


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def server(model: str, log_dir, *extra: str, env: dict | None = None) -> ServerProcess:
    command = server_command(model, overrides=TEST_OVERRIDES) + list(extra)
    return ServerProcess(command, log_dir / "server.log", env=env)


def status(http: httpx.Client, method: str, path: str, **kw) -> tuple[int, dict, dict]:
    response = http.request(method, path, **kw)
    return response.status_code, response.json(), dict(response.headers)


@pytest.fixture
def s3_model(served_model_dir, s3_uri) -> str:
    store = open_store(s3_uri)
    store.put_artifact("runs/r1/sft", served_model_dir, metadata={"kind": "model"})
    return store.uri("runs/r1/sft")


def child_env(s3_server, endpoint: str) -> dict[str, str]:
    """The server's environment: the test S3 server's keys, reached through ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFUCODER_S3", "AWS_", "MINIO_"))}
    return {**env, **s3_server.env(), "DIFFUCODER_S3_ENDPOINT": endpoint}


def test_port_answers_while_loading_then_readiness_flips(s3_model, s3_server, tmp_path, direct):
    upstream = int(s3_server.endpoint.rsplit(":", 1)[1])
    with GatedProxy(upstream) as gate:
        process = server(s3_model, tmp_path, f"--model_name={NAME}",
                         env=child_env(s3_server, f"http://127.0.0.1:{gate.port}"))
        url = process.start(timeout_s=120, wait_ready=False)   # bound; the download is held
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                wait_for(lambda: gate.held, 60, "the model download to reach the store")
                assert http.get("/v2/health/live").json() == {"live": True}
                code, body, _ = status(http, "GET", "/v2/health/ready")
                assert code == 503 and body["error"]["code"] == "model_loading"
                assert f"model {NAME!r} is still loading" in body["error"]["message"]
                assert status(http, "GET", f"/v1/models/{NAME}")[0] == 503
                for method, path, body_in in (
                        ("POST", f"/v1/models/{NAME}:predict", {"instances": [PROMPT]}),
                        ("POST", f"/v2/models/{NAME}/infer", {"inputs": [{"name": "text_input", "shape": [1],
                                                                          "datatype": "BYTES", "data": [PROMPT]}]}),
                        ("POST", "/openai/v1/completions", {"model": NAME, "prompt": PROMPT, "max_tokens": 4})):
                    code, body, headers = status(http, method, path, json=body_in)
                    assert (code, body["error"]["code"]) == (503, "model_loading"), (path, body)
                    assert int(headers["retry-after"]) >= 1
                assert process.process.poll() is None and "ready after" not in process.log_tail()

                gate.open()
                wait_for(lambda: http.get("/v2/health/ready").status_code == 200, 120, "readiness")
                assert "ready after" in process.log_tail()
                assert http.get(f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}
                expected = direct_texts(*direct, [PROMPT], max_new_tokens=4, steps=4)
                v1 = http.post(f"/v1/models/{NAME}:predict",
                               json={"instances": [PROMPT], "parameters": {"max_tokens": 4, "steps": 4}})
                assert v1.json() == {"predictions": expected}
                v2 = http.post(f"/v2/models/{NAME}/infer", json={
                    "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": [PROMPT]}],
                    "parameters": {"max_tokens": 4, "steps": 4}}).json()
                assert v2["model_name"] == NAME and v2["outputs"][0]["data"] == expected
                openai = http.post("/openai/v1/completions",
                                   json={"model": NAME, "prompt": PROMPT, "max_tokens": 4, "steps": 4}).json()
                assert openai["model"] == NAME and openai["choices"][0]["text"] == expected[0]
                assert [m["id"] for m in http.get("/openai/v1/models").json()["data"]] == [NAME]
                # the config's default name is not served under another name
                assert http.get("/v1/models/diffucoder").status_code == 404
                assert http.post("/openai/v1/completions",
                                 json={"model": "diffucoder", "prompt": PROMPT}).status_code == 404
        finally:
            code = process.stop()
    assert code == 0, process.log_tail()


def test_sigterm_while_loading_stops_cleanly(s3_model, s3_server, tmp_path):
    upstream = int(s3_server.endpoint.rsplit(":", 1)[1])
    with GatedProxy(upstream) as gate:       # never opened: the load never finishes
        process = server(s3_model, tmp_path, env=child_env(s3_server, f"http://127.0.0.1:{gate.port}"))
        url = process.start(timeout_s=120, wait_ready=False)
        wait_for(lambda: gate.held, 60, "the model download to reach the store")
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 503
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=30) == 0, process.log_tail()
    assert "stopping while the model was still loading" in process.log_tail()


def test_a_model_that_cannot_be_fetched_ends_the_process(s3_server, s3_uri, tmp_path):
    process = server(f"{s3_uri}/runs/r1/nothing-here", tmp_path,
                     env=child_env(s3_server, s3_server.endpoint))
    process.start(timeout_s=120, wait_ready=False)        # it binds first...
    code = process.process.wait(timeout=120)              # ...then the load fails and it exits
    log = process.log_tail(60)
    assert code == 1, log
    assert log.index("listening on") < log.index(f"cannot serve model 'diffucoder' from {s3_uri}/runs/r1/nothing-here")
    assert "cannot fetch the model artifact" in log


def test_a_half_loadable_model_is_never_served(served_model_dir, s3_server, s3_uri, tmp_path):
    """The tokenizer loads, the weights do not: readiness is 503 while loading, never 200, and
    the process exits 1 with the reason."""
    broken = tmp_path / "model"
    shutil.copytree(served_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    store = open_store(s3_uri)
    store.put_artifact("runs/r1/broken", broken, metadata={"kind": "model"})
    upstream = int(s3_server.endpoint.rsplit(":", 1)[1])
    with GatedProxy(upstream) as gate:
        process = server(store.uri("runs/r1/broken"), tmp_path,
                         env=child_env(s3_server, f"http://127.0.0.1:{gate.port}"))
        url = process.start(timeout_s=120, wait_ready=False)
        wait_for(lambda: gate.held, 60, "the model download to reach the store")
        seen = {httpx.get(f"{url}/v2/health/ready", timeout=10).status_code}
        gate.open()
        while process.process.poll() is None:
            try:
                seen.add(httpx.get(f"{url}/v2/health/ready", timeout=5).status_code)
            except httpx.HTTPError:
                seen.add("closed")
            time.sleep(0.02)
    log = process.log_tail(80)
    assert process.process.returncode == 1, log
    assert 200 not in seen and 503 in seen, seen
    assert "cannot serve model 'diffucoder'" in log and "ready after" not in log


@pytest.mark.parametrize("spelling", [["--model_name=isvc-a"], ["--model_name", "isvc-a"],
                                      ["--model-name", "isvc-a"], ["--model-name=isvc-a"]])
def test_both_model_name_spellings_parse(spelling):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "/mnt/models", *spelling, "batching.max_batch_size=2"])
    assert args.model_name == "isvc-a" and args.overrides == ["batching.max_batch_size=2"]
