"""Charges behind the balance: taken at once or awaiting payment, released by top-ups oldest
first in the top-up's own transaction, cancelled while waiting, refunded by a reversing
entry; idempotent per client key; consistent under concurrency on PostgreSQL."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer, new_inn, postgres_only
from tolom import apikeys
from tolom.billing import charges, customers, invoices, tariffs
from tolom.db.schema import (
    audit_log,
    deliveries,
    events,
    journal_entries,
    postings,
    signature_orders,
)
from tolom.db.schema import charges as charges_table
from tolom.formatting import som
from tolom.ledger.accounts import account_balance, system_account
from tolom.money import format_amount


@dataclass
class Sochi:
    """The СОЧИ system's view of /api/v1/charges (a `charges` key), plus reader and writer."""

    client: TestClient
    engine: Engine
    tokens: dict[str, str]

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def charge(self, inn: str, amount: str | None = "100.00", key: str = "", **extra: Any) -> Any:
        body: dict[str, Any] = {
            "idempotency_key": key or f"k-{random.getrandbits(48)}",
            "inn": inn,
            "description": "Отчёт",
            **extra,
        }
        if amount is not None:
            body["amount"] = amount
        return self.client.post("/api/v1/charges", json=body, headers=self.headers("charges"))

    def post(self, path: str, body: Any = None, key: str = "charges") -> Any:
        return self.client.post(path, json=body, headers=self.headers(key))

    def get(self, path: str, key: str = "charges", **params: Any) -> Any:
        return self.client.get(path, params=params or None, headers=self.headers(key))


@pytest.fixture
def sochi(app, engine: Engine) -> Sochi:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        tokens = {
            "charges": apikeys.create(conn, name="sochi", scopes=["charges"]),
            "read": apikeys.create(conn, name="reader", scopes=["read"]),
            "write": apikeys.create(conn, name="writer", scopes=["write"]),
        }
    return Sochi(TestClient(app, client=("127.0.0.1", 50000)), engine, tokens)


def balance(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


def statuses(engine: Engine, inn: str) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        found = charges.search(conn, inn=inn, limit=1000)
    return [(c.amount, c.status) for c in reversed(found)]


def event_types(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(events.c.type).order_by(events.c.id)).scalars())


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


# --- taking a charge -----------------------------------------------------------------------


