"""How long each in-house operation, run in a worker thread, stalls the asyncio event loop.

A ticker coroutine wakes every 5 ms; the worst lateness while an operation runs in
`asyncio.to_thread` is the stall every other request on the loop would have seen. This is why
`InHouse.start()` waits for the loads instead of loading in the background after start-up:
xllamacpp's `Server` constructor holds the GIL for the whole load.

    .venv/bin/python bench/inhouse/loop_stall.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from common import machine

from polyroute.providers.inhouse.embedder import Embedder
from polyroute.providers.inhouse.llm import ChatModel
from polyroute.providers.inhouse.models import chat_model_path, embedding_model_paths

TICK = 0.005


async def worst_stall(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            worst = max(worst, now - last - TICK)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    result = await asyncio.to_thread(fn)
    took = time.perf_counter() - t0
    done = True
    await task
    return result, took, worst


async def main() -> None:
    rows = []
    chat, took, stall = await worst_stall(lambda: ChatModel(chat_model_path(), context_size=2048, parallel=1))
    rows.append(("load chat model", took, stall))
    emb, took, stall = await worst_stall(lambda: Embedder(*embedding_model_paths()))
    rows.append(("load embedder", took, stall))
    body = {"messages": [{"role": "user", "content": "Tell a story"}], "max_tokens": 64, "stream": True, "ignore_eos": True}
    _, took, stall = await worst_stall(lambda: chat.generate(body, lambda chunk: False))
    rows.append(("generate 64 tokens", took, stall))
    _, took, stall = await worst_stall(lambda: emb.embed(["word " * 126] * 64))
    rows.append(("embed 64 x 128 tokens", took, stall))
    _, took, stall = await worst_stall(chat.close)
    rows.append(("close chat model", took, stall))
    for name, took, stall in rows:
        print(f"{name:24s} took {took:6.2f} s   worst event-loop stall {stall * 1000:6.0f} ms")
    print(machine())


if __name__ == "__main__":
    asyncio.run(main())
