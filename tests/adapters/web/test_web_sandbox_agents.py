"""The back office and the sandbox: the new-agent form makes a sandbox agent (a checkbox),
the list and the agent's page mark it, and reconciliation does not offer it."""

from __future__ import annotations

from sqlalchemy import select

from tests.adapters.web.test_web import Web, add_user, csrf_in
from tests.adapters.web.test_web import web as web
from tests.factories import add_agent
from tolom.db.schema import agents as agents_table


def test_the_new_agent_form_makes_a_sandbox_agent_and_the_pages_mark_it(web: Web) -> None:
    add_user(web.engine, username="admin", role="admin")
    browser = web.signed_in("admin")
    add_agent(web.engine, "realone")
    form = browser.get("/agents/new")
    assert 'name="sandbox" value="1"' in form.text and '<label for="sandbox">' in form.text
    created = browser.post(
        "/agents/new",
        data={
            "csrf": csrf_in(form.text),
            "code": "sandweb",
            "name": "Тестовый агент",
            "networks": "127.0.0.1",
            "timezone": "Asia/Bishkek",
            "cancel_window_days": "0",
            "service_sochi": "1",
            "sandbox": "1",
        },
    )
    assert created.status_code == 201, created.text
    with web.engine.connect() as conn:
        flags = dict(conn.execute(select(agents_table.c.code, agents_table.c.sandbox)).all())
    assert flags["sandweb"] is True and flags["realone"] is False

    listing = browser.get("/agents")
    assert 'data-code="sandweb" data-enabled="yes" data-sandbox="yes"' in listing.text
    assert 'data-code="realone" data-enabled="yes" data-sandbox="no"' in listing.text
    assert listing.text.count('data-mark="sandbox"') == 1
    page = browser.get("/agents/sandweb")
    assert 'data-mark="sandbox">песочница</span>' in page.text

    calendar = browser.get("/reconciliation")
    assert calendar.status_code == 200
    assert 'data-agent="realone"' in calendar.text and 'data-agent="sandweb"' not in calendar.text
