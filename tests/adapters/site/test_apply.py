"""The online application /apply: a full application makes a customer pending verification,
an invoice (audited as site:apply), the application's row and the SMS/e-mail deliveries; a
repeat gets the same invoice; each bad field is answered next to it in ru/ky/en with
nothing written; the honeypot, a forged or too young token and the per-address limit are
refused with nothing written; U+0000 is a 400."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.factories import add_customer, new_inn
from tolom import formatting
from tolom.app import create_app
from tolom.billing import invoices
from tolom.db.schema import applications, audit_log, customers, deliveries, events
from tolom.db.schema import invoices as invoice_table
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.site import apply, pages

NAME = "ОсОО «Заявитель»"
EMAIL = "boss@zayavitel.example.kg"
PHONE = "0555 123 456"


@dataclass
class Site:
    client: TestClient
    engine: Engine
    runtime: Runtime

    def token(self, age: float = 10.0) -> str:
        return apply.form_token(self.runtime, datetime.now(UTC) - timedelta(seconds=age))

    def send(self, lang: str = "ru", **changes: Any) -> Any:
        fields: dict[str, str] = {
            "token": self.token(),
            "qty-eds-head": "1",
            "inn": changes.pop("inn_value", "") or new_inn(),
            "legal_form": "ОсОО",
            "name": NAME,
            "phone": PHONE,
            "email": EMAIL,
            "office": "Ош",
            "website": "",
        }
        fields.update(changes)
        return self.client.post(f"/apply?lang={lang}", data=fields)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in (customers, invoice_table, applications, audit_log, events, deliveries)
            }


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Site:
    settings = settings.model_copy(update={"apply_per_hour": 3})
    runtime = Runtime.on(settings, engine)
    app = create_app(runtime=runtime)
    return Site(TestClient(app, client=("203.0.113.7", 50000)), engine, runtime)


def plain(html: str) -> str:
    return html.replace(formatting.THOUSANDS, " ")


def number_of(html: str) -> str:
    found = re.search(r'data-number="(\d{16})"', html)
    assert found is not None, html
    return found.group(1)


def error_of(html: str, field: str) -> str:
    found = re.search(
        rf'<p id="{re.escape(field)}-error" class="error" role="alert">(.*?)</p>', html
    )
    assert found is not None, (field, html)
    return found.group(1)


def test_the_form_lists_the_catalogue_offices_and_a_token(site: Site) -> None:
    page = site.client.get("/apply")
    assert page.status_code == 200
    for header, value in pages.HEADERS.items():
        assert page.headers[header] == value
    html = page.text
    assert "Электронная подпись руководителя (облачная)" in html and 'name="qty-eds-head"' in html
    assert (
        "1 510,00" in plain(html) and 'name="qty-rutoken-device"' not in html
    )  # no price: not offered
    for office in ("Бишкек", "Ош", "Жалал-Абад"):
        assert f'value="{office}"' in html
    assert 'name="token" value="' in html and 'name="website"' in html
    assert "Оставьте это поле пустым" in html and 'aria-hidden="true"' in html
    assert 'href="/apply"' in site.client.get("/pay").text  # in the header's links


def test_an_application_makes_a_customer_an_invoice_an_audit_line_and_notifications(
    site: Site,
) -> None:
    inn = new_inn()
    before = site.counts()
    page = site.send(inn_value=inn, **{"qty-eds-rutoken": "2"})
    assert page.status_code == 200, page.text
    number = number_of(page.text)
    assert "Заявка принята" in page.text and "3 910,00 сом" in plain(page.text)
    assert f'href="/apply/{number}.pdf"' in page.text
    assert f"/pay?service=eds&amp;number={number}" in page.text
    assert number in page.text.split('class="instructions"')[1]  # the steps are filled
    after = site.counts()
    assert after["customers"] == before["customers"] + 1
    assert after["invoices"] == before["invoices"] + 1
    assert after["applications"] == before["applications"] + 1
    with site.engine.connect() as conn:
        customer = conn.execute(select(customers).where(customers.c.inn == inn)).one()
        assert (customer.email, customer.phone, customer.name) == (EMAIL, "+996555123456", NAME)
        row = conn.execute(select(applications).where(applications.c.inn == inn)).one()
        assert (row.invoice_number, row.office, row.status) == (number, "Ош", "new")
        assert row.address == "203.0.113.7"
        actions = {
            (r.actor, r.action)
            for r in conn.execute(select(audit_log).where(audit_log.c.actor == apply.ACTOR))
        }
        assert actions == {("site:apply", "customer.create"), ("site:apply", "invoice.create")}
        event = conn.execute(select(events).where(events.c.type == "application.created")).one()
        sent = {
            (d.destination, d.recipient)
            for d in conn.execute(select(deliveries).where(deliveries.c.event_id == event.id))
        }
        assert sent == {("email", EMAIL), ("sms", "+996555123456")}
        invoice = invoices.get(conn, number)
    assert invoice is not None and invoice.inn == inn and invoice.total == 391000
    assert {(line.product_code, line.quantity) for line in invoice.lines} == {
        ("eds-head", 1),
        ("eds-rutoken", 2),
    }
    pdf = site.client.get(f"/apply/{number}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert site.client.get("/apply/0000000000000000.pdf").status_code == 404


def test_a_repeat_gets_the_same_invoice_and_writes_nothing(site: Site) -> None:
    inn = new_inn()
    first = number_of(site.send(inn_value=inn).text)
    before = site.counts()
    again = site.send(inn_value=inn, lang="en")
    assert again.status_code == 200 and number_of(again.text) == first
    assert "already made" in again.text
    assert site.counts() == before
    other = site.send(inn_value=inn, **{"qty-eds-head": "2"})  # other products: a new one
    assert number_of(other.text) != first


def test_an_existing_customer_keeps_its_record(site: Site) -> None:
    inn = add_customer(site.engine, name="ОсОО «Старый»", email="old@example.kg")
    before = site.counts()
    page = site.send(inn_value=inn)
    assert page.status_code == 200
    after = site.counts()
    assert after["customers"] == before["customers"] and after["invoices"] == before["invoices"] + 1
    with site.engine.connect() as conn:
        customer = conn.execute(select(customers).where(customers.c.inn == inn)).one()
        assert (customer.name, customer.email, customer.phone) == (
            "ОсОО «Старый»",
            "old@example.kg",
            None,
        )
        recipients = {r.recipient for r in conn.execute(select(deliveries.c.recipient))}
    assert "old@example.kg" in recipients and EMAIL not in recipients
    assert "ОсОО «Старый»" not in page.text


BAD_FIELDS = [
    ("inn", {"inn_value": "12345"}, "inn"),
    ("name", {"name": "  "}, "name"),
    ("legal_form", {"legal_form": "Корпорация"}, "legal_form"),
    ("email", {"email": "not-an-address"}, "email"),
    ("email", {"email": ""}, "email"),
    ("phone", {"phone": "12"}, "phone"),
    ("office", {"office": "Москва"}, "office"),
    ("items", {"qty-eds-head": "0"}, "items"),
    ("quantity", {"qty-eds-head": "１"}, "qty-eds-head"),
]
WORDS = {
    ("inn", "ru"): "14 цифр",
    ("inn", "ky"): "14 сан",
    ("inn", "en"): "14 digits",
    ("office", "ky"): "кеңсени",
    ("office", "en"): "Choose an office",
}


@pytest.mark.parametrize("language", ["ru", "ky", "en"])
@pytest.mark.parametrize(("what", "changes", "field"), BAD_FIELDS)
def test_a_bad_field_is_answered_next_to_it_and_nothing_is_written(
    site: Site, language: str, what: str, changes: dict[str, str], field: str
) -> None:
    before = site.counts()
    page = site.send(lang=language, **dict(changes))
    assert page.status_code == 422, page.text
    said = error_of(page.text, field)
    assert said and "site.apply" not in said
    expected = WORDS.get((what, language))
    if expected:
        assert expected in said
    assert f'<html lang="{language}">' in page.text
    assert site.counts() == before
    assert NAME.replace("«", "&#171;") in page.text or "Заявитель" in page.text or what == "name"


@pytest.mark.parametrize(
    ("changes", "status", "said"),
    [
        ({"website": "http://spam.example"}, 400, "Заявка не принята"),
        ({"token": "forged"}, 400, "Форма устарела"),
        ({"token": "1700000000." + "0" * 64}, 400, "Форма устарела"),
        ({"token": "old"}, 400, "Форма устарела"),
        ({"token": "young"}, 429, "слишком быстро"),
    ],
)
def test_robots_are_refused_and_nothing_is_written(
    site: Site, changes: dict[str, str], status: int, said: str
) -> None:
    if changes.get("token") == "old":
        changes = {"token": site.token(age=3 * 3600)}
    if changes.get("token") == "young":
        changes = {"token": site.token(age=0)}
    before = site.counts()
    page = site.send(**changes)
    assert page.status_code == status and said in page.text
    assert site.counts() == before
    # A token signed with another key is forged too.
    stamp = site.token().partition(".")[0]
    assert apply.token_refusal(site.runtime, f"{stamp}.{'ab' * 32}", datetime.now(UTC)) == "token"


def test_the_per_address_limit(site: Site) -> None:
    for _ in range(3):
        assert site.send().status_code == 200
    before = site.counts()
    page = site.send(lang="en")
    assert page.status_code == 429 and "Too many applications" in page.text
    assert page.headers["Retry-After"] == "3600"
    assert site.counts() == before
    other = TestClient(site.client.app, client=("198.51.100.4", 50000))
    assert other.post("/apply", data={"token": site.token(), "inn": "x"}).status_code == 422


def test_nul_and_tampering_are_400(site: Site) -> None:
    before = site.counts()
    assert site.send(name="ОсОО\x00").status_code == 400
    assert site.client.get("/apply", params={"x": "\x00"}).status_code == 400
    assert site.send(name="x" * 5000).status_code == 400
    assert site.send(**{"qty-no-such-product": "1"}).status_code == 400
    assert site.counts() == before
