"""Ledger rows exactly match the requests made — streamed and not, failed and retried — with
costs from the price table, on SQLite and on a real PostgreSQL server; the official openai SDK is
the client and the OpenAI protocol emulator the upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.governance import Governed, db_url, governance_yaml, governed  # noqa: F401
from tests.helpers.services import postgres  # noqa: F401

pytestmark = pytest.mark.integration

# USD per million tokens, set in the config so the arithmetic below is exact.
IN, OUT, CACHED = 1.0, 2.0, 0.5


def config(emu: EmulatorServer, db: str, spool: Path) -> str:
    base = emu.sdk_base_url
    return governance_yaml(db, spool) + f"""
providers:
  up-a: {{type: openai, base_url: '{base}', api_key: sk-upstream-a}}
  up-b: {{type: openai, base_url: '{base}', api_key: sk-upstream-b}}
models:
  chat:
    retry: {{retries: 0}}
    deployments:
      - {{provider: up-a, model: gpt-4o-mini, input_price: {IN}, output_price: {OUT}, cached_input_price: {CACHED}}}
  failover:
    retry: {{retries: 0}}
    deployments:
      - {{provider: up-b, model: gpt-4o-mini, input_price: 3.0, output_price: 4.0}}
      - {{provider: up-a, model: gpt-4o-mini, input_price: {IN}, output_price: {OUT}}}
  listed:
    deployments: [{{provider: up-a, model: gpt-4o}}]
