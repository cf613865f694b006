"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright): sign in, create
a key, send traffic with it through the gateway (official openai SDK -> protocol emulator), see it in
the overview and the ledger, revoke the key and see requests refused, vote side by side and find
the preference record. Screenshots go to the test's temp dir (and to $POLYROUTE_UI_SCREENSHOTS when
set, to look at them).

Needs `apt-get install chromium` and `pip install playwright` (never `playwright install`: the
browser is Debian's). Without them the tests skip, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from polyroute.emulators.testing import EmulatorServer
from tests.helpers.governance import MASTER, governance_yaml
from tests.helpers.ui import UIGateway, ui_gateway

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
MSGS = [{"role": "user", "content": "hello from the browser test"}]


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must install it (see docs/dashboard.md#tests)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Shots:
    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.extra = os.environ.get("POLYROUTE_UI_SCREENSHOTS")

    def __call__(self, name: str) -> None:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if self.extra:
            Path(self.extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.extra) / path.name)


def config(tmp_path: Path, main: EmulatorServer, other: EmulatorServer) -> str:
    return governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool") + f"""
providers:
  up: {{type: openai, base_url: '{main.sdk_base_url}', api_key: sk-upstream}}
  local: {{type: openai_compatible, base_url: '{other.sdk_base_url}', api_key: sk-local}}
models:
  smart:
    deployments:
      - {{provider: up, model: gpt-4o}}
      - {{provider: local, model: llama, input_price: 0.1, output_price: 0.2}}
  cheap:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
    fallbacks: [smart]
"""


def open_page(browser: Any) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if "Content Security Policy" in m.text else None)
    return ctx, page, problems


def sign_in(page: Any, u: UIGateway, key: str) -> None:
    page.goto(u.base_url + "/ui")
    page.wait_for_url("**/ui/login")
    page.fill("#key", key)
    page.click("#login-submit")


def test_the_whole_loop_in_a_browser(
    browser: Any, tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    from playwright.sync_api import expect

    main, other = emulator_factory("openai"), emulator_factory("openai")
    report = tmp_path / "reports" / "compare-run"
    report.mkdir(parents=True)
    (report / "summary.json").write_text(json.dumps({"models": {"smart": {
        "model": "smart", "answers": 2, "errors": 0, "mean_quality": 0.5, "win_rate": 1.0, "total_cost_usd": 0.01,
        "latency_p50_ms": 120.0, "ttft_p50_ms": 40.0}}}))  # fmt: skip
    (report / "report.html").write_text(
        "<!doctype html><html><head><style>h1{color:#c00}</style></head><body><h1>Report body</h1>"
        "<svg width='40' height='20'><rect width='40' height='20'/></svg></body></html>"
    )
    with ui_gateway(config(tmp_path, main, other), tmp_path) as u:
        ctx, page, problems = open_page(browser)
        shot = Shots(page, tmp_path / "screenshots")

        # Not signed in: /ui is the sign-in page; a wrong key is refused with a message.
        sign_in(page, u, "not-a-key")
        expect(page.locator("#login-error")).to_contain_text("invalid")
        shot("01-login-refused")
        page.fill("#key", MASTER)
        page.click("#login-submit")
        page.wait_for_url("**/ui/")
        expect(page.get_by_test_id("who")).to_have_text("master key")

        # Create a key: the secret is shown once.
        page.get_by_test_id("nav-keys").click()
        page.get_by_test_id("new-key-name").fill("e2e-bot")
        page.get_by_test_id("new-key-budget_daily").fill("2")
        page.get_by_test_id("new-key-submit").click()
        secret = page.get_by_test_id("new-key-secret").inner_text().strip()
        assert secret.startswith("sk-pr-")
        shot("02-key-created")

        # Traffic with that key, through the gateway.
        sdk = openai.OpenAI(base_url=u.g.openai_base, api_key=secret, max_retries=0)
        for _ in range(4):
            sdk.chat.completions.create(model="cheap", messages=MSGS)
        raw = sdk.chat.completions.with_raw_response.create(
            model="smart", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        streamed_id = raw.headers["x-request-id"]
        assert "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)

        # The overview counts it (the page refreshes on its own; reload to not wait 30 s).
        u.flush()
        page.get_by_test_id("nav-overview").click()
        page.reload()
        expect(page.get_by_test_id("kpi-requests").locator(".value")).to_have_text("5")
        expect(page.get_by_test_id("kpi-errors").locator(".value")).to_have_text("0")
        expect(page.get_by_test_id("chart-requests").locator("canvas")).to_have_count(1)
        expect(page.get_by_test_id("kpi-spend").locator(".value")).not_to_have_text("$0")
        page.get_by_test_id("f-key").select_option(label="e2e-bot · " + secret[:12])
        expect(page.get_by_test_id("kpi-requests").locator(".value")).to_have_text("5")
        shot("03-overview")

        # The ledger lists the requests; one request's attempts in detail.
        page.get_by_test_id("nav-ledger").click()
        expect(page.get_by_test_id("ledger-row")).to_have_count(5)
        page.locator(f"[data-request-id='{streamed_id}']").click()
        expect(page.get_by_test_id("detail-id")).to_have_text(streamed_id)
        expect(page.get_by_test_id("attempts-table").locator("tbody tr")).to_have_count(1)
        expect(page.get_by_test_id("ledger-detail")).to_contain_text("smart/up/gpt-4o")
        shot("04-ledger-detail")
        page.go_back()
        expect(page.get_by_test_id("ledger-row")).to_have_count(5)
        shot("05-ledger")

        # Vendors and routes render their live views.
        page.get_by_test_id("nav-vendors").click()
        expect(page.get_by_test_id("coverage-table").locator("tbody tr")).to_have_count(2)
        expect(page.get_by_test_id("vendor-table")).to_contain_text("openai")
        shot("06-vendors")
        page.get_by_test_id("nav-routes").click()
        expect(page.get_by_test_id("deployment-row")).to_have_count(3)
        shot("07-routes")

        # Revoke the key from the dashboard: the next request with it is refused.
        page.get_by_test_id("nav-keys").click()
        page.once("dialog", lambda d: d.accept())
        page.locator("[data-testid=key-row]", has_text="e2e-bot").get_by_test_id("key-revoke").click()
        expect(page.locator("[data-testid=key-row]", has_text="e2e-bot")).to_have_count(0)
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="cheap", messages=MSGS)
        page.get_by_test_id("show-revoked").check()
        expect(page.locator("[data-testid=key-row]", has_text="e2e-bot").get_by_test_id("key-status")).to_have_text("revoked")
        shot("08-key-revoked")

        # Side by side: names hidden until the vote; the vote is a routing record.
        page.get_by_test_id("nav-compare").click()
        page.get_by_test_id("pg-prompt").fill("Which is better?")
        page.get_by_test_id("pg-model-0").select_option("smart")
        page.get_by_test_id("pg-model-1").select_option("cheap")
        page.get_by_test_id("pg-run").click()
        expect(page.get_by_test_id("pg-answer-A")).to_contain_text("echo: Which is better?")
        expect(page.get_by_test_id("pg-answer-B")).to_contain_text("echo: Which is better?")
        expect(page.get_by_test_id("pg-name-A")).to_have_count(0)
        shot("09-playground-blind")
        page.get_by_test_id("vote-A").click()
        expect(page.get_by_test_id("pg-result")).to_be_visible()
        winner = page.get_by_test_id("pg-name-A").text_content()
        loser = page.get_by_test_id("pg-name-B").text_content()
        assert {winner, loser} == {"smart", "cheap"}
        shot("10-playground-voted")
        records = [json.loads(x) for x in (tmp_path / "prefs.jsonl").read_text().splitlines()]
        assert len(records) == 1
        assert records[0]["prompt"] == "Which is better?" and records[0]["task"] == "playground"
        assert records[0]["scores"] == {winner: 1.0, loser: 0.0}
        assert set(records[0]["costs"]) == {"smart", "cheap"}

        # A `polyroute compare` report from the configured folder, framed in a sandbox.
        page.get_by_test_id("reports-table").get_by_text("compare-run").click()
        expect(page.get_by_test_id("report-detail")).to_contain_text("smart")
        expect(page.frame_locator("iframe.report").locator("h1")).to_have_text("Report body")
        shot("11-compare-report")

        # Sign out: the dashboard is closed again.
        page.get_by_test_id("logout").click()
        page.wait_for_url("**/ui/login")
        page.goto(u.base_url + "/ui/")
        page.wait_for_url("**/ui/login")
        assert problems == []
        ctx.close()


def test_a_non_admin_key_cannot_sign_in(
    browser: Any, tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    from playwright.sync_api import expect

    main, other = emulator_factory("openai"), emulator_factory("openai")
    with ui_gateway(config(tmp_path, main, other), tmp_path) as u:
        c = u.client()
        c.login(MASTER)
        status, key = c.post("keys/create", {"name": "app"})
        assert status == 200
        ctx, page, problems = open_page(browser)
        sign_in(page, u, key["key"])
        expect(page.locator("#login-error")).to_contain_text("not an administrator")
        page.goto(u.base_url + "/ui/static/app.js")
        assert "401" in page.content() or "unauthenticated" in page.content()
        page.goto(u.base_url + "/ui/")
        page.wait_for_url("**/ui/login")
        Shots(page, tmp_path / "screenshots")("12-non-admin-refused")
        assert problems == []
        ctx.close()
