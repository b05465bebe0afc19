"""The "How to pay" page /pay: every service's instructions (the same texts the invoice PDF
prints), and the box that judges an INN or an invoice number with the payments core's rules
(`payments.service.payability`), in the page's language, revealing nothing personal."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer, add_invoice
from tolom.billing import invoices
from tolom.documents import instructions
from tolom.payments.model import Service
from tolom.payments.service import Standing, payability
from tolom.settings import Settings
from tolom.site import pages
from tolom.site.pay import BLANKS, MAX_INPUT
from tolom.texts import LANGUAGES, text

SECRET_NAME = "ОсОО «Секретная Ромашка»"
LUHN_WRONG = "1234567890123450"  # 16 digits; the check digit of 123456789012345 is 2
ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩٠١٢٣"  # 14 digits, not ASCII


@dataclass
class Site:
    client: TestClient
    engine: Engine
    settings: Settings
    gateway: Gateway

    def get(self, **params: str) -> Any:
        return self.client.get("/pay", params=params)


@pytest.fixture
def site(app: Any, engine: Engine, settings: Settings, gateway: Gateway) -> Site:
    return Site(TestClient(app, client=("203.0.113.7", 50000)), engine, settings, gateway)


def visible(page: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, spaces single."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def texts_of(how: instructions.Instructions) -> list[str]:
    found = [how.title, how.intro]
    for channel in how.channels:
        found += [channel.title, channel.choose, channel.enter, *channel.steps]
        found += [channel.note] if channel.note else []
    return [re.sub(r"\s+", " ", item) for item in found]


def loaded(settings: Settings, service: str) -> instructions.Instructions:
    return instructions.load(settings.payment_instructions_file)[service]


def assert_clean(response: Any, *forbidden: str) -> None:
    assert "Traceback" not in response.text
    assert "Internal Server Error" not in response.text
    for word in forbidden:
        assert word not in response.text


# --- the page ------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_page_speaks_each_language_and_is_linked_from_the_header(
    site: Site, language: str
) -> None:
    response = site.get(lang=language)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "noindex" in response.headers["x-robots-tag"]
    assert f'<html lang="{language}">' in response.text
    shown = visible(response.text)
    for key in ("site.pay.title", "site.pay.service.sochi", "site.pay.service.eds"):
        assert text(language, key) in shown
    assert ("/pay", "site.pay.link") in pages.LINKS
    assert '<span aria-current="page">' + text(language, "site.pay.link") in response.text
    assert response.cookies.get(pages.LANGUAGE_COOKIE) == language
    assert "<script" not in response.text


def test_switching_language_keeps_the_page_and_its_question(site: Site) -> None:
    """The footer's language links lead to the same answer in another language."""
    html = site.client.get("/pay", params={"service": "eds", "number": "1234"}).text
    assert 'href="?service=eds&amp;number=1234&amp;lang=ky"' in html
    assert 'href="?service=eds&amp;number=1234&amp;lang=en"' in html


