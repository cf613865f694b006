"""The dashboard's data endpoints over real traffic: the official openai SDK through the gateway to
protocol emulators, then what the overview, ledger, keys, routes, vendors, compare and playground
endpoints say about it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from polyroute.cli import main as cli_main
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.learned_router.records import load_records
from tests.helpers.governance import MASTER, governance_yaml
from tests.helpers.ui import UIClient, ui_gateway

pytestmark = pytest.mark.integration

MSGS = [{"role": "user", "content": "hello there"}]


def config(tmp_path: Path, main: EmulatorServer, other: EmulatorServer) -> str:
    # "local" is a generic OpenAI-compatible server: its own vendor, so "smart" has a second vendor.
    return governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool") + f"""
providers:
  up: {{type: openai, base_url: '{main.sdk_base_url}', api_key: sk-upstream,
        breaker: {{consecutive_failures: 2, cooldown: 60}}}}
  local: {{type: openai_compatible, base_url: '{other.sdk_base_url}', api_key: sk-local}}
models:
  smart:
    retry: {{retries: 0}}
    deployments:
      - {{provider: up, model: gpt-4o, rpm: 600, max_concurrency: 8}}
      - {{provider: local, model: llama, input_price: 0.1, output_price: 0.2}}
  cheap:
    retry: {{retries: 0}}
    deployments: [{{provider: up, model: gpt-4o-mini}}]
