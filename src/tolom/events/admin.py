"""What operators do with deliveries: list them, look at an event, re-drive dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, true, update

from tolom import audit
from tolom.db.partitions import Month
from tolom.db.schema import deliveries, events
from tolom.texts import N_, Refusal
from tolom.timestamps import as_utc

STATUSES = ("pending", "delivered", "dead")


class DeliveryError(Refusal):
    """A request about deliveries that cannot be done, worded by a catalogue key.

    `code` says which refusal it is, for callers that word it themselves (the back office
    in three languages): "status" (an unknown status), "nothing" (no delivery named),
    "not_found", "not_dead"; `delivery_id` and `current` (its status) when they apply."""

    def __init__(
        self,
        key: str,
        /,
        code: str = "",
        *,
        delivery_id: int | None = None,
        current: str | None = None,
        **values: Any,
    ) -> None:
        super().__init__(key, **values)
        self.code = code
        self.delivery_id = delivery_id
        self.current = current


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: int
    event_type: str
    destination: str
    recipient: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None  # None unless pending
    last_error: str | None
    delivered_at: datetime | None
    sandbox: bool = False  # its event is a sandbox agent's

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "type": self.event_type,
            "destination": self.destination,
            "recipient": self.recipient,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_error": self.last_error,
            "delivered_at": _iso(self.delivered_at),
            "sandbox": self.sandbox,
        }


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    ordering_key: str
    customer_id: int | None
    created_at: datetime
    payload: dict[str, Any]
    deliveries: list[Delivery]
    sandbox: bool = False  # a sandbox agent's: delivered only to sandbox endpoints

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "ordering_key": self.ordering_key,
            "customer_id": self.customer_id,
            "created_at": self.created_at.isoformat(),
            "payload": self.payload,
            "sandbox": self.sandbox,
            "deliveries": [d.as_json() for d in self.deliveries],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


_LIST = select(
    deliveries.c.id,
    deliveries.c.event_id,
    events.c.type,
    deliveries.c.destination,
    deliveries.c.recipient,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.last_error,
    deliveries.c.delivered_at,
    events.c.sandbox,
).select_from(deliveries.join(events, events.c.id == deliveries.c.event_id))


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        event_type=row.type,
        destination=row.destination,
        recipient=row.recipient,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=as_utc(row.next_attempt_at) if row.status == "pending" else None,
        last_error=row.last_error,
        delivered_at=as_utc(row.delivered_at) if row.delivered_at else None,
        sandbox=bool(row.sandbox),
    )


def list_deliveries(
    conn: Connection,
    *,
    status: str | None = None,
    destination: str | None = None,
    limit: int = 50,
    event_type: str | None = None,
    before_id: int | None = None,
) -> list[Delivery]:
    """The latest deliveries, newest first; `before_id` pages."""
    if status is not None and status not in STATUSES:
        raise DeliveryError(
            N_("delivery.error.status"),
            "status",
            status=repr(status),
            allowed=", ".join(STATUSES),
        )
    conditions = []
    if status is not None:
        conditions.append(deliveries.c.status == status)
    if destination is not None:
        conditions.append(deliveries.c.destination == destination)
    if before_id is not None:
        conditions.append(deliveries.c.id < before_id)
    # Pending and dead deliveries are few (the backlog): walking them (`ix_deliveries_status`)
    # is quick whatever the type.
    if event_type is not None and status in (None, "delivered") and _rare_type(conn, event_type):
        return [_delivery(r) for r in _of_rare_type(conn, event_type, conditions, before_id, limit)]
    query = _LIST.where(*conditions).order_by(deliveries.c.id.desc()).limit(limit)
    if event_type is not None:
        query = query.where(events.c.type == event_type)
    return [_delivery(r) for r in conn.execute(query)]


# Newest deliveries first, checking each one's event, finds 50 of a type quickly when the
# type is common; for a rare one (payment.reversed: 0.3 % of events) it walks millions.
# Below this many events, a type's events are read instead (`ix_events_type`).
RARE_TYPE_EVENTS = 50_000
# The windows, in months back from this one (None: all): the outbox is partitioned by its
# event's month, so a window reads only its months' partitions (at 10 million payments this
# month's window answers `/events?type=payment.reversed` in ~30 ms, two months' in ~250).
_WINDOWS = (0, 1, 3, 12, None)


def _rare_type(conn: Connection, event_type: str) -> bool:
    """Whether `event_type` has fewer than RARE_TYPE_EVENTS events (PostgreSQL only: its
    planner walks the deliveries otherwise; SQLite's databases are small)."""
    if conn.dialect.name != "postgresql":
        return False
    some = select(events.c.id).where(events.c.type == event_type).limit(RARE_TYPE_EVENTS)
    found = conn.execute(select(func.count()).select_from(some.subquery())).scalar_one()
    return int(found) < RARE_TYPE_EVENTS


def _of_rare_type(
    conn: Connection,
    event_type: str,
    conditions: list[Any],
    before_id: int | None,
    limit: int,
) -> list[Any]:
    """The same rows as `_LIST` filtered to `event_type`: the type's events of the last
    months, each one's deliveries probed by event id and month (the unique key's index in
    one partition). A window's newest `limit` are the answer when no delivery of an older
    month has a larger id (one index probe per older partition); otherwise the window
    grows. Ids, not months, decide the order, so the answer is exact."""
    this_month = Month.of(datetime.now(UTC))
    for back in _WINDOWS:
        since = None if back is None else this_month.plus(-back).start()
        rows = list(conn.execute(_rare_type_window(event_type, conditions, limit, since)))
        if since is None:
            return rows
        if len(rows) < limit:
            continue
        older = select(func.max(deliveries.c.id)).where(deliveries.c.event_created_at < since)
        if before_id is not None:
            older = older.where(deliveries.c.id < before_id)
        newest_older = conn.execute(older).scalar_one()
        if newest_older is None or newest_older < rows[-1].id:
            return rows
    raise AssertionError("the last window has no start")  # pragma: no cover


def _rare_type_window(
    event_type: str, conditions: list[Any], limit: int, since: datetime | None
) -> Any:
    columns = list(_LIST.selected_columns)
    lines = (
        select(*[c for c in columns if c.table is deliveries])
        .where(
            deliveries.c.event_id == events.c.id,
            deliveries.c.event_created_at == events.c.created_at,
            *conditions,
        )
        .offset(0)  # keeps the planner probing per event, not hashing every delivery
        .lateral()
    )
    query = (
        select(*[lines.c[c.name] if c.table is deliveries else c for c in columns])
        .select_from(events.join(lines, true()))
        .where(events.c.type == event_type)
        .order_by(lines.c.id.desc())
        .limit(limit)
    )
    return query if since is None else query.where(events.c.created_at >= since)


def get_delivery(conn: Connection, delivery_id: int) -> Delivery | None:
    row = conn.execute(_LIST.where(deliveries.c.id == delivery_id)).one_or_none()
    return None if row is None else _delivery(row)


def backlog(conn: Connection) -> dict[str, dict[str, int]]:
    """{destination: {"pending": n, "dead": n}}: what waits and what was given up on, per
    destination. Reads only pending and dead rows (`ix_deliveries_status`), the backlog,
    never the delivered ones."""
    found: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        select(deliveries.c.destination, deliveries.c.status, func.count())
        .where(deliveries.c.status.in_(("pending", "dead")))
        .group_by(deliveries.c.destination, deliveries.c.status)
    )
    for destination, status, count in rows:
        found.setdefault(destination, {"pending": 0, "dead": 0})[status] = int(count)
    return found


