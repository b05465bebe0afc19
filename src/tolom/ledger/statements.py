"""Reading the ledger back: account balances, latest entries and statements over a period.

Reads only. A balance is always the sum of an account's balance rows (see
`ledger.accounts.account_balance`); a statement recomputes its opening balance from the
postings, so it is right even for periods long past.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, bindparam, case, func, literal, or_, select, union_all

from tolom.db.schema import account_balances, accounts, journal_entries, postings
from tolom.timestamps import as_utc


@dataclass(frozen=True, slots=True)
class EntryLine:
    """One posting as seen from one account: positive credits it, negative debits it."""

    entry_id: int
    created_at: datetime
    amount: int
    description: str


def latest_entries(conn: Connection, account_id: int, limit: int = 10) -> list[EntryLine]:
    """The account's latest postings, newest first."""
    signed = case(
        (postings.c.credit_account_id == account_id, postings.c.amount), else_=-postings.c.amount
    )
    rows = conn.execute(
        select(
            postings.c.entry_id,
            journal_entries.c.created_at,
            signed.label("amount"),
            journal_entries.c.description,
        )
        .join(journal_entries, journal_entries.c.id == postings.c.entry_id)
        .where(
            or_(
                postings.c.credit_account_id == account_id,
                postings.c.debit_account_id == account_id,
            )
        )
        .order_by(postings.c.id.desc())
        .limit(limit)
    )
    return [
        EntryLine(
            r.entry_id,
            r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC),
            int(r.amount),
            r.description,
        )
        for r in rows
    ]


# --- balances ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """A ledger account with its balance (credits minus debits), in tyiyn."""

    id: int
    code: str
    kind: str
    name: str
    may_go_negative: bool
    balance: int


def _with_balances() -> Any:
    # A correlated sum per account reads only that account's balance rows (primary key),
    # so a page of accounts costs a page of index lookups, not an aggregate of the table.
    balance = (
        select(func.coalesce(func.sum(account_balances.c.balance), 0))
        .where(account_balances.c.account_id == accounts.c.id)
        .scalar_subquery()
    )
    return select(
        accounts.c.id,
        accounts.c.code,
        accounts.c.kind,
        accounts.c.name,
        accounts.c.may_go_negative,
        balance.label("balance"),
    )


def _balance(row: Any) -> AccountBalance:
    return AccountBalance(
        row.id, row.code, row.kind, row.name, bool(row.may_go_negative), int(row.balance)
    )


def account_by_code(conn: Connection, code: str) -> AccountBalance | None:
    """One account, by its code (`customer:INN`, `agent:CODE:clearing`, `cash_desk` ...)."""
    row = conn.execute(_with_balances().where(accounts.c.code == code)).first()
    return None if row is None else _balance(row)


def list_accounts(
    conn: Connection, *, kind: str | None, after_id: int | None, limit: int
) -> list[AccountBalance]:
    """Accounts in id order, `limit` at most, with ids above `after_id` (keyset pagination)."""
    query = _with_balances()
    if kind is not None:
        query = query.where(accounts.c.kind == kind)
    if after_id is not None:
        query = query.where(accounts.c.id > after_id)
    return [_balance(r) for r in conn.execute(query.order_by(accounts.c.id).limit(limit))]


def balances(conn: Connection, account_ids: Sequence[int]) -> dict[int, int]:
    """The balances of several accounts in one query; an unknown id is absent."""
    if not account_ids:
        return {}
    rows = conn.execute(
        select(account_balances.c.account_id, func.sum(account_balances.c.balance))
        .where(account_balances.c.account_id.in_(list(account_ids)))
        .group_by(account_balances.c.account_id)
    )
    return {int(account_id): int(total) for account_id, total in rows}


