"""aiohttp.web pass-through proxy (low-level Server, no router), on uvloop."""

from __future__ import annotations

import argparse
import asyncio
import os

import clients
import uvloop
from aiohttp import web
from hotpath import JSON_URL, SSERewriter, build_response, build_upstream_body

CLIENT = os.environ.get("STACK_CLIENT", "aiohttp")


async def handler(request: web.BaseRequest) -> web.StreamResponse:
    body = await request.read()
    upstream = clients.get(CLIENT)
    new_body, sse_url = build_upstream_body(body)
    if sse_url is None:
        out = build_response(await upstream.post(JSON_URL, new_body))
        return web.Response(body=out, content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    rw = SSERewriter()
    async for chunk in upstream.stream(sse_url, new_body):
        data = rw.feed(chunk)
        if data:
            await resp.write(data)
    await resp.write_eof(rw.flush())
    return resp


async def main(host: str, port: int) -> None:
    server = web.Server(handler, access_log=None)
    runner = web.ServerRunner(server, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    uvloop.run(main(a.host, a.port))
