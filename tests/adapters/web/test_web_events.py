"""The back office's outbox and webhooks: deliveries with their filters and keyset pages
(the dead ones shown first, with their errors), one event's payload, re-driving dead
deliveries (which the worker then delivers), and the webhook endpoints — add and rotate
(the secret shown once, never audited), enable, disable — for the roles that may."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.core.events.test_webhooks import LOCAL, Receiver, add_endpoint, fast, receiving
from tolom import secretbox
from tolom.db.schema import audit_log, deliveries, webhook_endpoints
from tolom.events import admin, endpoints, outbox
from tolom.events.outbox import EventType
from tolom.events.worker import Worker
from tolom.settings import Settings
from tolom.web import events as event_pages

PAYLOAD = {"note": "<script>alert(1)</script>", "name": "ОсОО «Тест»", "amount": 151000}


def _ids(html: str, table: str = "deliveries") -> list[int]:
    if f'id="{table}"' not in html:
        return []
    start = html.index(f'id="{table}"')
    part = html[start : html.index("</table>", start)]
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', part)]


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _endpoint(engine: Engine, name: str = "crm", url: str = "http://127.0.0.1:9/hooks") -> int:
    with engine.begin() as conn:
        endpoint_id, _ = endpoints.add(
            conn, name=name, url=url, event_types="*", actor="test", allowed_networks=LOCAL
        )
    return endpoint_id


def _emit(engine: Engine, type_: EventType = EventType.PAYMENT_ACCEPTED) -> int:
    with engine.begin() as conn:
        return outbox.emit(conn, type_, ordering_key="customer:1", payload=PAYLOAD)


def _deliveries(engine: Engine, event_id: int | None = None) -> list[Any]:
    query = select(deliveries).order_by(deliveries.c.id)
    if event_id is not None:
        query = query.where(deliveries.c.event_id == event_id)
    with engine.connect() as conn:
        return list(conn.execute(query))


def _kill(engine: Engine, delivery_id: int, error: str = "HTTP 500") -> None:
    """As if the worker had given up on it."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(status="dead", attempts=15, last_error=error)
        )


def _status(engine: Engine, delivery_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                select(deliveries.c.status).where(deliveries.c.id == delivery_id)
            ).scalar_one()
        )


def _endpoint_row(engine: Engine, name: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.name == name)
        ).one_or_none()


def _secret(engine: Engine, name: str) -> str:
    """The endpoint's signing secret, opened (it is stored sealed)."""
    with engine.connect() as conn:
        return secretbox.for_connection(conn).open(_endpoint_row(engine, name).secret_sealed)


def _changes_by_users(engine: Engine) -> list[str]:
    """What people changed in the back office (logging in aside)."""
    return [
        line.action
        for line in _audit_lines(engine)
        if line.actor.startswith("user:") and line.action != "user.login"
    ]


# --- deliveries -------------------------------------------------------------------------------


def test_deliveries_list_filters_dead_first_and_pages(web: Web) -> None:
    endpoint_id = _endpoint(web.engine)
    destination = f"webhook:{endpoint_id}"
    paid = [_emit(web.engine) for _ in range(2)]
    settled = _emit(web.engine, EventType.CHARGE_SETTLED)
    first, second, third = (d.id for d in _deliveries(web.engine))
    _kill(web.engine, second, "HTTP 502 <b>Bad Gateway</b>")
    browser = web.signed_in()

    page = browser.get("/events")
    assert page.status_code == 200 and page_of(page) == "events"
    assert 'href="/events" aria-current="page">Вебхуки и уведомления' in page.text
    assert _ids(page.text) == [third, second, first]  # newest first
    assert _ids(page.text, "dead-deliveries") == [second]  # shown first, on its own
    dead = page.text[page.text.index('id="dead-deliveries"') :]
    assert "HTTP 502 &lt;b&gt;Bad Gateway&lt;/b&gt;" in dead and "<b>Bad" not in page.text
    assert 'id="redrive-dead-' not in page.text  # an operator may not re-drive
    assert "Вебхук crm</option>" in page.text

    only_dead = browser.get("/events", params={"status": "dead"})
    assert _ids(only_dead.text) == [second] and 'id="dead-deliveries"' not in only_dead.text
    assert _ids(browser.get("/events", params={"status": "pending"}).text) == [third, first]
    by_type = browser.get("/events", params={"type": "charge.settled"})
    assert _ids(by_type.text) == [third] and _ids(by_type.text, "dead-deliveries") == []
    assert _ids(browser.get("/events", params={"destination": destination}).text) == [
        third,
        second,
        first,
    ]
    email = browser.get("/events", params={"destination": "email"})
    assert _ids(email.text) == [] and text_of(email.text, "deliveries-empty")
    assert settled > paid[-1]

    for bad in (
        {"status": "lost"},
        {"destination": "webhook:999"},
        {"destination": "x\x00"},
        {"type": "payment.lost"},
        {"before": "abc"},
        {"before": "-1"},
    ):
        assert browser.get("/events", params=bad).status_code == 400, bad

    original = event_pages.PAGE_SIZE
    event_pages.PAGE_SIZE = 2
    try:
        one = browser.get("/events", params={"destination": destination})
        assert _ids(one.text) == [third, second]
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', one.text)[1])
        assert f"before={second}" in link and "destination=webhook" in link
        two = browser.get(link)
        assert _ids(two.text) == [first] and 'id="next-page"' not in two.text
        assert 'id="dead-deliveries"' not in two.text  # the dead are shown on the first page
    finally:
        event_pages.PAGE_SIZE = original


