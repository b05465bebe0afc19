"""Ledger verification: recompute every balance from the postings and compare."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select, union_all

from tolom.db.schema import account_balances, accounts, journal_entries, payments, postings


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One thing that is wrong, named so an operator can find it."""

    kind: str
    subject: str
    detail: str


def verify_ledger(conn: Connection) -> list[Discrepancy]:
    """Every way the ledger can be inconsistent; an empty list means it is sound.

    Checks: each account's stored balance equals credits minus debits of its postings; no
    posting is malformed (non-positive, or one account on both sides); every journal entry
    has postings; every accepted payment has exactly its amount posted.
    """
    problems: list[Discrepancy] = []

    legs = union_all(
        select(postings.c.credit_account_id.label("account_id"), postings.c.amount.label("delta")),
        select(
            postings.c.debit_account_id.label("account_id"), (-postings.c.amount).label("delta")
        ),
    ).subquery()
    from_postings = dict(
        conn.execute(
            select(legs.c.account_id, func.sum(legs.c.delta)).group_by(legs.c.account_id)
        ).all()
    )
    stored = dict(
        conn.execute(
            select(account_balances.c.account_id, func.sum(account_balances.c.balance)).group_by(
                account_balances.c.account_id
            )
        ).all()
    )
    codes = dict(conn.execute(select(accounts.c.id, accounts.c.code)).all())
    for account_id in sorted(set(from_postings) | set(stored) | set(codes)):
        expected = int(from_postings.get(account_id) or 0)
        actual = stored.get(account_id)
        name = codes.get(account_id, f"#{account_id}")
        if actual is None:
            problems.append(
                Discrepancy("balance_missing", name, f"no balance rows; postings sum to {expected}")
            )
        elif int(actual) != expected:
            problems.append(
                Discrepancy(
                    "balance_mismatch", name, f"stored {int(actual)}, postings sum to {expected}"
                )
            )

    bad_postings = conn.execute(
        select(postings.c.id).where(
            (postings.c.amount <= 0) | (postings.c.debit_account_id == postings.c.credit_account_id)
        )
    ).scalars()
    problems += [
        Discrepancy("posting_malformed", f"posting {pid}", "non-positive or one-sided")
        for pid in bad_postings
    ]

    empty_entries = conn.execute(
        select(journal_entries.c.id).where(
            ~select(postings.c.id).where(postings.c.entry_id == journal_entries.c.id).exists()
        )
    ).scalars()
    problems += [
        Discrepancy("entry_empty", f"journal entry {eid}", "has no postings")
        for eid in empty_entries
    ]

    posted = (
        select(postings.c.entry_id, func.sum(postings.c.amount).label("total"))
        .group_by(postings.c.entry_id)
        .subquery()
    )
    unposted = conn.execute(
        select(payments.c.id, payments.c.amount, posted.c.total)
        .select_from(payments.outerjoin(posted, posted.c.entry_id == payments.c.entry_id))
        .where(payments.c.status == "accepted")
        .where((posted.c.total.is_(None)) | (posted.c.total != payments.c.amount))
    )
    for payment_id, amount, total in unposted:
        problems.append(
            Discrepancy(
                "payment_unposted", f"payment {payment_id}", f"amount {amount}, posted {total or 0}"
            )
        )
    return problems
