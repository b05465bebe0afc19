"""The back office's agents pages: the list with each agent's figures in its own time zone,
a new agent whose secret is shown once, one agent with its forms (new secret, allow-list,
time zone and cancel window, limits, enable/disable), every role, CSRF, the audit lines,
and that a change on a page reaches the running gateway at once."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import (
    Clock,
    Web,
    add_user,
    audit_actions,
    csrf_in,
    page_of,
    text_of,
)
from tests.adapters.web.test_web import web as web
from tests.factories import Cli, Gateway, add_agent, add_customer, new_txn_id
from tolom.agents import admin
from tolom.agents import service as agents
from tolom.app import create_app
from tolom.backoffice.agent_figures import Figures, Row, Tally
from tolom.db.schema import agents as agents_table
from tolom.db.schema import audit_log
from tolom.payments import reversal
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.web import WebOptions
from tolom.web import agents as agent_pages

NBSP = "\u00a0"
_SECRET = re.compile(r'id="agent-secret" class="secret">([^<]+)<')
_KEY = re.compile(r'id="agent-signing-key" class="secret">([^<]+)<')


# --- helpers ---------------------------------------------------------------------------------


def _admin(web: Web) -> TestClient:
    add_user(web.engine, username="admin", role="admin")
    return web.signed_in("admin")


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _state(engine: Engine, code: str) -> dict[str, Any]:
    """Everything about an agent a page may change, credentials included."""
    with engine.connect() as conn:
        row = conn.execute(
            select(agents_table.c.secret_hash, agents_table.c.signing_key_sealed).where(
                agents_table.c.code == code
            )
        ).one()
        snap = admin.snapshot(conn, code)
    return {
        "secret_hash": row.secret_hash,
        "signing_key": row.signing_key_sealed,
        **(snap or {}),
    }


def _audit(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log).order_by(audit_log.c.id)))


def _squeeze(text: str) -> str:
    """Runs of ordinary white space as one space; no-break spaces are kept."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def _cells(html: str, code: str) -> dict[str, str]:
    """{data-figure: text} of the list's row of `code`."""
    start = html.index(f'<tr data-code="{code}"')
    row = html[start : html.index("</tr>", start)]
    return {
        name: _squeeze(unescape(re.sub(r"<[^>]+>", " ", text)))
        for name, text in re.findall(r'data-figure="([^"]+)">(.*?)</td>', row, re.S)
    }


def _figures(html: str) -> dict[str, str]:
    """{data-figure: text} of the agent's page."""
    return {
        name: _squeeze(unescape(text))
        for name, text in re.findall(r'<dd data-figure="([^"]+)">(.*?)</dd>', html, re.S)
    }


def _tally(count: int, som: str) -> str:
    return f"{count} на {som}{NBSP}сом"


def _pay(gateway: Gateway, inn: str, amount: str, local: datetime) -> int:
    answer = gateway.pay("sochi", inn, amount, txn_date=local.strftime("%Y%m%d%H%M%S"))
    assert answer["result"] == 0, answer
    return int(answer["prv_txn"])


def _create(browser: TestClient, **fields: str) -> Any:
    form = browser.get("/agents/new")
    assert form.status_code == 200, form.text
    data = {
        "csrf": csrf_in(form.text),
        "code": "megapay",
        "name": "МегаПэй",
        "networks": "127.0.0.1\n10.0.0.0/8",
        "timezone": "Asia/Bishkek",
        "cancel_window_days": "0",
        "service_sochi": "1",
        "service_eds": "1",
        **fields,
    }
    return browser.post("/agents/new", data={k: v for k, v in data.items() if v is not None})


def _post(browser: TestClient, path: str, **fields: str) -> Any:
    """POST one of an agent's forms as its page would (`path` is /agents/CODE/...)."""
    page = browser.get("/".join(path.split("/")[:3]))
    return browser.post(path, data={"csrf": csrf_in(page.text), **fields})


# --- the list --------------------------------------------------------------------------------


