"""`polyroute keys|teams|spend|dependency|audit` against the database named in a config file."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from polyroute.cli import main
from polyroute.config.load import load_config
from polyroute.governance.reports import dependency_report, parse_time
from polyroute.governance.rows import AttemptRow, LedgerRow
from polyroute.governance.store import Store, utc_day

CONFIG = """
database: {{url: 'sqlite:///{db}'}}
providers:
  oa: {{type: openai, api_key: x}}
  an: {{type: anthropic, api_key: y}}
  local: {{type: inhouse}}
models:
  gpt:
    fallbacks: [claude]
    deployments: [{{provider: oa, model: gpt-4o-mini}}]
  claude:
    deployments: [{{provider: an, model: claude-haiku-4-5}}]
  solo:
    fallbacks: [small]
    deployments: [{{provider: oa, model: gpt-4o}}]
  small:
    deployments: [{{provider: local, model: smollm2-135m-instruct}}]
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def row(i: int, vendor: str, provider: str, deployment: str, model: str, status: int, cost: float) -> LedgerRow:
    now = time.time()
    return LedgerRow(
        request_id=f"r{i}", ts=now, day=utc_day(now), key_id="k1", team_id="t1", api="openai", model_asked=model,
        route=model, deployment=deployment if status < 400 else None, provider=provider if status < 400 else None,
        vendor=vendor if status < 400 else None,
        attempts=[AttemptRow(n=0, deployment=deployment, provider=provider, vendor=vendor, status=status, error=None,
                             latency_ms=1, input_tokens=10, output_tokens=10, cost=cost)],
        input_tokens=10, output_tokens=10, cached_tokens=0, cache_write_tokens=0, reasoning_tokens=0, estimated=False,
        cost=cost, latency_ms=1, ttft_ms=None, status=status, error_class=None, error_message=None, stream=False,
        tags=None, end_user=None,
    )  # fmt: skip


def test_cli_keys_teams_spend_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "polyroute.yaml"
    cfg.write_text(CONFIG.format(db=tmp_path / "g.db"))
    c = str(cfg)
    assert run(capsys, "teams", "create", "search", "--rpm", "100", "--budget-monthly", "50", "-c", c)[0] == 0
    code, out = run(capsys, "keys", "create", "--team", "search", "--name", "bot", "--models", "gpt,claude*",
                    "--budget-daily", "5", "--json", "-c", c)  # fmt: skip
    created = json.loads(out)
    assert code == 0 and created["key"].startswith("sk-pr-") and created["allowed_models"] == ["gpt", "claude*"]
    code, out = run(capsys, "keys", "list", "-c", c)
    assert code == 0 and created["prefix"] in out and created["key"] not in out and "bot" in out
    code, out = run(capsys, "keys", "update", created["prefix"], "--rpm", "7", "--budget-daily", "none", "-c", c)
    assert code == 0 and json.loads(out)["rpm"] == 7 and json.loads(out)["budget_daily"] is None
    assert run(capsys, "keys", "revoke", created["id"], "-c", c)[0] == 0
    code, out = run(capsys, "keys", "list", "--json", "-c", c)
    assert json.loads(out) == []
    code, out = run(capsys, "keys", "list", "--all", "--json", "-c", c)
    assert json.loads(out)[0]["revoked_at"] is not None
    assert run(capsys, "keys", "revoke", "nope", "-c", c)[0] == 1
    assert run(capsys, "keys", "create", "--team", "ghost", "-c", c)[0] == 1
    assert run(capsys, "keys", "create", "--rpm", "0", "-c", c)[0] == 1

    async def fill() -> None:
        s = Store.from_url(f"sqlite:///{tmp_path / 'g.db'}")
        await s.open()
        await s.insert_ledger([row(1, "openai", "oa", "gpt/oa/gpt-4o-mini", "gpt", 200, 0.25),
                               row(2, "anthropic", "an", "claude/an/claude-haiku-4-5", "gpt", 200, 0.5),
                               row(3, "openai", "oa", "gpt/oa/gpt-4o-mini", "gpt", 503, 0.0)])  # fmt: skip
        await s.close()

    asyncio.run(fill())
    code, out = run(capsys, "spend", "--by", "model", "--since", "1d", "--json", "-c", c)
    rep = json.loads(out)
    assert code == 0 and rep["rows"][0]["model"] == "gpt" and rep["rows"][0]["requests"] == 3
    assert rep["total_cost"] == pytest.approx(0.75)
    code, out = run(capsys, "spend", "--by", "vendor", "--since", "1d", "-c", c)
    assert code == 0 and "anthropic" in out and "openai" in out
    code, out = run(capsys, "dependency", "--since", "7d", "-c", c)
    assert code == 0 and "anthropic" in out
    code, out = run(capsys, "audit", "--json", "-c", c)
    actions = [a["action"] for a in json.loads(out)]
    assert actions[::-1][:4] == ["teams.create", "keys.create", "keys.update", "keys.revoke"]
    assert all(a["actor"].startswith("cli") for a in json.loads(out))


def test_dependency_report(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(CONFIG.format(db=tmp_path / "d.db"))
    cfg, _ = load_config(cfg_path)

    async def go() -> dict[str, object]:
        s = Store.from_url(f"sqlite:///{tmp_path / 'd.db'}")
        await s.open()
        await s.insert_ledger([row(i, "openai", "oa", "gpt/oa/gpt-4o-mini", "gpt", 200, 0.1) for i in range(6)]
                              + [row(10 + i, "anthropic", "an", "claude/an/claude-haiku-4-5", "claude", 200, 0.3)
                                 for i in range(2)]
                              + [row(20, "openai", "oa", "solo/oa/gpt-4o", "solo", 503, 0.0)])  # fmt: skip
        rep = await dependency_report(s, cfg, parse_time("1d"))
        await s.close()
        return rep

    rep = asyncio.run(go())
    vendors = {v["vendor"]: v for v in rep["vendors"]}  # type: ignore[attr-defined]
    assert vendors["openai"]["requests"] == 6 and vendors["anthropic"]["requests"] == 2
    assert vendors["openai"]["requests_share"] == pytest.approx(0.75)
    assert vendors["anthropic"]["cost_share"] == pytest.approx(0.6 / 1.2)
    assert vendors["inhouse"]["requests"] == 0
    models = {m["model"]: m for m in rep["models"]}  # type: ignore[attr-defined]
    gpt = models["gpt"]
    assert gpt["fallback_other_vendor"]["available"] and gpt["fallback_other_vendor"]["healthy"]
    assert not gpt["fallback_inhouse"]["available"] and gpt["breaks_without"] == []
    solo = models["solo"]
    assert not solo["fallback_other_vendor"]["healthy"] or solo["fallback_other_vendor"]["deployments"][0]["vendor"] == "inhouse"
    assert solo["fallback_inhouse"]["available"] and solo["fallback_inhouse"]["deployments"][0]["health"] == "untested"
    assert models["claude"]["breaks_without"] == ["anthropic"]
    assert "claude" in vendors["anthropic"]["models_broken_if_lost"]
    assert "solo" in vendors["openai"]["models_at_risk_if_lost"]


def test_parse_time() -> None:
    now = 1_000_000.0
    assert parse_time("7d", now) == now - 7 * 86400
    assert parse_time("90m", now) == now - 5400
    assert parse_time("2026-01-01") == 1_767_225_600.0
    assert parse_time("2026-01-01T01:00:00Z") == 1_767_229_200.0
    with pytest.raises(ValueError):
        parse_time("yesterday")
