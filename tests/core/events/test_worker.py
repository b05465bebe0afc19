"""The outbox worker against real receivers on 127.0.0.1: retries, order per key, backoff,
dead letters and re-drive, disabled endpoints, concurrent workers, killed workers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from tests.core.events.test_webhooks import (
    LOCAL,
    Hit,
    Receiver,
    add_endpoint,
    emit,
    fast,
    receiving,
)
from tests.factories import add_customer, run_cli
from tolom import audit
from tolom.db.schema import customers, deliveries
from tolom.events import endpoints, worker
from tolom.events.worker import Worker, claim, retry_delay
from tolom.settings import Settings
from tolom.timestamps import as_utc

WAIT = 60.0  # generous upper bound for anything asynchronous; tests never depend on it


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(deliveries).order_by(deliveries.c.id)))


def make_due(engine: Engine) -> None:
    """Time travel: every pending delivery's next attempt is now."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.status == "pending")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def drain(engine: Engine, settings: Settings, rounds: int = 50) -> None:
    """Run the worker, skipping the backoff waits, until nothing is pending."""
    for _ in range(rounds):
        Worker(settings, engine).run(once=True)
        if all(r.status != "pending" for r in rows(engine)):
            return
        make_due(engine)
    raise AssertionError(f"still pending after {rounds} rounds: {rows(engine)}")


def test_retry_schedule_with_the_defaults() -> None:
    """Doubling from 10 s, capped at 6 h."""
    delays = [retry_delay(Settings(), n) for n in range(1, 15)]
    assert delays == [10 * 2**i for i in range(12)] + [21600, 21600]


def test_a_failing_receiver_gets_every_event_once_per_id(
    engine: Engine, settings: Settings
) -> None:
    """The receiver fails its first three requests; every event arrives, retries carry the
    same id and body, and after deduplication each event's effect is applied once."""
    with receiving(Receiver(respond=lambda n, hit: 500 if n < 3 else 200)) as receiver:
        add_endpoint(engine, receiver)
        ids = [emit(engine, key=f"customer:{i % 2}") for i in range(5)]
        drain(engine, fast(settings))

    assert sorted(receiver.effects, key=int) == [str(i) for i in ids]
    assert len(receiver.hits) == 5 + 3
    assert all(h.verified for h in receiver.hits)
    retried = [i for i, count in Counter(receiver.ids()).items() if count > 1]
    assert retried, "some events were retried"
    for event_id in retried:
        assert len({h.body for h in receiver.hits if h.id == event_id}) == 1, "the same body"
    assert {r.status for r in rows(engine)} == {"delivered"}
    assert sum(r.attempts for r in rows(engine)) == 8


def test_order_per_key(engine: Engine, settings: Settings) -> None:
    """Key A's first event fails twice: A's later events wait for it, key B does not."""
    failed = Counter[str]()

    def respond(n: int, hit: Hit) -> int:
        if hit.id == a1 and failed[a1] < 2:
            failed[a1] += 1
            return 503
        return 200

    with receiving(Receiver(respond=respond)) as receiver:
        add_endpoint(engine, receiver)
        a1, a2, b1, a3 = (str(emit(engine, key=k)) for k in ["inn:A", "inn:A", "inn:B", "inn:A"])
        Worker(fast(settings), engine).run(once=True)
        assert sorted(receiver.ids()) == sorted([a1, b1]), "A2 and A3 wait behind A1"
        drain(engine, fast(settings))

    assert [i for i in receiver.ids() if i != b1] == [a1, a1, a1, a2, a3]
    assert receiver.effects.index(a1) < receiver.effects.index(a2) < receiver.effects.index(a3)
    assert receiver.ids().count(b1) == 1


