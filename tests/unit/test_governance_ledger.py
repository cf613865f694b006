"""The ledger writer: batching, the spool when the database is slow or down, idempotent replay,
and a shutdown that loses nothing even with a full queue. On SQLite (a file, no server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from polyroute.governance.ledger import LedgerWriter, Spool
from polyroute.governance.rows import AttemptRow, LedgerRow
from polyroute.governance.store import Store


def make_row(i: int, cost: float = 0.001) -> LedgerRow:
    return LedgerRow(
        request_id=f"req_{i:06d}", ts=time.time(), day="2026-01-01", key_id="key_1", team_id="team_1", api="openai",
        model_asked="m", route="m", deployment="m/p/x", provider="p", vendor="openai",
        attempts=[AttemptRow(n=0, deployment="m/p/x", provider="p", vendor="openai", status=200, error=None,
                             latency_ms=1.0, input_tokens=10, output_tokens=5, cost=cost)],
        input_tokens=10, output_tokens=5, cached_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
        estimated=False, cost=cost, latency_ms=2.0, ttft_ms=None, status=200, error_class=None,
        error_message=None, stream=False, tags=None, end_user=None,
    )  # fmt: skip


class Gate(Store):
    """A store whose inserts can be made to hang or fail, to play a slow or dead database."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner.db)
        self.mode = "ok"
        self.calls = 0
        self.bulk_calls = 0

    async def insert_values(
        self, values: Sequence[tuple[object, ...]], attempts: Sequence[tuple[object, ...]], *, bulk: bool = False
    ) -> None:
        self.calls += 1
        if self.mode == "down":
            raise ConnectionError("database down")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        self.bulk_calls += bulk
        await super().insert_values(values, attempts, bulk=bulk)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Gate]:
    s = Store.from_url(f"sqlite:///{tmp_path}/ledger.db")
    await s.open()
    yield Gate(s)
    await s.close()


async def ids(store: Store) -> list[str]:
    return [r[0] for r in await store.db.fetch("SELECT request_id FROM ledger ORDER BY request_id")]


async def test_rows_are_batched_and_written(store: Gate, tmp_path: Path) -> None:
    w = LedgerWriter(store, Spool(tmp_path / "spool"), batch_size=100, flush_interval=0.01)
    await w.start()
    for i in range(250):
        w.submit(make_row(i))
    await w.flush()
    assert await ids(store) == [f"req_{i:06d}" for i in range(250)]
    assert store.calls <= 10  # batched, not one transaction per row
    assert len(await store.db.fetch("SELECT * FROM ledger_attempts")) == 250
    await w.close()


async def test_database_down_spools_then_replays_exactly_once(store: Gate, tmp_path: Path) -> None:
    w = LedgerWriter(store, Spool(tmp_path / "spool"), batch_size=50, flush_interval=0.0, retry_interval=0.05)
    await w.start()
    store.mode = "down"
    for i in range(120):
        w.submit(make_row(i))
    await w.flush()
    assert await ids(store) == [] and w.spooled == 120
    store.mode = "ok"
    # A row already in the database must not be doubled by the replay.
    await store.insert_ledger([make_row(5)])
    deadline = time.monotonic() + 10
    while len(await ids(store)) < 121 and time.monotonic() < deadline:
        w.submit(make_row(1000 + len(await ids(store))))  # new traffic triggers the retry
        await w.flush()
        await asyncio.sleep(0.06)
    got = await ids(store)
    assert set(f"req_{i:06d}" for i in range(120)) <= set(got)
    assert len(got) == len(set(got))
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    await w.close()


async def test_shutdown_with_full_queue_and_hung_database_loses_nothing(store: Gate, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    w = LedgerWriter(store, Spool(spool), queue_size=100, batch_size=20, flush_interval=0.0, write_timeout=0.2)
    await w.start()
    store.mode = "hang"
    for i in range(500):  # 5x the queue: the overflow goes straight to the spool
        w.submit(make_row(i))
    assert w.queued <= 100 and w.overflowed > 0
    await w.close(limit=1.0)
    assert await ids(store) == []
    # A new writer (the next start) replays everything, exactly once.
    store.mode = "ok"
    w2 = LedgerWriter(store, Spool(spool))
    await w2.start()
    assert await ids(store) == [f"req_{i:06d}" for i in range(500)]
    await w2.close()


async def test_shutdown_flushes_queue_to_database(store: Gate, tmp_path: Path) -> None:
    w = LedgerWriter(store, Spool(tmp_path / "spool"), queue_size=10_000, batch_size=64, flush_interval=5.0)
    await w.start()
    for i in range(3000):
        w.submit(make_row(i))
    await w.close()
    assert len(await ids(store)) == 3000
    assert not list((tmp_path / "spool").glob("*.jsonl"))


async def test_spool_survives_a_line_cut_by_a_crash(store: Gate, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([make_row(1), make_row(2)])
    spool.rotate()
    seg = next((tmp_path / "spool").glob("*.jsonl"))
    seg.write_bytes(seg.read_bytes() + b'{"request_id": "req_0000')  # the crash, mid-line
    w = LedgerWriter(store, Spool(tmp_path / "spool"))
    await w.start()
    assert await ids(store) == ["req_000001", "req_000002"]
    await w.close()


async def test_slow_database_moves_backlog_to_spool(store: Gate, tmp_path: Path) -> None:
    w = LedgerWriter(store, Spool(tmp_path / "spool"), queue_size=50, batch_size=10, flush_interval=0.0,
                     write_timeout=0.05, retry_interval=60)  # fmt: skip
    await w.start()
    store.mode = "hang"
    for i in range(45):
        w.submit(make_row(i))
    await w.flush()
    assert w.spooled == 45 and w.queued == 0
    await w.close()


def test_a_row_comes_back_whole_from_the_values_the_writer_queues() -> None:
    row = make_row(7)
    row.tags, row.stream, row.estimated, row.ttft_ms = ["a", "b"], True, True, 12.5
    row.attempts.insert(0, AttemptRow(n=0, deployment="m/q/y", provider="q", vendor="mistral", status=529,
                                      error="overloaded", latency_ms=3.0, input_tokens=0, output_tokens=0, cost=0.0))
    row.attempts[1].n = 1
    assert LedgerRow.from_values(row.ledger_values(), row.attempt_values()) == row


async def test_a_spool_segment_is_replayed_a_batch_at_a_time(store: Gate, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([make_row(i) for i in range(25)])
    spool.rotate()
    w = LedgerWriter(store, Spool(tmp_path / "spool"), batch_size=10)
    await w.start()
    assert await ids(store) == [f"req_{i:06d}" for i in range(25)]
    assert store.calls == 3 and w.replayed == 25
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    await w.close()


async def test_a_writer_behind_inserts_in_bulk_statements_and_loses_nothing(store: Gate, tmp_path: Path) -> None:
    w = LedgerWriter(store, Spool(tmp_path / "spool"), queue_size=400, batch_size=100, flush_interval=0.0)
    await w.start()
    for i in range(90):  # a backlog under a quarter of the queue: normal batches
        w.submit(make_row(i))
    await w.flush()
    assert store.bulk_calls == 0
    for i in range(90, 410):  # 320: under the high water (80 %), so nothing moves to the spool
        w.submit(make_row(i))
    await w.flush()
    assert store.bulk_calls >= 1 and w.spooled == 0 and w.overflowed == 0
    assert await ids(store) == [f"req_{i:06d}" for i in range(410)]
    # Behind, the writer took more than one batch at once.
    assert store.calls == 2  # the 90 rows, then the 320 in one bulk batch
    await w.close()
