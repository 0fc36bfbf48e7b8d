"""The server process: KServe's ``ModelServer`` with the OpenAI routes, batching and a draining SIGTERM.

    from diffucoder.serving.server import serve
    code = serve("/mnt/models", cfg, host="0.0.0.0", port=8080)   # blocks until SIGTERM/SIGINT

One process, one port: KServe's v1/v2 routes and health checks, ``/metrics``, and
``/openai/v1/...``. ``DiffucoderServer.start`` does what ``ModelServer.start`` does for
one model over REST (no gRPC), but binds to ``host`` (KServe's own start binds 0.0.0.0),
loads the model in the background and shuts down in two phases.

Start-up: the port is bound first, then the model loads in a background thread (a 7B
model takes minutes). Meanwhile ``/v2/health/live`` answers 200 (the kubelet's liveness
probe leaves the pod alone), ``/v2/health/ready`` and ``GET /v1/models/<name>`` answer 503
(KServe's readiness convention: not ready until the model is loaded), and every generation
route answers 503 saying the model is loading. Once the weights, tokenizer and batcher are
all in place the model turns ready. If loading fails, the server stops and ``serve``
returns 1 with the reason on stderr, so the pod restarts with the error in its log.

Shutdown: on the first SIGTERM (or SIGINT) readiness turns 503, new generation requests
get 503 + Retry-After, queued and running ones finish (at most ``shutdown_grace_s``); then
uvicorn stops, letting responses finish writing. A second signal stops at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time

import uvicorn

from diffucoder.serving.config import ServeConfig
from diffucoder.serving.http import install_handlers, install_routes
from diffucoder.serving.kserve_compat import import_kserve
from diffucoder.serving.model import DiffucoderModel
from diffucoder.serving.openai_routes import openai_router
from diffucoder.serving.source import check_model_location

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
        self.load_error = ""               # set when loading failed: serve() then returns 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None
        self._activate_task: asyncio.Task | None = None
        self.http: _DrainingUvicorn | None = None

    def start(self, models: list | None = None) -> None:
        model = self.model
        self.register_model(model)           # registered while loading: KServe says "not ready"
        app = kserve.model_server.app
        install_routes(app, model)                               # ahead of KServe's routes
        app.include_router(openai_router(model))
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
        from kserve.protocol.rest.server import RESTServer
        RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane,
                   self.model_repository_extension, self.http_port).create_application()
        install_handlers(app, model, self.cfg.limits.body_bytes)  # after: KServe set its own handlers
        config = uvicorn.Config(app, host=self.host, port=self.http_port, log_config=None, loop="asyncio",
                                lifespan="off", access_log=self.cfg.access_log, timeout_keep_alive=65,
                                timeout_graceful_shutdown=max(1, min(5, int(self.cfg.shutdown_grace_s))))
        self.http = _DrainingUvicorn(config, self._signalled, self._listening)
        asyncio.run(self._serve_all())

    def _listening(self, addresses) -> None:
        """The port is bound: say where, then start loading the model."""
        for host, port, *_ in addresses:
            shown = f"[{host}]" if ":" in host else host
            print(f"{LISTENING} http://{shown}:{port} (model {self.model.name!r}, loading)", flush=True)
        # A daemon thread, not the loop's executor: asyncio.run() would wait for a load still
        # running when a SIGTERM stops the server.
        threading.Thread(target=self._load, name="diffucoder-load", daemon=True).start()

    def _load(self) -> None:
        """Background thread: the blocking part of loading, then hand over to the loop."""
        try:
            self.model.load_weights()
        except BaseException as err:  # anything (a download, OOM, a bad checkpoint) ends the server
            log.error("loading model %r from %s failed", self.model.name, self.model.location, exc_info=err)
            self._to_loop(self._load_failed, f"{type(err).__name__}: {err}")
            return
        self._to_loop(self._begin_activate)

    def _to_loop(self, callback, *args) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped while the model loaded
            self._loop.call_soon_threadsafe(callback, *args)

    def _begin_activate(self) -> None:
        self._activate_task = asyncio.ensure_future(self._activate())

    async def _activate(self) -> None:
        if self.draining:  # a SIGTERM came while loading: nothing left to serve
            return
        try:
            await self.model.activate()
        except Exception as err:
            log.error("starting model %r failed", self.model.name, exc_info=err)
            self._load_failed(f"{type(err).__name__}: {err}")
            return
        print(f"diffucoder serve: model {self.model.name!r} ready after "
              f"{time.monotonic() - self.model.created:.1f} s", flush=True)

    def _load_failed(self, reason: str) -> None:
        self.load_error = self.model.load_error = reason
        self.http.should_exit = True

    async def _serve_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self.http.serve()
        finally:
            if self.model.batcher is not None:
                await self.model.batcher.close()
            self.model.stop()

    def _signalled(self, sig) -> None:
        # In a signal handler: hand over to the loop (thread-safe wake-up), nothing else.
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        """Refuse new work, finish what was admitted (up to the grace period), then stop uvicorn."""
        self.draining = self.model.draining = True
        self.model.ready = False
        batcher = self.model.batcher
        if batcher is None:
            log.info("stopping while the model was still loading")
        else:
            log.info("draining: %d queued, %d decoding", batcher.waiting, batcher.decoding)
            batcher.begin_drain()
            if not await batcher.drained(self.cfg.shutdown_grace_s):
                log.warning("grace period of %.0f s over: refusing what is still queued", self.cfg.shutdown_grace_s)
                await batcher.close()
        self.http.should_exit = True


def serve(location: str, cfg: ServeConfig, *, host: str, port: int) -> int:
    """Serve the model at ``location`` (directory or artifact URI) until told to stop; the exit
    code: 0 after a SIGTERM, 1 if the model could not be loaded (the reason is on stderr)."""
    check_model_location(location)  # bad input fails here, before anything binds
    server = DiffucoderServer(DiffucoderModel(cfg.model_name, location, cfg), cfg, host=host, port=port)
    server.start()
    if server.load_error:
        print(f"diffucoder serve: cannot serve model {cfg.model_name!r} from {location}: {server.load_error}",
              file=sys.stderr, flush=True)
        return 1
    print("diffucoder serve: stopped", file=sys.stderr, flush=True)
    return 0