"""


def expected_cost(row: dict[str, Any], pin: float = IN, pout: float = OUT, pcached: float = CACHED) -> float:
    uncached = row["input_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
    return (uncached * pin + row["cached_tokens"] * pcached + row["output_tokens"] * pout) / 1e6


def _rid(headers: Any) -> str:
    rid = headers.get("x-request-id")
    assert rid, "every answer names its request id"
    return str(rid)


def test_ledger_rows_match_requests(openai_emulator: EmulatorServer, db_url: str, tmp_path: Path) -> None:  # noqa: F811
    with governed(config(openai_emulator, db_url, tmp_path / "spool")) as g:
        key = g.create_key(name="ledger-test")
        c = openai.OpenAI(base_url=g.openai_base, api_key=key["key"], max_retries=0)
        msgs = [{"role": "user", "content": "count the ledger rows please"}]
        made: dict[str, str] = {}  # request id -> what the test did

        # 1. plain, with tags and end user
        raw = c.chat.completions.with_raw_response.create(
            model="chat", messages=msgs, max_tokens=50, extra_body={"polyroute": {"tags": ["t1", "t2"], "end_user": "u-9"}}
        )
        plain = raw.parse()
        made[_rid(raw.headers)] = "plain"

        # 2. streamed
        raw = c.chat.completions.with_raw_response.create(model="chat", messages=msgs, stream=True)
        chunks = list(raw.parse())
        assert all(not ch.usage for ch in chunks), "the usage chunk the client did not ask for stays hidden"
        made[_rid(raw.headers)] = "stream"

        # 3. cached prompt tokens and reasoning tokens
        openai_emulator.enqueue(Behaviour(cached_tokens=4, thinking="let me think about it for a while"))
        raw = c.chat.completions.with_raw_response.create(
            model="chat", messages=msgs, reasoning_effort="low"
        )
        cached = raw.parse()
        made[_rid(raw.headers)] = "cached"

        # 4. first deployment fails (503), the second serves
        openai_emulator.enqueue(Behaviour(status=503))
        raw = c.chat.completions.with_raw_response.create(model="failover", messages=msgs)
        made[_rid(raw.headers)] = "failover"

        # 5. a client error: not retried
        openai_emulator.enqueue(Behaviour(status=400, error_message="bad thing"))
        with pytest.raises(openai.BadRequestError) as bad:
            c.chat.completions.create(model="chat", messages=msgs)
        made[_rid(bad.value.response.headers)] = "bad"

        # 6. every deployment fails
        openai_emulator.enqueue(Behaviour(status=503), Behaviour(status=503))
        with pytest.raises(openai.APIStatusError) as down:
            c.chat.completions.create(model="failover", messages=msgs)
        made[_rid(down.value.response.headers)] = "down"

        # 7. a stream cut after a few events: priced from what was streamed
        openai_emulator.enqueue(Behaviour(text="one two three four five six seven eight", disconnect_after=4))
        raw = c.chat.completions.with_raw_response.create(model="chat", messages=msgs, stream=True)
        made[_rid(raw.headers)] = "cut"
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error class for a broken stream varies
            list(raw.parse())

        # 8. refused by governance: a model outside the key's allow-list
        limited = g.create_key(name="only-chat", allowed_models=["chat"])
        c2 = openai.OpenAI(base_url=g.openai_base, api_key=limited["key"], max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c2.chat.completions.create(model="listed", messages=msgs)
        made[_rid(denied.value.response.headers)] = "denied"

        rows = {r["request_id"]: r for r in g.ledger()}
        assert set(rows) == set(made), "one row per request, no more, no less"
        by = {what: rows[rid] for rid, what in made.items()}
        assert all(r["key_id"] in (key["id"], limited["id"]) and r["team_id"] == key["team_id"] for r in rows.values())

        r = by["plain"]
        assert plain.usage is not None
        assert (r["input_tokens"], r["output_tokens"]) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
        assert r["status"] == 200 and r["error_class"] is None and not r["stream"] and not r["estimated"]
        assert r["tags"] == ["t1", "t2"] and r["end_user"] == "u-9"
        assert r["model_asked"] == "chat" and r["provider"] == "up-a" and r["vendor"] == "openai"
        assert r["deployment"] and r["attempts"] == 1 and r["latency_ms"] > 0
        assert r["cost"] == pytest.approx(expected_cost(r), rel=1e-9) and r["cost"] > 0

        r = by["stream"]
        assert r["stream"] and r["status"] == 200 and not r["estimated"] and r["output_tokens"] > 0
        assert r["ttft_ms"] is not None and 0 < r["ttft_ms"] <= r["latency_ms"]
        assert r["cost"] == pytest.approx(expected_cost(r), rel=1e-9)

        r = by["cached"]
        assert cached.usage is not None and cached.usage.prompt_tokens_details is not None
        assert r["cached_tokens"] == cached.usage.prompt_tokens_details.cached_tokens == 4
        assert cached.usage.completion_tokens_details is not None
        assert r["reasoning_tokens"] == cached.usage.completion_tokens_details.reasoning_tokens > 0
        assert r["output_tokens"] == cached.usage.completion_tokens  # reasoning inside, not added again
        assert r["cost"] == pytest.approx(expected_cost(r), rel=1e-9)

        r = by["failover"]
        assert r["status"] == 200 and r["attempts"] == 2 and r["provider"] == "up-a"
        att = g.attempts(r["request_id"])
        assert [a["status"] for a in att] == [503, 200] and [a["provider"] for a in att] == ["up-b", "up-a"]
        assert r["cost"] == pytest.approx(sum(a["cost"] for a in att), rel=1e-9)

        r = by["bad"]
        assert r["status"] == 400 and r["error_class"] == "InvalidRequest" and r["attempts"] == 1

        r = by["down"]
        assert r["status"] == 503 and r["attempts"] == 2 and r["error_class"] == "AllProvidersFailed"
        assert [a["status"] for a in g.attempts(r["request_id"])] == [503, 503]

        r = by["cut"]
        assert r["stream"] and r["status"] >= 400 and r["error_class"] is not None
        assert r["estimated"] and r["output_tokens"] > 0, "a partial stream is priced from what was streamed"
        assert r["cost"] == pytest.approx(expected_cost(r), rel=1e-9) and r["cost"] > 0

        r = by["denied"]
        assert r["status"] == 403 and r["error_class"] == "PermissionDenied" and r["attempts"] == 0
        assert r["cost"] == 0 and r["key_id"] == limited["id"]

        # The spend report adds up to the same money.
        status, spend, _ = g.admin("GET", "/admin/spend?by=key&since=1h")
        assert status == 200
        assert spend["total_cost"] == pytest.approx(sum(r["cost"] for r in rows.values()), rel=1e-9)