def test_backoff_dead_letter_and_redrive(
    engine: Engine, settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts back off exponentially up to the cap; after the last one the delivery is
    dead and leaves its line; `tolom events redrive` sends it again."""
    worker_settings = fast(
        settings,
        delivery_max_attempts=4,
        delivery_backoff_seconds=100.0,
        delivery_backoff_max_seconds=250.0,
    )
    healthy = threading.Event()

    def respond(n: int, hit: Hit) -> int:
        return 200 if healthy.is_set() or hit.id != str(first) else 500

    with receiving(Receiver(respond=respond)) as receiver:
        add_endpoint(engine, receiver)
        first, second = emit(engine, key="customer:7"), emit(engine, key="customer:7")
        for attempt, expected_delay in [(1, 100), (2, 200), (3, 250)]:
            before = datetime.now(UTC)
            Worker(worker_settings, engine).run(once=True)
            after = datetime.now(UTC)
            head = rows(engine)[0]
            assert (head.status, head.attempts, head.last_error) == ("pending", attempt, "HTTP 500")
            assert rows(engine)[1].attempts == 0, "the next event waits behind the head"
            due = as_utc(head.next_attempt_at)
            assert before + timedelta(seconds=0.9 * expected_delay) <= due
            assert due <= after + timedelta(seconds=1.1 * expected_delay)
            make_due(engine)
        Worker(worker_settings, engine).run(once=True)
        dead, later = rows(engine)
        assert (dead.status, dead.attempts, dead.last_error) == ("dead", 4, "HTTP 500")
        assert later.status == "delivered", "a dead delivery leaves its line"

        def cli(*args: str) -> Any:
            return run_cli(database_url, monkeypatch, list(args))

        listed = cli("events", "list", "--status", "dead", "--json")
        assert listed.exit_code == 0, listed.output
        assert [
            (d["id"], d["event_id"], d["attempts"], d["last_error"])
            for d in json.loads(listed.output)
        ] == [(dead.id, first, 4, "HTTP 500")]
        assert "HTTP 500" in cli("events", "list", "--status", "dead").output
        shown = cli("events", "show", str(first), "--json")
        assert json.loads(shown.output)["deliveries"][0]["status"] == "dead"
        assert "payment.accepted" in cli("events", "show", str(first)).output

        for args, fragment in [
            (["events", "redrive", "--delivery", "abc"], "неверный номер доставки"),
            (["events", "redrive", "--delivery", "999"], "доставка 999 не найдена"),
            (["events", "redrive", "--delivery", str(later.id)], "не в статусе dead"),
            (["events", "redrive"], "--all-dead"),
            (["events", "show", "999"], "событие 999 не найдено"),
            (["events", "show", "1.5"], "неверный номер события"),
            (["events", "list", "--status", "lost"], "неизвестный статус"),
        ]:
            refused = cli(*args)
            assert refused.exit_code == 1, (args, refused.output)
            assert fragment in refused.output, refused.output
        assert rows(engine)[0].status == "dead", "a refused re-drive changes nothing"

        healthy.set()
        monkeypatch.setenv("TOLOM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")  # `tolom worker`
        redriven = cli("events", "redrive", "--delivery", str(dead.id))
        assert redriven.exit_code == 0, redriven.output
        again = rows(engine)[0]
        assert (again.status, again.attempts) == ("pending", 0)
        worked = cli("worker", "--once", "--batch", "2")
        assert worked.exit_code == 0, worked.output

    assert rows(engine)[0].status == "delivered"
    assert receiver.effects == [str(second), str(first)]
    with engine.connect() as conn:
        [entry] = audit.entries(conn, object_type="delivery", object_id=str(dead.id))
    assert entry["action"] == "delivery.redrive" and entry["actor"].startswith("cli:")
    assert entry["before"]["last_error"] == "HTTP 500"


def test_redrive_all_dead_of_one_destination(
    engine: Engine, settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiving(Receiver(respond=lambda n, hit: 500)) as receiver:
        add_endpoint(engine, receiver, name="one")
        with engine.begin() as conn:
            endpoints.add(
                conn,
                name="two",
                url=receiver.url,
                event_types="*",
                actor="test",
                allowed_networks=LOCAL,
            )
        emit(engine, key="a")
        emit(engine, key="b")
        Worker(fast(settings, delivery_max_attempts=1), engine).run(once=True)
    assert [r.status for r in rows(engine)] == ["dead"] * 4
    result = run_cli(
        database_url,
        monkeypatch,
        ["events", "redrive", "--all-dead", "--destination", "webhook:2"],
    )
    assert result.exit_code == 0, result.output
    assert [(r.destination, r.status) for r in rows(engine)] == [
        ("webhook:1", "dead"),
        ("webhook:2", "pending"),
        ("webhook:1", "dead"),
        ("webhook:2", "pending"),
    ]


def test_a_disabled_endpoint_waits_without_spending_attempts(
    engine: Engine, settings: Settings
) -> None:
    with receiving(Receiver()) as receiver:
        add_endpoint(engine, receiver)
        queued = emit(engine)
        with engine.begin() as conn:
            endpoints.set_enabled(conn, "sochi", False, actor="test")
        emit(engine)  # not queued for a disabled endpoint
        Worker(fast(settings), engine).run(once=True)
        [parked] = rows(engine)
        assert (parked.status, parked.attempts, receiver.hits) == ("pending", 0, [])

        with engine.begin() as conn:
            endpoints.set_enabled(conn, "sochi", True, actor="test")
        Worker(fast(settings), engine).run(once=True)
    assert receiver.effects == [str(queued)]
    assert [(r.status, r.attempts) for r in rows(engine)] == [("delivered", 1)]


def _customer_with_contacts(engine: Engine) -> int:
    inn = add_customer(engine)
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(customers)
                .where(customers.c.inn == inn)
                .values(email="buh@example.kg", phone="+996555123456", language="ky")
                .returning(customers.c.id)
            ).scalar_one()
        )


def test_notifications_are_sent_through_dispatch(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """E-mail and SMS deliveries go to tolom.notifications.dispatch (console backends)."""
    customer_id = _customer_with_contacts(engine)
    emit(engine, key=f"customer:{customer_id}", customer_id=customer_id)
    console = fast(settings, email_backend="console", sms_backend="console")
    with caplog.at_level(logging.INFO):
        Worker(console, engine).run(once=True)
    found = {r.destination: r for r in rows(engine)}
    assert set(found) == {"email", "sms"}
    assert (found["email"].recipient, found["email"].language) == ("buh@example.kg", "ky")
    assert (found["sms"].recipient, found["sms"].language) == ("+996555123456", "ky")
    for row in found.values():
        assert (row.status, row.attempts) == ("delivered", 1), row.last_error
    assert "→ email): delivered (sent)" in caplog.text


def test_a_failing_notification_is_retried(engine: Engine, settings: Settings) -> None:
    """No SMTP server, an SMS gateway answering 500: failed attempts, never a lost event."""
    customer_id = _customer_with_contacts(engine)
    emit(engine, key=f"customer:{customer_id}", customer_id=customer_id)
    with receiving(Receiver(respond=lambda n, hit: 500, require_signature=False)) as gateway:
        broken = fast(
            settings,
            email_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=9,  # discard: nothing listens
            smtp_timeout_seconds=5.0,
            sms_backend="http",
            sms_url=gateway.url,
        )
        Worker(broken, engine).run(once=True)
    found = {r.destination: r for r in rows(engine)}
    assert set(found) == {"email", "sms"}
    for row in found.values():
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error, row
    assert "500" in found["sms"].last_error, found["sms"].last_error
    assert len(gateway.hits) == 1


def test_two_workers_never_attempt_one_delivery_at_once(engine: Engine, settings: Settings) -> None:
    """Two workers (threads, each with its own pool) race over the same rows; each delivery
    is attempted exactly once and never by both at the same time."""

    def slow(n: int, hit: Hit) -> int:
        time.sleep(0.01)
        return 200

    with receiving(Receiver(respond=slow)) as receiver:
        add_endpoint(engine, receiver)
        ids = [emit(engine, key=f"inn:{i % 10}") for i in range(40)]
        workers = [Worker(fast(settings), engine, concurrency=4) for _ in range(2)]
        threads = [threading.Thread(target=w.run, kwargs={"once": True}) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)

    assert Counter(receiver.ids()) == Counter(str(i) for i in ids), "each delivered once"
    assert receiver.max_in_flight_per_id == 1
    assert {r.status for r in rows(engine)} == {"delivered"}


def test_concurrent_claims_are_disjoint(engine: Engine, settings: Settings) -> None:
    """Of the rows several workers race for, each is taken by exactly one; a row under
    someone else's lease is not taken (the conditional UPDATE)."""
    with engine.begin() as conn:
        endpoints.add(
            conn,
            name="x",
            url="http://127.0.0.1:9/",
            event_types="*",
            actor="t",
            allowed_networks=LOCAL,
        )
    for i in range(30):
        emit(engine, key=f"k{i}")
    taken: list[int] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        taken.extend(c.id for c in claim(engine, settings, limit=30))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(taken) == [r.id for r in rows(engine)], "every row taken, none twice"
    assert claim(engine, settings, limit=30) == []
    with engine.begin() as conn:
        stolen = conn.execute(
            worker._TAKE,
            {"b_id": taken[0], "b_now": datetime.now(UTC), "b_lease": datetime.now(UTC)},
        )
    assert stolen.rowcount == 0


# --- a worker killed mid-delivery -----------------------------------------------------------


def _worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOLOM_DATABASE_URL": database_url,
        "TOLOM_DELIVERY_LEASE_SECONDS": "1",
        "TOLOM_WEBHOOK_TIMEOUT_SECONDS": "120",
        "TOLOM_WORKER_POLL_SECONDS": "0.1",
        "TOLOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",  # the receiver's address
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tolom", "worker"],
            env=env,
            cwd=log.parent,  # no stray .env
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_worker_killed_mid_delivery_loses_no_event(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the receiver holds the request: the lease runs out, a new worker
    delivers the event (the receiver sees it twice, applies it once); SIGTERM then lets
    the new worker finish its request and exit 0."""
    arrived = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]

    def hold(n: int, hit: Hit) -> int:
        if n < 2:
            arrived[n].set()
            release[n].wait(WAIT)
        return 200

    log = tmp_path / "worker.log"
    with receiving(Receiver(respond=hold)) as receiver:
        endpoint_id = add_endpoint(engine, receiver)
        event_id = emit(engine)
        first = _worker(database_url, log)
        try:
            assert arrived[0].wait(WAIT), log.read_text()
            first.send_signal(signal.SIGKILL)
            assert first.wait(WAIT) == -signal.SIGKILL
        finally:
            first.kill()
        [row] = rows(engine)
        assert (row.status, row.attempts) == ("pending", 0)
        assert row.lease_until is not None, "killed while it held the delivery"

        second = _worker(database_url, log)
        try:
            assert arrived[1].wait(WAIT), log.read_text()
            second.send_signal(signal.SIGTERM)
            release[1].set()
            assert second.wait(WAIT) == 0, log.read_text()
        finally:
            second.kill()
            release[0].set()  # the first request, whose worker is gone, now completes too

    assert receiver.ids() == [str(event_id), str(event_id)]
    assert receiver.effects == [str(event_id)]
    [row] = rows(engine)
    assert (row.status, row.attempts, row.lease_until) == ("delivered", 1, None)
    output = log.read_text()
    line = f"delivery {row.id} (event {event_id} payment.accepted → webhook:{endpoint_id})"
    assert f"{line}: delivered (HTTP 200)" in output
    assert "SIGTERM: stopping after the deliveries in flight" in output


def test_the_worker_runs_the_jobs_it_is_given_and_survives_a_failing_one(
    settings: Settings, engine: Engine
) -> None:
    ran: list[str] = []

    def broken(_engine: Engine, _settings: Settings) -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    def fine(_engine: Engine, _settings: Settings) -> None:
        ran.append("fine")

    Worker(settings, engine, jobs=(broken, fine)).run(once=True)
    assert ran == ["broken", "fine"]
