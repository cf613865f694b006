"""No ledger row is lost or doubled when PostgreSQL goes away under load and the gateway shuts down
with a full queue: rows wait in the spool and the next start replays them exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from polyroute.emulators.testing import EmulatorServer
from polyroute.governance.store import Store
from tests.helpers.governance import MASTER, governed
from tests.helpers.services import PostgresServer, postgres  # noqa: F401

pytestmark = pytest.mark.integration

N = 150


def config(emu: EmulatorServer, dsn: str, spool: Path) -> str:
    return f"""
server: {{master_key: '{MASTER}'}}
database: {{url: '{dsn}', connect_timeout: 2}}
ledger: {{spool_dir: '{spool}', queue_size: 10, batch_size: 5, flush_interval: 0.01, write_timeout: 1}}
governance: {{key_cache_ttl: 0.5}}
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: sk-upstream}}
models:
  chat:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
"""


async def _burst(base: str, n: int) -> set[str]:
    client = openai.AsyncOpenAI(base_url=base, api_key=MASTER, max_retries=0)
    sem = asyncio.Semaphore(30)

    async def one(i: int) -> str:
        async with sem:
            raw = await client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": f"request {i}"}], stream=i % 3 == 0
            )
            if i % 3 == 0:
                async for _ in raw.parse():
                    pass
            return str(raw.headers["x-request-id"])

    try:
        return set(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.close()


async def _ledger_ids(dsn: str) -> list[str]:
    s = Store.from_url(dsn)
    await s.open()
    try:
        return [r[0] for r in await s.db.fetch("SELECT request_id FROM ledger")]
    finally:
        await s.close()


def test_database_outage_and_shutdown_lose_no_row(
    openai_emulator: EmulatorServer, postgres: PostgresServer, tmp_path: Path  # noqa: F811
) -> None:
    dsn = postgres.create_database()
    spool = tmp_path / "spool"
    cfg = config(openai_emulator, dsn, spool)
    with governed(cfg) as g:
        before = asyncio.run(_burst(g.openai_base, 20))
        g.flush()
        postgres.stop()  # the database disappears mid-traffic
        during = asyncio.run(_burst(g.openai_base, N))
        assert g.gov.ledger is not None
        assert g.gov.ledger.overflowed > 0, "the queue (10 rows) filled and overflowed to the spool"
        # Leaving the block shuts the gateway down with the database still down.
    assert list(spool.glob("ledger-*.jsonl")), "rows wait on disk"
    postgres.start()
    assert set(asyncio.run(_ledger_ids(dsn))) < before | during, "some rows could not reach the database"
    with governed(cfg):  # the next start replays the spool
        pass
    ids = asyncio.run(_ledger_ids(dsn))
    assert len(ids) == len(set(ids)) == 20 + N, "every request exactly once"
    assert set(ids) == before | during
    assert not list(spool.glob("ledger-*.jsonl"))
