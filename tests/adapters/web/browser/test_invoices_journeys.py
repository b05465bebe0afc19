"""Invoices in a real browser: an operator issues an invoice from the catalogue and
downloads its PDF, and cancels another one after confirming (see conftest.py for the
set-up; words come from the pages' catalogue, the gettext catalogues, `tolom.texts`)."""

from __future__ import annotations

import io
import re

from playwright.sync_api import Page, expect
from pypdf import PdfReader

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import log_in
from tests.factories import add_customer, add_invoice
from tolom.billing import catalog, invoices
from tolom.texts import texts

RU = texts("ru")


def _product_names(live_server: LiveServer) -> dict[str, str]:
    with live_server.engine.connect() as conn:
        return {p.code: p.name for p in catalog.list_products(conn)}


def _invoices_from_the_nav(page: Page) -> None:
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.invoices")
    ).click()
    expect(page.locator("main[data-page=invoices]")).to_be_visible()


def test_operator_issues_an_invoice_and_downloads_its_pdf(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    inn = add_customer(live_server.engine, name="ОсОО «Счёт из браузера»")
    names = _product_names(live_server)
    log_in(page, live_server.accounts["operator"])
    _invoices_from_the_nav(page)
    shot("invoices")

    page.get_by_role("link", name=RU("invoices.new")).click()
    expect(page.locator("main[data-page=invoices-new]")).to_be_visible()
    form = page.locator("form#new-invoice")
    form.get_by_label(RU("invoices.inn"), exact=True).fill(inn)
    # Nothing chosen yet: the form comes back with the message next to the products.
    form.get_by_role("button", name=RU("invoices.new.submit")).click()
    expect(page.locator("#items-error")).to_have_text(RU("invoices.error.no_items"))
    expect(page.locator("#invoice-errors")).to_be_visible()
    expect(form.get_by_label(RU("invoices.inn"), exact=True)).to_have_value(inn)
    shot("nothing-chosen")

    form.get_by_label(names["eds-head"], exact=True).fill("1")
    form.get_by_label(names["eds-accountant"], exact=True).fill("2")
    shot("form-filled")
    form.get_by_role("button", name=RU("invoices.new.submit")).click()

    expect(page.locator("main[data-page=invoices-one]")).to_be_visible()
    expect(page.locator("#invoice-created")).to_have_text(RU("invoice.created_now"))
    number = page.locator("#f-number").inner_text().strip()
    assert re.fullmatch(r"\d{16}", number), number
    expect(page.get_by_role("heading", level=1)).to_have_text(
        RU("invoice.title").format(number=number)
    )
    expect(page.locator("#f-total")).to_have_text("4\u00a0350,00\u00a0сом")
    expect(page.locator("#f-state")).to_have_attribute("data-state", "open")
    expect(page.locator("#customer-link")).to_have_text("ОсОО «Счёт из браузера»")
    expect(page.locator("table#lines tbody tr")).to_have_count(2)
    shot("invoice")

    with page.expect_download() as downloaded:
        page.get_by_role("link", name=RU("invoice.pdf")).click()
    download = downloaded.value
    assert download.suggested_filename == f"invoice-{number}.pdf"
    path = download.path()
    content = path.read_bytes()
    assert content.startswith(b"%PDF")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)
    assert number in text and "ОсОО «Счёт из браузера»" in text
    assert "Итого к оплате: 4 350,00 сом" in text
    assert f"«Оплата по счёту № {number}»" in text  # the payment instructions

    # The new invoice leads the list.
    _invoices_from_the_nav(page)
    expect(page.locator("table#invoices tbody tr").first).to_have_attribute("data-number", number)
    shot("listed")


def test_operator_cancels_an_invoice_after_confirming(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    invoice = add_invoice(live_server.engine, [("eds-rutoken", 1)])
    log_in(page, live_server.accounts["operator"])
    _invoices_from_the_nav(page)
    page.get_by_label(RU("invoices.number"), exact=True).fill(invoice.number)
    page.get_by_role("button", name=RU("invoices.apply")).click()
    rows = page.locator("table#invoices tbody tr")
    expect(rows).to_have_count(1)
    shot("found-by-number")
    rows.first.get_by_role("link", name=invoice.number).click()
    expect(page.locator("main[data-page=invoices-one]")).to_be_visible()

    page.get_by_role("link", name=RU("invoice.cancel_link")).click()
    expect(page.locator("#cancel-question")).to_contain_text(invoice.number)
    # Changing one's mind changes nothing.
    page.get_by_role("link", name=RU("invoice.cancel_keep")).click()
    expect(page.locator("#f-state")).to_have_attribute("data-state", "open")
    page.get_by_role("link", name=RU("invoice.cancel_link")).click()
    page.get_by_label(RU("invoice.reason"), exact=True).fill("Клиент выбрал другой носитель")
    shot("confirmation")
    page.get_by_role("button", name=RU("invoice.cancel_submit")).click()

    expect(page.locator("#invoice-cancelled")).to_have_text(RU("invoice.cancelled_now"))
    expect(page.locator("#f-state")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#f-cancel-reason")).to_have_text("Клиент выбрал другой носитель")
    expect(page.locator("#f-cancelled-by")).to_have_text(
        f"user:{live_server.accounts['operator'].username}"
    )
    expect(page.get_by_role("link", name=RU("invoice.cancel_link"))).to_have_count(0)
    shot("cancelled")
    with live_server.engine.connect() as conn:
        stored = invoices.get(conn, invoice.number)
    assert stored is not None and stored.status == "cancelled"


def test_an_auditor_reads_an_invoice_but_may_not_cancel_it(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    invoice = add_invoice(live_server.engine)
    log_in(page, live_server.accounts["auditor"])
    _invoices_from_the_nav(page)
    expect(page.get_by_role("link", name=RU("invoices.new"))).to_have_count(0)
    page.goto(f"/invoices/{invoice.number}")
    expect(page.locator("#f-number")).to_have_text(invoice.number)
    expect(page.get_by_role("link", name=RU("invoice.cancel_link"))).to_have_count(0)
    shot("read-only")
    page.goto(f"/invoices/{invoice.number}/cancel")
    expect(page.locator("main[data-page=forbidden]")).to_be_visible()
    shot("forbidden")
