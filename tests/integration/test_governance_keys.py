"""Virtual keys through the official openai SDK: who gets in, which models they reach, revocation,
and the open gateway when governance is not configured."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.governance.keys import Limits
from polyroute.governance.manage import create_key, ensure_team
from polyroute.governance.store import Store
from tests.helpers.gateway import run_gateway
from tests.helpers.governance import MASTER, governance_yaml, governed, http

pytestmark = pytest.mark.integration

MSGS = [{"role": "user", "content": "hello"}]


def models(emu: EmulatorServer) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: sk-upstream}}
models:
  cheap:
    retry: {{retries: 0}}
    fallbacks: [premium, other]
    deployments: [{{provider: up, model: gpt-4o-mini}}]
  premium:
    retry: {{retries: 0}}
    deployments: [{{provider: up, model: gpt-4o}}]
  other:
    retry: {{retries: 0}}
    deployments: [{{provider: up, model: gpt-4o-mini}}]
"""


def test_open_gateway_without_governance(openai_emulator: EmulatorServer) -> None:
    with run_gateway(models(openai_emulator)) as g:
        assert g.gateway.policies == [] or all(type(p).__name__ != "Governance" for p in g.gateway.policies)
        c = openai.OpenAI(base_url=g.openai_base, api_key="anything", max_retries=0)
        assert c.chat.completions.create(model="cheap", messages=MSGS).choices


def test_ledger_without_keys_stays_open(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool", master=False) + models(openai_emulator)
    with governed(cfg) as g:
        c = openai.OpenAI(base_url=g.openai_base, api_key="whatever-the-sdk-sends", max_retries=0)
        c.chat.completions.create(model="cheap", messages=MSGS)
        rows = g.ledger()
        assert len(rows) == 1 and rows[0]["key_id"] is None and rows[0]["status"] == 200
        # The first key made (here as the CLI would, straight into the database) closes the door
        # within the key cache's TTL.
        g.run(_make_key(g.gov.store))
        deadline = time.monotonic() + 10
        while True:
            try:
                c.chat.completions.create(model="cheap", messages=MSGS)
            except openai.AuthenticationError:
                break
            assert time.monotonic() < deadline, "keys in the database must close an open gateway"
            time.sleep(0.05)


async def _make_key(store: Store, **limits: object) -> str:
    team = await ensure_team(store, "default")
    _, secret = await create_key(store, team, "cli", Limits(**limits), None)  # type: ignore[arg-type]
    return secret


def test_keys_master_revocation_and_expiry(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool") + models(openai_emulator)
    with governed(cfg) as g:
        def client(k: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=g.openai_base, api_key=k, max_retries=0)

        status, body, headers = http("POST", g.openai_base + "/chat/completions", {"model": "cheap", "messages": MSGS})
        assert status == 401 and body["error"]["code"] == "missing_api_key"
        assert headers.get("x-should-retry") == "false"
        with pytest.raises(openai.AuthenticationError):
            client("sk-pr-not-a-real-key").chat.completions.create(model="cheap", messages=MSGS)
        assert client(MASTER).chat.completions.create(model="premium", messages=MSGS).choices

        key = g.create_key(name="k1")
        assert key["key"].startswith("sk-pr-") and key["prefix"] == key["key"][:12]
        client(key["key"]).chat.completions.create(model="cheap", messages=MSGS)

        # Revoked through the admin API: refused on the very next request.
        status, body, _ = g.admin("POST", "/admin/keys/revoke", {"id": key["prefix"]})
        assert status == 200 and body["revoked_at"]
        with pytest.raises(openai.AuthenticationError) as revoked:
            client(key["key"]).chat.completions.create(model="cheap", messages=MSGS)
        assert "revoked" in revoked.value.message

        # Made by the CLI (another process, straight into the database): works on its first request.
        secret = g.run(_make_key(g.gov.store))
        client(secret).chat.completions.create(model="cheap", messages=MSGS)
        # Revoked by the CLI: refused within the cache TTL (0.2 s here).
        kid = next(k.id for k in g.run(g.gov.store.keys()) if k.name == "cli")
        g.run(g.gov.store.revoke_key(kid))
        deadline = time.monotonic() + 10
        while True:
            try:
                client(secret).chat.completions.create(model="cheap", messages=MSGS)
            except openai.AuthenticationError:
                break
            assert time.monotonic() < deadline, "a CLI revocation must reach the gateway"
            time.sleep(0.05)

        expiring = g.create_key(name="short", expires_in_days=1e-9)
        with pytest.raises(openai.AuthenticationError) as expired:
            client(expiring["key"]).chat.completions.create(model="cheap", messages=MSGS)
        assert "expired" in expired.value.message


def test_allow_list_also_through_fallbacks_and_model_lists(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool") + models(openai_emulator)
    with governed(cfg) as g:
        team = g.create_team("cheapskates", allowed_models=["cheap", "oth*"])
        key = g.create_key(team="cheapskates", allowed_models=["cheap", "premium", "other"])
        c = openai.OpenAI(base_url=g.openai_base, api_key=key["key"], max_retries=0)
        c.chat.completions.create(model="cheap", messages=MSGS)
        # The key allows premium, its team does not.
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.chat.completions.create(model="premium", messages=MSGS)
        assert denied.value.code == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(model="cheap", messages=MSGS, extra_body={"polyroute": {"models": ["premium"]}})
        # cheap fails: its fallbacks are premium (not allowed: skipped) and other (allowed: serves).
        openai_emulator.enqueue(Behaviour(status=503))
        raw = c.chat.completions.with_raw_response.create(model="cheap", messages=MSGS)
        assert raw.headers["x-polyroute-deployment"].startswith("other/")
        served = [r.body.get("model") for r in openai_emulator.requests[-2:]]
        assert "gpt-4o" not in served, "the premium deployment was never called"
        assert team["allowed_models"] == ["cheap", "oth*"]


def test_admin_api_needs_master_key_and_is_audited(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool") + models(openai_emulator)
    with governed(cfg) as g:
        key = g.create_key(name="someone")
        for k in (None, "wrong", key["key"]):
            status, body, _ = g.admin("GET", "/admin/keys", key=k)
            assert status == 401 and "master key" in body["error"]["message"]
        status, body, _ = g.admin("POST", "/admin/keys", {"rpm": 0})
        assert status == 400 and "rpm" in body["error"]["message"]
        status, body, _ = g.admin("POST", "/admin/teams/update", {"name": "nope", "rpm": 5})
        assert status == 404
        status, listing, _ = g.admin("GET", "/admin/keys")
        assert status == 200 and [k["id"] for k in listing["data"]] == [key["id"]]
        assert "key" not in listing["data"][0] and "key_hash" not in listing["data"][0]
        status, body, _ = g.admin("POST", "/admin/keys/update", {"id": key["id"], "tpm": 1000, "budget_daily": 2.5})
        assert status == 200 and body["tpm"] == 1000 and body["budget_daily"] == 2.5
        status, usage, _ = g.admin("GET", f"/admin/keys/usage?id={key['id']}")
        assert status == 200 and usage["usage"]["key"]["spent_day"] == 0
        status, audit, _ = g.admin("GET", "/admin/audit")
        actions = [a["action"] for a in audit["data"]]
        assert actions.count("auth.failed") == 3
        assert {"keys.create", "keys.list", "keys.update", "keys.usage.read"} <= set(actions)
        created = next(a for a in audit["data"] if a["action"] == "keys.create")
        assert created["actor"] == "master" and created["target"] == key["id"] and created["source"]
