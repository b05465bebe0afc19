"""Signature orders: what a paid `eds` invoice is to produce, one order per unit bought.

    paid → in_production → issued
    paid | in_production → cancelled (with a refund per policy)

Paying the invoice creates its orders in the payment's transaction (`create_for_payment`).
Operators carry them through production; each transition locks the order's row, checks
its state, writes the change and its event together, and answers a repeat of itself with
the order as it stands. A cancelled order is refunded to the balance of the customer with
the invoice's INN: all of the price before production, `refund_percent_in_production` per
cent of it once production has started; an issued order is not cancelled.

Reversing the invoice's payment cancels its orders instead (`cancel_for_reversal`): the
reversal itself returns the money, so there is no refund; it is refused once any order is
in production, issued or cancelled on its own (the money would go back twice).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from tolom import audit
from tolom.billing import applications, charges
from tolom.billing import invoices as invoice_records
from tolom.db.schema import customers, invoice_lines, invoices, products, signature_orders
from tolom.events.outbox import EventType, emit, inn_key
from tolom.ledger.accounts import LedgerAccount, system_account
from tolom.ledger.posting import Transfer, open_entry, post
from tolom.ledger.statements import LineSource
from tolom.money import format_amount
from tolom.texts import N_, Refusal
from tolom.timestamps import HOME_ZONE, as_utc

# The company's calendar: an order is issued, and a signature expires, on a date in Bishkek.
ZONE = HOME_ZONE

STATUSES = ("paid", "in_production", "issued", "cancelled")
# What a transition refused in the order's state says: (action, status) → key. These are
# every refusal `start`, `issue` and `cancel` can meet (the other states are handled there).
_REFUSALS = {
    ("start", "issued"): N_("order.error.start_issued"),
    ("start", "cancelled"): N_("order.error.start_cancelled"),
    ("issue", "cancelled"): N_("order.error.issue_cancelled"),
    ("cancel", "issued"): N_("order.error.cancel_issued"),
}
# A refund the operator confirmed that the policy no longer gives, by the order's state.
_REFUND_CHANGED = {
    "paid": N_("order.error.refund_changed_paid"),
    "in_production": N_("order.error.refund_changed_in_production"),
}
NO_REFUND_NOTE = "возврат проведён вне Tolom"


class OrderError(Refusal):
    """An order operation that cannot be done, worded by a catalogue key."""


class OrderNotFound(OrderError):
    pass


class OrderStateError(OrderError):
    """The order (or one of the invoice's orders) is not in a state that allows this."""


class IdentityNotVerified(OrderStateError):
    """The order's invoice came from an online application whose applicant's identity is
    not verified (still "new", or "rejected"): production waits for the back office."""

    def __init__(self, key: str, /, *, application: int, status: str, **values: Any) -> None:
        super().__init__(key, application=application, **values)
        self.application = application
        self.status = status


# Why an application's status holds production back.
_NOT_VERIFIED = {
    "new": N_("order.error.identity_new"),
    "rejected": N_("order.error.identity_rejected"),
}


class RefundImpossible(OrderError):
    """The refund has nowhere to go: no customer has the invoice's INN."""


class RefundChanged(OrderStateError):
    """The refund the caller was shown is no longer what the policy gives (the order moved
    on meanwhile); `due` is what it gives now."""

    def __init__(self, key: str, /, *, due: int, **values: Any) -> None:
        super().__init__(key, **values)
        self.due = due


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    invoice_number: str
    unit: int  # 1..quantity of its invoice line
    inn: str | None
    payment_id: int
    product_code: str
    kind: str  # signature | carrier
    name: str
    price: int  # tyiyn: the invoice line's unit price
    status: str
    created_at: datetime
    production_started_at: datetime | None
    issued_at: datetime | None
    valid_until: date | None  # signatures: the last day the signature is valid
    expiry_notified_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    refund_amount: int | None  # tyiyn credited to the customer's balance on cancellation
    refund_entry_id: int | None


@dataclass(frozen=True, slots=True)
class Transition:
    """The order after a transition; `changed` is False for a repeat (nothing was written)."""

    order: Order
    changed: bool
    previous: str  # the status it had, read under the row lock


@dataclass(frozen=True, slots=True)
class Expiring:
    order: Order
    days_left: int  # 0: valid today for the last time


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later, clamped to the month's end (Jan 31 + 1 =
    Feb 28, or Feb 29 in a leap year)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def local_date(moment: datetime) -> date:
    """The company's date of a moment."""
    return as_utc(moment).astimezone(ZONE).date()