NOTIFICATION_CHANNELS = ("email", "sms")  # the deliveries that are a customer's notifications


@dataclass(frozen=True, slots=True)
class Notification:
    """An e-mail or an SMS to a customer: its delivery, and when its event happened."""

    delivery: Delivery
    created_at: datetime


NOTIFICATION_WINDOW = 1000


def customer_notifications(
    conn: Connection, customer_id: int, limit: int = 20
) -> list[Notification]:
    """The customer's latest e-mails and SMS (deliveries to their contacts), newest first,
    among their latest NOTIFICATION_WINDOW events.

    The window keeps the page's cost bounded for a customer with thousands of events and
    no contacts (none of which has a delivery to find): at most that many entries of the
    events (customer_id, id) index and two unique-key probes of deliveries each."""
    # The window is read first and handed over as values: as a subquery, PostgreSQL joined
    # it against every e-mail and SMS delivery of the partitioned outbox (1 s at 10 M
    # payments); as a list of ids within a span of months, it probes the unique key of
    # only the months the window spans (docs/performance.md, 10 000 000 payments).
    window = conn.execute(
        select(events.c.id, events.c.created_at)
        .where(events.c.customer_id == customer_id)
        .order_by(events.c.id.desc())
        .limit(NOTIFICATION_WINDOW)
    ).all()
    if not window:
        return []
    ids = [row.id for row in window]
    first, last = min(row.created_at for row in window), max(row.created_at for row in window)
    query = _LIST.add_columns(events.c.created_at.label("event_created_at")).where(
        events.c.id.in_(ids),
        deliveries.c.event_id.in_(ids),
        deliveries.c.destination.in_(NOTIFICATION_CHANNELS),
    )
    if conn.dialect.name == "postgresql":  # the partition keys (equal there: a foreign key)
        query = query.where(
            events.c.created_at.between(first, last),
            deliveries.c.event_created_at.between(first, last),
        )
    rows = conn.execute(query.order_by(events.c.id.desc(), deliveries.c.id.desc()).limit(limit))
    return [Notification(_delivery(r), as_utc(r.event_created_at)) for r in rows]


