"""The dashboard's 30-day chart in a real browser: drawn without a script, described in
words for a screen reader, and the same figures one click away as a table."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import log_in
from tests.factories import add_customer
from tolom.agents import service as agent_service
from tolom.texts import texts

RU = texts("ru")
_txn = itertools.count(7_000_000_001)


def _pay_today(live_server: LiveServer, amounts: list[str]) -> None:
    """An agent pays these top-ups now, through the OSMP gateway of the live server."""
    code = f"chart{next(_txn)}"
    with live_server.engine.begin() as conn:
        secret = agent_service.create(
            conn, code=code, name="Chart agent", networks=["*"], service_codes=["sochi"]
        )
    inn = add_customer(live_server.engine)
    now = datetime.now(UTC).astimezone(ZoneInfo("Asia/Bishkek")).strftime("%Y%m%d%H%M%S")
    for amount in amounts:
        answer = httpx.get(
            f"{live_server.url}/gateway/osmp/sochi",
            params={
                "command": "pay",
                "txn_id": str(next(_txn)),
                "txn_date": now,
                "account": inn,
                "sum": amount,
            },
            auth=(code, secret),
            timeout=30,
        )
        assert "<result>0</result>" in answer.text, answer.text


def test_operator_reads_the_last_30_days(page: Page, shot: Shots, live_server: LiveServer) -> None:
    _pay_today(live_server, ["1510.00", "500.00"])
    log_in(page, live_server.accounts["operator"])
    heading = page.get_by_role("heading", name=RU("dashboard.chart.title"))
    heading.scroll_into_view_if_needed()
    expect(heading).to_be_visible()

    # The picture is one image with a name a screen reader says, 30 days wide, today last.
    chart = page.get_by_role("img", name=RU("dashboard.chart.title"))
    expect(chart).to_be_visible()
    expect(chart.locator("g.day")).to_have_count(30)
    expect(chart.locator("g.day").last).to_have_class(re.compile(r"\btoday\b"))
    expect(chart.locator("g.day.today text.day-label")).to_have_text(RU("dashboard.chart.today"))
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    # Today's payments are drawn: a bar in today's column.
    expect(chart.locator("g.day.today rect.bar").first).to_be_visible()
    shot("chart")

    # The same figures as a table, opened from the keyboard.
    summary = page.locator("#chart-details summary")
    expect(summary).to_have_text(RU("dashboard.chart.as_table"))
    table = page.locator("#chart-table")
    expect(table).to_be_hidden()
    summary.focus()
    page.keyboard.press("Enter")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(30)
    today = page.locator("#chart-table tbody tr").last
    total = today.locator("td").last
    expect(total).not_to_have_text(re.compile(r"^0,00"))
    today.scroll_into_view_if_needed()
    shot("chart-as-table")
