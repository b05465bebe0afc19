"""The outbox: an event is written in the same transaction as the change it reports.

`emit` inserts the event and, in the same statement batch, one delivery per destination
that wants it: each enabled webhook endpoint subscribed to its type, and, for the types
customers are told about, the customer's e-mail and phone. The worker (`tolom worker`)
delivers them later; a change that rolls back takes its event and deliveries with it, and
a failing receiver never blocks or undoes the change.

Sandbox: a sandbox agent's pays and cancels (`payments.sandbox`) emit events marked
`events.sandbox`; they go only to the endpoints marked for the sandbox
(`webhook_endpoints.sandbox`), never to customers, and real events never go to those
endpoints. The mark is chosen here, in `_targets` and `tolom_emit` (migration 0016).

Ordering: deliveries of one destination and one `ordering_key` go out in event id order.
Events of one customer are emitted while the transaction holds that customer's balance row
(or the invoice's row) locked, so their ids follow the order in which the changes committed.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    String,
    bindparam,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
)

from tolom.db.schema import customers, deliveries, events, webhook_endpoints


class EventType(StrEnum):
    """Every event type, as receivers see it in `type`."""

    PAYMENT_ACCEPTED = "payment.accepted"
    PAYMENT_REVERSED = "payment.reversed"
    CHARGE_CHARGED = "charge.charged"
    CHARGE_AWAITING = "charge.awaiting_payment"
    CHARGE_SETTLED = "charge.settled"
    CHARGE_CANCELLED = "charge.cancelled"
    CHARGE_REFUNDED = "charge.refunded"
    INVOICE_PAID = "invoice.paid"
    ORDER_IN_PRODUCTION = "order.in_production"
    ORDER_ISSUED = "order.issued"
    ORDER_CANCELLED = "order.cancelled"
    SIGNATURE_EXPIRING = "signature.expiring"
    APPLICATION_CREATED = "application.created"  # an online application's invoice
    APPLICATION_VERIFIED = "application.verified"  # the applicant's identity was verified
    APPLICATION_REJECTED = "application.rejected"  # identity not verified: with a reason


# The events a customer is told about by e-mail and SMS (when the customer has them).
NOTIFIED: frozenset[EventType] = frozenset(
    {
        EventType.PAYMENT_ACCEPTED,
        EventType.PAYMENT_REVERSED,
        EventType.CHARGE_SETTLED,
        EventType.INVOICE_PAID,
        EventType.ORDER_IN_PRODUCTION,
        EventType.ORDER_ISSUED,
        EventType.SIGNATURE_EXPIRING,
        EventType.APPLICATION_CREATED,
        EventType.APPLICATION_VERIFIED,
        EventType.APPLICATION_REJECTED,
    }
)


def customer_key(customer_id: int) -> str:
    return f"customer:{customer_id}"


def inn_key(inn: str | None, invoice_number: str) -> str:
    """Invoices and orders: ordered per payer INN, or per invoice when it names none."""
    return f"inn:{inn}" if inn else f"invoice:{invoice_number}"


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default)


_INSERT_EVENT = (
    insert(events)
    .values(
        type=bindparam("b_type"),
        ordering_key=bindparam("b_key"),
        customer_id=bindparam("b_customer"),
        payload=bindparam("b_payload"),
        sandbox=bindparam("b_sandbox", type_=Boolean),
    )
    .returning(events.c.id)
)

_DELIVERY_COLUMNS = [
    "event_id",
    "event_created_at",
    "ordering_key",
    "destination",
    "endpoint_id",
    "recipient",
    "language",
]
_EVENT_ID = bindparam("b_event", type_=BigInteger)
# The event's created_at exactly as stored (the deliveries' partition and foreign key).
_EVENT_AT = select(events.c.created_at).where(events.c.id == _EVENT_ID).scalar_subquery()
_KEY = bindparam("b_key", type_=String)
_TYPE_PATTERN = literal("% ") + bindparam("b_type", type_=String) + literal(" %")


def _targets(event_id: Any, event: Any, notify: bool) -> Any:
    """The deliveries of one event: a row per subscribed webhook endpoint of its kind
    (sandbox or real: `b_sandbox`) and, if `notify`, per contact of the customer. `event`
    is the FROM that `event_id` comes from (None when it is a bound parameter)."""

    def source(table: Any, on: Any) -> Any:
        return table if event is None else event.join(table, on)

    webhooks = (
        select(
            event_id.label("event_id"),
            _EVENT_AT.label("event_created_at"),
            _KEY.label("ordering_key"),
            (literal("webhook:") + cast(webhook_endpoints.c.id, String)).label("destination"),
            webhook_endpoints.c.id.label("endpoint_id"),
            literal(None, String).label("recipient"),
            literal(None, String).label("language"),
        )
        .select_from(source(webhook_endpoints, true()))
        .where(
            webhook_endpoints.c.enabled,
            webhook_endpoints.c.sandbox == bindparam("b_sandbox", type_=Boolean),
            or_(
                webhook_endpoints.c.event_types == "*",
                (literal(" ") + webhook_endpoints.c.event_types + literal(" ")).like(_TYPE_PATTERN),
            ),
        )
    )
    if not notify:
        return webhooks

    def contact(column: Any, destination: str) -> Any:
        return (
            select(
                event_id.label("event_id"),
                _EVENT_AT.label("event_created_at"),
                _KEY.label("ordering_key"),
                literal(destination).label("destination"),
                literal(None, BigInteger).label("endpoint_id"),
                column.label("recipient"),
                customers.c.language.label("language"),
            )
            .select_from(source(customers, true()))
            .where(customers.c.id == bindparam("b_customer"), column.is_not(None))
        )

    return union_all(
        webhooks, contact(customers.c.email, "email"), contact(customers.c.phone, "sms")
    )


def _two_statements(notify: bool) -> Any:
    """Any database: the deliveries' INSERT … SELECT, run after the event's INSERT."""
    return insert(deliveries).from_select(_DELIVERY_COLUMNS, _targets(_EVENT_ID, None, notify))


_INSERT_DELIVERIES = {notify: _two_statements(notify) for notify in (True, False)}
# PostgreSQL: the event and its deliveries in one round trip, by the server-side function
# that the batched pay path (`payments.pgbatch`) calls too (migration 0008).
_EMIT_POSTGRESQL = select(
    func.tolom_emit(
        bindparam("b_type", type_=String),
        bindparam("b_key", type_=String),
        bindparam("b_customer", type_=BigInteger),
        bindparam("b_payload", type_=String),
        bindparam("b_notify", type_=Boolean),
    )
)


def emit(
    conn: Connection,
    type: EventType,
    *,
    ordering_key: str,
    payload: dict[str, Any],
    customer_id: int | None = None,
    sandbox: bool = False,
) -> int:
    """Write an event and its deliveries in the caller's transaction; returns the event id.

    `sandbox`: a sandbox agent's event, for the sandbox endpoints alone (no customer is
    told; its payload carries `"sandbox": true`)."""
    if sandbox:
        customer_id, payload = None, {**payload, "sandbox": True}
    notify = type in NOTIFIED and customer_id is not None
    params = {
        "b_type": type.value,
        "b_key": ordering_key,
        "b_customer": customer_id,
        "b_payload": encode(payload),
        "b_sandbox": sandbox,
    }
    if conn.dialect.name == "postgresql" and not sandbox:  # tolom_emit: real events only
        del params["b_sandbox"]
        return int(conn.execute(_EMIT_POSTGRESQL, {**params, "b_notify": notify}).scalar_one())
    event_id = int(conn.execute(_INSERT_EVENT, params).scalar_one())
    conn.execute(_INSERT_DELIVERIES[notify], {**params, "b_event": event_id})
    return event_id