@pytest.mark.parametrize("service", ["sochi", "eds"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_a_service_shows_the_company_instructions_as_the_invoice_pdf_has_them(
    site: Site, service: str, language: str
) -> None:
    response = site.get(service=service, lang=language)
    assert response.status_code == 200
    blanks = {name: text(language, BLANKS[name]) for name in instructions.PLACEHOLDERS[service]}
    shown = visible(response.text)
    for item in texts_of(loaded(site.settings, service).filled(blanks)):
        assert item in shown
    codes = [channel.code for channel in loaded(site.settings, service).channels]
    assert {"optima24", "megapay", "terminals", "bank", "cash_desk"} <= set(codes)
    assert 'href="https://www.optimabank.kg/images/files/cashin_terminals_list.pdf"' in (
        response.text
    )


def test_the_bank_transfer_shows_the_company_requisites_when_configured(
    app: Any, site: Site
) -> None:
    assert text("ru", "site.pay.requisites.ask") in visible(site.get(service="eds").text)
    runtime = app.state.runtime
    runtime.settings = site.settings.model_copy(
        update={"company_bank_account": "1180000012345678", "company_bank_bik": "118001"}
    )
    shown = visible(site.get(service="eds", lang="en").text)
    assert "1180000012345678" in shown
    assert text("en", "site.pay.requisites.account") in shown


# --- the verdicts --------------------------------------------------------------------


def _expired(engine: Engine) -> str:
    return add_invoice(engine, now=datetime.now(UTC) - timedelta(days=40)).number


def _paid(site: Site) -> str:
    invoice = add_invoice(site.engine)
    answer = site.gateway.pay("eds", invoice.number, f"{invoice.total / 100:.2f}")
    assert answer["result"] == 0, answer
    return invoice.number


def _cancelled(engine: Engine) -> str:
    number = add_invoice(engine).number
    with engine.begin() as conn:
        invoices.cancel(conn, number)
    return number


# (name, how to make the account, service or "", status, verdict key)
CASES: list[tuple[str, Callable[[Site], str], str, int, str]] = [
    ("active", lambda s: add_customer(s.engine, name=SECRET_NAME), "sochi", 200,
     "site.pay.verdict.payable.sochi"),
    ("blocked", lambda s: add_customer(s.engine, name=SECRET_NAME, status="blocked"), "sochi",
     200, "site.pay.verdict.blocked"),
    ("unknown inn", lambda s: "99999999999999", "sochi", 200, "site.pay.verdict.not_found.sochi"),
    ("13 digits", lambda s: "1234567890123", "sochi", 422, "site.pay.verdict.bad_format.sochi"),
    ("letters", lambda s: "12345678901abc", "sochi", 422, "site.pay.verdict.bad_format.sochi"),
    ("arabic-indic", lambda s: ARABIC_INDIC, "sochi", 422, "site.pay.verdict.bad_format.sochi"),
    ("2 KB", lambda s: "1" * 2048, "sochi", 422, "site.pay.verdict.bad_format.sochi"),
    ("open invoice", lambda s: add_invoice(s.engine).number, "eds", 200,
     "site.pay.verdict.payable.eds"),
    ("paid", _paid, "eds", 200, "site.pay.verdict.paid"),
    ("expired", lambda s: _expired(s.engine), "eds", 200, "site.pay.verdict.expired"),
    ("cancelled", lambda s: _cancelled(s.engine), "eds", 200, "site.pay.verdict.cancelled"),
    ("luhn wrong", lambda s: LUHN_WRONG, "eds", 422, "site.pay.verdict.mistyped"),
    ("unknown invoice", lambda s: "1234567890123452", "eds", 200,
     "site.pay.verdict.not_found.eds"),
]  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("make", "service", "status", "key"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_verdict_in_the_page_language_without_anything_personal(
    site: Site, language: str, make: Any, service: str, status: int, key: str
) -> None:
    account = make(site)
    response = site.get(service=service, number=account, lang=language)
    assert response.status_code == status
    assert text(language, key) in visible(response.text)
    assert_clean(response, SECRET_NAME, "ОсОО «Новый клиент»")  # neither payer is named
    if len(account) > MAX_INPUT:  # refused unread, never echoed back
        assert account not in response.text
    if status == 422:
        assert 'aria-invalid="true"' in response.text


def test_a_payable_inn_gets_the_instructions_filled_with_it_and_nothing_else(
    site: Site,
) -> None:
    inn = add_customer(site.engine, name=SECRET_NAME)
    assert site.gateway.pay("sochi", inn, "1510.00")["result"] == 0  # a balance not to show
    response = site.get(service="sochi", number=f" {inn[:7]} {inn[7:]} ")  # spaces are fine
    assert response.status_code == 200
    shown = visible(response.text)
    for item in texts_of(loaded(site.settings, "sochi").filled({"inn": inn})):
        assert item in shown
    assert f'<dd class="big">{inn}</dd>' in response.text
    assert_clean(response, SECRET_NAME, "1510", "1 510", "1,510")  # no name, no balance


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_payable_invoice_shows_its_amount_due_date_and_the_filled_instructions(
    site: Site, language: str
) -> None:
    invoice = add_invoice(site.engine)
    response = site.get(number=invoice.number, lang=language)  # 16 digits: an invoice
    assert response.status_code == 200
    shown = visible(response.text)
    values = instructions.invoice_values(invoice.number, invoice.total, invoice.expires_at)
    for item in texts_of(loaded(site.settings, "eds").filled(values)):
        assert item in shown
    assert text(language, "site.pay.amount_label") in shown
    assert values["valid_until"] in shown
    assert_clean(response, "ОсОО «Новый клиент»")


def test_without_a_chosen_service_the_length_tells_which_and_otherwise_both_are_named(
    site: Site,
) -> None:
    inn = add_customer(site.engine)
    assert text("ru", "site.pay.verdict.payable.sochi") in visible(site.get(number=inn).text)
    response = site.get(number="123456789012345", lang="en")
    assert response.status_code == 422
    assert text("en", "site.pay.verdict.bad_format.any") in visible(response.text)


def test_u0000_anywhere_is_refused_before_anything_is_read(site: Site) -> None:
    for params in ({"number": "0123\x00"}, {"service": "eds\x00"}, {"x\x00": "1"}):
        response = site.get(lang="ky", **params)
        assert response.status_code == 400
        assert text("ky", "site.pay.bad_request") in visible(response.text)
        assert_clean(response)


def test_an_unknown_service_is_as_none_chosen(site: Site) -> None:
    response = site.get(service="x" * 3000)
    assert response.status_code == 200
    assert text("ru", "site.pay.choose_first") in visible(response.text)


# --- one rule: the page's verdict is the agents' check ---------------------------------


def test_the_page_and_an_agent_check_agree_on_every_account(site: Site) -> None:
    agreed = 0
    for _, make, service, _, _ in CASES:
        account = make(site)
        if len(account) > MAX_INPUT:
            continue
        with site.engine.connect() as conn:
            verdict = payability(conn, Service(service), account)
        answer = site.gateway.check(service, account)
        assert (answer["result"] == 0) == verdict.payable, (account, answer, verdict)
        agreed += 1
        if verdict.standing is Standing.PAYABLE and service == "eds":
            assert verdict.amount_due is not None and verdict.pay_by is not None
    assert agreed == len(CASES) - 1
