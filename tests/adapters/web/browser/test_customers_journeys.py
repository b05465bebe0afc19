"""Customers in a real browser: an operator finds a customer by INN and reads the statement
for a chosen range, and blocks and unblocks a customer (see conftest.py for the set-up;
words come from the pages' catalogue, the gettext catalogues, `tolom.texts`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import select

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import log_in
from tests.factories import add_customer
from tolom import apikeys
from tolom.billing import charges, customers
from tolom.db.schema import audit_log
from tolom.formatting import ZONE
from tolom.texts import texts

RU = texts("ru")
NBSP = "\u00a0"


def _cash_payment(live_server: LiveServer, key: str, inn: str, amount: str, n: int) -> None:
    """A cash-desk payment taken through the operator API."""
    answer = httpx.post(
        f"{live_server.url}/api/v1/manual-payments",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "channel": "cash_desk",
            "reference": f"PKO-{inn}-{n}",
            "service": "sochi",
            "account": inn,
            "amount": amount,
            "received_at": datetime.now(UTC).isoformat(),
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def _customers_from_the_nav(page: Page) -> None:
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.customers")
    ).click()
    expect(page.locator("main[data-page=customers]")).to_be_visible()


def test_operator_finds_a_customer_by_inn_and_reads_the_statement(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    inn = add_customer(live_server.engine, name="ОсОО «Выписка из браузера»")
    with live_server.engine.begin() as conn:
        key = apikeys.create(conn, name=f"desk-{inn}", scopes=["write"])
    _cash_payment(live_server, key, inn, "500.00", 1)
    _cash_payment(live_server, key, inn, "250.50", 2)
    with live_server.engine.begin() as conn:  # a report charge takes 100 som
        charge = charges.create(
            conn,
            charges.ChargeRequest(
                client="apikey:sochi",
                idempotency_key=f"browser-{inn}",
                inn=inn,
                description="Отчёт за октябрь",
                amount=10_000,
            ),
        )
    assert charge.status == "charged"

    log_in(page, live_server.accounts["operator"])
    _customers_from_the_nav(page)
    shot("customers")

    page.get_by_label(RU("customers.search"), exact=True).fill(inn)
    page.get_by_role("button", name=RU("customers.find")).click()
    rows = page.locator("table#customers tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-inn", inn)
    expect(rows.first).to_contain_text(f"650,50{NBSP}сом")
    shot("found-by-inn")

    rows.first.get_by_role("link", name=inn).click()
    expect(page.locator("main[data-page=customers-one]")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("ОсОО «Выписка из браузера»")
    expect(page.locator("#f-inn")).to_have_text(inn)
    expect(page.locator("#balance")).to_have_text(f"650,50{NBSP}сом")
    expect(page.locator("#all-payments")).to_have_attribute("href", f"/payments?q={inn}")
    expect(page.locator("#issue-invoice")).to_have_attribute("href", f"/invoices/new?inn={inn}")
    expect(page.locator("table#customer-payments tbody tr")).to_have_count(2)
    expect(page.locator("table#charges tbody tr")).to_have_count(1)
    shot("card")

    # The statement for a chosen range: today only, in Bishkek.
    today = datetime.now(ZONE).date()
    period = page.locator("form#statement-period")
    period.get_by_label(RU("customer.from"), exact=True).fill(today.isoformat())
    period.get_by_label(RU("customer.to"), exact=True).fill(today.isoformat())
    period.get_by_role("button", name=RU("customer.show")).click()
    expect(page).to_have_url(f"{live_server.url}/customers/{inn}?from={today}&to={today}#statement")
    expect(page.locator("#opening")).to_have_text(f"0,00{NBSP}сом")
    expect(page.locator("#credits")).to_have_text(f"750,50{NBSP}сом")
    expect(page.locator("#debits")).to_have_text(f"100,00{NBSP}сом")
    expect(page.locator("#closing")).to_have_text(f"650,50{NBSP}сом")
    lines = page.locator("table#statement-lines tbody tr[data-entry]")
    expect(lines).to_have_count(3)
    running = lines.locator("td:last-child")
    expect(running).to_have_text([f"500,00{NBSP}сом", f"750,50{NBSP}сом", f"650,50{NBSP}сом"])
    expect(lines.nth(2)).to_contain_text(f"-100,00{NBSP}сом")
    expect(lines.nth(2)).to_contain_text(RU("customer.entry_kind.charge"))
    page.locator("#statement").scroll_into_view_if_needed()
    shot("statement-today")

    # A range that ends before it starts is said next to the form.
    period = page.locator("form#statement-period")
    period.get_by_label(RU("customer.from"), exact=True).fill(today.isoformat())
    yesterday = (today - timedelta(days=1)).isoformat()
    period.get_by_label(RU("customer.to"), exact=True).fill(yesterday)
    period.get_by_role("button", name=RU("customer.show")).click()
    expect(page.locator("#statement-error")).to_have_text(RU("customer.error.period_order"))
    expect(page.locator("#balance")).to_have_text(f"650,50{NBSP}сом")
    shot("range-refused")

    # The days before the payments: the balance was zero then.
    period = page.locator("form#statement-period")
    period.get_by_label(RU("customer.from"), exact=True).fill(
        (today - timedelta(days=30)).isoformat()
    )
    period.get_by_label(RU("customer.to"), exact=True).fill(yesterday)
    period.get_by_role("button", name=RU("customer.show")).click()
    expect(page.locator("#closing")).to_have_text(f"0,00{NBSP}сом")
    expect(page.locator("#statement-empty")).to_have_text(RU("customer.no_movements"))
    shot("statement-before")


def test_operator_blocks_and_unblocks_a_customer(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    inn = add_customer(live_server.engine, name="ОсОО «Блокировка из браузера»")
    operator = live_server.accounts["operator"]
    log_in(page, operator)
    page.goto(f"/customers?q={inn}")
    page.locator("table#customers").get_by_role("link", name=inn).click()
    expect(page.locator("#f-status")).to_have_attribute("data-status", "active")
    shot("active")

    page.get_by_role("button", name=RU("customer.block")).click()
    expect(page.locator("#done")).to_have_text(RU("customer.done.blocked"))
    expect(page.locator("#f-status")).to_have_text(RU("customer.status.blocked"))
    expect(page.locator("#blocked-note")).to_be_visible()
    expect(page.get_by_role("button", name=RU("customer.block"))).to_have_count(0)
    shot("blocked")
    with live_server.engine.connect() as conn:
        found = customers.get(conn, inn)
    assert found is not None and found.status == "blocked"

    page.get_by_role("button", name=RU("customer.unblock")).click()
    expect(page.locator("#done")).to_have_text(RU("customer.done.unblocked"))
    expect(page.locator("#f-status")).to_have_attribute("data-status", "active")
    shot("unblocked")

    with live_server.engine.connect() as conn:
        trail = conn.execute(
            select(audit_log.c.action, audit_log.c.actor, audit_log.c.before, audit_log.c.after)
            .where(audit_log.c.object_type == "customer", audit_log.c.object_id == inn)
            .order_by(audit_log.c.id)
        ).all()
    assert [(a, actor, json.loads(b), json.loads(c)) for a, actor, b, c in trail] == [
        (
            "customer.block",
            f"user:{operator.username}",
            {"status": "active"},
            {"status": "blocked"},
        ),
        (
            "customer.unblock",
            f"user:{operator.username}",
            {"status": "blocked"},
            {"status": "active"},
        ),
    ]
