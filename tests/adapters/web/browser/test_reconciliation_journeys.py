"""The reconciliation journey in a real browser, the issue's "done when": an accountant
uploads an agent's registry with a discrepancy of every class planted in it, resolves each
(accepts the payment missing on our side, explains the rest), closes the day and downloads
the act of reconciliation as PDF."""

from __future__ import annotations

import itertools
import time

import httpx
from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, log_in
from tests.core.reconciliation.test_reconciliation import registry
from tests.factories import add_agent, add_customer

_numbers = itertools.count()


def _pay(live_server: LiveServer, code: str, secret: str, **params: str) -> None:
    """A payment through the live server's OSMP gateway, as the agent's software sends it."""
    answer = httpx.get(
        f"{live_server.url}/gateway/osmp/sochi",
        params={"command": "pay", **params},
        auth=(code, secret),
        timeout=30,
    )
    assert "<result>0</result>" in answer.text, answer.text


def test_accountant_reconciles_a_day_resolves_everything_closes_and_gets_the_act(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    code = f"rec{int(time.time()) % 100000}{next(_numbers)}"
    secret = add_agent(live_server.engine, code)
    inn = add_customer(live_server.engine, name="ОсОО «Сверка»")
    other = add_customer(live_server.engine, name="ОсОО «Другой счёт»")
    for txn, amount, at in (
        ("101", "100.00", "20261121090000"),
        ("102", "200.00", "20261121100000"),
        ("103", "300.00", "20261121110000"),
        ("104", "400.00", "20261121120000"),
        ("105", "50.00", "20261121235959"),
    ):
        _pay(live_server, code, secret, txn_id=txn, txn_date=at, account=inn, sum=amount)
    content = registry(
        ("101", "21.11.2026 09:00:00", inn, "100.00"),  # matched
        ("0102", "21.11.2026 10:00:00", inn, "250.00"),  # amount differs
        ("103", "21.11.2026 11:00:00", other, "300.00"),  # account differs
        ("106", "21.11.2026 13:00:00", inn, "70.00"),  # missing on our side
        ("101", "21.11.2026 09:00:00", inn, "100.00"),  # duplicate line
        ("105", "21.11.2026 23:59:59", inn, "50.00"),  # matched
    )  # 104 is missing on theirs

    log_in(page, live_server.accounts["accountant"])
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.reconciliation")
    ).click()
    expect(page.locator("main[data-page=reconciliation]")).to_be_visible()
    page.goto(f"{live_server.url}/reconciliation?month=2026-11")
    cell = page.locator(f"tr[data-agent={code}] td[data-day='2026-11-21']")
    expect(cell).to_have_text(RU("recon.state.waiting"))
    shot("calendar-waiting")

    page.get_by_label(RU("recon.upload.agent"), exact=True).select_option(code)
    page.get_by_label(RU("recon.upload.file"), exact=True).set_input_files(
        files=[{"name": "reestr-21.11.2026.txt", "mimeType": "text/plain", "buffer": content}]
    )
    shot("upload-filled")
    page.get_by_role("button", name=RU("recon.upload.submit")).click()
    expect(page.locator("main[data-page=reconciliation-day]")).to_be_visible()
    expect(page.locator("#recon-notice")).to_contain_text("reestr-21.11.2026.txt")
    expect(page.locator("table#discrepancies tbody tr")).to_have_count(5)
    expect(page.locator("#day-state")).to_have_attribute("data-state", "open")
    shot("day-with-discrepancies")

    # Closing is refused while anything is open.
    page.get_by_role("button", name=RU("recon.close")).click()
    expect(page.locator("#recon-error")).to_contain_text("не разобрано расхождений — 5")
    shot("close-refused")

    plan = [
        ("missing_ours", "accept", "Платёж агента подтверждён выпиской банка"),
        ("missing_theirs", "explain", "Агент включит платёж в реестр следующего дня"),
        ("amount_mismatch", "explain", "Опечатка в реестре агента, подтверждено письмом"),
        ("account_mismatch", "explain", "Агент исправит лицевой счёт в своём реестре"),
        ("duplicate", "explain", "Строка повторена в реестре по ошибке агента"),
    ]
    for kind, action, reason in plan:
        row = page.locator(f"table#discrepancies tr[data-kind={kind}]")
        row.locator("select[name=action]").select_option(label=RU(f"recon.action.{action}"))
        row.locator("input[name=reason]").fill(reason)
        if kind == "missing_ours":
            shot("accept-filled")
        row.get_by_role("button", name=RU("recon.resolve")).click()
        done = page.locator(f"table#discrepancies tr[data-kind={kind}]")
        expect(done).to_have_attribute(
            "data-resolution", {"accept": "accepted"}.get(action, "explained")
        )
        expect(done).to_contain_text(reason)
    expect(page.locator("#day-state")).to_have_attribute("data-state", "ready")
    shot("all-resolved")

    page.get_by_role("button", name=RU("recon.close")).click()
    expect(page.locator("#recon-notice")).to_have_text(RU("recon.closed_now"))
    expect(page.locator("#day-state")).to_have_attribute("data-state", "closed")
    shot("day-closed")

    with page.expect_download() as info:
        page.get_by_role("link", name=RU("recon.act_pdf")).click()
    pdf = info.value
    assert pdf.suggested_filename == f"akt-{code}-2026-11-21.pdf"
    path = pdf.path()
    assert path is not None and path.read_bytes().startswith(b"%PDF")

    page.get_by_role("link", name=RU("recon.day.back")).click()
    expect(cell).to_have_text(RU("recon.state.closed"))
    shot("calendar-closed")
