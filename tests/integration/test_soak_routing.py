"""Soak: 3000 concurrent requests through a route whose primary fails 20 % of the time at random.

Clients (the official async `openai` SDK, no SDK retries) must see no error, and the split must be
exactly what failover implies: the secondary serves the requests the primary failed. The primary's
failures are drawn from a seeded generator, one draw per request it receives, so the expected split
is known in advance; a breaker that opened (it must not: 20 % is a flaky vendor, not a dead one)
would show as a different split.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import openai
import pytest

from polyroute.emulators import Behaviour, EmulatorServer
from polyroute.routing.state import CLOSED
from tests.helpers.gateway import run_gateway

pytestmark = pytest.mark.integration

TOTAL = 3000
CONCURRENCY = 64
FAILURE_RATE = 0.2
SEED = 20240611
# Generous: the bound catches a hang or a retry storm, not a slow CI machine.
TIME_LIMIT = 300.0


def expected_failures(n: int) -> int:
    rng = random.Random(SEED)
    return sum(rng.random() < FAILURE_RATE for _ in range(n))


def longest_failure_run(n: int) -> int:
    rng = random.Random(SEED)
    best = run = 0
    for _ in range(n):
        run = run + 1 if rng.random() < FAILURE_RATE else 0
        best = max(best, run)
    return best


@pytest.mark.timeout(420)
def test_soak_flaky_primary(openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer) -> None:
    # Consecutive-failure threshold 10: a 20 % flaky vendor (longest run of failures in this seed's
    # 3000 draws is checked below) must keep its traffic; a dead one still trips in 10.
    assert longest_failure_run(TOTAL) < 10
    openai_emulator.set_failure_rate(FAILURE_RATE, seed=SEED, behaviour=Behaviour.error(500))
    config = f"""
providers:
  primary:
    type: openai
    api_key: k
    base_url: "{openai_emulator.sdk_base_url}"
    breaker: {{consecutive_failures: 10}}
  secondary:
    type: anthropic
    api_key: k
    base_url: "{anthropic_emulator.sdk_base_url}"
models:
  chat:
    deployments:
      - {{provider: primary, model: gpt-4o, name: P}}
      - {{provider: secondary, model: claude-sonnet-4-5, name: S}}
"""
    with run_gateway(config) as gw:
        counts: dict[str, int] = {}
        attempts: dict[int, int] = {}
        errors: list[str] = []
        latencies: list[float] = []

        async def main() -> float:
            client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key="k", max_retries=0, timeout=30)
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> None:
                async with sem:
                    t0 = time.perf_counter()
                    try:
                        if i % 3 == 0:
                            async with client.chat.completions.with_streaming_response.create(
                                model="chat", messages=[{"role": "user", "content": f"stream {i}"}],
                                stream=True, max_tokens=32,
                            ) as resp:
                                text = "".join([c.choices[0].delta.content or "" async for c in await resp.parse() if c.choices])
                                headers = resp.headers
                        else:
                            raw = await client.chat.completions.with_raw_response.create(
                                model="chat", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=32
                            )
                            text = raw.parse().choices[0].message.content or ""
                            headers = raw.headers
                    except openai.APIError as exc:
                        errors.append(f"{i}: {exc}")
                        return
                    latencies.append(time.perf_counter() - t0)
                    if str(i) not in text:
                        errors.append(f"{i}: wrong answer {text!r}")
                    dep = headers.get("x-polyroute-deployment", "?")
                    counts[dep] = counts.get(dep, 0) + 1
                    n = int(headers.get("x-polyroute-attempts", "0"))
                    attempts[n] = attempts.get(n, 0) + 1

            t0 = time.perf_counter()
            async with client:
                await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(TOTAL))), TIME_LIMIT)
            return time.perf_counter() - t0

        elapsed = asyncio.run(main())
        primary = gw.gateway.router.target("P")
        assert primary is not None
        breaker_state = primary.breaker.state(gw.gateway.router.clock())

    latencies.sort()
    print(
        f"\nsoak: {TOTAL} requests in {elapsed:.2f} s ({TOTAL / elapsed:.0f}/s), split {counts}, "
        f"attempts {attempts}, p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )
    assert errors == []
    assert sum(counts.values()) == TOTAL
    failed = expected_failures(TOTAL)
    # Every request reached the primary first; exactly its failures were served by the secondary.
    assert counts == {"P": TOTAL - failed, "S": failed}
    assert attempts == {1: TOTAL - failed, 2: failed}
    assert 0.17 * TOTAL < failed < 0.23 * TOTAL
    assert len(openai_emulator.requests) == TOTAL
    assert breaker_state == CLOSED
    assert elapsed < TIME_LIMIT
