"""What governance costs each request: key check, limits and budgets, the ledger row, and the
ledger writer's batch inserts, measured in-process on SQLite.

    .venv/bin/python bench/ops/governance_path.py            # ~20 s
    .venv/bin/python bench/ops/governance_path.py -n 50000

Prints, per request: the CPU time of the policy's before+after on the event loop (best of 5), the
longest single pause of the event loop while the writer inserted a batch, and the writer's CPU
time per row (all threads: SQLite runs in a thread of its own). CPU time rather than wall
time, so a busy machine disturbs it less; the pause is wall time (see the note it prints).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from polyroute.config.load import parse_config
from polyroute.core.context import Attempt, RequestContext
from polyroute.core.gateway import Gateway
from polyroute.core.types import ChatRequest, Message, TextPart, Usage
from polyroute.governance import manage
from polyroute.governance.keys import Limits
from polyroute.governance.policy import Governance

CONFIG = """
server: {{master_key: sk-master-bench-0123456789}}
database: {{url: 'sqlite:///{db}'}}
ledger: {{enabled: true, spool_dir: '{spool}', queue_size: 1000000}}
providers:
  up: {{type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: sk-bench-0123456789}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini, input_price: 0.15, output_price: 0.6}}]}}
"""


def context(i: int, secret: str) -> RequestContext:
    ctx = RequestContext(f"req_bench_{i:09d}", "openai", secret)
    ctx.route = ctx.model_asked = "m"
    return ctx


def serve(ctx: RequestContext) -> None:
    """What the router fills in when a request is served."""
    ctx.provider, ctx.deployment = "up", "m/up/gpt-4o-mini"
    ctx.usage = Usage(input_tokens=120, output_tokens=380)
    ctx.cost = 0.00024600
    a = Attempt("m/up/gpt-4o-mini", "up")
    a.status, a.latency, a.usage, a.cost = 200, 0.0003, ctx.usage, ctx.cost
    ctx.attempts = [a]
    ctx.status = 200


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        cfg = parse_config(CONFIG.format(db=Path(d) / "bench.db", spool=Path(d) / "spool"), "<bench>")
        gov = Governance(cfg)
        Gateway(cfg, "bench", [gov])
        await gov.start()
        team = await manage.ensure_team(gov.store, "default", gov.keys)
        _, secret = await manage.create_key(
            gov.store, team, "bench", Limits(rpm=10**9, tpm=10**12, budget_daily=1e12), None, gov.keys
        )
        req = ChatRequest(
            model="m",
            messages=[Message(role="system", content=[TextPart("You are a concise assistant.")]),
                      Message(role="user", content=[TextPart("Say hello in one short sentence, then list three primary colours.")])],
            max_tokens=64,
        )  # fmt: skip
        assert gov.ledger is not None
        writer = gov.ledger
        best = float("inf")
        i = 0
        for _ in range(5):
            # The writer lingers before it inserts (flush_interval), so the loop below is the
            # request path alone; the batches are written afterwards and timed separately.
            t = time.process_time()
            for _ in range(n):
                ctx = context(i, secret)
                i += 1
                await gov.before(ctx, req)
                serve(ctx)
                await gov.after(ctx)
            best = min(best, (time.process_time() - t) / n * 1e6)
            # Write the queued rows, measuring the writer's CPU and the loop's longest pause.
            pauses: list[float] = []
            stop = asyncio.Event()

            async def ticker(stop: asyncio.Event, pauses: list[float]) -> None:
                last = time.perf_counter()
                while not stop.is_set():
                    await asyncio.sleep(0.001)  # a tick per ms: the pause is the gap beyond it
                    now = time.perf_counter()
                    pauses.append(now - last - 0.001)
                    last = now

            tick = asyncio.create_task(ticker(stop, pauses))
            t = time.process_time()
            await writer.flush(120)
            cpu = time.process_time() - t
            stop.set()
            await tick
            print(f"  writer: {cpu / n * 1e6:6.1f} us CPU/row (all threads), longest event-loop pause "
                  f"{max(pauses) * 1e3:.2f} ms, p99 {sorted(pauses)[int(len(pauses) * 0.99)] * 1e3:.2f} ms over {n} rows")  # fmt: skip
        print(f"governance before+after on the event loop: {best:.1f} us CPU/request (best of 5 x {n})")
        print("(pauses are wall time: a busy machine inflates them; CPU figures are robust)")
        await gov.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    asyncio.run(run(ap.parse_args().n))


if __name__ == "__main__":
    main()
