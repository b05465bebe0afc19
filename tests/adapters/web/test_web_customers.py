"""The back office's customers pages: search, registration, the card with its statement,
charges, payments and notifications, the contacts form and blocking (audited, refused for
roles that may not, refused without the CSRF token), and hostile input."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.factories import Gateway, add_customer, new_inn
from tolom.billing import charges, customers
from tolom.db.schema import agents as agents_table
from tolom.db.schema import audit_log, deliveries
from tolom.db.schema import customers as customers_table
from tolom.db.schema import payments as payments_table
from tolom.events import admin as events_admin
from tolom.formatting import ZONE
from tolom.ledger import statements
from tolom.payments import records, service
from tolom.texts import texts
from tolom.web import customers as customer_pages

RU = texts("ru")
NBSP = "\u00a0"
ROLES = ("admin", "operator", "accountant", "auditor")


# --- helpers ----------------------------------------------------------------------------


def _staff(web: Web, role: str) -> TestClient:
    if role == "operator":
        return web.signed_in()  # the fixture's aida is an operator
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _customer(engine: Engine, inn: str) -> customers.Customer:
    with engine.connect() as conn:
        found = customers.get(conn, inn)
    assert found is not None
    return found


def _count_customers(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(customers_table)).scalar_one())


def _audit(engine: Engine, inn: str) -> list[tuple[str, str, Any, Any, str | None]]:
    """The customer's audit lines, oldest first: (action, actor, before, after, address)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log)
            .where(audit_log.c.object_type == "customer", audit_log.c.object_id == inn)
            .order_by(audit_log.c.id)
        ).all()
    return [
        (
            r.action,
            r.actor,
            json.loads(r.before) if r.before else None,
            json.loads(r.after) if r.after else None,
            r.address,
        )
        for r in rows
    ]