_ORDER = select(signature_orders, invoices.c.number.label("invoice_number")).join(
    invoices, invoices.c.id == signature_orders.c.invoice_id
)
_ORDER_BY_ID = _ORDER.where(signature_orders.c.id == bindparam("b_id"))
_ORDER_BY_ID_LOCKED = _ORDER_BY_ID.with_for_update(of=signature_orders)


def _from_row(row: Any) -> Order:
    def moment(value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    return Order(
        id=row.id,
        invoice_number=row.invoice_number,
        unit=row.unit,
        inn=row.inn,
        payment_id=row.payment_id,
        product_code=row.product_code,
        kind=row.kind,
        name=row.name,
        price=row.price,
        status=row.status,
        created_at=as_utc(row.created_at),
        production_started_at=moment(row.production_started_at),
        issued_at=moment(row.issued_at),
        valid_until=row.valid_until,
        expiry_notified_at=moment(row.expiry_notified_at),
        cancelled_at=moment(row.cancelled_at),
        cancel_reason=row.cancel_reason,
        refund_amount=row.refund_amount,
        refund_entry_id=row.refund_entry_id,
    )


def get(conn: Connection, order_id: int) -> Order | None:
    row = conn.execute(_ORDER_BY_ID, {"b_id": order_id}).first()
    return None if row is None else _from_row(row)


def list_orders(
    conn: Connection,
    *,
    status: str | None = None,
    inn: str | None = None,
    invoice_number: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
    oldest_first: bool = False,
    after_id: int | None = None,
) -> list[Order]:
    """Orders matching every filter given, newest first (`before_id` pages), or with
    `oldest_first` in the order they were paid, as a work queue (`after_id` pages)."""
    query = _ORDER
    if status is not None:
        query = query.where(signature_orders.c.status == status)
    if inn is not None:
        query = query.where(signature_orders.c.inn == inn)
    if invoice_number is not None:
        query = query.where(invoices.c.number == invoice_number)
    if before_id is not None:
        query = query.where(signature_orders.c.id < before_id)
    if after_id is not None:
        query = query.where(signature_orders.c.id > after_id)
    order_by = signature_orders.c.id.asc() if oldest_first else signature_orders.c.id.desc()
    rows = conn.execute(query.order_by(order_by).limit(limit))
    return [_from_row(r) for r in rows]


def _customer_of(conn: Connection, inn: str | None) -> Any:
    """The customer (id, account_id) with this INN, if any: whom events and refunds go to."""
    if inn is None:
        return None
    return conn.execute(
        select(customers.c.id, customers.c.account_id).where(customers.c.inn == inn)
    ).first()


# --- paying an invoice ---------------------------------------------------------------

_REVIVE = (
    update(signature_orders)
    .where(
        signature_orders.c.id == bindparam("b_id"),
        signature_orders.c.status == "cancelled",
        signature_orders.c.refund_entry_id.is_(None),
    )
    .values(
        payment_id=bindparam("b_payment"),
        status="paid",
        production_started_at=None,
        issued_at=None,
        valid_until=None,
        expiry_notified_at=None,
        cancelled_at=None,
        cancel_reason=None,
        refund_amount=None,
    )
)


def create_for_payment(
    conn: Connection, invoice_id: int, payment_id: int, *, now: datetime | None = None
) -> list[int]:
    """Create the orders of an invoice just paid, and emit `invoice.paid`; returns their ids.

    Runs in the payment's transaction, under its lock on the invoice row. One order per
    unit of each line (UNIQUE (invoice_line_id, unit)). An invoice paid again after its
    payment was reversed finds its orders cancelled by that reversal: they become the new
    payment's orders again (same ids), so a line's unit is never ordered twice.
    """
    now = now or datetime.now(UTC)
    invoice = conn.execute(
        select(invoices.c.number, invoices.c.inn, invoices.c.payer_name, invoices.c.total).where(
            invoices.c.id == invoice_id
        )
    ).one()
    lines = conn.execute(
        select(invoice_lines, products.c.kind)
        .join(products, products.c.code == invoice_lines.c.product_code)
        .where(invoice_lines.c.invoice_id == invoice_id)
        .order_by(invoice_lines.c.id)
    ).all()
    earlier = {
        (r.invoice_line_id, r.unit): r.id
        for r in conn.execute(
            select(
                signature_orders.c.id, signature_orders.c.invoice_line_id, signature_orders.c.unit
            )
            .where(signature_orders.c.invoice_id == invoice_id)
            .with_for_update()
        )
    }
    order_ids: list[int] = []
    for line in lines:
        for unit in range(1, line.quantity + 1):
            known = earlier.get((line.id, unit))
            if known is not None:
                revived = conn.execute(_REVIVE, {"b_id": known, "b_payment": payment_id})
                if revived.rowcount != 1:  # only a reversal leaves an open invoice's orders
                    raise RuntimeError(f"order {known} of an unpaid invoice is not cancelled")
                order_ids.append(known)
                continue
            order_ids.append(
                conn.execute(
                    insert(signature_orders)
                    .values(
                        invoice_id=invoice_id,
                        invoice_line_id=line.id,
                        unit=unit,
                        payment_id=payment_id,
                        product_code=line.product_code,
                        kind=line.kind,
                        name=line.name,
                        price=line.unit_price,
                        inn=invoice.inn,
                        status="paid",
                        created_at=now,
                    )
                    .returning(signature_orders.c.id)
                ).scalar_one()
            )
    customer = _customer_of(conn, invoice.inn)
    emit(
        conn,
        EventType.INVOICE_PAID,
        ordering_key=inn_key(invoice.inn, invoice.number),
        customer_id=customer.id if customer else None,
        payload={
            "invoice_number": invoice.number,
            "inn": invoice.inn,
            "payer_name": invoice.payer_name,
            "total": invoice.total,
            "payment_id": payment_id,
            "lines": [
                {
                    "product_code": line.product_code,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "amount": line.amount,
                }
                for line in lines
            ],
            "orders": order_ids,
        },
    )
    return order_ids


def cancel_for_reversal(conn: Connection, invoice_id: int, reason: str) -> list[int]:
    """Cancel an invoice's orders because its payment is being reversed; returns their ids.

    Raises OrderStateError when the reversal must be refused: an order is in production
    or issued (what was paid for is being, or has been, delivered), or was cancelled on its
    own (its refund, in Tolom or outside it, was already given). Runs in the reversal's
    transaction, before the invoice is reopened.
    """
    rows = conn.execute(
        _ORDER.where(signature_orders.c.invoice_id == invoice_id)
        .order_by(signature_orders.c.id)
        .with_for_update(of=signature_orders)
    ).all()
    found = [_from_row(r) for r in rows]
    for order in found:
        if order.status in ("in_production", "issued"):
            raise OrderStateError(
                N_("order.error.reversal_served"), order=order.id, name=order.name
            )
        if order.status == "cancelled":
            raise OrderStateError(N_("order.error.reversal_cancelled"), order=order.id)
    now = datetime.now(UTC)
    text = f"Платёж №{found[0].payment_id} отменён: {reason}" if found else reason
    for order in found:
        _write_cancel(conn, order, now=now, reason=text, refund_amount=0, entry_id=None)
    return [order.id for order in found]


# --- transitions ---------------------------------------------------------------------


def _locked(conn: Connection, order_id: int) -> Order:
    row = conn.execute(_ORDER_BY_ID_LOCKED, {"b_id": order_id}).first()
    if row is None:
        raise OrderNotFound(N_("order.error.not_found"), order=order_id)
    return _from_row(row)


def _refuse(order: Order, action: str) -> OrderStateError:
    return OrderStateError(_REFUSALS[action, order.status], order=order.id)


def _announce(conn: Connection, type: EventType, order: Order, **extra: Any) -> None:
    customer = _customer_of(conn, order.inn)
    emit(
        conn,
        type,
        ordering_key=inn_key(order.inn, order.invoice_number),
        customer_id=customer.id if customer else None,
        payload={
            "order_id": order.id,
            "invoice_number": order.invoice_number,
            "inn": order.inn,
            "product_code": order.product_code,
            "name": order.name,
            "kind": order.kind,
            "status": order.status,
            "issued_at": order.issued_at,
            "valid_until": order.valid_until,
            **extra,
        },
    )


def _changed(conn: Connection, before: Order, type: EventType) -> Transition:
    order = get(conn, before.id)
    assert order is not None
    _announce(conn, type, order)
    return Transition(order, changed=True, previous=before.status)


def identity_hold(conn: Connection, order: Order) -> IdentityNotVerified | None:
    """Why the order may not go into production yet: its invoice came from an online
    application not verified (one lookup by the invoice number, unique); None when it was
    verified or an operator issued the invoice."""
    found = applications.of_invoice(conn, order.invoice_number)
    if found is None or found[1] == "verified":
        return None
    application, status = found
    return IdentityNotVerified(
        _NOT_VERIFIED.get(status, _NOT_VERIFIED["new"]),
        application=application,
        status=status,
        order=order.id,
    )


def start(conn: Connection, order_id: int, *, now: datetime | None = None) -> Transition:
    """paid → in_production: the certification centre has started producing it.

    Refused (IdentityNotVerified) while the invoice's online application awaits identity
    verification or was rejected; verification only moves forward, so what was read here
    cannot be undone by the time this commits."""
    order = _locked(conn, order_id)
    if order.status == "in_production":
        return Transition(order, changed=False, previous=order.status)
    if order.status != "paid":
        raise _refuse(order, "start")
    hold = identity_hold(conn, order)
    if hold is not None:
        raise hold
    conn.execute(
        update(signature_orders)
        .where(signature_orders.c.id == order.id)
        .values(status="in_production", production_started_at=now or datetime.now(UTC))
    )
    return _changed(conn, order, EventType.ORDER_IN_PRODUCTION)


def issue(
    conn: Connection, order_id: int, *, validity_months: int, now: datetime | None = None
) -> Transition:
    """in_production → issued; a signature is valid `validity_months` calendar months from
    the day it is issued (`valid_until`, clamped to the month's end)."""
    order = _locked(conn, order_id)
    if order.status == "issued":
        return Transition(order, changed=False, previous=order.status)
    if order.status == "paid":
        raise OrderStateError(N_("order.error.not_started"), order=order.id)
    if order.status != "in_production":
        raise _refuse(order, "issue")
    now = now or datetime.now(UTC)
    valid_until = (
        add_months(local_date(now), validity_months) if order.kind == "signature" else None
    )
    conn.execute(
        update(signature_orders)
        .where(signature_orders.c.id == order.id)
        .values(status="issued", issued_at=now, valid_until=valid_until)
    )
    return _changed(conn, order, EventType.ORDER_ISSUED)


def refund_due(order: Order, refund_percent_in_production: int) -> int:
    """What the policy refunds on cancelling `order` now (tyiyn, rounded down)."""
    if order.status == "paid":
        return order.price
    if order.status == "in_production":
        return order.price * refund_percent_in_production // 100
    return 0


def cancel(
    conn: Connection,
    order_id: int,
    reason: str,
    *,
    refund_percent_in_production: int,
    no_refund: bool = False,
    now: datetime | None = None,
    expected_refund: int | None = None,
) -> Transition:
    """paid | in_production → cancelled, refunding per policy to the customer's balance.

    The refund is a journal entry from `revenue:eds` to the balance of the customer with the
    invoice's INN. Without such a customer it is refused (RefundImpossible) unless
    `no_refund`: the operator says the money is returned outside Tolom, which the reason
    then records, and nothing is posted. `expected_refund` (tyiyn), when given, is the
    policy's refund the operator confirmed; if the order moved on meanwhile and the policy
    now gives another sum, it is refused (RefundChanged) and nothing is written.
    """
    reason = reason.strip()
    if not reason:
        raise OrderError(N_("order.error.reason"))
    order = _locked(conn, order_id)
    if order.status == "cancelled":
        return Transition(order, changed=False, previous=order.status)
    if order.status not in ("paid", "in_production"):
        raise _refuse(order, "cancel")
    now = now or datetime.now(UTC)
    due = refund_due(order, refund_percent_in_production)
    if expected_refund is not None and expected_refund != due:
        raise RefundChanged(
            _REFUND_CHANGED[order.status],
            due=due,
            order=order.id,
            amount=format_amount(due),
            expected=format_amount(expected_refund),
        )
    entry_id = None
    # (customer id, account id, balance after the refund)
    credited: tuple[int, int, int] | None = None
    if no_refund:
        reason, due = f"{reason} ({NO_REFUND_NOTE})", 0
    elif due > 0:
        customer = _customer_of(conn, order.inn)
        if customer is None:
            if order.inn:
                raise RefundImpossible(
                    N_("order.error.no_customer"), inn=order.inn, amount=format_amount(due)
                )
            raise RefundImpossible(N_("order.error.no_inn"), amount=format_amount(due))
        entry_id = open_entry(
            conn,
            kind="order_refund",
            description=f"Возврат по заказу №{order.id} (счёт {order.invoice_number}): {reason}"[
                :500
            ],
        )
        balances = post(
            conn,
            entry_id=entry_id,
            transfers=[
                Transfer(
                    debit=system_account(conn, "revenue:eds"),
                    credit=LedgerAccount(customer.account_id),
                    amount=due,
                )
            ],
            slot_key=order.id,
        )
        credited = (customer.id, customer.account_id, balances[customer.account_id])
    _write_cancel(conn, order, now=now, reason=reason, refund_amount=due, entry_id=entry_id)
    if credited is not None:  # money on the balance releases waiting reports, as a top-up does
        charges.settle_awaiting(conn, *credited, payment_id=None)
    cancelled = get(conn, order.id)
    assert cancelled is not None
    return Transition(cancelled, changed=True, previous=order.status)


def audit_transition(
    conn: Connection,
    done: Transition,
    *,
    action: str,
    actor: str,
    address: str | None = None,
) -> None:
    """The audit line of a transition, in its transaction; a repeat (nothing changed) has
    none. The API, the CLI and the back office write the same line (`order.start`,
    `order.issue`, `order.cancel`); amounts as "1510.00"."""
    if not done.changed:
        return
    order = done.order
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type="order",
        object_id=order.id,
        before={"status": done.previous},
        after={
            "status": order.status,
            "cancel_reason": order.cancel_reason,
            "refund_amount": None
            if order.refund_amount is None
            else format_amount(order.refund_amount),
            "valid_until": order.valid_until,
        },
        address=address,
    )