def test_a_covered_charge_is_taken_at_once(sochi: Sochi, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "500.00")["result"] == 0
    response = sochi.charge(inn, "150.00", report={"form": "vat", "period": "2026-10"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "charged" and body["amount"] == "150.00"
    assert body["report"]["form"] == "vat" and body["settled_at"] is not None
    assert balance(engine, inn) == 350_00
    with engine.connect() as conn:
        assert account_balance(conn, system_account(conn, "revenue:sochi").id) == 150_00
        entry = conn.execute(
            select(journal_entries.c.kind).order_by(journal_entries.c.id.desc()).limit(1)
        ).scalar_one()
    assert entry == "charge"
    assert event_types(engine)[-1] == "charge.charged"


def test_a_charge_the_balance_does_not_cover_waits_and_nothing_moves(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "100.00")["result"] == 0
    with engine.connect() as conn:
        entries_before = conn.execute(select(func.count()).select_from(postings)).scalar_one()
    body = sochi.charge(inn, "100.01").json()
    assert body["status"] == "awaiting_payment" and body["settled_at"] is None
    assert balance(engine, inn) == 100_00  # no partial charge, never negative
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(postings)).scalar_one() == (
            entries_before
        )
    assert event_types(engine)[-1] == "charge.awaiting_payment"


def test_a_top_up_releases_waiting_charges_oldest_first_up_to_what_it_covers(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    ids = [sochi.charge(inn, amount).json()["id"] for amount in ("100", "200", "300", "50")]
    assert [s for _, s in statuses(engine, inn)] == ["awaiting_payment"] * 4

    paid = gateway.pay("sochi", inn, "350.00")
    assert paid["result"] == 0
    # 100 and 200 fit; 300 does not, and the 50 behind it waits its turn.
    assert statuses(engine, inn) == [
        (100_00, "charged"),
        (200_00, "charged"),
        (300_00, "awaiting_payment"),
        (50_00, "awaiting_payment"),
    ]
    assert balance(engine, inn) == 50_00
    first = sochi.get(f"/api/v1/charges/{ids[0]}").json()
    assert first["payment_id"] == int(paid["prv_txn"])

    assert gateway.pay("sochi", inn, "300.00")["result"] == 0
    assert [s for _, s in statuses(engine, inn)] == ["charged"] * 4
    assert balance(engine, inn) == 0

    types = event_types(engine)
    assert types.count("charge.settled") == 4
    # Each settled charge's event says what the balance was left with.
    with engine.connect() as conn:
        last = conn.execute(
            select(events.c.payload).order_by(events.c.id.desc()).limit(1)
        ).scalar_one()
    assert json.loads(last)["balance"] == 0


def test_a_new_charge_waits_behind_an_earlier_one_even_if_it_fits(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "100.00")["result"] == 0
    assert sochi.charge(inn, "500.00").json()["status"] == "awaiting_payment"
    assert sochi.charge(inn, "10.00").json()["status"] == "awaiting_payment"
    assert balance(engine, inn) == 100_00


def test_a_cash_desk_payment_releases_charges_too(sochi: Sochi, engine: Engine) -> None:
    inn = add_customer(engine)
    charge = sochi.charge(inn, "40.00").json()
    response = sochi.post(
        "/api/v1/manual-payments",
        {
            "channel": "cash_desk",
            "reference": "PKO-1",
            "service": "sochi",
            "account": inn,
            "amount": "40.00",
        },
        key="write",
    )
    assert response.status_code == 201, response.text
    assert sochi.get(f"/api/v1/charges/{charge['id']}").json()["status"] == "charged"
    assert balance(engine, inn) == 0


# --- idempotency ---------------------------------------------------------------------------


def test_a_repeat_answers_the_same_charge_and_charges_once(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "500.00")["result"] == 0
    first = sochi.charge(inn, "100.00", key="report-1")
    again = sochi.charge(inn, "100.00", key="report-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert balance(engine, inn) == 400_00

    conflict = sochi.charge(inn, "100.01", key="report-1")
    problem(conflict, 409, "idempotency_conflict")
    other = add_customer(engine)
    problem(sochi.charge(other, "100.00", key="report-1"), 409, "idempotency_conflict")
    assert balance(engine, inn) == 400_00


def test_keys_are_per_client(sochi: Sochi, engine: Engine, app) -> None:  # type: ignore[no-untyped-def]
    inn = add_customer(engine)
    with engine.begin() as conn:
        other = apikeys.create(conn, name="sochi2", scopes=["charges"])
    sochi.charge(inn, "10.00", key="same")
    response = sochi.client.post(
        "/api/v1/charges",
        json={"idempotency_key": "same", "inn": inn, "amount": "10.00", "description": "x"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert response.status_code == 201
    assert len(statuses(engine, inn)) == 2


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": None}, "amount"),  # neither amount nor tariff
        ({"amount": "10.00", "tariff": "sti-vat-month"}, "amount"),  # both
        ({"amount": "0.00"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"amount": "100000000.01"}, "amount"),
        ({"inn": "123"}, "inn"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"description": ""}, "description"),
        ({"tariff": "no-such-tariff", "amount": None}, "tariff"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    sochi: Sochi, engine: Engine, body: dict[str, Any], field: str
) -> None:
    inn = add_customer(engine)
    request: dict[str, Any] = {
        "idempotency_key": "k1",
        "inn": inn,
        "amount": "10.00",
        "description": "Отчёт",
    }
    request.update(body)
    request = {k: v for k, v in request.items() if v is not None}
    response = sochi.client.post("/api/v1/charges", json=request, headers=sochi.headers("charges"))
    found = problem(response, 422, "invalid_request")
    assert field in {e["field"].split(".")[-1] for e in found["errors"]}, found
    assert statuses(engine, inn) == []


def test_unknown_and_blocked_customers_are_refused(sochi: Sochi, engine: Engine) -> None:
    problem(sochi.charge(new_inn()), 404, "customer_not_found")
    blocked = add_customer(engine, status="blocked")
    problem(sochi.charge(blocked), 409, "customer_blocked")
    assert statuses(engine, blocked) == []


def test_scopes(sochi: Sochi, engine: Engine) -> None:
    inn = add_customer(engine)
    for key in ("read", "write"):
        response = sochi.client.post(
            "/api/v1/charges",
            json={"idempotency_key": "k", "inn": inn, "amount": "1.00", "description": "x"},
            headers=sochi.headers(key),
        )
        problem(response, 403, "insufficient_scope")
    charge_id = sochi.charge(inn).json()["id"]
    assert sochi.get(f"/api/v1/charges/{charge_id}", key="read").status_code == 200
    assert sochi.get("/api/v1/charges", key="read", inn=inn).status_code == 200
    problem(
        sochi.post(f"/api/v1/charges/{charge_id}/cancel", key="read"), 403, "insufficient_scope"
    )
    # The СОЧИ key does not read payments or customers.
    problem(sochi.get("/api/v1/payments"), 403, "insufficient_scope")


def test_unknown_and_malformed_charge_ids(sochi: Sochi) -> None:
    problem(sochi.get("/api/v1/charges/999999"), 404, "charge_not_found")
    problem(sochi.get("/api/v1/charges/abc"), 422, "invalid_request")
    problem(sochi.post("/api/v1/charges/999999/cancel"), 404, "charge_not_found")


# --- cancel and refund ---------------------------------------------------------------------


def test_cancel_a_waiting_charge_and_the_next_ones_may_then_be_taken(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "50.00")["result"] == 0
    big = sochi.charge(inn, "500.00").json()
    small = sochi.charge(inn, "30.00").json()
    assert small["status"] == "awaiting_payment"

    cancelled = sochi.post(f"/api/v1/charges/{big['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert sochi.get(f"/api/v1/charges/{small['id']}").json()["status"] == "charged"
    assert balance(engine, inn) == 20_00
    again = sochi.post(f"/api/v1/charges/{big['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    problem(sochi.post(f"/api/v1/charges/{small['id']}/cancel"), 409, "charge_not_awaiting")
    with engine.connect() as conn:
        audited = conn.execute(
            select(func.count()).where(audit_log.c.action == "charge.cancel")
        ).scalar_one()
    assert audited == 1


def test_refund_returns_the_money_by_a_reversing_entry(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "100.00")["result"] == 0
    taken = sochi.charge(inn, "100.00").json()
    waiting = sochi.charge(inn, "60.00").json()
    assert balance(engine, inn) == 0

    problem(
        sochi.post(f"/api/v1/charges/{waiting['id']}/refund", {"reason": "x"}),
        409,
        "charge_not_charged",
    )
    problem(
        sochi.post(f"/api/v1/charges/{taken['id']}/refund", {"reason": ""}), 422, "invalid_request"
    )
    refunded = sochi.post(
        f"/api/v1/charges/{taken['id']}/refund", {"reason": "Отчёт отклонён"}, key="write"
    )
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    assert refunded.json()["refund_reason"] == "Отчёт отклонён"
    # The refund is a credit like a top-up: it releases the waiting 60.
    assert sochi.get(f"/api/v1/charges/{waiting['id']}").json()["status"] == "charged"
    assert balance(engine, inn) == 40_00
    again = sochi.post(f"/api/v1/charges/{taken['id']}/refund", {"reason": "again"})
    assert again.status_code == 200 and again.json()["refund_reason"] == "Отчёт отклонён"
    assert balance(engine, inn) == 40_00
    with engine.connect() as conn:
        revenue = account_balance(conn, system_account(conn, "revenue:sochi").id)
    assert revenue == 60_00
    assert "charge.refunded" in event_types(engine)


def test_list_charges_by_customer_and_status_in_pages(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    for _ in range(5):
        sochi.charge(inn, "10.00")
    assert gateway.pay("sochi", inn, "20.00")["result"] == 0
    waiting = sochi.get("/api/v1/charges", inn=inn, status="awaiting_payment", limit=2).json()
    assert len(waiting["items"]) == 2 and waiting["next_cursor"]
    rest = sochi.get(
        "/api/v1/charges",
        inn=inn,
        status="awaiting_payment",
        limit=2,
        cursor=waiting["next_cursor"],
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert {c["status"] for c in waiting["items"] + rest["items"]} == {"awaiting_payment"}


# --- events --------------------------------------------------------------------------------


def test_a_top_up_emits_its_events_in_the_same_transaction(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    sochi.charge(inn, "70.00")
    before = event_types(engine)
    txn_id = "555001"
    assert gateway.pay("sochi", inn, "100.00", txn_id=txn_id)["result"] == 0
    assert gateway.pay("sochi", inn, "100.00", txn_id=txn_id)["result"] == 0  # a repeat
    new = event_types(engine)[len(before) :]
    assert new == ["payment.accepted", "charge.settled"]  # the cause first
    with engine.connect() as conn:
        payload = json.loads(
            conn.execute(
                select(events.c.payload).where(events.c.type == "payment.accepted")
            ).scalar_one()
        )
    assert payload["inn"] == inn and payload["amount"] == 100_00
    # The balance the top-up made; the settled charge's event carries what is left.
    assert payload["balance"] == 100_00 and payload["txn_id"] == txn_id


def test_a_refused_top_up_leaves_no_event(gateway: Gateway, engine: Engine) -> None:
    inn = add_customer(engine, status="blocked")
    assert gateway.pay("sochi", inn, "100.00")["result"] != 0
    assert event_types(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 0


# --- concurrency (PostgreSQL: real row locks between connections) ---------------------------


@postgres_only
def test_concurrent_top_ups_and_charges_keep_every_rule(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    """Ten threads top up and charge one customer at once; afterwards the balance equals
    what came in minus what was taken, no charge was taken twice, none in part, and the
    waiting ones are exactly those the balance could not reach in order."""
    inn = add_customer(engine)
    amounts = [random.randint(1, 300) * 100 for _ in range(60)]
    top_ups = [random.randint(1, 300) * 100 for _ in range(30)]
    errors: list[str] = []

    def charge_some(chunk: list[int], worker: int) -> None:
        for n, amount in enumerate(chunk):
            response = sochi.charge(inn, format_amount(amount), key=f"w{worker}-{n}")
            if response.status_code != 201:
                errors.append(response.text)

    def top_up_some(chunk: list[int]) -> None:
        for amount in chunk:
            answer = gateway.pay("sochi", inn, format_amount(amount))
            if answer["result"] != 0:
                errors.append(str(answer))

    threads = [threading.Thread(target=charge_some, args=(amounts[i::5], i)) for i in range(5)] + [
        threading.Thread(target=top_up_some, args=(top_ups[i::5],)) for i in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    with engine.connect() as conn:
        rows = conn.execute(
            select(charges_table.c.amount, charges_table.c.status).order_by(charges_table.c.id)
        ).all()
    taken = sum(a for a, s in rows if s == "charged")
    assert len(rows) == len(amounts)
    assert balance(engine, inn) == sum(top_ups) - taken >= 0
    waiting = [a for a, s in rows if s == "awaiting_payment"]
    if waiting:  # the oldest waiting one is more than what is left
        assert waiting[0] > balance(engine, inn)


@postgres_only
def test_identical_charges_at_the_same_instant_make_one(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "1000.00")["result"] == 0
    barrier = threading.Barrier(20)
    answers: list[Any] = []

    def send() -> None:
        barrier.wait()
        answers.append(sochi.charge(inn, "25.00", key="same-report"))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert balance(engine, inn) == 975_00


# --- the CLI -------------------------------------------------------------------------------


def test_the_charge_commands(sochi: Sochi, engine: Engine, gateway: Gateway, cli: Any) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "100.00")["result"] == 0
    taken = sochi.charge(inn, "100.00", description="НДС").json()
    waiting = sochi.charge(inn, "70.00").json()

    listed = cli("charge", "list", "--inn", inn)
    assert listed.exit_code == 0, listed.output
    assert (
        "ожидает оплаты" in listed.output and f"Ожидают оплаты: 1 на {som(7000)}" in listed.output
    )
    shown = json.loads(cli("charge", "show", str(taken["id"]), "--json").stdout)
    assert shown["status"] == "charged" and shown["client"] == "apikey:sochi"

    refunded = cli("charge", "refund", str(taken["id"]), "--reason", "Ошибка СОЧИ")
    assert refunded.exit_code == 0, refunded.output
    # The refund released the waiting 70.
    assert sochi.get(f"/api/v1/charges/{waiting['id']}").json()["status"] == "charged"
    assert balance(engine, inn) == 30_00

    refused = cli("charge", "cancel", str(taken["id"]))
    assert refused.exit_code == 1 and "можно только вернуть" in refused.output
    missing = cli("charge", "show", "999999")
    assert missing.exit_code == 1 and "не найдено" in missing.output
    bad = cli("charge", "list", "--status", "lost")
    assert bad.exit_code == 1 and "неизвестный статус" in bad.output
    with engine.connect() as conn:
        actions = list(
            conn.execute(
                select(audit_log.c.action, audit_log.c.actor).where(
                    audit_log.c.object_type == "charge"
                )
            )
        )
    refunds = [actor for action, actor in actions if action == "charge.refund"]
    assert len(refunds) == 1 and refunds[0].startswith("cli:")


def test_cli_and_api_write_the_same_cancel_and_refund_lines(
    sochi: Sochi, engine: Engine, gateway: Gateway, cli: Any
) -> None:
    """One use case behind both: the same audit line for the same change; a repeat writes
    none from either side."""
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "200.00")["result"] == 0
    taken = [sochi.charge(inn, "100.00").json()["id"] for _ in range(2)]
    waiting = [sochi.charge(inn, "70.00").json()["id"] for _ in range(2)]
    assert cli("charge", "cancel", str(waiting[0])).exit_code == 0
    assert sochi.post(f"/api/v1/charges/{waiting[0]}/cancel").status_code == 200  # a repeat
    assert sochi.post(f"/api/v1/charges/{waiting[1]}/cancel").status_code == 200
    assert cli("charge", "refund", str(taken[0]), "--reason", "Ошибка СОЧИ").exit_code == 0
    refunded = sochi.post(f"/api/v1/charges/{taken[1]}/refund", {"reason": "Ошибка СОЧИ"})
    assert refunded.status_code == 200, refunded.text
    assert cli("charge", "refund", str(taken[1]), "--reason", "ещё раз").exit_code == 0
    with engine.connect() as conn:
        lines = [
            dict(row._mapping)
            for row in conn.execute(
                select(audit_log)
                .where(audit_log.c.action.in_(["charge.cancel", "charge.refund"]))
                .order_by(audit_log.c.id)
            )
        ]
    assert [(line["action"], line["object_id"]) for line in lines] == [
        ("charge.cancel", str(waiting[0])),
        ("charge.cancel", str(waiting[1])),
        ("charge.refund", str(taken[0])),
        ("charge.refund", str(taken[1])),
    ]
    assert all(line["actor"].startswith("cli:") for line in lines[::2])
    for by_cli, by_api in ((lines[0], lines[1]), (lines[2], lines[3])):
        assert (by_cli["before"], by_cli["after"]) == (by_api["before"], by_api["after"])
    assert json.loads(lines[2]["after"]) == {"status": "refunded", "reason": "Ошибка СОЧИ"}


def test_an_order_refund_releases_waiting_charges_like_a_top_up(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    with engine.begin() as conn:
        invoice = invoices.create(
            conn, items=[("eds-head", 1)], payer_name="x", inn=inn, validity_days=30
        )
    assert gateway.pay("eds", invoice.number, format_amount(invoice.total))["result"] == 0
    waiting = sochi.charge(inn, "100.00").json()
    assert waiting["status"] == "awaiting_payment"
    with engine.connect() as conn:
        [order_id] = conn.execute(select(signature_orders.c.id)).scalars().all()
    cancelled = sochi.post(f"/api/v1/orders/{order_id}/cancel", {"reason": "Отказ"}, key="write")
    assert cancelled.status_code == 200, cancelled.text
    assert sochi.get(f"/api/v1/charges/{waiting['id']}").json()["status"] == "charged"
    assert balance(engine, inn) == invoice.total - 100_00
    assert event_types(engine)[-2:] == ["order.cancelled", "charge.settled"]


def test_a_tariff_charge_takes_its_price_and_a_late_retry_gets_the_first_answer(
    sochi: Sochi, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "1000.00")["result"] == 0
    with engine.connect() as conn:
        price = tariffs.get(conn, "sti-vat-month").price  # type: ignore[union-attr]
    first = sochi.charge(inn, None, key="vat-2026-10", tariff="sti-vat-month")
    assert first.status_code == 201, first.text
    assert first.json()["amount"] == format_amount(price)
    assert first.json()["tariff"] == "sti-vat-month"
    # Hours later the price has changed and the customer was blocked; the retry is still
    # the same request, answered as the first time, and takes nothing more.
    with engine.begin() as conn:
        tariffs.set_price(conn, "sti-vat-month", price + 50_00)
        customers.set_status(conn, inn, "blocked")
    again = sochi.charge(inn, None, key="vat-2026-10", tariff="sti-vat-month")
    assert again.status_code == 200 and again.json() == first.json()
    assert balance(engine, inn) == 1000_00 - price
    # A new report now is refused: the customer is blocked.
    problem(
        sochi.charge(inn, None, key="vat-2026-11", tariff="sti-vat-month"), 409, "customer_blocked"
    )
