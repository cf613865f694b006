"""The deployment of docs/deployment.md, for real: a PostgreSQL, a Redis, two `polyroute serve`
instances (one with two workers: three gateway processes) started from the doc's config file, and
nginx from the doc's block balancing round robin over them. Through nginx:

- a key with `rpm: N`, hammered from many clients for several GCRA emission intervals, is
  admitted no more than the documented bound in any window, at the sustained rate after its
  burst, and (so the limit is not simply too strict) as much as the bound allows;
- a key with a hard daily budget, spent concurrently on every process, is never overspent, and
  is refused only once what remains is less than one request's reservation;
- after SIGTERM to every instance, the ledger holds exactly one row per request sent (served or
  refused), keyed by the `x-request-id` each client got, with the status the client saw.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from polyroute.emulators.testing import EmulatorServer
from tests.helpers.governance import governed, http
from tests.helpers.nginx import nginx_binary, run_nginx
from tests.helpers.services import PostgresServer, free_port, postgres, redis, redis_url  # noqa: F401

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
MASTER = "master-key-multi-instance-0123456789"
START_TIMEOUT = 60.0

RPM = 120  # GCRA: a burst of 120, then one request per 0.5 s
HAMMER_SECONDS = 8.0  # 16 emission intervals after the burst
RATE_CLIENTS = 16
BUDGET = 0.05  # USD per day
BUDGET_CLIENTS = 12
MAX_TOKENS = 5
BURST = 40  # concurrent first requests of a key this process has not seen yet


def config_from_doc(emu: EmulatorServer, spool: Path) -> str:
    """docs/deployment.md's config file, with the emulator as the only provider and the spool in
    `spool` (both instances run on this host: they share it, as the workers of one instance do)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    block = next((b for b in blocks if "the same file on every instance" in b), None)
    assert block, "docs/deployment.md lost its config file example"
    cfg: dict[str, Any] = yaml.safe_load(block)
    assert cfg["governance"]["counters"] == "redis" and "${" in cfg["database"]["url"]
    cfg["ledger"]["spool_dir"] = str(spool)
    # Output at $1000 and input at $100 per million tokens: a request with max_tokens=5 reserves
    # about half a cent and costs about as much.
    cfg["providers"] = {"up": {"type": "openai", "base_url": emu.sdk_base_url, "api_key": "sk-upstream-0123456789"}}
    cfg["models"] = {
        "chat": {
            "retry": {"retries": 0},
            "deployments": [{"provider": "up", "model": "gpt-4o-mini", "input_price": 100, "output_price": 1000}],
        }
    }
    # The access log names the worker (pid) that served each request id.
    cfg.setdefault("ops", {}).setdefault("logging", {})["access_log"] = True
    return yaml.safe_dump(cfg, sort_keys=False)


