"""The REST agent gateway: signing, every problem code, status, cancel, and one shared core
with OSMP. Every test runs on SQLite and PostgreSQL; the ledger is verified after each."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, text, update

from tests.factories import Gateway, RestAgent, add_customer, add_invoice, new_txn_id, postgres_only
from tolom import money
from tolom.agents import service as agents
from tolom.billing import customers, invoices
from tolom.db.schema import agents as agents_table
from tolom.db.schema import gateway_requests, journal_entries, payment_reversals, payments
from tolom.ledger.accounts import LedgerAccount, account_balance, system_account
from tolom.ledger.posting import Transfer, post_entry
from tolom.payments import service as core
from tolom.payments.model import CancelOutcome

PROBLEM = "application/problem+json"


@pytest.fixture
def rest(app, engine: Engine) -> RestAgent:  # type: ignore[no-untyped-def]
    """An agent `optima` allowed from anywhere, with both services, speaking REST."""
    return RestAgent.create(app, engine, code="optima")


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and code; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:tolom:problem:{code}"
    assert body["title"] and body["detail"]
    return body


def balance(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- check ---------------------------------------------------------------------------------


def test_check_a_customer_shows_name_and_range(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine, name="ОсОО «Ромашка»")
    response = rest.check("sochi", inn)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "service": "sochi",
        "account": inn,
        "name": "ОсОО «Ромашка»",
        "amount_due": None,
        "min_amount": "1.00",
        "max_amount": "500000.00",
    }


def test_check_an_invoice_shows_the_amount_due(rest: RestAgent, engine: Engine) -> None:
    invoice = add_invoice(engine, [("eds-head", 1), ("eds-accountant", 1)])
    body = rest.check("eds", invoice.number).json()
    assert body["amount_due"] == "2930.00"
    assert body["name"] == "ОсОО «Новый клиент»"
    assert body["min_amount"] is None


def test_check_refusals(rest: RestAgent, engine: Engine, app) -> None:  # type: ignore[no-untyped-def]
    problem(rest.check("sochi", "123"), 422, "invalid_account")
    problem(rest.check("eds", "0" * 14), 422, "invalid_account")
    problem(rest.check("sochi", "0" * 14), 404, "account_not_found")
    problem(rest.check("eds", add_invoice(engine).number[:-1] + "x"), 422, "invalid_account")
    blocked = add_customer(engine, status="blocked")
    problem(rest.check("sochi", blocked), 409, "account_inactive")
    sochi_only = RestAgent.create(app, engine, code="sochionly", services=["sochi"])
    problem(sochi_only.check("eds", add_invoice(engine).number), 403, "service_not_allowed")


def test_a_mistyped_invoice_number_is_told_apart_from_a_wrong_length(
    rest: RestAgent, engine: Engine
) -> None:
    number = add_invoice(engine).number
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)  # Luhn digit no longer matches
    body = problem(rest.check("eds", typo), 422, "invalid_account")
    assert body["detail"] == "Номер счёта набран с ошибкой: проверьте цифры"
    body = problem(rest.pay("eds", typo, "1510"), 422, "invalid_account")
    assert body["detail"] == "Номер счёта набран с ошибкой: проверьте цифры"
    body = problem(rest.check("eds", number[:15]), 422, "invalid_account")
    assert body["detail"] == "Неверный формат лицевого счёта (номер счёта: 16 цифр)"


def test_check_writes_nothing_but_the_log(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    rest.check("sochi", inn)
    assert count(engine, payments) == 0
    with engine.connect() as conn:
        logged = conn.execute(select(gateway_requests)).one()
    assert logged.protocol == "rest"
    assert logged.command == "check"
    assert logged.http_status == 200
    assert inn in logged.params
    assert "signature" not in logged.params.lower()


# --- pay -----------------------------------------------------------------------------------


def test_pay_credits_once_and_a_repeat_gets_the_same_answer(
    rest: RestAgent, engine: Engine
) -> None:
    inn = add_customer(engine)
    first = rest.pay("sochi", inn, "500.5", txn_id="0090")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["txn_id"] == "90"
    assert body["amount"] == "500.50"
    assert body["status"] == "accepted"
    assert "Idempotent-Replayed" not in first.headers
    again = rest.pay("sochi", inn, "500.50", txn_id="90")
    assert again.status_code == 200
    assert again.json() == body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance(engine, inn) == 50050
    assert count(engine, payments) == 1


def test_pay_an_invoice(rest: RestAgent, engine: Engine) -> None:
    invoice = add_invoice(engine)
    response = rest.pay("eds", invoice.number, "1510.00")
    assert response.status_code == 200, response.text
    with engine.connect() as conn:
        paid = invoices.get(conn, invoice.number)
    assert paid is not None and paid.status == "paid"
    assert paid.payment_id == response.json()["receipt"]
    problem(rest.pay("eds", invoice.number, "1510.00"), 409, "invoice_already_paid")


def test_pay_refusals_change_nothing(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    invoice = add_invoice(engine)
    problem(rest.pay("sochi", inn, "0.99"), 422, "amount_too_small")
    problem(rest.pay("sochi", inn, "500000.01"), 422, "amount_too_large")
    problem(rest.pay("eds", invoice.number, "1509.99"), 422, "amount_too_small")
    problem(rest.pay("eds", invoice.number, "1510.01"), 422, "amount_too_large")
    problem(rest.pay("sochi", "0" * 14, "10"), 404, "account_not_found")
    problem(rest.pay("sochi", "12", "10"), 422, "invalid_account")
    problem(
        rest.pay("sochi", add_customer(engine, status="blocked"), "10"), 409, "account_inactive"
    )
    assert count(engine, payments) == 0
    assert balance(engine, inn) == 0


def test_the_same_txn_id_with_other_data_is_409(rest: RestAgent, engine: Engine) -> None:
    inn, other = add_customer(engine), add_customer(engine)
    assert rest.pay("sochi", inn, "100", txn_id="77").status_code == 200
    body = problem(rest.pay("sochi", inn, "101", txn_id="77"), 409, "txn_id_conflict")
    assert body["txn_id"] == "77"
    problem(rest.pay("sochi", other, "100", txn_id="77"), 409, "txn_id_conflict")
    assert balance(engine, inn) == 10000
    assert balance(engine, other) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"txn_id": 123}, "txn_id"),
        ({"txn_id": "12a"}, "txn_id"),
        ({"txn_id": "1" * 21}, "txn_id"),
        ({"amount": 500}, "amount"),
        ({"amount": 500.5}, "amount"),
        ({"amount": "500.123"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "٥٠٠"}, "amount"),
        ({"txn_date": "2026-11-21T14:30:05"}, "txn_date"),
        ({"txn_date": "20261121143005"}, "txn_date"),
        ({"txn_date": "1999-12-31T23:59:59+06:00"}, "txn_date"),
        ({"txn_date": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "txn_date"),
        ({"service": "water"}, "service"),
        ({"account": ""}, "account"),
        ({"extra": "x"}, "extra"),
    ],
)
def test_malformed_pay_bodies_are_422_naming_the_field(
    rest: RestAgent, engine: Engine, body: dict[str, Any], field: str
) -> None:
    inn = add_customer(engine)
    full = {
        "txn_id": new_txn_id(),
        "txn_date": "2026-11-21T14:30:05+06:00",
        "service": "sochi",
        "account": inn,
        "amount": "10.00",
        **body,
    }
    answer = problem(rest.send("POST", "/api/v1/agent/payments", full), 422, "invalid_request")
    assert field in {e["field"] for e in answer["errors"]}, answer
    assert count(engine, payments) == 0


def test_missing_fields_are_named(rest: RestAgent) -> None:
    answer = problem(rest.send("POST", "/api/v1/agent/payments", {}), 422, "invalid_request")
    assert {e["field"] for e in answer["errors"]} == {
        "txn_id",
        "txn_date",
        "service",
        "account",
        "amount",
    }
    assert all(e["message"] == "обязательное поле" for e in answer["errors"])


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"txn_id": "1"', b"null"],
)
def test_unreadable_bodies_are_422(rest: RestAgent, raw: bytes) -> None:
    problem(rest.send("POST", "/api/v1/agent/payments", raw=raw), 422, "invalid_request")


def test_wrong_content_type_is_415(rest: RestAgent, engine: Engine) -> None:
    response = rest.send(
        "POST",
        "/api/v1/agent/check",
        {"service": "sochi", "account": add_customer(engine)},
        headers={"Content-Type": "text/plain"},
    )
    problem(response, 415, "unsupported_media_type")


def test_an_oversized_body_is_413_unread(rest: RestAgent, app) -> None:  # type: ignore[no-untyped-def]
    huge = json.dumps({"reason": "x" * 20_000}).encode()
    problem(
        rest.send("POST", "/api/v1/agent/payments/1/cancel", raw=huge), 413, "request_too_large"
    )
    stranger = rest.client.post("/api/v1/agent/payments/1/cancel", content=huge)
    problem(stranger, 413, "request_too_large")


def test_txn_date_is_read_with_its_offset(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    txn_id = new_txn_id()
    # 23:30 in Bishkek on the 21st is 17:30 UTC; its business day is the agent's 21st.
    rest.pay("sochi", inn, "10", txn_id=txn_id, txn_date="2026-11-21T17:30:00Z")
    body = rest.status(txn_id).json()
    assert body["txn_date"].startswith("2026-11-21T17:30:00")
    assert body["business_date"] == "2026-11-21"
    with engine.connect() as conn:
        raw = conn.execute(select(payments.c.txn_date_raw)).scalar_one()
    assert raw == "2026-11-21T17:30:00Z"


# --- one core for both gateways ------------------------------------------------------------


def test_osmp_and_rest_share_txn_ids_and_rules(app, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    osmp = Gateway.create(app, engine, code="both")
    rest = RestAgent(osmp.client, engine, "both", osmp.secret)
    inn = add_customer(engine)
    assert osmp.pay("sochi", inn, "250", txn_id="4242")["result"] == 0
    status = rest.status("4242").json()
    assert status["amount"] == "250.00"
    assert status["status"] == "accepted"
    replay = rest.pay("sochi", inn, "250.00", txn_id="4242")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["receipt"] == status["receipt"]
    problem(rest.pay("sochi", inn, "251", txn_id="4242"), 409, "txn_id_conflict")
    assert osmp.pay("sochi", inn, "251", txn_id="4242")["result"] == 300
    assert balance(engine, inn) == 25000


# --- status --------------------------------------------------------------------------------


def test_status_of_an_unknown_txn_id_is_404(rest: RestAgent) -> None:
    body = problem(rest.status("999"), 404, "payment_not_found")
    assert body["txn_id"] == "999"
    problem(rest.status("12ab"), 422, "invalid_request")


def test_status_is_per_agent(rest: RestAgent, app, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    inn = add_customer(engine)
    rest.pay("sochi", inn, "10", txn_id="31")
    other = RestAgent.create(app, engine, code="megapay")
    problem(other.status("31"), 404, "payment_not_found")
    problem(other.cancel("31"), 404, "payment_not_found")


# --- cancel --------------------------------------------------------------------------------


def test_cancel_reverses_with_a_new_entry_and_twice_is_the_same(
    rest: RestAgent, engine: Engine
) -> None:
    inn = add_customer(engine)
    paid = rest.pay("sochi", inn, "300", txn_id="501").json()
    entries_before = count(engine, journal_entries)
    first = rest.cancel("501", "Ошибся номером")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "reversed"
    assert body["receipt"] == paid["receipt"]
    assert body["cancel_reason"] == "Ошибся номером"
    assert balance(engine, inn) == 0
    assert count(engine, journal_entries) == entries_before + 1
    again = rest.cancel("501", "Другая причина")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert count(engine, payment_reversals) == 1
    assert rest.status("501").json()["status"] == "reversed"
    # the pay repeated after the cancel still gets its original answer, now saying so
    replay = rest.pay("sochi", inn, "300", txn_id="501")
    assert replay.json()["status"] == "reversed"
    # ...and carries the cancellation as status shows it
    assert replay.json()["cancel_reason"] == "Ошибся номером"
    assert replay.json()["cancelled_at"] == body["cancelled_at"] is not None
    assert replay.json() == rest.status("501").json()
    assert balance(engine, inn) == 0


def test_cancel_an_invoice_payment_reopens_the_invoice(rest: RestAgent, engine: Engine) -> None:
    invoice = add_invoice(engine)
    rest.pay("eds", invoice.number, "1510", txn_id="601")
    assert rest.cancel("601").status_code == 200
    with engine.connect() as conn:
        reopened = invoices.get(conn, invoice.number)
        revenue = system_account(conn, "revenue:eds")
        assert account_balance(conn, revenue.id) == 0
    assert reopened is not None and reopened.status == "open" and reopened.payment_id is None
    assert rest.pay("eds", invoice.number, "1510", txn_id="602").status_code == 200


def test_cancel_is_refused_when_the_balance_was_spent(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    rest.pay("sochi", inn, "100", txn_id="701")
    with engine.begin() as conn:  # a report charged 60 som (issue 4 brings real charges)
        customer = customers.get(conn, inn)
        assert customer is not None
        post_entry(
            conn,
            kind="charge",
            description="test charge",
            transfers=[
                Transfer(
                    debit=LedgerAccount(customer.account_id),
                    credit=system_account(conn, "revenue:eds"),
                    amount=6000,
                )
            ],
        )
    body = problem(rest.cancel("701"), 409, "balance_spent")
    assert "оператор" in body["detail"]
    assert balance(engine, inn) == 4000
    assert rest.status("701").json()["status"] == "accepted"
    assert count(engine, payment_reversals) == 0


def _move_business_date(engine: Engine, txn_id: str, days_ago: int) -> None:
    """As if the payment had been accepted `days_ago` days ago."""
    today = datetime.now(ZoneInfo("Asia/Bishkek")).date()
    with engine.begin() as conn:
        conn.execute(
            update(payments)
            .where(payments.c.txn_id == txn_id)
            .values(
                business_date=today - timedelta(days=days_ago),
                created_at=datetime.now(UTC) - timedelta(days=days_ago),
            )
        )


def test_cancel_window_is_the_business_day_by_default(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    rest.pay("sochi", inn, "10", txn_id="801")
    rest.pay("sochi", inn, "10", txn_id="802")
    _move_business_date(engine, "801", 1)
    _move_business_date(engine, "802", 2)
    problem(rest.cancel("801"), 409, "cancel_window_closed")
    with engine.begin() as conn:
        agents.configure(conn, "optima", cancel_window_days=1)
    assert rest.cancel("801").status_code == 200
    problem(rest.cancel("802"), 409, "cancel_window_closed")
    assert balance(engine, inn) == 1000


def test_cancel_window_counts_from_acceptance_not_the_agents_txn_date(
    rest: RestAgent, engine: Engine
) -> None:
    """An agent's txn_date (a day in the past, or slightly ahead) does not move the window."""
    inn = add_customer(engine)
    rest.pay("sochi", inn, "10", txn_id="811", txn_date="2026-01-05T10:00:00+06:00")
    assert rest.cancel("811").status_code == 200  # accepted today: cancellable today
    rest.pay("sochi", inn, "10", txn_id="812")
    with engine.begin() as conn:  # accepted two days ago, though dated today
        conn.execute(
            update(payments)
            .where(payments.c.txn_id == "812")
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
    problem(rest.cancel("812"), 409, "cancel_window_closed")


def test_a_txn_date_ahead_of_our_clock_is_refused(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    body = problem(
        rest.pay("sochi", inn, "10", txn_id="821", txn_date="2099-12-31T00:00:00+06:00"),
        422,
        "invalid_request",
    )
    assert "txn_date" in body["detail"]
    soon = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    problem(rest.pay("sochi", inn, "10", txn_id="822", txn_date=soon), 422, "invalid_request")
    assert count(engine, payments) == 0 and balance(engine, inn) == 0
    skewed = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    assert rest.pay("sochi", inn, "10", txn_id="823", txn_date=skewed).status_code in (200, 201)


def test_deeply_nested_json_is_422_and_logged(rest: RestAgent, engine: Engine) -> None:
    depth = 3000  # within the 8 KB body cap; deeper than Python's recursion limit
    raw = ('{"service": "sochi", "x": ' + "[" * depth + "]" * depth + "}").encode()
    problem(rest.send("POST", "/api/v1/agent/check", raw=raw), 422, "invalid_request")
    with engine.connect() as conn:
        logged = conn.execute(select(gateway_requests.c.http_status)).scalars().all()
    assert logged == [422]


def test_unsigned_requests_past_the_stranger_limit_are_429_unrecorded(
    rest: RestAgent, engine: Engine, runtime
) -> None:  # type: ignore[no-untyped-def]
    from tolom.httpkit.strangers import StrangerLimit

    runtime.strangers = StrangerLimit(per_minute=2)
    body = {"service": "sochi", "account": "1" * 5000}
    answers = [rest.client.post("/api/v1/agent/check", json=body) for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 429, 429]
    problem(answers[-1], 429, "too_many_requests")
    assert int(answers[-1].headers["Retry-After"]) >= 1
    with engine.connect() as conn:
        rows = conn.execute(select(gateway_requests.c.params, gateway_requests.c.response)).all()
    assert len(rows) == 2 and all(len(r.params) + len(r.response) <= 1024 for r in rows)


def test_cancel_refusals(rest: RestAgent, engine: Engine) -> None:
    problem(rest.cancel("123"), 404, "payment_not_found")
    rest.pay("sochi", add_customer(engine), "10", txn_id="901")
    problem(rest.cancel("901", ""), 422, "invalid_request")
    problem(rest.cancel("901", "   "), 422, "invalid_request")
    problem(
        rest.send("POST", "/api/v1/agent/payments/901/cancel", {"reason": "x" * 501}),
        422,
        "invalid_request",
    )
    problem(rest.send("POST", "/api/v1/agent/payments/901/cancel", {}), 422, "invalid_request")
    problem(rest.cancel("9x1"), 422, "invalid_request")


# --- signing -------------------------------------------------------------------------------


def test_signature_failures(rest: RestAgent, engine: Engine) -> None:
    inn = add_customer(engine)
    body = {"service": "sochi", "account": inn}
    path = "/api/v1/agent/check"
    now = int(time.time())
    problem(rest.send("POST", path, body, key=b"k" * 32), 401, "bad_signature")
    problem(rest.send("POST", path, body, sign_path="/api/v1/agent/other"), 401, "bad_signature")
    problem(rest.send("POST", path, body, sign_body=b'{"service":"eds"}'), 401, "bad_signature")
    problem(rest.send("POST", path, body, timestamp=now - 310), 401, "stale_timestamp")
    problem(rest.send("POST", path, body, timestamp=now + 330), 401, "stale_timestamp")
    assert rest.send("POST", path, body, timestamp=now - 250).status_code == 200
    wrong_secret = RestAgent(rest.client, engine, "optima", "not-the-secret")
    problem(wrong_secret.check("sochi", inn), 401, "bad_signature")
    stranger = RestAgent(rest.client, engine, "nobody", rest.secret)
    problem(stranger.check("sochi", inn), 401, "bad_signature")
    # a query string is part of what is signed
    response = rest.send(
        "GET", "/api/v1/agent/payments/1?x=1", sign_path="/api/v1/agent/payments/1"
    )
    problem(response, 401, "bad_signature")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic b3B0aW1hOnNlY3JldA==",
        "Tolom-HMAC-SHA256",
        "Tolom-HMAC-SHA256 agent=optima",
        "Tolom-HMAC-SHA256 agent=optima,timestamp=abc,signature=" + "0" * 64,
        "Tolom-HMAC-SHA256 agent=optima,timestamp=1,signature=xyz",
        "Tolom-HMAC-SHA256 agent=optima,agent=x,timestamp=1,signature=" + "0" * 64,
        "Tolom-HMAC-SHA256 agent=optima,timestamp=1,signature=" + "0" * 64 + ",extra=1",
        "tolom-hmac-sha256 agent=optima,timestamp=1,signature=" + "0" * 64,
        "Tolom-HMAC-SHA256 " + "a" * 600,
    ],
)
def test_malformed_authorization_is_401(rest: RestAgent, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = rest.client.post(
        "/api/v1/agent/check", json={"service": "sochi", "account": "1"}, headers=headers
    )
    body = problem(response, 401, "unauthenticated")
    assert "Tolom-HMAC-SHA256" in body["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Tolom-HMAC-SHA256")


def test_disabled_agent_and_foreign_address_are_403(app, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    inn = add_customer(engine)
    fenced = RestAgent.create(app, engine, code="fenced", networks=["10.0.0.0/8"])
    problem(fenced.check("sochi", inn), 403, "address_not_allowed")
    with engine.begin() as conn:
        agents.configure(conn, "fenced", networks=["127.0.0.0/8"])
    assert fenced.check("sochi", inn).status_code == 200
    with engine.begin() as conn:
        agents.set_enabled(conn, "fenced", False)
    problem(fenced.check("sochi", inn), 403, "agent_disabled")


def test_an_agent_without_a_signing_key_is_told_to_rotate(rest: RestAgent, engine: Engine) -> None:
    with engine.begin() as conn:  # agents created before REST existed have none
        conn.execute(update(agents_table).values(signing_key_sealed=None))
    body = problem(rest.check("sochi", add_customer(engine)), 401, "bad_signature")
    assert "rotate-secret" in body["detail"]
    with engine.begin() as conn:
        secret = agents.rotate_secret(conn, "optima")
    rest.secret = secret
    assert rest.check("sochi", add_customer(engine)).status_code == 200


def test_refused_requests_are_logged_without_secrets(rest: RestAgent, engine: Engine) -> None:
    rest.send("POST", "/api/v1/agent/check", {"service": "sochi", "account": "1"}, key=b"x" * 32)
    with engine.connect() as conn:
        logged = conn.execute(select(gateway_requests)).one()
    assert logged.http_status == 401
    assert logged.protocol == "rest"
    assert "bad_signature" in logged.response
    assert "Tolom-HMAC" not in logged.params


def test_unknown_api_paths_and_methods_are_problems(rest: RestAgent) -> None:
    problem(rest.client.get("/api/v1/agent/nothing"), 404, "not_found")
    response = rest.client.delete("/api/v1/agent/check")
    problem(response, 405, "method_not_allowed")


# --- temporary failures --------------------------------------------------------------------


def test_lock_timeout_is_503_with_retry_after_and_the_repeat_pays(
    rest: RestAgent, engine: Engine
) -> None:
    inn = add_customer(engine)
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
    assert customer is not None
    blocker = engine.connect()
    try:
        transaction = blocker.begin()
        if engine.dialect.name == "postgresql":
            blocker.execute(
                text("SELECT balance FROM account_balances WHERE account_id = :a FOR UPDATE"),
                {"a": customer.account_id},
            )
        response = rest.pay("sochi", inn, "10", txn_id="5150")
        problem(response, 503, "temporarily_unavailable")
        assert response.headers["Retry-After"] == "5"
        transaction.rollback()
    finally:
        blocker.close()
    assert rest.pay("sochi", inn, "10", txn_id="5150").status_code == 200
    assert balance(engine, inn) == 1000


# --- races (PostgreSQL: real row locks between real connections) ---------------------------


def _at_once(count: int, action: Any) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _core_cancel(runtime: Any, txn_id: str) -> CancelOutcome:
    """The cancel use case straight on the core, in a transaction of its own."""
    agent = runtime.agents.get("optima")
    with runtime.engine.begin() as conn:
        return core.cancel(conn, agent, txn_id, "race").outcome


@postgres_only
def test_concurrent_cancels_reverse_once(rest: RestAgent, engine: Engine, runtime) -> None:  # type: ignore[no-untyped-def]
    inn = add_customer(engine)
    rest.pay("sochi", inn, "100", txn_id="1001")
    outcomes = _at_once(10, lambda _i: _core_cancel(runtime, "1001"))
    assert outcomes == [CancelOutcome.OK] * 10
    assert count(engine, payment_reversals) == 1
    assert balance(engine, inn) == 0


@postgres_only
def test_cancel_racing_its_pay_ends_consistent(rest: RestAgent, engine: Engine, runtime) -> None:  # type: ignore[no-untyped-def]
    for round_ in range(10):
        inn = add_customer(engine)
        txn_id = str(2000 + round_)

        def act(i: int, inn: str = inn, txn_id: str = txn_id) -> Any:
            if i == 0:
                return rest.pay("sochi", inn, "100", txn_id=txn_id).status_code
            return _core_cancel(runtime, txn_id)

        pay_status, cancelled = _at_once(2, act)
        assert pay_status == 200
        reversed_ = count_reversals(engine, txn_id)
        if cancelled is CancelOutcome.OK:
            assert reversed_ == 1 and balance(engine, inn) == 0
        else:
            assert cancelled is CancelOutcome.NOT_FOUND
            assert reversed_ == 0 and balance(engine, inn) == 10000


def count_reversals(engine: Engine, txn_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(payment_reversals.join(payments))
                .where(payments.c.txn_id == txn_id)
            ).scalar_one()
        )


@postgres_only
def test_cancel_racing_a_charge_never_goes_negative(
    rest: RestAgent, engine: Engine, runtime
) -> None:  # type: ignore[no-untyped-def]
    inn = add_customer(engine)
    rest.pay("sochi", inn, "100", txn_id="3001")
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        revenue = system_account(conn, "revenue:eds")
    assert customer is not None

    def act(i: int) -> Any:
        if i == 0:
            return _core_cancel(runtime, "3001")
        try:
            with engine.begin() as conn:
                post_entry(
                    conn,
                    kind="charge",
                    description="race",
                    transfers=[Transfer(LedgerAccount(customer.account_id), revenue, 8000)],
                )
            return "charged"
        except Exception:
            return "refused"

    cancelled, charged = _at_once(2, act)
    final = balance(engine, inn)
    assert final >= 0
    assert (cancelled is CancelOutcome.OK) != (charged == "charged")
    assert final == (0 if cancelled is CancelOutcome.OK else 2000)


def test_the_openapi_document_describes_the_agent_api(app) -> None:  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    document = TestClient(app).get("/openapi.json").json()
    pay = document["paths"]["/api/v1/agent/payments"]["post"]
    assert pay["security"] == [{"AgentSignature": []}]
    assert pay["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PayIn"
    }
    assert {"200", "401", "403", "404", "409", "413", "415", "422", "503"} <= set(pay["responses"])
    schemas = document["components"]["schemas"]
    assert {"PayIn", "CheckIn", "CancelIn", "Problem", "PaymentOut", "CheckOut"} <= set(schemas)
    assert "AgentSignature" in document["components"]["securitySchemes"]
    # One amount grammar: the schema shows the very pattern `money.parse_amount` reads.
    assert schemas["PayIn"]["properties"]["amount"]["pattern"] == money.AMOUNT_PATTERN


@pytest.mark.parametrize("amount", ["1234567890123", "999999999999999.99"])
def test_every_amount_parse_amount_reads_is_well_formed(
    rest: RestAgent, engine: Engine, amount: str
) -> None:
    """The REST body has no amount grammar of its own: too large, never malformed."""
    inn = add_customer(engine)
    problem(rest.pay("sochi", inn, amount), 422, "amount_too_large")
    assert count(engine, payments) == 0


@pytest.mark.parametrize("field", ["txn_id", "txn_date", "account", "amount", "service"])
def test_text_with_a_nul_is_refused_as_bad_input(
    rest: RestAgent, engine: Engine, field: str
) -> None:
    """Not "retry" (PostgreSQL would refuse the text every time) and not accepted either."""
    inn = add_customer(engine)
    body = {
        "txn_id": "77",
        "txn_date": "2026-11-23T10:00:00+06:00",
        "service": "sochi",
        "account": inn,
        "amount": "10.00",
    }
    body[field] += "\u0000"
    response = rest.send("POST", "/api/v1/agent/payments", body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    check = rest.send("POST", "/api/v1/agent/check", {"service": "sochi", "account": "1\u0000"})
    assert check.status_code == 422, check.text
