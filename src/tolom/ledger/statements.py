"""Reading an account's history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, case, or_, select

from tolom.db.schema import journal_entries, postings


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
