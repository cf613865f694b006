"""RPM, TPM and budgets under concurrent load, through the official openai SDK; and the Redis
counters shared by two gateway instances."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest

from polyroute.core.errors import QuotaExceeded, RateLimited
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.governance.limits import Subject
from polyroute.governance.redis_counters import RedisCounters
from tests.helpers.governance import governed, priced_chat_config
from tests.helpers.services import redis, redis_url  # noqa: F401

pytestmark = pytest.mark.integration

WALL = 1_767_225_600.0


def config(emu: EmulatorServer, tmp_path: Path, extra: str = "") -> str:
    return priced_chat_config(emu, tmp_path, extra=extra)


async def _fire(base: str, key: str, n: int, **kwargs: Any) -> list[Any]:
    client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0)

    async def one(i: int) -> Any:
        try:
            return await client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": f"hi {i}"}], **kwargs
            )
        except openai.APIStatusError as exc:
            return exc

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


def test_rpm_under_concurrent_load(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    openai_emulator.set_behaviour(first_token_delay=0.2)  # keep them all in flight together
    with governed(config(openai_emulator, tmp_path)) as g:
        g.create_team("t", rpm=50)
        key = g.create_key(team="t", rpm=8)
        results = asyncio.run(_fire(g.openai_base, key["key"], 40))
        ok = [r for r in results if not isinstance(r, Exception)]
        limited = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(ok) == 8 and len(limited) == 32
        for r in limited:
            assert r.code == "rate_limit_exceeded"
            assert int(r.response.headers["retry-after"]) >= 7  # one request per 7.5 s
            assert r.response.headers.get("x-should-retry") != "false"
        rows = g.ledger()
        assert len(rows) == 40
        assert sorted(r["status"] for r in rows) == [200] * 8 + [429] * 32


def test_budget_never_overspent_under_concurrent_load(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    openai_emulator.set_behaviour(first_token_delay=0.1)
    with governed(config(openai_emulator, tmp_path)) as g:
        budget = 0.05  # USD: five reservations of 10 output tokens x $0.001
        key = g.create_key(budget_daily=budget)
        results = asyncio.run(_fire(g.openai_base, key["key"], 60, max_tokens=10))
        quota = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert quota and len(quota) < 60
        for r in quota:
            assert r.response.status_code == 429
            assert r.type == "insufficient_quota" and r.code == "budget_exceeded"
            assert r.response.headers.get("x-should-retry") == "false"
        rows = g.ledger()
        spent = sum(r["cost"] for r in rows)
        assert 0 < spent <= budget + 1e-12, "reserve-then-settle keeps spend within the budget"
        assert len(rows) == 60
        status, usage, _ = g.admin("GET", f"/admin/keys/usage?id={key['id']}")
        assert status == 200
        assert usage["usage"]["key"]["spent_day"] == pytest.approx(spent)
        assert usage["usage"]["key"]["reserved_day"] == pytest.approx(0.0, abs=1e-12)


def test_budget_counts_spend_from_before_a_restart(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = config(openai_emulator, tmp_path)
    with governed(cfg) as g:
        key = g.create_key(budget_daily=0.02)
        openai_emulator.enqueue(Behaviour(text="a b c d e f g h i j k l m n o"))
        c = openai.OpenAI(base_url=g.openai_base, api_key=key["key"], max_retries=0)
        c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], max_tokens=15)
    with governed(cfg) as g:  # a new process: the day's spend comes back from the ledger
        c = openai.OpenAI(base_url=g.openai_base, api_key=key["key"], max_retries=0)
        with pytest.raises(openai.RateLimitError) as exc:
            c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], max_tokens=10)
        assert "daily budget" in exc.value.message


def test_tpm_under_concurrent_load(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    openai_emulator.set_behaviour(first_token_delay=0.2)
    with governed(config(openai_emulator, tmp_path)) as g:
        key = g.create_key(tpm=1000)
        # Each request reserves its prompt estimate + max_tokens (300): three fit in 1000.
        results = asyncio.run(_fire(g.openai_base, key["key"], 12, max_tokens=300))
        ok = [r for r in results if not isinstance(r, Exception)]
        assert len(ok) == 3
        assert all(isinstance(r, openai.RateLimitError) for r in results if isinstance(r, Exception))


async def _redis_pair(url: str) -> tuple[int, int, float]:
    a, b = RedisCounters(url, prefix="t1:"), RedisCounters(url, prefix="t1:")  # two gateway instances
    subj = [Subject("key:k", "key 'k'", rpm=10, daily=1.0)]
    admitted = refused_rate = 0

    async def one(c: RedisCounters) -> None:
        nonlocal admitted, refused_rate
        try:
            res = await c.reserve(subj, 0, 0.01, WALL, 600)
        except RateLimited:
            refused_rate += 1
            return
        admitted += 1
        await c.settle(res, 0, 0.01)

    await asyncio.gather(*(one(a if i % 2 else b) for i in range(40)))
    budget = [Subject("key:b", "key 'b'", daily=0.1)]
    spent_ok = 0

    async def spend(c: RedisCounters) -> None:
        nonlocal spent_ok
        try:
            res = await c.reserve(budget, 0, 0.03, WALL, 600)
        except QuotaExceeded:
            return
        spent_ok += 1
        await c.settle(res, 0, 0.03)

    await asyncio.gather(*(spend(a if i % 2 else b) for i in range(20)))
    st = await a.status("key:b", WALL)
    await a.close()
    await b.close()
    assert spent_ok == 3 and st["spent_day"] == pytest.approx(0.09) and st["reserved_day"] == pytest.approx(0)
    return admitted, refused_rate, st["spent_day"]


def test_redis_counters_are_shared_and_atomic(redis_url: str) -> None:  # noqa: F811
    admitted, refused, _ = asyncio.run(_redis_pair(redis_url))
    assert admitted == 10 and refused == 30


def test_gateway_with_redis_counters(openai_emulator: EmulatorServer, tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    openai_emulator.set_behaviour(first_token_delay=0.2)
    extra = f"governance: {{key_cache_ttl: 0.2, counters: redis, redis_url: '{redis_url}'}}\n"
    cfg = config(openai_emulator, tmp_path).replace("governance: {key_cache_ttl: 0.2}\n", extra)
    with governed(cfg) as g1, governed(cfg) as g2:  # two instances, one database, one Redis
        key = g1.create_key(rpm=6)
        r1 = asyncio.run(_fire(g1.openai_base, key["key"], 10))
        r2 = asyncio.run(_fire(g2.openai_base, key["key"], 10))
        ok = [r for r in r1 + r2 if not isinstance(r, Exception)]
        assert len(ok) == 6
