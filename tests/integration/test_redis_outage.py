"""Redis dies under a steady stream of requests and comes back: the gateway keeps serving (or, with
`redis_unavailable: closed`, refuses clearly), says so on /health/ready, /metrics and the log, and
uses the shared counters again afterwards, with the outage's spend in them."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyroute.emulators.testing import EmulatorServer
from polyroute.governance.redis_counters import RedisCounters
from tests.helpers.governance import Governed, governed, priced_chat_config
from tests.helpers.services import RedisServer, own_redis  # noqa: F401

pytestmark = pytest.mark.integration


def config(emu: EmulatorServer, tmp_path: Path, redis_url: str, mode: str) -> str:
    # Redis is killed here, so calls fail at once; the long timeout only keeps a loaded test host
    # from switching spuriously (the tests count switches). tests/unit covers a hung Redis.
    return priced_chat_config(
        emu, tmp_path,
        governance=f"counters: redis, redis_url: '{redis_url}', redis_unavailable: {mode}, redis_timeout: 2",
    )  # fmt: skip


@dataclass
class Result:
    start: float
    end: float
    status: int
    error: Exception | None = None


class Stream:
    """Clients sending one request after another, from a thread and event loop of their own."""

    def __init__(self, base_url: str, key: str, clients: int = 4) -> None:
        self.base_url, self.key, self.clients = base_url, key, clients
        self.results: list[Result] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "a request never finished"

    async def _run(self) -> None:
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.key, max_retries=0, timeout=30)

        async def worker(i: int) -> None:
            n = 0
            while not self._stop.is_set():
                n += 1
                t0 = time.monotonic()
                try:
                    r = await client.chat.completions.with_raw_response.create(
                        model="chat", messages=[{"role": "user", "content": f"client {i} request {n}"}], max_tokens=16
                    )
                    self.results.append(Result(t0, time.monotonic(), r.status_code))
                except openai.APIStatusError as exc:
                    self.results.append(Result(t0, time.monotonic(), exc.status_code, exc))
                except openai.APIError as exc:  # connection errors: a lost request
                    self.results.append(Result(t0, time.monotonic(), 0, exc))

        try:
            await asyncio.gather(*(worker(i) for i in range(self.clients)))
        finally:
            await client.close()

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        until(lambda: len(self.results) >= n, timeout, f"{n} results")


def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ready_becomes(g: Governed, status: str, timeout: float = 15.0) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        code, body = get(g.base_url + "/health/ready")
        seen.update(body)
        assert code == 200, body  # degraded still serves: never taken out of rotation
        return body["status"] == status

    until(check, timeout, f"/health/ready status {status!r}")
    return seen


def scrape(g: Governed) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(g.base_url + "/metrics", timeout=10) as r:
        body = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


def redis_spend(url: str, sid: str) -> dict[str, float]:
    async def read() -> dict[str, float]:
        c = RedisCounters(url)  # what any other instance would see
        try:
            return await c.status(sid, time.time())
        finally:
            await c.close()

    return asyncio.run(read())


def ledger_spend(g: Governed, key_id: str) -> tuple[int, float]:
    rows = [r for r in g.ledger() if r["key_id"] == key_id]
    return len(rows), sum(r["cost"] for r in rows)


def burst(base_url: str, key: str, n: int) -> list[int]:
    async def run() -> list[int]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)

        async def one(i: int) -> int:
            try:
                r = await client.chat.completions.with_raw_response.create(
                    model="chat", messages=[{"role": "user", "content": f"burst {i}"}], max_tokens=4
                )
                return r.status_code
            except openai.APIStatusError as exc:
                return exc.status_code

        try:
            return list(await asyncio.gather(*(one(i) for i in range(n))))
        finally:
            await client.close()

    return asyncio.run(run())


def test_local_mode_serves_through_a_redis_crash_then_shares_again(
    openai_emulator: EmulatorServer, tmp_path: Path, own_redis: RedisServer, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    openai_emulator.set_behaviour(first_token_delay=0.05)  # requests are in flight when Redis dies
    caplog.set_level(logging.WARNING, logger="polyroute.governance")
    with governed(config(openai_emulator, tmp_path, own_redis.url, "local")) as g:
        steady = g.create_key(rpm=100_000, budget_daily=1000, budget_monthly=1000)
        limited = g.create_key(rpm=5)
        assert ready_becomes(g, "ready")["checks"]["redis"] == {"ok": True, "detail": "redis"}
        with Stream(g.openai_base, steady["key"]) as stream:
            stream.wait_for(20)
            own_redis.stop(kill=True)  # a crash, mid-stream
            killed_at = len(stream.results)
            ready = ready_becomes(g, "degraded")
            assert ready["checks"]["redis"]["ok"] is False
            assert "per-process memory counters" in ready["checks"]["redis"]["detail"]
            s = scrape(g)
            assert s[("polyroute_counters_fallback", (("mode", "local"),))] == 1
            assert s[("polyroute_counters_transitions_total", (("to", "local"),))] == 1
            assert s[("polyroute_health_check_up", (("check", "redis"),))] == 0

            # The limit still holds, per instance: a full bucket of 5, then 429.
            statuses = burst(g.openai_base, limited["key"], 12)
            assert sorted(statuses) == [200] * 5 + [429] * 7
            # The admin API answers from this instance's counters meanwhile.
            code, usage = g.admin("GET", f"/admin/keys/usage?id={steady['id']}")[:2]
            assert code == 200 and usage["usage"]["key"]["spent_month"] > 0

            stream.wait_for(killed_at + 40)
            own_redis.start()  # persistent: what it acknowledged before the crash is back
            ready = ready_becomes(g, "ready")
            assert ready["checks"]["redis"] == {"ok": True, "detail": "redis"}
            back_at = len(stream.results)
            stream.wait_for(back_at + 20)

        assert len(stream.results) > 80
        lost = [r for r in stream.results if r.status != 200]
        assert not lost, lost[:3]
        # Nobody waited on the dead Redis (a request takes ~0.05 s here; this leaves room for a slow machine).
        assert max(r.end - r.start for r in stream.results) < 3.0
        s = scrape(g)
        assert s[("polyroute_counters_fallback", (("mode", "local"),))] == 0
        assert s[("polyroute_counters_transitions_total", (("to", "redis"),))] == 1
        messages = [r.getMessage() for r in caplog.records if r.name == "polyroute.governance"]
        assert sum("Redis unreachable" in m for m in messages) == 1
        assert sum("Redis is back" in m for m in messages) == 1

        # Shared again, and nothing was lost or counted twice: Redis holds exactly what the ledger
        # says this key spent (before, during and after the outage), with nothing left reserved.
        until(lambda: not g.gov.counters.remote.pending, 10, "pending settlements")  # type: ignore[attr-defined]
        n, spent = ledger_spend(g, steady["id"])
        assert n == len(stream.results) and spent > 0
        in_redis = redis_spend(own_redis.url, f"key:{steady['id']}")
        assert in_redis["spent_month"] == pytest.approx(spent, rel=1e-9)
        assert in_redis["reserved_month"] == pytest.approx(0.0, abs=1e-9)
        code, usage = g.admin("GET", f"/admin/keys/usage?id={steady['id']}")[:2]
        assert usage["usage"]["key"]["spent_month"] == pytest.approx(spent, rel=1e-9)


def test_closed_mode_refuses_limited_keys_with_a_clear_503(
    openai_emulator: EmulatorServer, tmp_path: Path, own_redis: RedisServer  # noqa: F811
) -> None:
    openai_emulator.set_behaviour(first_token_delay=0.02)
    with governed(config(openai_emulator, tmp_path, own_redis.url, "closed")) as g:
        limited = g.create_key(rpm=100_000)
        free = g.create_key()  # no limits: needs no counters
        with Stream(g.openai_base, limited["key"], clients=3) as stream:
            stream.wait_for(10)
            own_redis.stop()
            ready_becomes(g, "degraded")
            until(lambda: any(r.status == 503 for r in stream.results), 10, "a 503")
            assert burst(g.openai_base, free["key"], 3) == [200, 200, 200]
            own_redis.start()
            ready_becomes(g, "ready")
            back_at = len(stream.results)
            stream.wait_for(back_at + 10)
        assert {r.status for r in stream.results} == {200, 503}
        assert all(r.status == 200 for r in stream.results[back_at + 3 :])  # served again
        refused = [r.error for r in stream.results if r.status == 503]
        for err in refused:
            assert isinstance(err, openai.InternalServerError)
            body = err.body if isinstance(err.body, dict) else {}
            assert body.get("code") == "counters_unavailable" and "retry" in body.get("message", "")
            assert err.response.headers.get("retry-after") == "1"
            assert err.response.headers.get("x-should-retry") != "false"  # retryable: the SDKs retry it
        assert max(r.end - r.start for r in stream.results) < 3.0


def test_gateway_starts_with_redis_down_and_uses_it_once_it_comes(
    openai_emulator: EmulatorServer, tmp_path: Path, own_redis: RedisServer, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.WARNING, logger="polyroute.governance")
    own_redis.stop()
    with governed(config(openai_emulator, tmp_path, own_redis.url, "local")) as g:
        assert any("Redis unreachable at start-up" in r.getMessage() for r in caplog.records)
        key = g.create_key(rpm=3, budget_daily=100)
        ready = ready_becomes(g, "degraded")
        assert ready["checks"]["redis"]["ok"] is False
        assert sorted(burst(g.openai_base, key["key"], 5)) == [200] * 3 + [429] * 2
        s = scrape(g)
        assert s[("polyroute_counters_fallback", (("mode", "local"),))] == 1
        assert s[("polyroute_counters_transitions_total", (("to", "local"),))] == 1
        own_redis.start()
        ready_becomes(g, "ready")
        _, spent = ledger_spend(g, key["id"])
        assert spent > 0
        assert redis_spend(own_redis.url, f"key:{key['id']}")["spent_day"] == pytest.approx(spent, rel=1e-9)
        # The bucket on Redis is another one (it never saw this key): 3 more, then 429 again.
        assert sorted(burst(g.openai_base, key["key"], 4)) == [200] * 3 + [429]
