"""The customer's cabinet /cabinet over a real SMTP server: sign-in by INN and the code
e-mailed to the contact on file; the cabinet shows the balance, the reports waiting for
money with the top-up that releases them, the statement with the receipt, invoices and
signatures; contacts are changed (audited) and a signature renewed into one invoice;
everything refused answers next to its field and changes nothing; whoever knows only an INN
learns nothing of the customer."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer, new_inn
from tests.mailserver import MailServer
from tolom import formatting
from tolom.app import create_app
from tolom.billing import charges, invoices, orders
from tolom.cabinet import access, overview
from tolom.db.schema import audit_log, cabinet_codes, cabinet_sessions, customers, payments
from tolom.db.schema import invoices as invoice_table
from tolom.money import format_amount
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.site import cabinet

EMAIL = "buh@kabinet.example.kg"
NAME = "ОсОО «Кабинет»"


@dataclass
class Cabinet:
    client: TestClient
    engine: Engine
    mail: MailServer

    def form_token(self) -> str:
        page = self.client.get("/cabinet")
        found = re.search(r'name="form" value="([^"]+)"', page.text)
        assert found is not None, page.text
        return found.group(1)

    def ask(self, inn: str, channel: str = "email", lang: str = "ru") -> Any:
        return self.client.post(
            f"/cabinet/code?lang={lang}",
            data={"form": self.form_token(), "inn": inn, "channel": channel},
            follow_redirects=False,
        )

    def last_code(self) -> str:
        assert self.mail.envelopes, "no e-mail was sent"
        message = message_from_bytes(self.mail.envelopes[-1].content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found = re.search(r"\b(\d{6})\b", body.get_content())
        assert found is not None
        return found.group(1)

    def enter(self, code: str, lang: str = "ru") -> Any:
        form = self.client.cookies.get(cabinet.FORM_COOKIE) or ""
        return self.client.post(
            f"/cabinet/code/check?lang={lang}",
            data={"form": form, "code": code},
            follow_redirects=False,
        )

    def sign_in(self, inn: str) -> str:
        """Sign in as the customer; the cabinet page's HTML."""
        assert self.ask(inn).status_code == 303
        answer = self.enter(self.last_code())
        assert answer.status_code == 303, answer.text
        page = self.client.get("/cabinet")
        assert page.status_code == 200
        return page.text

    def csrf(self, html: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found is not None
        return found.group(1)

    def count(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def site(settings: Settings, engine: Engine, mail_server: MailServer) -> Cabinet:
    settings = settings.model_copy(
        update={
            "email_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": mail_server.port,
            "cabinet_resend_seconds": 0,
        }
    )
    app = create_app(runtime=Runtime.on(settings, engine))
    client = TestClient(app, base_url="http://testserver", client=("203.0.113.9", 40000))
    return Cabinet(client, engine, mail_server)


def plain(html: str) -> str:
    return html.replace(formatting.THOUSANDS, " ")


def test_without_a_session_the_cabinet_is_the_sign_in_form(site: Cabinet) -> None:
    page = site.client.get("/cabinet")
    assert page.status_code == 200
    assert 'data-page="cabinet-sign-in"' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert cabinet.FORM_COOKIE in page.cookies


def test_a_customer_signs_in_with_the_code_e_mailed_to_them(site: Cabinet) -> None:
    inn = add_customer(site.engine, name=NAME, email=EMAIL)
    answer = site.ask(inn)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/cabinet/code"
    [envelope] = site.mail.envelopes
    assert envelope.rcpt_tos == [EMAIL]
    code = site.last_code()
    with site.engine.connect() as conn:
        stored = conn.execute(select(cabinet_codes.c.code_hash)).scalar_one()
    assert code not in stored  # kept as an HMAC only
    form = site.client.get("/cabinet/code")
    assert 'data-channel="email"' in form.text
    assert site.enter(code).status_code == 303
    page = site.client.get("/cabinet")
    assert 'data-page="cabinet"' in page.text
    assert f'<span id="customer-name" lang="ru">{NAME}</span>' in page.text
    assert inn in page.text
    with site.engine.connect() as conn:
        actions = conn.execute(select(audit_log.c.action, audit_log.c.actor)).all()
    assert ("cabinet.sign_in", f"customer:{inn}") in [tuple(a) for a in actions]
    # The code is used up: a second sign-in with it fails.
    site.client.cookies.delete(cabinet.SESSION_COOKIE)
    assert site.enter(code).status_code == 422


def test_an_unknown_inn_is_answered_exactly_like_a_known_one_and_nothing_is_sent(
    site: Cabinet,
) -> None:
    known = add_customer(site.engine, email=EMAIL)
    without_phone = known  # has an e-mail, no phone
    for inn, channel in ((new_inn(), "email"), (without_phone, "sms")):
        answer = site.ask(inn, channel)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/cabinet/code"
        code_page = site.client.get("/cabinet/code")
        assert code_page.status_code == 200
        assert "ОсОО" not in code_page.text and "@" not in code_page.text
        # No code fits the challenge: every guess is wrong, then it ends.
        assert site.enter("123456").status_code == 422
    assert site.mail.envelopes == []


def test_wrong_codes_are_counted_and_end_the_challenge(site: Cabinet) -> None:
    inn = add_customer(site.engine, email=EMAIL)
    site.ask(inn)
    code = site.last_code()
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        answer = site.enter(wrong)
        assert answer.status_code == 422
        assert f"Осталось попыток: {left}" in answer.text
    answer = site.enter(wrong)
    assert "больше не действует" in answer.text
    # Even the right code is refused now.
    assert site.enter(code).status_code == 422
    assert site.count(cabinet_sessions) == 0


def test_a_code_that_is_not_six_digits_is_said_next_to_the_field_and_not_counted(
    site: Cabinet,
) -> None:
    inn = add_customer(site.engine, email=EMAIL)
    site.ask(inn, lang="en")
    answer = site.enter("12ab", lang="en")
    assert answer.status_code == 422
    assert 'id="code-error"' in answer.text and "6 digits" in answer.text
    with site.engine.connect() as conn:
        assert conn.execute(select(cabinet_codes.c.attempts)).scalar_one() == 0


def test_a_malformed_inn_is_said_next_to_the_field_in_the_page_language(site: Cabinet) -> None:
    for lang, words in (("ru", "14 цифр"), ("ky", "14 сан"), ("en", "14 digits")):
        answer = site.ask("12345", lang=lang)
        assert answer.status_code == 422
        assert 'id="inn-error"' in answer.text and words in answer.text
    assert site.count(cabinet_codes) == 0


def test_resending_is_throttled_per_inn(
    settings: Settings, engine: Engine, mail_server: MailServer
) -> None:
    settings = settings.model_copy(
        update={"email_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": mail_server.port}
    )
    site = Cabinet(
        TestClient(create_app(runtime=Runtime.on(settings, engine))), engine, mail_server
    )
    inn = add_customer(engine, email=EMAIL)
    assert site.ask(inn).status_code == 303
    again = site.ask(inn)
    assert again.status_code == 429
    assert int(again.headers["Retry-After"]) >= 1
    assert len(mail_server.envelopes) == 1


def test_codes_per_address_are_limited(
    settings: Settings, engine: Engine, mail_server: MailServer
) -> None:
    settings = settings.model_copy(
        update={
            "email_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": mail_server.port,
            "cabinet_codes_per_address": 2,
        }
    )
    site = Cabinet(
        TestClient(create_app(runtime=Runtime.on(settings, engine))), engine, mail_server
    )
    assert site.ask(new_inn()).status_code == 303
    assert site.ask(new_inn()).status_code == 303
    assert site.ask(new_inn()).status_code == 429
    assert site.count(cabinet_codes) == 2


def test_a_form_without_its_token_is_refused(site: Cabinet) -> None:
    inn = add_customer(site.engine, email=EMAIL)
    answer = site.client.post("/cabinet/code", data={"inn": inn, "channel": "email"})
    assert answer.status_code == 403
    assert site.count(cabinet_codes) == 0
    assert site.mail.envelopes == []


def test_the_cabinet_shows_the_balance_waiting_reports_statement_and_receipt(
    site: Cabinet, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine, name=NAME, email=EMAIL)
    with engine.begin() as conn:
        for key, amount in (("r1", 30_000), ("r2", 50_000)):
            charges.create(
                conn,
                charges.ChargeRequest(
                    client="apikey:sochi",
                    idempotency_key=key,
                    inn=inn,
                    description="Отчёт в ГНС",
                    amount=amount,
                ),
            )
    assert gateway.pay("sochi", inn, "100.00")["result"] == 0
    html = plain(site.sign_in(inn))
    assert 'id="balance-amount">100,00 сом' in html or "100,00" in html
    # 300 + 500 wait; 100 on the balance: 700 more releases both, 200 the first.
    assert "не хватает 700,00 сом" in html
    assert "при пополнении на 200,00 сом" in html
    assert "при пополнении на 700,00 сом" in html
    receipt = re.search(r'href="(/cabinet/receipts/\d+\.pdf)"', html)
    assert receipt is not None
    pdf = site.client.get(receipt.group(1))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_another_customers_receipt_and_invoice_are_not_found(
    site: Cabinet, engine: Engine, gateway: Gateway
) -> None:
    mine = add_customer(engine, email=EMAIL)
    theirs = add_customer(engine, email="other@example.kg")
    paid = gateway.pay("sochi", theirs, "100.00")
    assert paid["result"] == 0
    with engine.connect() as conn:
        payment_id = conn.execute(select(func.max(payments.c.id))).scalar_one()
    with engine.begin() as conn:
        invoice = invoices.create(
            conn, items=[("eds-head", 1)], payer_name="Чужой", inn=theirs, validity_days=30
        )
    site.sign_in(mine)
    assert site.client.get(f"/cabinet/receipts/{payment_id}.pdf").status_code == 404
    assert site.client.get(f"/cabinet/invoices/{invoice.number}.pdf").status_code == 404
    assert site.client.get("/cabinet/invoices/abc.pdf").status_code == 404


def test_contacts_are_changed_audited_and_bad_ones_said_next_to_the_field(
    site: Cabinet, engine: Engine
) -> None:
    inn = add_customer(engine, email=EMAIL)
    html = site.sign_in(inn)
    csrf = site.csrf(html)
    bad = site.client.post(
        "/cabinet/contacts",
        data={"csrf": csrf, "email": "not-an-address", "phone": "12", "language": "ru"},
    )
    assert bad.status_code == 422
    assert 'id="email-error"' in bad.text and 'id="phone-error"' in bad.text
    with engine.connect() as conn:
        assert (
            conn.execute(select(customers.c.email).where(customers.c.inn == inn)).scalar() == EMAIL
        )
    good = site.client.post(
        "/cabinet/contacts",
        data={"csrf": csrf, "email": "new@example.kg", "phone": "0555 123 456", "language": "ky"},
        follow_redirects=False,
    )
    assert good.status_code == 303
    with engine.connect() as conn:
        row = conn.execute(select(customers).where(customers.c.inn == inn)).one()
        line = conn.execute(
            select(audit_log).where(audit_log.c.action == "customer.contacts")
        ).one()
    assert (row.email, row.phone, row.language) == ("new@example.kg", "+996555123456", "ky")
    assert line.actor == f"customer:{inn}"
    forged = site.client.post(
        "/cabinet/contacts", data={"csrf": "x" * 43, "email": "evil@example.kg", "language": "ru"}
    )
    assert forged.status_code == 403


def _issued_signature(engine: Engine, gateway: Gateway, inn: str) -> int:
    with engine.begin() as conn:
        invoice = invoices.create(
            conn, items=[("eds-head", 1)], payer_name="ОсОО «Тест»", inn=inn, validity_days=30
        )
    assert gateway.pay("eds", invoice.number, format_amount(invoice.total))["result"] == 0
    with engine.begin() as conn:
        [order] = orders.list_orders(conn, invoice_number=invoice.number)
        orders.start(conn, order.id)
        orders.issue(conn, order.id, validity_months=12)
    return order.id


def test_a_signature_is_renewed_into_one_invoice_however_often_asked(
    site: Cabinet, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine, email=EMAIL)
    order_id = _issued_signature(engine, gateway, inn)
    html = site.sign_in(inn)
    assert f'data-order="{order_id}" data-state="issued"' in html
    csrf = site.csrf(html)
    before = site.count(invoice_table)
    first = site.client.post(
        "/cabinet/renew", data={"csrf": csrf, "order": str(order_id)}, follow_redirects=False
    )
    assert first.status_code == 303
    number = re.search(r"number=(\d{16})", first.headers["location"])
    assert number is not None
    again = site.client.post(
        "/cabinet/renew", data={"csrf": csrf, "order": str(order_id)}, follow_redirects=False
    )
    assert number.group(1) in again.headers["location"]
    assert "renewed_again" in again.headers["location"]
    assert site.count(invoice_table) == before + 1
    with engine.connect() as conn:
        renewal = invoices.get(conn, number.group(1))
    assert renewal is not None and renewal.inn == inn and renewal.status == "open"
    page = site.client.get(first.headers["location"])
    assert number.group(1) in page.text


def test_someone_elses_order_cannot_be_renewed(
    site: Cabinet, engine: Engine, gateway: Gateway
) -> None:
    theirs = add_customer(engine)
    order_id = _issued_signature(engine, gateway, theirs)
    mine = add_customer(engine, email=EMAIL)
    csrf = site.csrf(site.sign_in(mine))
    before = site.count(invoice_table)
    answer = site.client.post("/cabinet/renew", data={"csrf": csrf, "order": str(order_id)})
    assert answer.status_code == 409
    assert site.count(invoice_table) == before


def test_signing_out_ends_the_session(site: Cabinet, engine: Engine) -> None:
    inn = add_customer(engine, email=EMAIL)
    csrf = site.csrf(site.sign_in(inn))
    answer = site.client.post("/cabinet/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert site.count(cabinet_sessions) == 0
    assert 'data-page="cabinet-sign-in"' in site.client.get("/cabinet").text


def test_an_expired_session_is_the_sign_in_form(site: Cabinet, engine: Engine) -> None:
    inn = add_customer(engine, email=EMAIL)
    site.sign_in(inn)
    with engine.begin() as conn:
        conn.execute(
            update(cabinet_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert 'data-page="cabinet-sign-in"' in site.client.get("/cabinet").text
    assert (
        site.client.get(
            "/cabinet/invoices/1234567890123456.pdf", follow_redirects=False
        ).status_code
        == 303
    )


def test_u0000_and_oversized_fields_are_a_400(site: Cabinet) -> None:
    assert site.client.get("/cabinet?from=%00").status_code == 400
    answer = site.client.post(
        "/cabinet/code", data={"form": site.form_token(), "inn": "1" * 5000, "channel": "email"}
    )
    assert answer.status_code == 400
    assert site.count(cabinet_codes) == 0


def test_a_bad_statement_period_is_said_and_the_page_still_shows(
    site: Cabinet, engine: Engine
) -> None:
    inn = add_customer(engine, email=EMAIL)
    site.sign_in(inn)
    page = site.client.get("/cabinet?from=2026-13-01&to=2026-12-01")
    assert page.status_code == 200
    assert 'id="period-error"' in page.text
    page = site.client.get("/cabinet?from=2026-12-01&to=2026-11-01")
    assert 'id="period-error"' in page.text


def test_a_database_out_of_reach_is_retry_later_never_a_500(
    site: Cabinet, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(engine, email=EMAIL)
    html = site.sign_in(inn)

    def locked(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(overview, "load", locked)
    page = site.client.get("/cabinet")
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    monkeypatch.setattr(access, "session", locked)
    answer = site.client.post("/cabinet/contacts", data={"csrf": site.csrf(html), "email": ""})
    assert answer.status_code == 503
