"""Raw ASGI pass-through proxy (no framework), served by uvicorn or granian's ASGI interface."""

from __future__ import annotations

import os
from typing import Any

import clients
from hotpath import JSON_URL, SSERewriter, build_response, build_upstream_body

CLIENT = os.environ.get("STACK_CLIENT", "aiohttp")
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    upstream = clients.get(CLIENT)
    new_body, sse_url = build_upstream_body(body)
    if sse_url is None:
        out = build_response(await upstream.post(JSON_URL, new_body))
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": out})
        return
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    rw = SSERewriter()
    async for chunk in upstream.stream(sse_url, new_body):
        data = rw.feed(chunk)
        if data:
            await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": rw.flush()})
