"""Decoding request bodies into wire schemas, with errors a client can act on."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from polyroute.core.errors import InvalidRequest

T = TypeVar("T")

_PATH = re.compile(r" - at `\$\.?(.*)`$")


def decode_body(body: bytes, schema: type[T]) -> T:
    if not body:
        raise InvalidRequest("request body is empty: send a JSON object")
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _PATH.search(text)
        param = m.group(1) if m else None
        message = text[: m.start()] if m else text
        if param:
            message = f"{message} at '{param}'"
        if message.startswith("Expected `object`") and not param:
            message = "request body must be a JSON object"
        raise InvalidRequest(f"invalid request: {message}", param=param or None) from None
    except msgspec.DecodeError as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}") from None
