"""The back office's layout on a common laptop screen (1366×768): the agents table fits its
column instead of scrolling sideways, and the navigation wraps whole items in every
language (the Kyrgyz labels are the longest)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import log_in
from tests.factories import add_agent, add_customer

LAPTOP = {"width": 1366, "height": 768}
_numbers = itertools.count(8_100_000_001)


def _widths(page: Page, selector: str) -> dict[str, int]:
    found: dict[str, int] = page.locator(selector).evaluate(
        "element => ({scroll: element.scrollWidth, client: element.clientWidth})"
    )
    return found


def _pay_today(live_server: LiveServer, code: str, secret: str, amounts: list[str]) -> None:
    inn = add_customer(live_server.engine)
    now = datetime.now(UTC).astimezone(ZoneInfo("Asia/Bishkek")).strftime("%Y%m%d%H%M%S")
    for amount in amounts:
        answer = httpx.get(
            f"{live_server.url}/gateway/osmp/sochi",
            params={
                "command": "pay",
                "txn_id": str(next(_numbers)),
                "txn_date": now,
                "account": inn,
                "sum": amount,
            },
            auth=(code, secret),
            timeout=30,
        )
        assert "<result>0</result>" in answer.text, answer.text


def test_the_agents_table_fits_a_laptop_screen(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    # The widest row the table gets: several networks, and sums in the hundreds of thousands.
    code = f"layout{next(_numbers)}"
    secret = add_agent(
        live_server.engine,
        code,
        networks=["127.0.0.0/8", "192.168.100.0/24", "10.120.130.0/24", "172.16.200.0/22"],
    )
    _pay_today(live_server, code, secret, ["49999.99"] * 3)
    page.set_viewport_size(LAPTOP)
    log_in(page, live_server.accounts["admin"])
    page.goto("/agents")
    row = page.locator(f'tr[data-code="{code}"]')
    expect(row.locator('[data-figure="today"]')).to_contain_text("149\u00a0999,97")
    shot("agents-1366")
    table = _widths(page, "table#agents")
    box = _widths(page, "#agents-scroll")
    assert table["scroll"] <= box["client"], (table, box)
    assert box["scroll"] <= box["client"], box  # nothing to scroll sideways
    # A sum never breaks inside: each figure cell's sum sits on one line.
    heights: list[Any] = row.locator("[data-figure]").evaluate_all(
        "cells => cells.map(c => c.getClientRects().length)"
    )
    assert heights and all(h == 1 for h in heights)


def test_the_kyrgyz_navigation_wraps_whole_items(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    account = live_server.new_user("admin", language="ky")
    page.set_viewport_size(LAPTOP)
    log_in(page, account)
    links = page.locator("nav.sections a")
    expect(links.first).to_be_visible()
    shot("navigation-ky-1366")
    # No label is broken across lines: each link is one line box.
    lines: list[int] = links.evaluate_all("links => links.map(a => a.getClientRects().length)")
    assert lines and all(n == 1 for n in lines), lines
    # The items sit in rows that start at the same left edge (no ragged staircase).
    lefts: list[float] = page.locator("nav.sections li").evaluate_all(
        "items => items.map(li => li.getBoundingClientRect().left)"
    )
    tops: list[float] = page.locator("nav.sections li").evaluate_all(
        "items => items.map(li => Math.round(li.getBoundingClientRect().top))"
    )
    starts = [left for i, left in enumerate(lefts) if i == 0 or tops[i] != tops[i - 1]]
    assert max(starts) - min(starts) < 1, (starts, tops)
    # And the navigation does not push the page sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
