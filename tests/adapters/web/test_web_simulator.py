"""The wallet simulator: its journeys over the real OSMP gateway (an in-process httpx
transport to the same app), the refusal of real agents, and the back-office page's
«Оптима 24» and MegaPay steps with favourites and autopay."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update

from tests.adapters.web.test_web import Web, add_user, csrf_in
from tests.adapters.web.test_web import web as web
from tests.factories import add_agent
from tolom.agents import service as agents
from tolom.db.schema import agents as agents_table
from tolom.db.schema import audit_log, gateway_requests, payments, sandbox_payments
from tolom.simulator import journeys


def _sandbox(engine: Engine, code: str = "sandsim") -> str:
    with engine.begin() as conn:
        return agents.create(
            conn,
            code=code,
            name="Песочница",
            networks=["*"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )


def _speaker(engine: Engine, code: str = "sandsim") -> journeys.Speaker:
    with engine.connect() as conn:
        return journeys.speaker(conn, code, "http://127.0.0.1:8000")


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def transport(app: Any) -> httpx.AsyncBaseTransport:
    found = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
    app.state.simulator_transport = found
    return found


def test_a_journey_pays_through_the_sandbox_and_shows_the_receipt(
    engine: Engine, transport: httpx.AsyncBaseTransport
) -> None:
    secret = _sandbox(engine)
    who = _speaker(engine)
    assert who.secret == secret  # kept sealed, opened for the simulator
    journey = asyncio.run(
        journeys.play(who, journeys.OPTIMA, "sochi", "99999000000000", 10_000, transport=transport)
    )
    assert journey.ok and journey.receipt is not None
    assert [e.command for e in journey.exchanges] == ["check", "pay"]
    assert journey.name == "Тестовый абонент"
    assert journey.receipt.sum == "100.00" and journey.receipt.account == "99999000000000"
    for exchange in journey.exchanges:
        assert secret not in exchange.url + exchange.authorization + exchange.body
        assert exchange.authorization == f"Basic sandsim:{journeys.MASK}"
        assert exchange.url.startswith("http://127.0.0.1:8000/gateway/osmp/sochi?command=")
    with engine.connect() as conn:
        row = conn.execute(select(sandbox_payments)).one()
    assert str(row.id) == journey.receipt.prv_txn and row.txn_id == journey.receipt.txn_id
    assert row.amount == 10_000
    assert _count(engine, payments) == 0  # nothing real
    assert _count(engine, gateway_requests) == 2  # logged as any agent's requests


def test_the_wallet_resends_a_temporary_error_with_the_same_txn_id(
    engine: Engine, transport: httpx.AsyncBaseTransport
) -> None:
    _sandbox(engine)
    journey = asyncio.run(
        journeys.play(
            _speaker(engine),
            journeys.MEGAPAY,
            "sochi",
            "99999000000001",
            5_000,
            transport=transport,
        )
    )
    pays = [e for e in journey.exchanges if e.command == "pay"]
    assert [p.answer.result for p in pays] == [1, 1, 0]
    assert len({dict(p.params)["txn_id"] for p in pays}) == 1
    assert journey.ok


def test_a_refused_check_pays_nothing(engine: Engine, transport: httpx.AsyncBaseTransport) -> None:
    _sandbox(engine)
    journey = asyncio.run(
        journeys.play(
            _speaker(engine), journeys.OPTIMA, "eds", "9999900000000054", 5_000, transport=transport
        )
    )
    assert not journey.ok and journey.last.result == 5
    assert [e.command for e in journey.exchanges] == ["check"]
    assert _count(engine, sandbox_payments) == 0


def test_a_real_agent_or_one_without_a_kept_secret_is_refused(engine: Engine) -> None:
    add_agent(engine, "realone")
    _sandbox(engine, "oldsand")
    with engine.begin() as conn:
        conn.execute(
            update(agents_table).where(agents_table.c.code == "oldsand").values(secret_sealed=None)
        )
        real = conn.execute(
            select(agents_table.c.secret_sealed).where(agents_table.c.code == "realone")
        ).scalar()
    assert real is None  # a real agent's secret is never kept
    for code, key in [
        ("realone", "agent.error.speaker_real"),
        ("nobody", "agent.error.speaker_unknown"),
        ("oldsand", "agent.error.speaker_no_secret"),
    ]:
        with engine.connect() as conn, pytest.raises(journeys.SimulatorError) as refused:
            journeys.speaker(conn, code, "http://127.0.0.1:8000")
        assert refused.value.key == key
    with engine.begin() as conn:  # a new secret is kept again
        new = agents.rotate_secret(conn, "oldsand")
    assert _speaker(engine, "oldsand").secret == new


# --- the page --------------------------------------------------------------------------------


def _trail(html: str) -> str:
    found = re.search(r'name="trail" value="([^"]*)"', html)
    assert found is not None
    import html as html_module

    return html_module.unescape(found.group(1))


def test_the_optima_journey_on_the_page(web: Web, transport: httpx.AsyncBaseTransport) -> None:
    secret = _sandbox(web.engine)
    browser = web.signed_in()
    for screen, words in [
        ("home", "Платежи"),
        ("payments", "Платежи от дилеров/агентов"),
        ("dealers", "Dos Tek Group"),
        ("provider", "ИНН Вашей организации или ИП (14 цифр)"),
    ]:
        page = browser.get("/simulator", params={"wallet": "optima", "screen": screen})
        assert page.status_code == 200 and words in page.text
    found = browser.get("/simulator", params={"screen": "payments", "q": "dos tek"})
    assert "Dos Tek Group" in found.text
    csrf = csrf_in(page.text)
    checked = browser.post(
        "/simulator/check",
        data={
            "csrf": csrf,
            "wallet": "optima",
            "agent": "sandsim",
            "service": "eds",
            "account": "9999900000000005",
        },
    )
    assert checked.status_code == 200, checked.text
    assert 'data-screen="amount"' in checked.text and "К оплате: 1500.00 KGS" in checked.text
    assert 'value="1500.00"' in checked.text and "&lt;result&gt;0&lt;/result&gt;" in checked.text
    paid = browser.post(
        "/simulator/pay",
        data={
            "csrf": csrf,
            "wallet": "optima",
            "agent": "sandsim",
            "service": "eds",
            "account": "9999900000000005",
            "amount": "1500.00",
            "trail": _trail(checked.text),
        },
    )
    assert paid.status_code == 200, paid.text
    assert 'data-screen="receipt"' in paid.text and "Чек об оплате" in paid.text
    assert paid.text.count('class="sim-exchange"') == 2  # the check carried, and the pay
    assert secret not in paid.text
    with web.engine.connect() as conn:
        row = conn.execute(select(sandbox_payments)).one()
    assert f'<dd id="receipt-prv">{row.id}</dd>' in paid.text
    assert _count(web.engine, payments) == 0

    tampered = browser.post(
        "/simulator/pay",
        data={
            "csrf": csrf,
            "wallet": "optima",
            "agent": "sandsim",
            "service": "eds",
            "account": "9999900000000005",
            "amount": "1500.00",
            "trail": "[{]",
        },
    )
    assert tampered.status_code == 400


def test_the_megapay_journey_favourites_and_autopay(
    web: Web, transport: httpx.AsyncBaseTransport
) -> None:
    _sandbox(web.engine)
    browser = web.signed_in()
    page = browser.get(
        "/simulator", params={"wallet": "megapay", "screen": "service", "service": "sochi"}
    )
    assert "ДОБАВИТЬ В ИЗБРАННОЕ" in page.text and "Баланс 67.38c" in page.text
    form = {
        "csrf": csrf_in(page.text),
        "wallet": "megapay",
        "agent": "sandsim",
        "service": "sochi",
        "account": "99999000000000",
        "amount": "250",
    }
    saved = browser.post("/simulator/megapay", data={**form, "action": "favourite"})
    assert saved.status_code == 200 and 'id="simulator-notice"' in saved.text
    scheduled = browser.post(
        "/simulator/megapay", data={**form, "action": "autopay", "autopay_days": "30"}
    )
    assert scheduled.status_code == 200
    listing = browser.get("/simulator", params={"wallet": "megapay", "screen": "payments"})
    assert listing.text.count('data-account="99999000000000"') == 2
    assert "каждые 30 дней" in listing.text
    ids = re.findall(r"/simulator/favourites/(\d+)/run", listing.text)
    assert len(ids) == 1
    ran = browser.post(f"/simulator/favourites/{ids[0]}/run", data={"csrf": form["csrf"]})
    assert ran.status_code == 200 and "Чек об оплате" in ran.text
    again = browser.post(f"/simulator/favourites/{ids[0]}/run", data={"csrf": form["csrf"]})
    assert "Чек об оплате" in again.text
    with web.engine.connect() as conn:
        txns = conn.execute(select(sandbox_payments.c.txn_id)).scalars().all()
        actions = conn.execute(select(audit_log.c.action)).scalars().all()
    assert len(set(txns)) == 2  # each run a new txn_id
    assert actions.count("simulator.favourite.add") == 2
    assert actions.count("simulator.favourite.run") == 2
    after = browser.get("/simulator", params={"wallet": "megapay", "screen": "payments"})
    assert "выполнен раз: 2" in after.text

    paid = browser.post("/simulator/megapay", data={**form, "action": "pay"})
    assert "Чек об оплате" in paid.text
    assert [json.loads(json.dumps(x)) for x in re.findall(r'data-command="(\w+)"', paid.text)] == [
        "check",
        "pay",
    ]
    assert _count(web.engine, payments) == 0


def test_a_real_agent_is_refused_on_the_page_and_other_roles_may_not(
    web: Web, transport: httpx.AsyncBaseTransport
) -> None:
    add_agent(web.engine, "realone")
    browser = web.signed_in()
    page = browser.get("/simulator")
    assert 'value="realone"' not in page.text  # only sandbox agents are offered
    refused = browser.post(
        "/simulator/check",
        data={
            "csrf": csrf_in(page.text),
            "wallet": "optima",
            "agent": "realone",
            "service": "sochi",
            "account": "99999000000000",
        },
    )
    assert refused.status_code == 409 and "не тестовый" in refused.text
    assert _count(web.engine, gateway_requests) == 0  # nothing was sent
    add_user(web.engine, username="bukh", role="accountant")
    assert web.signed_in("bukh").get("/simulator").status_code == 403
