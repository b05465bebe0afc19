"""The customer's journeys in a real browser, at phone width (390×844) and on a desktop:
the cabinet signed in with the code the console e-mail back-end writes, reports waiting for
money released by a top-up an agent pays through the OSMP gateway; and the online
application paid through OSMP, verified and issued in the back office, followed on /status.
(See conftest.py for the live server; words come from the catalogues, `tolom.texts`.)"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, log_in
from tests.factories import add_agent, add_customer, new_inn, parse_answer
from tolom.billing import charges, invoices
from tolom.formatting import som
from tolom.money import format_amount

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
_agents = itertools.count(1)
_txns = itertools.count(int(time.time()))


class ConsoleMail(logging.Handler):
    """What the console e-mail back-end writes to the log (`notifications.email`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def code_for(self, address: str, wait_seconds: float = 20.0) -> str:
        """The latest sign-in code e-mailed to `address` (sent just after the answer)."""
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            for message in reversed(self.messages):
                if f"to {address}" in message:
                    found = re.search(r"\b(\d{6})\b", message.split("\n", 1)[1])
                    if found:
                        return found.group(1)
            time.sleep(0.05)
        raise AssertionError(f"no code e-mailed to {address}: {self.messages[-3:]}")


@pytest.fixture
def console_mail() -> Iterator[ConsoleMail]:
    logger = logging.getLogger("tolom.notifications.email")
    handler, level = ConsoleMail(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def osmp_pay(live_server: LiveServer, service: str, account: str, amount: int) -> None:
    """Pay as an agent's software does: check, then pay, over HTTP to the live server."""
    code = f"journey{next(_agents)}{live_server.backend[:2]}{int(time.time())}"
    secret = add_agent(live_server.engine, code)
    txn = str(next(_txns))
    for command in ("check", "pay"):
        answer = httpx.get(
            f"{live_server.url}/gateway/osmp/{service}",
            params={
                "command": command,
                "txn_id": txn,
                "txn_date": "20261203120000",
                "account": account,
                "sum": format_amount(amount),
            },
            auth=(code, secret),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert parse_answer(answer.text)["result"] == 0, answer.text


@pytest.mark.parametrize("screen", VIEWPORTS)
def test_cabinet_sign_in_and_a_top_up_releasing_waiting_reports(
    page: Page, shot: Shots, live_server: LiveServer, console_mail: ConsoleMail, screen: str
) -> None:
    page.set_viewport_size(VIEWPORTS[screen])  # type: ignore[arg-type]
    email = f"buh-{screen}@journey.example.kg"
    inn = add_customer(live_server.engine, name="ОсОО «Кабинет в браузере»", email=email)
    with live_server.engine.begin() as conn:
        for key, amount in ((f"{inn}-1", 40_000), (f"{inn}-2", 60_000)):
            charges.create(
                conn,
                charges.ChargeRequest(
                    client="apikey:journey",
                    idempotency_key=key,
                    inn=inn,
                    description="Отчёт в Соцфонд",
                    amount=amount,
                ),
            )

    page.goto("/cabinet")
    expect(page.locator("main[data-page=cabinet-sign-in]")).to_be_visible()
    page.get_by_label(RU("site.cabinet.inn"), exact=True).fill(inn)
    shot("sign-in")
    page.get_by_role("button", name=RU("site.cabinet.send_code")).click()
    expect(page.locator("main[data-page=cabinet-code]")).to_be_visible()
    shot("code-sent")
    page.get_by_label(RU("site.cabinet.code"), exact=True).fill(console_mail.code_for(email))
    page.get_by_role("button", name=RU("site.cabinet.sign_in")).click()

    expect(page.locator("main[data-page=cabinet]")).to_be_visible()
    expect(page.locator("#customer-name")).to_have_text("ОсОО «Кабинет в браузере»")
    expect(page.locator("#awaiting li")).to_have_count(2)
    said = RU.plural("site.cabinet.awaiting", 2, count=2, missing=som(100_000))
    expect(page.locator("#awaiting")).to_contain_text(said)
    shot("awaiting")

    osmp_pay(live_server, "sochi", inn, 100_000)  # exactly what is missing
    page.reload()
    expect(page.locator("#nothing-awaiting")).to_have_text(RU("site.cabinet.nothing_awaiting"))
    expect(page.locator("#statement-lines li")).to_have_count(3)  # the top-up, two reports
    receipt = page.get_by_role("link", name=RU("site.cabinet.receipt"))
    expect(receipt).to_have_count(1)
    pdf = page.request.get(receipt.get_attribute("href") or "")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
    shot("released")

    page.get_by_role("button", name=RU("site.cabinet.sign_out")).click()
    expect(page.locator("main[data-page=cabinet-sign-in]")).to_be_visible()


@pytest.mark.parametrize("screen", VIEWPORTS)
def test_apply_pay_verify_issue_followed_on_the_status_page(
    page: Page, shot: Shots, live_server: LiveServer, screen: str
) -> None:
    page.set_viewport_size(VIEWPORTS[screen])  # type: ignore[arg-type]
    inn = new_inn()
    page.goto("/apply")
    expect(page.locator("main[data-page=apply]")).to_be_visible()
    page.locator("#qty-eds-head").fill("1")
    page.get_by_label(RU("site.apply.inn"), exact=True).fill(inn)
    page.get_by_label(RU("site.apply.legal_form"), exact=True).select_option("ОсОО")
    page.get_by_label(RU("site.apply.name"), exact=True).fill(f"ОсОО «Заявка {screen}»")
    page.get_by_label(RU("site.apply.phone"), exact=True).fill("0555 123 456")
    page.get_by_label(RU("site.apply.email"), exact=True).fill(f"boss-{screen}@apply.example.kg")
    shot("application")
    # A person takes longer than TOLOM_APPLY_MIN_SECONDS to fill the form; so does this test.
    page.wait_for_timeout(3_200)
    page.get_by_role("button", name=RU("site.apply.send")).click()

    number_shown = page.locator("[data-number]")
    expect(number_shown).to_be_visible()
    number = number_shown.get_attribute("data-number") or ""
    with live_server.engine.connect() as conn:
        invoice = invoices.get(conn, number)
    assert invoice is not None and invoice.inn == inn
    shot("invoice")

    osmp_pay(live_server, "eds", number, invoice.total)
    page.goto(f"/status?invoice={number}")
    expect(page.locator("section.status")).to_have_attribute("data-stage", "paid")
    shot("status-paid")

    log_in(page, live_server.accounts["operator"])
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.applications")
    ).click()
    expect(page.locator("main[data-page=applications]")).to_be_visible()
    row = page.locator("table#applications tr", has_text=number)
    expect(row).to_have_attribute("data-status", "new")
    shot("queue")
    row.get_by_role("link").first.click()
    expect(page.locator("#f-status")).to_have_attribute("data-status", "new")
    page.get_by_role("button", name=RU("application.verify")).click()
    expect(page.locator("#application-done")).to_have_text(RU("application.done.verify"))
    expect(page.locator("#f-status")).to_have_attribute("data-status", "verified")
    shot("verified")

    page.locator("#application-orders a").first.click()
    expect(page.locator("main[data-page=orders-one]")).to_be_visible()
    page.get_by_role("button", name=RU("order.start")).click()
    expect(page.locator("#f-status")).to_have_attribute("data-status", "in_production")
    page.get_by_role("button", name=RU("order.issue")).click()
    expect(page.locator("#f-status")).to_have_attribute("data-status", "issued")
    shot("issued")

    page.goto(f"/status?invoice={number}")
    expect(page.locator("section.status")).to_have_attribute("data-stage", "issued")
    shot("status-issued")