def test_an_event_with_its_payload_escaped(web: Web) -> None:
    _endpoint(web.engine)
    event_id = _emit(web.engine)
    browser = web.signed_in()
    page = browser.get(f"/events/{event_id}")
    assert page.status_code == 200 and page_of(page) == "events-one"
    payload = unescape(text_of(page.text, "payload"))
    assert json.loads(payload) == PAYLOAD
    assert '\n  "amount": 151000' in payload and "ОсОО «Тест»" in payload  # pretty, readable
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert text_of(page.text, "f-type") == "payment.accepted"
    assert _ids(page.text) == [d.id for d in _deliveries(web.engine, event_id)]
    for path in ("/events/999999", "/events/abc", "/events/0", "/events/1%00"):
        missing = browser.get(path)
        assert missing.status_code == 404 and page_of(missing) == "not-found", path


# --- re-drive ---------------------------------------------------------------------------------


def test_a_redriven_dead_delivery_is_delivered_by_the_worker(web: Web, settings: Settings) -> None:
    healthy = False

    def respond(n: int, hit: Any) -> int:
        return 200 if healthy else 500

    with receiving(Receiver(respond=respond)) as receiver:
        add_endpoint(web.engine, receiver)
        event_id = _emit(web.engine)
        Worker(fast(settings, delivery_max_attempts=1), web.engine).run(once=True)
        [delivery] = _deliveries(web.engine, event_id)
        assert (delivery.status, delivery.last_error) == ("dead", "HTTP 500")

        browser = _staff(web, "accountant")
        page = browser.get("/events")
        assert f'id="redrive-dead-{delivery.id}"' in page.text
        done = browser.post(
            f"/events/deliveries/{delivery.id}/redrive", data={"csrf": csrf_in(page.text)}
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/events/{event_id}?redriven=1"
        [again] = _deliveries(web.engine, event_id)
        assert (again.status, again.attempts) == ("pending", 0)
        shown = browser.get(done.headers["location"]).text
        assert text_of(shown, "redriven").startswith("Снова в очереди: 1")
        with web.engine.connect() as conn:
            [line] = conn.execute(
                select(audit_log).where(audit_log.c.action == "delivery.redrive")
            ).all()
        assert (line.actor, line.object_id, line.address) == (
            "user:accountant",
            str(delivery.id),
            "testclient",
        )
        assert '"dead"' in line.before and '"pending"' in line.after

        healthy = True
        Worker(fast(settings), web.engine).run(once=True)
        assert _status(web.engine, delivery.id) == "delivered"
        assert receiver.effects == [str(event_id)]

        # Now it is delivered: re-driving it is refused and changes nothing.
        refused = browser.post(
            f"/events/deliveries/{delivery.id}/redrive", data={"csrf": csrf_in(shown)}
        )
        assert refused.status_code == 409
        assert text_of(refused.text, "event-error") == (
            f"Доставка № {delivery.id} сейчас в статусе «доставлено»: отправлять снова "
            "нечего. Ничего не изменено."
        )
        assert _status(web.engine, delivery.id) == "delivered"
        assert audit_actions(web.engine).count("delivery.redrive") == 1
    missing = browser.post("/events/deliveries/999999/redrive", data={"csrf": csrf_in(shown)})
    assert missing.status_code == 404
    assert (
        browser.post("/events/deliveries/x/redrive", data={"csrf": csrf_in(shown)}).status_code
        == 404
    )


def test_redrive_every_dead_delivery_of_one_endpoint(web: Web) -> None:
    a, b = _endpoint(web.engine, "alpha"), _endpoint(web.engine, "beta")
    for _ in range(2):
        _emit(web.engine)
    rows = _deliveries(web.engine)
    alpha = [r.id for r in rows if r.destination == f"webhook:{a}"]
    beta = [r.id for r in rows if r.destination == f"webhook:{b}"]
    for delivery_id in [*alpha, beta[0]]:
        _kill(web.engine, delivery_id)
    browser = _staff(web, "admin")

    page = browser.get("/webhooks")
    assert page.status_code == 200 and page_of(page) == "events-webhooks"
    assert 'href="/events" aria-current="page">Вебхуки и уведомления' in page.text
    assert 'data-dead="2"' in page.text and 'data-dead="1"' in page.text
    assert 'data-pending="1"' in page.text  # beta's second one waits
    assert 'id="redrive-alpha"' in page.text and 'id="redrive-beta"' in page.text

    csrf = csrf_in(page.text)
    done = browser.post("/events/redrive-dead", data={"csrf": csrf, "destination": f"webhook:{a}"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/events?destination=webhook%3A{a}&redriven=2"
    assert [_status(web.engine, i) for i in alpha] == ["pending", "pending"]
    assert _status(web.engine, beta[0]) == "dead"
    shown = browser.get(done.headers["location"]).text
    assert text_of(shown, "redriven").startswith("Снова в очереди: 2")
    assert audit_actions(web.engine).count("delivery.redrive") == 2

    none = browser.post("/events/redrive-dead", data={"csrf": csrf, "destination": f"webhook:{a}"})
    assert none.headers["location"].endswith("redriven=0")
    assert "не было" in text_of(browser.get(none.headers["location"]).text, "redriven")
    for destination in ("", "webhook:999", "all", "email\x00"):
        bad = browser.post("/events/redrive-dead", data={"csrf": csrf, "destination": destination})
        assert bad.status_code == 400, destination
    assert _status(web.engine, beta[0]) == "dead"
    assert audit_actions(web.engine).count("delivery.redrive") == 2


# --- webhook endpoints ----------------------------------------------------------------------------


def _no_secret_in_the_audit(engine: Engine, secret: str) -> None:
    key = secret.removeprefix(endpoints.SECRET_PREFIX)
    with engine.connect() as conn:
        for line in conn.execute(select(audit_log)):
            text = " ".join(str(v) for v in line)
            assert key not in text and secret not in text


def test_add_rotate_disable_and_enable_a_webhook(web: Web) -> None:
    browser = _staff(web, "admin")
    page = browser.get("/webhooks")
    assert 'id="new-webhook"' in page.text and '<label for="w-url">' in page.text
    assert text_of(page.text, "webhooks-empty") == "Вебхуков нет."
    csrf = csrf_in(page.text)

    added = browser.post(
        "/webhooks",
        data={
            "csrf": csrf,
            "name": "crm",
            "url": "https://crm.example.kg/hooks",
            "events": ["payment.accepted", "charge.settled"],
        },
    )
    assert added.status_code == 201 and page_of(added) == "events-webhooks"
    assert added.headers["cache-control"] == "no-store"
    secret = text_of(added.text, "webhook-secret")
    assert secret.startswith("whsec_")
    row = _endpoint_row(web.engine, "crm")
    assert endpoints.SECRET_PREFIX + _secret(web.engine, "crm") == secret
    assert row.event_types == "charge.settled payment.accepted" and row.enabled
    [line] = [r for r in _audit_lines(web.engine) if r.action == "webhook.add"]
    assert line.actor == "user:admin" and line.address == "testclient"
    assert "https://crm.example.kg/hooks" in line.after

    listed = browser.get("/webhooks").text
    assert 'data-name="crm" data-enabled="yes"' in listed
    assert "charge.settled, payment.accepted" in listed
    assert secret not in listed and row.secret_sealed not in listed  # shown once, only there

    # Refusals: the form again with the reason, nothing added.
    for data, status, fragment in [
        ({"name": "crm", "url": "https://x.example.kg"}, 409, "уже есть"),
        ({"name": "bad name", "url": "https://x.example.kg"}, 422, "Имя:"),
        ({"name": "ok", "url": "ftp://x.example.kg"}, 422, "http://"),
        ({"name": "ok", "url": "https://user:pw@x.example.kg"}, 422, "логин"),
        ({"name": "ok", "url": "https://x.example.kg/" + "a" * 2100}, 422, "не понят"),
        ({"name": "ok", "url": "https://x.example.kg", "events": "payment.lost"}, 422, "типы"),
    ]:
        refused = browser.post("/webhooks", data={"csrf": csrf, **data})
        assert refused.status_code == status, data
        assert fragment in text_of(refused.text, "webhook-errors").replace("<li>", ""), data
    with web.engine.connect() as conn:
        assert [e.name for e in endpoints.load_all(conn)] == ["crm"]

    disabled = browser.post("/webhooks/crm/disable", data={"csrf": csrf})
    assert disabled.status_code == 303
    assert disabled.headers["location"] == "/webhooks?done=disabled&name=crm"
    assert not _endpoint_row(web.engine, "crm").enabled
    shown = browser.get(disabled.headers["location"]).text
    assert text_of(shown, "webhooks-done").startswith("Вебхук «crm» отключён")
    assert 'data-name="crm" data-enabled="no"' in shown and 'action="/webhooks/crm/enable"' in shown
    enabled = browser.post("/webhooks/crm/enable", data={"csrf": csrf})
    assert enabled.headers["location"] == "/webhooks?done=enabled&name=crm"
    assert _endpoint_row(web.engine, "crm").enabled

    rotated = browser.post("/webhooks/crm/rotate", data={"csrf": csrf})
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    new_secret = text_of(rotated.text, "webhook-secret")
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert endpoints.SECRET_PREFIX + _secret(web.engine, "crm") == new_secret
    actions = [a for a in audit_actions(web.engine) if a.startswith("webhook.")]
    assert actions == ["webhook.add", "webhook.disable", "webhook.enable", "webhook.rotate_secret"]
    _no_secret_in_the_audit(web.engine, secret)
    _no_secret_in_the_audit(web.engine, new_secret)

    for path in ("/webhooks/nobody/rotate", "/webhooks/nobody/disable", "/webhooks/a%00b/enable"):
        missing = browser.post(path, data={"csrf": csrf})
        assert missing.status_code == 404 and page_of(missing) == "not-found", path


def _audit_lines(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log).order_by(audit_log.c.id)))


# --- who may ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "accountant", "operator", "auditor"])
def test_every_role_reads_and_only_admins_and_accountants_change(web: Web, role: str) -> None:
    endpoint_id = _endpoint(web.engine)
    event_id = _emit(web.engine)
    [delivery] = _deliveries(web.engine, event_id)
    _kill(web.engine, delivery.id)
    browser = _staff(web, role)
    allowed = role in ("admin", "accountant")

    events_page = browser.get("/events")
    webhooks_page = browser.get("/webhooks")
    event_page = browser.get(f"/events/{event_id}")
    assert [p.status_code for p in (events_page, webhooks_page, event_page)] == [200, 200, 200]
    assert ('id="new-webhook"' in webhooks_page.text) is allowed
    assert (f'id="redrive-{delivery.id}"' in event_page.text) is allowed
    assert (f'id="redrive-dead-{delivery.id}"' in events_page.text) is allowed

    csrf = csrf_in(events_page.text)
    posts = [
        (f"/events/deliveries/{delivery.id}/redrive", {}),
        ("/events/redrive-dead", {"destination": f"webhook:{endpoint_id}"}),
        ("/webhooks/crm/disable", {}),
        ("/webhooks/crm/rotate", {}),
        ("/webhooks", {"name": "other", "url": "https://x.example.kg"}),
    ]
    if not allowed:
        for path, data in posts:
            refused = browser.post(path, data={"csrf": csrf, **data})
            assert refused.status_code == 403 and page_of(refused) == "forbidden", path
        assert _status(web.engine, delivery.id) == "dead"
        assert _endpoint_row(web.engine, "crm").enabled
        assert _endpoint_row(web.engine, "other") is None
        assert _changes_by_users(web.engine) == []
        return
    answers = [browser.post(path, data={"csrf": csrf, **data}).status_code for path, data in posts]
    assert answers == [303, 303, 303, 200, 201]
    assert _status(web.engine, delivery.id) == "pending"
    assert not _endpoint_row(web.engine, "crm").enabled
    assert _endpoint_row(web.engine, "other") is not None


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_posts_without_the_csrf_token_change_nothing(web: Web, token: str | None) -> None:
    endpoint_id = _endpoint(web.engine)
    event_id = _emit(web.engine)
    [delivery] = _deliveries(web.engine, event_id)
    _kill(web.engine, delivery.id)
    browser = _staff(web, "accountant")
    secret = _endpoint_row(web.engine, "crm").secret_sealed
    extra = {} if token is None else {"csrf": token}
    for path, data in [
        (f"/events/deliveries/{delivery.id}/redrive", {}),
        ("/events/redrive-dead", {"destination": f"webhook:{endpoint_id}"}),
        ("/webhooks/crm/disable", {}),
        ("/webhooks/crm/rotate", {}),
        ("/webhooks", {"name": "other", "url": "https://x.example.kg"}),
    ]:
        refused = browser.post(path, data={**extra, **data})
        assert refused.status_code == 403 and page_of(refused) == "csrf", path
    assert _status(web.engine, delivery.id) == "dead"
    row = _endpoint_row(web.engine, "crm")
    assert row.enabled and row.secret_sealed == secret
    assert _endpoint_row(web.engine, "other") is None
    assert _changes_by_users(web.engine) == []


def test_pages_speak_the_users_language(web: Web) -> None:
    _endpoint(web.engine)
    add_user(web.engine, username="kyzy", role="accountant", language="ky")
    browser = web.signed_in("kyzy")
    assert "Окуяларды жеткирүү" in browser.get("/events").text
    assert "Вебхук кошуу" in browser.get("/webhooks").text


# --- every template in every language (tests/adapters/web/test_web.py) ------------------------------------------


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The outbox and webhook pages, with every branch that shows text."""
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    dead = admin.Delivery(
        5, 9, "payment.accepted", "webhook:1", None, "dead", 15, None, "HTTP 500", None
    )
    pending = admin.Delivery(
        6, 9, "payment.accepted", "email", "a@b.kg", "pending", 1, moment_, None, None
    )
    delivered = admin.Delivery(
        7, 9, "payment.accepted", "sms", "+996555", "delivered", 1, None, None, moment_
    )
    event = admin.Event(
        9, "payment.accepted", "customer:1", 1, moment_, PAYLOAD, [dead, pending, delivered]
    )
    endpoint = endpoints.Endpoint(
        1, "crm", "https://crm.example.kg/hooks", "payment.accepted", True, moment_
    )
    off = endpoints.Endpoint(2, "all", "https://all.example.kg/hooks", "*", False, moment_)
    names = {"webhook:1": "Вебхук crm", "email": "E-mail", "sms": "SMS"}
    return {
        "web/events.html": {
            **common,
            "page": "events",
            "form": event_pages.ListForm(destination="webhook:1", type="payment.accepted"),
            "statuses": admin.STATUSES,
            "destinations": sorted(names.items()),
            "names": names,
            "types": event_pages.TYPES,
            "rows": [dead, pending, delivered],
            "dead": [dead],
            "dead_filter": "status=dead",
            "more": "before=5",
            "first_page": False,
            "filters": "destination=webhook%3A1",
            "may_redrive": True,
            "redriven": 2,
        },
        "web/event.html": {
            **common,
            "page": "events-one",
            "event": event,
            "payload": json.dumps(PAYLOAD, ensure_ascii=False, indent=2),
            "names": names,
            "may_redrive": True,
            "redriven": True,
            "error": "ошибка",
        },
        "web/webhooks.html": {
            **common,
            "page": "events-webhooks",
            "endpoints": [endpoint, off],
            "backlog": {"webhook:1": {"pending": 3, "dead": 2}},
            "types": event_pages.TYPES,
            "may_change": True,
            "form": event_pages.EndpointForm(
                name="crm", url="https://x", events=("payment.accepted",)
            ),
            "errors": ["ошибка"],
            "done": "готово",
        },
        "web/webhook_secret.html": {
            **common,
            "page": "events-webhooks",
            "name": "crm",
            "secret": "whsec_c2VjcmV0",
            "rotated": True,
        },
    }
