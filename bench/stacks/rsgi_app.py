"""Granian RSGI pass-through proxy."""

from __future__ import annotations

import os
from typing import Any

import clients
from hotpath import JSON_URL, SSERewriter, build_response, build_upstream_body

CLIENT = os.environ.get("STACK_CLIENT", "aiohttp")
JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


async def app(scope: Any, proto: Any) -> None:
    body = await proto()
    upstream = clients.get(CLIENT)
    new_body, sse_url = build_upstream_body(body)
    if sse_url is None:
        proto.response_bytes(200, JSON_HEADERS, build_response(await upstream.post(JSON_URL, new_body)))
        return
    tx = proto.response_stream(200, SSE_HEADERS)
    rw = SSERewriter()
    async for chunk in upstream.stream(sse_url, new_body):
        data = rw.feed(chunk)
        if data:
            await tx.send_bytes(data)
    tail = rw.flush()
    if tail:
        await tx.send_bytes(tail)
