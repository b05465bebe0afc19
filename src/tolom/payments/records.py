"""Reading payments back: one payment as every adapter shows it, and the filtered list.

Reads only; what may be written is decided in `payments.service`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, func, or_, select, tuple_

from tolom.db.schema import accounts as accounts_table
from tolom.db.schema import (
    agents,
    gateway_requests,
    invoices,
    journal_entries,
    manual_payments,
    payment_reversals,
    payments,
    postings,
)
from tolom.ledger.statements import LineSource
from tolom.timestamps import as_utc


@dataclass(frozen=True, slots=True)
class Reversal:
    reason: str
    requested_by: str
    created_at: datetime
    entry_id: int


@dataclass(frozen=True, slots=True)
class ManualDetails:
    """What an operator records with a cash or bank-transfer payment."""

    channel: str  # cash_desk | bank
    recorded_by: str
    payment_code: str | None = None  # bank: 42151410 | 42122900
    bank_reference: str | None = None
    payer: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A payment as stored: the receipt number is `id`."""

    id: int
    agent: str
    agent_kind: str
    txn_id: str
    service: str
    account: str
    amount: int
    status: str  # accepted | reversed
    txn_date: datetime
    txn_date_raw: str
    business_date: date
    created_at: datetime
    entry_id: int | None
    invoice_number: str | None
    reversal: Reversal | None
    manual: ManualDetails | None


_RECORD = (
    select(
        payments.c.id,
        agents.c.code.label("agent"),
        agents.c.kind.label("agent_kind"),
        payments.c.txn_id,
        payments.c.service,
        payments.c.account,
        payments.c.amount,
        payments.c.status,
        payments.c.txn_date,
        payments.c.txn_date_raw,
        payments.c.business_date,
        payments.c.created_at,
        payments.c.entry_id,
        invoices.c.number.label("invoice_number"),
        payment_reversals.c.reason,
        payment_reversals.c.requested_by,
        payment_reversals.c.created_at.label("reversed_at"),
        payment_reversals.c.entry_id.label("reversal_entry_id"),
        manual_payments.c.channel,
        manual_payments.c.recorded_by,
        manual_payments.c.payment_code,
        manual_payments.c.bank_reference,
        manual_payments.c.payer,
        manual_payments.c.note,
    )
    .join(agents, agents.c.id == payments.c.agent_id)
    .outerjoin(invoices, invoices.c.id == payments.c.invoice_id)
    .outerjoin(payment_reversals, payment_reversals.c.payment_id == payments.c.id)
    .outerjoin(manual_payments, manual_payments.c.payment_id == payments.c.id)
)


def _record(row: Any) -> PaymentRecord:
    reversal = (
        Reversal(row.reason, row.requested_by, as_utc(row.reversed_at), row.reversal_entry_id)
        if row.reason is not None
        else None
    )
    manual = (
        ManualDetails(
            row.channel, row.recorded_by, row.payment_code, row.bank_reference, row.payer, row.note
        )
        if row.channel is not None
        else None
    )
    return PaymentRecord(
        id=row.id,
        agent=row.agent,
        agent_kind=row.agent_kind,
        txn_id=row.txn_id,
        service=row.service,
        account=row.account,
        amount=row.amount,
        status=row.status,
        txn_date=as_utc(row.txn_date),
        txn_date_raw=row.txn_date_raw,
        business_date=row.business_date,
        created_at=as_utc(row.created_at),
        entry_id=row.entry_id,
        invoice_number=row.invoice_number,
        reversal=reversal,
        manual=manual,
    )


def by_id(conn: Connection, payment_id: int) -> PaymentRecord | None:
    """The payment with this receipt number."""
    row = conn.execute(_RECORD.where(payments.c.id == payment_id)).first()
    return None if row is None else _record(row)


def by_txn(conn: Connection, agent_id: int, key: str) -> PaymentRecord | None:
    """An agent's payment by its idempotency key (see `service.payment_key`)."""
    row = conn.execute(
        _RECORD.where(payments.c.agent_id == agent_id, payments.c.txn_id == key)
    ).first()
    return None if row is None else _record(row)


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    """What the payment list may be narrowed by; None means "any"."""

    agent: str | None = None
    service: str | None = None
    status: str | None = None
    date_from: date | None = None  # business day, inclusive
    date_to: date | None = None  # business day, inclusive
    account: str | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    txn_id: str | None = None
    # One thing a person types: an INN or invoice number (the account), a txn_id, or a
    # receipt number; a payment matching any of them is found.
    key: str | None = None


def _conditions(where: PaymentFilter) -> list[ColumnElement[bool]]:
    """The filter as SQL conditions on `payments` joined with `agents`."""
    conditions: list[ColumnElement[bool]] = []
    if where.agent is not None:
        conditions.append(agents.c.code == where.agent)
    if where.service is not None:
        conditions.append(payments.c.service == where.service)
    if where.status is not None:
        conditions.append(payments.c.status == where.status)
    if where.date_from is not None:
        conditions.append(payments.c.business_date >= where.date_from)
    if where.date_to is not None:
        conditions.append(payments.c.business_date <= where.date_to)
    if where.account is not None:
        conditions.append(payments.c.account == where.account)
    if where.amount_min is not None:
        conditions.append(payments.c.amount >= where.amount_min)
    if where.amount_max is not None:
        conditions.append(payments.c.amount <= where.amount_max)
    if where.txn_id is not None:
        conditions.append(payments.c.txn_id == where.txn_id)
    if where.key is not None:
        either = [payments.c.account == where.key, payments.c.txn_id == where.key]
        # A receipt number is written without leading zeros and is shorter than an INN
        # (14 digits), so "00000000000001" is only ever an INN.
        key = where.key
        if key.isascii() and key.isdigit() and not key.startswith("0") and len(key) < 14:
            either.append(payments.c.id == int(key))
        conditions.append(or_(*either))
    return conditions


