"""The back office's invoices pages: the list with its filters and keyset pages, a new
invoice from the catalogue (the core's validation, said next to each field), one invoice
with its payments and signature orders, its PDF (read back with pypdf), cancellation with
an optional reason (audited like the API's), and who may do what."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.factories import Gateway, add_customer, add_invoice, new_inn
from tolom import audit
from tolom.backoffice import users
from tolom.backoffice.users import Session
from tolom.billing import invoices, orders
from tolom.db.schema import invoices as invoices_table
from tolom.documents import instructions, invoice_pdf
from tolom.formatting import ZONE
from tolom.payments import records
from tolom.texts import texts
from tolom.web import invoices as invoice_pages
from tolom.web import pages
from tolom.web.i18n import translator

RU = texts("ru")
ROLES = ("admin", "operator", "accountant", "auditor")


def _numbers(html: str) -> list[str]:
    return re.findall(r'<tr data-number="(\d{16})"', html)


def _staff(web: Web, role: str) -> TestClient:
    if role == "operator":
        return web.signed_in()  # aida, the fixture's operator
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _count(web: Web, table: Any = invoices_table) -> int:
    with web.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _stored(web: Web, number: str) -> invoices.Invoice:
    with web.engine.connect() as conn:
        found = invoices.get(conn, number)
    assert found is not None
    return found


def _trail(web: Web, number: str) -> list[dict[str, Any]]:
    with web.engine.connect() as conn:
        return list(reversed(audit.entries(conn, "invoice", number)))


def _form(browser: TestClient, **params: str) -> str:
    page = browser.get("/invoices/new", params=params)
    assert page.status_code == 200, page.text
    assert page_of(page) == "invoices-new"
    return page.text


def _issue(browser: TestClient, data: dict[str, str]) -> Any:
    html = _form(browser)
    return browser.post("/invoices/new", data={"csrf": csrf_in(html), **data})


def _created_number(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/invoices/(\d{16})\?created=1", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def _error_next_to(html: str, field: str) -> str:
    """The message shown next to a field (its `<p id="FIELD-error" role="alert">`)."""
    found = re.search(
        rf'<p id="{re.escape(field)}-error" class="field-error" role="alert">(.*?)</p>', html
    )
    assert found is not None, f"no error next to {field}"
    return unescape(found.group(1))


def _value_of(html: str, field: str) -> str:
    found = re.search(rf'<input id="{re.escape(field)}" [^>]*value="([^"]*)"', html)
    assert found is not None, f"no input {field}"
    return unescape(found.group(1))


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


# --- the list -----------------------------------------------------------------------------


def test_the_list_filters_and_pages(web: Web, gateway: Gateway) -> None:
    inn = new_inn()
    with web.engine.begin() as conn:
        mine = [
            invoices.create(
                conn, items=[("eds-head", 1)], payer_name="ОсОО «Мой»", inn=inn, validity_days=30
            )
            for _ in range(3)
        ]
    paid = add_invoice(web.engine)
    assert gateway.pay("eds", paid.number, "1510.00")["result"] == 0
    cancelled = add_invoice(web.engine)
    with web.engine.begin() as conn:
        invoices.cancel(conn, cancelled.number)
    expired = add_invoice(web.engine, validity_days=1, now=datetime.now(UTC) - timedelta(days=2))
    everything = [expired, cancelled, paid, *reversed(mine)]
    browser = web.signed_in()

    page = browser.get("/invoices")
    assert page.status_code == 200 and page_of(page) == "invoices"
    assert _numbers(page.text) == [i.number for i in everything]  # newest first
    assert 'id="new-invoice" href="/invoices/new"' in page.text  # an operator may issue
    assert "1\u00a0510,00\u00a0сом" in page.text
    assert f'data-number="{expired.number}" data-state="expired"' in page.text
    assert RU("invoices.state.expired") in page.text
    for label in ('for="f-q"', 'for="f-inn"', 'for="f-status"', "<caption>"):
        assert label in page.text

    def numbers(**params: str) -> list[str]:
        answer = browser.get("/invoices", params=params)
        assert answer.status_code == 200, answer.text
        return _numbers(answer.text)

    assert numbers(inn=inn) == [i.number for i in reversed(mine)]
    assert numbers(inn=f" {inn[:7]} {inn[7:]} ") == [i.number for i in reversed(mine)]
    assert numbers(status="paid") == [paid.number]
    assert numbers(status="cancelled") == [cancelled.number]
    assert numbers(status="expired") == [expired.number]
    assert numbers(status="open") == [i.number for i in reversed(mine)]
    assert numbers(q=paid.number) == [paid.number]
    spaced = " ".join(paid.number[i : i + 4] for i in range(0, 16, 4))
    assert numbers(q=spaced) == [paid.number]  # as it is printed, in groups of four
    assert numbers(q=paid.number, status="open") == []
    empty = browser.get("/invoices", params={"q": "4000000000000002"})
    assert text_of(empty.text, "invoices-empty") == RU("invoices.empty")

    # A typed value that cannot be a filter: the form says so next to the field.
    short = browser.get("/invoices", params={"q": "12345"})
    assert short.status_code == 400 and _error_next_to(short.text, "f-q") == RU(
        "invoices.bad_number"
    )
    assert _value_of(short.text, "f-q") == "12345"
    bad_inn = browser.get("/invoices", params={"inn": "01 2"})
    assert bad_inn.status_code == 400
    assert _error_next_to(bad_inn.text, "f-inn") == RU("invoices.bad_inn")
    # Values no form offers: a page that says the request was not understood.
    for params in ({"status": "lost"}, {"before": "abc"}, {"q": "1" * 65}, {"inn": "\x00"}):
        answer = browser.get("/invoices", params=params)
        assert answer.status_code == 400 and page_of(answer) == "bad-request", params

    # Keyset pages: "Дальше" carries the filter and the cursor.
    original = invoice_pages.PAGE_SIZE
    invoice_pages.PAGE_SIZE = 2
    try:
        first = browser.get("/invoices", params={"status": "open"})
        assert _numbers(first.text) == [mine[2].number, mine[1].number]
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', first.text)[1])
        assert "status=open" in link and "before=" in link
        second = browser.get(link)
        assert _numbers(second.text) == [mine[0].number]
        assert 'id="next-page"' not in second.text and 'id="first-page"' in second.text
        seen, url = [], "/invoices"
        while url:
            answer = browser.get(url)
            seen += _numbers(answer.text)
            found = re.search(r'id="next-page" rel="next" href="([^"]+)"', answer.text)
            url = unescape(found[1]) if found else ""
        assert seen == [i.number for i in everything]
    finally:
        invoice_pages.PAGE_SIZE = original


# --- a new invoice --------------------------------------------------------------------------


def test_an_operator_issues_an_invoice_from_the_catalogue(web: Web) -> None:
    inn = add_customer(web.engine, name="ОсОО «Ромашка»")
    browser = web.signed_in()
    html = _form(browser, inn=inn)
    assert _value_of(html, "inn") == inn and _value_of(html, "payer_name") == "ОсОО «Ромашка»"
    assert '<label for="qty-eds-head">' in html and _value_of(html, "qty-eds-head") == "0"
    assert 'id="qty-rutoken-device"' not in html  # no price: no quantity to type
    assert RU("invoices.new.no_price") in html
    assert '<label for="due">' in html

    answer = browser.post(
        "/invoices/new",
        data={
            "csrf": csrf_in(html),
            "inn": inn,
            "payer_name": "ОсОО «Ромашка»",
            "qty-eds-head": "1",
            "qty-eds-accountant": "2",
            "qty-eds-complex-5": "0",
            "qty-eds-rutoken": "",
            "due": "",
        },
    )
    number = _created_number(answer)
    invoice = _stored(web, number)
    assert invoice.inn == inn and invoice.payer_name == "ОсОО «Ромашка»"
    assert invoice.total == 435_000 and invoice.status == "open"
    assert [(x.product_code, x.quantity, x.amount) for x in invoice.lines] == [
        ("eds-accountant", 2, 284_000),
        ("eds-head", 1, 151_000),
    ]
    assert invoice.expires_at - invoice.created_at == timedelta(
        days=web.settings.invoice_validity_days
    )
    # The same audit line as the API's POST /api/v1/invoices, as the user, with the address.
    [line] = _trail(web, number)
    assert line["action"] == "invoice.create" and line["actor"] == "user:aida"
    assert line["address"] == "testclient"
    assert line["after"] == invoices.audit_view(invoice, invoice.created_at)
    assert line["after"]["total"] == "4350.00"

    page = browser.get(answer.headers["location"])
    assert page.status_code == 200 and page_of(page) == "invoices-one"
    html = page.text
    assert text_of(html, "invoice-created") == RU("invoice.created_now")
    assert text_of(html, "f-number") == number
    assert text_of(html, "f-state") == RU("invoices.state.open")
    assert text_of(html, "f-total") == "4\u00a0350,00\u00a0сом"
    assert f'<a id="customer-link" href="/customers/{inn}">ОсОО «Ромашка»</a>' in unescape(html)
    assert text_of(html, "lines-total") == "4\u00a0350,00\u00a0сом"
    assert "2\u00a0840,00\u00a0сом" in html
    assert f'id="invoice-pdf" href="/invoices/{number}.pdf"' in html
    assert text_of(html, "no-payments") == RU("invoice.no_payments")
    assert text_of(html, "no-orders") == RU("invoice.no_orders")
    assert f'id="cancel-link" href="/invoices/{number}/cancel#cancel-heading"' in html


def test_the_payer_defaults_to_the_customer_of_the_inn(web: Web) -> None:
    inn = add_customer(web.engine, name="ИП Асанов")
    browser = web.signed_in()
    number = _created_number(
        _issue(browser, {"inn": f"{inn[:4]} {inn[4:]}", "payer_name": " ", "qty-eds-head": "1"})
    )
    invoice = _stored(web, number)
    assert invoice.inn == inn and invoice.payer_name == "ИП Асанов"


def test_an_inn_of_no_customer_needs_a_payer_and_then_is_a_new_customer(web: Web) -> None:
    inn = new_inn()
    browser = web.signed_in()
    refused = _issue(browser, {"inn": inn, "payer_name": "", "qty-eds-head": "1"})
    assert refused.status_code == 422 and page_of(refused) == "invoices-new"
    assert _error_next_to(refused.text, "payer_name") == RU(
        "invoices.error.payer_unknown_inn"
    ).format(inn=inn)
    assert _value_of(refused.text, "inn") == inn and _value_of(refused.text, "qty-eds-head") == "1"
    assert _count(web) == 0 and audit_actions(web.engine) == ["user.login"]

    # The core issues invoices to new customers (PRODUCT.md: an office's new customer).
    number = _created_number(
        _issue(browser, {"inn": inn, "payer_name": "ОсОО «Новый»", "qty-eds-head": "1"})
    )
    page = browser.get(f"/invoices/{number}").text
    assert 'id="customer-link"' not in page
    assert RU("invoice.not_a_customer") in page


def test_a_blocked_customer_gets_an_invoice_and_the_page_says_blocked(web: Web) -> None:
    # The core does not refuse a blocked customer's invoice (agents take it: an invoice is
    # paid by its number); the page shows the customer's state.
    inn = add_customer(web.engine, name="ОсОО «Закрыто»", status="blocked")
    browser = web.signed_in()
    number = _created_number(_issue(browser, {"inn": inn, "qty-eds-head": "1"}))
    page = browser.get(f"/invoices/{number}").text
    assert 'id="customer-blocked"' in page and RU("invoice.customer_blocked") in page


def test_a_due_date_sets_when_the_invoice_expires(web: Web) -> None:
    browser = web.signed_in()
    today = web.clock().astimezone(ZONE).date()
    due = today + timedelta(days=5)
    number = _created_number(
        _issue(browser, {"qty-eds-head": "1", "payer_name": "А", "due": due.isoformat()})
    )
    invoice = _stored(web, number)
    assert invoice.expires_at.astimezone(ZONE).date() == due
    assert invoice.expires_at - invoice.created_at == timedelta(days=5)


@pytest.mark.parametrize(
    ("data", "field", "key", "values"),
    [
        ({"qty-eds-head": "0"}, "items", "invoices.error.no_items", {}),
        ({}, "items", "invoices.error.no_items", {}),
        ({"qty-eds-head": "1001"}, "qty-eds-head", "invoices.error.quantity", {"max": 1000}),
        (
            {"qty-eds-head": "99999999999999999999"},
            "qty-eds-head",
            "invoices.error.quantity",
            {"max": 1000},
        ),
        ({"qty-eds-head": "-1"}, "qty-eds-head", "invoices.error.quantity", {"max": 1000}),
        ({"qty-eds-head": "1.5"}, "qty-eds-head", "invoices.error.quantity", {"max": 1000}),
        ({"qty-eds-head": "два"}, "qty-eds-head", "invoices.error.quantity", {"max": 1000}),
        ({"qty-eds-head": "١"}, "qty-eds-head", "invoices.error.quantity", {"max": 1000}),
        ({"qty-eds-head": "1", "inn": "12345"}, "inn", "invoices.error.inn", {}),
        ({"qty-eds-head": "1", "inn": "0190420231042x"}, "inn", "invoices.error.inn", {}),
        ({"qty-eds-head": "1", "payer_name": ""}, "payer_name", "invoices.error.payer", {}),
        (
            {"qty-eds-head": "1", "payer_name": "Я" * 301},
            "payer_name",
            "invoices.error.payer_too_long",
            {"max": 300},
        ),
        ({"qty-eds-head": "1", "due": "вчера"}, "due", "invoices.error.due", {"days": 366}),
        ({"qty-eds-head": "1", "due": "2020-01-01"}, "due", "invoices.error.due", {"days": 366}),
        ({"qty-eds-head": "1", "due": "2999-01-01"}, "due", "invoices.error.due", {"days": 366}),
        (
            {"qty-rutoken-device": "1"},
            "qty-rutoken-device",
            "invoices.error.no_price",
            {"product": "rutoken-device"},
        ),
        ({"qty-nope": "1"}, "qty-nope", "invoices.error.unknown_product", {"product": "nope"}),
    ],
)
def test_bad_input_re_shows_the_form_and_issues_nothing(
    web: Web, data: dict[str, str], field: str, key: str, values: dict[str, Any]
) -> None:
    browser = web.signed_in()
    data = {"payer_name": "ОсОО «Тест»", **data}
    answer = _issue(browser, data)
    assert answer.status_code == 422 and page_of(answer) == "invoices-new"
    message = RU.plural(key, 366, **values) if key == "invoices.error.due" else RU(key, **values)
    html = answer.text
    assert text_of(html, "invoice-errors").startswith("<p>" + RU("invoices.new.errors"))
    if field.startswith("qty-") and f'id="{field}"' not in html:
        assert message in unescape(html)  # a product without an input: said above the form
    else:
        assert _error_next_to(html, field) == message
        assert 'aria-invalid="true"' in html
    # What was typed comes back.
    if "payer_name" in data and len(data["payer_name"]) <= 300:
        assert _value_of(html, "payer_name") == data["payer_name"]
    if field == "qty-eds-head":
        assert _value_of(html, "qty-eds-head") == data["qty-eds-head"]
    assert _count(web) == 0 and audit_actions(web.engine) == ["user.login"]


def test_hostile_text_is_shown_as_text(web: Web) -> None:
    browser = web.signed_in()
    payer = '<script>alert("x")</script> & «кавычки» \' "'
    number = _created_number(_issue(browser, {"payer_name": payer, "qty-eds-head": "1"}))
    assert _stored(web, number).payer_name == payer.strip()
    page = browser.get(f"/invoices/{number}").text
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert unescape(text_of(page, "f-payer")) == payer.strip()
    # Refused hostile input comes back escaped, too.
    refused = _issue(browser, {"payer_name": payer, "inn": "<b>1</b>", "qty-eds-head": "1"})
    assert refused.status_code == 422 and "<b>1</b>" not in refused.text
    assert _value_of(refused.text, "inn") == "<b>1</b>"
    # U+0000 and over-long fields are nothing a form sends: refused, nothing written.
    for data in ({"payer_name": "a\x00b"}, {"qty-eds-head\x00": "1"}, {"payer_name": "x" * 5000}):
        answer = _issue(browser, {"qty-eds-head": "1", "payer_name": "А", **data})
        assert answer.status_code == 400 and page_of(answer) == "bad-request", data
    assert _count(web) == 1


# --- one invoice, its PDF -------------------------------------------------------------------


def test_the_pdf_is_the_invoice_with_the_payment_instructions(web: Web) -> None:
    invoice = add_invoice(web.engine, [("eds-head", 1), ("eds-accountant", 2)])
    browser = _staff(web, "auditor")  # everyone may read
    answer = browser.get(f"/invoices/{invoice.number}.pdf")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="invoice-{invoice.number}.pdf"'
    )
    assert answer.headers["cache-control"] == "no-store"
    assert answer.content.startswith(b"%PDF")
    text = pdf_text(answer.content)
    for expected in (
        invoice.number,
        "СЧЁТ НА ОПЛАТУ",
        invoice.payer_name,
        "Итого к оплате: 4 350,00 сом",
        "QR-код: номер счёта",
        "42151410",
        f"«Оплата по счёту № {invoice.number}»",
        web.settings.company_name,
    ):
        assert expected in text, expected
    for channel in instructions.load()["eds"].channels:
        assert channel.title in text, channel.title
    # The document the API sends (`invoice_pdf.render`); only the moment it was made differs.
    expected = pdf_text(invoice_pdf.render(_stored(web, invoice.number), web.settings))
    assert text.split("Счёт сформирован")[0] == expected.split("Счёт сформирован")[0]


def test_unknown_and_malformed_numbers_are_404(web: Web) -> None:
    browser = web.signed_in()
    csrf = csrf_in(browser.get("/invoices").text)
    for number in ("4000000000000002", "4000000000000003", "abc", "1" * 200, "%00"):
        for path in (
            f"/invoices/{number}",
            f"/invoices/{number}.pdf",
            f"/invoices/{number}/cancel",
        ):
            answer = browser.get(path)
            assert answer.status_code == 404 and page_of(answer) == "not-found", path
        refused = browser.post(f"/invoices/{number}/cancel", data={"csrf": csrf})
        assert refused.status_code == 404, number
    assert RU("invoice.not_found.text") in browser.get("/invoices/4000000000000002").text
    assert audit_actions(web.engine) == ["user.login"]


def test_the_page_shows_the_payments_and_the_orders_of_a_paid_invoice(
    web: Web, gateway: Gateway
) -> None:
    invoice = add_invoice(web.engine, [("eds-head", 2)])
    answer = gateway.pay("eds", invoice.number, "3020.00")
    assert answer["result"] == 0
    payment = int(answer["prv_txn"])
    browser = _staff(web, "accountant")
    html = browser.get(f"/invoices/{invoice.number}").text
    assert text_of(html, "f-state") == RU("invoices.state.paid")
    assert f'<a href="/payments/{payment}">№ {payment}</a>' in html
    assert f'<tr data-id="{payment}" data-status="accepted">' in html
    assert f'<a href="/payments/{payment}">{payment}</a>' in html
    with web.engine.connect() as conn:
        made = orders.list_orders(conn, invoice_number=invoice.number)
    assert len(made) == 2
    for order in made:
        assert f'<a href="/orders/{order.id}">{order.id}</a>' in html
    assert RU("invoice.order_status.paid") in html
    assert 'id="cancel-link"' not in html  # paid, and an accountant may not anyway


# --- cancellation -------------------------------------------------------------------------


def test_an_operator_cancels_with_a_reason_after_confirming(web: Web, gateway: Gateway) -> None:
    invoice = add_invoice(web.engine)
    browser = web.signed_in()
    page = browser.get(f"/invoices/{invoice.number}")
    assert 'id="cancel-link"' in page.text and 'id="cancel"' not in page.text
    confirm = browser.get(f"/invoices/{invoice.number}/cancel")
    assert confirm.status_code == 200 and page_of(confirm) == "invoices-one"
    html = confirm.text
    assert 'id="cancel"' in html and '<label for="reason">' in html
    assert invoice.number in text_of(html, "cancel-question")
    assert 'id="cancel-keep"' in html
    assert _stored(web, invoice.number).status == "open"  # asking changes nothing

    done = browser.post(
        f"/invoices/{invoice.number}/cancel",
        data={"csrf": csrf_in(html), "reason": "  клиент передумал <b>  "},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/invoices/{invoice.number}?cancelled=1"
    stored = _stored(web, invoice.number)
    assert stored.status == "cancelled" and stored.cancelled_at is not None
    assert gateway.check("eds", invoice.number)["result"] == 79
    [line] = _trail(web, invoice.number)
    assert (line["action"], line["actor"], line["before"], line["after"]) == (
        "invoice.cancel",
        "user:aida",
        {"status": "open"},
        {"status": "cancelled", "reason": "клиент передумал <b>"},
    )
    assert line["address"] == "testclient"

    shown = browser.get(done.headers["location"]).text
    assert text_of(shown, "invoice-cancelled") == RU("invoice.cancelled_now")
    assert text_of(shown, "f-state") == RU("invoices.state.cancelled")
    assert text_of(shown, "f-cancelled-by") == "user:aida"
    assert unescape(text_of(shown, "f-cancel-reason")) == "клиент передумал <b>"
    assert "<b>" not in shown.split('id="f-cancel-reason"')[1][:60]
    assert 'id="cancel-link"' not in shown

    # Again: nothing to cancel, nothing written; the confirmation leads back to the page.
    again = browser.post(f"/invoices/{invoice.number}/cancel", data={"csrf": csrf_in(shown)})
    assert again.status_code == 409
    assert text_of(again.text, "cancel-error") == RU("invoice.refused.not_open")
    assert browser.get(f"/invoices/{invoice.number}/cancel").status_code == 303
    assert len(_trail(web, invoice.number)) == 1

    # The PDF of a cancelled invoice is stamped instead of carrying the instructions.
    text = pdf_text(browser.get(f"/invoices/{invoice.number}.pdf").content)
    assert "АННУЛИРОВАН" in text and invoice.number in text


def test_a_cancellation_without_a_reason_writes_the_apis_line(web: Web) -> None:
    invoice = add_invoice(web.engine)
    browser = web.signed_in()
    html = browser.get(f"/invoices/{invoice.number}/cancel").text
    done = browser.post(
        f"/invoices/{invoice.number}/cancel", data={"csrf": csrf_in(html), "reason": ""}
    )
    assert done.status_code == 303
    [line] = _trail(web, invoice.number)
    assert (line["before"], line["after"]) == ({"status": "open"}, {"status": "cancelled"})


def test_an_over_long_reason_is_refused_and_nothing_changes(web: Web) -> None:
    invoice = add_invoice(web.engine)
    browser = web.signed_in()
    html = browser.get(f"/invoices/{invoice.number}/cancel").text
    for reason in ("я" * 501,):
        answer = browser.post(
            f"/invoices/{invoice.number}/cancel", data={"csrf": csrf_in(html), "reason": reason}
        )
        assert answer.status_code == 422
        assert text_of(answer.text, "cancel-error") == RU("invoice.refused.reason").format(max=500)
        assert 'id="cancel"' in answer.text  # the confirmation again
    assert _stored(web, invoice.number).status == "open" and _trail(web, invoice.number) == []


def test_a_paid_invoice_cannot_be_cancelled(web: Web, gateway: Gateway) -> None:
    invoice = add_invoice(web.engine)
    browser = web.signed_in()
    confirm = browser.get(f"/invoices/{invoice.number}/cancel").text  # still open here
    assert gateway.pay("eds", invoice.number, "1510.00")["result"] == 0  # paid meanwhile
    answer = browser.post(f"/invoices/{invoice.number}/cancel", data={"csrf": csrf_in(confirm)})
    assert answer.status_code == 409
    stored = _stored(web, invoice.number)
    assert text_of(answer.text, "cancel-error") == RU("invoice.refused.paid").format(
        payment=stored.payment_id
    )
    assert 'id="cancel"' not in answer.text and 'id="cancel-link"' not in answer.text
    assert stored.status == "paid" and _trail(web, invoice.number) == []
    # Once paid, the page offers no cancellation and the confirmation leads back.
    assert 'id="cancel-link"' not in browser.get(f"/invoices/{invoice.number}").text
    assert browser.get(f"/invoices/{invoice.number}/cancel").status_code == 303


# --- who may, CSRF --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_and_only_an_operator_changes(web: Web, role: str) -> None:
    invoice = add_invoice(web.engine)
    browser = _staff(web, role)
    may = role == "operator"
    listing = browser.get("/invoices")
    assert listing.status_code == 200 and ('id="new-invoice"' in listing.text) is may
    page = browser.get(f"/invoices/{invoice.number}")
    assert page.status_code == 200 and ('id="cancel-link"' in page.text) is may
    assert browser.get(f"/invoices/{invoice.number}.pdf").content.startswith(b"%PDF")
    csrf = csrf_in(page.text)

    form = browser.get("/invoices/new")
    confirm = browser.get(f"/invoices/{invoice.number}/cancel")
    created = browser.post(
        "/invoices/new", data={"csrf": csrf, "payer_name": "А", "qty-eds-head": "1"}
    )
    cancelled = browser.post(f"/invoices/{invoice.number}/cancel", data={"csrf": csrf})
    if may:
        assert form.status_code == 200 and confirm.status_code == 200
        assert created.status_code == 303 and cancelled.status_code == 303
        assert _count(web) == 2 and _stored(web, invoice.number).status == "cancelled"
        return
    for answer in (form, confirm, created, cancelled):
        assert answer.status_code == 403 and page_of(answer) == "forbidden"
    assert _count(web) == 1 and _stored(web, invoice.number).status == "open"
    assert audit_actions(web.engine) == ["user.login"]


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_posts_without_the_sessions_token_change_nothing(web: Web, token: str | None) -> None:
    invoice = add_invoice(web.engine)
    browser = web.signed_in()
    extra = {} if token is None else {"csrf": token}
    created = browser.post("/invoices/new", data={**extra, "payer_name": "А", "qty-eds-head": "1"})
    cancelled = browser.post(f"/invoices/{invoice.number}/cancel", data={**extra, "reason": "x"})
    for answer in (created, cancelled):
        assert answer.status_code == 403 and page_of(answer) == "csrf"
    assert _count(web) == 1 and _stored(web, invoice.number).status == "open"
    assert audit_actions(web.engine) == ["user.login"]


def test_a_stranger_is_sent_to_log_in(web: Web) -> None:
    invoice = add_invoice(web.engine)
    browser = web.browser()
    for path in (
        "/invoices",
        "/invoices/new",
        f"/invoices/{invoice.number}",
        f"/invoices/{invoice.number}.pdf",
    ):
        answer = browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    answer = browser.post("/invoices/new", data={"payer_name": "А", "qty-eds-head": "1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert _count(web) == 1


# --- the templates in every language ------------------------------------------------------


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for each invoices template with every branch that shows text (for
    `tests.adapters.web.test_web::_samples`)."""
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    line = invoices.InvoiceLine("eds-head", "Подпись", 2, 151_000, 302_000)
    invoice = invoices.Invoice(
        1,
        "4000000000000002",
        "01904202310427",
        "ОсОО «Тест»",
        302_000,
        "cancelled",
        moment_,
        moment_,
        moment_,
        7,
        (line,),
        moment_,
    )
    from tolom.billing.catalog import Product
    from tolom.billing.customers import Customer

    customer = Customer(1, "01904202310427", "ОсОО «Тест»", "ОсОО", "blocked", 1)
    payment = records.PaymentRecord(
        id=7,
        agent="cash",
        agent_kind="cash_desk",
        txn_id="1",
        service="eds",
        account=invoice.number,
        amount=302_000,
        status="reversed",
        txn_date=moment_,
        txn_date_raw="20261123140000",
        business_date=date(2026, 11, 23),
        created_at=moment_,
        entry_id=1,
        invoice_number=invoice.number,
        reversal=None,
        manual=None,
    )
    order = orders.Order(
        3,
        invoice.number,
        1,
        invoice.inn,
        7,
        "eds-head",
        "signature",
        "Подпись",
        151_000,
        "issued",
        moment_,
        moment_,
        moment_,
        date(2027, 11, 23),
        None,
        None,
        None,
        None,
        None,
    )
    cancellation = {"actor": "user:aida", "after": {"status": "cancelled", "reason": "ошибка"}}
    detail = invoice_pages.Detail(
        invoice, "cancelled", customer, [payment], [order], True, cancellation
    )
    form = invoice_pages.NewForm.model_construct(
        inn="1",
        payer_name="А",
        due="2026-12-01",
        quantities={"eds-head": "x"},
        errors={"inn": "e", "payer_name": "e", "items": "e", "qty-eds-head": "e", "due": "e"},
        summary=["нет"],
    )
    products = [
        Product("eds-head", "Подпись", "signature", 151_000, True),
        Product("rutoken-device", "Носитель", "carrier", None, True),
    ]
    return {
        "web/invoices.html": {
            **common,
            "page": "invoices",
            "form": invoice_pages.ListForm.model_construct(
                q="1", inn="2", status="paid", errors={"q": "e", "inn": "e"}
            ),
            "states": invoices.STATES,
            "rows": [invoice],
            "now": moment_,
            "more": "before=1",
            "first_page": False,
            "filters": "status=paid",
            "may_create": True,
        },
        "web/invoice_new.html": {
            **common,
            "page": "invoices-new",
            "form": form,
            "products": products,
            "max_quantity": 1000,
            "max_payer": 300,
            "validity_days": 30,
            "due_min": "2026-11-24",
            "due_max": "2027-11-24",
        },
        "web/invoice.html": {
            **common,
            "page": "invoices-one",
            "d": detail,
            "may_cancel": True,
            "confirm": True,
            "created_now": True,
            "cancelled_now": True,
            "error": "нет",
            "reason": "r",
            "reason_max": 500,
        },
    }


@pytest.mark.parametrize("language", ["ru", "ky", "en"])
def test_the_invoice_templates_render_in_every_language(language: str) -> None:
    user = users.User(1, "aida", "Аида", "operator", language, True)
    session = Session(user, "csrf-token", datetime(2026, 11, 23, tzinfo=UTC))
    t = translator(language)
    for name, context in template_samples({"session": session, "title": "Tolom"}).items():
        html = pages.render_text(name.removeprefix("web/"), t=t, **context)
        assert f'<html lang="{language}">' in html, name
        for attributes in re.findall(r"<input ([^>]*)>", html):
            if 'type="hidden"' in attributes:
                continue
            input_id = re.search(r'id="([^"]+)"', attributes)
            assert input_id and f'<label for="{input_id.group(1)}">' in html, (name, attributes)
        described = re.findall(r'aria-describedby="([^"]+)"', html)
        for ids in described:
            for target in ids.split():
                assert f'id="{target}"' in html, (name, target)
        assert t.money(302_000) in html or name == "web/invoice_new.html"
