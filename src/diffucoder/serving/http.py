"""The HTTP edges shared by every route: body limit, error bodies, and KServe routes we narrow.

    install_routes(app, model)                          # before KServe adds its routes
    install_handlers(app, model, body_limit=1 << 20)    # after: KServe sets its own handlers

- ``RequestGuardMiddleware``: a body over ``limits.body_bytes`` is a 413 before any route reads it;
  KServe's binary tensor extension (``inference-header-content-length``), whose parser fails
  with 5xx on malformed input, is refused with a 400 (prompts are text: send JSON).
- Exception handlers: every error is ``{"error": {"message", "type", "param", "code"}}``;
  FastAPI's schema errors (KServe v2's request model) become 400s naming the field.
- Routes registered ahead of KServe's: ``/v2/health/ready`` says 503 (and why) while the
  model loads and while draining (``/v2/health/live`` stays KServe's: 200 as long as the
  process serves HTTP, so a liveness probe never kills a server that is still loading);
  repository load/unload (which would let any client unload the model) are 403;
  model versions and ``:explain`` (KServe answers them with 5xx) are 404.
"""
from __future__ import annotations

import logging
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from diffucoder.serving.errors import RequestError, error_body, internal_error_body
from diffucoder.serving.metrics import MetricsMiddleware

log = logging.getLogger(__name__)


def error_response(err: RequestError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.status, headers=err.headers)


BINARY_HEADER = b"inference-header-content-length"


class RequestGuardMiddleware:
    """Reads the whole body (up to ``limit`` bytes) before the app does; more is a 413."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if any(name.lower() == BINARY_HEADER for name, _value in scope.get("headers", ())):
            err = RequestError("KServe's binary tensor extension is not supported here: send the prompts as "
                               "JSON (BYTES data)", param=BINARY_HEADER.decode(), code="unsupported")
            return await error_response(err)(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                err = RequestError(f"the request body is over {self.limit} bytes", param="body", status=413,
                                   code="body_too_large")
                return await error_response(err)(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = [False]

        async def replay():
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # afterwards: only http.disconnect

        await self.app(scope, replay, send)


_TYPE_TAGS = {"float", "int", "str", "bool", "bytes", "list", "dict"}


def _param_of(loc) -> str:
    """pydantic's error location as a field path: ``("body", "InferenceRequest", "inputs", 0, "shape")``
    -> ``inputs[0].shape`` (the model name and the union-member tags pydantic adds are dropped)."""
    parts = [part for part in loc[1:] if not (isinstance(part, str) and (part in _TYPE_TAGS or part[:1].isupper()))]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def install_handlers(app: FastAPI, model, body_limit: int) -> None:
    from diffucoder.serving.kserve_compat import import_kserve
    kserve_errors = import_kserve().errors
    app.add_middleware(RequestGuardMiddleware, limit=body_limit)
    app.add_middleware(MetricsMiddleware)  # outermost: sees the 413s too

    async def request_error(_request: Request, err: RequestError):
        if err.status >= 500 and err.status != 503:  # 503s are states (loading, draining), not faults
            log.error("request failed: %s", err.message)
        return error_response(err)

    async def schema_error(_request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        param = "body" if first.get("type") == "json_invalid" else _param_of(first.get("loc", ()))
        return error_response(RequestError(f"'{param}': {first.get('msg', 'invalid request')}", param=param))

    async def http_error(_request: Request, err: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return error_response(RequestError(str(err.detail), status=err.status_code, code=code))

    async def kserve_error(_request: Request, err: Exception):
        if isinstance(err, kserve_errors.ModelNotFound):
            return error_response(RequestError(str(err), param="model", status=404, code="model_not_found"))
        if isinstance(err, kserve_errors.ModelNotReady):
            if err.model_name == model.name:  # say why: loading, failed or draining
                return error_response(model.unavailable())
            return error_response(RequestError(str(err), status=503, code="not_ready",
                                               type="service_unavailable", retry_after=1))
        return error_response(RequestError(str(err), param="body"))  # InvalidInput: a body KServe cannot decode

    async def unexpected(_request: Request, err: Exception):
        log.error("unhandled error", exc_info=err)
        return JSONResponse(internal_error_body(), status_code=500)

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(RequestValidationError, schema_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind in (kserve_errors.InvalidInput, kserve_errors.ModelNotFound, kserve_errors.ModelNotReady):
        app.add_exception_handler(kind, kserve_error)
    app.add_exception_handler(Exception, unexpected)


def install_routes(app: FastAPI, model) -> None:
    async def ready():
        if model.draining or not model.ready:
            raise model.unavailable()
        return {"ready": True}

    def refuse(status: int, message: str, param: str | None, code: str):
        async def handler():
            raise RequestError(message, status=status, param=param, code=code)
        return handler

    app.add_api_route("/v2/health/ready", ready, methods=["GET"])
    for action in ("load", "unload"):
        app.add_api_route(f"/v2/repository/models/{{model_name}}/{action}", refuse(
            403, f"model repository {action} is disabled on this server", None, "forbidden"), methods=["POST"])
    for suffix, methods in (("", ["GET"]), ("/ready", ["GET"]), ("/infer", ["POST"])):
        app.add_api_route(f"/v2/models/{{model_name}}/versions/{{model_version}}{suffix}", refuse(
            404, "model versions are not supported; use /v2/models/<name>" + suffix, "model_version",
            "not_found"), methods=methods)
    app.add_api_route("/v1/models/{model_name}:explain", refuse(
        404, "this server has no explainer; use :predict", None, "not_found"), methods=["POST"])