def _audit_count(engine: Engine) -> int:
    """How many audit lines are about customers (logging in writes lines of its own)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(audit_log)
                .where(audit_log.c.object_type == "customer")
            ).scalar_one()
        )


def _rows(html: str, table_id: str, attribute: str) -> list[str]:
    """The `data-<attribute>` of each body row of the table."""
    start = html.index(f'id="{table_id}"')
    table = html[start : html.index("</table>", start)]
    return re.findall(rf'<tr data-{attribute}="([^"]+)"', table)


def _statement_lines(html: str) -> list[tuple[int, int, int]]:
    """(entry id, amount, balance after) of each statement line, as the page says them."""
    return [
        (int(e), int(a), int(b))
        for e, a, b in re.findall(
            r'<tr data-entry="(\d+)" data-amount="(-?\d+)" data-balance="(-?\d+)"', html
        )
    ]


def _pay(gateway: Gateway, inn: str, amount: str) -> int:
    answer = gateway.pay("sochi", inn, amount)
    assert answer["result"] == 0, answer
    return int(answer["prv_txn"])


def _today() -> date:
    return datetime.now(ZONE).date()


def _charge(engine: Engine, inn: str, key: str, amount: int) -> charges.Charge:
    with engine.begin() as conn:
        return charges.create(
            conn,
            charges.ChargeRequest(
                client="apikey:sochi",
                idempotency_key=key,
                inn=inn,
                description=f"Отчёт {key}",
                amount=amount,
            ),
        )


# --- the list ---------------------------------------------------------------------------


def test_search_by_inn_or_name(web: Web, gateway: Gateway) -> None:
    romashka = add_customer(web.engine, name="ОсОО «Ромашка»")
    vasilek = add_customer(web.engine, name="ОсОО «Василёк»", status="blocked")
    ip = add_customer(web.engine, name="ИП Ромашкин")
    _pay(gateway, romashka, "1510.00")
    browser = web.signed_in()

    everyone = browser.get("/customers")
    assert everyone.status_code == 200 and page_of(everyone) == "customers"
    assert _rows(everyone.text, "customers", "inn") == [ip, vasilek, romashka]  # by name
    assert 'id="new-customer" href="/customers/new"' in everyone.text  # an operator may
    assert '<label for="f-q">' in everyone.text

    exact = browser.get("/customers", params={"q": romashka})
    assert _rows(exact.text, "customers", "inn") == [romashka]
    row = exact.text[exact.text.index(f'<tr data-inn="{romashka}"') :]
    row = row[: row.index("</tr>")]
    assert f'href="/customers/{romashka}"' in row and "ОсОО «Ромашка»" in row
    assert f"1{NBSP}510,00{NBSP}сом" in row and "ОсОО" in row and "активен" in row

    prefix = browser.get("/customers", params={"q": romashka[:12]})
    assert romashka in _rows(prefix.text, "customers", "inn")
    spaced = browser.get("/customers", params={"q": f"{romashka[:5]} {romashka[5:]}"})
    assert _rows(spaced.text, "customers", "inn") == [romashka]
    by_name = browser.get("/customers", params={"q": "Ромаш"})
    assert _rows(by_name.text, "customers", "inn") == [ip, romashka]
    blocked = browser.get("/customers", params={"q": "Василёк"})
    assert 'data-status="blocked"' in blocked.text and "заблокирован" in blocked.text

    none = browser.get("/customers", params={"q": "Нет такого"})
    assert none.status_code == 200 and text_of(none.text, "customers-empty") == RU(
        "customers.empty"
    )
    # LIKE's wildcards are searched for as they are, not as "anything".
    assert 'id="customers-empty"' in browser.get("/customers", params={"q": "%"}).text
    assert 'id="customers-empty"' in browser.get("/customers", params={"q": "_"}).text


def test_a_long_list_says_it_was_cut(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    for number in range(3):
        add_customer(web.engine, name=f"ОсОО «Номер {number}»")
    monkeypatch.setattr(customer_pages, "SEARCH_LIMIT", 2)
    page = web.signed_in().get("/customers")
    assert len(_rows(page.text, "customers", "inn")) == 2
    assert text_of(page.text, "customers-more") == RU("customers.more").format(count=2)


# --- the card ---------------------------------------------------------------------------


def test_the_card_shows_the_customer_and_links(web: Web, gateway: Gateway) -> None:
    inn = add_customer(
        web.engine, name="ОсОО «Ромашка»", email="buh@romashka.kg", phone="0555 123 456"
    )
    _pay(gateway, inn, "123456.78")
    browser = web.signed_in()
    page = browser.get(f"/customers/{inn}")
    assert page.status_code == 200 and page_of(page) == "customers-one"
    html = page.text
    assert "<h1>ОсОО «Ромашка»</h1>" in html
    assert f"<title>{RU('customer.title').format(inn=inn)} — Tolom</title>" in html
    assert text_of(html, "f-inn") == inn and text_of(html, "f-legal-form") == "ОсОО"
    assert text_of(html, "f-status") == "активен"
    assert text_of(html, "f-email") == "buh@romashka.kg"
    assert text_of(html, "f-phone") == "+996555123456"
    assert text_of(html, "f-language") == "русский"
    assert text_of(html, "balance") == f"123{NBSP}456,78{NBSP}сом"
    assert f'id="issue-invoice" href="/invoices/new?inn={inn}"' in html
    assert f'id="all-payments" href="/payments?q={inn}"' in html
    assert 'id="block"' in html and 'id="contacts"' in html  # an operator may change
    assert 'aria-current="page"' in html and 'href="/customers" aria-current="page"' in html

    assert browser.get(f"/customers/{new_inn()}").status_code == 404
    unknown = browser.get(f"/customers/{new_inn()}")
    assert page_of(unknown) == "not-found" and RU("customer.not_found.text") in unknown.text
    for bad in ("123", "abc", "0" * 15, "%00", "01904202310427x"):
        assert browser.get(f"/customers/{bad}").status_code == 404, bad


def test_the_card_in_kyrgyz_and_english(web: Web) -> None:
    inn = add_customer(web.engine, status="blocked")
    for language in ("ky", "en"):
        add_user(web.engine, username=f"user-{language}", language=language)
        page = web.signed_in(f"user-{language}").get(f"/customers/{inn}")
        said = texts(language)
        assert page.status_code == 200 and f'<html lang="{language}">' in page.text
        assert text_of(page.text, "f-status") == said("customer.status.blocked")
        assert said("customer.unblock") in page.text
        assert unescape(said("customer.statement")) in unescape(page.text)


# --- the statement ------------------------------------------------------------------------


def test_the_statement_has_running_balances_that_match_the_ledger(
    web: Web, gateway: Gateway
) -> None:
    inn = add_customer(web.engine, name="ОсОО «Ромашка»")
    _pay(gateway, inn, "500.00")
    second = _pay(gateway, inn, "300.00")
    _pay(gateway, inn, "1.50")
    browser = _staff(web, "accountant")
    page = browser.get(f"/payments/{second}")
    answer = browser.post(
        f"/payments/{second}/reverse", data={"csrf": csrf_in(page.text), "reason": "ошибка"}
    )
    assert answer.status_code == 303
    _charge(web.engine, inn, "report-1", 10_000)  # 100 som taken from the balance
    today = _today()

    html = browser.get(
        f"/customers/{inn}", params={"from": today.isoformat(), "to": today.isoformat()}
    ).text
    lines = _statement_lines(html)
    assert [(a, b) for _, a, b in lines] == [
        (50_000, 50_000),
        (30_000, 80_000),
        (150, 80_150),
        (-30_000, 50_150),
        (-10_000, 40_150),
    ]
    # The same numbers as the ledger's own statement and balance.
    customer = _customer(web.engine, inn)
    with web.engine.connect() as conn:
        ledger = customers.statement(conn, customer, today, today)
        balance = customers.balance(conn, customer)
        account = statements.account_by_code(conn, f"customer:{inn}")
    assert account is not None and account.balance == balance == 40_150
    assert [(x.entry_id, x.amount, x.balance) for x in ledger.lines] == lines
    assert text_of(html, "opening") == f"0,00{NBSP}сом"
    assert text_of(html, "credits") == f"801,50{NBSP}сом"
    assert text_of(html, "debits") == f"400,00{NBSP}сом"
    assert text_of(html, "closing") == f"401,50{NBSP}сом" == text_of(html, "balance")
    assert "отмена платежа" in html and "списание" in html
    assert f"401,50{NBSP}сом" in html[html.index("<tfoot>") :]
    assert 'id="statement-cut"' not in html

    # A later range opens with the closing balance; an earlier one is empty.
    tomorrow = (today + timedelta(days=1)).isoformat()
    later = browser.get(f"/customers/{inn}", params={"from": tomorrow, "to": tomorrow}).text
    assert text_of(later, "opening") == text_of(later, "closing") == f"401,50{NBSP}сом"
    assert 'id="statement-empty"' in later and _statement_lines(later) == []
    earlier = browser.get(
        f"/customers/{inn}",
        params={"from": (today - timedelta(days=40)).isoformat(), "to": "2000-01-01"},
    )
    assert earlier.status_code == 400  # from after to
    before = (today - timedelta(days=1)).isoformat()
    old = browser.get(f"/customers/{inn}", params={"from": "2000-01-01", "to": before})
    assert old.status_code == 400  # longer than a year
    last_month = today.replace(day=1) - timedelta(days=1)
    quiet = browser.get(
        f"/customers/{inn}",
        params={"from": last_month.replace(day=1).isoformat(), "to": last_month.isoformat()},
    ).text
    assert text_of(quiet, "opening") == text_of(quiet, "closing") == f"0,00{NBSP}сом"

    # By default: this month in Bishkek, today included.
    default = browser.get(f"/customers/{inn}").text
    assert f'id="f-from" name="from" type="date" value="{today.replace(day=1)}"' in default
    assert f'id="f-to" name="to" type="date" value="{today}"' in default
    assert _statement_lines(default) == lines


def _statement_texts(html: str) -> list[str]:
    """The description cell of each statement line, as the page says it."""
    start = html.index('id="statement-lines"')
    table = html[start : html.index("</table>", start)]
    rows = re.findall(r"<tr data-entry=.*?</tr>", table, flags=re.S)
    return [unescape(re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)[3]) for row in rows]


@pytest.mark.parametrize("language", ["ru", "ky", "en"])
def test_statement_lines_are_said_in_the_page_language(
    web: Web, gateway: Gateway, language: str
) -> None:
    """The journal stores each entry's description in Russian; the statement says the line
    in the user's language from what the entry records (the API keeps the stored text)."""
    inn = add_customer(web.engine, name="ОсОО «Ромашка»")
    first = _pay(gateway, inn, "500.00")
    second = _pay(gateway, inn, "300.00")
    with web.engine.begin() as conn:
        assert service.reverse(conn, second, "ошибка кассира", "user:aida").outcome.name == "OK"
    with web.engine.begin() as conn:
        charge = charges.create(
            conn,
            charges.ChargeRequest(
                client="apikey:sochi",
                idempotency_key="report-vat",
                inn=inn,
                description="НДС за октябрь 2026",
                amount=10_000,
                report=charges.Report("R-1", "sti", "vat", "2026-10"),
            ),
        )
    with web.engine.begin() as conn:
        charges.refund(conn, charge.id, "отчёт отозван")
    with web.engine.connect() as conn:
        agent = conn.execute(
            select(agents_table.c.name, payments_table.c.txn_id)
            .join(payments_table, payments_table.c.agent_id == agents_table.c.id)
            .where(payments_table.c.id == second)
        ).one()
    add_user(web.engine, username=f"user-{language}", language=language)
    html = web.signed_in(f"user-{language}").get(f"/customers/{inn}").text
    said = texts(language)
    top_up = said("customer.line.payment").format(agent=agent.name, reference=agent.txn_id)
    assert _statement_texts(html) == [
        said("customer.line.payment").format(agent=agent.name, reference=_txn(web, first)),
        top_up,
        said("customer.line.reversal").format(number=second) + ": ошибка кассира",
        said("customer.line.charge").format(number=charge.id) + ": НДС за октябрь 2026",
        said("customer.line.charge_refund").format(number=charge.id) + ": отчёт отозван",
    ]
    if language != "ru":  # none of the journal's Russian words
        for russian in ("Пополнение", "Отмена платежа", "Списание", "Возврат", "отчёт СОЧИ"):
            assert russian not in " ".join(_statement_texts(html)), russian
    # The API's statement is not the page's: it keeps the stored description.
    with web.engine.connect() as conn:
        stored = customers.statement(conn, _customer(web.engine, inn), _today(), _today())
    assert stored.lines[3].description == f"Списание №{charge.id}: отчёт СОЧИ"