@dataclass
class Instance:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def access_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                obj = json.loads(line) if line.startswith("{") else {}
            except ValueError:  # a line cut short when its process exited
                continue
            if obj.get("logger") == "polyroute.access" and obj.get("path") == "/v1/chat/completions":
                out.append(obj)
        return out

    def stop(self) -> int:
        """SIGTERM (the supervisor passes it to its workers) and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(45)
        except subprocess.TimeoutExpired:
            dumped = self.dump_stacks()
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"instance on port {self.port} did not stop on SIGTERM; the end of its log "
                f"({'with' if dumped else 'no'} stack dump):\n{self.log_tail()}"
            ) from None

    def dump_stacks(self) -> bool:
        """SIGUSR1 to every serving process of this instance (docs/operations.md#stuck-workers);
        True once the dumps are in the log."""
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        workers = pids[1:] or pids  # the supervisor itself does not handle SIGUSR1
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.log.read_text(errors="replace").count("stack dump (SIGUSR1)") >= len(workers):
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, lines: int = 60) -> str:
        kept = [ln for ln in self.log.read_text(errors="replace").splitlines() if '"polyroute.access"' not in ln]
        return "\n".join(kept[-lines:])


def _ready(port: int) -> bool:
    try:
        status, body, _ = http("GET", f"http://127.0.0.1:{port}/health/ready")
    except OSError:
        return False
    return status == 200 and body["status"] == "ready"


@contextmanager
def instance(config: Path, env: dict[str, str], workers: int, name: str) -> Iterator[Instance]:
    log = config.parent / f"{name}.log"
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers), "--log-level", "info", "--log-format", "json"],
            cwd=config.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    inst = Instance(proc, port, log)
    try:
        yield inst
    finally:
        if proc.poll() is None:  # the test failed before stopping it
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the supervisor and its workers
                proc.wait(10)


def wait_ready(instances: list[Instance]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    for inst in instances:
        while not _ready(inst.port):
            if inst.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"instance on port {inst.port} did not get ready:\n{inst.log.read_text()[-3000:]}")
            time.sleep(0.05)


def create_key(config: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "polyroute", "keys", "create", "--config", str(config), "--json", *args],
                         env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


@dataclass
class Call:
    key_id: str
    # Wall-clock times (the clock Redis decides by, on this same host): before the request left,
    # after the whole answer arrived.
    sent: float
    done: float
    status: int
    request_id: str
    code: str | None
    message: str


async def hammer(
    base: str, key: dict[str, Any], clients: int, *, until: float, stop_at_429: bool = False, rounds: int = 10**9
) -> list[Call]:
    """`clients` loops sending requests back to back until `until`, at most `rounds` each (and, with
    stop_at_429, until each one is refused)."""
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0, timeout=60)
    calls: list[Call] = []

    async def loop(w: int) -> None:
        i = 0
        while time.monotonic() < until and i < rounds:
            i += 1
            sent = time.time()
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="chat", messages=[{"role": "user", "content": f"client {w} request {i}"}],
                    max_tokens=MAX_TOKENS,
                )  # fmt: skip
                raw.parse()
                status, headers, code, message = raw.status_code, raw.headers, None, ""
            except openai.APIStatusError as exc:
                status, headers, code, message = exc.status_code, exc.response.headers, exc.code, exc.message
            calls.append(Call(key["id"], sent, time.time(), status, headers.get("x-request-id", ""), code, message))
            if stop_at_429 and status == 429:
                return

    try:
        await asyncio.gather(*(loop(w) for w in range(clients)))
    finally:
        await client.close()
    return calls


def check_rate_limit(calls: list[Call]) -> None:
    """The GCRA guarantees of docs/deployment.md#limits-and-budgets-across-instances, checked from
    the clients' clocks.

    Redis decides each request at one instant r of its own clock, inside [sent, done] of the
    client that sent it; so requests sent at or after `a` and done by `b` were decided in [a, b].
    With T = 60/N: every admission pushes the key's theoretical arrival time (TAT) by T, an
    admission needs TAT <= r + 60 - T before and leaves TAT <= r + 60 after, and a refusal at r
    means TAT > r + 60 - T. Hence, exactly (no tolerance beyond float rounding):
      (1) any d seconds admit at most N + N*d/60 (the documented bound);
      (2) after a refusal at r0, at most 1 + (r - r0)/T are admitted up to r: the sustained rate;
      (3) while clients keep asking, the bucket never refills, so at the last refusal r_z more
          than N + N*(r_z - r_1)/60 - 1 were admitted since the first admission r_1.
    """
    odd = [c for c in calls if c.status not in (200, 429)]
    assert not odd, [(c.status, c.request_id, c.message) for c in odd[:5]]
    admitted = sorted((c for c in calls if c.status == 200), key=lambda c: c.sent)
    refused = [c for c in calls if c.status == 429]
    assert all(c.code == "rate_limit_exceeded" for c in refused)
    t = 60.0 / RPM
    eps = 1e-3  # Redis keeps the TAT as a 14-digit decimal string: 0.1 ms at today's UNIX times
    n = len(admitted)
    # (1) every window [a, b]: a an admitted request's send time, b one's completion.
    for i, first in enumerate(admitted):
        ends = sorted(c.done for c in admitted[i:])
        for k, b in enumerate(ends, start=1):
            bound = RPM * (1 + (b - first.sent) / 60)
            assert k <= bound + eps, f"{k} admitted within {b - first.sent:.3f} s (bound {bound:.2f})"
    # (2) after each refusal: requests sent once it was answered were decided after it.
    sends = [c.sent for c in admitted]
    for r in refused:
        ends = sorted(c.done for c in admitted[bisect.bisect_right(sends, r.done) :])
        for k, b in enumerate(ends, start=1):
            assert k <= 1 + (b - r.sent) / t + eps, f"{k} admitted {b - r.sent:.3f} s after a refusal"
    # (3) as many as the bucket allows: N, plus one per T between the first admission and the last
    # refusal. Theory says more than N + span/T - 1; the test allows one less as a margin.
    span = max(c.sent for c in refused) - min(c.done for c in admitted)
    assert span > HAMMER_SECONDS - 2, span
    assert n >= RPM + span / t - 2, f"only {n} admitted over {span:.2f} s (expected ~{RPM + span / t:.0f})"


def ledger_diagnosis(missing: set[str], extra: set[str], instances: list[Instance], pg: PostgresServer) -> str:
    """What to look at when the ledger and the requests disagree."""
    where = {x["request_id"]: x["pid"] for inst in instances for x in inst.access_lines()}
    by_pid: dict[Any, int] = {}
    for rid in missing:
        by_pid[where.get(rid)] = by_pid.get(where.get(rid), 0) + 1
    lines = [f"{len(missing)} request(s) without a ledger row (by serving pid: {by_pid}); {len(extra)} unknown row(s)"]
    spool = sorted(instances[0].log.parent.glob("spool/*"))
    lines.append(f"spool: {[(p.name, len(p.read_bytes().splitlines())) for p in spool]}")
    for inst in instances:
        lines.append(f"{inst.log.name}:")
        lines += [line[:300] for line in inst.log.read_text(errors="replace").splitlines()
                  if '"level":"warning"' in line or '"level":"error"' in line][-20:]  # fmt: skip
    server_log = pg.root / "server.log"
    if server_log.exists():  # e.g. "deadlock detected" and the statements involved
        lines += [x[:500] for x in server_log.read_text(errors="replace").splitlines() if "ERROR" in x or "DETAIL" in x
                  or "CONTEXT" in x or "STATEMENT" in x][-12:]  # fmt: skip
    return "\n".join(lines)


def test_instances_behind_nginx_share_limits_budgets_and_ledger(
    postgres: PostgresServer, redis_url: str, openai_emulator: EmulatorServer, tmp_path: Path  # noqa: F811
) -> None:
    nginx_binary()  # skip before starting anything when nginx is missing
    dsn = postgres.create_database()
    config = tmp_path / "polyroute.yaml"
    config.write_text(config_from_doc(openai_emulator, tmp_path / "spool"))
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "POLYROUTE_CONFIG")}
    env.update(POLYROUTE_MASTER_KEY=MASTER, POLYROUTE_DATABASE_URL=dsn, POLYROUTE_REDIS_URL=redis_url)

    with ExitStack() as stack:
        a = stack.enter_context(instance(config, env, 2, "a"))
        b = stack.enter_context(instance(config, env, 1, "b"))
        wait_ready([a, b])  # the first start made the schema; the CLI below finds it
        # The documented check that every instance runs the file as it is on disk.
        out = subprocess.run([sys.executable, "-m", "polyroute", "check-config", str(config)], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
        digest = re.search(r"hash ([0-9a-f]+)", out)
        assert digest, out
        for inst in (a, b):
            assert http("GET", f"http://127.0.0.1:{inst.port}/health/ready")[1]["config_hash"] == digest.group(1)
        limited = create_key(config, env, "--name", "limited", "--rpm", str(RPM))
        budgeted = create_key(config, env, "--name", "budgeted", "--budget-daily", str(BUDGET))
        base = stack.enter_context(run_nginx(DOC, [a.port, b.port]))

        # --- rate limit: hammer for several emission intervals past the burst --------------------
        rate = asyncio.run(hammer(base, limited, RATE_CLIENTS, until=time.monotonic() + HAMMER_SECONDS,
                                  stop_at_429=False))  # fmt: skip
        check_rate_limit(rate)

        # --- budget: every client spends until refused, then one at a time until refused --------
        openai_emulator.set_behaviour(first_token_delay=0.2)  # keep requests in flight together
        spend = asyncio.run(hammer(base, budgeted, BUDGET_CLIENTS, until=time.monotonic() + 30, stop_at_429=True))
        assert {c.status for c in spend} == {200, 429}
        # Reservations released below their worst case may leave room: use it, one at a time.
        spend += asyncio.run(hammer(base, budgeted, 1, until=time.monotonic() + 30, stop_at_429=True))
        last = spend[-1]
        assert last.status == 429 and last.code == "budget_exceeded", last
        # "... (spent $S, reserved $R, this request up to $C)": nothing else in flight now.
        m = re.search(r"spent \$([\d.]+), reserved \$([\d.]+), this request up to \$([\d.]+)", last.message)
        assert m, last.message
        spent_seen, reserved_seen, reservation = map(float, m.groups())
        assert reserved_seen == 0.0
        status, usage, _ = http("GET", f"{base}/admin/keys/usage?id={budgeted['id']}", key=MASTER)
        assert status == 200, usage
        redis_spent = usage["usage"]["key"]["spent_day"]
        assert usage["usage"]["key"]["reserved_day"] == pytest.approx(0.0, abs=1e-12)

        # --- graceful stop of every instance, then the ledger ------------------------------------
        for inst in (a, b):
            inst.proc.send_signal(signal.SIGTERM)
        for inst in (a, b):
            assert inst.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean stop

    calls = rate + spend
    rows = {}
    db = dsn.rsplit("/", 1)[1]
    out = postgres.sql("SELECT request_id, key_id, status, cost, attempts FROM ledger", database=db)
    ids_seen: list[str] = []
    for line in out.splitlines():
        rid, key_id, status_s, cost_s, attempts_s = line.split("|")
        ids_seen.append(rid)
        rows[rid] = (key_id, int(status_s), float(cost_s), int(attempts_s))
    sent_ids = [c.request_id for c in calls]
    assert all(sent_ids) and len(set(sent_ids)) == len(sent_ids), "every response has its own x-request-id"
    assert len(ids_seen) == len(rows), "duplicate request ids in the ledger"
    assert set(rows) == set(sent_ids), ledger_diagnosis(set(sent_ids) - set(rows), set(rows) - set(sent_ids), [a, b], postgres)
    for c in calls:
        key_id, status, cost, attempts = rows[c.request_id]
        assert (key_id, status) == (c.key_id, c.status)
        if c.status == 429:
            assert (attempts, cost) == (0, 0.0)
        else:
            assert attempts == 1 and cost > 0

    # Budget: the ledger's spend is within the budget, agrees with Redis, and the last refusal was
    # due (what was left could not cover one more reservation).
    spent = sum(rows[c.request_id][2] for c in spend)
    assert spent <= BUDGET + 1e-12, f"spent ${spent} of a ${BUDGET} budget"
    assert redis_spent == pytest.approx(spent, abs=1e-9)
    assert spent_seen == pytest.approx(spent, abs=1e-4)  # the message rounds to 4 decimals
    assert spent + reservation > BUDGET - 1e-4

    # Spread: both phases reached both instances (nginx's round robin); over the run, each of the
    # three processes served requests. (Which of instance a's workers serves depends on which
    # worker accepted the connections nginx keeps alive, so a phase may reach only one of them.)
    # (A worker's last log lines can be lost when it exits: look up what is there.)
    where = {x["request_id"]: (name, x["pid"]) for name, inst in (("a", a), ("b", b)) for x in inst.access_lines()}
    for phase in (rate, [c for c in spend if c.status == 200]):
        assert {where[c.request_id][0] for c in phase if c.request_id in where} == {"a", "b"}
    processes = {where[c.request_id] for c in calls if c.request_id in where}
    assert len(processes) == 3, processes


@contextmanager
def slow_key_lookups(pg: PostgresServer, dsn: str, seconds: float) -> Iterator[None]:
    """Hold an exclusive lock on api_keys for `seconds` (a busy database): look-ups of keys by hash
    wait for it, as they would for a slow one."""
    db = dsn.rsplit("/", 1)[1]
    psql = [str(pg.bindir / "psql"), "-X", "-q", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", db]
    sql = f"BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT;"
    proc = subprocess.Popen([*psql, "-c", sql], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    held = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'api_keys' AND l.mode = 'AccessExclusiveLock' AND l.granted")  # fmt: skip
    deadline = time.monotonic() + 30
    while pg.sql(held, database=db) != "1":
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    try:
        yield
    finally:
        assert proc.wait(seconds + 30) == 0


def test_first_burst_of_a_key_made_elsewhere(postgres: PostgresServer, openai_emulator: EmulatorServer,  # noqa: F811
                                             tmp_path: Path) -> None:  # fmt: skip
    """A key made with the CLI (or on another instance) is unknown to this process until its key
    cache reloads; until then requests look it up in the database, at most 20 look-ups a second
    per process (against floods of invalid keys). A burst with that one valid key, while the
    database is slow, shares one look-up: none of it is refused as an invalid key."""
    dsn = postgres.create_database()
    cfg = yaml.safe_load(config_from_doc(openai_emulator, tmp_path / "spool"))
    cfg["governance"] = {"key_cache_ttl": 60}  # no limits here; no cache reload during the test
    del cfg["routing_state"]
    config = tmp_path / "polyroute.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "POLYROUTE_MASTER_KEY": MASTER, "POLYROUTE_DATABASE_URL": dsn}
    with governed(config.read_text(), env=env) as g:
        key = create_key(config, env, "--name", "made-elsewhere")  # after this process loaded its keys
        with slow_key_lookups(postgres, dsn, 1.5):
            calls = asyncio.run(hammer(g.base_url, key, BURST, until=time.monotonic() + 30, rounds=1))
        assert sorted(c.status for c in calls) == [200] * BURST
        assert len(g.ledger()) == BURST


def test_an_instance_without_its_database_exits_with_failure(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    """A gateway cannot start without PostgreSQL (migrations, keys). With several workers the
    supervisor stops when one fails to start; its exit status must say so (3, as one worker's
    does), or systemd's Restart=on-failure would take it for a clean stop and leave it down."""
    config = tmp_path / "polyroute.yaml"
    config.write_text(config_from_doc(openai_emulator, tmp_path / "spool"))
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "POLYROUTE_CONFIG")}
    # Nothing listens on the port of a socket this test holds bound and unlistened.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env.update(POLYROUTE_MASTER_KEY=MASTER, POLYROUTE_REDIS_URL="redis://127.0.0.1:1/0",
                   POLYROUTE_DATABASE_URL=f"postgresql://polyroute@127.0.0.1:{s.getsockname()[1]}/polyroute")  # fmt: skip
        with instance(config, env, 2, "nodb") as inst:
            assert inst.proc.wait(60) == 3, inst.log.read_text()[-2000:]
            assert "cannot connect to PostgreSQL" in inst.log.read_text()