def test_the_list_counts_each_agents_days_in_its_own_zone(web: Web, gateway: Gateway) -> None:
    # 20:00 UTC: already the 24th in Bishkek (UTC+6), still the 23rd in London (UTC+0).
    web.clock.now = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    london = Gateway.create(web.app, web.engine, "london", timezone="Europe/London")
    inn = add_customer(web.engine)
    # optima, Bishkek: today is the 24th, yesterday the 23rd, 30 days from 26.10.
    _pay(gateway, inn, "100.00", datetime(2026, 11, 24, 1, 0))
    _pay(gateway, inn, "50.50", datetime(2026, 11, 24, 1, 30))
    reversed_today = _pay(gateway, inn, "7.00", datetime(2026, 11, 24, 1, 40))
    _pay(gateway, inn, "30.00", datetime(2026, 11, 23, 10, 0))
    _pay(gateway, inn, "10.00", datetime(2026, 10, 26, 0, 0))  # the first of the 30 days
    _pay(gateway, inn, "9.00", datetime(2026, 10, 25, 23, 59))  # the day before them
    # london: today is the 23rd; the 24th is tomorrow there.
    _pay(london, inn, "20.00", datetime(2026, 11, 23, 19, 0))
    _pay(london, inn, "5.00", datetime(2026, 11, 22, 12, 0))
    _pay(london, inn, "3.00", datetime(2026, 11, 24, 0, 30))
    with web.engine.begin() as conn:
        reversal.reverse_audited(conn, reversed_today, "ошибка", actor="user:x", address=None)

    browser = web.signed_in()
    page = browser.get("/agents")
    assert page.status_code == 200 and page_of(page) == "agents"
    assert 'data-code="cash_desk"' not in page.text and 'data-code="bank"' not in page.text
    optima = _cells(page.text, "optima")
    assert optima["today"] == _tally(2, "150,50")  # the reversed one does not count
    assert optima["yesterday"] == _tally(1, "30,00")
    assert optima["month"] == _tally(4, "190,50")
    other = _cells(page.text, "london")
    assert other["today"] == _tally(1, "20,00")
    assert other["yesterday"] == _tally(1, "5,00")
    assert other["month"] == _tally(2, "25,00")  # the 24th is not in London's past yet
    assert 'href="/agents/optima"' in page.text and "Europe/London" in page.text
    assert 'id="new-agent"' not in page.text  # an operator reads, does not change

    one = browser.get("/agents/london")
    assert one.status_code == 200 and page_of(one) == "agents-one"
    figures = _figures(one.text)
    assert figures["today"] == _tally(1, "20,00") and figures["month"] == _tally(2, "25,00")
    assert "23.11.2026" in one.text  # London's today


