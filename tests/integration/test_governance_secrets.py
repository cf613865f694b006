"""No upstream secret (nor the master key, nor a virtual key) ever shows in logs, the ledger, error
bodies or admin responses — through successes, upstream auth failures, upstream errors, streams."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import openai
import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.governance import MASTER, governance_yaml, governed, http

pytestmark = pytest.mark.integration

GOOD = "sk-upstream-GOOD-7f3a9c2e4b1d8f60"
WRONG = "sk-upstream-WRONG-0a9b8c7d6e5f4a3b"
HEADER_SECRET = "hdr-secret-5e6f7a8b9c0d1e2f"


def test_no_secret_leaks_anywhere(emulator_factory: object, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emu: EmulatorServer = emulator_factory("openai", api_key=GOOD)  # type: ignore[operator]
    cfg = governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool", extra="") + f"""
providers:
  good: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: {GOOD}, headers: {{x-extra-auth: {HEADER_SECRET}}}}}
  wrong: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: {WRONG}}}
models:
  ok:
    retry: {{retries: 0}}
    deployments: [{{provider: good, model: gpt-4o-mini}}]
  badkey:
    retry: {{retries: 0}}
    deployments: [{{provider: wrong, model: gpt-4o-mini}}]
  mixed:
    retry: {{retries: 0}}
    deployments: [{{provider: wrong, model: gpt-4o-mini}}, {{provider: good, model: gpt-4o-mini}}]
"""
    seen: list[str] = []
    with governed(cfg) as g:
        key = g.create_key(name="leak-test")
        seen.append(json.dumps({k: v for k, v in key.items() if k != "key"}))
        vkey = key["key"]
        c = openai.OpenAI(base_url=g.openai_base, api_key=vkey, max_retries=0)
        msgs = [{"role": "user", "content": "hello"}]
        c.chat.completions.create(model="ok", messages=msgs)
        for chunk in c.chat.completions.create(model="ok", messages=msgs, stream=True):
            seen.append(chunk.model_dump_json())
        for model in ("badkey", "mixed"):
            try:
                seen.append(c.chat.completions.create(model=model, messages=msgs).model_dump_json())
            except openai.APIStatusError as exc:
                seen.append(exc.response.text)
        emu.enqueue(Behaviour(status=500, error_message=f"internal error near {GOOD}"))
        with pytest.raises(openai.APIStatusError) as failed:
            c.chat.completions.create(model="ok", messages=msgs)
        seen.append(failed.value.response.text)
        emu.enqueue(Behaviour(status=500, error_after=2, error_message=f"boom {GOOD}"))
        try:
            for chunk in c.chat.completions.create(model="ok", messages=msgs, stream=True):
                seen.append(chunk.model_dump_json())
        except openai.APIError as err:
            seen.append(str(err))
        for path in ("/admin/keys", "/admin/teams", "/admin/ledger", "/admin/spend?by=provider",
                     "/admin/dependency", "/admin/audit", "/health/ready", "/v1/models"):  # fmt: skip
            status, body, headers = http("GET", g.base_url + path, key=MASTER)
            assert status == 200, (path, body)
            seen.append(json.dumps(body) + json.dumps(headers))
        seen.append(json.dumps(g.ledger()))
        for r in g.ledger():
            seen.append(json.dumps(g.attempts(r["request_id"])))
    seen.append("\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records))
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "badkey" in everything and "leak-test" in everything  # we did look at real output
    for secret in (GOOD, WRONG, HEADER_SECRET, MASTER, vkey):
        assert secret not in everything, f"a secret leaked: {secret[:12]}..."
    # Nor a recognisable piece of an upstream key (vendors echo keys partially).
    assert "GOOD-7f3a" not in everything and "WRONG-0a9b" not in everything
