"""The order status page /status: an invoice followed by its number from "awaiting payment"
through payment (OSMP, as an agent pays), production and issue, each step with its date and
the receipt's link; the ends (expired, cancelled); ru/ky/en; bad input answered next to the
field; nothing personal shown."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer, add_invoice
from tolom import formatting
from tolom.app import create_app
from tolom.billing import invoices, orders
from tolom.db.schema import audit_log
from tolom.identifiers import luhn_check_digit
from tolom.money import format_amount
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.site import pages

NAME = "ОсОО «Секретная Ромашка»"
EMAIL = "secret@romashka.example.kg"
PHONE = "+996555123456"
STARTED = datetime(2030, 11, 23, 4, 0, tzinfo=UTC)  # 10:00 in Bishkek
ISSUED = datetime(2030, 11, 25, 19, 30, tzinfo=UTC)  # 26.11.2030 01:30 in Bishkek


@dataclass
class Site:
    client: TestClient
    engine: Engine
    gateway: Gateway
    settings: Settings
    inn: str

    def status(self, number: str | None = None, **params: Any) -> Any:
        query = {"invoice": number, **params} if number is not None else params
        return self.client.get("/status", params=query or None)

    def invoice(self, items: list[tuple[str, int]] | None = None) -> invoices.Invoice:
        with self.engine.begin() as conn:
            return invoices.create(
                conn,
                items=items or [("eds-head", 1)],
                payer_name=NAME,
                inn=self.inn,
                validity_days=30,
            )

    def pay(self, invoice: invoices.Invoice) -> None:
        answer = self.gateway.pay("eds", invoice.number, format_amount(invoice.total))
        assert answer["result"] == 0, answer

    def orders(self, invoice: invoices.Invoice) -> list[orders.Order]:
        with self.engine.connect() as conn:
            found = orders.list_orders(conn, invoice_number=invoice.number, limit=100)
        return sorted(found, key=lambda o: o.id)


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Site:
    app = create_app(runtime=Runtime.on(settings, engine))
    gateway = Gateway.create(app, engine, code="optima")
    inn = add_customer(engine, name=NAME, email=EMAIL, phone=PHONE)
    client = TestClient(app, client=("203.0.113.9", 50000))
    return Site(client, engine, gateway, settings, inn)


def section(html: str) -> str:
    """The result (the page's header and footer left out)."""
    start = html.find('<section class="status"')
    assert start >= 0, html
    return html[start : html.index("</section>", start)]


def shown(html: str) -> str:
    """The result's text, tags removed and spaces collapsed."""
    text = re.sub(r"<[^>]+>", " ", section(html)).replace(formatting.THOUSANDS, " ")
    return " ".join(text.split()).replace(" :", ":").replace(" ,", ",")


def stage_of(html: str) -> str:
    found = re.search(r'data-stage="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def field_error(html: str) -> str:
    """The error said next to the field (and the field marked invalid)."""
    found = re.search(r'<p id="invoice-error" class="error" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, html
    assert 'aria-invalid="true"' in html and 'aria-describedby="invoice-hint invoice-error"' in html
    return found.group(1).strip()


def assert_nothing_personal(html: str, site: Site) -> None:
    for secret in (NAME, "Секретная", site.inn, EMAIL, PHONE, "555123456", "Баланс", "баланс"):
        assert secret not in html, secret


def day(moment: datetime) -> str:
    return formatting.day(moment)


def receipts_made(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(audit_log.c.action == "receipt.create")
        return int(conn.execute(query.select_from(audit_log)).scalar_one())


# --- the stages ------------------------------------------------------------------------


def test_an_invoice_is_followed_to_issue_with_dates_and_the_receipt(site: Site) -> None:
    invoice = site.invoice()
    created, due = day(invoice.created_at), day(invoice.expires_at)

    page = site.status(invoice.number)
    assert page.status_code == 200 and stage_of(page.text) == "awaiting_payment"
    text = shown(page.text)
    assert f"Счёт № {invoice.number}" in text and "Сейчас: Ожидает оплаты" in text
    assert f"Ожидает оплаты: {created}" in text and "Оплачен: ещё нет" in text
    assert f"Оплатите счёт до {due} включительно" in text
    assert "1 510,00 сом" in text and f"Оплатить до {due}" in text
    assert "Электронная подпись руководителя" in text and "1 шт. × 1 510,00 сом" in text
    how = f'<a class="how" href="/pay?service=eds&amp;number={invoice.number}">'
    assert how in section(page.text) and "/r/" not in page.text
    assert_nothing_personal(page.text, site)

    site.pay(invoice)
    with site.engine.connect() as conn:
        paid = invoices.get(conn, invoice.number)
    assert paid is not None and paid.paid_at is not None
    page = site.status(invoice.number)
    assert stage_of(page.text) == "paid"
    text = shown(page.text)
    assert f"Оплачен: {day(paid.paid_at)}" in text and "В изготовлении: ещё нет" in text
    assert 'class="how"' not in page.text
    link = re.search(r'<a class="receipt" href="(/r/[A-Za-z0-9_-]{32})">', page.text)
    assert link is not None, page.text
    receipt = site.client.get(link.group(1))
    assert receipt.status_code == 200 and formatting.som(151000) in receipt.text
    assert receipts_made(site.engine) == 1
    again = site.status(invoice.number)  # the same link, made once (audited once)
    assert link.group(1) in again.text and receipts_made(site.engine) == 1
    assert_nothing_personal(page.text, site)

    [order] = site.orders(invoice)
    with site.engine.begin() as conn:
        orders.start(conn, order.id, now=STARTED)
    page = site.status(invoice.number)
    assert stage_of(page.text) == "in_production"
    text = shown(page.text)
    assert "В изготовлении: 23.11.2030" in text and "Выдан: ещё нет" in text
    assert "мы сообщим по SMS или e-mail" in text

    with site.engine.begin() as conn:
        orders.issue(conn, order.id, validity_months=12, now=ISSUED)
    page = site.status(invoice.number)
    assert stage_of(page.text) == "issued"
    text = shown(page.text)
    assert f"Ожидает оплаты: {created}" in text and f"Оплачен: {day(paid.paid_at)}" in text
    assert "В изготовлении: 23.11.2030" in text and "Выдан: 26.11.2030" in text
    assert "Сейчас: Выдан" in text and "действует до 26.11.2031" in text
    assert link.group(1) in page.text
    assert_nothing_personal(page.text, site)


@pytest.mark.parametrize(
    ("language", "fragments"),
    [
        (
            "ru",
            ["Сейчас: В изготовлении", "Оплачен:", "В изготовлении: 23.11.2030", "Выдан: ещё нет"],
        ),
        (
            "ky",
            ["Азыр: Даярдалууда", "Төлөндү:", "Даярдалууда: 23.11.2030", "Берилди: азырынча жок"],
        ),
        ("en", ["Now: In production", "Paid:", "In production: 23.11.2030", "Issued: not yet"]),
    ],
)
def test_the_page_speaks_the_customers_language(
    site: Site, language: str, fragments: list[str]
) -> None:
    invoice = site.invoice()
    site.pay(invoice)
    [order] = site.orders(invoice)
    with site.engine.begin() as conn:
        orders.start(conn, order.id, now=STARTED)
    page = site.status(invoice.number, lang=language)
    assert page.status_code == 200 and f'<html lang="{language}">' in page.text
    text = shown(page.text)
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    if language == "en":
        assert "1,510.00 KGS" in text
    # The choice is remembered: the next lookup without ?lang= speaks it too.
    assert site.status(invoice.number).text.count(f'<html lang="{language}">') == 1
    assert_nothing_personal(page.text, site)


def test_several_orders_move_on_one_by_one(site: Site) -> None:
    invoice = site.invoice([("eds-head", 2)])
    site.pay(invoice)
    first, second = site.orders(invoice)
    with site.engine.begin() as conn:
        orders.start(conn, first.id, now=STARTED)
        orders.issue(conn, first.id, validity_months=12, now=ISSUED)
    page = site.status(invoice.number)
    assert stage_of(page.text) == "in_production"  # one is issued, the other only paid
    states = re.findall(r'<li data-state="([a-z_]+)">', page.text)
    assert states == ["issued", "paid"]
    assert "Выдан: ещё нет" in shown(page.text)
    with site.engine.begin() as conn:
        orders.start(conn, second.id, now=STARTED + timedelta(days=1))
        orders.issue(conn, second.id, validity_months=12, now=ISSUED + timedelta(days=2))
    page = site.status(invoice.number)
    assert stage_of(page.text) == "issued"
    # Production started with the first order; the invoice is issued with the last one.
    assert "В изготовлении: 23.11.2030" in shown(page.text)
    assert "Выдан: 28.11.2030" in shown(page.text)


# --- where following ends -------------------------------------------------------------


def test_an_expired_invoice_says_so_and_what_to_do(site: Site) -> None:
    old = datetime.now(UTC) - timedelta(days=10)
    invoice = add_invoice(site.engine, validity_days=3, now=old)
    page = site.status(invoice.number)
    assert page.status_code == 200 and stage_of(page.text) == "expired"
    text = shown(page.text)
    assert f"Срок оплаты истёк: {day(invoice.expires_at)}" in text
    assert "Попросите новый счёт" in text and 'class="how"' not in page.text
    assert "Новый клиент" not in page.text  # the payer's name stays on the invoice
    english = shown(site.status(invoice.number, lang="en").text)
    assert "Payment period expired" in english and "Ask for a new one" in english


def test_a_cancelled_invoice_says_so_and_what_to_do(site: Site) -> None:
    invoice = site.invoice()
    with site.engine.begin() as conn:
        invoices.cancel(conn, invoice.number)
    page = site.status(invoice.number)
    assert stage_of(page.text) == "cancelled"
    text = shown(page.text)
    assert "Сейчас: Счёт отменён" in text and "оплатить его нельзя" in text
    assert "Оплачен: ещё нет" in text
    kyrgyz = shown(site.status(invoice.number, lang="ky").text)
    assert "Эсеп жокко чыгарылды" in kyrgyz and "кеңсеге кайрылыңыз" in kyrgyz


def test_a_cancelled_order_says_so_without_the_reason_or_the_refund(site: Site) -> None:
    invoice = site.invoice()
    site.pay(invoice)
    [order] = site.orders(invoice)
    moment = datetime(2030, 11, 24, 6, 0, tzinfo=UTC)
    with site.engine.begin() as conn:
        orders.cancel(
            conn,
            order.id,
            "Клиент передумал: секретная причина",
            refund_percent_in_production=50,
            now=moment,
        )
    page = site.status(invoice.number)
    assert stage_of(page.text) == "order_cancelled"
    text = shown(page.text)
    assert "Сейчас: Заказ отменён" in text and "Заказ отменён: 24.11.2030" in text
    assert "секретная причина" not in page.text and "возврат" not in text.lower()
    assert re.search(r'<a class="receipt" href="/r/', page.text)  # the payment still stands
    assert_nothing_personal(page.text, site)


# --- the form and bad input ------------------------------------------------------------


def test_the_form_works_without_javascript_and_is_linked(site: Site) -> None:
    page = site.status()
    assert page.status_code == 200
    assert '<form method="get" action="/status"' in page.text
    assert '<label for="invoice">Номер счёта</label>' in page.text
    assert "<script" not in page.text and 'data-stage="' not in page.text
    assert '<span aria-current="page">Статус заказа</span>' in page.text
    assert ("/status", "site.status.link") in pages.LINKS
    assert page.headers["Cache-Control"] == "no-store"
    assert "noindex" in page.headers["X-Robots-Tag"]
    # Grouped as people copy it: spaces and hyphens between the digits are fine.
    invoice = site.invoice()
    n = invoice.number
    grouped = f"{n[:4]} {n[4:8]}-{n[8:12]}\u00a0{n[12:]}"
    assert stage_of(site.status(grouped).text) == "awaiting_payment"


def _luhn_wrong(number: str) -> str:
    return number[:15] + str((int(number[15]) + 1) % 10)


VALID = "400000000000001" + luhn_check_digit("400000000000001")  # well formed, unknown


@pytest.mark.parametrize(
    ("typed", "language", "said"),
    [
        ("", "ru", "Введите номер счёта."),
        ("   ", "en", "Enter the invoice number."),
        (VALID[:15], "ru", "В номере счёта 16 цифр, а введено 15 цифр."),
        (VALID[:2], "ru", "В номере счёта 16 цифр, а введено 2 цифры."),
        (VALID + "1", "ky", "Эсептин номеринде 16 сан болот, сиз 17 сан жаздыңыз."),
        (VALID[:15], "en", "An invoice number has 16 digits; you typed 15 digits."),
        (_luhn_wrong(VALID), "ru", "В номере опечатка: проверьте цифры по счёту."),
        (_luhn_wrong(VALID), "en", "The number has a typo: check the digits against your invoice."),
        ("40000000abc00017", "ru", "Номер счёта состоит только из цифр 0–9."),
        ("٤٠٠٠٠٠٠٠٠٠٠٠٠٠١٧", "ky", "Эсептин номери 0–9 сандарынан гана турат."),
        ("１２３４５６７８９０１２３４５６", "en", "An invoice number has digits 0–9 only."),
    ],
)
def test_a_mistyped_number_is_answered_next_to_the_field(
    site: Site, typed: str, language: str, said: str
) -> None:
    page = site.status(typed, lang=language)
    assert page.status_code == 422
    assert field_error(page.text) == said
    assert f'value="{typed}"' in page.text  # typed again, to correct it
    assert 'data-stage="' not in page.text


def test_an_unknown_number_is_not_found_and_nothing_more(site: Site) -> None:
    site.invoice()  # another invoice exists: nothing about it is hinted at
    body = "400000000000999"
    unknown = body + luhn_check_digit(body)
    page = site.status(unknown)
    assert page.status_code == 404
    assert field_error(page.text) == "Счёт с таким номером не найден."
    assert 'data-stage="' not in page.text and "сом" not in page.text
    english = site.status(unknown, lang="en")
    assert field_error(english.text) == "No invoice with this number was found."


def test_hostile_input_is_refused_cleanly(site: Site) -> None:
    nul = site.client.get("/status?invoice=4000%00000000000017")
    assert nul.status_code == 400
    assert field_error(nul.text) == "Номер счёта состоит только из цифр 0–9."
    assert "\x00" not in nul.text
    assert site.client.get("/status?x%00=1").status_code == 400

    huge = "4" * 2048
    page = site.status(huge)
    assert page.status_code == 422
    assert field_error(page.text) == "В номере счёта 16 цифр, а введено 2048 цифр."
    assert huge not in page.text and 'value=""' in page.text  # not echoed back
    letters = site.status("<script>" * 256)
    assert letters.status_code == 422 and "<script>" not in letters.text

    invoice = site.invoice()
    quoted = site.status(invoice.number + '"><b>')
    assert quoted.status_code == 422 and "<b>" not in quoted.text


def test_a_database_out_of_reach_is_retry_later(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(orders, "progress", locked)
    page = site.status(VALID)
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert 'data-status="unavailable"' in page.text
