"""The back office's queue of online applications: the list by status with its counts,
filters and keyset pages, one application, the two decisions (verify; reject with a
required reason) audited and refused for every role but the operator's and without the
CSRF token, the gate shown on the order's page, and the dashboard's figure."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.core.billing.test_applications import _apply
from tests.core.billing.test_orders import orders_of, pay
from tests.factories import Gateway, new_inn
from tolom.billing import applications, invoices, orders
from tolom.web import applications as application_pages


def _ids(html: str) -> list[int]:
    if 'id="applications"' not in html:
        return []
    start = html.index('id="applications"')
    part = html[start : html.index("</table>", start)]
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', part)]


def _counts(html: str) -> dict[str, int]:
    found = re.findall(r'id="tab-(\w+)"[^>]*>[^<]*<span class="badge" data-count="(\d+)"', html)
    return {code: int(count) for code, count in found}


def _status(engine: Engine, application_id: int) -> str:
    with engine.connect() as conn:
        found = applications.get(conn, application_id)
    assert found is not None
    return found.status


def _post(browser: TestClient, path: str, **data: str) -> Any:
    csrf = csrf_in(browser.get("/applications").text)
    return browser.post(path, data={"csrf": csrf, **data})


def _verify(engine: Engine, application_id: int) -> None:
    with engine.begin() as conn:
        applications.verify_audited(conn, application_id, actor="user:test", address=None)


def test_the_queue_lists_new_ones_with_counts_filters_and_pages(web: Web, gateway: Gateway) -> None:
    inn = new_inn()
    first, _ = _apply(web.engine, inn, office="Ош")
    second, paid = _apply(web.engine, office="Бишкек")
    third, _ = _apply(web.engine, inn, office="Бишкек", items=[("eds-rutoken", 1)])
    pay(gateway, paid)
    _verify(web.engine, second)
    browser = web.signed_in()

    page = browser.get("/applications")
    assert page.status_code == 200 and page_of(page) == "applications"
    assert _ids(page.text) == [third, first]  # awaiting verification, newest first
    assert _counts(page.text) == {"new": 2, "verified": 1, "rejected": 0, "all": 3}
    assert 'id="tab-new" href="/applications?status=new" aria-current="page"' in page.text
    assert f'href="/invoices/{paid.number}"' not in page.text
    assert 'data-invoice-state="open"' in page.text and "ждёт оплаты" in page.text
    assert "ОсОО «Заявитель»" in unescape(page.text) and 'href="/applications"' in page.text
    verified = browser.get("/applications", params={"status": "verified"}).text
    assert _ids(verified) == [second]
    assert f'<a href="/invoices/{paid.number}">{paid.number}</a>' in verified
    assert 'data-invoice-state="paid"' in verified and "оплачен" in verified
    assert _ids(browser.get("/applications", params={"status": "all"}).text) == [
        third,
        second,
        first,
    ]
    assert _ids(browser.get("/applications", params={"office": "Ош"}).text) == [first]
    by_inn = {"status": "all", "inn": inn}
    assert _ids(browser.get("/applications", params=by_inn).text) == [third, first]
    empty = browser.get("/applications", params={"status": "rejected"})
    assert _ids(empty.text) == [] and text_of(empty.text, "applications-empty")

    for bad in (
        {"status": "lost"},
        {"office": "Москва"},
        {"inn": "12ab"},
        {"inn": "1" * 15},
        {"before": "abc"},
    ):
        assert browser.get("/applications", params=bad).status_code == 400, bad

    original = application_pages.PAGE_SIZE
    application_pages.PAGE_SIZE = 1
    try:
        one = browser.get("/applications")
        assert _ids(one.text) == [third]
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', one.text)[1])
        assert "status=new" in link and f"before={third}" in link
        two = browser.get(link)
        assert _ids(two.text) == [first] and 'id="next-page"' not in two.text
        assert 'id="first-page"' in two.text
    finally:
        application_pages.PAGE_SIZE = original


def test_verifying_from_the_page_is_audited_and_a_repeat_changes_nothing(
    web: Web, gateway: Gateway
) -> None:
    application_id, invoice = _apply(web.engine, items=[("eds-head", 2)])
    pay(gateway, invoice)
    browser = web.signed_in()
    page = browser.get(f"/applications/{application_id}")
    assert page.status_code == 200 and page_of(page) == "applications-one"
    assert f'href="/invoices/{invoice.number}"' in page.text
    made = orders_of(web.engine, invoice)
    for order in made:
        assert f'href="/orders/{order.id}"' in page.text
    assert 'id="verify"' in page.text and 'id="reject"' in page.text
    assert "останется оплаченным" in text_of(page.text, "reject-hint")

    done = _post(browser, f"/applications/{application_id}/verify")
    assert done.status_code == 303
    assert done.headers["location"] == f"/applications/{application_id}?done=verify"
    shown = browser.get(done.headers["location"])
    assert "Личность подтверждена" in text_of(shown.text, "application-done")
    assert 'data-status="verified"' in shown.text and "user:aida" in text_of(
        shown.text, "f-decision"
    )
    assert 'id="verify"' not in shown.text  # decided: no forms
    assert _status(web.engine, application_id) == "verified"
    assert audit_actions(web.engine).count("application.verify") == 1

    again = _post(browser, f"/applications/{application_id}/verify")
    assert again.headers["location"] == f"/applications/{application_id}?done=unchanged"
    assert audit_actions(web.engine).count("application.verify") == 1
    refused = _post(browser, f"/applications/{application_id}/reject", reason="Поздно")
    assert refused.status_code == 409
    assert "уже подтверждена" in text_of(refused.text, "application-error")
    assert _status(web.engine, application_id) == "verified"


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("", "Укажите причину отказа."),
        ("   ", "Укажите причину отказа."),
        ("x" * 501, "Причина должна быть не длиннее 500 символов."),
    ],
)
def test_a_bad_reason_is_said_next_to_the_field_and_changes_nothing(
    web: Web, reason: str, said: str
) -> None:
    application_id, invoice = _apply(web.engine)
    browser = web.signed_in()
    answer = _post(browser, f"/applications/{application_id}/reject", reason=reason)
    assert answer.status_code == 422 and page_of(answer) == "applications-one"
    assert text_of(answer.text, "reason-error") == said
    assert 'aria-invalid="true"' in answer.text
    assert _status(web.engine, application_id) == "new"
    with web.engine.connect() as conn:
        found = invoices.get(conn, invoice.number)
    assert found is not None and found.status == "open"
    assert "application.reject" not in audit_actions(web.engine)


def test_rejecting_cancels_the_unpaid_invoice_and_shows_the_decision(web: Web) -> None:
    application_id, invoice = _apply(web.engine)
    browser = web.signed_in()
    page = browser.get(f"/applications/{application_id}")
    assert invoice.number in text_of(page.text, "reject-hint")  # it will be cancelled
    answer = _post(
        browser, f"/applications/{application_id}/reject", reason=" Паспорт <b>не</b> тот "
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/applications/{application_id}?done=reject"
    shown = browser.get(answer.headers["location"])
    assert text_of(shown.text, "application-done") == "Заявка отклонена."
    assert text_of(shown.text, "f-reason") == "Паспорт &lt;b&gt;не&lt;/b&gt; тот"
    assert 'data-state="cancelled"' in shown.text
    with web.engine.connect() as conn:
        found = invoices.get(conn, invoice.number)
    assert found is not None and found.status == "cancelled"
    assert audit_actions(web.engine)[-2:] == ["invoice.cancel", "application.reject"]
    refused = _post(browser, f"/applications/{application_id}/verify")
    assert refused.status_code == 409
    assert "уже отклонена" in text_of(refused.text, "application-error")


def test_posts_without_the_csrf_token_change_nothing(web: Web) -> None:
    application_id, _ = _apply(web.engine)
    browser = web.signed_in()
    browser.get("/applications")
    for path, data in (
        (f"/applications/{application_id}/verify", {}),
        (f"/applications/{application_id}/reject", {"reason": "Нет документов"}),
    ):
        refused = browser.post(path, data={"csrf": "wrong", **data})
        assert refused.status_code == 403 and page_of(refused) == "csrf", path
        refused = browser.post(path, data=data)
        assert refused.status_code == 403 and page_of(refused) == "csrf", path
    assert _status(web.engine, application_id) == "new"


@pytest.mark.parametrize("role", ["admin", "accountant", "auditor"])
def test_only_operators_decide(web: Web, role: str) -> None:
    application_id, _ = _apply(web.engine)
    add_user(web.engine, username=role, role=role)
    browser = web.signed_in(role)
    page = browser.get(f"/applications/{application_id}")
    assert page.status_code == 200 and 'id="verify"' not in page.text
    assert 'id="reject"' not in page.text
    csrf = csrf_in(page.text)
    for path, data in (
        (f"/applications/{application_id}/verify", {}),
        (f"/applications/{application_id}/reject", {"reason": "Нет документов"}),
    ):
        refused = browser.post(path, data={"csrf": csrf, **data})
        assert refused.status_code == 403 and page_of(refused) == "forbidden", path
    assert _status(web.engine, application_id) == "new"


def test_unknown_applications_are_404(web: Web) -> None:
    browser = web.signed_in()
    for path in ("/applications/999999", "/applications/abc", "/applications/" + "9" * 19):
        answer = browser.get(path)
        assert answer.status_code == 404 and page_of(answer) == "not-found", path
    assert _post(browser, "/applications/999999/verify").status_code == 404
    assert _post(browser, "/applications/999999/reject", reason="x").status_code == 404


def test_the_order_page_says_why_production_waits(web: Web, gateway: Gateway) -> None:
    application_id, invoice = _apply(web.engine)
    pay(gateway, invoice)
    [order] = orders_of(web.engine, invoice)
    browser = web.signed_in()
    page = browser.get(f"/orders/{order.id}")
    identity = text_of(page.text, "f-identity")
    assert "ещё не подтверждена" in identity
    assert f'id="application-link" href="/applications/{application_id}"' in page.text
    refused = browser.post(f"/orders/{order.id}/start", data={"csrf": csrf_in(page.text)})
    assert refused.status_code == 409
    error = text_of(refused.text, "order-error")
    assert "личность заявителя ещё не подтверждена" in error and f"№{application_id}" in error
    assert orders_of(web.engine, invoice)[0].status == "paid"
    assert "order.start" not in audit_actions(web.engine)

    _verify(web.engine, application_id)
    page = browser.get(f"/orders/{order.id}")
    assert 'id="f-identity"' not in page.text
    started = browser.post(f"/orders/{order.id}/start", data={"csrf": csrf_in(page.text)})
    assert started.status_code == 303
    assert orders_of(web.engine, invoice)[0].status == "in_production"


def test_an_order_of_an_operators_invoice_shows_no_identity_line(
    web: Web, gateway: Gateway
) -> None:
    from tests.core.billing.test_orders import invoice_for

    invoice = invoice_for(web.engine, new_inn())
    pay(gateway, invoice)
    [order] = orders_of(web.engine, invoice)
    page = web.signed_in().get(f"/orders/{order.id}")
    assert page.status_code == 200 and 'id="f-identity"' not in page.text


def test_the_dashboard_counts_applications_awaiting_verification(web: Web) -> None:
    browser = web.signed_in()
    none = browser.get("/")
    assert 'data-count="0"' in none.text and 'href="/applications?status=new"' not in none.text
    _apply(web.engine)
    _apply(web.engine)
    page = browser.get("/")
    assert 'id="applications-new" data-count="2"' in page.text
    assert '<a href="/applications?status=new">2</a>' in page.text
    assert '<a href="/applications"' in page.text  # the header's section


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The queue and one application, with every branch that shows text."""
    moment = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    record = applications.ApplicationRecord(
        id=7,
        inn="01904202310427",
        invoice_number="4000000000000017",
        office="Ош",
        status="rejected",
        reason="<b>причина</b>",
        created_at=moment,
        decided_at=moment,
        decided_by="user:aida",
        payer_name="ОсОО «Заявитель»",
        total=151_000,
        invoice_status="paid",
        invoice_expires_at=moment,
    )
    order = orders.Order(
        id=17,
        invoice_number="4000000000000017",
        unit=1,
        inn="01904202310427",
        payment_id=1001,
        product_code="eds-head",
        kind="signature",
        name="Электронная подпись руководителя",
        price=151_000,
        status="paid",
        created_at=moment,
        production_started_at=None,
        issued_at=None,
        valid_until=None,
        expiry_notified_at=None,
        cancelled_at=None,
        cancel_reason=None,
        refund_amount=None,
        refund_entry_id=None,
    )
    new = {"status": "new", "decided_at": None, "decided_by": None, "reason": None}
    return {
        "web/applications.html": {
            **common,
            "page": "applications",
            "form": application_pages.ListForm(status="all", office="Ош", inn="01904202310427"),
            "views": application_pages.VIEWS,
            "counts": {"new": 1, "verified": 0, "rejected": 1, "all": 2},
            "offices": ("Бишкек", "Ош"),
            "rows": [record],
            "now": moment,
            "more": "before=7",
            "first_page": False,
            "filters": "status=all",
        },
        "web/application.html": {
            **common,
            "page": "applications-one",
            # A new one (the forms) with a rejection's reason typed wrongly.
            "d": application_pages.Detail(
                application=applications.ApplicationRecord(
                    **{**{f: getattr(record, f) for f in record.__slots__}, **new}
                ),
                orders=[order],
                now=moment,
            ),
            "may_decide": True,
            "done": "готово",
            "error": "ошибка",
            "reject": application_pages.RejectForm(reason="x", errors={"reason": "ошибка"}),
            "max_reason": applications.MAX_REASON,
        },
    }
