"""Typed reads of request fields: each bad value is a ``RequestError`` naming the field.

    max_tokens = read_int(body, "max_tokens", lo=1, hi=512, default=64)
    top_p = read_float(body, "top_p", lo=0.0, hi=1.0, default=0.95, lo_open=True)
    stop = read_stop(body, "stop", limit=4)             # tuple of non-empty strings

``where`` prefixes the field in messages and in ``param`` (``instances[2].max_tokens``).
JSON's ``true`` is not a number here, and ``4.0`` is not an integer: both are 400s.
"""
from __future__ import annotations

import json
import math
from typing import Any

from diffucoder.serving.errors import RequestError

MISSING = object()  # a field that was not sent (no value to show)


def _name(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def bad(where: str, name: str, why: str, value: Any = MISSING, status: int = 400,
        code: str = "invalid_value") -> RequestError:
    param = _name(where, name)
    shown = "" if value is MISSING else f", got {_shown(value)}"
    return RequestError(f"'{param}': {why}{shown}", param=param, status=status, code=code)


def read_int(body: dict, name: str, *, lo: int, hi: int, default: Any, where: str = "") -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(where, name, f"must be an integer in [{lo}, {hi}]", value)
    if not lo <= value <= hi:
        raise bad(where, name, f"must be in [{lo}, {hi}]", value)
    return value


def read_float(body: dict, name: str, *, lo: float, hi: float, default: Any, where: str = "",
               lo_open: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(where, name, f"must be a number in {interval}", value)
    if value < lo or value > hi or (lo_open and value == lo):
        raise bad(where, name, f"must be in {interval}", value)
    return float(value)


def read_bool(body: dict, name: str, *, default: bool, where: str = "") -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(where, name, "must be true or false", value)
    return value


def read_choice(body: dict, name: str, *, choices: tuple[str, ...], default: Any, where: str = "") -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        raise bad(where, name, f"must be one of {list(choices)}", value)
    return value


def read_stop(body: dict, name: str, *, limit: int, where: str = "") -> tuple[str, ...]:
    """OpenAI's ``stop``: null, a string or a list of strings, each non-empty."""
    value = body.get(name)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise bad(where, name, "must be a non-empty string or a list of non-empty strings", value)
    if len(items) > limit:
        raise bad(where, name, f"at most {limit} stop strings", value)
    return tuple(items)


def reject_unsupported(body: dict, neutral: dict[str, tuple], where: str = "") -> None:
    """Fail on OpenAI fields this server does not implement, unless given at their neutral value."""
    for name, allowed in neutral.items():
        if name in body and not any(body[name] == ok and type(body[name]) is type(ok) for ok in allowed):
            shown = " or ".join(_shown(ok) for ok in allowed)
            raise bad(where, name, f"not supported by this server (only {shown})", body[name])


def parse_json_body(raw: bytes) -> dict:
    """The request body as a JSON object; NaN/Infinity, bad UTF-8 and deep nesting are 400s."""
    def no_constants(token: str):
        raise ValueError(f"{token} is not valid JSON")

    if not raw.strip():
        raise RequestError("the request body is empty; send a JSON object", param="body", code="invalid_json")
    try:
        body = json.loads(raw, parse_constant=no_constants)
    except RecursionError:
        raise RequestError("the request body is nested too deeply", param="body", code="invalid_json") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(f"the request body is not valid JSON: {str(err)[:200]}", param="body",
                           code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}", param="body",
                           code="invalid_json")
    return body
