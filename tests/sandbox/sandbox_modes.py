"""The two ways a stage reaches the sandbox, for suites that must hold in both.

    @pytest.fixture(scope="module", params=MODES)
    def sandbox(request):
        with sandbox_in(request.param, SandboxConfig(workers=1)) as sb:
            yield sb        # sb.run / sb.run_many / sb.submit; sb.pool: the Sandbox running the jobs

``in-process``: a ``Sandbox`` pool in this process. ``service``: the same pool behind
``SandboxService`` on 127.0.0.1 (in this process, so a test can look at its workers), reached
by a ``SandboxClient`` over HTTP: every program and verdict crosses the wire.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from diffucoder.sandbox import Sandbox, SandboxClient, SandboxConfig
from diffucoder.sandbox.service import SandboxService, ServiceConfig

MODES = ["in-process", "service"]


@dataclass
class Harness:
    runner: Any            # Sandbox or SandboxClient: what the tests submit to
    pool: Sandbox          # the pool that runs the programs (the service's own, in service mode)
    mode: str
    service: SandboxService | None = None

    def run(self, *args, **kwargs):
        return self.runner.run(*args, **kwargs)

    def run_many(self, *args, **kwargs):
        return self.runner.run_many(*args, **kwargs)

    def submit(self, *args, **kwargs):
        return self.runner.submit(*args, **kwargs)

    @property
    def isolation(self) -> str:
        """The layer the jobs run under (the service's own layer, in service mode)."""
        return self.pool.isolation

    @property
    def _workers(self):
        return self.pool._workers


@contextlib.contextmanager
def sandbox_in(mode: str, cfg: SandboxConfig):
    if mode == "in-process":
        with Sandbox(cfg) as pool:
            yield Harness(pool, pool, mode)
        return
    service = SandboxService(cfg, ServiceConfig(host="127.0.0.1", port=0, min_isolation="none"))
    with service:
        assert service.wait_ready(60)
        with SandboxClient(service.url, cfg, retry_s=10) as client:
            yield Harness(client, service.pool, mode, service)
