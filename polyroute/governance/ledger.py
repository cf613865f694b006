"""Writing the ledger off the request path: a bounded queue, batched inserts, and an on-disk spool.

The request path only calls `submit` (no I/O). A writer task takes rows in batches and inserts them
in one transaction each. When the database is down or slower than `write_timeout`, batches go to
the spool (JSON lines in `spool_dir`) and are replayed once the database answers again; when the
queue is full (the writer cannot keep up), `submit` appends the row to the spool itself, a small
buffered write that happens only in that overload. Inserts are idempotent on the request id, so a
replay of rows that had in fact reached the database (a timed-out commit, a crash mid-replay)
adds nothing. `close` drains the queue into the database, or into the spool if the database does
not answer in time: a graceful shutdown loses no row. A hard kill loses the rows still in memory
(at most `queue_size` plus one batch); rows in the spool survive any stop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import msgspec

from polyroute.governance.rows import LedgerRow, decode_row, encode_row
from polyroute.governance.store import Store

log = logging.getLogger("polyroute.ledger")

# A writer that is behind takes this many batches' rows at once (see LedgerWriter._run).
BULK_BATCHES = 4

# A submitted row as its ledger values and its attempts' values: tuples of plain values, which the
# garbage collector stops tracking, so a long queue costs collections nothing (a queue of row
# objects made every collection walk it: 25 µs per governed request at saturation, paired run).
Queued = tuple[tuple[object, ...], tuple[tuple[object, ...], ...]]


def _rows(batch: Sequence[Queued]) -> list[LedgerRow]:
    return [LedgerRow.from_values(v, a) for v, a in batch]


class Spool:
    """Segments of JSON lines. The segment a process appends to is flock'ed, so a replay by any
    process (several workers may share the directory) takes only segments nobody is writing."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._seq = 0
        # Appends come from the writer's thread and, on overflow or shutdown, the event loop's.
        self._lock = threading.Lock()

    def append(self, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        with self._lock:
            self._append(rows)

    def _append(self, rows: Sequence[LedgerRow]) -> None:
        if self._file is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            self._path = self.dir / f"ledger-{time.time_ns()}-{os.getpid()}-{self._seq}.jsonl"
            f = open(self._path, "ab")  # held open across appends, closed in rotate()
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            self._file = f
        self._file.write(b"".join(encode_row(r) + b"\n" for r in rows))
        self._file.flush()

    def rotate(self) -> None:
        """Close the segment being written, so it can be replayed."""
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._file.fileno())
                self._file.close()  # releases the lock
                self._file = None
                self._path = None

    def segments(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("ledger-*.jsonl") if p != self._path)

    def pending(self) -> bool:
        return bool(self.segments()) or self._file is not None

    def count_rows(self) -> int:
        n = 0
        for p in sorted(self.dir.glob("ledger-*.jsonl")) if self.dir.is_dir() else []:
            n += sum(1 for line in p.read_bytes().splitlines() if line.strip())
        return n

    @staticmethod
    def read_some(f: IO[bytes], n: int) -> list[LedgerRow]:
        """Up to `n` rows from where `f` is: a segment is replayed a batch at a time, so a long
        outage's spool never sits in memory whole (nor its rows in the collector's generations)."""
        rows: list[LedgerRow] = []
        while len(rows) < n:
            line = f.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                rows.append(decode_row(line))
            except msgspec.DecodeError:
                # A line cut short by a crash mid-write: everything before it is whole.
                log.warning("ledger spool %s: skipping an unreadable line", Path(f.name).name)
        return rows


