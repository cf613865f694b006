"""CPU cost of routing per request: `python -m polyroute.routing.bench`.

Runs the planner and the attempt loop against providers that answer at once, and subtracts the
same loop calling the provider directly. Process CPU time, so other load on the machine does not
inflate the figure.
"""

from __future__ import annotations

import asyncio
import time

from polyroute.config.load import parse_config
from polyroute.core import types as t
from polyroute.core.catalog import Catalog
from polyroute.core.context import RequestContext
from polyroute.core.deployment import Deployment
from polyroute.routing import executor
from polyroute.routing.planner import Router

CONFIG = """
providers:
  a: {type: openai, api_key: k, base_url: "http://127.0.0.1:9/v1"}
  b: {type: openai, api_key: k, base_url: "http://127.0.0.1:9/v1"}
models:
  priority:
    deployments: [{provider: a, model: gpt-4o}, {provider: b, model: gpt-4o}]
  weighted-limits:
    strategy: weighted
    deployments:
      - {provider: a, model: gpt-4o, rpm: 100000000, tpm: 1000000000, context_window: 128000}
      - {provider: b, model: gpt-4o}
  latency-sticky-fallback:
    strategy: least-latency
    sticky: {by: messages}
    fallbacks: [priority]
    deployments: [{provider: a, model: gpt-4o, max_concurrency: 1000}, {provider: b, model: gpt-4o}]
"""

N = 20_000


async def main() -> None:
    catalog = Catalog(parse_config(CONFIG, "<bench>"))
    msg = t.Message(role="assistant", content=[t.TextPart(text="ok")])
    resp = t.ChatResponse(id="c", model="m", created=0, choices=[t.Choice(index=0, message=msg)],
                          usage=t.Usage(input_tokens=10, output_tokens=5))

    async def answer(req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        return resp

    for p in catalog.providers.values():
        p.chat = answer  # type: ignore[method-assign]
    router = Router(catalog)
    messages = [
        t.Message(role="system", content=[t.TextPart(text="You are helpful. " * 20)]),
        t.Message(role="user", content=[t.TextPart(text="hello " * 50)]),
    ]
    for model in router.routes:
        req = t.ChatRequest(model=model, messages=messages, max_tokens=100)
        for _ in range(1000):
            await executor.run_chat(router, req, RequestContext("r", "openai"))
        t0 = time.process_time()
        for _ in range(N):
            await executor.run_chat(router, req, RequestContext("r", "openai"))
            await asyncio.sleep(0)  # let the loop run, as between real requests
        routed = (time.process_time() - t0) / N
        t0 = time.process_time()
        for _ in range(N):
            RequestContext("r", "openai")
            await answer(req, catalog.routes[model].deployments[0])
            await asyncio.sleep(0)
        direct = (time.process_time() - t0) / N
        print(f"{model:26s} {(routed - direct) * 1e6:6.1f} us CPU per request")


if __name__ == "__main__":
    asyncio.run(main())
