"""What operations cost each request: the ops policy (metrics, reload accounting), the access
middleware (request ids, one access line through the log queue), measured in-process.

    .venv/bin/python bench/ops/hot_path.py            # ~10 s
    .venv/bin/python bench/ops/hot_path.py -n 500000

Prints the process CPU time per request for each piece (all threads: the log writer thread's
formatting counts), the best of 5 runs of n iterations each. CPU time rather than wall time, so a
busy machine disturbs it less.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from polyroute.config.load import parse_config
from polyroute.core.context import Attempt, RequestContext
from polyroute.core.gateway import Gateway
from polyroute.core.types import ChatRequest, Message, Usage
from polyroute.ops import logs
from polyroute.ops.access import AccessMiddleware
from polyroute.ops.policy import OpsPolicy

CONFIG = """
providers:
  up: {type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: sk-bench-0123456789}
models:
  m: {deployments: [{provider: up, model: gpt-4o-mini}]}
"""


def context(stream: bool) -> RequestContext:
    ctx = RequestContext("req_bench", "openai")
    ctx.route = ctx.model_asked = "m"
    ctx.provider, ctx.deployment = "up", "m/up/gpt-4o-mini"
    ctx.usage = Usage(input_tokens=120, output_tokens=380)
    ctx.cost = 0.00042
    a = Attempt("m/up/gpt-4o-mini", "up")
    a.status = 200
    ctx.attempts = [a]
    ctx.stream = stream
    ctx.ttft = 0.21 if stream else None
    return ctx


def best(n: int, run: Callable[[int], Coroutine[Any, Any, None]], loop: asyncio.AbstractEventLoop) -> float:
    times = []
    for _ in range(5):
        t = time.process_time()
        loop.run_until_complete(run(n))
        drain()
        times.append((time.process_time() - t) / n * 1e6)
    return min(times)


def drain() -> None:
    """Wait until the log writer thread has written everything queued (its CPU is the cost too)."""
    for h in logs._handlers:
        q: Any = h.queue
        while q.qsize():
            time.sleep(0.001)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200_000)
    n = ap.parse_args().n
    loop = asyncio.new_event_loop()
    cfg = parse_config(CONFIG, "<bench>")
    policy = OpsPolicy(cfg)
    Gateway(cfg, "bench", [policy])
    assert policy.metrics is not None
    policy.metrics.set_models(["m"])
    req = ChatRequest(model="m", messages=[Message(role="user", content="x")])

    async def baseline(k: int) -> None:
        ctx = context(False)
        for _ in range(k):
            pass
        del ctx

    def policy_run(stream: bool) -> Callable[[int], Coroutine[Any, Any, None]]:
        async def run(k: int) -> None:
            ctx = context(stream)
            before, after = policy.before, policy.after
            for _ in range(k):
                await before(ctx, req)
                await after(ctx)

        return run

    # The access middleware around a handler that answers at once, with the access line going
    # through the real queue handler to a thread writing into memory.
    lg = logging.getLogger("polyroute.access")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    sink = io.StringIO()
    lg.addHandler(logs.make_handler("json", stream=sink))
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"req_1")]}
    body = {"type": "http.response.body", "body": b"{}"}

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send(body)

    async def send(msg: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "client": ("127.0.0.1", 1)}

    def middleware_run(log_requests: bool) -> Callable[[int], Coroutine[Any, Any, None]]:
        mw = AccessMiddleware(handler, log_requests=log_requests)

        async def run(k: int) -> None:
            for _ in range(k):
                await mw(scope, receive, send)

        return run

    async def handler_only(k: int) -> None:
        for _ in range(k):
            await handler(scope, receive, send)

    base = best(n, baseline, loop)
    rows = [
        ("ops policy before+after, non-streaming", best(n, policy_run(False), loop) - base),
        ("ops policy before+after, streaming (+TTFT)", best(n, policy_run(True), loop) - base),
        ("access middleware, no access line", best(n // 4, middleware_run(False), loop) - best(n // 4, handler_only, loop)),
        ("access middleware + access line (queued)", best(n // 4, middleware_run(True), loop) - best(n // 4, handler_only, loop)),
    ]
    for name, us in rows:
        print(f"{name:48s} {us:6.2f} us/request")
    policy.metrics.flush()
    while logs._listeners:
        logs._listeners.pop().stop()


if __name__ == "__main__":
    main()
