"""The issue's "done when", end to end on both databases: a top-up through OSMP releases the
reports awaiting payment, and the worker tells the other systems (a signed webhook to a real
HTTP receiver) and the customer (an e-mail through a real SMTP server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from tests.core.events.test_webhooks import LOCAL
from tests.factories import Gateway, add_customer
from tests.mailserver import MailServer
from tolom.billing import charges, customers
from tolom.db.schema import deliveries, webhook_endpoints
from tolom.events import endpoints, inbox
from tolom.events.worker import Worker
from tolom.settings import Settings


@pytest.fixture
def receiver(engine: Engine) -> Iterator[inbox.Inbox]:
    """A webhook endpoint `sochi` and a real receiver on 127.0.0.1 behind it."""
    received = inbox.Inbox("", lambda line: None)
    http = inbox.server("http://127.0.0.1:0/tolom-webhooks", received)
    url = f"http://127.0.0.1:{http.server_address[1]}/tolom-webhooks"
    with engine.begin() as conn:
        _id, secret = endpoints.add(
            conn, name="sochi", url=url, event_types="*", actor="test", allowed_networks=LOCAL
        )
    received.secret = secret
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield received
    http.shutdown()
    http.server_close()


def waiting_reports(engine: Engine, inn: str, *amounts: int) -> list[int]:
    with engine.begin() as conn:
        return [
            charges.create(
                conn,
                charges.ChargeRequest(
                    client="apikey:sochi",
                    idempotency_key=f"report-{n}",
                    inn=inn,
                    description=f"Отчёт {n}",
                    amount=amount,
                    report=charges.Report(f"R-{n}", "sti", "vat", "2026-10"),
                ),
            ).id
            for n, amount in enumerate(amounts)
        ]


def test_a_top_up_through_osmp_releases_reports_and_everyone_hears_of_it(
    engine: Engine,
    settings: Settings,
    gateway: Gateway,
    receiver: inbox.Inbox,
    mail_server: MailServer,
) -> None:
    inn = add_customer(engine, name="ОсОО «Ала-Тоо Консалтинг»")
    with engine.begin() as conn:
        customers.set_contacts(conn, inn, email="buh@ala-too.example.kg")
    first, second, third = waiting_reports(engine, inn, 150_00, 200_00, 400_00)

    answer = gateway.pay("sochi", inn, "500.00")
    assert answer["result"] == 0

    with engine.connect() as conn:
        states = [charges.get(conn, c).status for c in (first, second, third)]
    assert states == ["charged", "charged", "awaiting_payment"]

    worker_settings = settings.model_copy(
        update={
            "email_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": mail_server.port,
            "smtp_timeout_seconds": 5.0,
            "webhook_allowed_networks": LOCAL,
        }
    )
    Worker(worker_settings, engine).run(once=True)

    # The webhook receiver: the awaiting ones when they were made, then the top-up and what
    # it released, in that order, each signed (the inbox verified them) and once.
    got = [(e["type"], e["data"].get("charge_id")) for e in receiver.events]
    assert got == [
        ("charge.awaiting_payment", first),
        ("charge.awaiting_payment", second),
        ("charge.awaiting_payment", third),
        ("payment.accepted", None),
        ("charge.settled", first),
        ("charge.settled", second),
    ]
    payment = receiver.events[3]["data"]
    assert payment["payment_id"] == int(answer["prv_txn"]) and payment["amount"] == 500_00

    # The customer: one e-mail for the top-up and one per released report.
    subjects = [m["Subject"] for m in mail_server.messages()]
    assert len(subjects) == 3, subjects
    assert "500,00 сом" in subjects[0]  # written for people, as on every page
    assert all(m["To"] == "buh@ala-too.example.kg" for m in mail_server.messages())
    bodies = [m.get_body(preferencelist=("plain",)).get_content() for m in mail_server.messages()]
    assert inn in bodies[0]

    with engine.connect() as conn:
        left = conn.execute(select(deliveries.c.status)).scalars().all()
    assert set(left) == {"delivered"}


def test_webhook_listen_receives_verifies_and_counts(
    engine: Engine, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """`tolom webhook listen NAME` as an operator runs it: a process of its own."""
    with engine.begin() as conn:
        endpoints.add(
            conn,
            name="watch",
            url="http://127.0.0.1:1/hook",
            event_types="*",
            actor="t",
            allowed_networks=LOCAL,
        )
    inn = add_customer(engine)
    waiting_reports(engine, inn, 100_00)
    output = tmp_path / "listen.log"
    listener = _listen(engine, database_url, output)
    try:
        fast = settings.model_copy(
            update={"delivery_backoff_seconds": 0.01, "webhook_allowed_networks": LOCAL}
        )
        Worker(fast, engine).run(once=True)  # refused (503): due again 0.01 s later
        time.sleep(0.1)
        Worker(fast, engine).run(once=True)  # delivered
        _wait_for(lambda: "✓ событие" in output.read_text(encoding="utf-8"))
    finally:
        listener.send_signal(signal.SIGINT)
        listener.wait(timeout=30)
    text = output.read_text(encoding="utf-8")
    assert "отвечаем 503" in text and "✓ событие 1 charge.awaiting_payment" in text
    assert "Получено событий: 1" in text
    with engine.connect() as conn:
        row = conn.execute(select(deliveries.c.status, deliveries.c.attempts)).one()
    assert tuple(row) == ("delivered", 2)


def _listen(engine: Engine, database_url: str, output: Path) -> subprocess.Popen[bytes]:
    """Start `tolom webhook listen watch` on a free port (another with the next, if a
    process took the port between our probe and its bind)."""
    env = {**os.environ, "TOLOM_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    for _attempt in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with engine.begin() as conn:
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.name == "watch")
                .values(url=f"http://127.0.0.1:{port}/hook")
            )
        with output.open("wb") as sink:
            listener = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tolom",
                    "webhook",
                    "listen",
                    "watch",
                    "--refuse-first",
                    "1",
                ],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        _wait_for(
            lambda started=listener: (
                "Принимаю" in output.read_text(encoding="utf-8") or started.poll() is not None
            )
        )
        if listener.poll() is None:
            return listener
    raise AssertionError(f"the listener did not start: {output.read_text(encoding='utf-8')}")


def _wait_for(condition: Callable[[], bool], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