def test_request_figures_last_request_and_refusals_today(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    assert gateway.check("sochi", inn)["result"] == 0
    assert gateway.check("sochi", "01904202310427")["result"] == 5  # refused: not found
    fenced = Gateway.create(web.app, web.engine, "fenced", networks=["10.0.0.0/8"])
    assert (
        fenced.raw("sochi", {"command": "check", "txn_id": "1", "account": inn}).status_code == 403
    )
    quiet = add_agent(web.engine, "quiet")
    assert quiet
    web.clock.now = datetime.now(UTC)
    page = web.signed_in().get("/agents")
    optima = _cells(page.text, "optima")
    assert optima["refused"] == "1"
    assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d", optima["last-request"])
    assert _cells(page.text, "fenced")["refused"] == "1"
    assert _cells(page.text, "quiet")["last-request"] == "не было за два дня"
    one = web.signed_in().get("/agents/optima")
    assert _figures(one.text)["requests"] == "2" and _figures(one.text)["refused"] == "1"


def test_the_list_pages_by_code(web: Web) -> None:
    for code in ("alpha", "bravo", "charlie"):
        add_agent(web.engine, code)
    browser = web.signed_in()
    original = agent_pages.PAGE_SIZE
    agent_pages.PAGE_SIZE = 2
    try:
        first = browser.get("/agents")
        assert re.findall(r'<tr data-code="([^"]+)"', first.text) == ["alpha", "bravo"]
        link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', first.text)[1])
        second = browser.get(link)
        assert re.findall(r'<tr data-code="([^"]+)"', second.text) == ["charlie"]
        assert 'id="next-page"' not in second.text and 'id="first-page"' in second.text
    finally:
        agent_pages.PAGE_SIZE = original
    assert browser.get("/agents", params={"after": "x\x00"}).status_code == 400
    assert browser.get("/agents", params={"after": "Я" * 40}).status_code == 400


def test_an_empty_list_says_so(web: Web) -> None:
    page = web.signed_in().get("/agents")
    assert page.status_code == 200 and text_of(page.text, "agents-empty") == "Агентов пока нет."


# --- a new agent ------------------------------------------------------------------------------


def test_a_new_agent_gets_its_secret_once_and_can_call_the_gateway(web: Web) -> None:
    browser = _admin(web)
    listing = browser.get("/agents")
    assert 'id="new-agent" href="/agents/new"' in listing.text
    form = browser.get("/agents/new")
    assert page_of(form) == "agents-new"
    assert '<option value="Asia/Bishkek" selected>' in form.text
    assert '<label for="networks">' in form.text and '<label for="service_sochi">' in form.text

    created = _create(browser, name="МегаПэй <b>", cancel_window_days="2")
    assert created.status_code == 201 and page_of(created) == "agents-secret"
    assert created.headers["cache-control"] == "no-store"
    secret = _SECRET.search(created.text)[1]
    signing_key = _KEY.search(created.text)[1]
    assert len(secret) >= 40 and signing_key == agents.signing_key_for(secret)
    assert "/gateway/osmp/sochi" in created.text and "/gateway/osmp/eds" in created.text
    assert text_of(created.text, "secret-warning").startswith("<p>Скопируйте секрет")

    with web.engine.connect() as conn:
        row = conn.execute(select(agents_table).where(agents_table.c.code == "megapay")).one()
    assert secret not in json.dumps([str(v) for v in row])  # never stored in clear
    assert agents.secret_matches(secret, row.secret_hash)
    assert row.name == "МегаПэй <b>" and row.cancel_window_days == 2
    assert row.allowed_networks == "127.0.0.1/32,10.0.0.0/8"

    # Shown once: no page shows it again.
    for path in ("/agents", "/agents/megapay"):
        again = browser.get(path)
        assert secret not in again.text and signing_key not in again.text
        assert "МегаПэй &lt;b&gt;" in again.text and "МегаПэй <b>" not in again.text

    # The agent authenticates with it at once (OSMP, from an allowed address).
    inn = add_customer(web.engine)
    agent = Gateway(TestClient(web.app, client=("127.0.0.1", 50000)), web.engine, "megapay", secret)
    assert agent.check("sochi", inn)["result"] == 0
    wrong = Gateway(agent.client, web.engine, "megapay", secret[:-1] + "x")
    assert (
        wrong.raw("sochi", {"command": "check", "txn_id": "1", "account": inn}).status_code == 401
    )

    [line] = [a for a in _audit(web.engine) if a.action == "agent.create"]
    assert (line.actor, line.object_type, line.object_id) == ("user:admin", "agent", "megapay")
    after = json.loads(line.after)
    assert after["name"] == "МегаПэй <b>" and after["cancel_window_days"] == 2
    assert set(after["services"]) == {"sochi", "eds"}
    for text in (line.after or "", line.before or ""):
        assert secret not in text and row.secret_hash not in text and signing_key not in text

    # The same form again (a reload) creates nothing and shows no secret.
    repeated = _create(browser)
    assert repeated.status_code == 409 and "уже есть" in text_of(repeated.text, "error-code")
    assert _SECRET.search(repeated.text) is None


@pytest.mark.parametrize(
    ("fields", "field", "status", "says"),
    [
        ({"code": "Mega Pay"}, "code", 422, "латинские строчные"),
        ({"code": "m"}, "code", 422, "латинские строчные"),
        ({"code": "cash_desk"}, "code", 409, "«cash_desk» уже есть"),
        ({"name": "  "}, "name", 422, "Укажите название"),
        ({"name": "Мега\u202ePay"}, "name", 422, "управляющие"),
        ({"name": "М" * 201}, "name", 422, "Укажите название"),
        ({"name": "М" * 1000}, "name", 422, "не длиннее 400"),
        ({"networks": ""}, "networks", 422, "хотя бы одну сеть"),
        ({"networks": "10.0.0.300/8"}, "networks", 422, "«10.0.0.300/8» — не адрес"),
        ({"networks": "<script>x</script>"}, "networks", 422, "не адрес"),
        ({"networks": "1.2.3.4 " * 300}, "networks", 422, "больше 200 сетей"),
        ({"timezone": "Mars/Olympus"}, "timezone", 422, "из списка"),
        ({"timezone": "Asia"}, "timezone", 422, "из списка"),
        ({"timezone": "../../etc/passwd"}, "timezone", 422, "из списка"),
        ({"cancel_window_days": "400"}, "cancel_window_days", 422, "от 0 до 366"),
        ({"cancel_window_days": "-1"}, "cancel_window_days", 422, "от 0 до 366"),
        ({"cancel_window_days": "1.5"}, "cancel_window_days", 422, "от 0 до 366"),
        ({"service_sochi": None, "service_eds": None}, "services", 422, "хотя бы одну услугу"),
    ],
)
def test_a_new_agent_refused_changes_nothing(
    web: Web, fields: dict[str, Any], field: str, status: int, says: str
) -> None:
    browser = _admin(web)
    with web.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(agents_table)).scalar_one()
    answer = _create(browser, **fields)
    assert answer.status_code == status, answer.text
    assert page_of(answer) == "agents-new"
    assert says in unescape(text_of(answer.text, f"error-{field}"))
    assert "<script>x" not in answer.text
    assert _SECRET.search(answer.text) is None
    with web.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(agents_table)).scalar_one() == before
    assert "agent.create" not in audit_actions(web.engine)


