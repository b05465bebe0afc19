"""The OSMP gateway end to end over HTTP (ASGI): every result code, idempotency, bad input."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from tests.factories import Gateway, add_customer, add_invoice, new_txn_id, parse_answer
from tolom.agents import service as agents
from tolom.billing import customers, invoices
from tolom.db.schema import gateway_requests, payments


def balance(engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


def payment_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(payments)).scalar_one()


# --- check -----------------------------------------------------------------------------


def test_check_sochi_shows_the_customer(gateway: Gateway, engine) -> None:
    inn = add_customer(engine, name="ОсОО «Ромашка»")
    answer = gateway.check("sochi", inn, txn_id="555", sum_="0.00")
    assert answer["result"] == 0
    assert answer["osmp_txn_id"] == "555"
    assert answer["sum"] == "0.00"
    assert answer["fields"] == {"name": "ОсОО «Ромашка»"}
    assert payment_count(engine) == 0


def test_check_eds_shows_payer_and_amount_due(gateway: Gateway, engine) -> None:
    invoice = add_invoice(engine, [("eds-head", 1), ("eds-accountant", 1)])
    answer = gateway.check("eds", invoice.number)
    assert answer["result"] == 0
    assert answer["fields"] == {"name": "ОсОО «Новый клиент»", "amount": "2930.00"}


@pytest.mark.parametrize(
    "account",
    [
        "",
        "1234567890123",
        "123456789012345",
        "0190420231042a",
        "٠١٩٠٤٢٠٢٣١٠٤٢٧",
        " 01904202310427",
        "x" * 5000,
    ],
)
def test_check_sochi_wrong_account_format_is_4(gateway: Gateway, account: str) -> None:
    assert gateway.check("sochi", account)["result"] == 4


def test_check_eds_mistyped_invoice_number_is_4_before_any_lookup(gateway: Gateway, engine) -> None:
    number = add_invoice(engine).number
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)  # Luhn digit no longer matches
    mistyped = gateway.check("eds", typo)
    assert mistyped["result"] == 4
    # 16 digits with a wrong check digit: the length was right, a digit was not
    assert mistyped["comment"] == "Номер счёта набран с ошибкой: проверьте цифры"
    short = gateway.check("eds", number[:15])
    assert short["result"] == 4
    assert short["comment"] == "Неверный формат лицевого счёта (номер счёта: 16 цифр)"
    paid = gateway.pay("eds", typo, "1510.00", txn_id=new_txn_id())
    assert paid["result"] == 4
    assert paid["comment"] == "Номер счёта набран с ошибкой: проверьте цифры"


def test_check_unknown_accounts_are_5(gateway: Gateway) -> None:
    assert gateway.check("sochi", "01904202310427")["result"] == 5
    assert gateway.check("eds", "4000000000000002")["result"] == 5


def test_check_blocked_customer_is_79(gateway: Gateway, engine) -> None:
    inn = add_customer(engine, status="blocked")
    assert gateway.check("sochi", inn)["result"] == 79


def test_check_cancelled_and_expired_invoices_are_79(gateway: Gateway, engine) -> None:
    cancelled = add_invoice(engine)
    with engine.begin() as conn:
        invoices.cancel(conn, cancelled.number)
    expired = add_invoice(engine, validity_days=1, now=datetime.now(UTC) - timedelta(days=2))
    assert gateway.check("eds", cancelled.number)["result"] == 79
    assert gateway.check("eds", expired.number)["result"] == 79


def test_check_paid_invoice_is_7(gateway: Gateway, engine) -> None:
    invoice = add_invoice(engine)
    assert gateway.pay("eds", invoice.number, "1510.00")["result"] == 0
    assert gateway.check("eds", invoice.number)["result"] == 7


def test_service_not_allowed_for_agent_is_7(app, engine) -> None:
    wallet = Gateway.create(app, engine, code="sochionly", services=["sochi"])
    invoice = add_invoice(engine)
    assert wallet.check("eds", invoice.number)["result"] == 7
    assert wallet.pay("eds", invoice.number, "1510.00")["result"] == 7
    assert payment_count(engine) == 0


# --- pay -------------------------------------------------------------------------------


def test_pay_sochi_credits_the_balance_once(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    first = gateway.pay("sochi", inn, "500", txn_id="1234567")
    assert first["result"] == 0
    assert first["sum"] == "500.00"
    assert first["comment"] == "OK"
    assert int(first["prv_txn"]) > 0
    for sum_ in ("500", "500.0", "500.00"):  # the same amount, spelled differently
        again = gateway.pay("sochi", inn, sum_, txn_id="1234567")
        assert again == first
    assert balance(engine, inn) == 50000
    assert payment_count(engine) == 1


def test_pay_by_post_form(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    answer = gateway.pay("sochi", inn, "10.5", method="POST")
    assert answer["result"] == 0
    assert answer["sum"] == "10.50"
    assert balance(engine, inn) == 1050


def test_repeat_with_other_account_or_sum_is_300_and_moves_nothing(
    gateway: Gateway, engine
) -> None:
    inn, other = add_customer(engine), add_customer(engine)
    invoice = add_invoice(engine)
    assert gateway.pay("sochi", inn, "100.00", txn_id="77")["result"] == 0
    assert gateway.pay("sochi", inn, "100.01", txn_id="77")["result"] == 300
    assert gateway.pay("sochi", other, "100.00", txn_id="77")["result"] == 300
    assert gateway.pay("eds", invoice.number, "1510.00", txn_id="77")["result"] == 300
    assert balance(engine, inn) == 10000
    assert balance(engine, other) == 0
    assert payment_count(engine) == 1
    with engine.connect() as conn:
        assert invoices.get(conn, invoice.number).status == "open"


def test_same_txn_id_from_two_agents_are_two_payments(gateway: Gateway, app, engine) -> None:
    other_agent = Gateway.create(app, engine, code="megapay")
    inn = add_customer(engine)
    a = gateway.pay("sochi", inn, "1.00", txn_id="42")
    b = other_agent.pay("sochi", inn, "1.00", txn_id="42")
    assert a["result"] == b["result"] == 0
    assert a["prv_txn"] != b["prv_txn"]
    assert balance(engine, inn) == 200


def test_sochi_limits_are_241_and_242(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "0.99")["result"] == 241
    assert gateway.pay("sochi", inn, "0")["result"] == 241
    assert gateway.pay("sochi", inn, "500000.01")["result"] == 242
    assert gateway.pay("sochi", inn, "1.00")["result"] == 0
    assert gateway.pay("sochi", inn, "500000.00")["result"] == 0
    assert balance(engine, inn) == 50000100


def test_agent_limits_override_the_service(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    with engine.begin() as conn:
        agents.set_service(
            conn, "optima", "sochi", allowed=True, min_amount=1000, max_amount=6000000
        )
    assert gateway.pay("sochi", inn, "9.99")["result"] == 241
    assert gateway.pay("sochi", inn, "60000.01")["result"] == 242
    assert gateway.pay("sochi", inn, "60000.00")["result"] == 0


def test_pay_to_blocked_or_unknown_customer(gateway: Gateway, engine) -> None:
    blocked = add_customer(engine, status="blocked")
    assert gateway.pay("sochi", blocked, "100")["result"] == 79
    assert gateway.pay("sochi", "01904202310427", "100")["result"] == 5
    assert gateway.pay("sochi", "0190420231042", "100")["result"] == 4
    assert payment_count(engine) == 0


def test_repeat_of_a_successful_pay_survives_later_changes(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    first = gateway.pay("sochi", inn, "100", txn_id="9001")
    with engine.begin() as conn:
        customers.set_status(conn, inn, "blocked")
        agents.set_service(conn, "optima", "sochi", allowed=True, min_amount=50000)
    assert gateway.pay("sochi", inn, "100", txn_id="9001") == first
    assert balance(engine, inn) == 10000


def test_pay_eds_marks_the_invoice_paid(gateway: Gateway, engine) -> None:
    invoice = add_invoice(engine, [("eds-head", 1), ("eds-accountant", 1)])
    assert gateway.pay("eds", invoice.number, "2929.99")["result"] == 241
    assert gateway.pay("eds", invoice.number, "2930.01")["result"] == 242
    paid = gateway.pay("eds", invoice.number, "2930.00", txn_id="31337")
    assert paid["result"] == 0
    assert gateway.pay("eds", invoice.number, "2930.00", txn_id="31337") == paid
    assert gateway.pay("eds", invoice.number, "2930.00")["result"] == 7  # another txn: already paid
    with engine.connect() as conn:
        stored = invoices.get(conn, invoice.number)
    assert stored.status == "paid"
    assert stored.payment_id == int(paid["prv_txn"])
    assert payment_count(engine) == 1


def test_pay_cancelled_invoice_is_79(gateway: Gateway, engine) -> None:
    invoice = add_invoice(engine)
    with engine.begin() as conn:
        invoices.cancel(conn, invoice.number)
    assert gateway.pay("eds", invoice.number, "1510.00")["result"] == 79


def test_txn_date_is_read_in_the_agents_zone(app, engine) -> None:
    gateway = Gateway.create(app, engine, code="utcagent", timezone="UTC")
    bishkek = Gateway.create(app, engine, code="bishkek")
    inn = add_customer(engine)
    # 00:30 on 21 November in Bishkek is still 20 November in UTC; the business day is local.
    assert bishkek.pay("sochi", inn, "1", txn_id="1", txn_date="20261121003000")["result"] == 0
    assert gateway.pay("sochi", inn, "1", txn_id="1", txn_date="20261121003000")["result"] == 0
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.txn_date_raw, p.txn_date, p.business_date, a.code FROM payments p "
                "JOIN agents a ON a.id = p.agent_id ORDER BY a.code"
            )
        ).all()
    by_agent = {r.code: r for r in rows}
    for row in rows:
        assert row.txn_date_raw == "20261121003000"

    def utc(value):
        return (
            value
            if isinstance(value, datetime) and value.tzinfo
            else datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
        )

    assert utc(by_agent["bishkek"].txn_date) == datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    assert str(by_agent["bishkek"].business_date) == str(date(2026, 11, 21))
    assert utc(by_agent["utcagent"].txn_date) == datetime(2026, 11, 21, 0, 30, tzinfo=UTC)


# --- malformed input -------------------------------------------------------------------

GOOD_PAY = "command=pay&txn_id=100&txn_date=20261121143005&account={inn}&sum=10.00"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("command=refund&txn_id=1&account={inn}", "команда"),
        ("txn_id=1&account={inn}", "команда"),
        ("command=check&account={inn}", "txn_id"),
        ("command=check&txn_id=&account={inn}", "txn_id"),
        ("command=check&txn_id=12a&account={inn}", "txn_id"),
        ("command=check&txn_id=-1&account={inn}", "txn_id"),
        ("command=check&txn_id=123456789012345678901&account={inn}", "txn_id"),
        ("command=check&txn_id=%D9%A1%D9%A2&account={inn}", "txn_id"),  # Arabic-Indic digits
        ("command=check&txn_id=1", "account"),
        ("command=pay&txn_id=1&account={inn}&sum=10.00", "txn_date"),
        ("command=pay&txn_id=1&txn_date=2026112114300&account={inn}&sum=10.00", "txn_date"),
        ("command=pay&txn_id=1&txn_date=20261321143005&account={inn}&sum=10.00", "txn_date"),
        ("command=pay&txn_id=1&txn_date=20260230143005&account={inn}&sum=10.00", "txn_date"),
        ("command=pay&txn_id=1&txn_date=20261121250000&account={inn}&sum=10.00", "txn_date"),
        ("command=pay&txn_id=1&txn_date=20261121143005&account={inn}", "sum"),
        ("command=pay&txn_id=1&txn_date=20261121143005&account={inn}&sum=", "сумма"),
        ("command=check&txn_id=1&txn_id=1&account={inn}", "txn_id"),
        ("command=check&command=pay&txn_id=1&account={inn}", "command"),
        ("command=check&txn_id=1&account=%ff%fe", "UTF-8"),
    ],
)
def test_malformed_requests_are_300_and_change_nothing(
    gateway: Gateway, engine, query: str, fragment: str
) -> None:
    inn = add_customer(engine)
    answer = gateway.call("sochi", query.format(inn=inn))
    assert answer["result"] == 300
    assert fragment.lower() in answer["comment"].lower()
    assert payment_count(engine) == 0


@pytest.mark.parametrize(
    "amount",
    [
        "1e3",
        "-5",
        "+5",
        "1,000",
        "1 000",
        "5.123",
        "5.",
        ".5",
        "0x10",
        "٥",
        "５",
        "10.00 ",
        "NaN",
        "inf",
        "１0",
    ],
)
def test_malformed_amounts_are_300(gateway: Gateway, engine, amount: str) -> None:
    inn = add_customer(engine)
    answer = gateway.pay("sochi", inn, amount)
    assert answer["result"] == 300
    assert payment_count(engine) == 0


def test_hostile_input_never_breaks_the_answer(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    hostile = [
        "",
        "&&&===",
        "command=check&txn_id=1&account=%00%00",
        f"command=pay&txn_id=1&txn_date=20261121143005&account={inn}%00&sum=1",
        "command=check&txn_id=1&account=<script>alert(1)</script>",
        "command=check&txn_id=1&account=" + "9" * 20000,
        "&".join(f"p{i}=1" for i in range(100)),
        "command=check&txn_id=1&account=' OR 1=1 --",
    ]
    for method in ("GET", "POST"):
        for query in hostile:
            response = gateway.raw("sochi", query, method=method)
            assert response.status_code == 200, (query, response.text)
            answer = parse_answer(response.text)
            assert answer["result"] in (4, 300), (query, answer)
            assert "Traceback" not in response.text
    assert payment_count(engine) == 0


def test_oversized_body_is_refused(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    body = GOOD_PAY.format(inn=inn) + "&pad=" + "x" * 20000
    response = gateway.raw("sochi", body, method="POST")
    assert response.status_code == 200
    assert parse_answer(response.text)["result"] == 300
    assert payment_count(engine) == 0


def test_unknown_service_is_404(gateway: Gateway) -> None:
    assert gateway.raw("water", "command=check&txn_id=1&account=1").status_code == 404


# --- authentication and addresses ------------------------------------------------------


def test_missing_or_wrong_credentials_are_401(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    query = GOOD_PAY.format(inn=inn)
    client = gateway.client
    assert client.get(f"/gateway/osmp/sochi?{query}").status_code == 401
    for header in (
        "Basic b3B0aW1hOndyb25n",
        "Basic !!!",
        "Bearer abc",
        "Basic " + "A" * 600,
        "Basic bm9jb2xvbg==",
    ):
        response = client.get(f"/gateway/osmp/sochi?{query}", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Basic")
        assert parse_answer(response.text)["result"] == 8
    wrong_user = client.get(f"/gateway/osmp/sochi?{query}", auth=("nobody", gateway.secret))
    assert wrong_user.status_code == 401
    assert payment_count(engine) == 0


def test_disabled_agent_is_403(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    with engine.begin() as conn:
        agents.set_enabled(conn, "optima", False)
    assert gateway.raw("sochi", GOOD_PAY.format(inn=inn)).status_code == 403
    with engine.begin() as conn:
        agents.set_enabled(conn, "optima", True)
    assert gateway.pay("sochi", inn, "10")["result"] == 0


def test_address_outside_allow_list_is_403(app, engine) -> None:
    gateway = Gateway.create(app, engine, code="aiyl", networks=["10.20.0.0/16"])
    inn = add_customer(engine)
    assert gateway.raw("sochi", GOOD_PAY.format(inn=inn)).status_code == 403  # from 127.0.0.1
    # A forged X-Forwarded-For is ignored: no trusted proxy is configured.
    forged = gateway.raw(
        "sochi", GOOD_PAY.format(inn=inn), headers={"X-Forwarded-For": "10.20.1.1"}
    )
    assert forged.status_code == 403
    from starlette.testclient import TestClient

    gateway.client = TestClient(app, client=("10.20.3.4", 40000))
    assert gateway.pay("sochi", inn, "10")["result"] == 0


def test_trusted_proxy_passes_the_client_address(app, engine, runtime) -> None:
    import ipaddress

    from starlette.testclient import TestClient

    runtime.settings = runtime.settings.model_copy(
        update={"trusted_proxies": [ipaddress.ip_network("192.168.5.0/24")]}
    )
    gateway = Gateway.create(app, engine, code="aiyl", networks=["10.20.0.0/16"])
    gateway.client = TestClient(app, client=("192.168.5.10", 40000))
    inn = add_customer(engine)
    good = gateway.raw(
        "sochi", GOOD_PAY.format(inn=inn), headers={"X-Forwarded-For": "6.6.6.6, 10.20.1.1"}
    )
    assert good.status_code == 200
    spoofed = gateway.raw(
        "sochi", GOOD_PAY.format(inn=inn), headers={"X-Forwarded-For": "10.20.1.1, 6.6.6.6"}
    )
    assert spoofed.status_code == 403


def test_repeated_forwarded_for_lines_are_read_as_one_list(app, engine, runtime) -> None:
    """A proxy that appends its own X-Forwarded-For line (HAProxy `option forwardfor`)
    instead of extending the client's: the client's forged first line must not win."""
    import ipaddress

    from starlette.testclient import TestClient

    runtime.settings = runtime.settings.model_copy(
        update={"trusted_proxies": [ipaddress.ip_network("192.168.5.0/24")]}
    )
    gateway = Gateway.create(app, engine, code="aiyl", networks=["10.20.0.0/16"])
    gateway.client = TestClient(app, client=("192.168.5.10", 40000))
    inn = add_customer(engine)
    url = "/gateway/osmp/sochi?" + urlencode(
        {"command": "check", "txn_id": "1", "account": inn, "sum": "10"}
    )

    def from_lines(*lines: str) -> int:
        headers = [*gateway.auth_header.items()] + [("X-Forwarded-For", v) for v in lines]
        return gateway.client.get(url, headers=headers).status_code

    assert from_lines("10.20.1.1", "6.6.6.6") == 403  # forged by 6.6.6.6, appended by us
    assert from_lines("6.6.6.6", "10.20.1.1") == 200  # the agent, behind another proxy
    assert from_lines("10.20.1.1, 6.6.6.6", "192.168.5.11") == 403


def test_a_txn_date_ahead_of_our_clock_is_refused(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    answer = gateway.pay("sochi", inn, "10", txn_date="20991231000000")
    assert answer["result"] == 300 and "txn_date" in answer["comment"]
    ahead = (datetime.now(UTC) + timedelta(hours=7)).astimezone(ZoneInfo("Asia/Bishkek"))
    assert gateway.pay("sochi", inn, "10", txn_date=ahead.strftime("%Y%m%d%H%M%S"))["result"] == 300
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(payments)) == 0


# --- the request log -------------------------------------------------------------------


def test_every_request_is_logged_without_secrets(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    gateway.check("sochi", inn, txn_id="1")
    paid = gateway.pay("sochi", inn, "10", txn_id="2")
    gateway.pay("sochi", inn, "10", txn_id="2")
    gateway.call("sochi", "command=pay&txn_id=3&account=%00")
    gateway.client.get("/gateway/osmp/sochi?command=check&txn_id=4&account=1&password=hunter2")
    with engine.connect() as conn:
        rows = conn.execute(select(gateway_requests).order_by(gateway_requests.c.id)).all()
    assert [r.result for r in rows] == [0, 0, 0, 300, 8]
    assert [r.http_status for r in rows] == [200, 200, 200, 200, 401]
    assert rows[1].payment_id == int(paid["prv_txn"])
    assert rows[2].payment_id == int(paid["prv_txn"])
    assert rows[1].peer == "127.0.0.1"
    assert rows[1].command == "pay" and rows[1].txn_id == "2"
    assert "<prv_txn>" in rows[1].response
    assert all(r.duration_us >= 0 for r in rows)
    assert "\\x00" in rows[3].params
    assert "hunter2" not in rows[4].params
    assert gateway.secret not in " ".join(r.params + r.response for r in rows)
    assert json.loads(rows[0].params)[0] == ["command", "check"]


# --- temporary failures ----------------------------------------------------------------


def test_database_unreachable_answers_retry(gateway: Gateway, engine, runtime) -> None:
    from tolom.db.engine import make_engine
    from tolom.settings import Settings

    inn = add_customer(engine)
    runtime.agents._ttl = 3600  # the agent stays cached while the database goes away
    assert gateway.check("sochi", inn)["result"] == 0
    dead = make_engine(Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"))
    runtime.engine = dead
    runtime.agents._engine = dead
    try:
        assert gateway.pay("sochi", inn, "10")["result"] == 1
        assert gateway.check("sochi", inn)["result"] == 1
        runtime.agents.clear()
        assert gateway.pay("sochi", inn, "10")["result"] == 1  # cannot even authenticate
    finally:
        runtime.engine = engine
        dead.dispose()
    assert payment_count(engine) == 0


def test_lock_timeout_answers_retry_and_the_repeat_pays(gateway: Gateway, engine, settings) -> None:
    inn = add_customer(engine)
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
    blocker = engine.connect()
    try:
        transaction = blocker.begin()
        if engine.dialect.name == "postgresql":
            blocker.execute(
                text("SELECT balance FROM account_balances WHERE account_id = :a FOR UPDATE"),
                {"a": customer.account_id},
            )
        # On SQLite the BEGIN IMMEDIATE above already holds the write lock.
        answer = gateway.pay("sochi", inn, "10", txn_id="5150")
        assert answer["result"] == 1
        transaction.rollback()
    finally:
        blocker.close()
    assert gateway.pay("sochi", inn, "10", txn_id="5150")["result"] == 0
    assert balance(engine, inn) == 1000


def test_new_txn_ids_are_unique_in_tests() -> None:
    assert new_txn_id() != new_txn_id()


# --- regressions found by review -------------------------------------------------------


@pytest.mark.parametrize("txn_date", ["00010101000000", "19991231235959", "21000101000000"])
def test_implausible_txn_date_is_300_not_retry(gateway: Gateway, engine, txn_date: str) -> None:
    inn = add_customer(engine)
    answer = gateway.pay("sochi", inn, "10", txn_date=txn_date)
    assert answer["result"] == 300
    assert "txn_date" in answer["comment"]
    assert payment_count(engine) == 0


def test_head_request_never_pays(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    response = gateway.client.head(
        f"/gateway/osmp/sochi?{GOOD_PAY.format(inn=inn)}", headers=gateway.auth_header
    )
    assert response.status_code == 405
    assert payment_count(engine) == 0


def test_zero_padded_txn_id_is_the_same_transaction(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    first = gateway.pay("sochi", inn, "10", txn_id="90")
    again = gateway.pay("sochi", inn, "10", txn_id="0090")
    assert again["result"] == 0
    assert again["prv_txn"] == first["prv_txn"]
    assert again["osmp_txn_id"] == "0090"  # echoed as the agent sent it
    assert payment_count(engine) == 1


def test_strangers_get_401_even_for_unreadable_requests(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/gateway/osmp/sochi",
        content=b"x" * 20000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401


def test_strangers_are_recorded_briefly_and_then_refused_unrecorded(
    gateway: Gateway, engine, runtime
) -> None:
    from starlette.testclient import TestClient

    from tolom.httpkit.strangers import StrangerLimit

    runtime.strangers = StrangerLimit(per_minute=3)
    stranger = TestClient(gateway.client.app, client=("6.6.6.6", 40000))
    wrong = {"Authorization": "Basic " + base64.b64encode(b"optima:wrong").decode()}
    long_query = "command=check&txn_id=1&account=1&" + "&".join(
        f"field{i}={'x' * 250}" for i in range(30)
    )
    answers = [stranger.get(f"/gateway/osmp/sochi?{long_query}", headers=wrong) for _ in range(6)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert parse_answer(answers[-1].text)["result"] == 8
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "10")["result"] == 0  # an agent is never held back
    with engine.connect() as conn:
        rows = conn.execute(
            select(gateway_requests).where(gateway_requests.c.http_status == 401)
        ).all()
    assert len(rows) == 3
    assert all(len(r.params) + len(r.response) <= 1024 for r in rows)


def test_ipv4_mapped_proxy_address_is_trusted() -> None:
    import ipaddress

    from tolom.httpkit.clients import client_address

    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_address("::ffff:10.0.0.5", "6.6.6.6", trusted) == "6.6.6.6"
    assert client_address("::ffff:11.0.0.5", "6.6.6.6", trusted) == "::ffff:11.0.0.5"
