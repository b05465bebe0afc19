"""The back office's cash desk and printable receipt: an operator takes cash or records a
bank transfer (a SOCHI top-up or an invoice) through the form, with a check step, refusals
in Russian, amounts as people type them, one payment per form however often it is sent,
the ledger and the audit line; the receipt page with its QR code; every role and CSRF."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.adapters.web.test_web import (
    NBSP,
    Web,
    add_user,
    audit_actions,
    csrf_in,
    page_of,
    text_of,
)
from tests.adapters.web.test_web import web as web
from tests.factories import Gateway, add_customer, add_invoice, new_inn
from tolom import audit
from tolom.billing import customers, invoices
from tolom.db.schema import (
    accounts,
    audit_log,
    gateway_requests,
    manual_payments,
    payments,
    receipts,
)
from tolom.identifiers import new_invoice_number
from tolom.ledger.accounts import account_balance
from tolom.payments import reversal
from tolom.web import cash as cash_pages

_REFERENCE = re.compile(r'name="reference" value="([^"]*)"')
_RECEIPT = re.compile(r"^/payments/(\d+)/receipt\?(recorded|replayed)=1$")


# --- helpers --------------------------------------------------------------------------------


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(table)
        if where:
            query = query.where(*where)
        return int(conn.execute(query).scalar_one())


def balance(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


def ledger_balance(engine: Engine, code: str) -> int:
    with engine.connect() as conn:
        account_id = conn.execute(select(accounts.c.id).where(accounts.c.code == code)).scalar_one()
        return account_balance(conn, account_id)


def reference_in(html: str) -> str:
    found = _REFERENCE.search(html)
    assert found is not None, "the form has no reference"
    return found.group(1)


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


class Desk:
    """An operator at the cash desk form: opens it, fills it in, sends it."""

    def __init__(self, browser: TestClient) -> None:
        self.browser = browser
        self.form = browser.get("/cash")
        assert self.form.status_code == 200, self.form.text
        self.csrf = csrf_in(self.form.text)
        self.reference = reference_in(self.form.text)

    def fields(self, **values: str) -> dict[str, str]:
        return {
            "csrf": self.csrf,
            "reference": self.reference,
            "channel": "cash_desk",
            "service": "sochi",
            "account": "",
            "amount": "",
            "payer": "",
            "note": "",
            "payment_code": "",
            "bank_reference": "",
            "received_at": "",
            "step": "pay",
            **values,
        }

    def send(self, **values: str) -> Any:
        return self.browser.post("/cash", data=self.fields(**values))


def paid_id(answer: Any, shown: str = "recorded") -> int:
    assert answer.status_code == 303, answer.text
    found = _RECEIPT.match(answer.headers["location"])
    assert found is not None, answer.headers["location"]
    assert found.group(2) == shown
    return int(found.group(1))


def refusal(answer: Any) -> str:
    return unescape(text_of(answer.text, "cash-refusal"))


def field_error(answer: Any, name: str) -> str:
    return unescape(text_of(answer.text, f"e-{name}"))


def manual_row(engine: Engine, payment_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(manual_payments).where(manual_payments.c.payment_id == payment_id)
        ).one()


def payment_row(engine: Engine, payment_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(payments).where(payments.c.id == payment_id)).one()


# --- the form -------------------------------------------------------------------------------


def test_the_form_has_labels_and_a_fresh_reference_each_time(web: Web) -> None:
    browser = web.signed_in()
    page = browser.get("/cash")
    assert page.status_code == 200 and page_of(page) == "cash"
    html = page.text
    assert 'href="/cash" aria-current="page"' in html  # the header highlights Касса
    for name in ("account", "amount", "payer", "note", "received_at", "payment_code"):
        assert f'<label for="f-{name}">' in html, name
    for name in ("channel-cash_desk", "channel-bank", "service-sochi", "service-eds"):
        assert f'<label for="f-{name}">' in html, name
    assert "42151410" in html and "42122900" in html
    assert 'value="check"' in html and 'value="pay"' in html
    first, second = reference_in(html), reference_in(browser.get("/cash").text)
    assert re.fullmatch(r"web-[0-9a-f]{20}", first) and first != second
    assert count(web.engine, gateway_requests) == 0  # showing the form writes nothing


@pytest.mark.parametrize(
    ("channel", "service"),
    [("cash_desk", "sochi"), ("bank", "sochi"), ("cash_desk", "eds"), ("bank", "eds")],
)
def test_a_payment_through_each_channel_for_each_service(
    web: Web, channel: str, service: str
) -> None:
    sochi = service == "sochi"
    inn = add_customer(web.engine, name="ОсОО «Касса»")
    invoice = add_invoice(web.engine, [("eds-head", 2)])
    account = inn if sochi else invoice.number
    amount, tyiyn = ("1 510,50", 151050) if sochi else ("3020", 302000)
    bank = {"payment_code": "42122900", "bank_reference": " 000123 "} if channel == "bank" else {}
    desk = Desk(web.signed_in())
    number = paid_id(
        desk.send(
            channel=channel,
            service=service,
            account=account,
            amount=amount,
            payer="  Асанов Бакыт ",
            note="касса 1",
            **bank,
        )
    )

    row = payment_row(web.engine, number)
    assert (row.service, row.account, row.amount, row.status) == (
        service,
        account,
        tyiyn,
        "accepted",
    )
    assert row.txn_id == desk.reference
    manual = manual_row(web.engine, number)
    assert manual.channel == channel and manual.recorded_by == "user:aida"
    assert (manual.payer, manual.note) == ("Асанов Бакыт", "касса 1")
    if channel == "bank":
        assert (manual.payment_code, manual.bank_reference) == ("42122900", "000123")
    else:
        assert manual.payment_code is None and manual.bank_reference is None
    # The ledger: the channel's clearing account pays the customer or the revenue.
    assert ledger_balance(web.engine, channel) == -tyiyn
    if sochi:
        assert balance(web.engine, inn) == tyiyn
    else:
        assert ledger_balance(web.engine, "revenue:eds") == tyiyn
        with web.engine.connect() as conn:
            paid = invoices.get(conn, invoice.number)
        assert paid is not None and paid.status == "paid" and paid.payment_id == number

    with web.engine.connect() as conn:
        [line] = conn.execute(select(audit_log).where(audit_log.c.action == "payment.manual")).all()
        [logged] = conn.execute(
            select(gateway_requests).where(gateway_requests.c.payment_id == number)
        ).all()
    assert line.actor == "user:aida" and line.object_id == str(number)
    assert line.address == "testclient"
    after = json.loads(line.after) if isinstance(line.after, str) else line.after
    assert after["reference"] == desk.reference
    assert after["amount"] == ("1510.50" if sochi else "3020.00")
    assert after["channel"] == channel and after["account"] == account
    assert logged.protocol == "web" and logged.command == "pay" and logged.http_status == 303
    assert logged.txn_id == desk.reference

    receipt = desk.browser.get(f"/payments/{number}/receipt?recorded=1")
    assert receipt.status_code == 200 and page_of(receipt) == "payments-receipt"
    assert text_of(receipt.text, "receipt-recorded") == "Оплата принята и записана."
    assert text_of(receipt.text, "r-amount") == (
        f"1{NBSP}510,50{NBSP}сом" if sochi else f"3{NBSP}020,00{NBSP}сом"
    )
    assert text_of(receipt.text, "r-channel") == (
        "Касса компании" if channel == "cash_desk" else "Банковский перевод"
    )
    if channel == "bank":
        assert text_of(receipt.text, "r-payment-code") == "42122900"
        assert text_of(receipt.text, "r-bank-reference") == "№ 000123"
    # Who brought the money and the operator's note, as recorded (trimmed).
    assert text_of(receipt.text, "r-paid-by") == "Асанов Бакыт"
    assert text_of(receipt.text, "r-note") == "касса 1"
    if sochi:
        assert text_of(receipt.text, "r-inn") == inn
        assert unescape(text_of(receipt.text, "r-payer")) == "ОсОО «Касса»"
    else:
        assert text_of(receipt.text, "r-invoice") == invoice.number


def test_a_double_submit_records_one_payment(web: Web) -> None:
    inn = add_customer(web.engine)
    desk = Desk(web.signed_in())
    values = {"account": inn, "amount": "500", "payer": "Асанов"}
    first = paid_id(desk.send(**values))
    # The browser sends the same form again (a double click, a retry after a lost answer).
    again = paid_id(desk.send(**values), shown="replayed")
    also = paid_id(desk.send(**{**values, "amount": "500,00"}), shown="replayed")
    assert first == again == also
    assert count(web.engine, payments) == 1
    assert count(web.engine, manual_payments) == 1
    assert balance(web.engine, inn) == 50000
    assert audit_actions(web.engine).count("payment.manual") == 1
    shown = desk.browser.get(f"/payments/{first}/receipt?replayed=1")
    assert "второй платёж не создан" in text_of(shown.text, "receipt-replayed")


def test_the_same_form_with_other_data_is_refused_and_renewed(web: Web) -> None:
    inn = add_customer(web.engine)
    desk = Desk(web.signed_in())
    first = paid_id(desk.send(account=inn, amount="500"))
    changed = desk.send(account=inn, amount="700")
    assert changed.status_code == 409
    assert f"платёж № {first}" in refusal(changed)
    assert f'href="/payments/{first}/receipt"' in changed.text
    renewed = reference_in(changed.text)
    assert renewed != desk.reference  # sending it again is knowingly a new payment
    assert count(web.engine, payments) == 1 and balance(web.engine, inn) == 50000
    desk.reference = renewed
    second = paid_id(desk.send(account=inn, amount="700"))
    assert second != first and balance(web.engine, inn) == 120000


def test_refusals_say_why_in_russian_and_pay_nothing(web: Web, gateway: Gateway) -> None:
    blocked = add_customer(web.engine, status="blocked")
    inn = add_customer(web.engine)
    paid = add_invoice(web.engine)
    assert gateway.pay("eds", paid.number, "1510.00")["result"] == 0
    cancelled = add_invoice(web.engine)
    with web.engine.begin() as conn:
        invoices.cancel(conn, cancelled.number)
    open_invoice = add_invoice(web.engine)
    unknown, no_invoice = new_inn(), new_invoice_number()
    cases = [
        ({"account": "12345"}, 422, "ИНН «12345» указан неверно: нужно 14 цифр."),
        ({"account": unknown}, 404, f"Абонент с ИНН {unknown} не найден."),
        (
            {"account": blocked},
            409,
            f"Абонент с ИНН {blocked} заблокирован: оплата не принимается.",
        ),
        (
            {"service": "eds", "account": no_invoice, "amount": "1510"},
            404,
            f"Счёт на оплату № {no_invoice} не найден.",
        ),
        (
            {"service": "eds", "account": paid.number, "amount": "1510"},
            409,
            f"Счёт № {paid.number} уже оплачен.",
        ),
        (
            {"service": "eds", "account": cancelled.number, "amount": "1510"},
            409,
            f"Счёт № {cancelled.number} аннулирован или срок его оплаты истёк.",
        ),
        (
            {"service": "eds", "account": open_invoice.number, "amount": "1500"},
            422,
            f"Сумма не совпадает с суммой счёта: нужно ровно 1{NBSP}510,00{NBSP}сом.",
        ),
        (
            {"service": "eds", "account": open_invoice.number, "amount": "1510,01"},
            422,
            f"Сумма не совпадает с суммой счёта: нужно ровно 1{NBSP}510,00{NBSP}сом.",
        ),
        (
            {"account": inn, "amount": "500000,01"},
            422,
            f"Сумма вне допустимых пределов: от 1,00{NBSP}сом до 500{NBSP}000,00{NBSP}сом.",
        ),
        (
            {"account": inn, "amount": "0,99"},
            422,
            f"Сумма вне допустимых пределов: от 1,00{NBSP}сом до 500{NBSP}000,00{NBSP}сом.",
        ),
    ]
    before = count(web.engine, payments)
    desk = Desk(web.signed_in())
    for values, status, message in cases:
        answer = desk.send(**{"amount": "100", **values})
        assert answer.status_code == status, (values, answer.text)
        assert page_of(answer) == "cash"
        assert refusal(answer) == message
        assert "Оплата не принята, ничего не записано" in answer.text
        assert f'value="{values["account"]}"' in answer.text  # the form is shown as typed
        assert reference_in(answer.text) == desk.reference  # nothing was paid under it
    assert count(web.engine, payments) == before
    assert balance(web.engine, inn) == 0
    assert "payment.manual" not in audit_actions(web.engine)


def test_a_service_switched_off_for_the_channel_is_refused(web: Web) -> None:
    from tolom.agents import service as agents

    with web.engine.begin() as conn:
        agents.set_service(conn, "bank", "sochi", allowed=False)
    inn = add_customer(web.engine)
    answer = Desk(web.signed_in()).send(
        channel="bank", account=inn, amount="10", payment_code="42151410", bank_reference="1"
    )
    assert answer.status_code == 403
    assert refusal(answer) == (
        "Приём оплаты «Пополнение баланса СОЧИ» через канал «Банковский перевод» отключён."
    )
    assert count(web.engine, payments) == 0


@pytest.mark.parametrize(
    ("typed", "tyiyn"),
    [
        ("1 510,50", 151050),
        ("1510.5", 151050),
        ("1510,50", 151050),
        ("  1510  ", 151000),
        (f"1{NBSP}510,05", 151005),
        ("1\u202f510", 151000),
        ("12 345", 1234500),
        ("1,5", 150),
        ("500000", 50000000),
    ],
)
def test_amounts_are_read_as_people_write_them(web: Web, typed: str, tyiyn: int) -> None:
    inn = add_customer(web.engine)
    number = paid_id(Desk(web.signed_in()).send(account=inn, amount=typed))
    assert payment_row(web.engine, number).amount == tyiyn
    assert balance(web.engine, inn) == tyiyn


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1510,505", "Сумма в сомах"),
        ("1 510,505", "Сумма в сомах"),
        ("-5", "Сумма должна быть больше нуля."),
        ("-5,00", "Сумма должна быть больше нуля."),
        ("0", "Сумма должна быть больше нуля."),
        ("0,00", "Сумма должна быть больше нуля."),
        ("сто", "Сумма в сомах"),
        ("12a", "Сумма в сомах"),
        ("1,510.50", "Сумма в сомах"),
        ("15 10", "Сумма в сомах"),
        ("1  510", "Сумма в сомах"),
        ("5e3", "Сумма в сомах"),
        ("+5", "Сумма в сомах"),
        ("1.", "Сумма в сомах"),
        (",5", "Сумма в сомах"),
        ("١٢", "Сумма в сомах"),
        ("", "Укажите сумму."),
        ("1" * 33, "Не длиннее 32 символов."),
    ],
)
def test_malformed_amounts_are_refused_before_paying(web: Web, typed: str, message: str) -> None:
    inn = add_customer(web.engine)
    answer = Desk(web.signed_in()).send(account=inn, amount=typed)
    assert answer.status_code == 422
    assert field_error(answer, "amount").startswith(message)
    assert 'aria-invalid="true"' in answer.text and 'id="cash-errors"' in answer.text
    assert count(web.engine, payments) == 0 and count(web.engine, gateway_requests) == 0


def test_bad_input_is_refused_and_changes_nothing(web: Web) -> None:
    inn = add_customer(web.engine)
    desk = Desk(web.signed_in())
    future = (datetime.now(UTC) + timedelta(hours=2)).astimezone(cash_pages.ZONE)
    # Values no form offers: a 400 page.
    for values in (
        {"reference": "PKO-1"},
        {"reference": ""},
        {"channel": "terminal"},
        {"service": "gas"},
        {"payment_code": "12345678", "channel": "bank"},
        {"step": "later"},
        {"step": ""},
        {"payer": "Асанов\x00"},
    ):
        answer = desk.send(**{"account": inn, "amount": "10", **values})
        assert answer.status_code == 400, values
        assert page_of(answer) == "bad-request"
    # Mistakes a person makes: the form again, each error next to its field.
    cases = [
        ({"account": ""}, {"account": "Укажите ИНН абонента или номер счёта."}),
        ({"account": "1" * 65}, {"account": "Не длиннее 64 символов."}),
        ({"payer": "x" * 301}, {"payer": "Не длиннее 300 символов."}),
        ({"note": "x" * 1001}, {"note": "Не длиннее 1000 символов."}),
        (
            {"channel": "bank"},
            {
                "payment_code": "Для банковского перевода выберите код платежа.",
                "bank_reference": "Для банковского перевода укажите номер платёжного поручения.",
            },
        ),
        (
            {"channel": "bank", "payment_code": "42151410", "bank_reference": "   "},
            {"bank_reference": "Для банковского перевода укажите номер платёжного поручения."},
        ),
        (
            {"payment_code": "42151410", "bank_reference": "77"},
            {
                "payment_code": "Заполняется только для банковского перевода: для кассы "
                "оставьте пустым.",
                "bank_reference": "Заполняется только для банковского перевода: для кассы "
                "оставьте пустым.",
            },
        ),
        (
            {"received_at": "вчера"},
            {"received_at": "Укажите дату и время поступления, например 21.11.2026 10:15."},
        ),
        (
            {"received_at": future.strftime("%Y-%m-%dT%H:%M")},
            {"received_at": "Дата поступления не может быть в будущем или раньше 2000 года."},
        ),
        (
            {"received_at": "1999-12-31T23:00"},
            {"received_at": "Дата поступления не может быть в будущем или раньше 2000 года."},
        ),
    ]
    for values, errors in cases:
        answer = desk.send(**{"account": inn, "amount": "10", **values})
        assert answer.status_code == 422, values
        for name, message in errors.items():
            assert field_error(answer, name) == message, (values, name)
        assert 'id="cash-errors" class="alert" role="alert"' in answer.text
    assert count(web.engine, payments) == 0
    assert count(web.engine, gateway_requests) == 0
    assert balance(web.engine, inn) == 0


def test_received_at_sets_the_business_day(web: Web) -> None:
    inn = add_customer(web.engine)
    number = paid_id(
        Desk(web.signed_in()).send(account=inn, amount="10", received_at="2026-01-05T23:30")
    )
    row = payment_row(web.engine, number)
    assert row.business_date.isoformat() == "2026-01-05"  # Bishkek's day, not UTC's
    assert row.txn_date_raw == "2026-01-05T23:30"
    moment = row.txn_date if row.txn_date.tzinfo else row.txn_date.replace(tzinfo=UTC)
    assert moment == datetime(2026, 1, 5, 17, 30, tzinfo=UTC)


# --- the check step -------------------------------------------------------------------------


def test_the_check_step_shows_the_customer_and_pays_nothing(web: Web) -> None:
    inn = add_customer(web.engine, name="ОсОО «Проверка»")
    desk = Desk(web.signed_in())
    answer = desk.send(step="check", account=inn, amount="")
    assert answer.status_code == 200 and page_of(answer) == "cash"
    assert unescape(text_of(answer.text, "check-text")) == (
        f"Абонент: ОсОО «Проверка». Можно внести от 1,00{NBSP}сом до 500{NBSP}000,00{NBSP}сом."
    )
    assert 'data-ok="yes"' in answer.text
    assert reference_in(answer.text) == desk.reference  # the same form goes on to pay
    too_much = desk.send(step="check", account=inn, amount="600000")
    assert 'data-ok="no"' in too_much.text
    assert field_error(too_much, "amount").startswith("Сумма вне допустимых пределов")
    unknown = desk.send(step="check", account=new_inn(), amount="")
    assert unknown.status_code == 404 and "не найден" in refusal(unknown)
    assert count(web.engine, payments) == 0 and balance(web.engine, inn) == 0
    assert "payment.manual" not in audit_actions(web.engine)
    with web.engine.connect() as conn:
        checks = conn.execute(select(gateway_requests.c.command, gateway_requests.c.protocol)).all()
    assert {tuple(c) for c in checks} == {("check", "web")}  # the checks are logged
    paid_id(desk.send(account=inn, amount="100"))
    assert balance(web.engine, inn) == 10000


def test_the_check_step_fills_in_an_invoice_total(web: Web) -> None:
    invoice = add_invoice(web.engine, [("eds-head", 2)])
    desk = Desk(web.signed_in())
    answer = desk.send(step="check", service="eds", account=invoice.number, amount="")
    assert unescape(text_of(answer.text, "check-text")) == (
        f"Счёт выставлен на: ОсОО «Новый клиент». Сумма к оплате: 3{NBSP}020,00{NBSP}сом."
    )
    filled = re.search(r'id="f-amount" name="amount" value="([^"]*)"', answer.text)
    assert filled is not None and filled.group(1) == f"3{NBSP}020,00"
    number = paid_id(
        desk.send(service="eds", account=invoice.number, amount=unescape(filled.group(1)))
    )
    assert payment_row(web.engine, number).amount == 302000


# --- who may, CSRF, failures ----------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "accountant", "auditor"])
def test_only_operators_may_take_payments(web: Web, role: str) -> None:
    inn = add_customer(web.engine)
    browser = _staff(web, role)
    home = browser.get("/")
    assert 'href="/cash"' not in home.text  # the header does not offer it
    page = browser.get("/cash")
    assert page.status_code == 403 and page_of(page) == "forbidden"
    answer = browser.post(
        "/cash",
        data={
            "csrf": csrf_in(home.text),
            "reference": cash_pages.new_reference(),
            "channel": "cash_desk",
            "service": "sochi",
            "account": inn,
            "amount": "10",
            "step": "pay",
        },
    )
    assert answer.status_code == 403 and page_of(answer) == "forbidden"
    assert count(web.engine, payments) == 0 and count(web.engine, gateway_requests) == 0
    assert balance(web.engine, inn) == 0


def test_an_operator_sees_the_cash_desk_in_the_header(web: Web) -> None:
    assert 'href="/cash"' in web.signed_in().get("/").text


def test_a_post_without_the_csrf_token_changes_nothing(web: Web) -> None:
    inn = add_customer(web.engine)
    desk = Desk(web.signed_in())
    for token in (None, "", "forged"):
        values = desk.fields(account=inn, amount="10")
        if token is None:
            del values["csrf"]
        else:
            values["csrf"] = token
        answer = desk.browser.post("/cash", data=values)
        assert answer.status_code == 403 and page_of(answer) == "csrf"
    assert count(web.engine, payments) == 0 and count(web.engine, gateway_requests) == 0
    stranger = web.browser().post("/cash", data=desk.fields(account=inn, amount="10"))
    assert stranger.status_code == 303 and stranger.headers["location"] == "/login"
    assert count(web.engine, payments) == 0


def test_a_failing_audit_line_takes_the_payment_with_it(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(web.engine)
    desk = Desk(web.signed_in())

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(audit, "record", broken)
    answer = desk.send(account=inn, amount="10")
    assert answer.status_code == 503
    assert refusal(answer) == "Временная ошибка, оплата не записана. Повторите через минуту."
    assert count(web.engine, payments) == 0 and balance(web.engine, inn) == 0
    monkeypatch.undo()
    paid_id(desk.send(account=inn, amount="10"))  # the same form, sent again, pays once
    assert balance(web.engine, inn) == 1000


def test_the_page_speaks_the_users_language(web: Web) -> None:
    add_user(web.engine, username="dana", language="en")
    browser = web.signed_in("dana")
    page = browser.get("/cash")
    assert "Take payment" in page.text and "Cash desk" in page.text
    inn = add_customer(web.engine)
    desk = Desk(browser)
    answer = desk.send(account=inn, amount="abc")
    assert field_error(answer, "amount").startswith("Amount in som")
    number = paid_id(desk.send(account=inn, amount="1 510,50"))
    receipt = browser.get(f"/payments/{number}/receipt")
    assert text_of(receipt.text, "r-amount") == f"1,510.50{NBSP}KGS"
    assert text_of(receipt.text, "r-heading") == f"Payment receipt No. {number}"


# --- the receipt page ----------------------------------------------------------------------


def test_the_receipt_page_matches_the_pdf_and_has_a_qr_code(web: Web) -> None:
    inn = add_customer(web.engine, name="ОсОО «Квитанция»")
    desk = Desk(web.signed_in())
    number = paid_id(desk.send(account=inn, amount="1510", payer="Асанов", note="за декабрь"))
    page = desk.browser.get(f"/payments/{number}/receipt")
    assert page.status_code == 200
    html = page.text
    assert unescape(text_of(html, "r-payee")) == web.settings.company_name
    assert text_of(html, "r-heading") == f"Квитанция об оплате № {number}"
    assert text_of(html, "r-amount") == f"1{NBSP}510,00{NBSP}сом"
    assert text_of(html, "r-service") == "Пополнение баланса СОЧИ"
    assert text_of(html, "r-inn") == inn
    assert text_of(html, "r-status") == "Принят"
    assert text_of(html, "r-paid-at").endswith("(Бишкек)")
    with web.engine.connect() as conn:
        token = conn.execute(
            select(receipts.c.token).where(receipts.c.payment_id == number)
        ).scalar_one()
    url = f"{web.settings.public_base_url}/r/{token}"
    assert text_of(html, "r-url") == url
    # The QR code is inline SVG (the CSP allows no data: images) named for screen readers.
    qr = html[html.index('id="receipt-qr"') : html.index("</figure>")]
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in qr and "<path" in qr
    assert "<title>QR-код страницы проверки платежа</title>" in qr
    assert "data:" not in html and "<script" not in html and "style=" not in html
    assert f'href="/payments/{number}/receipt.pdf"' in html
    assert f'href="/payments/{number}"' in html
    assert "Печать." in text_of(html, "print-hint").replace("<strong>", "")
    assert 'id="another-payment" href="/cash"' in html  # an operator takes the next one
    pdf = desk.browser.get(f"/payments/{number}/receipt.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    # The payment's page links here; the public page behind the QR code names nobody.
    detail = desk.browser.get(f"/payments/{number}")
    assert f'id="receipt-page" href="/payments/{number}/receipt"' in detail.text
    public = web.browser().get(f"/r/{token}")
    assert public.status_code == 200
    assert "1\u00a0510,00" in public.text or "1 510,00" in public.text
    for secret in (inn, "Квитанция»", "Асанов", "за декабрь", desk.reference):
        assert secret not in public.text
    # The PDF carries who paid and the note, like the page.
    assert text_of(html, "r-paid-by") == "Асанов" and text_of(html, "r-note") == "за декабрь"
    pdf_text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Кто оплатил" in pdf_text and "Асанов" in pdf_text and "за декабрь" in pdf_text


def test_the_receipt_page_for_every_role_and_a_reversed_payment(web: Web, gateway: Gateway) -> None:
    invoice = add_invoice(web.engine)
    answer = gateway.pay("eds", invoice.number, "1510.00")
    number = int(answer["prv_txn"])
    for role in ("admin", "accountant", "auditor"):
        page = _staff(web, role).get(f"/payments/{number}/receipt")
        assert page.status_code == 200, role
        assert text_of(page.text, "r-invoice") == invoice.number
        assert text_of(page.text, "r-channel") == "Агент optima"
        assert 'id="another-payment"' not in page.text  # they may not take payments
    with web.engine.begin() as conn:
        reversal.reverse_audited(conn, number, "ошибка", actor="user:test", address=None)
    page = web.signed_in().get(f"/payments/{number}/receipt")
    assert text_of(page.text, "r-status").startswith("ОТМЕНЁН")
    assert 'data-status="reversed"' in page.text
    browser = web.signed_in()
    for bad in ("999999", "abc", "1" * 19, "-1"):
        missing = browser.get(f"/payments/{bad}/receipt")
        assert missing.status_code == 404 and page_of(missing) == "not-found"
    assert web.browser().get(f"/payments/{number}/receipt").status_code == 303  # log in first


# --- template samples (for tests.adapters.web.test_web::_samples) -----------------------------------------


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for each cash desk template with every branch that shows text."""
    from tolom.documents.receipts import ReceiptDocument
    from tolom.payments import manual

    form = cash_pages.CashForm(
        reference="web-0123456789abcdef0123",
        channel="bank",
        service="eds",
        account="4000000000000002",
        amount="1 510,00",
        payer="Иванов",
        note="прим.",
        payment_code="42151410",
        bank_reference="PP-1",
        received_at="2026-11-23T10:00",
        errors={"amount": "ошибка", "account": "ошибка"},
    )
    shown = {
        **common,
        "page": "cash",
        "form": form,
        "channels": manual.CHANNELS,
        "services": manual.SERVICES,
        "payment_codes": manual.PAYMENT_CODES,
        "limits": cash_pages.LIMITS,
        "refusal": "отказ",
        "verdict": None,
        "conflict_with": 7,
    }
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    receipt = ReceiptDocument(
        number=7,
        token="t" * 32,
        url="https://pay.example.kg/r/" + "t" * 32,
        amount=151_000,
        paid_at=moment_,
        service="eds",
        service_name="Оплата ЭЦП",
        status="reversed",
        reversed_at=moment_,
        channel="bank",
        channel_name="Банк",
        inn="01904202310427",
        payer="ОсОО «Тест»",
        invoice_number="4000000000000002",
        payment_code="42151410",
        bank_reference="PP-1",
        payee="«ДОС ТЭК ГРУПП»",
        paid_by="Иванов",
        note="прим.",
    )
    return {
        "web/cash.html": shown,
        "web/receipt.html": {
            **common,
            "page": "payments-receipt",
            "r": receipt,
            "requisites": "ИНН 1 · Бишкек",
            "qr": cash_pages.qr_svg(receipt.url, "QR"),
            "recorded": True,
            "replayed": False,
            "may_cash": True,
        },
    }
