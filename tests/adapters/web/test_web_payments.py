"""The back office's payments pages: the list with its filters and keyset pages, one
payment with its postings and logged requests, the receipt PDF, reversal by those whose
role may reverse (audited, refused for the rest), and the exports behind the list."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.factories import Gateway, add_customer, add_invoice, new_txn_id
from tolom.billing import invoices, orders
from tolom.db.schema import audit_log, payments, signature_orders
from tolom.money import format_amount
from tolom.web import payments as payment_pages


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def _status(engine: Any, payment_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(select(payments.c.status).where(payments.c.id == payment_id)).scalar_one()
        )


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _pay(gateway: Gateway, service: str, account: str, amount: str, **extra: str) -> int:
    params = {
        "command": "pay",
        "txn_id": extra.pop("txn_id", new_txn_id()),
        "txn_date": extra.pop("txn_date", "20261121143005"),
        "account": account,
        "sum": amount,
        **extra,
    }
    answer = gateway.call(service, params)
    assert answer["result"] == 0, answer
    return int(answer["prv_txn"])


def test_the_list_filters_searches_and_pages(web: Web, gateway: Gateway) -> None:
    inn, other = add_customer(web.engine), add_customer(web.engine, name="ОсОО «Другой»")
    first = _pay(gateway, "sochi", inn, "10.00", txn_id="5001", txn_date="20261119100000")
    second = _pay(gateway, "sochi", other, "20.00", txn_id="777", txn_date="20261120100000")
    invoice = add_invoice(web.engine)
    third = _pay(gateway, "eds", invoice.number, format_amount(invoice.total), txn_id="5003")
    browser = web.signed_in()

    page = browser.get("/payments")
    assert page.status_code == 200 and page_of(page) == "payments"
    assert _ids(page.text) == [third, second, first]  # newest first
    assert 'href="/payments">Платежи</a>' in page.text.replace(' aria-current="page"', "")
    assert "10,00\u00a0сом" in page.text and 'for="f-q"' in page.text

    # One search box: an INN, an invoice number, a txn_id, a receipt number.
    assert _ids(browser.get("/payments", params={"q": inn}).text) == [first]
    assert _ids(browser.get("/payments", params={"q": invoice.number}).text) == [third]
    assert _ids(browser.get("/payments", params={"q": "777"}).text) == [second]
    assert _ids(browser.get("/payments", params={"q": str(first)}).text) == [first]
    assert _ids(browser.get("/payments", params={"service": "eds"}).text) == [third]
    assert _ids(browser.get("/payments", params={"agent": "optima"}).text) == [third, second, first]
    days = {"from": "2026-11-20", "to": "2026-11-20"}
    assert _ids(browser.get("/payments", params=days).text) == [second]
    empty = browser.get("/payments", params={"status": "reversed"})
    assert _ids(empty.text) == [] and text_of(empty.text, "payments-empty")
    bad = browser.get("/payments", params={"from": "вчера"})
    assert bad.status_code == 400

    # Keyset pages: the "Дальше" link carries the filter and the cursor.
    original = payment_pages.PAGE_SIZE
    payment_pages.PAGE_SIZE = 2
    try:
        page_one = browser.get("/payments", params={"agent": "optima"})
        assert _ids(page_one.text) == [third, second]
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', page_one.text)[1])
        assert "agent=optima" in link and f"before={second}" in link
        page_two = browser.get(link)
        assert _ids(page_two.text) == [first] and 'id="next-page"' not in page_two.text
    finally:
        payment_pages.PAGE_SIZE = original


def test_one_payment_with_postings_requests_and_receipt(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    number = _pay(gateway, "sochi", inn, "1510.00", comment="<script>alert(1)</script>")
    browser = web.signed_in()
    page = browser.get(f"/payments/{number}")
    assert page.status_code == 200 and page_of(page) == "payments-one"
    html = page.text
    assert text_of(html, "f-account") == inn
    assert "1\u00a0510,00\u00a0сом" in html
    assert 'id="postings"' in html and html.count("<tr>") >= 2
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<pre class="raw">' in html and "txn_id=" in html
    assert 'id="receipt-link" href="http' in html
    assert 'id="reverse"' not in html  # an operator may not reverse
    assert browser.get("/payments/999999").status_code == 404
    assert browser.get("/payments/abc").status_code == 404

    pdf = browser.get(f"/payments/{number}/receipt.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert f"receipt-{number}.pdf" in pdf.headers["content-disposition"]
    with web.engine.connect() as conn:
        actors = set(conn.execute(select(audit_log.c.actor)).scalars())
    assert "user:aida" in actors  # the receipt link was made as the user


def test_the_payment_page_names_and_links_the_customer(web: Web, gateway: Gateway) -> None:
    """A top-up and an invoice of a registered customer name them, linked to their card; an
    invoice made out to a mere payer name names nobody."""
    inn = add_customer(web.engine, name="ОсОО «Ромашка & Ко»")
    top_up = _pay(gateway, "sochi", inn, "1510.00")
    with web.engine.begin() as conn:
        registered = invoices.create(
            conn,
            items=[("eds-head", 1)],
            payer_name="ОсОО «Ромашка & Ко»",
            inn=inn,
            validity_days=30,
        )
    by_invoice = _pay(gateway, "eds", registered.number, format_amount(registered.total))
    anonymous = add_invoice(web.engine)
    by_payer = _pay(gateway, "eds", anonymous.number, format_amount(anonymous.total))
    browser = web.signed_in()
    for number in (top_up, by_invoice):
        html = browser.get(f"/payments/{number}").text
        shown = text_of(html, "f-customer")
        assert f'<a href="/customers/{inn}">' in shown, shown
        assert shown.endswith("ОсОО «Ромашка &amp; Ко»")  # escaped like every name
        assert browser.get(f"/customers/{inn}").status_code == 200
    assert 'id="f-customer"' not in browser.get(f"/payments/{by_payer}").text


def test_an_accountant_reverses_with_a_reason(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    number = _pay(gateway, "sochi", inn, "70.00")
    browser = _staff(web, "accountant")
    page = browser.get(f"/payments/{number}")
    assert 'id="reverse"' in page.text and '<label for="reason">' in page.text
    csrf = csrf_in(page.text)

    no_reason = browser.post(f"/payments/{number}/reverse", data={"csrf": csrf, "reason": "  "})
    assert no_reason.status_code == 409
    assert text_of(no_reason.text, "reverse-error") == "Укажите причину отмены."
    assert _status(web.engine, number) == "accepted"

    forged = browser.post(f"/payments/{number}/reverse", data={"csrf": "x", "reason": "ошибка"})
    assert forged.status_code == 403 and page_of(forged) == "csrf"
    assert _status(web.engine, number) == "accepted"

    done = browser.post(
        f"/payments/{number}/reverse", data={"csrf": csrf, "reason": "ошибка агента"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/payments/{number}?reversed=1"
    assert _status(web.engine, number) == "reversed"
    shown = browser.get(done.headers["location"]).text
    assert text_of(shown, "payment-reversed") == "Платёж отменён."
    assert text_of(shown, "reversal-reason") == "ошибка агента"
    assert text_of(shown, "reversed-by") == "user:accountant"
    assert 'id="reverse"' not in shown
    with web.engine.connect() as conn:
        line = conn.execute(select(audit_log).where(audit_log.c.action == "payment.reverse")).one()
    assert line.actor == "user:accountant" and line.object_id == str(number)

    again = browser.post(f"/payments/{number}/reverse", data={"csrf": csrf, "reason": "ещё раз"})
    assert again.status_code == 409
    assert text_of(again.text, "reverse-error") == "Платёж уже был отменён раньше."
    assert audit_actions(web.engine).count("payment.reverse") == 1


def test_operators_and_auditors_may_not_reverse(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    number = _pay(gateway, "sochi", inn, "70.00")
    for role in ("operator", "auditor"):
        browser = _staff(web, role)
        page = browser.get(f"/payments/{number}")
        assert page.status_code == 200 and 'id="reverse"' not in page.text
        refused = browser.post(
            f"/payments/{number}/reverse", data={"csrf": csrf_in(page.text), "reason": "ошибка"}
        )
        assert refused.status_code == 403 and page_of(refused) == "forbidden"
    assert _status(web.engine, number) == "accepted"
    assert "payment.reverse" not in audit_actions(web.engine)


def test_a_reversal_refused_by_the_core_shows_why(web: Web, gateway: Gateway) -> None:
    invoice = add_invoice(web.engine)
    number = _pay(gateway, "eds", invoice.number, format_amount(invoice.total))
    with web.engine.begin() as conn:
        order_id = conn.execute(select(signature_orders.c.id)).scalars().first()
        assert order_id is not None
        orders.start(conn, order_id)
    browser = _staff(web, "accountant")
    csrf = csrf_in(browser.get(f"/payments/{number}").text)
    refused = browser.post(f"/payments/{number}/reverse", data={"csrf": csrf, "reason": "ошибка"})
    assert refused.status_code == 409
    assert text_of(refused.text, "reverse-error").startswith("Платёж не отменён")
    assert _status(web.engine, number) == "accepted"


def test_exports_follow_the_filter_and_the_role(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    number = _pay(gateway, "sochi", inn, "15.10")
    operator = web.signed_in()
    assert 'id="export-csv"' not in operator.get("/payments").text
    assert operator.get("/payments/export.csv").status_code == 403
    accountant = _staff(web, "accountant")
    assert 'id="export-csv"' in accountant.get("/payments").text
    csv_file = accountant.get("/payments/export.csv", params={"q": inn})
    assert csv_file.status_code == 200 and csv_file.headers["content-type"].startswith("text/csv")
    text = csv_file.content.decode("utf-8-sig")
    assert f"{number};" in text and "15,10" in text
    xlsx = accountant.get("/payments/export.xlsx", params={"from": "2026-11-01"})
    assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")
    assert 'filename="payments-from-2026-11-01.xlsx"' in xlsx.headers["content-disposition"]