def _write_cancel(
    conn: Connection,
    order: Order,
    *,
    now: datetime,
    reason: str,
    refund_amount: int,
    entry_id: int | None,
) -> None:
    conn.execute(
        update(signature_orders)
        .where(signature_orders.c.id == order.id)
        .values(
            status="cancelled",
            cancelled_at=now,
            cancel_reason=reason[:1000],
            refund_amount=refund_amount,
            refund_entry_id=entry_id,
        )
    )
    cancelled = get(conn, order.id)
    assert cancelled is not None
    _announce(
        conn,
        EventType.ORDER_CANCELLED,
        cancelled,
        refund_amount=refund_amount,
        reason=cancelled.cancel_reason,
    )


# --- expiry --------------------------------------------------------------------------


def _expiring_where(today: date, within_days: int) -> tuple[Any, ...]:
    return (
        signature_orders.c.status == "issued",
        signature_orders.c.kind == "signature",
        signature_orders.c.valid_until >= today,
        signature_orders.c.valid_until <= today + timedelta(days=within_days),
    )


def expiring_query(today: date, within_days: int) -> Any:
    return _ORDER.where(*_expiring_where(today, within_days))


def expiring_count(conn: Connection, today: date, within_days: int) -> int:
    """How many `expiring` would list: counted from `ix_signature_orders_valid_until`
    alone, without joining every order's invoice (170 ms at 10 million payments)."""
    query = select(func.count()).where(*_expiring_where(today, within_days))
    return int(conn.execute(query.select_from(signature_orders)).scalar_one())


