"""A gateway with governance for tests: admin calls, ledger reads, flushes, and the DB fixture.

    with governed(yaml_text) as g:
        key = g.create_key(rpm=5)["key"]
        ...
        rows = g.ledger()          # waits until every finished request's row is written

`db_url` is a fixture parametrized over SQLite (a file) and PostgreSQL (a fresh database on the
server from tests/helpers/services.py), so one test checks both implementations.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from polyroute.emulators.testing import EmulatorServer
from polyroute.governance.policy import Governance
from polyroute.governance.setup import install_admin
from tests.helpers.gateway import RunningGateway, run_gateway
from tests.helpers.services import PostgresServer

MASTER = "master-key-for-tests-0123456789"


class Governed:
    def __init__(self, g: RunningGateway) -> None:
        self.g = g
        self.gov = next(p for p in g.gateway.policies if isinstance(p, Governance))
        self.base_url = g.base_url
        self.openai_base = g.openai_base

    def run(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the gateway's event loop (its database connections live there)."""
        assert self.gov.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.gov.loop).result(timeout)

    def flush(self) -> None:
        if self.gov.ledger is not None:
            self.run(self.gov.ledger.flush())

    def ledger(self) -> list[dict[str, Any]]:
        self.flush()
        rows: list[dict[str, Any]] = self.run(self.gov.store.ledger_rows(limit=100_000))
        return sorted(rows, key=lambda r: r["ts"])

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        return self.run(self.gov.store.attempt_rows(request_id))

    def admin(self, method: str, path: str, body: Any = None, key: str | None = MASTER) -> tuple[int, Any, dict[str, str]]:
        return http(method, self.base_url + path, body, key)

    def create_key(self, **fields: Any) -> dict[str, Any]:
        status, body, _ = self.admin("POST", "/admin/keys", fields)
        assert status == 200, body
        return body

    def create_team(self, name: str, **fields: Any) -> dict[str, Any]:
        status, body, _ = self.admin("POST", "/admin/teams", {"name": name, **fields})
        assert status == 200, body
        return body


def http(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw, status, h = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        raw, status, h = exc.read(), exc.code, dict(exc.headers)
    return status, json.loads(raw) if raw else None, {k.lower(): v for k, v in h.items()}


@contextmanager
def governed(config: str, **kwargs: Any) -> Iterator[Governed]:
    with run_gateway(config, **kwargs) as g:
        install_admin(g.app)
        yield Governed(g)


def governance_yaml(
    db_url: str, spool: Path, *, master: bool = True, extra: str = "", governance: str = ""
) -> str:
    """The governance sections of a test config (append providers and models); `governance` adds
    fields to the governance section, e.g. "counters: redis, redis_url: '...'"."""
    server = f"server: {{master_key: '{MASTER}'}}\n" if master else ""
    fields = "key_cache_ttl: 0.2" + (f", {governance}" if governance else "")
    return (
        f"{server}database: {{url: '{db_url}'}}\n"
        f"ledger: {{spool_dir: '{spool}', flush_interval: 0.01}}\n"
        f"governance: {{{fields}}}\n{extra}"
    )


def priced_chat_config(emu: EmulatorServer, tmp_path: Path, *, extra: str = "", governance: str = "") -> str:
    """A governed gateway with one model `chat` on `emu`. Output costs $1000 per million tokens
    (each output token $0.001) and input nothing, so every answer moves budgets visibly."""
    return governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool", extra=extra, governance=governance) + f"""
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: sk-upstream}}
models:
  chat:
    retry: {{retries: 0}}
    deployments: [{{provider: up, model: gpt-4o-mini, input_price: 0, output_price: 1000}}]
"""


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/governance.db"
    pg: PostgresServer = request.getfixturevalue("postgres")
    return pg.create_database()
