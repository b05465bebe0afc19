"""Journeys through the agents pages in a real browser: an administrator creates an agent,
copies its secret from the one page that shows it, the agent calls the gateway with it;
then the administrator issues a new secret and the old one stops working."""

from __future__ import annotations

import itertools
import time

import httpx
from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, log_in
from tests.factories import add_customer

_numbers = itertools.count()


def _check(live_server: LiveServer, code: str, secret: str, account: str) -> httpx.Response:
    """An agent's OSMP check, sent as the agent's software would."""
    return httpx.get(
        f"{live_server.url}/gateway/osmp/sochi",
        params={"command": "check", "txn_id": "1", "account": account, "sum": "0.00"},
        auth=(code, secret),
        timeout=30,
    )


def test_admin_creates_an_agent_sees_the_secret_once_and_rotates_it(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    code = f"journey{int(time.time()) % 100000}{next(_numbers)}"
    inn = add_customer(live_server.engine, name="ОсОО «Агентский»")
    log_in(page, live_server.accounts["admin"])
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.agents")
    ).click()
    expect(page.locator("main[data-page=agents]")).to_be_visible()
    shot("agents")

    page.get_by_role("link", name=RU("agents.new.link")).click()
    expect(page.locator("main[data-page=agents-new]")).to_be_visible()
    form = page.locator("form#new-agent")
    form.get_by_label(RU("agents.code"), exact=True).fill(code)
    form.get_by_label(RU("agents.name"), exact=True).fill("Журнейбанк")
    form.get_by_label(RU("agents.networks"), exact=True).fill("127.0.0.1\n10.20.0.0/16")
    expect(form.get_by_label(RU("agents.timezone"), exact=True)).to_have_value("Asia/Bishkek")
    form.get_by_label(RU("agents.cancel_window"), exact=True).fill("1")
    shot("new-agent-typed")
    form.get_by_role("button", name=RU("agents.new.submit")).click()

    expect(page.locator("main[data-page=agents-secret]")).to_be_visible()
    expect(page.locator("#secret-warning")).to_contain_text("Скопируйте секрет")
    secret = page.locator("#agent-secret").inner_text().strip()
    signing_key = page.locator("#agent-signing-key").inner_text().strip()
    assert len(secret) >= 40 and len(signing_key) == 64
    # The hints use the public address (TOLOM_PUBLIC_BASE_URL), which agents reach.
    expect(page.locator("#osmp-urls")).to_contain_text("/gateway/osmp/sochi")
    shot("secret-shown-once")
    assert "<result>0</result>" in _check(live_server, code, secret, inn).text

    # Shown once: the agent's page, reached from the secret page, does not show it.
    page.locator("#secret-done-link").click()
    expect(page.locator("main[data-page=agents-one]")).to_be_visible()
    expect(page.locator("#f-networks")).to_have_text("127.0.0.1/32, 10.20.0.0/16")
    assert secret not in page.content() and signing_key not in page.content()
    shot("agent")

    # A new secret: the browser refuses the form until the change is confirmed.
    rotate = page.locator("form#agent-rotate")
    rotate.get_by_role("button", name=RU("agents.rotate_submit")).click()
    expect(page.locator("main[data-page=agents-one]")).to_be_visible()
    rotate.get_by_label(RU("agents.rotate_confirm")).check()
    shot("rotate-confirmed")
    rotate.get_by_role("button", name=RU("agents.rotate_submit")).click()
    expect(page.locator("main[data-page=agents-secret]")).to_be_visible()
    expect(page.locator("#secret-done")).to_have_text(RU("agents.secret.rotated"))
    new_secret = page.locator("#agent-secret").inner_text().strip()
    assert new_secret != secret
    shot("new-secret")

    assert _check(live_server, code, secret, inn).status_code == 401
    assert "<result>0</result>" in _check(live_server, code, new_secret, inn).text
    page.locator("#secret-done-link").click()
    expect(page.locator("#agent-history tbody tr").first).to_have_attribute(
        "data-action", "agent.rotate_secret"
    )
    assert new_secret not in page.content()
    shot("history")


def test_auditor_reads_agents_without_forms(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    log_in(page, live_server.accounts["auditor"])
    page.goto("/agents")
    expect(page.locator("main[data-page=agents]")).to_be_visible()
    expect(page.locator("#new-agent")).to_have_count(0)
    first = page.locator("table#agents tbody tr").first
    first.locator("th a").click()
    expect(page.locator("main[data-page=agents-one]")).to_be_visible()
    expect(page.locator("form#agent-rotate")).to_have_count(0)
    expect(page.locator("form#agent-enabled")).to_have_count(0)
    shot("read-only-agent")
    assert page.goto("/agents/new").status == 403  # type: ignore[union-attr]
