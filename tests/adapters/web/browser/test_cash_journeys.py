"""Journeys at the cash desk in a real browser: an operator takes cash for a customer's
SOCHI balance and prints its receipt; a bank transfer for an invoice, first sent without its
payment order and then with it.

They rely on the cash desk's page contract: `form#cash` (labelled fields, radio buttons for
the channel and the service, buttons «Проверить» and «Принять оплату»), `#cash-check`,
`#cash-errors`, `#e-<field>`, and the receipt page's `#receipt`, `#r-amount`, `#r-heading`,
`#r-payee`, `#receipt-qr svg`, `#receipt-pdf`.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, log_in
from tests.factories import add_customer, add_invoice

NBSP = "\u00a0"


def _open_cash_desk(page: Page) -> None:
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.cash")
    ).click()
    expect(page.locator("main[data-page=cash]")).to_be_visible()


def test_operator_takes_a_cash_payment_and_opens_its_receipt(
    page: Page, shot: Shots, live_server: LiveServer, tmp_path: Path
) -> None:
    inn = add_customer(live_server.engine, name="ОсОО «Касса Браузер»")
    log_in(page, live_server.accounts["operator"])
    _open_cash_desk(page)
    form = page.locator("form#cash")
    expect(form.get_by_label(RU("channel.cash_desk"))).to_be_checked()
    expect(form.get_by_label(RU("service.sochi"))).to_be_checked()
    form.get_by_label(RU("cash.account")).fill(inn)
    form.get_by_label(RU("cash.amount")).fill("1 510,50")
    form.get_by_label(RU("cash.payer")).fill("Асанов Бакыт")
    shot("form-filled")

    # The check step: who the customer is, nothing recorded yet.
    form.get_by_role("button", name=RU("cash.check")).click()
    check = page.locator("#cash-check")
    expect(check).to_contain_text("ОсОО «Касса Браузер»")
    expect(page.locator("form#cash").get_by_label(RU("cash.amount"))).to_have_value("1 510,50")
    shot("checked")

    page.locator("form#cash").get_by_role("button", name=RU("cash.pay")).click()
    expect(page.locator("main[data-page=payments-receipt]")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/payments/\d+/receipt\?recorded=1$"))
    number = re.search(r"/payments/(\d+)/receipt", page.url)
    assert number is not None
    expect(page.locator("#receipt-recorded")).to_have_text(RU("receipt.recorded"))
    expect(page.locator("#r-heading")).to_have_text(f"Квитанция об оплате № {number.group(1)}")
    expect(page.locator("#r-amount")).to_have_text(f"1{NBSP}510,50{NBSP}сом")
    expect(page.locator("#r-payee")).to_have_text("«ДОС ТЭК ГРУПП»")
    expect(page.locator("#r-inn")).to_have_text(inn)
    expect(page.locator("#receipt-qr svg")).to_be_visible()
    expect(page.locator("#print-hint")).to_contain_text("Ctrl+P")
    shot("receipt")

    # Printed: the header, links and hints stay off the paper; the receipt and QR stay on.
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    expect(page.locator("#print-hint")).to_be_hidden()
    expect(page.locator("#receipt-qr svg")).to_be_visible()
    shot("as-printed")
    page.emulate_media(media="screen")

    with page.expect_download() as downloading:
        page.locator("#receipt-pdf").click()
    saved = tmp_path / "receipt.pdf"
    downloading.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")
    assert downloading.value.suggested_filename == f"receipt-{number.group(1)}.pdf"

    # The payment's own page, and the way back to the receipt from there.
    page.locator("#payment-link").click()
    expect(page.locator("main[data-page=payments-one]")).to_be_visible()
    expect(page.locator("#f-account")).to_have_text(inn)
    page.locator("#receipt-page").click()
    expect(page.locator("#r-amount")).to_have_text(f"1{NBSP}510,50{NBSP}сом")
    shot("receipt-again")


def test_operator_records_a_bank_transfer_for_an_invoice_after_a_refusal(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    invoice = add_invoice(live_server.engine, [("eds-head", 2)])
    log_in(page, live_server.accounts["operator"])
    _open_cash_desk(page)
    form = page.locator("form#cash")
    form.get_by_label(RU("channel.bank")).check()
    form.get_by_label(RU("service.eds")).check()
    form.get_by_label(RU("cash.account")).fill(invoice.number)
    form.get_by_role("button", name=RU("cash.check")).click()
    # The check fills in the invoice's total.
    expect(page.locator("#cash-check")).to_contain_text(f"3{NBSP}020,00{NBSP}сом")
    form = page.locator("form#cash")
    expect(form.get_by_label(RU("cash.amount"))).to_have_value(f"3{NBSP}020,00")
    form.get_by_label(RU("cash.payment_code")).select_option("42122900")
    form.get_by_role("button", name=RU("cash.pay")).click()

    # Sent without the payment order's number: refused, next to the field, nothing paid.
    expect(page.locator("#cash-errors")).to_be_visible()
    expect(page.locator("#e-bank_reference")).to_have_text(RU("cash.error.bank_reference_required"))
    shot("refused")
    form = page.locator("form#cash")
    expect(form.get_by_label(RU("cash.payment_code"))).to_have_value("42122900")
    form.get_by_label(RU("cash.bank_reference")).fill("000777")
    form.get_by_role("button", name=RU("cash.pay")).click()

    expect(page.locator("main[data-page=payments-receipt]")).to_be_visible()
    expect(page.locator("#r-invoice")).to_have_text(invoice.number)
    expect(page.locator("#r-channel")).to_have_text(RU("channel.bank"))
    expect(page.locator("#r-payment-code")).to_have_text("42122900")
    expect(page.locator("#r-bank-reference")).to_have_text("№ 000777")
    expect(page.locator("#r-amount")).to_have_text(f"3{NBSP}020,00{NBSP}сом")
    shot("bank-receipt")
