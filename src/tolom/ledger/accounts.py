"""Ledger accounts and their balance rows."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from tolom.db.schema import account_balances, accounts

# An agent's clearing account is touched by every payment of that agent. One balance row
# would serialise all of them on its row lock (held until commit, i.e. through the WAL
# flush); spreading the balance over several rows lets payments commit in parallel.
HOT_ACCOUNT_SLOTS = 16

# Accounts that exist once per installation, created by `tolom db upgrade`.
SYSTEM_ACCOUNTS: dict[str, tuple[str, str, int]] = {
    # code: (kind, name, slots)
    "revenue:eds": ("revenue", "Выручка: электронные подписи и носители", HOT_ACCOUNT_SLOTS),
    "revenue:sochi": ("revenue", "Выручка: отчёты, отправленные через СОЧИ", HOT_ACCOUNT_SLOTS),
    "cash_desk": ("cash_desk", "Касса", 1),
    "bank": ("bank", "Расчётный счёт в банке", 1),
}


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    """What posting needs to know of an account: its id and how many balance rows it has."""

    id: int
    slots: int = 1


def create_account(
    conn: Connection, *, code: str, kind: str, name: str, may_go_negative: bool, slots: int = 1
) -> LedgerAccount:
    """Create an account with its zero balance rows."""
    account_id = conn.execute(
        insert(accounts)
        .values(code=code, kind=kind, name=name, slots=slots, may_go_negative=may_go_negative)
        .returning(accounts.c.id)
    ).scalar_one()
    conn.execute(
        insert(account_balances),
        [
            {
                "account_id": account_id,
                "slot": slot,
                "balance": 0,
                "may_go_negative": may_go_negative,
            }
            for slot in range(slots)
        ],
    )
    return LedgerAccount(account_id, slots)


def ensure_system_accounts(conn: Connection) -> None:
    """Create the installation-wide accounts that are missing."""
    existing = set(conn.execute(select(accounts.c.code)).scalars())
    for code, (kind, name, slots) in SYSTEM_ACCOUNTS.items():
        if code not in existing:
            create_account(conn, code=code, kind=kind, name=name, may_go_negative=True, slots=slots)


_system_cache: dict[tuple[str, str], LedgerAccount] = {}


def system_account(conn: Connection, code: str) -> LedgerAccount:
    """A system account by code; cached, since accounts are never renumbered."""
    key = (str(conn.engine.url), code)
    cached = _system_cache.get(key)
    if cached is None:
        row = conn.execute(
            select(accounts.c.id, accounts.c.slots).where(accounts.c.code == code)
        ).one()
        cached = _system_cache[key] = LedgerAccount(row.id, row.slots)
    return cached


def account_balance(conn: Connection, account_id: int) -> int:
    """The balance of an account: the sum of its balance rows."""
    rows = conn.execute(
        select(account_balances.c.balance).where(account_balances.c.account_id == account_id)
    ).scalars()
    return sum(rows)