def _txn(web: Web, payment_id: int) -> str:
    with web.engine.connect() as conn:
        return str(
            conn.execute(
                select(payments_table.c.txn_id).where(payments_table.c.id == payment_id)
            ).scalar_one()
        )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"from": "вчера"}, "customer.error.bad_date"),
        ({"from": "2026-02-30"}, "customer.error.bad_date"),
        ({"to": "01.11.2026"}, "customer.error.bad_date"),
        ({"to": "20261101"}, "customer.error.bad_date"),
        ({"from": "2026-11-01T00:00"}, "customer.error.bad_date"),
        ({"from": "9" * 5000}, "customer.error.bad_date"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "customer.error.period_order"),
        ({"from": "2025-01-01", "to": "2026-11-01"}, "customer.error.period_too_long"),
    ],
)
def test_a_bad_statement_range_is_said_next_to_the_form(
    web: Web, params: dict[str, str], key: str
) -> None:
    inn = add_customer(web.engine)
    page = web.signed_in().get(f"/customers/{inn}", params=params)
    assert page.status_code == 400 and page_of(page) == "customers-one"
    message = RU(key).format(days=customers.MAX_STATEMENT_DAYS)
    assert unescape(text_of(page.text, "statement-error")) == message
    assert 'id="statement-lines"' not in page.text and 'id="opening"' not in page.text
    assert text_of(page.text, "f-inn") == inn  # the rest of the card is there
    assert "\x00" not in page.text and "9" * 100 not in page.text


