"""The outbox list filtered to an event type (`events.admin.list_deliveries`): on
PostgreSQL a rare type is read from its events (`ix_events_type`, migration 0018) month
windows first; the rows must be exactly those of the plain newest-first walk, whatever the
filters, the page and the months the events fall in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert

from tolom.db.schema import deliveries, events
from tolom.events import admin

TYPES = ("payment.accepted", "payment.reversed", "invoice.paid")


def _event(conn: Connection, kind: str, created_at: datetime, to: list[tuple[str, str]]) -> None:
    event_id = conn.execute(
        insert(events)
        .values(type=kind, ordering_key="inn:1", payload="{}", created_at=created_at)
        .returning(events.c.id)
    ).scalar_one()
    for destination, status in to:
        conn.execute(
            insert(deliveries).values(
                event_id=event_id,
                event_created_at=created_at,
                destination=destination,
                ordering_key="inn:1",
                status=status,
                attempts=1,
                delivered_at=created_at if status == "delivered" else None,
            )
        )


def _outbox(engine: Engine) -> None:
    """Events of three types over the last 14 months (then a few old-month events written
    last, so their deliveries have the largest ids), each to a webhook, and some by e-mail."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for i in range(150):
            kind = TYPES[1] if i % 5 == 0 else (TYPES[2] if i % 7 == 0 else TYPES[0])
            to = [("webhook:1", "dead" if i % 11 == 0 else "delivered")]
            if i % 2 == 0:
                to.append(("email", "pending" if i % 4 == 0 else "delivered"))
            _event(conn, kind, now - timedelta(days=420 - i * 3), to)
        for months in (2, 5):
            _event(conn, TYPES[1], now - timedelta(days=31 * months), [("webhook:1", "delivered")])


def _walk(conn: Connection, **filters: Any) -> list[admin.Delivery]:
    """The list as it was read before migration 0018: every delivery newest first."""
    query = admin._LIST.order_by(deliveries.c.id.desc()).limit(filters["limit"])
    for name, column in (
        ("status", deliveries.c.status),
        ("destination", deliveries.c.destination),
    ):
        if filters.get(name) is not None:
            query = query.where(column == filters[name])
    if filters.get("event_type") is not None:
        query = query.where(events.c.type == filters["event_type"])
    if filters.get("before_id") is not None:
        query = query.where(deliveries.c.id < filters["before_id"])
    return [admin._delivery(row) for row in conn.execute(query)]


@pytest.mark.parametrize("limit", [1, 3, 20, 500])
def test_a_type_filter_lists_the_same_rows_as_the_walk(engine: Engine, limit: int) -> None:
    _outbox(engine)
    with engine.connect() as conn:
        newest = _walk(conn, limit=1)[0].id
        for kind, destination, status, before in itertools.product(
            TYPES,
            (None, "webhook:1", "email"),
            (None, "delivered", "dead", "pending"),
            (None, newest - 40, newest - 250),
        ):
            filters = dict(
                status=status,
                destination=destination,
                event_type=kind,
                before_id=before,
                limit=limit,
            )
            expected = _walk(conn, **filters)
            assert admin.list_deliveries(conn, **filters) == expected, filters


def test_old_months_with_newer_ids_come_first(engine: Engine) -> None:
    """Two deliveries of events months old were written last: by id they are the newest,
    so the month windows must not stop before reaching them."""
    _outbox(engine)
    with engine.connect() as conn:
        # PostgreSQL reads the type's events by month windows; SQLite walks.
        assert admin._rare_type(conn, "payment.reversed") is (engine.dialect.name == "postgresql")
        found = admin.list_deliveries(conn, event_type="payment.reversed", limit=2)
        assert found == _walk(conn, event_type="payment.reversed", limit=2)
        assert [d.id for d in found] == sorted((d.id for d in found), reverse=True)
        assert all(d.event_type == "payment.reversed" for d in found)
        newest = admin.list_deliveries(conn, limit=2)
        assert [d.id for d in found] == [d.id for d in newest]
