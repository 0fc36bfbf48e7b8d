"""The server process: KServe's ``ModelServer`` with the OpenAI routes, batching and a draining SIGTERM.

    from diffucoder.serving.server import serve
    serve("/mnt/models", cfg, host="0.0.0.0", port=8080)     # blocks until SIGTERM/SIGINT

One process, one port: KServe's v1/v2 routes and health checks, ``/metrics``, and
``/openai/v1/...``. ``DiffucoderServer.start`` does what ``ModelServer.start`` does for
one model over REST (no gRPC), but binds to ``host`` (KServe's own start binds 0.0.0.0)
and shuts down in two phases. On the first SIGTERM (or SIGINT): readiness turns 503,
new generation requests get 503 + Retry-After, queued and running ones finish (at most
``shutdown_grace_s``); then uvicorn stops, letting responses finish writing. A second
signal stops at once.
"""
from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn

from diffucoder.errors import DiffucoderError
from diffucoder.serving.config import ServeConfig
from diffucoder.serving.http import install_handlers, install_routes
from diffucoder.serving.kserve_compat import import_kserve
from diffucoder.serving.model import DiffucoderModel
from diffucoder.serving.openai_routes import openai_router

kserve = import_kserve()
log = logging.getLogger(__name__)
LISTENING = "diffucoder serve: listening on"   # the line smoke tests and scripts wait for


class _DrainingUvicorn(uvicorn.Server):
    """uvicorn, but the first exit signal asks for a drain instead of stopping."""

    def __init__(self, config: uvicorn.Config, on_first_signal, on_started):
        super().__init__(config)
        self._on_first_signal, self._on_started, self._signalled = on_first_signal, on_started, False

    def handle_exit(self, sig, frame) -> None:
        if self._signalled:
            return super().handle_exit(sig, frame)
        self._signalled = True
        self._on_first_signal(sig)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started([sock.getsockname() for server in self.servers for sock in server.sockets])


class DiffucoderServer(kserve.ModelServer):
    def __init__(self, model: DiffucoderModel, cfg: ServeConfig, *, host: str, port: int):
        grace = int(cfg.shutdown_grace_s)
        super().__init__(http_port=port, enable_grpc=False, workers=1, enable_docs_url=False,
                         enable_latency_logging=False, grace_period=grace)
        self.model, self.cfg, self.host = model, cfg, host
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None
        self.http: _DrainingUvicorn | None = None

    def start(self, models: list | None = None) -> None:
        model = self.model
        if not model.ready:
            raise DiffucoderError(f"model {model.name!r} is not loaded")
        self.register_model(model)
        app = kserve.model_server.app
        install_routes(app, model, lambda: self.draining)       # ahead of KServe's routes
        app.include_router(openai_router(model))
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
        from kserve.protocol.rest.server import RESTServer
        RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane,
                   self.model_repository_extension, self.http_port).create_application()
        install_handlers(app, self.cfg.limits.body_bytes)        # after: KServe set its own handlers
        config = uvicorn.Config(app, host=self.host, port=self.http_port, log_config=None, loop="asyncio",
                                lifespan="off", access_log=self.cfg.access_log, timeout_keep_alive=65,
                                timeout_graceful_shutdown=max(1, min(5, int(self.cfg.shutdown_grace_s))))
        self.http = _DrainingUvicorn(config, self._signalled, self._announce)
        asyncio.run(self._serve_all())

    def _announce(self, addresses) -> None:
        for host, port, *_ in addresses:
            shown = f"[{host}]" if ":" in host else host
            print(f"{LISTENING} http://{shown}:{port} (model {self.model.name!r})", flush=True)

    async def _serve_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.model.batcher.start()
        try:
            await self.http.serve()
        finally:
            await self.model.batcher.close()
            self.model.stop()

    def _signalled(self, sig) -> None:
        # In a signal handler: hand over to the loop (thread-safe wake-up), nothing else.
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        """Refuse new work, finish what was admitted (up to the grace period), then stop uvicorn."""
        log.info("draining: %d queued, %d decoding", self.model.batcher.waiting, self.model.batcher.decoding)
        self.draining, self.model.ready = True, False
        self.model.batcher.begin_drain()
        if not await self.model.batcher.drained(self.cfg.shutdown_grace_s):
            log.warning("grace period of %.0f s over: refusing what is still queued", self.cfg.shutdown_grace_s)
            await self.model.batcher.close()
        self.http.should_exit = True


def serve(location: str, cfg: ServeConfig, *, host: str, port: int) -> int:
    """Load the model at ``location`` (directory or artifact URI) and serve until told to stop."""
    model = DiffucoderModel(cfg.model_name, location, cfg)
    model.load()
    DiffucoderServer(model, cfg, host=host, port=port).start()
    print("diffucoder serve: stopped", file=sys.stderr, flush=True)
    return 0