class LedgerWriter:
    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        queue_size: int = 10000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        write_timeout: float = 5.0,
        retry_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.spool = spool
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.write_timeout = write_timeout
        self.retry_interval = retry_interval
        # Rows waiting, each with its database values, computed when submitted: a batch then
        # takes no Python work on the event loop proportional to its size (docs/performance.md).
        self._q: collections.deque[Queued] = collections.deque()
        self.queue_size = max(1, queue_size)
        self._high_water = max(1, int(queue_size * 0.8))
        # A backlog this long means the writer is behind: bigger batches, bigger statements.
        self._bulk_from = max(1, queue_size // 4)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Queued] = []
        self._degraded_until = 0.0
        self._idle = asyncio.Event()
        self._idle.set()
        # Counters for health and tests.
        self.written = 0
        self.spooled = 0
        self.overflowed = 0
        self.replayed = 0

    async def start(self) -> None:
        await self.replay()
        self._task = asyncio.create_task(self._run(), name="polyroute-ledger-writer")

    def submit(self, row: LedgerRow) -> None:
        self.submit_values(row.ledger_values(), row.attempt_values())

    def submit_values(self, values: tuple[object, ...], attempts: tuple[tuple[object, ...], ...]) -> None:
        """A row as its ledger_values() and attempt_values(). Called on the request path: never
        waits, never loses the row."""
        if len(self._q) >= self.queue_size:
            self.spool.append(_rows([(values, attempts)]))
            self.overflowed += 1
            if self.overflowed == 1 or self.overflowed % 1000 == 0:
                log.warning("ledger queue full: %d row(s) written to the spool directly", self.overflowed)
        else:
            self._q.append((values, attempts))
            self._idle.clear()
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._q)

    async def flush(self, limit: float = 30.0) -> None:
        """Wait until every row submitted so far has been written (to the database or the spool)."""
        async with asyncio.timeout(limit):
            while self._q or self._inflight:
                self._idle.clear()
                self._wake.set()
                await self._idle.wait()

    async def _run(self) -> None:
        while True:
            if not self._q:
                self._idle.set()
                if self._stop.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._q) < self.batch_size and self.flush_interval > 0 and not self._stop.is_set():
                # Linger a little so that light traffic still makes batches, not one commit per row.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.flush_interval)
            # Behind (a backlog of a quarter of the queue): batches of BULK_BATCHES x batch_size
            # rows in big statements, so each of the writer's GIL hand-overs moves more rows.
            bulk = len(self._q) >= self._bulk_from
            batch = self._take(self.batch_size * BULK_BATCHES if bulk else self.batch_size)
            await self._deliver(batch, bulk=bulk)

    def _take(self, n: int) -> list[Queued]:
        q = self._q
        return [q.popleft() for _ in range(min(n, len(q)))]

    async def _deliver(self, batch: list[Queued], *, bulk: bool = False) -> None:
        self._inflight = batch
        try:
            if time.monotonic() < self._degraded_until:
                await self._to_spool(batch)
                return
            try:
                await asyncio.wait_for(
                    self.store.insert_values([b[0] for b in batch], [a for b in batch for a in b[1]],
                                             bulk=bulk),
                    self.write_timeout,
                )  # fmt: skip
            except asyncio.CancelledError:
                # Stopped mid-write: the batch may or may not be committed; keep it (replays are
                # idempotent, so a row that did reach the database is not counted twice).
                self.spool.append(_rows(batch))
                self.spooled += len(batch)
                raise
            except Exception as exc:
                log.warning(
                    "ledger database unavailable (%s); spooling rows to %s and retrying in %.0f s",
                    type(exc).__name__, self.spool.dir, self.retry_interval,
                )  # fmt: skip
                self._degraded_until = time.monotonic() + self.retry_interval
                await self._to_spool(batch)
                return
            self.written += len(batch)
            if len(self._q) >= self._high_water:
                # The database keeps up too slowly: move the backlog to disk rather than let the
                # queue fill and push rows through the request path's overflow.
                await self._to_spool(self._take(len(self._q)))
            elif self.spool.pending() and not self._stop.is_set():
                await self.replay()
        finally:
            self._inflight = []

    async def _to_spool(self, batch: list[Queued]) -> None:
        if batch:
            await asyncio.to_thread(self.spool.append, _rows(batch))
            self.spooled += len(batch)

    async def replay(self) -> int:
        """Insert the spooled rows into the database; returns how many rows were replayed."""
        await asyncio.to_thread(self.spool.rotate)
        done = 0
        for path in self.spool.segments():
            try:
                f = open(path, "rb")  # noqa: ASYNC230 - a local file: opened here, read in a thread
            except FileNotFoundError:
                continue  # another process replayed it
            try:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being written or replayed by another process
                if not path.exists():
                    continue
                n = 0
                while rows := await asyncio.to_thread(Spool.read_some, f, self.batch_size):
                    # A replay stopped half-way is taken up again from the start: inserts are
                    # idempotent, so the rows already in add nothing.
                    await asyncio.wait_for(self.store.insert_ledger(rows), self.write_timeout)
                    n += len(rows)
                path.unlink(missing_ok=True)
                done += n
            except Exception as exc:
                log.warning("ledger spool replay stopped (%s); will retry", type(exc).__name__)
                self._degraded_until = time.monotonic() + self.retry_interval
                break
            finally:
                f.close()
        if done:
            self.replayed += done
            log.info("ledger: replayed %d spooled row(s) into the database", done)
        return done

    async def close(self, limit: float | None = None) -> None:
        """Drain everything: into the database if it answers in time, else into the spool."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            budget = limit if limit is not None else self.write_timeout * 2 + 5.0
            try:
                await asyncio.wait_for(asyncio.shield(self._task), budget)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            except Exception:
                log.exception("ledger writer failed while closing")
        # Whatever is left (rows queued after the writer stopped) goes to disk.
        left = self._take(len(self._q))
        if left:
            self.spool.append(_rows(left))
            self.spooled += len(left)
        if self.spool.pending():
            # Rows spooled during a database hiccup just before the stop: one bounded attempt to
            # put them in the database now, rather than at the next start on this disk.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.replay(), self.write_timeout)
        self.spool.rotate()
        self._idle.set()