"""


def login(c: UIClient) -> None:
    status, body = c.login(MASTER)
    assert status == 200, body


def test_traffic_appears_in_overview_ledger_and_keys(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    main, other = emulator_factory("openai"), emulator_factory("openai")
    with ui_gateway(config(tmp_path, main, other), tmp_path) as u:
        c = u.client()
        login(c)
        status, key = c.post("keys/create", {"name": "bot", "budget_daily": 5.0})
        assert status == 200 and key["key"].startswith("sk-pr-")
        sdk = openai.OpenAI(base_url=u.g.openai_base, api_key=key["key"], max_retries=0)
        for _ in range(3):
            sdk.chat.completions.create(model="cheap", messages=MSGS)
        with sdk.chat.completions.create(model="smart", messages=MSGS, stream=True,
                                         stream_options={"include_usage": True}) as stream:  # fmt: skip
            text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert "hello there" in text
        main.enqueue(Behaviour(status=400, error_message="bad thing"))
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="cheap", messages=MSGS)
        u.flush()

        status, ov = c.get("overview", since="1h", key=key["id"])
        assert status == 200
        t = ov["totals"]
        assert t["requests"] == 5 and t["errors"] == 1
        assert t["cost"] > 0 and t["input_tokens"] > 0 and t["latency_p50"] > 0
        assert t["ttft_p50"] is not None  # the one stream
        assert sum(ov["series"]["requests"]) == 5 and len(ov["t"]) == len(ov["series"]["requests"])
        assert c.get("overview", since="1h", key="key_nobody")[1]["totals"]["requests"] == 0
        assert c.get("overview", since="1h", model="smart")[1]["totals"]["requests"] == 1
        assert c.get("overview", since="1h", provider="up")[1]["totals"]["requests"] == 4  # the 400 has no provider
        assert c.get("overview", since="nonsense")[0] == 400

        status, br = c.get("overview/breakdown", since="1h")
        assert {r["model"]: r["requests"] for r in br["model"]} == {"cheap": 4, "smart": 1}
        assert [r["key"] for r in br["key"]] == [key["id"]]

        status, page = c.get("ledger", since="1h", limit=2)
        assert status == 200 and len(page["rows"]) == 2 and page["next"]
        rest = c.get("ledger", since="1h", limit=50, cursor=page["next"])[1]
        ids = [r["request_id"] for r in page["rows"] + rest["rows"]]
        assert len(ids) == 5 == len(set(ids)) and rest["next"] is None
        errors = c.get("ledger", since="1h", status="error")[1]["rows"]
        assert len(errors) == 1 and errors[0]["status"] == 400
        status, detail = c.get("ledger/request", id=errors[0]["request_id"])
        assert detail["error_class"] and detail["attempt_rows"][0]["status"] == 400
        assert c.get("ledger/request", id="req_nope")[0] == 404
        found = c.get("ledger", request_id=ids[0])[1]["rows"]
        assert [r["request_id"] for r in found] == [ids[0]]

        status, keys = c.get("keys")
        row = next(k for k in keys["keys"] if k["id"] == key["id"])
        assert row["requests_month"] == 5 and row["spend_today"] == pytest.approx(t["cost"])
        assert row["budget_status"]["spent_day"] == pytest.approx(t["cost"])  # what enforcement counts
        assert "key_hash" not in json.dumps(keys) and key["key"] not in json.dumps(keys)

        # Limits from the dashboard are enforced on the next request.
        assert c.post("keys/update", {"id": key["id"], "allowed_models": ["smart"]})[0] == 200
        with pytest.raises(openai.PermissionDeniedError):
            sdk.chat.completions.create(model="cheap", messages=MSGS)
        assert c.post("keys/update", {"id": key["id"], "rpm": -1})[0] == 400
        assert c.post("keys/revoke", {"id": key["id"]})[0] == 200
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="smart", messages=MSGS)
        status, keys = c.get("keys")
        assert key["id"] not in {k["id"] for k in keys["keys"]}
        assert key["id"] in {k["id"] for k in c.get("keys", revoked="1")[1]["keys"]}


def test_failover_breakers_routes_and_vendor_coverage(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    main, other = emulator_factory("openai"), emulator_factory("openai")
    main.set_behaviour(Behaviour(status=503))
    with ui_gateway(config(tmp_path, main, other), tmp_path) as u:
        c = u.client()
        login(c)
        sdk = openai.OpenAI(base_url=u.g.openai_base, api_key=MASTER, max_retries=0)
        for _ in range(3):
            sdk.chat.completions.create(model="smart", messages=MSGS)
        u.flush()
        rows = c.get("ledger", since="1h", model="smart")[1]["rows"]
        assert [r["attempts"] for r in rows] == [1, 2, 2]  # newest first: the breaker opened after two
        detail = c.get("ledger/request", id=rows[-1]["request_id"])[1]
        assert [(a["vendor"], a["status"]) for a in detail["attempt_rows"]] == [("openai", 503), ("local", 200)]

        routes = {r["name"]: r for r in c.get("routes")[1]["routes"]}
        smart = {d["provider"]: d for d in routes["smart"]["deployments"]}
        assert smart["up"]["breaker"]["state"] == "open" and smart["up"]["status"] == "down"
        assert smart["up"]["breaker"]["retry_in"] > 0 and smart["up"]["breaker"]["opened"] == 1
        assert smart["local"]["status"] == "healthy" and smart["local"]["breaker"]["state"] == "closed"
        assert smart["up"]["capacity"]["rpm"] == 600 and smart["up"]["capacity"]["max_concurrency"] == 8
        assert smart["local"]["capacity"]["requests_last_minute"] == 3
        assert routes["smart"]["strategy"] == "priority"

        v = c.get("vendors", since="1h")[1]
        cov = {m["model"]: m for m in v["models"]}
        assert cov["smart"]["primary_vendor"] == "openai" and cov["smart"]["primary_status"] == "down"
        assert cov["smart"]["other_vendor"]["available"] and cov["smart"]["other_vendor"]["now"] == "healthy"
        assert not cov["smart"]["inhouse"]["available"]
        assert not cov["cheap"]["other_vendor"]["available"]
        totals = {t["vendor"]: t for t in v["totals"]}
        assert totals["local"]["requests"] == 3 and totals["local"]["requests_share"] == 1.0
        assert totals["openai"]["failed_attempts"] == 2
        assert totals["openai"]["models_broken_if_lost"] == ["cheap"]
        # Without "local", smart is left with a deployment whose breaker is open: at risk now.
        assert totals["local"]["models_at_risk_if_lost"] == ["smart"]
        assert sum(v["requests"]["local"]) == 3


def test_playground_votes_become_routing_records(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    main, other = emulator_factory("openai"), emulator_factory("openai")
    with ui_gateway(config(tmp_path, main, other), tmp_path) as u:
        c = u.client()
        login(c)
        assert c.get("playground/models")[1]["models"] == ["cheap", "smart"]
        status, run = c.post("playground/run", {"prompt": "Say hi", "models": ["smart", "cheap"], "max_tokens": 32})
        assert status == 200 and run["token"] and run["models"] is None  # names hidden
        assert [a["label"] for a in run["answers"]] == ["A", "B"]
        assert all(a["text"] == "echo: Say hi" and a["error"] is None for a in run["answers"])
        assert "smart" not in json.dumps(run["answers"]) and "cheap" not in json.dumps(run["answers"])

        assert c.post("playground/vote", {"token": run["token"], "prompt": "Say hello", "winner": "A"})[0] == 400
        assert c.post("playground/vote", {"token": run["token"][:-2] + "xx", "prompt": "Say hi", "winner": "A"})[0] == 400
        assert c.post("playground/vote", {"token": run["token"], "prompt": "Say hi", "winner": "C"})[0] == 400
        status, vote = c.post("playground/vote", {"token": run["token"], "prompt": "Say hi", "winner": "B"})
        assert status == 200
        shown = vote["models"]
        assert sorted(shown.values()) == ["cheap", "smart"]
        assert vote["record"]["scores"] == {shown["A"]: 0.0, shown["B"]: 1.0}
        assert c.post("playground/vote", {"token": run["token"], "prompt": "Say hi", "winner": "A"})[0] == 409

        status, run2 = c.post("playground/run", {"prompt": "Again"})  # a random pair
        assert status == 200
        assert c.post("playground/vote", {"token": run2["token"], "prompt": "Again", "winner": "tie"})[0] == 200

        lines = [json.loads(x) for x in (tmp_path / "prefs.jsonl").read_text().splitlines()]
        assert len(lines) == 2
        first = lines[0]
        assert set(first) == {"prompt", "scores", "costs", "task"} and first["task"] == "playground"
        assert first["prompt"] == "Say hi" and set(first["costs"]) == {"cheap", "smart"}
        assert first["costs"]["smart"] > 0 and first["costs"]["cheap"] > 0
        assert set(lines[1]["scores"].values()) == {0.5}
        recs = load_records(tmp_path / "prefs.jsonl")  # the learned router's own reader accepts them
        assert recs[0].scores == first["scores"] and recs[0].task == "playground"

        # Playground answers are billed traffic: they are in the ledger (no key, api "playground").
        u.flush()
        rows = c.get("ledger", since="1h")[1]["rows"]
        assert len(rows) == 4 and {r["api"] for r in rows} == {"playground"} and all(r["key_id"] is None for r in rows)

        # A failing model cannot be voted on; the names are shown with the error. ("cheap" has only
        # the failing upstream; "smart" fails over to "local".)
        main.set_behaviour(Behaviour(status=500))
        status, bad = c.post("playground/run", {"prompt": "x", "models": ["cheap", "smart"]})
        assert status == 200 and bad["token"] is None and sorted(bad["models"].values()) == ["cheap", "smart"]
        assert c.post("playground/run", {"prompt": "x", "models": ["cheap", "cheap"]})[0] == 400
        assert c.post("playground/run", {"prompt": ""})[0] == 400


def test_compare_reports_from_the_folder(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    main, other = emulator_factory("openai"), emulator_factory("openai")
    cfg_path = tmp_path / "compare.yaml"
    cfg_path.write_text(f"""
providers:
  up: {{type: openai, base_url: '{main.sdk_base_url}', api_key: k}}
models:
  cheap: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
  smart: {{deployments: [{{provider: up, model: gpt-4o}}]}}
""")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say 4", "reference": "echo: Say 4"}) + "\n")
    rc = cli_main(["compare", "--prompts", str(prompts), "--models", "cheap,smart", "--config", str(cfg_path),
                   "--out", str(tmp_path / "reports" / "run-1"), "--quiet"])  # fmt: skip
    assert rc == 0
    with ui_gateway(config(tmp_path, main, other), tmp_path) as u:
        c = u.client()
        login(c)
        listing = c.get("compare/reports")[1]
        assert [r["name"] for r in listing["reports"]] == ["run-1"]
        assert listing["reports"][0]["models"] == ["cheap", "smart"] and listing["reports"][0]["has_report"]
        detail = c.get("compare/report", name="run-1")[1]
        assert set(detail["summary"]["models"]) == {"cheap", "smart"}
        assert detail["results"] == 2 and detail["routing_records"] == 1
        status, html, _ = c.request("GET", "/ui/compare/report?name=run-1")
        assert status == 200 and b"<svg" in html