def test_a_long_statement_is_cut_with_a_note(
    web: Web, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(web.engine)
    for amount in ("10.00", "20.00", "30.00"):
        _pay(gateway, inn, amount)
    monkeypatch.setattr(customer_pages, "STATEMENT_LINES", 2)
    html = web.signed_in().get(f"/customers/{inn}").text
    assert [(a, b) for _, a, b in _statement_lines(html)] == [(1000, 1000), (2000, 3000)]
    assert RU("customer.statement_cut").format(count=2) == text_of(html, "statement-cut")
    # The totals and the closing balance still cover the whole period.
    assert text_of(html, "credits") == f"60,00{NBSP}сом"
    assert text_of(html, "closing") == f"60,00{NBSP}сом" == text_of(html, "balance")
    assert "<tfoot>" not in html


# --- charges, payments, notifications -----------------------------------------------------


def test_awaiting_and_recent_charges(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    other = add_customer(web.engine)
    _pay(gateway, inn, "500.00")
    charged = _charge(web.engine, inn, "r-1", 5_000)
    first = _charge(web.engine, inn, "r-2", 100_000)
    second = _charge(web.engine, inn, "r-3", 2_500)  # waits behind the first one
    _charge(web.engine, other, "r-4", 7_000)
    assert charged.status == "charged"
    assert first.status == second.status == "awaiting_payment"

    html = web.signed_in().get(f"/customers/{inn}").text
    total = html[html.index('id="awaiting-total"') :]
    assert 'data-count="2" data-total="102500"' in total
    assert text_of(html, "awaiting-total") == RU("customer.awaiting_some").format(
        count="2", amount=f"1{NBSP}025,00{NBSP}сом"
    )
    assert _rows(html, "awaiting-charges", "charge") == [str(second.id), str(first.id)]
    assert RU("customer.charge_status.awaiting_payment") == "Ожидает оплаты"
    assert "Ожидает оплаты" in html and "Отчёт r-2" in html
    assert _rows(html, "charges", "charge") == [str(second.id), str(first.id), str(charged.id)]
    assert "Отчёт r-4" not in html  # another customer's

    one = web.signed_in().get(f"/customers/{other}").text
    assert text_of(one, "awaiting-total") == RU("customer.awaiting_some").format(
        count="1", amount=f"70,00{NBSP}сом"
    )
    empty = web.signed_in().get(f"/customers/{add_customer(web.engine)}").text
    assert text_of(empty, "awaiting-total") == RU("customer.awaiting_none")
    assert 'id="charges-empty"' in empty and 'id="awaiting-charges"' not in empty


def test_the_latest_payments_newest_first_and_linked(
    web: Web, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(web.engine)
    other = add_customer(web.engine)
    ids = [_pay(gateway, inn, f"{n}.00") for n in range(1, 5)]
    _pay(gateway, other, "9.00")
    monkeypatch.setattr(customer_pages, "PAYMENTS_SHOWN", 3)
    html = web.signed_in().get(f"/customers/{inn}").text
    assert _rows(html, "customer-payments", "id") == [str(i) for i in reversed(ids)][:3]
    assert f'<a href="/payments/{ids[-1]}">{ids[-1]}</a>' in html
    with web.engine.connect() as conn:
        found = records.search(conn, records.PaymentFilter(account=inn), before_id=None, limit=3)
    assert [p.id for p in found] == [int(i) for i in _rows(html, "customer-payments", "id")]
    empty = web.signed_in().get(f"/customers/{add_customer(web.engine)}").text
    assert 'id="payments-empty"' in empty


def test_the_notifications_sent(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine, email="buh@romashka.kg", phone="+996 555 123 456")
    other = add_customer(web.engine, email="other@example.kg")
    _pay(gateway, inn, "100.00")
    _pay(gateway, other, "100.00")
    customer = _customer(web.engine, inn)
    with web.engine.begin() as conn:
        [sms, email] = events_admin.customer_notifications(conn, customer.id)
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == sms.delivery.id)
            .values(status="dead", attempts=8, last_error="<b>SMS шлюз</b> недоступен")
        )
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == email.delivery.id)
            .values(status="delivered", attempts=1, delivered_at=datetime.now(UTC))
        )
    assert (sms.delivery.destination, email.delivery.destination) == ("sms", "email")

    html = web.signed_in().get(f"/customers/{inn}").text
    assert _rows(html, "notifications", "delivery") == [
        str(sms.delivery.id),
        str(email.delivery.id),
    ]
    table = html[
        html.index('id="notifications"') : html.index("</table>", html.index('id="notifications"'))
    ]
    assert "buh@romashka.kg" in table and "+996555123456" in table
    assert "other@example.kg" not in table  # another customer's
    assert "платёж принят" in table and "SMS" in table and "E-mail" in table
    assert "не доставлено" in table and "доставлено" in table and ">8<" in table
    assert "&lt;b&gt;SMS шлюз&lt;/b&gt; недоступен" in table and "<b>SMS" not in table
    quiet = web.signed_in().get(f"/customers/{add_customer(web.engine)}").text
    assert text_of(quiet, "notifications-empty") == RU("customer.no_notifications")


