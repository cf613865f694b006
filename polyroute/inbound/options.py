"""Per-request gateway options from `x-polyroute-*` headers, merged with the body's `polyroute` object.

One format, two carriers (docs/routing.md#per-request-control): a field set in the body object wins
over the same option in a header; headers fill in what the body left out. Values are checked here,
so a typo or a bad value is a 400 naming the header or field, never a silent default.

    x-polyroute-timeout: 20                 (seconds, the whole request: all attempts and waits)
    x-polyroute-retries: 1
    x-polyroute-fallbacks: false
    x-polyroute-models: gpt-4o, claude-sonnet
    x-polyroute-providers-allowed: openai, azure
    x-polyroute-providers-excluded: deepseek
    x-polyroute-max-price: 5                (USD per million tokens, blended for the request)
    x-polyroute-tags: team-a, batch
    x-polyroute-end-user: user-1234
    x-polyroute-sticky-key: conversation-42
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from polyroute.core import types as t
from polyroute.core.errors import InvalidRequest

PREFIX = b"x-polyroute-"

_LIST = "list"
_FLOAT = "float"
_INT = "int"
_BOOL = "bool"
_STR = "str"

# header suffix -> (RequestOptions field, kind)
HEADERS: dict[bytes, tuple[str, str]] = {
    b"timeout": ("timeout", _FLOAT),
    b"retries": ("retries", _INT),
    b"fallbacks": ("fallbacks", _BOOL),
    b"models": ("models", _LIST),
    b"providers-allowed": ("providers_allowed", _LIST),
    b"providers-excluded": ("providers_excluded", _LIST),
    b"max-price": ("max_price_per_million", _FLOAT),
    b"tags": ("tags", _LIST),
    b"end-user": ("end_user", _STR),
    b"sticky-key": ("sticky_key", _STR),
}

MAX_RETRIES = 10
MAX_LIST = 64
MAX_TEXT = 256

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse(name: str, kind: str, raw: str) -> Any:
    value = raw.strip()
    try:
        if kind == _FLOAT:
            return float(value)
        if kind == _INT:
            return int(value)
    except ValueError:
        raise InvalidRequest(f"header '{name}' must be a number, got {raw!r}", param=name) from None
    if kind == _BOOL:
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise InvalidRequest(f"header '{name}' must be true or false, got {raw!r}", param=name)
    if kind == _LIST:
        return [x.strip() for x in value.split(",") if x.strip()]
    return value


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, Any] | None:
    """Option fields found in `x-polyroute-*` headers (None when there are none: the usual case)."""
    found: dict[str, Any] | None = None
    n = len(PREFIX)
    for k, v in headers:
        if not k.startswith(PREFIX):
            continue
        spec = HEADERS.get(k[n:])
        name = k.decode("latin-1")
        if spec is None:
            known = ", ".join("x-polyroute-" + h.decode() for h in HEADERS)
            raise InvalidRequest(f"unknown header '{name}'; the request options are: {known}", param=name)
        field, kind = spec
        if found is None:
            found = {}
        found[field] = _parse(name, kind, v.decode("utf-8", "replace"))
    return found


def validate(opts: t.RequestOptions) -> None:
    """Reject values no deployment could honour (the message names the body field)."""
    if opts.timeout is not None and (not math.isfinite(opts.timeout) or opts.timeout <= 0):
        raise InvalidRequest("polyroute.timeout must be a positive number of seconds", param="polyroute.timeout")
    if opts.retries is not None and not 0 <= opts.retries <= MAX_RETRIES:
        raise InvalidRequest(f"polyroute.retries must be between 0 and {MAX_RETRIES}", param="polyroute.retries")
    mp = opts.max_price_per_million
    if mp is not None and (not math.isfinite(mp) or mp < 0):
        raise InvalidRequest(
            "polyroute.max_price_per_million must be a number >= 0 (USD per million tokens)",
            param="polyroute.max_price_per_million",
        )
    for field in ("models", "providers_allowed", "providers_excluded", "tags"):
        items = getattr(opts, field)
        if items is not None and len(items) > MAX_LIST:
            raise InvalidRequest(f"polyroute.{field} takes at most {MAX_LIST} items", param=f"polyroute.{field}")
    for field in ("end_user", "sticky_key"):
        v = getattr(opts, field)
        if v is not None and len(v) > MAX_TEXT:
            raise InvalidRequest(f"polyroute.{field} is longer than {MAX_TEXT} characters", param=f"polyroute.{field}")


def merge(body: t.RequestOptions | None, headers: Iterable[tuple[bytes, bytes]]) -> t.RequestOptions | None:
    """The request's options: the body object, completed by the headers, validated."""
    found = from_headers(headers)
    if found is None:
        if body is not None:
            validate(body)
        return body
    if body is not None:
        for field in body.__struct_fields__:
            v = getattr(body, field)
            if v is not None:
                found[field] = v
    opts = msgspec.convert(found, t.RequestOptions)
    validate(opts)
    return opts