# --- statements -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineSource:
    """What a statement line's journal entry records, as data rather than words.

    The entry's stored description is Russian, written once; a page in another language
    says the line in its own words from this. `kind` is the entry's kind; `number` the
    payment's (payment, reversal), the charge's (charge, charge_refund) or the order's
    (order_refund) id; `text` the client's description of a charge, or the reason given for
    a reversal or refund; `reference` the agent's transaction or document number of a
    payment, the account of a reversed payment, the invoice of a refunded order; `agent` the
    name of the agent or cash desk that took a payment.

    Each area that writes such entries reads its own sources back (`statement_sources` in
    `payments.records`, `billing.charges`, `billing.orders`);
    `backoffice.statement_sources` gathers them for a statement.
    """

    kind: str
    number: int
    text: str | None = None
    reference: str | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One posting of the period, as seen from the account, with the balance after it."""

    posting_id: int
    entry_id: int
    entry_kind: str
    created_at: datetime
    description: str
    amount: int  # positive credits the account, negative debits it
    balance: int  # running balance after this line


@dataclass(frozen=True, slots=True)
class Statement:
    """An account over [start, end): opening balance, every posting, closing balance."""

    account_id: int
    start: datetime
    end: datetime
    opening: int
    closing: int
    credits: int  # sum of the period's credits (>= 0)
    debits: int  # sum of the period's debits (>= 0)
    lines: tuple[StatementLine, ...]
    complete: bool = True  # False: a `limit` left out the period's later lines


def _moment(conn: Connection, moment: datetime) -> Any:
    """A bound timestamp that compares right with what each database stores.

    SQLite keeps timestamps as text: CURRENT_TIMESTAMP writes "YYYY-MM-DD HH:MM:SS" and
    SQLAlchemy writes the same with ".ffffff", in UTC. A bound without a fraction compares
    right with both; so bounds here are whole seconds.
    """
    if moment.tzinfo is None or moment.microsecond:
        raise ValueError("statement bounds are aware datetimes in whole seconds")
    utc = moment.astimezone(UTC)
    if conn.dialect.name == "sqlite":
        return bindparam(None, utc.strftime("%Y-%m-%d %H:%M:%S"), type_=String())
    return literal(utc, journal_entries.c.created_at.type)


def statement(
    conn: Connection,
    account_id: int,
    start: datetime,
    end: datetime,
    *,
    limit: int | None = None,
) -> Statement:
    """Every posting of `account_id` whose entry was written in [start, end), in ledger order.

    The opening balance is the sum of all earlier postings (worked out from the balance
    now), so opening + the period's movements = closing, and the closing balance of a
    period that reaches today equals the account's balance.

    With `limit`, only the period's first `limit` lines are read (a page stays fast however
    busy the account); the totals and the closing balance are then summed in the database
    over the whole period, and `complete` is False if lines were left out.
    """
    if limit is not None and limit < 0:
        raise ValueError("a statement's limit is not negative")
    if end <= start:
        raise ValueError("a statement's end comes after its start")
    legs = union_all(
        select(
            postings.c.id.label("posting_id"),
            postings.c.entry_id,
            postings.c.amount.label("amount"),
        ).where(postings.c.credit_account_id == account_id),
        select(
            postings.c.id.label("posting_id"),
            postings.c.entry_id,
            (-postings.c.amount).label("amount"),
        ).where(postings.c.debit_account_id == account_id),
    ).subquery()
    lower, upper = _moment(conn, start), _moment(conn, end)
    # Opening = the balance now less every movement since `start`, in one statement (one
    # snapshot): it reads the postings since the period began, not the account's whole
    # history, so a recent period of a busy account stays cheap. Equal to the sum of the
    # earlier postings, since a balance is the sum of all its postings (ledger.verify).
    balance_now = (
        select(func.coalesce(func.sum(account_balances.c.balance), 0))
        .where(account_balances.c.account_id == account_id)
        .scalar_subquery()
    )
    since_start = (
        select(func.coalesce(func.sum(legs.c.amount), 0))
        .select_from(legs.join(journal_entries, journal_entries.c.id == legs.c.entry_id))
        .where(journal_entries.c.created_at >= lower)
        .scalar_subquery()
    )
    opening = int(conn.execute(select(balance_now - since_start)).scalar_one())
    in_period = legs.join(journal_entries, journal_entries.c.id == legs.c.entry_id)
    period = (journal_entries.c.created_at >= lower, journal_entries.c.created_at < upper)
    query = (
        select(
            legs.c.posting_id,
            legs.c.entry_id,
            legs.c.amount,
            journal_entries.c.kind,
            journal_entries.c.created_at,
            journal_entries.c.description,
        )
        .select_from(in_period)
        .where(*period)
        .order_by(legs.c.posting_id)
    )
    if limit is not None:
        query = query.limit(limit + 1)
    rows = conn.execute(query).all()
    complete = limit is None or len(rows) <= limit
    running, credits, debits = opening, 0, 0
    lines = []
    for r in rows[:limit] if limit is not None else rows:
        amount = int(r.amount)
        running += amount
        if amount > 0:
            credits += amount
        else:
            debits -= amount
        lines.append(
            StatementLine(
                r.posting_id,
                r.entry_id,
                r.kind,
                as_utc(r.created_at),
                r.description,
                amount,
                running,
            )
        )
    if not complete:
        credits, debits = _period_totals(conn, legs, in_period, period)
    closing = opening + credits - debits
    return Statement(
        account_id, start, end, opening, closing, credits, debits, tuple(lines), complete
    )


def _period_totals(conn: Connection, legs: Any, in_period: Any, period: Any) -> tuple[int, int]:
    """The credits and the debits (both >= 0) of a statement's whole period, summed in
    the database."""
    credit = case((legs.c.amount > 0, legs.c.amount), else_=0)
    debit = case((legs.c.amount < 0, -legs.c.amount), else_=0)
    row = conn.execute(
        select(func.coalesce(func.sum(credit), 0), func.coalesce(func.sum(debit), 0))
        .select_from(in_period)
        .where(*period)
    ).one()
    return int(row[0]), int(row[1])
