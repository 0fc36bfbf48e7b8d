"""``DiffucoderModel``: the KServe model — loads a model directory and serves v1/v2 through the batcher.

    model = DiffucoderModel("diffucoder", "/mnt/models", cfg)    # or a file:// / s3:// artifact URI
    model.load()                                                 # weights, tokenizer, batcher
    # KServe v1:  POST /v1/models/diffucoder:predict
    #   {"instances": ["def add(a, b):", {"messages": [{"role": "user", "content": "Write f."}]}],
    #    "parameters": {"max_tokens": 64, "steps": 32}}      ->  {"predictions": ["...", "..."]}
    # KServe v2:  POST /v2/models/diffucoder/infer
    #   {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["def f():"]}],
    #    "parameters": {"max_tokens": 64}}   ->  outputs [{"name": "text_output", "datatype": "BYTES", ...}]

The OpenAI-style routes (``openai_routes``) share the parser and the batcher, so every
route's requests are batched together.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from diffucoder.serving.batcher import Batcher
from diffucoder.serving.config import ServeConfig
from diffucoder.serving.engine import Engine
from diffucoder.serving.errors import RequestError
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
        self._cleanup = lambda: None

    def load(self) -> bool:
        import torch
        model_dir, self._cleanup = resolve_model_dir(self.location, self.cfg.cache_dir)
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        self.decoder = Engine.load(model_dir, self.cfg)
        self.parser = RequestParser(self.cfg, self.decoder)
        self.batcher = Batcher(self.decoder.generate, max_batch_size=self.cfg.max_batch_size,
                               max_wait_s=self.cfg.max_wait_s, queue_size=self.cfg.batching.queue_size,
                               retry_after_s=self.cfg.batching.retry_after_s)
        self.ready = True
        log.info("loaded %s from %s (%s, %s)", self.name, model_dir, self.cfg.device, self.cfg.dtype)
        return self.ready

    def start(self) -> None:
        """KServe calls this at registration; readiness stays what ``load`` made it."""

    def stop(self) -> None:
        self.ready = False
        self._cleanup()

    def validate(self, payload):
        """Checks happen in ``predict``, where a bad field is named; KServe's own would not name it."""
        return payload

    async def generate(self, parsed: ParsedRequest) -> list:
        return await self.batcher.submit(parsed.requests)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
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