def expiring(
    conn: Connection,
    today: date,
    within_days: int,
    *,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[Expiring]:
    """Issued signatures whose last valid day is `today` or within `within_days` after it,
    in issue order (`after_id` pages)."""
    query = expiring_query(today, within_days)
    if after_id is not None:
        query = query.where(signature_orders.c.id > after_id)
    query = query.order_by(signature_orders.c.id)
    if limit is not None:
        query = query.limit(limit)
    found = [_from_row(r) for r in conn.execute(query)]
    return [Expiring(o, (o.valid_until - today).days) for o in found if o.valid_until]


_MARK_NOTIFIED = (
    update(signature_orders)
    .where(
        signature_orders.c.id == bindparam("b_id"),
        signature_orders.c.status == "issued",
        signature_orders.c.expiry_notified_at.is_(None),
    )
    .values(expiry_notified_at=bindparam("b_now"))
)


def announce_expiring(
    conn: Connection, today: date, within_days: int, *, now: datetime | None = None
) -> int:
    """Emit `signature.expiring` once per signature expiring within `within_days`; returns
    how many were announced now. Marking the order and emitting commit together, and a
    concurrent run's UPDATE finds the order marked, so a repeat announces nothing again."""
    now = now or datetime.now(UTC)
    announced = 0
    query = expiring_query(today, within_days).where(
        signature_orders.c.expiry_notified_at.is_(None)
    )
    for row in conn.execute(query.order_by(signature_orders.c.id)).all():
        order = _from_row(row)
        if conn.execute(_MARK_NOTIFIED, {"b_id": order.id, "b_now": now}).rowcount != 1:
            continue
        assert order.valid_until is not None
        customer = _customer_of(conn, order.inn)
        emit(
            conn,
            EventType.SIGNATURE_EXPIRING,
            ordering_key=inn_key(order.inn, order.invoice_number),
            customer_id=customer.id if customer else None,
            payload={
                "order_id": order.id,
                "invoice_number": order.invoice_number,
                "inn": order.inn,
                "name": order.name,
                "valid_until": order.valid_until,
                "days_left": (order.valid_until - today).days,
            },
        )
        announced += 1
    return announced


def statement_sources(conn: Connection, entry_ids: Iterable[int]) -> dict[int, LineSource]:
    """The order refunds among these journal entries, as a customer's statement shows
    them, by entry id (other entries are absent)."""
    ids = sorted(set(entry_ids))
    if not ids:
        return {}
    found: dict[int, LineSource] = {}
    row: Any
    for row in conn.execute(
        select(
            signature_orders.c.refund_entry_id,
            signature_orders.c.id,
            signature_orders.c.cancel_reason,
            invoices.c.number,
        )
        .join(invoices, invoices.c.id == signature_orders.c.invoice_id)
        .where(signature_orders.c.refund_entry_id.in_(ids))
    ):
        found[row.refund_entry_id] = LineSource(
            "order_refund", row.id, text=row.cancel_reason, reference=row.number
        )
    return found


# --- what the invoice's holder may follow ------------------------------------------------

# The stages of an invoice and its orders as a customer follows them, in order. "Ready for
# pick-up" is not a state of its own: an order is issued when the customer has it.
STAGES = ("awaiting_payment", "paid", "in_production", "issued")
# Where following stops early: the invoice expired or was cancelled unpaid, or every order
# of the paid invoice was cancelled.
ENDS = ("expired", "cancelled", "order_cancelled")


@dataclass(frozen=True, slots=True)
class Step:
    """A stage and when it was reached (None: not yet)."""

    stage: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class OrderProgress:
    """One order as its invoice's holder sees it: what, where it stands, and when."""

    name: str
    kind: str  # signature | carrier
    status: str  # STATUSES
    production_started_at: datetime | None
    issued_at: datetime | None
    valid_until: date | None
    cancelled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Progress:
    """What the number of an invoice tells about it, and nothing the invoice does not show:
    no payer's name or INN, no contacts, balance, reasons or refunds.

    `stage` is one of STAGES or ENDS; `steps` are the four STAGES in order, each with the
    moment it was reached. With several orders, production started when the first one
    started, and the invoice is issued when every order not cancelled is issued.
    """

    number: str
    lines: tuple[invoice_records.InvoiceLine, ...]
    total: int
    created_at: datetime
    expires_at: datetime
    stage: str
    steps: tuple[Step, ...]
    ended_at: datetime | None  # when it expired or was cancelled (ENDS)
    payment_id: int | None  # the invoice's payment, whose receipt the holder may see
    orders: tuple[OrderProgress, ...]


def progress(
    conn: Connection, invoice_number: str, *, now: datetime | None = None
) -> Progress | None:
    """Where the invoice with this number and its orders stand; None for an unknown number."""
    invoice = invoice_records.get(conn, invoice_number)
    if invoice is None:
        return None
    now = now or datetime.now(UTC)
    rows = conn.execute(
        _ORDER.where(signature_orders.c.invoice_id == invoice.id).order_by(signature_orders.c.id)
    ).all()
    found = [_from_row(r) for r in rows]
    state = invoice.state(now)
    active = [o for o in found if o.status != "cancelled"]
    started = [o.production_started_at for o in active if o.production_started_at]
    issued = [o.issued_at for o in active if o.issued_at]
    ended_at: datetime | None = None
    if state == "expired":
        stage, ended_at = "expired", invoice.expires_at
    elif state == "cancelled":
        stage, ended_at = "cancelled", invoice.cancelled_at
    elif state == "open":
        stage = "awaiting_payment"
    elif found and not active:
        stage = "order_cancelled"
        ended_at = max((o.cancelled_at for o in found if o.cancelled_at), default=None)
    elif active and all(o.status == "issued" for o in active):
        stage = "issued"
    elif started:
        stage = "in_production"
    else:
        stage = "paid"
    paid = state == "paid"
    reached = {
        "awaiting_payment": invoice.created_at,
        "paid": invoice.paid_at if paid else None,
        "in_production": min(started) if paid and started else None,
        "issued": max(issued) if stage == "issued" and issued else None,
    }
    return Progress(
        number=invoice.number,
        lines=invoice.lines,
        total=invoice.total,
        created_at=invoice.created_at,
        expires_at=invoice.expires_at,
        stage=stage,
        steps=tuple(Step(s, reached[s]) for s in STAGES),
        ended_at=ended_at,
        payment_id=invoice.payment_id if paid else None,
        orders=tuple(
            OrderProgress(
                name=o.name,
                kind=o.kind,
                status=o.status,
                production_started_at=o.production_started_at,
                issued_at=o.issued_at,
                valid_until=o.valid_until,
                cancelled_at=o.cancelled_at,
            )
            for o in found
        )
        if paid
        else (),
    )
