"""Signature orders: created by paying an `eds` invoice, carried to issue, cancelled with a
refund per policy, guarding the payment's reversal, and the expiry job; the API and CLI."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update
from starlette.testclient import TestClient

from tests.factories import Gateway, RestAgent, add_customer, new_txn_id
from tolom import apikeys, audit, secretbox
from tolom.billing import catalog, customers, invoices, orders
from tolom.billing.scheduled import JOBS
from tolom.db.schema import (
    accounts,
    deliveries,
    events,
    journal_entries,
    payment_reversals,
    postings,
    signature_orders,
    webhook_endpoints,
)
from tolom.db.schema import customers as customers_table
from tolom.events.worker import Worker
from tolom.ledger.accounts import account_balance
from tolom.money import format_amount
from tolom.payments import service as payment_service
from tolom.payments.model import CancelOutcome, CancelResult
from tolom.settings import Settings

HEAD = 151000  # eds-head, tyiyn
RUTOKEN_SIGNATURE = 120000  # eds-rutoken
CARRIER = 123457  # rutoken-device: 1234.57 som, priced in the tests (its price is not public)


# --- helpers -------------------------------------------------------------------------------


def invoice_for(
    engine: Engine, inn: str | None, items: list[tuple[str, int]] | None = None
) -> invoices.Invoice:
    with engine.begin() as conn:
        catalog.set_price(conn, "rutoken-device", CARRIER)
        return invoices.create(
            conn,
            items=items or [("eds-head", 1)],
            payer_name="ОсОО «Новый клиент»",
            inn=inn,
            validity_days=30,
        )


def pay(gateway: Gateway, invoice: invoices.Invoice, txn_id: str | None = None) -> int:
    answer = gateway.pay("eds", invoice.number, format_amount(invoice.total), txn_id=txn_id)
    assert answer["result"] == 0, answer
    return int(answer["prv_txn"])


def orders_of(engine: Engine, invoice: invoices.Invoice) -> list[orders.Order]:
    with engine.connect() as conn:
        return sorted(
            orders.list_orders(conn, invoice_number=invoice.number, limit=1000),
            key=lambda o: o.id,
        )


def events_of(engine: Engine, type_: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.type == type_).order_by(events.c.id))
        return [
            {
                "id": r.id,
                "key": r.ordering_key,
                "customer_id": r.customer_id,
                "payload": json.loads(r.payload),
            }
            for r in rows
        ]


def destinations(engine: Engine, event_id: int) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(deliveries.c.destination).where(deliveries.c.event_id == event_id)
            ).scalars()
        )


def balance(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


def ledger_balance(engine: Engine, code: str) -> int:
    with engine.connect() as conn:
        account_id = conn.execute(select(accounts.c.id).where(accounts.c.code == code)).scalar_one()
        return account_balance(conn, account_id)


def customer_id(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customer.id


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(table)
        return int(conn.execute(query.where(*where) if where else query).scalar_one())


def add_webhook(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(webhook_endpoints)
                .values(
                    name="crm",
                    url="http://127.0.0.1:9/hook",
                    secret_sealed=secretbox.for_connection(conn).seal(
                        "c2VjcmV0LWtleS1mb3ItdGVzdHM="
                    ),
                    event_types="*",
                )
                .returning(webhook_endpoints.c.id)
            ).scalar_one()
        )


def add_contacts(engine: Engine, inn: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(customers_table)
            .where(customers_table.c.inn == inn)
            .values(email="buh@example.kg", phone="+996555123456")
        )


def start(engine: Engine, order_id: int) -> orders.Transition:
    with engine.begin() as conn:
        return orders.start(conn, order_id)


def issue(engine: Engine, order_id: int, now: datetime | None = None) -> orders.Transition:
    with engine.begin() as conn:
        return orders.issue(conn, order_id, validity_months=12, now=now)


def cancel(
    engine: Engine, order_id: int, *, percent: int = 50, no_refund: bool = False
) -> orders.Transition:
    with engine.begin() as conn:
        return orders.cancel(
            conn,
            order_id,
            "Клиент отказался",
            refund_percent_in_production=percent,
            no_refund=no_refund,
        )


# --- paying an invoice creates its orders --------------------------------------------------


def test_paying_an_invoice_creates_one_order_per_unit_and_one_event(
    engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    add_contacts(engine, inn)
    webhook = add_webhook(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2), ("rutoken-device", 1)])
    txn_id = new_txn_id()
    payment_id = pay(gateway, invoice, txn_id)

    found = orders_of(engine, invoice)
    assert [(o.product_code, o.unit, o.kind, o.price) for o in found] == [
        ("eds-head", 1, "signature", HEAD),
        ("eds-head", 2, "signature", HEAD),
        ("rutoken-device", 1, "carrier", CARRIER),
    ]
    assert {(o.status, o.inn, o.payment_id, o.invoice_number) for o in found} == {
        ("paid", inn, payment_id, invoice.number)
    }

    [paid] = events_of(engine, "invoice.paid")
    assert paid["key"] == f"inn:{inn}"
    assert paid["customer_id"] == customer_id(engine, inn)
    assert paid["payload"] == {
        "invoice_number": invoice.number,
        "inn": inn,
        "payer_name": "ОсОО «Новый клиент»",
        "total": 2 * HEAD + CARRIER,
        "payment_id": payment_id,
        "lines": [
            {
                "product_code": "eds-head",
                "name": invoice.lines[0].name,
                "quantity": 2,
                "unit_price": HEAD,
                "amount": 2 * HEAD,
            },
            {
                "product_code": "rutoken-device",
                "name": invoice.lines[1].name,
                "quantity": 1,
                "unit_price": CARRIER,
                "amount": CARRIER,
            },
        ],
        "orders": [o.id for o in found],
    }
    # The customer is told (e-mail and SMS) and the other systems get the webhook.
    assert destinations(engine, paid["id"]) == {f"webhook:{webhook}", "email", "sms"}

    # A repeat of the pay answers the first payment and creates nothing more.
    assert pay(gateway, invoice, txn_id) == payment_id
    assert len(orders_of(engine, invoice)) == 3
    assert len(events_of(engine, "invoice.paid")) == 1


def test_an_invoice_without_a_known_customer_is_announced_to_systems_only(
    engine: Engine, gateway: Gateway
) -> None:
    webhook = add_webhook(engine)
    invoice = invoice_for(engine, None)
    pay(gateway, invoice)
    [paid] = events_of(engine, "invoice.paid")
    assert paid["customer_id"] is None
    assert paid["key"] == f"invoice:{invoice.number}"
    assert paid["payload"]["inn"] is None
    assert destinations(engine, paid["id"]) == {f"webhook:{webhook}"}
    [order] = orders_of(engine, invoice)
    assert order.inn is None and order.status == "paid"


def test_a_refused_pay_creates_no_order(engine: Engine, gateway: Gateway) -> None:
    invoice = invoice_for(engine, add_customer(engine))
    answer = gateway.pay("eds", invoice.number, "1.00")
    assert answer["result"] == 241
    assert count(engine, signature_orders) == 0
    assert events_of(engine, "invoice.paid") == []


# --- transitions ---------------------------------------------------------------------------


def test_an_order_goes_through_production_to_issue(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn)
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)

    started = start(engine, order.id)
    assert started.changed and started.previous == "paid"
    assert started.order.status == "in_production"
    assert started.order.production_started_at is not None
    again = start(engine, order.id)
    assert not again.changed and again.order == started.order

    moment = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)  # 15:30 in Bishkek
    issued = issue(engine, order.id, now=moment)
    assert issued.changed and issued.previous == "in_production"
    assert issued.order.status == "issued"
    assert issued.order.issued_at == moment
    assert issued.order.valid_until == date(2027, 11, 21)
    assert not issue(engine, order.id).changed

    [in_production] = events_of(engine, "order.in_production")
    [issued_event] = events_of(engine, "order.issued")
    assert in_production["payload"]["status"] == "in_production"
    assert issued_event["key"] == f"inn:{inn}"
    assert issued_event["customer_id"] == customer_id(engine, inn)
    assert issued_event["payload"] == {
        "order_id": order.id,
        "invoice_number": invoice.number,
        "inn": inn,
        "product_code": "eds-head",
        "name": order.name,
        "kind": "signature",
        "status": "issued",
        "issued_at": "2026-11-21T09:30:00+00:00",
        "valid_until": "2027-11-21",
    }


def test_the_customer_is_told_of_production_and_issue(engine: Engine, gateway: Gateway) -> None:
    """Each step a customer follows on /status is also sent (e-mail and SMS, in their
    language): invoice.paid, order.in_production, order.issued; a cancellation is not."""
    webhook = add_webhook(engine)
    inn = add_customer(engine, email="buh@romashka.kg", phone="0555123456", language="ky")
    invoice = invoice_for(engine, inn)
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    issue(engine, order.id)
    told = {f"webhook:{webhook}", "email", "sms"}
    for type_ in ("invoice.paid", "order.in_production", "order.issued"):
        [event] = events_of(engine, type_)
        assert event["customer_id"] == customer_id(engine, inn)
        assert destinations(engine, event["id"]) == told, type_
    with engine.connect() as conn:
        languages = set(
            conn.execute(
                select(deliveries.c.language).where(deliveries.c.recipient.is_not(None))
            ).scalars()
        )
    assert languages == {"ky"}


def test_transitions_out_of_order_are_refused_and_change_nothing(
    engine: Engine, gateway: Gateway
) -> None:
    invoice = invoice_for(engine, add_customer(engine), [("eds-head", 2)])
    pay(gateway, invoice)
    first, second = orders_of(engine, invoice)
    with pytest.raises(orders.OrderStateError, match="сначала начните производство"):
        issue(engine, first.id)
    start(engine, first.id)
    issue(engine, first.id)
    with pytest.raises(orders.OrderStateError, match="уже выдан"):
        start(engine, first.id)
    with pytest.raises(orders.OrderStateError, match="уже выдан: отменить нельзя"):
        cancel(engine, first.id)
    cancel(engine, second.id)
    with pytest.raises(orders.OrderStateError, match="отменён"):
        start(engine, second.id)
    with pytest.raises(orders.OrderStateError, match="отменён"):
        issue(engine, second.id)
    with pytest.raises(orders.OrderNotFound):
        start(engine, 999999)
    with pytest.raises(orders.OrderError, match="причину"), engine.begin() as conn:
        orders.cancel(conn, first.id, "   ", refund_percent_in_production=50)
    assert [o.status for o in orders_of(engine, invoice)] == ["issued", "cancelled"]
    assert len(events_of(engine, "order.issued")) == 1
    assert len(events_of(engine, "order.cancelled")) == 1


def test_a_carrier_is_issued_without_a_validity(engine: Engine, gateway: Gateway) -> None:
    invoice = invoice_for(engine, add_customer(engine), [("rutoken-device", 1)])
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    issued = issue(engine, order.id)
    assert issued.order.kind == "carrier" and issued.order.valid_until is None


# --- cancellation and refunds --------------------------------------------------------------


def test_cancelling_a_paid_order_refunds_all_of_its_price(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2)])
    pay(gateway, invoice)
    first, _second = orders_of(engine, invoice)
    done = cancel(engine, first.id)
    assert done.changed and done.previous == "paid"
    assert done.order.status == "cancelled"
    assert done.order.refund_amount == HEAD
    assert done.order.cancel_reason == "Клиент отказался"
    assert balance(engine, inn) == HEAD
    assert ledger_balance(engine, "revenue:eds") == HEAD  # 2 × HEAD paid, one refunded
    with engine.connect() as conn:
        entry = conn.execute(
            select(journal_entries).where(journal_entries.c.id == done.order.refund_entry_id)
        ).one()
        legs = conn.execute(
            select(
                postings.c.debit_account_id, postings.c.credit_account_id, postings.c.amount
            ).where(postings.c.entry_id == entry.id)
        ).all()
        revenue = conn.execute(
            select(accounts.c.id).where(accounts.c.code == "revenue:eds")
        ).scalar_one()
        customer = customers.get(conn, inn)
    assert entry.kind == "order_refund" and f"заказу №{first.id}" in entry.description
    assert customer is not None
    assert [tuple(leg) for leg in legs] == [(revenue, customer.account_id, HEAD)]

    [event] = events_of(engine, "order.cancelled")
    assert event["payload"]["refund_amount"] == HEAD
    assert event["payload"]["reason"] == "Клиент отказался"
    assert event["payload"]["status"] == "cancelled"
    assert event["customer_id"] == customer.id

    # A repeat answers the cancelled order and refunds nothing more.
    repeat = cancel(engine, first.id)
    assert not repeat.changed and repeat.order == done.order
    assert balance(engine, inn) == HEAD
    assert len(events_of(engine, "order.cancelled")) == 1


@pytest.mark.parametrize(("percent", "refund"), [(50, 61728), (100, CARRIER), (33, 40740)])
def test_cancelling_in_production_refunds_the_policy_share_rounded_down(
    engine: Engine, gateway: Gateway, percent: int, refund: int
) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("rutoken-device", 1)])
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    done = cancel(engine, order.id, percent=percent)
    assert refund == CARRIER * percent // 100
    assert done.order.refund_amount == refund
    assert balance(engine, inn) == refund
    assert ledger_balance(engine, "revenue:eds") == CARRIER - refund


def test_nothing_to_refund_posts_nothing(engine: Engine, gateway: Gateway) -> None:
    invoice = invoice_for(engine, None)  # no customer to refund to, and none needed
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    entries = count(engine, journal_entries)
    done = cancel(engine, order.id, percent=0)
    assert done.order.refund_amount == 0 and done.order.refund_entry_id is None
    assert count(engine, journal_entries) == entries


def test_a_refund_without_a_customer_is_refused_unless_done_outside(
    engine: Engine, gateway: Gateway
) -> None:
    invoice = invoice_for(engine, "01904202310427")  # an INN nobody is registered with
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    entries = count(engine, journal_entries)
    with pytest.raises(orders.RefundImpossible, match=r"01904202310427.*1510\.00"):
        cancel(engine, order.id)
    assert orders_of(engine, invoice)[0].status == "paid"
    done = cancel(engine, order.id, no_refund=True)
    assert done.order.status == "cancelled"
    assert done.order.refund_amount == 0 and done.order.refund_entry_id is None
    assert done.order.cancel_reason == f"Клиент отказался ({orders.NO_REFUND_NOTE})"
    assert count(engine, journal_entries) == entries
    assert ledger_balance(engine, "revenue:eds") == HEAD
    [event] = events_of(engine, "order.cancelled")
    assert event["customer_id"] is None and event["payload"]["refund_amount"] == 0


def test_no_refund_with_a_customer_credits_nothing(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn)
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    cancel(engine, order.id, no_refund=True)
    assert balance(engine, inn) == 0


# --- reversing the invoice's payment -------------------------------------------------------


@pytest.fixture
def rest(app, engine: Engine) -> RestAgent:  # type: ignore[no-untyped-def]
    return RestAgent.create(app, engine, code="rest")


def _rest_pay(rest: RestAgent, invoice: invoices.Invoice, txn_id: str) -> dict[str, Any]:
    response = rest.pay("eds", invoice.number, format_amount(invoice.total), txn_id=txn_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_agent_cannot_cancel_once_an_order_is_in_production(
    engine: Engine, rest: RestAgent
) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2)])
    _rest_pay(rest, invoice, "7001")
    first, second = orders_of(engine, invoice)
    start(engine, second.id)
    response = rest.cancel("7001")
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "already_served"
    assert "уже в производстве или выдан" in body["detail"]
    assert [o.status for o in orders_of(engine, invoice)] == ["paid", "in_production"]
    assert count(engine, payment_reversals) == 0
    assert ledger_balance(engine, "revenue:eds") == 2 * HEAD
    assert events_of(engine, "order.cancelled") == []
    with engine.connect() as conn:
        assert invoices.get(conn, invoice.number).status == "paid"  # type: ignore[union-attr]
    assert first.status == "paid"


def test_an_agent_cancel_before_production_cancels_the_orders(
    engine: Engine, rest: RestAgent
) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2)])
    paid = _rest_pay(rest, invoice, "7101")
    response = rest.cancel("7101", "Ошибся счётом")
    assert response.status_code == 200, response.text
    found = orders_of(engine, invoice)
    assert [o.status for o in found] == ["cancelled", "cancelled"]
    assert {o.refund_amount for o in found} == {0}  # the reversal returns the money
    assert {o.refund_entry_id for o in found} == {None}
    assert {o.cancel_reason for o in found} == {f"Платёж №{paid['receipt']} отменён: Ошибся счётом"}
    assert balance(engine, inn) == 0
    assert ledger_balance(engine, "revenue:eds") == 0
    assert len(events_of(engine, "order.cancelled")) == 2

    # The reopened invoice is paid again: the same orders belong to the new payment.
    again = _rest_pay(rest, invoice, "7102")
    revived = orders_of(engine, invoice)
    assert [o.id for o in revived] == [o.id for o in found]
    assert {(o.status, o.payment_id, o.cancel_reason) for o in revived} == {
        ("paid", again["receipt"], None)
    }
    assert len(events_of(engine, "invoice.paid")) == 2
    assert events_of(engine, "invoice.paid")[1]["payload"]["orders"] == [o.id for o in found]


def test_a_reversal_after_an_order_was_cancelled_on_its_own_is_refused(
    engine: Engine, rest: RestAgent
) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2)])
    _rest_pay(rest, invoice, "7201")
    first, _ = orders_of(engine, invoice)
    cancel(engine, first.id)  # refunded HEAD to the balance
    response = rest.cancel("7201")
    assert response.status_code == 409 and response.json()["code"] == "already_served"
    assert "вернула бы деньги повторно" in response.json()["detail"]
    assert balance(engine, inn) == HEAD
    assert ledger_balance(engine, "revenue:eds") == HEAD


@pytest.fixture
def api(app, engine: Engine) -> Api:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        tokens = {
            scope: apikeys.create(conn, name=f"key-{scope}", scopes=[scope])
            for scope in ("read", "write", "charges")
        }
    return Api(TestClient(app, client=("203.0.113.7", 50000)), tokens)


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client, self.tokens = client, tokens

    def get(self, path: str, key: str = "read", **params: Any) -> Any:
        return self.client.get(
            path, params=params or None, headers={"Authorization": f"Bearer {self.tokens[key]}"}
        )

    def post(self, path: str, body: Any = None, key: str = "write") -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[key]}"}
        if body is None:
            return self.client.post(path, headers=headers)
        return self.client.post(path, json=body, headers=headers)


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert "Traceback" not in response.text
    return body


def test_an_operator_reversal_is_refused_once_an_order_is_issued(
    engine: Engine, gateway: Gateway, api: Api
) -> None:
    invoice = invoice_for(engine, add_customer(engine))
    payment_id = pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    issue(engine, order.id)
    body = problem(
        api.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "ошибка"}),
        409,
        "already_served",
    )
    assert f"Заказ №{order.id}" in body["detail"]
    assert count(engine, payment_reversals) == 0
    assert orders_of(engine, invoice)[0].status == "issued"


# --- validity and expiry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 21), 12, date(2027, 11, 21)),
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
        (date(2028, 2, 29), 48, date(2032, 2, 29)),
        (date(2027, 3, 31), 11, date(2028, 2, 29)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 8, 31), 1, date(2026, 9, 30)),
        (date(2026, 1, 1), 0, date(2026, 1, 1)),
    ],
)
def test_add_months_clamps_to_the_end_of_the_month(day: date, months: int, expected: date) -> None:
    assert orders.add_months(day, months) == expected


@pytest.mark.parametrize(
    ("moment", "valid_until"),
    [
        (datetime(2028, 2, 29, 10, 0, tzinfo=UTC), date(2029, 2, 28)),  # 16:00 Feb 29 Bishkek
        (datetime(2028, 2, 29, 20, 0, tzinfo=UTC), date(2029, 3, 1)),  # already Mar 1 there
    ],
)
def test_valid_until_counts_from_the_issue_date_in_bishkek(
    engine: Engine, gateway: Gateway, moment: datetime, valid_until: date
) -> None:
    invoice = invoice_for(engine, add_customer(engine))
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    assert issue(engine, order.id, now=moment).order.valid_until == valid_until


def _issued_signature(
    engine: Engine, gateway: Gateway, valid_until: date, inn: str | None = None
) -> orders.Order:
    invoice = invoice_for(engine, inn or add_customer(engine))
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    start(engine, order.id)
    issue(engine, order.id)
    with engine.begin() as conn:  # as if issued a year before valid_until
        conn.execute(
            update(signature_orders)
            .where(signature_orders.c.id == order.id)
            .values(valid_until=valid_until)
        )
        found = orders.get(conn, order.id)
    assert found is not None
    return found


TODAY = date(2026, 11, 21)


def test_expiring_lists_signatures_within_the_window(engine: Engine, gateway: Gateway) -> None:
    expired = _issued_signature(engine, gateway, TODAY - timedelta(days=1))
    last_day = _issued_signature(engine, gateway, TODAY)
    soon = _issued_signature(engine, gateway, TODAY + timedelta(days=30))
    _later = _issued_signature(engine, gateway, TODAY + timedelta(days=31))
    carrier = invoice_for(engine, add_customer(engine), [("rutoken-device", 1)])
    pay(gateway, carrier)
    [carrier_order] = orders_of(engine, carrier)
    start(engine, carrier_order.id)
    issue(engine, carrier_order.id)
    with engine.connect() as conn:
        found = orders.expiring(conn, TODAY, 30)
        assert [(e.order.id, e.days_left) for e in found] == [(last_day.id, 0), (soon.id, 30)]
        assert [e.order.id for e in orders.expiring(conn, TODAY, 0)] == [last_day.id]
        # The dashboard's count (without the invoices' join) counts the same orders.
        assert orders.expiring_count(conn, TODAY, 30) == 2
        assert orders.expiring_count(conn, TODAY, 0) == 1
        paged = orders.expiring(conn, TODAY, 30, after_id=last_day.id, limit=1)
        assert [e.order.id for e in paged] == [soon.id]
    assert expired.id not in {e.order.id for e in found}


def test_each_expiring_signature_is_announced_once(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    add_contacts(engine, inn)
    webhook = add_webhook(engine)
    soon = _issued_signature(engine, gateway, TODAY + timedelta(days=10), inn=inn)
    later = _issued_signature(engine, gateway, TODAY + timedelta(days=40))
    with engine.begin() as conn:
        assert orders.announce_expiring(conn, TODAY, 30) == 1
    with engine.begin() as conn:
        assert orders.announce_expiring(conn, TODAY, 30) == 0
    [event] = events_of(engine, "signature.expiring")
    assert event["customer_id"] == customer_id(engine, inn)
    assert event["payload"] == {
        "order_id": soon.id,
        "invoice_number": soon.invoice_number,
        "inn": inn,
        "name": soon.name,
        "valid_until": (TODAY + timedelta(days=10)).isoformat(),
        "days_left": 10,
    }
    assert destinations(engine, event["id"]) == {f"webhook:{webhook}", "email", "sms"}
    # Ten days on, the other one enters the window and is announced; the first is not again.
    with engine.begin() as conn:
        assert orders.announce_expiring(conn, TODAY + timedelta(days=10), 30) == 1
    assert [e["payload"]["order_id"] for e in events_of(engine, "signature.expiring")] == [
        soon.id,
        later.id,
    ]
    with engine.connect() as conn:
        assert orders.get(conn, soon.id).expiry_notified_at is not None  # type: ignore[union-attr]


# --- the API -------------------------------------------------------------------------------


def test_api_lists_and_shows_orders(engine: Engine, gateway: Gateway, api: Api) -> None:
    inn = add_customer(engine)
    first_invoice = invoice_for(engine, inn, [("eds-head", 2)])
    other_invoice = invoice_for(engine, add_customer(engine), [("eds-rutoken", 1)])
    pay(gateway, first_invoice)
    pay(gateway, other_invoice)
    a, b = orders_of(engine, first_invoice)
    [c] = orders_of(engine, other_invoice)
    start(engine, b.id)

    page = api.get("/api/v1/orders", limit=2)
    assert page.status_code == 200, page.text
    assert [o["id"] for o in page.json()["items"]] == [c.id, b.id]
    rest = api.get("/api/v1/orders", limit=2, cursor=page.json()["next_cursor"]).json()
    assert [o["id"] for o in rest["items"]] == [a.id] and rest["next_cursor"] is None
    assert [o["id"] for o in api.get("/api/v1/orders", inn=inn).json()["items"]] == [b.id, a.id]
    assert [
        o["id"] for o in api.get("/api/v1/orders", invoice=other_invoice.number).json()["items"]
    ] == [c.id]
    assert [o["id"] for o in api.get("/api/v1/orders", status="in_production").json()["items"]] == [
        b.id
    ]

    shown = api.get(f"/api/v1/orders/{c.id}").json()
    assert shown["invoice_number"] == other_invoice.number
    assert (shown["product_code"], shown["kind"], shown["price"]) == (
        "eds-rutoken",
        "signature",
        "1200.00",
    )
    assert shown["status"] == "paid" and shown["refund_amount"] is None
    problem(api.get("/api/v1/orders/999999"), 404, "order_not_found")
    problem(api.get("/api/v1/orders/x"), 422, "invalid_request")
    problem(api.get("/api/v1/orders", status="lost"), 422, "invalid_request")
    problem(api.get("/api/v1/orders", cursor="abc"), 422, "invalid_request")


def test_api_transitions_are_idempotent_and_audited(
    engine: Engine, gateway: Gateway, api: Api
) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2)])
    pay(gateway, invoice)
    first, second = orders_of(engine, invoice)

    started = api.post(f"/api/v1/orders/{first.id}/start")
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "in_production"
    assert "Idempotent-Replayed" not in started.headers
    repeat = api.post(f"/api/v1/orders/{first.id}/start")
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json() == started.json()

    issued = api.post(f"/api/v1/orders/{first.id}/issue").json()
    today = orders.local_date(datetime.now(UTC))
    assert issued["status"] == "issued"
    assert issued["valid_until"] == orders.add_months(today, 12).isoformat()

    cancelled = api.post(f"/api/v1/orders/{second.id}/cancel", {"reason": "Передумали"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["refund_amount"] == "1510.00"
    assert cancelled.json()["cancel_reason"] == "Передумали"
    assert balance(engine, inn) == HEAD
    again = api.post(f"/api/v1/orders/{second.id}/cancel", {"reason": "Ещё раз"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["cancel_reason"] == "Передумали"
    assert balance(engine, inn) == HEAD

    with engine.connect() as conn:
        first_trail = list(reversed(audit.entries(conn, "order", str(first.id))))
        second_trail = audit.entries(conn, "order", str(second.id))
    assert [(e["action"], e["before"]["status"], e["after"]["status"]) for e in first_trail] == [
        ("order.start", "paid", "in_production"),
        ("order.issue", "in_production", "issued"),
    ]
    assert [e["action"] for e in second_trail] == ["order.cancel"]
    assert second_trail[0]["actor"] == "apikey:key-write"
    assert second_trail[0]["after"]["refund_amount"] == "1510.00"


def test_api_refusals(engine: Engine, gateway: Gateway, api: Api) -> None:
    invoice = invoice_for(engine, "01904202310427", [("eds-head", 2)])  # nobody has this INN
    pay(gateway, invoice)
    first, second = orders_of(engine, invoice)
    body = problem(api.post(f"/api/v1/orders/{first.id}/issue"), 409, "order_state_conflict")
    assert "производство" in body["detail"]
    body = problem(
        api.post(f"/api/v1/orders/{first.id}/cancel", {"reason": "x"}), 409, "refund_impossible"
    )
    assert "no_refund" in body["detail"]
    done = api.post(
        f"/api/v1/orders/{first.id}/cancel", {"reason": "Вернули наличными", "no_refund": True}
    )
    assert done.status_code == 200 and done.json()["refund_amount"] == "0.00"
    problem(api.post(f"/api/v1/orders/{first.id}/start"), 409, "order_state_conflict")
    body = problem(
        api.post(f"/api/v1/orders/{second.id}/cancel", {"reason": "  "}), 422, "invalid_request"
    )
    assert {e["field"] for e in body["errors"]} == {"reason"}
    problem(api.post(f"/api/v1/orders/{second.id}/cancel", {}), 422, "invalid_request")
    problem(api.post("/api/v1/orders/999999/start"), 404, "order_not_found")
    problem(api.post(f"/api/v1/orders/{second.id}/start", key="read"), 403, "insufficient_scope")
    problem(api.get("/api/v1/orders", key="charges"), 403, "insufficient_scope")
    problem(api.client.get("/api/v1/orders"), 401, "unauthenticated")
    assert orders_of(engine, invoice)[1].status == "paid"
    with engine.connect() as conn:
        assert [e["action"] for e in audit.entries(conn, "order")] == ["order.cancel"]


def test_api_lists_expiring_signatures(engine: Engine, gateway: Gateway, api: Api) -> None:
    today = orders.local_date(datetime.now(UTC))
    soon = _issued_signature(engine, gateway, today + timedelta(days=5))
    _issued_signature(engine, gateway, today + timedelta(days=45))
    body = api.get("/api/v1/orders/expiring").json()  # default: 30 days
    assert [(o["id"], o["days_left"]) for o in body["items"]] == [(soon.id, 5)]
    assert len(api.get("/api/v1/orders/expiring", within_days=60).json()["items"]) == 2
    assert api.get("/api/v1/orders/expiring", within_days=4).json()["items"] == []
    problem(api.get("/api/v1/orders/expiring", within_days=-1), 422, "invalid_request")


# --- the CLI -------------------------------------------------------------------------------


def test_cli_carries_an_order_to_issue_and_cancels_another(
    cli: Any, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn, [("eds-head", 2)])
    pay(gateway, invoice)
    first, second = orders_of(engine, invoice)

    listed = cli("order", "list", "--invoice", invoice.number, "--json")
    assert [o["id"] for o in json.loads(listed.stdout)] == [second.id, first.id]
    assert "оплачен" in cli("order", "list", "--inn", inn).output
    assert "№" + str(first.id) in cli("order", "list", "--status", "paid").output

    assert "в производство" in cli("order", "start", str(first.id)).output
    assert "Без изменений" in cli("order", "start", str(first.id)).output
    issued = json.loads(cli("order", "issue", str(first.id), "--json").stdout)
    assert issued["status"] == "issued" and issued["valid_until"]
    shown = cli("order", "show", str(first.id))
    assert "Действует до" in shown.output

    cancelled = cli("order", "cancel", str(second.id), "--reason", "Отказ", "--json")
    assert json.loads(cancelled.stdout)["refund_amount"] == "1510.00"
    assert balance(engine, inn) == HEAD
    with engine.connect() as conn:
        actions = [e["action"] for e in reversed(audit.entries(conn, "order"))]
    assert actions == ["order.start", "order.issue", "order.cancel"]


def test_cli_refusals(cli: Any, engine: Engine, gateway: Gateway) -> None:
    invoice = invoice_for(engine, "01904202310427")
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    for args, fragment in [
        (("order", "issue", str(order.id)), "сначала начните производство"),
        (("order", "cancel", str(order.id), "--reason", "x"), "no_refund"),
        (("order", "show", "999999"), "не найден"),
        (("order", "start", "999999"), "не найден"),
        (("order", "list", "--status", "lost"), "статус"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert fragment in result.output, result.output
    done = cli("order", "cancel", str(order.id), "--reason", "Вернули наличными", "--no-refund")
    assert done.exit_code == 0, done.output
    with engine.connect() as conn:
        assert [e["action"] for e in audit.entries(conn, "order")] == ["order.cancel"]


def test_cli_expiring_and_announce(cli: Any, engine: Engine, gateway: Gateway) -> None:
    today = orders.local_date(datetime.now(UTC))
    soon = _issued_signature(engine, gateway, today + timedelta(days=3))
    listed = json.loads(cli("order", "expiring", "--json").stdout)
    assert [(o["id"], o["days_left"]) for o in listed["items"]] == [(soon.id, 3)]
    assert "announced" not in listed
    first = json.loads(cli("order", "expiring", "--announce", "--json").stdout)
    assert first["announced"] == 1
    second = cli("order", "expiring", "--announce")
    assert "Отправлено уведомлений: 0" in second.output
    assert len(events_of(engine, "signature.expiring")) == 1
    assert "нет" in cli("order", "expiring", "--within-days", "1").output


# --- concurrency ---------------------------------------------------------------------------


def _together(*calls: Any) -> list[Any]:
    """Run the calls at once on threads; each returns its value or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_cancels_of_one_order_refund_once(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    invoice = invoice_for(engine, inn)
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    results = _together(*[lambda: cancel(engine, order.id) for _ in range(6)])
    assert all(isinstance(r, orders.Transition) for r in results), results
    assert sum(r.changed for r in results) == 1
    assert balance(engine, inn) == HEAD
    assert count(engine, journal_entries, journal_entries.c.kind == "order_refund") == 1
    assert len(events_of(engine, "order.cancelled")) == 1


def test_a_reversal_racing_the_start_of_production_lets_exactly_one_win(
    engine: Engine, gateway: Gateway
) -> None:
    invoice = invoice_for(engine, add_customer(engine))
    payment_id = pay(gateway, invoice)
    [order] = orders_of(engine, invoice)

    def reverse() -> CancelResult:
        with engine.begin() as conn:
            return payment_service.reverse(conn, payment_id, "ошибка", "apikey:test")

    reversed_, started = _together(reverse, lambda: start(engine, order.id))
    assert isinstance(reversed_, CancelResult)
    [final] = orders_of(engine, invoice)
    if reversed_.outcome is CancelOutcome.OK:
        assert isinstance(started, orders.OrderStateError)
        assert final.status == "cancelled"
        assert ledger_balance(engine, "revenue:eds") == 0
    else:
        assert reversed_.outcome is CancelOutcome.ALREADY_SERVED
        assert isinstance(started, orders.Transition) and started.changed
        assert final.status == "in_production"
        assert ledger_balance(engine, "revenue:eds") == HEAD


def test_the_worker_announces_expiring_signatures_itself(
    engine: Engine, gateway: Gateway, settings: Settings
) -> None:
    """No cron needed: a running worker does the daily job (hourly, announcing each once)."""
    today = orders.local_date(datetime.now(UTC))
    soon = _issued_signature(engine, gateway, today + timedelta(days=5))
    _issued_signature(engine, gateway, today + timedelta(days=200))
    Worker(settings, engine, jobs=JOBS).run(once=True)  # as `tolom worker` starts it
    Worker(settings, engine, jobs=JOBS).run(once=True)
    assert [e["payload"]["order_id"] for e in events_of(engine, "signature.expiring")] == [soon.id]
