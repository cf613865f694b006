"""The SQLite ledger writer's batch: one transaction on the database's own thread, in multi-row
statements. A batch larger than a statement (and one that ends in a partial statement) lands
whole; a batch whose transaction fails leaves neither rows nor roll-ups, and the next one works."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from polyroute.governance import rollup, store
from polyroute.governance.store import Store
from tests.integration.test_ledger_rollups import rows

pytestmark = pytest.mark.integration


def _counts(path: Path) -> tuple[int, int, int, float]:
    con = sqlite3.connect(path)
    try:
        n, cost = con.execute("SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM ledger").fetchone()
        attempts = con.execute("SELECT COUNT(*) FROM ledger_attempts").fetchone()[0]
        rolled = con.execute("SELECT COALESCE(SUM(requests), 0) FROM ledger_hourly").fetchone()[0]
        return n, attempts, rolled, cost
    finally:
        con.close()


def test_a_batch_of_several_statements_lands_whole(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    batch = rows(2 * store.SQLITE_ROWS_PER_STATEMENT + 45, seed=3)

    async def main() -> None:
        s = Store.from_url(f"sqlite:///{path}")
        await s.open()
        try:
            await s.insert_ledger(batch)
            await s.insert_ledger(batch[:10])  # already there: adds nothing
        finally:
            await s.close()

    asyncio.run(main())
    n, attempts, rolled, cost = _counts(path)
    assert n == rolled == len(batch)
    assert attempts == sum(len(r.attempts) for r in batch) > len(batch)
    assert cost == pytest.approx(sum(r.cost for r in batch))


def test_a_failed_batch_leaves_nothing_and_the_next_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.db"
    first, second = rows(150, seed=4, prefix="a"), rows(20, seed=5, prefix="b")

    async def main() -> None:
        s = Store.from_url(f"sqlite:///{path}")
        await s.open()
        try:
            # The last statement of the transaction fails, after every insert of the batch.
            with monkeypatch.context() as m:
                m.setattr(rollup, "SQLITE_ATTEMPTS", "INSERT INTO no_such_table VALUES (?)")
                with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
                    await s.insert_ledger(first)
            assert await s.count_ledger() == 0
            await s.insert_ledger(second)
        finally:
            await s.close()

    asyncio.run(main())
    n, _, rolled, _ = _counts(path)
    assert n == rolled == len(second)
