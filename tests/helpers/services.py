"""Real PostgreSQL and Redis servers for tests, from the installed binaries, in temporary directories.

    with postgres_server() as pg:          # initdb + pg_ctl on a free loopback port
        dsn = pg.create_database()         # a fresh, empty database: postgresql://...
        pg.stop(); pg.start()              # an outage, for tests of what survives one
    with redis_server() as rs:
        url = rs.url                       # redis://127.0.0.1:PORT/0
        rs.stop(kill=True); rs.start()     # a Redis crash; persistent=True keeps its data
        rs.stop(); rs.start()              # an outage (no persistence: the data is gone after it)

As pytest fixtures (import them into a test module, or a conftest):
    from tests.helpers.services import postgres, postgres_dsn, redis_url  # noqa: F401
    from tests.helpers.services import own_redis  # a Redis of its own, to stop and restart

`postgres` and `redis` are one server per test session; `postgres_dsn` is a new database per test.
Debian/Ubuntu packages: postgresql (server binaries in /usr/lib/postgresql/<version>/bin) and
redis-server. When a binary is missing the fixtures skip, except under CI (CI=true), where a
missing server is a broken machine and fails loudly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    pass


def stop_process(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGTERM (SIGKILL when `kill`: a crash), SIGKILL if it is still there after 10 s; returns
    once the process is gone."""
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"server on port {port} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"nothing listens on 127.0.0.1:{port} in time")


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's bindir, Debian's versioned dir, or PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)  # fmt: skip
    candidates += [Path(p) for p in versions]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


class PostgresServer:
    def __init__(self, bindir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.run_as = run_as
        self.user = "postgres"
        self.host = "127.0.0.1"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
            user=self.run_as, cwd=self.root, check=False,
        )  # fmt: skip

    def init(self) -> None:
        r = self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync")
        if r.returncode != 0:
            raise ServiceUnavailable(f"initdb failed: {r.stderr.strip()[-2000:]}")

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        r = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w",
                      "-t", "60", "start")  # fmt: skip
        if r.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise ServiceUnavailable(f"pg_ctl start failed: {r.stderr.strip()} {log[-2000:]}")
        _wait_port(self.port, time.monotonic() + 30)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def sql(self, statement: str, database: str = "postgres") -> str:
        psql = self.bindir / "psql"
        exe = str(psql) if psql.exists() else (shutil.which("psql") or "psql")
        r = subprocess.run(
            [exe, "-X", "-q", "-A", "-t", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its DSN."""
        name = name or "t_" + uuid.uuid4().hex[:16]
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        raise ServiceUnavailable("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="polyroute-pg-"))
    run_as: str | None = None
    if os.geteuid() == 0:
        # The server refuses to run as root: run it as the `postgres` account the package made.
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise ServiceUnavailable("running as root and there is no 'postgres' user to run PostgreSQL as") from None
        os.chown(root, pw.pw_uid, pw.pw_gid)
        run_as = "postgres"
    server = PostgresServer(bindir, root, free_port(), run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# --- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """One redis-server on a fixed loopback port; `stop()` and `start()` make an outage (same port).

    `persistent`: an append-only file fsynced on every write, so what Redis acknowledged survives
    `stop(kill=True)` (SIGKILL) and is there again after `start()`; otherwise a restart is empty."""

    def __init__(self, exe: str, port: int, root: Path, *, persistent: bool = False) -> None:
        self.exe = exe
        self.port = port
        self.root = root
        self.persistent = persistent
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def start(self) -> None:
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persist, "--dir",
             str(self.root), "--daemonize", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, time.monotonic() + 30, self.proc)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if self.ping():
                    return
            if time.monotonic() > deadline:
                raise ServiceUnavailable("redis-server does not answer PING")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL: a crash); returns once the process is gone and the port is free."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc, kill=kill)


@contextlib.contextmanager
def redis_server(*, persistent: bool = False) -> Iterator[RedisServer]:
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if exe is None:
        raise ServiceUnavailable("redis-server not found (Debian: apt-get install redis-server)")
    root = Path(tempfile.mkdtemp(prefix="polyroute-redis-"))
    server = RedisServer(exe, free_port(), root, persistent=persistent)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- pytest fixtures -----------------------------------------------------------------------------


def _unavailable(exc: ServiceUnavailable) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"required test service unavailable: {exc}")
    pytest.skip(str(exc))


def _session_service(start: Callable[[], AbstractContextManager[T]]) -> Iterator[T]:
    """Start a service for the session; skip (fail under CI) when its binaries are missing."""
    try:
        cm = start()
        server = cm.__enter__()
    except ServiceUnavailable as exc:
        _unavailable(exc)
        raise
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from _session_service(postgres_server)


@pytest.fixture
def postgres_dsn(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    yield from _session_service(redis_server)


@pytest.fixture
def redis_url(redis: RedisServer) -> str:
    return redis.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis for this test alone (persistent), for tests that stop and restart it."""
    yield from _session_service(lambda: redis_server(persistent=True))
