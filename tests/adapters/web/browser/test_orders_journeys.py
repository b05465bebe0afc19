"""Signature orders and the outbox in a real browser: an operator finds a paid order in
the queue, starts its production and issues it; an accountant re-drives a dead webhook
delivery, which the worker then delivers (see conftest.py for the set-up; words come from
the pages' catalogue, the gettext catalogues, `tolom.texts`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, log_in
from tests.core.events.test_webhooks import Receiver, add_endpoint, fast, receiving
from tests.factories import add_customer
from tolom import apikeys
from tolom.billing import invoices, orders
from tolom.db.schema import deliveries
from tolom.events import outbox
from tolom.events.outbox import EventType
from tolom.events.worker import Worker
from tolom.money import format_amount
from tolom.settings import Settings


def _paid_order(live_server: LiveServer) -> tuple[str, int]:
    """A customer's invoice for one signature, paid at the cash desk through the API."""
    inn = add_customer(live_server.engine, name="ОсОО «Подпись из браузера»")
    with live_server.engine.begin() as conn:
        invoice = invoices.create(
            conn, items=[("eds-head", 1)], payer_name="ОсОО «Подпись»", inn=inn, validity_days=30
        )
        key = apikeys.create(conn, name=f"orders-{inn}", scopes=["write"])
    answer = httpx.post(
        f"{live_server.url}/api/v1/manual-payments",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "channel": "cash_desk",
            "reference": f"PKO-{inn}",
            "service": "eds",
            "account": invoice.number,
            "amount": format_amount(invoice.total),
            "received_at": datetime.now(UTC).isoformat(),
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    with live_server.engine.connect() as conn:
        [order] = orders.list_orders(conn, invoice_number=invoice.number)
    return inn, order.id


def test_operator_starts_and_issues_a_signature_order(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    inn, number = _paid_order(live_server)
    log_in(page, live_server.accounts["operator"])
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.orders")
    ).click()
    expect(page.locator("main[data-page=orders]")).to_be_visible()
    expect(page.get_by_role("link", name=RU("orders.tab.paid"))).to_have_attribute(
        "aria-current", "page"
    )
    shot("queue")

    page.get_by_label(RU("orders.inn"), exact=True).fill(inn)
    page.get_by_role("button", name=RU("orders.apply")).click()
    rows = page.locator("table#orders tbody tr")
    expect(rows).to_have_count(1)
    shot("found-by-inn")
    rows.first.get_by_role("link", name=str(number)).click()

    expect(page.locator("main[data-page=orders-one]")).to_be_visible()
    expect(page.locator("#f-status")).to_have_attribute("data-status", "paid")
    expect(page.locator("#f-customer")).to_contain_text("ОсОО «Подпись из браузера»")
    shot("order")

    page.get_by_role("button", name=RU("order.start")).click()
    expect(page.locator("#order-done")).to_have_text(RU("order.done.start"))
    expect(page.locator("#f-status")).to_have_attribute("data-status", "in_production")
    expect(page.locator("#h-started")).to_be_visible()
    shot("in-production")

    page.get_by_role("button", name=RU("order.issue")).click()
    expect(page.locator("#order-done")).to_have_text(RU("order.done.issue"))
    expect(page.locator("#f-status")).to_have_attribute("data-status", "issued")
    today = orders.local_date(datetime.now(UTC))
    expect(page.locator("#f-valid-until")).to_have_attribute(
        "data-date", orders.add_months(today, 12).isoformat()
    )
    expect(page.locator("form#cancel")).to_have_count(0)
    shot("issued")


def test_accountant_redrives_a_dead_webhook_delivery(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    with receiving(Receiver()) as receiver:
        endpoint_id = add_endpoint(
            live_server.engine, receiver, name=f"journey-{live_server.backend}"
        )
        with live_server.engine.begin() as conn:
            event_id = outbox.emit(
                conn,
                EventType.PAYMENT_ACCEPTED,
                ordering_key="customer:journey",
                payload={"payment_id": 1, "note": "журнал"},
            )
            delivery_id = conn.execute(
                select(deliveries.c.id).where(
                    deliveries.c.event_id == event_id,
                    deliveries.c.destination == f"webhook:{endpoint_id}",
                )
            ).scalar_one()
            conn.execute(  # as if the worker had given up on it
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(status="dead", attempts=15, last_error="HTTP 503")
            )

        log_in(page, live_server.accounts["accountant"])
        page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
            "link", name=RU("nav.events")
        ).click()
        expect(page.locator("main[data-page=events]")).to_be_visible()
        dead = page.locator(f"table#dead-deliveries tr[data-id='{delivery_id}']")
        expect(dead).to_contain_text("HTTP 503")
        expect(dead).to_have_attribute("data-status", "dead")
        shot("dead-delivery")

        label = RU("events.redrive_label").format(number=delivery_id)
        dead.get_by_role("button", name=label).click()
        expect(page.locator("main[data-page=events-one]")).to_be_visible()
        expect(page).to_have_url(re.compile(rf"/events/{event_id}\?redriven=1$"))
        expect(page.locator("#redriven")).to_have_text(RU("events.redriven").format(count=1))
        row = page.locator(f"table#deliveries tr[data-id='{delivery_id}']")
        expect(row).to_have_attribute("data-status", "pending")
        shot("queued-again")

        # The worker (`tolom worker`) delivers it; the page then says so.
        Worker(fast(Settings()), live_server.engine).run(once=True)
        page.reload()
        expect(row).to_have_attribute("data-status", "delivered")
        shot("delivered")
    assert str(event_id) in receiver.effects
