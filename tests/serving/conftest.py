"""Fixtures for the server tests: one micro model directory and one running server per session."""
from __future__ import annotations

import httpx
import pytest

from serving_helpers import micro_model_dir, start_server


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory):
    return micro_model_dir(tmp_path_factory.mktemp("serving") / "micro")


@pytest.fixture(scope="session")
def server(served_model_dir, tmp_path_factory):
    """A running ``diffucoder serve`` (subprocess on 127.0.0.1) shared by the route tests."""
    process = start_server(served_model_dir, tmp_path_factory.mktemp("serving-logs"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def url(server) -> str:
    return server.url


@pytest.fixture(scope="session")
def http(url):
    with httpx.Client(base_url=url, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="session")
def direct(served_model_dir):
    """(model, tokenizer) loaded in the test process, for direct sampler calls."""
    from diffucoder.model import load_model
    from diffucoder.sampling import load_tokenizer
    return load_model(served_model_dir).eval(), load_tokenizer(served_model_dir)