def search(
    conn: Connection, where: PaymentFilter, *, before_id: int | None, limit: int
) -> list[PaymentRecord]:
    """Payments matching `where`, newest first, `limit` at most, with ids below `before_id`.

    Keyset pagination: the cursor is the last id seen, so pages stay stable while new
    payments arrive and no page costs more than an index range scan.
    """
    query: Select[Any] = _RECORD
    conditions = _conditions(where)
    # With business days asked for, newest first means by day, then id: the (business_date,
    # id) index reads exactly that range, where walking the primary key backwards from the
    # newest payment would pass every later payment first (a month long ago: 0.4 s at 1 M).
    by_day = where.date_from is not None or where.date_to is not None
    if before_id is not None:
        if by_day:
            cursor_day = (
                select(payments.c.business_date).where(payments.c.id == before_id).scalar_subquery()
            )
            conditions.append(
                tuple_(payments.c.business_date, payments.c.id) < tuple_(cursor_day, before_id)
            )
        else:
            conditions.append(payments.c.id < before_id)
    if conditions:
        query = query.where(and_(*conditions))
    order = (
        (payments.c.business_date.desc(), payments.c.id.desc())
        if by_day
        else (payments.c.id.desc(),)
    )
    rows = conn.execute(query.order_by(*order).limit(limit))
    return [_record(r) for r in rows]


def count(conn: Connection, where: PaymentFilter, *, at_most: int) -> int:
    """How many payments match `where`, counting no further than `at_most`: checking a cap
    reads at most that many index entries, never the whole table."""
    matching = (
        select(payments.c.id)
        .join(agents, agents.c.id == payments.c.agent_id)
        .where(*_conditions(where))
        .limit(at_most)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(matching)).scalar_one())


@dataclass(frozen=True, slots=True)
class PostingLine:
    entry_id: int
    entry_kind: str
    description: str
    created_at: datetime
    debit: str  # account code
    credit: str
    amount: int


def postings_of(conn: Connection, entry_ids: list[int]) -> list[PostingLine]:
    """The postings of these journal entries, with account codes, in order."""
    if not entry_ids:
        return []
    debit = accounts_table.alias("debit")
    credit = accounts_table.alias("credit")
    rows = conn.execute(
        select(
            postings.c.entry_id,
            journal_entries.c.kind,
            journal_entries.c.description,
            journal_entries.c.created_at,
            debit.c.code.label("debit"),
            credit.c.code.label("credit"),
            postings.c.amount,
        )
        .join(journal_entries, journal_entries.c.id == postings.c.entry_id)
        .join(debit, debit.c.id == postings.c.debit_account_id)
        .join(credit, credit.c.id == postings.c.credit_account_id)
        .where(postings.c.entry_id.in_(entry_ids))
        .order_by(postings.c.id)
    )
    return [
        PostingLine(
            r.entry_id,
            r.kind,
            r.description,
            as_utc(r.created_at),
            r.debit,
            r.credit,
            r.amount,
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """A gateway request that touched this payment, as logged (secrets removed)."""

    id: int
    received_at: datetime
    protocol: str
    peer: str
    method: str
    command: str | None
    params: str
    http_status: int
    response: str


def requests_of(conn: Connection, payment: PaymentRecord, agent_id: int) -> list[LoggedRequest]:
    """Every logged request for this payment's agent and txn_id: the pay, its repeats, cancels."""
    rows = conn.execute(
        select(gateway_requests)
        .where(
            gateway_requests.c.agent_id == agent_id,
            gateway_requests.c.txn_id == payment.txn_id,
        )
        .order_by(gateway_requests.c.id)
        .limit(100)
    )
    return [
        LoggedRequest(
            r.id,
            as_utc(r.received_at),
            r.protocol,
            r.peer,
            r.method,
            r.command,
            r.params,
            r.http_status,
            r.response,
        )
        for r in rows
    ]


def agent_id_of(conn: Connection, payment_id: int) -> int | None:
    """The id of the agent (or channel) that took a payment."""
    value = conn.execute(select(payments.c.agent_id).where(payments.c.id == payment_id)).scalar()
    return None if value is None else int(value)


def statement_sources(conn: Connection, entry_ids: Iterable[int]) -> dict[int, LineSource]:
    """The payments and reversals among these journal entries, as a customer's statement
    shows them, by entry id (other entries are absent)."""
    ids = sorted(set(entry_ids))
    if not ids:
        return {}
    found: dict[int, LineSource] = {}
    row: Any
    for row in conn.execute(
        select(payments.c.entry_id, payments.c.id, payments.c.txn_id, agents.c.name)
        .join(agents, agents.c.id == payments.c.agent_id)
        .where(payments.c.entry_id.in_(ids))
    ):
        found[row.entry_id] = LineSource("payment", row.id, reference=row.txn_id, agent=row.name)
    for row in conn.execute(
        select(
            payment_reversals.c.entry_id,
            payment_reversals.c.payment_id,
            payment_reversals.c.reason,
            payments.c.account,
        )
        .join(payments, payments.c.id == payment_reversals.c.payment_id)
        .where(payment_reversals.c.entry_id.in_(ids))
    ):
        found[row.entry_id] = LineSource(
            "reversal", row.payment_id, text=row.reason, reference=row.account
        )
    return found