def test_the_new_form_keeps_what_was_typed(web: Web) -> None:
    answer = _create(_admin(web), code="ok-code", networks="10.0.0.300/8", service_eds=None)
    assert answer.status_code == 422
    assert 'value="ok-code"' in answer.text and ">10.0.0.300/8</textarea>" in answer.text
    assert 'id="service_sochi" name="service_sochi" value="1" checked' in answer.text
    assert 'id="service_eds" name="service_eds" value="1">' in answer.text


# --- one agent --------------------------------------------------------------------------------


def test_the_agent_page_reads_for_everyone(web: Web, gateway: Gateway) -> None:
    browser = web.signed_in()
    page = browser.get("/agents/optima")
    assert page.status_code == 200
    assert text_of(page.text, "f-code") == "optima"
    assert 'data-service="sochi" data-allowed="yes"' in page.text
    assert 'id="agent-rotate"' not in page.text and 'id="agent-networks"' not in page.text
    assert gateway.secret not in page.text
    for missing in ("/agents/nobody", "/agents/cash_desk", "/agents/bank", "/agents/NOBODY"):
        answer = browser.get(missing)
        assert answer.status_code == 404 and page_of(answer) == "not-found", missing
    assert browser.get("/agents/" + "a" * 300).status_code == 404


def test_rotate_gives_a_new_secret_once_and_the_old_one_stops(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    browser = _admin(web)
    page = browser.get("/agents/optima")
    assert 'id="agent-rotate"' in page.text and '<label for="rotate-confirm">' in page.text
    csrf = csrf_in(page.text)
    version = re.search(r'name="version" value="([^"]+)"', page.text)[1]
    before = _state(web.engine, "optima")

    unconfirmed = browser.post("/agents/optima/rotate", data={"csrf": csrf, "version": version})
    assert unconfirmed.status_code == 422 and "Подтвердите" in text_of(
        unconfirmed.text, "error-rotate"
    )
    assert _state(web.engine, "optima") == before

    data = {"csrf": csrf, "version": version, "confirm": "1"}
    rotated = browser.post("/agents/optima/rotate", data=data)
    assert rotated.status_code == 200 and page_of(rotated) == "agents-secret"
    assert rotated.headers["cache-control"] == "no-store"
    secret = _SECRET.search(rotated.text)[1]
    assert secret != gateway.secret and _KEY.search(rotated.text)[1] == agents.signing_key_for(
        secret
    )
    old = gateway.raw("sochi", {"command": "check", "txn_id": "1", "account": inn})
    assert old.status_code == 401
    renewed = Gateway(gateway.client, web.engine, "optima", secret)
    assert renewed.check("sochi", inn)["result"] == 0

    # The same form again (a reload of the answer) does not replace the secret just shown.
    again = browser.post("/agents/optima/rotate", data=data)
    assert again.status_code == 409 and "уже сменили" in text_of(again.text, "error-rotate")
    assert _SECRET.search(again.text) is None
    assert renewed.check("sochi", inn)["result"] == 0
    assert secret not in browser.get("/agents/optima").text

    lines = [a for a in _audit(web.engine) if a.action == "agent.rotate_secret"]
    assert len(lines) == 1 and lines[0].before is None and lines[0].after is None
    assert lines[0].actor == "user:admin"


def test_the_allow_list(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    browser = _admin(web)

    def call() -> int:
        answer = gateway.raw("sochi", {"command": "check", "txn_id": new_txn_id(), "account": inn})
        return int(answer.status_code)

    changed = _post(browser, "/agents/optima/networks", networks="10.0.0.0/8\r\n192.0.2.1")
    assert (
        changed.status_code == 303 and changed.headers["location"] == "/agents/optima?done=networks"
    )
    shown = browser.get(changed.headers["location"])
    assert text_of(shown.text, "agent-done").startswith("Разрешённые адреса сохранены")
    assert text_of(shown.text, "f-networks") == "10.0.0.0/8, 192.0.2.1/32"
    assert ">10.0.0.0/8\n192.0.2.1/32</textarea>" in shown.text
    assert call() == 403  # the test client calls from 127.0.0.1

    before = _state(web.engine, "optima")
    bad = _post(browser, "/agents/optima/networks", networks="10.0.0.0/8\n300.1.1.1")
    assert bad.status_code == 422 and "«300.1.1.1» — не адрес" in unescape(
        text_of(bad.text, "error-networks")
    )
    assert ">10.0.0.0/8\n300.1.1.1</textarea>" in bad.text  # what was typed, to correct it
    empty = _post(browser, "/agents/optima/networks", networks=" \n ")
    assert empty.status_code == 422
    assert _state(web.engine, "optima") == before

    assert _post(browser, "/agents/optima/networks", networks="127.0.0.1").status_code == 303
    assert call() == 200
    assert _post(browser, "/agents/optima/networks", networks="*").status_code == 303
    assert call() == 200
    assert text_of(browser.get("/agents/optima").text, "f-networks") == "любой адрес (*)"

    lines = [a for a in _audit(web.engine) if a.action == "agent.configure"]
    assert [json.loads(a.after) for a in lines] == [
        {"allowed_networks": "10.0.0.0/8,192.0.2.1/32"},
        {"allowed_networks": "127.0.0.1/32"},
        {"allowed_networks": "*"},
    ]
    assert json.loads(lines[0].before) == {"allowed_networks": "*"}


def test_time_zone_and_cancel_window(web: Web, gateway: Gateway) -> None:
    browser = _admin(web)
    done = _post(browser, "/agents/optima/settings", timezone="Asia/Almaty", cancel_window_days="3")
    assert done.status_code == 303
    page = browser.get("/agents/optima")
    assert text_of(page.text, "f-timezone") == "Asia/Almaty"
    assert '<option value="Asia/Almaty" selected>' in page.text
    assert text_of(page.text, "f-cancel-window") == "3 дня"
    [line] = [a for a in _audit(web.engine) if a.action == "agent.configure"]
    assert json.loads(line.before) == {"timezone": "Asia/Bishkek", "cancel_window_days": 0}
    assert json.loads(line.after) == {"timezone": "Asia/Almaty", "cancel_window_days": 3}

    before = _state(web.engine, "optima")
    for zone, days, field in [
        ("Mars/Base", "1", "timezone"),
        ("Asia/Almaty", "367", "cancel_window_days"),
        ("Asia/Almaty", "три", "cancel_window_days"),
        ("Asia/Almaty", "", "cancel_window_days"),
    ]:
        answer = _post(browser, "/agents/optima/settings", timezone=zone, cancel_window_days=days)
        assert answer.status_code == 422 and text_of(answer.text, f"error-{field}"), (zone, days)
    assert _state(web.engine, "optima") == before

    # Saving what is already there writes no audit line.
    _post(browser, "/agents/optima/settings", timezone="Asia/Almaty", cancel_window_days="3")
    assert audit_actions(web.engine).count("agent.configure") == 1


def test_limits_in_som_without_floats(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    browser = _admin(web)
    done = _post(browser, "/agents/optima/services/sochi", allowed="1", min="100,50", max="1 000")
    assert done.status_code == 303 and done.headers["location"].endswith("done=limits")
    with web.engine.connect() as conn:
        limits = agents.load(conn, "optima").services["sochi"]
    assert (limits.min_amount, limits.max_amount) == (10050, 100000)
    assert gateway.pay("sochi", inn, "100.49")["result"] == 241
    assert gateway.pay("sochi", inn, "1000.01")["result"] == 242
    assert gateway.pay("sochi", inn, "100.50")["result"] == 0
    page = browser.get("/agents/optima")
    assert (
        'id="min-sochi" name="min" inputmode="decimal" maxlength="32" value="100.50"' in page.text
    )
    assert f"100,50{NBSP}сом" in page.text

    # An empty field is the service's default (the other is not kept).
    assert (
        _post(browser, "/agents/optima/services/sochi", allowed="1", min="", max="2000").status_code
        == 303
    )
    with web.engine.connect() as conn:
        limits = agents.load(conn, "optima").services["sochi"]
    assert (limits.min_amount, limits.max_amount) == (100, 200000)

    before = _state(web.engine, "optima")
    for low, high, says in [
        ("abc", "", "Наименьшая сумма: нужны цифры"),
        ("1.005", "", "Наименьшая сумма: нужны цифры"),
        ("", "1e5", "Наибольшая сумма: нужны цифры"),
        ("-5", "", "Наименьшая сумма: нужны цифры"),
        ("0", "", "больше нуля"),
        ("500", "100", "больше наибольшей"),
        ("9" * 40, "", "Наименьшая сумма"),
    ]:
        answer = _post(browser, "/agents/optima/services/sochi", allowed="1", min=low, max=high)
        assert answer.status_code == 422, (low, high)
        assert says in text_of(answer.text, "error-limits"), (low, high)
    unknown = _post(browser, "/agents/optima/services/lottery", allowed="1")
    assert unknown.status_code == 422
    assert _state(web.engine, "optima") == before

    # Forbidden: the agent may no longer take the service.
    assert _post(browser, "/agents/optima/services/sochi").status_code == 303
    assert gateway.check("sochi", inn)["result"] == 7
    assert 'data-service="sochi" data-allowed="no"' in browser.get("/agents/optima").text
    lines = [json.loads(a.after) for a in _audit(web.engine) if a.action == "agent.set_limits"]
    assert lines == [
        {"service": "sochi", "allowed": True, "min": 10050, "max": 100000},
        {"service": "sochi", "allowed": True, "min": None, "max": 200000},
        {"service": "sochi", "allowed": False},
    ]


def test_disable_and_enable(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    browser = _admin(web)
    page = browser.get("/agents/optima")
    assert 'name="enabled" value="0"' in page.text
    done = browser.post("/agents/optima/enabled", data={"csrf": csrf_in(page.text), "enabled": "0"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=disabled")
    refused = gateway.raw("sochi", {"command": "check", "txn_id": "1", "account": inn})
    assert refused.status_code == 403 and "Агент отключён" in refused.text
    page = browser.get("/agents/optima?done=disabled")
    assert 'data-enabled="no"' in page.text and 'name="enabled" value="1"' in page.text
    assert _cells(browser.get("/agents").text, "optima")["refused"] == "1"
    bad = browser.post("/agents/optima/enabled", data={"csrf": csrf_in(page.text), "enabled": "x"})
    assert bad.status_code == 400
    assert (
        browser.post(
            "/agents/optima/enabled", data={"csrf": csrf_in(page.text), "enabled": "1"}
        ).status_code
        == 303
    )
    assert gateway.check("sochi", inn)["result"] == 0
    lines = [
        (a.action, json.loads(a.before), json.loads(a.after))
        for a in _audit(web.engine)
        if a.action.startswith("agent.")
    ]
    assert ("agent.disable", {"enabled": True}, {"enabled": False}) in lines
    assert ("agent.enable", {"enabled": False}, {"enabled": True}) in lines


# --- roles, CSRF, audit -------------------------------------------------------------------------

_CHANGES = [
    ("/agents/optima/rotate", {"confirm": "1"}),
    ("/agents/optima/networks", {"networks": "10.0.0.0/8"}),
    ("/agents/optima/settings", {"timezone": "Asia/Almaty", "cancel_window_days": "5"}),
    ("/agents/optima/services/sochi", {"allowed": "1", "min": "5", "max": "10"}),
    ("/agents/optima/enabled", {"enabled": "0"}),
    (
        "/agents/new",
        {
            "code": "sneaky",
            "name": "S",
            "networks": "*",
            "timezone": "UTC",
            "cancel_window_days": "0",
            "service_sochi": "1",
        },
    ),
]


@pytest.mark.parametrize("role", ["operator", "accountant", "auditor"])
def test_only_administrators_change_agents(web: Web, gateway: Gateway, role: str) -> None:
    browser = _staff(web, role)
    listing = browser.get("/agents")
    assert listing.status_code == 200 and 'id="new-agent"' not in listing.text
    page = browser.get("/agents/optima")
    assert page.status_code == 200
    for form in (
        "agent-rotate",
        "agent-networks",
        "agent-settings",
        "limits-sochi",
        "agent-enabled",
    ):
        assert f'id="{form}"' not in page.text
    assert browser.get("/agents/new").status_code == 403
    before, lines = _state(web.engine, "optima"), len(_audit(web.engine))
    csrf = csrf_in(page.text)
    for path, fields in _CHANGES:
        answer = browser.post(path, data={"csrf": csrf, **fields})
        assert answer.status_code == 403 and page_of(answer) == "forbidden", path
        assert _SECRET.search(answer.text) is None
    assert _state(web.engine, "optima") == before and len(_audit(web.engine)) == lines
    with web.engine.connect() as conn:
        assert (
            conn.execute(select(agents_table.c.id).where(agents_table.c.code == "sneaky")).first()
            is None
        )


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_changes_without_the_sessions_token_change_nothing(
    web: Web, gateway: Gateway, token: str | None
) -> None:
    browser = _admin(web)
    before, lines = _state(web.engine, "optima"), len(_audit(web.engine))
    for path, fields in _CHANGES:
        data = dict(fields) if token is None else {"csrf": token, **fields}
        answer = browser.post(path, data=data)
        assert answer.status_code == 403 and page_of(answer) == "csrf", path
        assert _SECRET.search(answer.text) is None
    assert _state(web.engine, "optima") == before and len(_audit(web.engine)) == lines


def test_without_a_session_pages_send_to_login(web: Web, gateway: Gateway) -> None:
    stranger = web.browser()
    for path in ("/agents", "/agents/new", "/agents/optima"):
        answer = stranger.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    before = _state(web.engine, "optima")
    answer = stranger.post("/agents/optima/enabled", data={"enabled": "0"})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert _state(web.engine, "optima") == before


def test_the_agents_history_and_audit_lines_hold_no_secret(web: Web) -> None:
    browser = _admin(web)
    created = _create(browser, code="audited", networks="*")
    secret = _SECRET.search(created.text)[1]
    page = browser.get("/agents/audited")
    version = re.search(r'name="version" value="([^"]+)"', page.text)[1]
    rotated = browser.post(
        "/agents/audited/rotate",
        data={"csrf": csrf_in(page.text), "version": version, "confirm": "1"},
    )
    new_secret = _SECRET.search(rotated.text)[1]
    _post(browser, "/agents/audited/networks", networks="127.0.0.1")
    _post(browser, "/agents/audited/enabled", enabled="0")
    history = browser.get("/agents/audited")
    actions = re.findall(r'<tr data-action="([^"]+)"', history.text)
    assert actions == [
        "agent.disable",
        "agent.configure",
        "agent.rotate_secret",
        "agent.create",
    ]
    assert "user:admin" in history.text and "выдан новый секрет" in history.text
    hashes = [agents.hash_secret(s) for s in (secret, new_secret)]
    keys = [agents.signing_key_for(s) for s in (secret, new_secret)]
    for line in _audit(web.engine):
        text = f"{line.before} {line.after}"
        for hidden in (secret, new_secret, *hashes, *keys):
            assert hidden not in text
        assert "secret" not in (line.before or "") + (line.after or "")
        assert "signing" not in (line.before or "") + (line.after or "")
    for hidden in (secret, new_secret, *hashes, *keys):
        assert hidden not in history.text


def test_the_command_line_is_audited_as_cli_user(cli: Cli, engine: Engine) -> None:
    output = cli("agent", "create", "clia", "--name", "CLI", "--allow-any-ip", "--json")
    assert output.exit_code == 0, output.output
    secret = json.loads(output.output)["secret"]
    assert cli("agent", "disable", "clia").exit_code == 0
    assert cli("agent", "configure", "clia", "--allow-ip", "10.0.0.0/8").exit_code == 0
    assert cli("agent", "set-limits", "clia", "sochi", "--min", "5", "--max", "50").exit_code == 0
    assert cli("agent", "rotate-secret", "clia").exit_code == 0
    assert cli("agent", "enable", "nobody").exit_code == 1
    lines = _audit(engine)
    assert [a.action for a in lines] == [
        "agent.create",
        "agent.disable",
        "agent.configure",
        "agent.set_limits",
        "agent.rotate_secret",
    ]
    assert all(a.actor.startswith("cli:") and a.object_id == "clia" for a in lines)
    assert json.loads(lines[3].after) == {
        "service": "sochi",
        "allowed": True,
        "min": 500,
        "max": 5000,
    }
    for line in lines:
        assert secret not in f"{line.before} {line.after}"


# --- the running gateway ----------------------------------------------------------------------


def test_a_change_on_a_page_reaches_a_gateway_that_caches_agents(
    settings: Settings, engine: Engine
) -> None:
    """With a long cache (an hour), a change made by the core alone waits for the cache;
    the same change made on a page is in force at the very next request."""
    cached = Settings(database_url=settings.database_url, agent_cache_seconds=3600)
    app: FastAPI = create_app(runtime=Runtime.on(cached, engine))
    app.state.web_options = WebOptions()
    gateway = Gateway.create(app, engine, "optima")
    inn = add_customer(engine)
    assert gateway.check("sochi", inn)["result"] == 0  # now cached

    with engine.begin() as conn:  # as a command in another process would
        agents.set_enabled(conn, "optima", False)
    assert gateway.check("sochi", inn)["result"] == 0  # the cache still says enabled
    with engine.begin() as conn:
        agents.set_enabled(conn, "optima", True)

    add_user(engine, username="admin", role="admin")
    browser = Web(app, engine, cached, Clock(), []).signed_in("admin")
    page = browser.get("/agents/optima")
    done = browser.post("/agents/optima/enabled", data={"csrf": csrf_in(page.text), "enabled": "0"})
    assert done.status_code == 303
    refused = gateway.raw("sochi", {"command": "check", "txn_id": "2", "account": inn})
    assert refused.status_code == 403

    _post(browser, "/agents/optima/enabled", enabled="1")
    assert gateway.check("sochi", inn)["result"] == 0
    rotated = browser.post(
        "/agents/optima/rotate",
        data={
            "csrf": csrf_in(page.text),
            "confirm": "1",
            "version": re.search(
                r'name="version" value="([^"]+)"', browser.get("/agents/optima").text
            )[1],
        },
    )
    secret = _SECRET.search(rotated.text)[1]
    assert (
        gateway.raw("sochi", {"command": "check", "txn_id": "3", "account": inn}).status_code == 401
    )
    assert Gateway(gateway.client, engine, "optima", secret).check("sochi", inn)["result"] == 0


# --- template samples (tests/adapters/web/test_web.py renders every template in every language) --------------


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for each agents template, with every branch that shows text."""
    row = Row(1, "optima", "Оптима", True, "10.0.0.0/8,192.0.2.1/32", "Asia/Bishkek", 2)
    off = Row(2, "any", "Any", False, "*", "UTC", 0)
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    figures = Figures(
        date(2026, 11, 23), Tally(3, 151_000), Tally(1, 100), Tally(40, 9_000_000), moment_, 5, 2
    )
    quiet = Figures(date(2026, 11, 23))
    services = [
        agent_pages.ServiceLine("sochi", True, 10050, None, 100, 50_000_000),
        agent_pages.ServiceLine("eds", False, None, None, 100, 100_000_000),
    ]
    history = [
        {
            "at": moment_,
            "actor": "user:admin",
            "address": "127.0.0.1",
            "action": "agent.create",
            "before": None,
            "after": {"name": "Оптима"},
        },
        {
            "at": moment_,
            "actor": "cli:root",
            "address": None,
            "action": "agent.configure",
            "before": {"timezone": "UTC"},
            "after": {"timezone": "Asia/Bishkek"},
        },
    ]
    detail = agent_pages.Detail(row, figures, services, history, "0123456789abcdef")
    one = {
        **common,
        "page": "agents-one",
        "d": detail,
        "a": row,
        "f": figures,
        "may_change": True,
        "zones": ("UTC", "Asia/Bishkek"),
        "errors": {
            k: "ошибка"
            for k in ("form", "rotate", "networks", "timezone", "cancel_window_days", "limits")
        },
        "typed": {"service": "sochi", "allowed": "1", "min": "1", "max": "2"},
        "done": "networks",
        "as_json": agent_pages.as_json,
    }
    return {
        "web/agents.html": {
            **common,
            "page": "agents",
            "rows": [row, off],
            "figures": {1: figures, 2: quiet},
            "more": "after=optima",
            "first_page": False,
            "may_change": True,
        },
        "web/agent.html": one,
        "web/agent_new.html": {
            **common,
            "page": "agents-new",
            "form": agent_pages.NewForm(
                code="optima",
                name="Оптима",
                networks="10.0.0.0/8",
                timezone="UTC",
                cancel_window_days="0",
                services=("sochi",),
            ),
            "errors": {
                k: "ошибка"
                for k in (
                    "form",
                    "code",
                    "name",
                    "networks",
                    "timezone",
                    "cancel_window_days",
                    "services",
                )
            },
            "zones": ("UTC", "Asia/Bishkek"),
            "known_services": ["eds", "sochi"],
        },
        "web/agent_secret.html": {
            **common,
            "page": "agents-secret",
            "code": "optima",
            "secret": "s" * 43,
            "signing_key": "k" * 64,
            "base": "https://pay.example.kg",
            "service_codes": ["eds", "sochi"],
            "rotated": True,
        },
    }


def test_the_empty_figures_of_an_agent_without_anything() -> None:
    empty = Figures(date(2026, 11, 23))
    assert (empty.yesterday, empty.month_from) == (date(2026, 11, 22), date(2026, 10, 25))
    assert empty.on_today == Tally(0, 0) and empty.last_request is None
    assert timedelta(days=29) == empty.today - empty.month_from