# --- registration -----------------------------------------------------------------------------


def test_an_operator_registers_a_customer(web: Web) -> None:
    browser = web.signed_in()
    form = browser.get("/customers/new")
    assert form.status_code == 200 and page_of(form) == "customers-new"
    for field in ("inn", "name", "legal_form", "email", "phone", "language"):
        assert f'<label for="{field}">' in form.text
    inn = new_inn()
    answer = browser.post(
        "/customers/new",
        data={
            "csrf": csrf_in(form.text),
            "inn": f"{inn[:4]} {inn[4:]}",
            "name": "  ОсОО «Ромашка» ",
            "legal_form": "ОсОО",
            "email": "Buh@Romashka.KG",
            "phone": "0555 123 456",
            "language": "ky",
        },
        headers={"X-Forwarded-For": "10.9.8.7"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/customers/{inn}?done=created"
    card = browser.get(answer.headers["location"])
    assert text_of(card.text, "done") == RU("customer.done.created")
    assert text_of(card.text, "balance") == f"0,00{NBSP}сом"
    created = _customer(web.engine, inn)
    assert (created.name, created.email, created.phone, created.language) == (
        "ОсОО «Ромашка»",
        "Buh@romashka.kg",
        "+996555123456",
        "ky",
    )
    [(action, actor, before, after, _address)] = _audit(web.engine, inn)
    assert (action, actor, before) == ("customer.create", "user:aida", None)
    assert after == {
        "inn": inn,
        "name": "ОсОО «Ромашка»",
        "legal_form": "ОсОО",
        "status": "active",
        "email": "Buh@romashka.kg",
        "phone": "+996555123456",
        "language": "ky",
    }

    # The same INN again: refused with a link to the one there is.
    again = browser.post(
        "/customers/new",
        data={
            "csrf": csrf_in(form.text),
            "inn": inn,
            "name": "Другое",
            "legal_form": "ИП",
            "language": "ru",
        },
    )
    assert again.status_code == 409
    message = RU("customers.error.exists").format(inn=inn)
    assert unescape(text_of(again.text, "inn-error")).startswith(message)
    assert f'id="existing-customer" href="/customers/{inn}"' in again.text
    assert _count_customers(web.engine) == 1 and len(_audit(web.engine, inn)) == 1


def test_registration_says_every_bad_field_and_changes_nothing(web: Web) -> None:
    browser = web.signed_in()
    csrf = csrf_in(browser.get("/customers/new").text)
    answer = browser.post(
        "/customers/new",
        data={
            "csrf": csrf,
            "inn": "12345",
            "name": "ОсОО «Ромашка»",
            "legal_form": "ОсОО",
            "email": "не-адрес",
            "phone": "12",
            "language": "de",
        },
    )
    assert answer.status_code == 422 and page_of(answer) == "customers-new"
    html = answer.text
    assert text_of(html, "inn-error") == RU("customers.error.inn")
    assert text_of(html, "email-error") == RU("customers.error.email").format(max=254)
    assert text_of(html, "phone-error") == RU("customers.error.phone")
    assert text_of(html, "language-error") == RU("customers.error.language")
    assert 'id="customer-errors"' in html and 'aria-invalid="true"' in html
    assert 'value="ОсОО «Ромашка»"' in unescape(html)  # what was typed stays
    for data, field, key in [
        ({"name": "   "}, "name", "customers.error.name_empty"),
        ({"name": "Я" * 301}, "name", "customers.error.name_too_long"),
        ({"legal_form": "LLC"}, "legal_form", "customers.error.legal_form"),
    ]:
        body = {
            "csrf": csrf,
            "inn": new_inn(),
            "name": "ИП Асанов",
            "legal_form": "ИП",
            "language": "ru",
            **data,
        }
        refused = browser.post("/customers/new", data=body)
        assert refused.status_code == 422, data
        assert text_of(refused.text, f"{field}-error") == RU(key).format(max=300)
    assert _count_customers(web.engine) == 0 and _audit_count(web.engine) == 0


# --- contacts ---------------------------------------------------------------------------------


def test_contacts_change_is_audited(web: Web) -> None:
    inn = add_customer(web.engine, email="old@example.kg")
    browser = web.signed_in()
    page = browser.get(f"/customers/{inn}")
    csrf = csrf_in(page.text)
    assert 'value="old@example.kg"' in page.text
    for field in ("contact-email", "contact-phone", "contact-language"):
        assert f'<label for="{field}">' in page.text

    changed = browser.post(
        f"/customers/{inn}/contacts",
        data={"csrf": csrf, "email": "", "phone": "+996 (555) 12-34-56", "language": "ky"},
        headers={"X-Forwarded-For": "10.1.1.1"},
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == f"/customers/{inn}?done=contacts"
    after = _customer(web.engine, inn)
    assert (after.email, after.phone, after.language) == (None, "+996555123456", "ky")
    [(action, actor, before_, after_, _)] = _audit(web.engine, inn)
    assert (action, actor) == ("customer.contacts", "user:aida")
    assert before_ == {"email": "old@example.kg", "phone": None, "language": "ru"}
    assert after_ == {"email": None, "phone": "+996555123456", "language": "ky"}
    card = browser.get(changed.headers["location"])
    assert text_of(card.text, "done") == RU("customer.done.contacts")
    assert text_of(card.text, "f-phone") == "+996555123456"
    assert text_of(card.text, "f-email") == RU("customer.no_contact")

    same = browser.post(
        f"/customers/{inn}/contacts",
        data={"csrf": csrf, "email": "", "phone": "0555123456", "language": "ky"},
    )
    assert same.headers["location"] == f"/customers/{inn}?done=contacts_same"
    assert len(_audit(web.engine, inn)) == 1  # nothing changed, nothing written

    bad = browser.post(
        f"/customers/{inn}/contacts",
        data={"csrf": csrf, "email": "a@b", "phone": "555", "language": "en"},
    )
    assert bad.status_code == 422 and page_of(bad) == "customers-one"
    assert text_of(bad.text, "contact-email-error") == RU("customers.error.email").format(max=254)
    assert text_of(bad.text, "contact-phone-error") == RU("customers.error.phone")
    assert text_of(bad.text, "contact-language-error") == RU("customers.error.language")
    assert 'value="a@b"' in bad.text  # the form keeps what was typed
    assert _customer(web.engine, inn) == after and len(_audit(web.engine, inn)) == 1

    missing = browser.post(
        f"/customers/{new_inn()}/contacts", data={"csrf": csrf, "language": "ru"}
    )
    assert missing.status_code == 404


# --- blocking -------------------------------------------------------------------------------


def test_block_and_unblock_are_audited(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    browser = web.signed_in()
    page = browser.get(f"/customers/{inn}")
    csrf = csrf_in(page.text)
    assert 'id="block"' in page.text and 'id="unblock"' not in page.text

    blocked = browser.post(f"/customers/{inn}/block", data={"csrf": csrf})
    assert blocked.status_code == 303
    assert blocked.headers["location"] == f"/customers/{inn}?done=blocked"
    assert _customer(web.engine, inn).status == "blocked"
    assert gateway.check("sochi", inn)["result"] == 79  # agents are refused
    card = browser.get(blocked.headers["location"]).text
    assert text_of(card, "done") == RU("customer.done.blocked")
    assert text_of(card, "f-status") == "заблокирован" and 'id="blocked-note"' in card
    assert 'id="unblock"' in card and 'id="block"' not in card

    again = browser.post(f"/customers/{inn}/block", data={"csrf": csrf})
    assert again.headers["location"] == f"/customers/{inn}?done=already_blocked"
    unblocked = browser.post(f"/customers/{inn}/unblock", data={"csrf": csrf})
    assert unblocked.headers["location"] == f"/customers/{inn}?done=unblocked"
    assert _customer(web.engine, inn).status == "active"
    assert gateway.check("sochi", inn)["result"] == 0
    assert [(a, actor, b, c) for a, actor, b, c, _ in _audit(web.engine, inn)] == [
        ("customer.block", "user:aida", {"status": "active"}, {"status": "blocked"}),
        ("customer.unblock", "user:aida", {"status": "blocked"}, {"status": "active"}),
    ]
    assert browser.post(f"/customers/{new_inn()}/block", data={"csrf": csrf}).status_code == 404
    assert browser.post("/customers/x/unblock", data={"csrf": csrf}).status_code == 404


# --- who may ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_and_only_an_operator_changes(web: Web, role: str) -> None:
    inn = add_customer(web.engine, email="old@example.kg")
    browser = _staff(web, role)
    listing = browser.get("/customers")
    card = browser.get(f"/customers/{inn}")
    assert listing.status_code == card.status_code == 200
    may = role == "operator"
    assert ('id="new-customer"' in listing.text) is may
    for form in ('id="block"', 'id="contacts"'):
        assert (form in card.text) is may, form
    assert ('id="issue-invoice"' in card.text) is may  # the invoices action
    assert browser.get("/customers/new").status_code == (200 if may else 403)
    if may:
        return
    csrf = csrf_in(card.text)  # the header's forms carry the session's token
    answers = [
        browser.post(
            "/customers/new",
            data={
                "csrf": csrf,
                "inn": new_inn(),
                "name": "ИП А",
                "legal_form": "ИП",
                "language": "ru",
            },
        ),
        browser.post(f"/customers/{inn}/block", data={"csrf": csrf}),
        browser.post(f"/customers/{inn}/unblock", data={"csrf": csrf}),
        browser.post(
            f"/customers/{inn}/contacts",
            data={"csrf": csrf, "email": "", "phone": "", "language": "ky"},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 403 and page_of(answer) == "forbidden"
    assert _count_customers(web.engine) == 1 and _audit_count(web.engine) == 0
    customer = _customer(web.engine, inn)
    assert (customer.status, customer.email, customer.language) == (
        "active",
        "old@example.kg",
        "ru",
    )


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_posts_without_the_csrf_token_change_nothing(web: Web, token: str | None) -> None:
    inn = add_customer(web.engine)
    browser = web.signed_in()
    extra = {} if token is None else {"csrf": token}
    answers = [
        browser.post(
            "/customers/new",
            data={**extra, "inn": new_inn(), "name": "ИП А", "legal_form": "ИП", "language": "ru"},
        ),
        browser.post(f"/customers/{inn}/block", data=extra),
        browser.post(f"/customers/{inn}/contacts", data={**extra, "language": "ky"}),
    ]
    for answer in answers:
        assert answer.status_code == 403 and page_of(answer) == "csrf"
    assert _count_customers(web.engine) == 1 and _audit_count(web.engine) == 0
    customer = _customer(web.engine, inn)
    assert (customer.status, customer.language) == ("active", "ru")
    # Without a session at all: to the login page, nothing changed.
    stranger = web.browser()
    assert stranger.post(f"/customers/{inn}/block", data={}).status_code == 303
    assert stranger.get(f"/customers/{inn}").headers["location"].startswith("/login?next=")
    assert _customer(web.engine, inn).status == "active"


# --- hostile input ----------------------------------------------------------------------------


def test_hostile_input_is_refused_or_escaped(web: Web) -> None:
    inn = add_customer(web.engine, name='<script>alert("x")</script> & Co')
    browser = web.signed_in()
    listing = browser.get("/customers", params={"q": "<script>"})
    assert listing.status_code == 200 and "<script>alert" not in listing.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in listing.text
    card = browser.get(f"/customers/{inn}")
    assert "<script>alert" not in card.text and "&lt;script&gt;" in card.text

    assert browser.get("/customers", params={"q": "a\x00b"}).status_code == 400
    assert browser.get("/customers", params={"q": "Я" * 101}).status_code == 400
    assert browser.get("/customers", params={"q": "' OR 1=1 --"}).status_code == 200

    csrf = csrf_in(card.text)
    nul = browser.post(
        "/customers/new",
        data={
            "csrf": csrf,
            "inn": new_inn(),
            "name": "ИП\x00А",
            "legal_form": "ИП",
            "language": "ru",
        },
    )
    assert nul.status_code == 400 and page_of(nul) == "bad-request"
    long = browser.post(
        "/customers/new",
        data={
            "csrf": csrf,
            "inn": new_inn(),
            "name": "ИП А",
            "legal_form": "ИП",
            "language": "ru",
            "email": "a" * 5000,
        },
    )
    assert long.status_code == 400
    contacts = browser.post(
        f"/customers/{inn}/contacts",
        data={"csrf": csrf, "email": "x@y.kg\x00", "phone": "", "language": "ru"},
    )
    assert contacts.status_code == 400
    assert _count_customers(web.engine) == 1 and _audit_count(web.engine) == 0
    # A name with U+0000 is refused by the core rule too (the API's and the CLI's).
    with pytest.raises(customers.CustomerError):
        customers.validate(new_inn(), "ИП\x00А", "ИП")


# --- for tests.adapters.web.test_web: every template in every language ------------------------------------


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for each customers template with every branch that shows text (for
    `tests.adapters.web.test_web::_samples`)."""
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    customer = customers.Customer(
        1, "01904202310427", "ОсОО «Тест»", "ОсОО", "blocked", 1, "a@b.kg", "+996555123456"
    )
    line = statements.StatementLine(1, 1, "payment", moment_, "Пополнение", 100, 100)
    statement = statements.Statement(1, moment_, moment_, 0, 100, 100, 0, (line,), False)
    charge = charges.Charge(
        id=1,
        inn=customer.inn,
        customer_name=customer.name,
        client="apikey:sochi",
        idempotency_key="k",
        amount=100,
        tariff="t",
        report=charges.Report(),
        description="Отчёт",
        status="awaiting_payment",
        created_at=moment_,
        settled_at=None,
        closed_at=None,
        settled_by_payment_id=None,
        refund_reason=None,
    )
    payment = records.PaymentRecord(
        id=7,
        agent="cash",
        agent_kind="cash_desk",
        txn_id="1",
        service="sochi",
        account=customer.inn,
        amount=100,
        status="accepted",
        txn_date=moment_,
        txn_date_raw="20261123140000",
        business_date=date(2026, 11, 23),
        created_at=moment_,
        entry_id=1,
        invoice_number=None,
        reversal=None,
        manual=None,
    )
    delivery = events_admin.Delivery(
        1, 1, "payment.accepted", "sms", "+996555123456", "dead", 3, None, "ошибка", moment_
    )
    card = customer_pages.Card(
        customer=customer,
        balance=100,
        statement=statement,
        awaiting=[charge],
        awaiting_count=2,
        awaiting_total=200,
        recent_charges=[charge],
        payments=[payment],
        notifications=[events_admin.Notification(delivery, moment_)],
    )
    period = customer_pages.Period(
        "2026-11-01", "2026-11-30", date(2026, 11, 1), date(2026, 11, 30)
    )
    contacts = customer_pages.ContactsForm(
        email="a@b",
        phone="1",
        language="ru",
        errors={"email": "e", "phone": "p", "language": "l", "form": "f"},
    )
    form = customer_pages.NewForm.model_construct(  # as typed: the INN is wrong
        inn="1",
        errors={
            k: "x" for k in ("inn", "name", "legal_form", "email", "phone", "language", "form")
        },
        exists="01904202310427",
    )
    found = customer_pages.Found(customer, 100)
    return {
        "web/customers.html": {
            **common,
            "page": "customers",
            "q": "Тест",
            "max_query": 100,
            "rows": [found],
            "more": True,
            "limit": 50,
            "may_create": True,
        },
        "web/customer_new.html": {
            **common,
            "page": "customers-new",
            "form": form,
            "legal_forms": customers.LEGAL_FORMS,
            "languages_of_notifications": customers.LANGUAGES,
            "max_name": 300,
            "max_email": 254,
        },
        "web/customer.html": {
            **common,
            "page": "customers-one",
            "c": card,
            "customer": customer,
            "period": period,
            "contacts": contacts,
            "languages_of_notifications": customers.LANGUAGES,
            "may_change": True,
            "may_invoice": True,
            "done": "сделано",
            "error": "ошибка",
            "statement_limit": 500,
            "max_days": 366,
            "max_email": 254,
            "charges_shown": 20,
        },
    }
