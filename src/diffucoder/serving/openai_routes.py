"""OpenAI-style routes on the KServe app: ``/openai/v1/completions``, ``chat/completions``, ``models``.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/openai/v1", api_key="unused")
    text = client.completions.create(model="diffucoder", prompt="def add(a, b):", max_tokens=32,
                                     extra_body={"steps": 16, "alg": "entropy"}).choices[0].text
    for chunk in client.chat.completions.create(model="diffucoder", stream=True,
                                                messages=[{"role": "user", "content": "Write f."}]):
        print(chunk.choices[0].delta.content or "", end="") if chunk.choices else None

The diffusion fields (``steps``, ``alg``, ``alg_temp``) ride beside OpenAI's (``max_tokens``,
``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``). ``stream: true`` answers with
server-sent events: the text once decoded (a diffusion decode finishes all its tokens
together), then the finish reason, optionally usage, then ``[DONE]``.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from diffucoder.serving.errors import RequestError, error_body
from diffucoder.serving.fields import parse_json_body
from diffucoder.serving.requests import ParsedRequest


def openai_router(model) -> APIRouter:
    """Routes bound to a ``DiffucoderModel`` (loaded or still loading: then they answer 503).
    The ``model`` field of a request must be the served name (``--model_name``)."""
    router = APIRouter(prefix="/openai/v1", tags=["OpenAI"])
    created = int(time.time())

    @router.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [{"id": model.name, "object": "model", "created": created,
                                            "owned_by": "diffucoder"}]}

    @router.post("/completions", response_model=None)
    async def completions(request: Request):
        model.require_ready()  # 503 while loading or draining: the parser needs the tokenizer
        parsed = model.parser.completion(parse_json_body(await request.body()))
        return await _answer(model, parsed, "text_completion", "cmpl")

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request):
        model.require_ready()
        parsed = model.parser.chat(parse_json_body(await request.body()))
        return await _answer(model, parsed, "chat.completion", "chatcmpl")

    return router


def _usage(completions) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in completions)
    completion = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choice(kind: str, index: int, text: str, finish: str | None, stream: bool) -> dict[str, Any]:
    if kind == "text_completion":
        return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
    if stream:
        return {"index": index, "delta": {"content": text} if text else {}, "finish_reason": finish,
                "logprobs": None}
    return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
            "logprobs": None}


async def _answer(model, parsed: ParsedRequest, kind: str, prefix: str):
    head = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model.name}
    texts = (lambda results: [(p if parsed.echo else "") + c.text for p, c in zip(parsed.prompts, results)])
    if not parsed.stream:
        results = await model.generate(parsed)
        choices = [_choice(kind, i, text, c.finish_reason, False) for i, (text, c) in
                   enumerate(zip(texts(results), results))]
        return JSONResponse({**head, "object": kind, "choices": choices, "usage": _usage(results)})
    # Admission (429/503) must happen before the 200 and the event stream start.
    waiting = model.batcher.admit(parsed.requests)
    chunk_kind = "text_completion" if kind == "text_completion" else "chat.completion.chunk"

    async def events() -> AsyncIterator[str]:
        def event(choices, **extra) -> str:
            return f"data: {json.dumps({**head, 'object': chunk_kind, 'choices': choices, **extra})}\n\n"

        if kind != "text_completion":  # the role first, as OpenAI does, before the decode ends
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                          "logprobs": None}])
        try:
            results = await model.batcher.wait(waiting)
        except RequestError as err:
            yield f"data: {json.dumps(error_body(err))}\n\n"
            yield "data: [DONE]\n\n"
            return
        for i, (text, result) in enumerate(zip(texts(results), results)):
            if text:
                yield event([_choice(kind, i, text, None, True)])
            yield event([_choice(kind, i, "", result.finish_reason, True)])
        if parsed.include_usage:
            yield event([], usage=_usage(results))
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
