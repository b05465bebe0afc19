"""Posting a journal entry: the only code that moves money between accounts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, update
from sqlalchemy.exc import IntegrityError

from tolom.db.schema import account_balances, journal_entries, postings
from tolom.ledger.accounts import LedgerAccount


class InsufficientFunds(Exception):
    """A debit would take an account that may not go negative below zero."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """`amount` tyiyn debited from one account and credited to another."""

    debit: LedgerAccount
    credit: LedgerAccount
    amount: int

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("a transfer moves a positive amount")
        if self.debit.id == self.credit.id:
            raise ValueError("a transfer needs two different accounts")


# Built once: the hot path reuses the compiled statement.
_ADD_TO_BALANCE = (
    update(account_balances)
    .where(account_balances.c.account_id == bindparam("b_account"))
    .where(account_balances.c.slot == bindparam("b_slot"))
    .values(balance=account_balances.c.balance + bindparam("b_delta"))
    .returning(account_balances.c.balance)
)


def open_entry(conn: Connection, *, kind: str, description: str) -> int:
    """Start a journal entry; its postings follow with `post`, in the same transaction."""
    return int(
        conn.execute(
            insert(journal_entries)
            .values(kind=kind, description=description)
            .returning(journal_entries.c.id)
        ).scalar_one()
    )


def post(
    conn: Connection, *, entry_id: int, transfers: Sequence[Transfer], slot_key: int
) -> dict[int, int]:
    """Write an entry's postings and apply them to the balances.

    Runs inside the caller's transaction, so the entry, the balances and whatever the caller
    writes beside them commit or vanish together. Balance rows are updated in ascending
    (account, slot) order, so two entries touching the same accounts never deadlock.
    `slot_key` picks the balance row of accounts that have several (any stable number, e.g.
    the agent's txn_id). Raises InsufficientFunds if a balance would go below zero where it
    may not.

    Returns, per account touched, the new balance of the row it touched: the account's whole
    balance for a one-row account such as a customer's (no extra query needed).
    """
    if not transfers:
        raise ValueError("a journal entry needs at least one transfer")
    conn.execute(
        insert(postings),
        [
            {
                "entry_id": entry_id,
                "debit_account_id": t.debit.id,
                "credit_account_id": t.credit.id,
                "amount": t.amount,
            }
            for t in transfers
        ],
    )
    deltas: dict[tuple[int, int], int] = defaultdict(int)
    for t in transfers:
        deltas[(t.debit.id, slot_key % t.debit.slots)] -= t.amount
        deltas[(t.credit.id, slot_key % t.credit.slots)] += t.amount
    balances: dict[int, int] = {}
    try:
        for (account_id, slot), delta in sorted(deltas.items()):
            if delta:
                balances[account_id] = conn.execute(
                    _ADD_TO_BALANCE, {"b_account": account_id, "b_slot": slot, "b_delta": delta}
                ).scalar_one()
    except IntegrityError as error:
        raise InsufficientFunds(str(error.orig)) from error
    return balances


def post_entry(
    conn: Connection,
    *,
    kind: str,
    description: str,
    transfers: Sequence[Transfer],
    slot_key: int = 0,
) -> int:
    """Open an entry and post its transfers in one go; returns the entry id."""
    entry_id = open_entry(conn, kind=kind, description=description)
    post(conn, entry_id=entry_id, transfers=transfers, slot_key=slot_key)
    return entry_id
