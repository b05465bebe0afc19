"""The back office's signature orders: the work queue (oldest paid first) with its filters
and keyset pages, the signatures about to expire, one order with its history, and the
transitions — start, issue, cancel with the policy's refund confirmed first — audited like
the API's, refused for every role but the operator's, refused without the CSRF token."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.core.billing.test_orders import HEAD, balance, invoice_for, orders_of, pay
from tests.factories import Gateway, add_customer
from tolom.billing import customers, orders
from tolom.db.schema import audit_log, signature_orders
from tolom.web import orders as order_pages

NBSP = "\u00a0"


def _ids(html: str, table: str = "orders") -> list[int]:
    if f'id="{table}"' not in html:
        return []
    start = html.index(f'id="{table}"')
    part = html[start : html.index("</table>", start)]
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', part)]


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _order(engine: Engine, order_id: int) -> orders.Order:
    with engine.connect() as conn:
        found = orders.get(conn, order_id)
    assert found is not None
    return found


def _paid_orders(web: Web, gateway: Gateway, units: int = 1, inn: str | None = None) -> list[int]:
    invoice = invoice_for(web.engine, inn or add_customer(web.engine), [("eds-head", units)])
    pay(gateway, invoice)
    return [o.id for o in orders_of(web.engine, invoice)]


def _audit(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
            )
        )


def _post(browser: TestClient, path: str, **data: str) -> Any:
    csrf = csrf_in(browser.get("/orders").text)
    return browser.post(path, data={"csrf": csrf, **data})


# --- the lists -------------------------------------------------------------------------------


def test_the_queue_lists_oldest_paid_first_with_filters_and_pages(
    web: Web, gateway: Gateway
) -> None:
    inn = add_customer(web.engine)
    first, second = _paid_orders(web, gateway, 2, inn)
    other_invoice = invoice_for(web.engine, add_customer(web.engine), [("eds-rutoken", 1)])
    pay(gateway, other_invoice)
    [third] = [o.id for o in orders_of(web.engine, other_invoice)]
    with web.engine.begin() as conn:
        orders.start(conn, second)
    browser = web.signed_in()

    page = browser.get("/orders")
    assert page.status_code == 200 and page_of(page) == "orders"
    assert _ids(page.text) == [first, third]  # the queue: paid, oldest first
    assert 'id="tab-paid" href="/orders?status=paid" aria-current="page"' in page.text
    assert f"1{NBSP}510,00{NBSP}сом" in page.text and 'for="f-inn"' in page.text
    assert _ids(browser.get("/orders", params={"status": "in_production"}).text) == [second]
    assert _ids(browser.get("/orders", params={"status": "all"}).text) == [third, second, first]
    assert _ids(browser.get("/orders", params={"inn": inn}).text) == [first]
    assert _ids(browser.get("/orders", params={"status": "all", "inn": inn}).text) == [
        second,
        first,
    ]
    by_invoice = {"status": "all", "invoice": other_invoice.number}
    assert _ids(browser.get("/orders", params=by_invoice).text) == [third]
    empty = browser.get("/orders", params={"status": "cancelled"})
    assert _ids(empty.text) == [] and text_of(empty.text, "orders-empty")

    for bad in (
        {"status": "lost"},
        {"inn": "12ab"},
        {"inn": "1" * 15},
        {"invoice": "x\x00"},
        {"invoice": "9" * 40},
        {"after": "abc"},
        {"before": "5"},  # the queue pages forwards only
        {"status": "all", "after": "5"},
    ):
        assert browser.get("/orders", params=bad).status_code == 400, bad

    original = order_pages.PAGE_SIZE
    order_pages.PAGE_SIZE = 1
    try:
        one = browser.get("/orders")
        assert _ids(one.text) == [first]
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', one.text)[1])
        assert "status=paid" in link and f"after={first}" in link
        two = browser.get(link)
        assert _ids(two.text) == [third] and 'id="next-page"' not in two.text
        assert 'id="first-page"' in two.text
        newest = browser.get("/orders", params={"status": "all"})
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', newest.text)[1])
        assert f"before={third}" in link
        assert _ids(browser.get(link).text) == [second]
    finally:
        order_pages.PAGE_SIZE = original


def _issued_until(web: Web, gateway: Gateway, valid_until: date) -> int:
    [order_id] = _paid_orders(web, gateway)
    with web.engine.begin() as conn:
        orders.start(conn, order_id)
        orders.issue(conn, order_id, validity_months=12)
        conn.execute(
            signature_orders.update()
            .where(signature_orders.c.id == order_id)
            .values(valid_until=valid_until)
        )
    return order_id


def test_signatures_expiring_soon(web: Web, gateway: Gateway) -> None:
    today = orders.local_date(datetime.now(UTC))
    soon = _issued_until(web, gateway, today + timedelta(days=5))
    later = _issued_until(web, gateway, today + timedelta(days=45))
    _issued_until(web, gateway, today - timedelta(days=1))  # expired: not listed
    browser = web.signed_in()

    page = browser.get("/orders/expiring")
    assert page.status_code == 200 and page_of(page) == "orders-expiring"
    assert _ids(page.text) == [soon]  # within the default 30 days
    assert 'data-days-left="5"' in page.text
    assert 'id="tab-expiring" href="/orders/expiring" aria-current="page"' in page.text
    assert _ids(browser.get("/orders/expiring", params={"days": "60"}).text) == [soon, later]
    none = browser.get("/orders/expiring", params={"days": "2"})
    assert _ids(none.text) == [] and "ближайшие 2 дня, нет" in text_of(none.text, "orders-empty")
    for bad in ("-1", "abc", "367", "1e3"):
        assert browser.get("/orders/expiring", params={"days": bad}).status_code == 400
    assert browser.get("/orders/expiring", params={"after": "x"}).status_code == 400


# --- one order and its transitions ---------------------------------------------------------------


def test_an_operator_starts_and_issues_an_order(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine, name="ОсОО «Заказчик»")
    [number] = _paid_orders(web, gateway, inn=inn)
    order = _order(web.engine, number)
    browser = web.signed_in()

    page = browser.get(f"/orders/{number}")
    assert page.status_code == 200 and page_of(page) == "orders-one"
    html = page.text
    assert f'id="invoice-link" href="/invoices/{order.invoice_number}"' in html
    assert f'id="payment-link" href="/payments/{order.payment_id}"' in html
    assert "ОсОО «Заказчик»" in html and f'href="/customers/{inn}"' in html
    assert 'data-status="paid"' in html and 'id="h-created"' in html
    assert 'id="start"' in html and 'id="issue"' not in html and 'id="cancel"' in html
    assert "50%" in text_of(html, "start-hint")

    started = _post(browser, f"/orders/{number}/start")
    assert (
        started.status_code == 303 and started.headers["location"] == f"/orders/{number}?done=start"
    )
    assert _order(web.engine, number).status == "in_production"
    shown = browser.get(started.headers["location"]).text
    assert text_of(shown, "order-done") == "Производство начато."
    assert 'id="h-started"' in shown and 'id="issue"' in shown and 'id="start"' not in shown
    today = orders.local_date(datetime.now(UTC))
    assert orders.add_months(today, 12).strftime("%d.%m.%Y") in text_of(shown, "issue-hint")
    [line] = _audit(web.engine, "order.start")
    assert (line.actor, line.object_type, line.object_id) == ("user:aida", "order", str(number))
    assert line.address == "testclient"
    assert '"paid"' in line.before and '"in_production"' in line.after

    again = _post(browser, f"/orders/{number}/start")  # a repeat changes nothing
    assert again.headers["location"] == f"/orders/{number}?done=unchanged"
    assert len(_audit(web.engine, "order.start")) == 1

    issued = _post(browser, f"/orders/{number}/issue")
    assert issued.headers["location"] == f"/orders/{number}?done=issue"
    done = _order(web.engine, number)
    assert done.status == "issued" and done.valid_until == orders.add_months(today, 12)
    shown = browser.get(issued.headers["location"]).text
    assert text_of(shown, "order-done") == "Заказ выдан."
    assert f'data-date="{done.valid_until.isoformat()}"' in shown
    assert 'id="start"' not in shown and 'id="issue"' not in shown and 'id="cancel"' not in shown
    [line] = _audit(web.engine, "order.issue")
    assert done.valid_until.isoformat() in line.after and line.actor == "user:aida"


def test_cancelling_shows_the_refund_then_credits_the_balance(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine, name="ОсОО «Возврат»")
    first, second = _paid_orders(web, gateway, 2, inn)
    browser = web.signed_in()

    page = browser.get(f"/orders/{first}").text
    assert f'id="refund-policy" data-tyiyn="{HEAD}"' in page
    assert f"1{NBSP}510,00{NBSP}сом" in text_of(page, "refund-policy")
    assert "ОсОО «Возврат»" in text_of(page, "refund-where")

    no_reason = _post(browser, f"/orders/{first}/cancel", reason="  ")
    assert no_reason.status_code == 422
    assert text_of(no_reason.text, "order-error") == "Укажите причину отмены."

    asked = _post(browser, f"/orders/{first}/cancel", reason="Клиент отказался")
    assert asked.status_code == 200 and 'id="cancel-confirm"' in asked.text
    assert f'id="confirm-refund" data-tyiyn="{HEAD}"' in asked.text
    assert text_of(asked.text, "confirm-reason") == "Клиент отказался"
    assert _order(web.engine, first).status == "paid"  # asking changes nothing
    assert "order.cancel" not in audit_actions(web.engine)

    done = _post(
        browser, f"/orders/{first}/cancel", reason="Клиент отказался", confirm="1", refund=str(HEAD)
    )
    assert done.headers["location"] == f"/orders/{first}?done=cancel"
    cancelled = _order(web.engine, first)
    assert cancelled.status == "cancelled" and cancelled.refund_amount == HEAD
    assert balance(web.engine, inn) == HEAD
    shown = browser.get(done.headers["location"]).text
    assert text_of(shown, "f-cancel-reason") == "Клиент отказался"
    assert f'id="f-refund" data-tyiyn="{HEAD}"' in shown
    [line] = _audit(web.engine, "order.cancel")
    assert '"1510.00"' in line.after and line.actor == "user:aida"  # as the API writes it

    # The second one is put into production after its refund was shown: the confirmed sum
    # is no longer the policy's, so nothing happens and the new sum is asked for.
    asked = _post(browser, f"/orders/{second}/cancel", reason="Передумали")
    assert f'data-tyiyn="{HEAD}"' in asked.text
    with web.engine.begin() as conn:
        orders.start(conn, second)
    stale = _post(
        browser, f"/orders/{second}/cancel", reason="Передумали", confirm="1", refund=str(HEAD)
    )
    assert stale.status_code == 409
    half = HEAD * 50 // 100
    assert text_of(stale.text, "order-error").startswith("Заказ изменился")
    assert f'id="confirm-refund" data-tyiyn="{half}"' in stale.text
    assert _order(web.engine, second).status == "in_production"
    assert balance(web.engine, inn) == HEAD
    done = _post(
        browser, f"/orders/{second}/cancel", reason="Передумали", confirm="1", refund=str(half)
    )
    assert done.status_code == 303
    assert balance(web.engine, inn) == HEAD + half
    assert len(_audit(web.engine, "order.cancel")) == 2


def test_refused_transitions_say_why_and_change_nothing(web: Web, gateway: Gateway) -> None:
    [issued] = _paid_orders(web, gateway)
    with web.engine.begin() as conn:
        orders.start(conn, issued)
        orders.issue(conn, issued, validity_months=12)
    browser = web.signed_in()
    before = audit_actions(web.engine)

    cancel = _post(browser, f"/orders/{issued}/cancel", reason="поздно", confirm="1", refund="0")
    assert cancel.status_code == 409
    assert text_of(cancel.text, "order-error") == (
        "Нельзя отменить заказ: заказ выдан. Ничего не изменено."
    )
    asked = _post(browser, f"/orders/{issued}/cancel", reason="поздно")
    assert asked.status_code == 409 and 'id="cancel-confirm"' not in asked.text
    start = _post(browser, f"/orders/{issued}/start")
    assert start.status_code == 409
    assert text_of(start.text, "order-error").startswith("Нельзя начать производство")
    assert _order(web.engine, issued).status == "issued"

    [paid] = _paid_orders(web, gateway)
    refused = _post(browser, f"/orders/{paid}/issue")
    assert refused.status_code == 409
    assert "сначала начните производство" in text_of(refused.text, "order-error")
    assert _order(web.engine, paid).status == "paid"
    assert audit_actions(web.engine) == before

    # Nobody has the invoice's INN: the refund has nowhere to go unless returned outside.
    invoice = invoice_for(web.engine, "01904202310427")
    pay(gateway, invoice)
    [orphan] = [o.id for o in orders_of(web.engine, invoice)]
    page = browser.get(f"/orders/{orphan}").text
    assert "некому" in text_of(page, "refund-where")
    nowhere = _post(browser, f"/orders/{orphan}/cancel", reason="Отказ")
    assert nowhere.status_code == 409 and "некому" in text_of(nowhere.text, "order-error")
    forced = _post(
        browser, f"/orders/{orphan}/cancel", reason="Отказ", confirm="1", refund=str(HEAD)
    )
    assert forced.status_code == 409 and "некому" in text_of(forced.text, "order-error")
    assert _order(web.engine, orphan).status == "paid"
    asked = _post(browser, f"/orders/{orphan}/cancel", reason="Вернули наличными", no_refund="1")
    assert asked.status_code == 200 and 'id="confirm-refund" data-tyiyn="0"' in asked.text
    assert "вне Tolom" in asked.text and 'name="no_refund" value="1"' in asked.text
    done = _post(
        browser,
        f"/orders/{orphan}/cancel",
        reason="Вернули наличными",
        no_refund="1",
        confirm="1",
        refund=str(HEAD),
    )
    assert done.status_code == 303
    cancelled = _order(web.engine, orphan)
    assert cancelled.refund_amount == 0 and orders.NO_REFUND_NOTE in (cancelled.cancel_reason or "")
    assert audit_actions(web.engine).count("order.cancel") == 1


@pytest.mark.parametrize("role", ["admin", "accountant", "auditor"])
def test_only_operators_change_orders(web: Web, gateway: Gateway, role: str) -> None:
    [number] = _paid_orders(web, gateway)
    browser = _staff(web, role)
    page = browser.get(f"/orders/{number}")
    assert page.status_code == 200 and page_of(page) == "orders-one"
    assert 'id="start"' not in page.text and 'id="cancel"' not in page.text
    assert browser.get("/orders").status_code == 200
    csrf = csrf_in(page.text)
    for path, data in [
        (f"/orders/{number}/start", {}),
        (f"/orders/{number}/issue", {}),
        (f"/orders/{number}/cancel", {"reason": "x", "confirm": "1", "refund": str(HEAD)}),
    ]:
        refused = browser.post(path, data={"csrf": csrf, **data})
        assert refused.status_code == 403 and page_of(refused) == "forbidden", path
    assert _order(web.engine, number).status == "paid"
    assert not [a for a in audit_actions(web.engine) if a.startswith("order.")]


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_posts_without_the_csrf_token_change_nothing(
    web: Web, gateway: Gateway, token: str | None
) -> None:
    [number] = _paid_orders(web, gateway)
    browser = web.signed_in()
    extra = {} if token is None else {"csrf": token}
    for path, data in [
        (f"/orders/{number}/start", {}),
        (f"/orders/{number}/cancel", {"reason": "x", "confirm": "1", "refund": str(HEAD)}),
    ]:
        refused = browser.post(path, data={**extra, **data})
        assert refused.status_code == 403 and page_of(refused) == "csrf", path
    assert _order(web.engine, number).status == "paid"
    assert not [a for a in audit_actions(web.engine) if a.startswith("order.")]


def test_hostile_input(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    [number] = _paid_orders(web, gateway, inn=inn)
    browser = web.signed_in()
    for path in ("/orders/abc", "/orders/0", "/orders/99999999", "/orders/-1", "/orders/1%00"):
        missing = browser.get(path)
        assert missing.status_code == 404 and page_of(missing) == "not-found", path
    assert _post(browser, "/orders/99999999/start").status_code == 404
    assert _post(browser, "/orders/abc/issue").status_code == 404

    for reason in ("я" * 1001,):
        refused = _post(browser, f"/orders/{number}/cancel", reason=reason, confirm="1", refund="0")
        assert refused.status_code == 422, reason
    for refund in ("", "abc", "-5", "1" * 20):
        bad = _post(browser, f"/orders/{number}/cancel", reason="x", confirm="1", refund=refund)
        assert bad.status_code == 400, refund
    assert _order(web.engine, number).status == "paid"

    script = "<script>alert(1)</script>"
    asked = _post(browser, f"/orders/{number}/cancel", reason=script)
    assert script not in asked.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in asked.text
    done = _post(browser, f"/orders/{number}/cancel", reason=script, confirm="1", refund=str(HEAD))
    assert done.status_code == 303
    shown = browser.get(f"/orders/{number}").text
    assert script not in shown and "&lt;script&gt;" in text_of(shown, "f-cancel-reason")
    with web.engine.connect() as conn:
        customer = customers.get(conn, inn)
    assert customer is not None


def test_pages_speak_the_users_language(web: Web, gateway: Gateway) -> None:
    [number] = _paid_orders(web, gateway)
    add_user(web.engine, username="kyzy", role="operator", language="ky")
    page = web.signed_in("kyzy").get(f"/orders/{number}")
    assert '<html lang="ky">' in page.text and "Өндүрүштү баштоо" in page.text
    add_user(web.engine, username="john", role="operator", language="en")
    assert "Start production" in web.signed_in("john").get(f"/orders/{number}").text


# --- every template in every language (tests/adapters/web/test_web.py) -----------------------------------------


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The orders list and one order, with every branch that shows text."""
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    order = orders.Order(
        id=17,
        invoice_number="4000000000000002",
        unit=1,
        inn="01904202310427",
        payment_id=1001,
        product_code="eds-head",
        kind="signature",
        name="Электронная подпись руководителя",
        price=151_000,
        status="in_production",
        created_at=moment_,
        production_started_at=moment_,
        issued_at=moment_,
        valid_until=date(2027, 11, 23),
        expiry_notified_at=moment_,
        cancelled_at=moment_,
        cancel_reason="<b>причина</b>",
        refund_amount=75_500,
        refund_entry_id=3,
    )
    customer = customers.Customer(7, "01904202310427", "ОсОО «Тест»", "ОсОО", "active", 9)
    detail = order_pages.Detail(
        order=order,
        customer=customer,
        payer_name="ОсОО «Плательщик»",
        refund_due=75_500,
        percent=50,
        valid_until_if_issued=date(2027, 11, 23),
        validity_months=12,
    )
    return {
        "web/orders.html": {
            **common,
            "page": "orders-expiring",
            "view": "expiring",
            "form": order_pages.ListForm(
                status="paid", inn="01904202310427", invoice="4000000000000002"
            ),
            "views": order_pages.VIEWS,
            "rows": [(order, 3)],
            "more": "after=17",
            "first_page": False,
            "filters": "days=30",
            "within_days": 30,
        },
        "web/order.html": {
            **common,
            "page": "orders-one",
            "d": detail,
            "may_change": True,
            "done": "cancel",
            "error": "ошибка",
            "cancel": order_pages.CancelForm(reason="причина", no_refund=True, confirming=False),
            "days_left": 3,
        },
    }
