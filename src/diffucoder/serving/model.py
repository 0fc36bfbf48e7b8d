"""``DiffucoderModel``: the KServe model — loads a model directory and serves v1/v2 through the batcher.

    model = DiffucoderModel("diffucoder", "/mnt/models", cfg)    # or a file:// / s3:// artifact URI
    model.load_weights()          # blocking (any thread): download if a URI, weights, tokenizer
    await model.activate()        # in the server's loop: the batcher starts, then model.ready
    # KServe v1:  POST /v1/models/diffucoder:predict
    #   {"instances": ["def add(a, b):", {"messages": [{"role": "user", "content": "Write f."}]}],
    #    "parameters": {"max_tokens": 64, "steps": 32}}      ->  {"predictions": ["...", "..."]}
    # KServe v2:  POST /v2/models/diffucoder/infer
    #   {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["def f():"]}],
    #    "parameters": {"max_tokens": 64}}   ->  outputs [{"name": "text_output", "datatype": "BYTES", ...}]

The OpenAI-style routes (``openai_routes``) share the parser and the batcher, so every
route's requests are batched together.

Readiness is KServe's: ``model.ready`` turns true only when the weights, the tokenizer and the
batcher are all in place, so a half-loaded model never serves. Until then (and while the
server drains) every generation route answers 503 with ``model.unavailable()``'s reason.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from diffucoder.serving.batcher import Batcher
from diffucoder.serving.config import ServeConfig
from diffucoder.serving.engine import Engine
from diffucoder.serving.errors import RequestError, ShuttingDown
from diffucoder.serving.fields import bad, parse_json_body
from diffucoder.serving.kserve_compat import import_kserve
from diffucoder.serving.requests import ParsedRequest, RequestParser
from diffucoder.serving.source import resolve_model_dir

kserve = import_kserve()
log = logging.getLogger(__name__)
V2_INPUT, V2_OUTPUT = "text_input", "text_output"


class DiffucoderModel(kserve.Model):
    def __init__(self, name: str, location: str, cfg: ServeConfig):
        super().__init__(name)
        self.location, self.cfg = location, cfg
        self.decoder: Engine | None = None     # not `engine`: kserve's Model uses that name
        self.parser: RequestParser | None = None
        self.batcher: Batcher | None = None
        self.draining = False                  # set by the server on SIGTERM
        self.load_error = ""                   # why loading failed (the server then exits)
        self.created = time.monotonic()
        self._cleanup = lambda: None

    def load_weights(self) -> None:
        """Fetch (for a URI), then load the weights and the tokenizer. Blocking; any thread.
        The model is not ready afterwards: ``activate`` (in the event loop) makes it so."""
        import torch
        model_dir, self._cleanup = resolve_model_dir(self.location, self.cfg.cache_dir)
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        self.decoder = Engine.load(model_dir, self.cfg)
        self.parser = RequestParser(self.cfg, self.decoder)
        log.info("loaded %s from %s (%s, %s) in %.1f s", self.name, model_dir, self.cfg.device, self.cfg.dtype,
                 time.monotonic() - self.created)

    def load(self) -> bool:
        """KServe's synchronous hook: loads the weights but, without the event loop, cannot start
        the batcher, so the model is NOT ready after it (``activate`` finishes the job)."""
        self.load_weights()
        return self.ready

    async def activate(self) -> None:
        """Start the batcher in the running loop, then turn ready (nothing is served before)."""
        if self.decoder is None or self.parser is None:
            raise RuntimeError(f"model {self.name!r}: activate() before load_weights()")
        batching = self.cfg.batching
        self.batcher = Batcher(self.decoder.generate, max_batch_size=self.cfg.max_batch_size,
                               max_wait_s=self.cfg.max_wait_s, queue_size=batching.queue_size,
                               retry_after_s=batching.retry_after_s,
                               stepper=self.decoder if batching.enabled and batching.continuous else None)
        await self.batcher.start()
        self.ready = True

    def unavailable(self) -> RequestError:
        """The 503 for a request that came while the model is not ready, saying why."""
        retry = self.cfg.batching.retry_after_s
        if self.draining:
            return ShuttingDown(retry)
        if self.load_error:
            return RequestError(f"model {self.name!r} failed to load ({self.load_error}); the server is stopping",
                                status=503, code="load_failed", type="service_unavailable", retry_after=retry)
        return RequestError(f"model {self.name!r} is still loading ({time.monotonic() - self.created:.0f} s so "
                            "far); retry when GET /v2/health/ready answers 200", status=503, code="model_loading",
                            type="service_unavailable", retry_after=max(retry, 5))

    def require_ready(self) -> None:
        if not self.ready:
            raise self.unavailable()

    def start(self) -> None:
        """KServe calls this at registration; readiness stays what ``activate`` made it."""

    def stop(self) -> None:
        self.ready = False
        self._cleanup()

    def validate(self, payload):
        """Checks happen in ``predict``, where a bad field is named; KServe's own would not name it."""
        return payload

    async def generate(self, parsed: ParsedRequest) -> list:
        self.require_ready()
        return await self.batcher.submit(parsed.requests)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.require_ready()  # KServe's routes check readiness first; this also covers direct calls
        if isinstance(payload, kserve.InferRequest):
            return await self._predict_v2(payload)
        if isinstance(payload, (bytes, bytearray)):  # KServe leaves a non-JSON Content-Type undecoded
            payload = parse_json_body(bytes(payload))
        if not isinstance(payload, dict):
            raise RequestError("the request body must be a JSON object (Content-Type: application/json)",
                               param="body", code="invalid_json")
        parsed = self.parser.instances(payload.get("instances"), payload.get("parameters"))
        return {"predictions": [completion.text for completion in await self.generate(parsed)]}

    async def _predict_v2(self, request) -> Any:
        inputs = request.inputs or []
        named = [i for i, tensor in enumerate(inputs) if tensor.name == V2_INPUT]
        if len(named) != 1:
            raise bad("", "inputs", f"give exactly one input named {V2_INPUT!r} (BYTES, the prompts)")
        at = f"inputs[{named[0]}]"
        tensor = inputs[named[0]]
        if tensor.datatype != "BYTES":
            raise bad(at, "datatype", "must be BYTES", tensor.datatype)
        prompts = _flatten(tensor.data)
        if prompts is None:
            raise bad(at, "data", "must be a (nested) list of prompt strings")
        parsed = self.parser.instances(prompts, request.parameters, where=f"{at}.data")
        texts = [completion.text for completion in await self.generate(parsed)]
        output = kserve.InferOutput(name=V2_OUTPUT, shape=[len(texts)], datatype="BYTES", data=texts)
        return kserve.InferResponse(response_id=request.id or uuid.uuid4().hex, model_name=self.name,
                                    infer_outputs=[output])


def _flatten(data: Any) -> list[str] | None:
    """A v2 BYTES tensor's strings, row-major; None if anything in it is not a string."""
    if isinstance(data, str):
        return [data]
    if not isinstance(data, list):
        return None
    out: list[str] = []
    for item in data:
        flat = _flatten(item)
        if flat is None:
            return None
        out.extend(flat)
    return out
