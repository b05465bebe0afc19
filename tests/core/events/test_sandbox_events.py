"""Sandbox events (issue 17): a sandbox agent's pays and cancels emit the events a real one
would, once, marked sandbox, and the real worker delivers them only to the endpoints marked
for the sandbox (never to production endpoints or customers); real events never go there.
Also the mark in `tolom webhook add --sandbox`, the list, the audit and the back office."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, csrf_in
from tests.adapters.web.test_web import web as web
from tests.core.events.test_webhooks import LOCAL, Receiver, add_endpoint, fast, receiving
from tests.factories import Cli, Gateway, add_customer, new_txn_id
from tolom.agents import service as agents
from tolom.db.schema import audit_log, deliveries, events
from tolom.events import endpoints
from tolom.events.worker import Worker
from tolom.payments import sandbox
from tolom.payments.model import CancelOutcome
from tolom.settings import Settings


def _sandbox_gateway(app: Any, engine: Engine, code: str = "sandev") -> Gateway:
    with engine.begin() as conn:
        secret = agents.create(
            conn,
            code=code,
            name=f"Песочница {code}",
            networks=["*"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )
    return Gateway(TestClient(app, client=("127.0.0.1", 50000)), engine, code, secret)


def _sandbox_endpoint(engine: Engine, receiver: Receiver, name: str = "sandbox") -> int:
    with engine.begin() as conn:
        endpoint_id, receiver.secret = endpoints.add(
            conn,
            name=name,
            url=receiver.url,
            event_types="*",
            actor="test",
            allowed_networks=LOCAL,
            sandbox=True,
        )
    return endpoint_id


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    """What the receiver got, in event id order (keys are delivered independently)."""
    assert all(hit.verified for hit in receiver.hits)
    return sorted((json.loads(hit.body) for hit in receiver.hits), key=lambda b: int(b["id"]))


def _drain(engine: Engine, settings: Settings) -> None:
    for _ in range(20):
        Worker(fast(settings), engine).run(once=True)
        with engine.connect() as conn:
            statuses = set(conn.execute(select(deliveries.c.status)).scalars())
        if "pending" not in statuses:
            return
    raise AssertionError("deliveries still pending")


def test_sandbox_events_reach_only_sandbox_endpoints_and_real_ones_only_real(
    app: Any, engine: Engine, settings: Settings
) -> None:
    gateway = _sandbox_gateway(app, engine)
    real = Gateway.create(app, engine, "realpay")
    inn = add_customer(engine, email="buh@example.kg")
    with receiving(Receiver()) as production, receiving(Receiver()) as testing:
        production_id = add_endpoint(engine, production, "production")
        testing_id = _sandbox_endpoint(engine, testing)

        # A sandbox pay, repeated: one receipt, one event.
        txn_id = new_txn_id()
        first = gateway.pay("sochi", "99999000000000", "500.00", txn_id=txn_id)
        again = gateway.pay("sochi", "99999000000000", "500.00", txn_id=txn_id)
        assert first["result"] == again["result"] == 0 and first["prv_txn"] == again["prv_txn"]
        # Answers that accept nothing emit nothing: 1, 90, a refusal.
        assert gateway.pay("sochi", "99999000000001", "500.00")["result"] == 1
        assert gateway.pay("sochi", "99999000000090", "500.00")["result"] == 90
        assert gateway.pay("sochi", "99999000000005", "500.00")["result"] == 5
        # The magic invoice: payment.accepted and invoice.paid, as a real eds pay.
        invoice_txn = new_txn_id()
        paid_invoice = gateway.pay("eds", "9999900000000005", "1500.00", txn_id=invoice_txn)
        assert paid_invoice["result"] == 0
        # A cancel (accepted today: the same-day window is open), repeated: one event.
        with engine.begin() as conn:
            agent = agents.load(conn, "sandev")
        assert agent is not None
        cancel_txn = new_txn_id()
        assert gateway.pay("sochi", "99999000000000", "700.00", cancel_txn)["result"] == 0
        for _ in range(2):
            with engine.begin() as conn:
                cancelled = sandbox.cancel(conn, agent, cancel_txn, "Клиент ошибся")
            assert cancelled.outcome is CancelOutcome.OK
        # A real pay, to a customer with an e-mail address.
        assert real.pay("sochi", inn, "300.00")["result"] == 0

        with engine.connect() as conn:
            lines = conn.execute(
                select(events.c.type, events.c.sandbox, deliveries.c.destination)
                .select_from(events.outerjoin(deliveries, deliveries.c.event_id == events.c.id))
                .order_by(events.c.id, deliveries.c.id)
            ).all()
        sandboxed = [(t, d) for t, s, d in lines if s]
        assert sandboxed == [
            ("payment.accepted", f"webhook:{testing_id}"),
            ("payment.accepted", f"webhook:{testing_id}"),
            ("invoice.paid", f"webhook:{testing_id}"),
            ("payment.accepted", f"webhook:{testing_id}"),
            ("payment.reversed", f"webhook:{testing_id}"),
        ]
        assert sorted(d for _, s, d in lines if not s) == [
            "email",
            f"webhook:{production_id}",
        ]

        _drain(engine, settings)

    sent = _bodies(testing)
    assert [b["type"] for b in sent] == [t for t, _ in sandboxed]
    assert all(b["data"]["sandbox"] is True for b in sent)
    accepted = sent[0]["data"]
    assert accepted == {
        "payment_id": int(first["prv_txn"]),
        "service": "sochi",
        "account": "99999000000000",
        "amount": 50_000,
        "agent": "sandev",
        "txn_id": txn_id,
        "business_date": "2026-11-21",
        "created_at": accepted["created_at"],
        "inn": "99999000000000",
        "customer_name": sandbox.DISPLAY_NAME,
        "invoice_number": None,
        "balance": None,
        "sandbox": True,
    }
    invoice = sent[2]["data"]
    assert invoice["invoice_number"] == "9999900000000005" and invoice["total"] == 150_000
    assert invoice["payment_id"] == int(paid_invoice["prv_txn"]) and invoice["orders"] == []
    reversed_ = sent[4]["data"]
    assert reversed_["txn_id"] == cancel_txn and reversed_["reason"] == "Клиент ошибся"
    assert reversed_["amount"] == 70_000 and reversed_["requested_by"] == agent.actor

    [real_event] = _bodies(production)
    assert real_event["type"] == "payment.accepted" and real_event["data"]["inn"] == inn
    assert "sandbox" not in real_event["data"]


def test_a_sandbox_event_with_no_sandbox_endpoint_goes_nowhere(app: Any, engine: Engine) -> None:
    """Production endpoints never queue it, whatever types they want; it is still kept."""
    gateway = _sandbox_gateway(app, engine)
    with receiving(Receiver()) as production:
        add_endpoint(engine, production, "production", "payment.accepted")
        assert gateway.pay("sochi", "99999000000000", "500.00")["result"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(events.c.type, events.c.sandbox)).all() == [
            ("payment.accepted", True)
        ]
        assert conn.execute(select(deliveries.c.id)).all() == []


def test_the_cli_marks_an_endpoint_for_the_sandbox(cli: Cli, engine: Engine) -> None:
    added = cli("webhook", "add", "sandhook", "https://hooks.example.kg/test", "--sandbox")
    assert added.exit_code == 0, added.output
    assert added.output.startswith("Вебхук песочницы sandhook добавлен (webhook:")
    assert cli("webhook", "add", "crm", "https://crm.example.kg/hooks").exit_code == 0
    listed = json.loads(cli("webhook", "list", "--json").output)
    assert [(e["name"], e["sandbox"]) for e in listed] == [("crm", False), ("sandhook", True)]
    lines = cli("webhook", "list").output.splitlines()
    assert lines[1].startswith("sandhook") and lines[1].endswith("[песочница]")
    assert not lines[0].endswith("]")
    with engine.connect() as conn:
        after = conn.execute(
            select(audit_log.c.after)
            .where(audit_log.c.action == "webhook.add")
            .order_by(audit_log.c.id)
        ).scalars()
        assert [json.loads(a)["sandbox"] for a in after] == [True, False]


def test_the_back_office_adds_a_sandbox_endpoint_and_marks_its_events(
    web: Web, app: Any, engine: Engine
) -> None:
    add_user(engine, username="admin", role="admin")
    browser = web.signed_in("admin")
    page = browser.get("/webhooks")
    assert 'id="w-sandbox"' in page.text
    added = browser.post(
        "/webhooks",
        data={
            "csrf": csrf_in(page.text),
            "name": "sandhook",
            "url": "https://hooks.example.kg/test",
            "sandbox": "1",
        },
    )
    assert added.status_code == 201, added.text
    listed = browser.get("/webhooks").text
    assert 'data-name="sandhook" data-enabled="yes" data-sandbox="yes"' in listed
    with engine.connect() as conn:
        assert [e.sandbox for e in endpoints.load_all(conn)] == [True]

    gateway = _sandbox_gateway(app, engine)
    assert gateway.pay("sochi", "99999000000000", "500.00")["result"] == 0
    with engine.connect() as conn:
        event_id = conn.execute(select(events.c.id)).scalar_one()
    outbox_page = browser.get("/events").text
    assert 'data-mark="sandbox"' in outbox_page
    event_page = browser.get(f"/events/{event_id}").text
    assert 'id="f-sandbox"' in event_page and "только вебхукам песочницы" in event_page