def show_event(conn: Connection, event_id: int) -> Event:
    row = conn.execute(select(events).where(events.c.id == event_id)).one_or_none()
    if row is None:
        raise DeliveryError(N_("delivery.error.event_not_found"), "not_found", event=event_id)
    rows = conn.execute(
        _LIST.where(deliveries.c.event_id == event_id).order_by(deliveries.c.id)
    ).all()
    return Event(
        id=row.id,
        type=row.type,
        ordering_key=row.ordering_key,
        customer_id=row.customer_id,
        created_at=as_utc(row.created_at),
        payload=json.loads(row.payload),
        deliveries=[_delivery(r) for r in rows],
        sandbox=bool(row.sandbox),
    )


def redrive(
    conn: Connection,
    *,
    delivery_ids: list[int] | None = None,
    all_dead: bool = False,
    destination: str | None = None,
    actor: str,
    address: str | None = None,
) -> list[int]:
    """Dead deliveries back to pending with fresh attempts, due now; returns their ids.

    Either the named deliveries (each must exist and be dead) or, `all_dead`, every dead
    one, optionally of one destination. A re-driven delivery is again the head of its line
    if it is the oldest pending one there, so later pending events of its key wait for it.
    """
    if not delivery_ids and not all_dead:
        raise DeliveryError(N_("delivery.error.nothing"), "nothing")
    query = select(
        deliveries.c.id, deliveries.c.status, deliveries.c.attempts, deliveries.c.last_error
    ).with_for_update()
    if delivery_ids:
        query = query.where(deliveries.c.id.in_(delivery_ids))
    else:
        query = query.where(deliveries.c.status == "dead")
    if destination is not None:
        query = query.where(deliveries.c.destination == destination)
    found = {r.id: r for r in conn.execute(query)}
    for delivery_id in delivery_ids or []:
        if delivery_id not in found:
            if destination:
                raise DeliveryError(
                    N_("delivery.error.not_found_at"),
                    "not_found",
                    delivery_id=delivery_id,
                    delivery=delivery_id,
                    destination=destination,
                )
            raise DeliveryError(
                N_("delivery.error.not_found"),
                "not_found",
                delivery_id=delivery_id,
                delivery=delivery_id,
            )
        if found[delivery_id].status != "dead":
            raise DeliveryError(
                N_("delivery.error.not_dead"),
                "not_dead",
                delivery_id=delivery_id,
                current=found[delivery_id].status,
                delivery=delivery_id,
                status=found[delivery_id].status,
            )
    ids = sorted(found)
    if ids:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(ids))
            .values(
                status="pending", attempts=0, next_attempt_at=datetime.now(UTC), lease_until=None
            )
        )
    for delivery_id in ids:
        audit.record(
            conn,
            actor=actor,
            action="delivery.redrive",
            object_type="delivery",
            object_id=delivery_id,
            before={
                "status": "dead",
                "attempts": found[delivery_id].attempts,
                "last_error": found[delivery_id].last_error,
            },
            after={"status": "pending", "attempts": 0},
            address=address,
        )
    return ids
