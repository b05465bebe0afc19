"""The double-entry ledger: posting, the database's own guards, and verification.

Every test runs on SQLite and (with TOLOM_TEST_DATABASE_URL) on PostgreSQL; the `engine`
fixture verifies the ledger after each test unless it is marked `corrupts_ledger`.
"""

from __future__ import annotations

import itertools

import pytest
import typer.testing
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tests.factories import Gateway, add_customer
from tolom.billing import customers
from tolom.cli import app as cli_app
from tolom.db.schema import (
    account_balances,
    accounts,
    journal_entries,
    payments,
    postings,
)
from tolom.ledger import InsufficientFunds, LedgerAccount, Transfer, post_entry
from tolom.ledger.accounts import HOT_ACCOUNT_SLOTS, account_balance, create_account
from tolom.ledger.posting import open_entry
from tolom.ledger.verify import Discrepancy, verify_ledger
from tolom.settings import get_settings

_codes = itertools.count(1)


def new_account(engine: Engine, *, may_go_negative: bool = True, slots: int = 1) -> LedgerAccount:
    """A fresh account of kind `bank` (negative allowed) or `customer` (not)."""
    kind = "bank" if may_go_negative else "customer"
    with engine.begin() as conn:
        return create_account(
            conn,
            code=f"test:{kind}:{next(_codes)}",
            kind=kind,
            name="Тестовый счёт",
            may_go_negative=may_go_negative,
            slots=slots,
        )


def balance_of(engine: Engine, account: LedgerAccount) -> int:
    with engine.connect() as conn:
        return account_balance(conn, account.id)


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def customer_account(engine: Engine, inn: str) -> LedgerAccount:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return LedgerAccount(customer.account_id)


def transfer_in(engine: Engine, debit: LedgerAccount, credit: LedgerAccount, amount: int) -> int:
    with engine.begin() as conn:
        return post_entry(
            conn,
            kind="test",
            description="тестовая проводка",
            transfers=[Transfer(debit=debit, credit=credit, amount=amount)],
        )


# --- posting --------------------------------------------------------------------------


def test_post_entry_moves_money_and_the_ledger_balances(engine: Engine) -> None:
    bank, other = new_account(engine), new_account(engine)
    inn = add_customer(engine)
    customer = customer_account(engine, inn)

    entry_id = transfer_in(engine, bank, customer, 150000)
    transfer_in(engine, customer, other, 50001)

    assert balance_of(engine, bank) == -150000
    assert balance_of(engine, customer) == 150000 - 50001
    assert balance_of(engine, other) == 50001
    with engine.connect() as conn:
        assert customers.balance(conn, customers.get(conn, inn)) == 99999
        rows = conn.execute(
            select(
                postings.c.debit_account_id, postings.c.credit_account_id, postings.c.amount
            ).where(postings.c.entry_id == entry_id)
        ).all()
        assert [tuple(r) for r in rows] == [(bank.id, customer.id, 150000)]
        assert verify_ledger(conn) == []


def test_one_entry_with_several_transfers_sums_to_zero(engine: Engine) -> None:
    a, b, c = new_account(engine), new_account(engine), new_account(engine)
    with engine.begin() as conn:
        post_entry(
            conn,
            kind="test",
            description="разнесение",
            transfers=[
                Transfer(debit=a, credit=b, amount=700),
                Transfer(debit=a, credit=c, amount=300),
                Transfer(debit=b, credit=c, amount=200),
            ],
        )
    assert (balance_of(engine, a), balance_of(engine, b), balance_of(engine, c)) == (
        -1000,
        500,
        500,
    )
    assert count(engine, postings) == 3
    assert count(engine, journal_entries) == 1


def test_an_entry_needs_at_least_one_transfer(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least one"), engine.begin() as conn:
        post_entry(conn, kind="test", description="пусто", transfers=[])
    assert count(engine, journal_entries) == 0


@pytest.mark.parametrize("amount", [0, -1, -150000])
def test_transfer_refuses_a_non_positive_amount(engine: Engine, amount: int) -> None:
    a, b = new_account(engine), new_account(engine)
    with pytest.raises(ValueError, match="positive"):
        Transfer(debit=a, credit=b, amount=amount)


def test_transfer_refuses_one_account_on_both_sides(engine: Engine) -> None:
    a = new_account(engine)
    with pytest.raises(ValueError, match="two different accounts"):
        Transfer(debit=a, credit=LedgerAccount(a.id), amount=100)


@pytest.mark.parametrize(
    ("amount", "same_account"),
    [(0, False), (-100, False), (100, True)],
    ids=["zero", "negative", "one-account"],
)
def test_the_database_refuses_a_malformed_posting(
    engine: Engine, amount: int, same_account: bool
) -> None:
    a, b = new_account(engine), new_account(engine)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        entry_id = open_entry(conn, kind="test", description="в обход Transfer")
        conn.execute(
            insert(postings).values(
                entry_id=entry_id,
                debit_account_id=a.id,
                credit_account_id=a.id if same_account else b.id,
                amount=amount,
            )
        )
    assert count(engine, postings) == 0
    assert count(engine, journal_entries) == 0


def test_the_database_accepts_a_well_formed_direct_posting_control(engine: Engine) -> None:
    """The control for the test above: the same insert with good values goes through."""
    a, b = new_account(engine), new_account(engine)
    with engine.begin() as conn:
        entry_id = open_entry(conn, kind="test", description="напрямую")
        conn.execute(
            insert(postings).values(
                entry_id=entry_id, debit_account_id=a.id, credit_account_id=b.id, amount=1
            )
        )
        # keep the balances in step so the after-test verification holds
        conn.execute(
            update(account_balances)
            .where(account_balances.c.account_id == a.id)
            .values(balance=account_balances.c.balance - 1)
        )
        conn.execute(
            update(account_balances)
            .where(account_balances.c.account_id == b.id)
            .values(balance=account_balances.c.balance + 1)
        )
    assert count(engine, postings) == 1


# --- append-only ----------------------------------------------------------------------


def _one_entry(engine: Engine) -> tuple[int, LedgerAccount, LedgerAccount]:
    a, b = new_account(engine), new_account(engine)
    return transfer_in(engine, a, b, 2500), a, b


@pytest.mark.parametrize(
    "statement",
    [
        lambda entry_id: update(postings).where(postings.c.entry_id == entry_id).values(amount=1),
        lambda entry_id: (
            update(postings).where(postings.c.entry_id == entry_id).values(amount=postings.c.amount)
        ),
        lambda entry_id: delete(postings).where(postings.c.entry_id == entry_id),
        lambda entry_id: (
            update(journal_entries)
            .where(journal_entries.c.id == entry_id)
            .values(description="переписано задним числом")
        ),
        lambda entry_id: delete(journal_entries).where(journal_entries.c.id == entry_id),
    ],
    ids=[
        "update-posting",
        "noop-update-posting",
        "delete-posting",
        "update-entry",
        "delete-entry",
    ],
)
def test_the_ledger_is_append_only(engine: Engine, statement) -> None:  # type: ignore[no-untyped-def]
    entry_id, _a, b = _one_entry(engine)
    with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
        conn.execute(statement(entry_id))
    with engine.connect() as conn:
        row = conn.execute(select(postings).where(postings.c.entry_id == entry_id)).one()
        assert row.amount == 2500
        entry = conn.execute(select(journal_entries).where(journal_entries.c.id == entry_id)).one()
        assert entry.description == "тестовая проводка"
    assert balance_of(engine, b) == 2500


@pytest.mark.corrupts_ledger
def test_deleting_an_entry_without_postings_is_refused_too(engine: Engine) -> None:
    """No foreign key can be what stops this delete: the entry has no postings."""
    with engine.begin() as conn:
        lonely = open_entry(conn, kind="test", description="без проводок")
    with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
        conn.execute(delete(journal_entries).where(journal_entries.c.id == lonely))
    with engine.connect() as conn:
        assert count(engine, journal_entries) == 1
        # The empty entry is itself a discrepancy, which verify_ledger names.
        assert verify_ledger(conn) == [
            Discrepancy("entry_empty", f"journal entry {lonely}", "has no postings")
        ]


# --- not going negative -----------------------------------------------------------------


def test_a_customer_balance_cannot_go_below_zero(engine: Engine) -> None:
    bank = new_account(engine)
    inn = add_customer(engine)
    customer = customer_account(engine, inn)
    transfer_in(engine, bank, customer, 10000)
    postings_before = count(engine, postings)
    entries_before = count(engine, journal_entries)

    with pytest.raises(InsufficientFunds):
        transfer_in(engine, customer, bank, 10001)

    assert balance_of(engine, customer) == 10000
    assert balance_of(engine, bank) == -10000
    assert count(engine, postings) == postings_before
    assert count(engine, journal_entries) == entries_before
    transfer_in(engine, customer, bank, 10000)  # exactly the balance is fine
    assert balance_of(engine, customer) == 0
    with pytest.raises(InsufficientFunds):
        transfer_in(engine, customer, bank, 1)
    assert balance_of(engine, customer) == 0


def test_a_fresh_customer_cannot_be_debited_at_all(engine: Engine) -> None:
    customer = new_account(engine, may_go_negative=False)
    bank = new_account(engine)
    with pytest.raises(InsufficientFunds):
        transfer_in(engine, customer, bank, 1)
    assert balance_of(engine, customer) == 0
    assert balance_of(engine, bank) == 0
    assert count(engine, postings) == 0


def test_the_database_itself_refuses_a_negative_customer_balance(engine: Engine) -> None:
    customer = new_account(engine, may_go_negative=False)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            update(account_balances)
            .where(account_balances.c.account_id == customer.id)
            .values(balance=-1)
        )
    assert balance_of(engine, customer) == 0


def test_an_account_that_may_go_negative_does(engine: Engine) -> None:
    bank, customer = new_account(engine), new_account(engine, may_go_negative=False)
    transfer_in(engine, bank, customer, 123456)
    assert balance_of(engine, bank) == -123456


# --- verification -----------------------------------------------------------------------


def run_cli(database_url: str, monkeypatch: pytest.MonkeyPatch, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TOLOM_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = typer.testing.CliRunner().invoke(cli_app, list(args))
    finally:
        get_settings.cache_clear()
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.corrupts_ledger
def test_a_corrupted_balance_is_named_by_verify_and_the_cli(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(engine)
    customer = customer_account(engine, inn)
    transfer_in(engine, new_account(engine), customer, 5000)
    assert run_cli(database_url, monkeypatch, "ledger", "verify").exit_code == 0

    with engine.begin() as conn:
        conn.execute(
            update(account_balances)
            .where(account_balances.c.account_id == customer.id)
            .values(balance=account_balances.c.balance + 100)
        )

    with engine.connect() as conn:
        problems = verify_ledger(conn)
    assert problems == [
        Discrepancy("balance_mismatch", f"customer:{inn}", "stored 5100, postings sum to 5000")
    ]
    result = run_cli(database_url, monkeypatch, "ledger", "verify")
    assert result.exit_code == 1
    assert f"customer:{inn}" in result.output
    assert "5100" in result.output
    as_json = run_cli(database_url, monkeypatch, "ledger", "verify", "--json")
    assert as_json.exit_code == 1
    assert f'"subject": "customer:{inn}"' in as_json.output
    assert '"ok": false' in as_json.output


@pytest.mark.corrupts_ledger
def test_verify_names_an_account_whose_balance_rows_vanished(engine: Engine) -> None:
    bank = new_account(engine)
    with engine.begin() as conn:
        code = conn.execute(select(accounts.c.code).where(accounts.c.id == bank.id)).scalar_one()
        conn.execute(delete(account_balances).where(account_balances.c.account_id == bank.id))
        assert verify_ledger(conn) == [
            Discrepancy("balance_missing", code, "no balance rows; postings sum to 0")
        ]


@pytest.mark.corrupts_ledger
def test_verify_names_a_payment_without_its_posting(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "10.00", txn_id="4242")["result"] == 0
    with engine.begin() as conn:
        payment = conn.execute(select(payments.c.id, payments.c.entry_id)).one()
        # point the payment at a fresh, empty entry: its money is no longer posted
        empty = open_entry(conn, kind="test", description="пусто")
        conn.execute(update(payments).where(payments.c.id == payment.id).values(entry_id=empty))
        problems = verify_ledger(conn)
    assert sorted(problems, key=lambda p: p.kind) == [
        Discrepancy("entry_empty", f"journal entry {empty}", "has no postings"),
        Discrepancy("payment_unposted", f"payment {payment.id}", "amount 1000, posted 0"),
    ]


def test_verify_is_clean_after_payments(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    for txn_id in ("1", "2", "3"):
        assert gateway.pay("sochi", inn, "100.00", txn_id=txn_id)["result"] == 0
    with engine.connect() as conn:
        assert verify_ledger(conn) == []


# --- the hot agent clearing account ------------------------------------------------------


def test_the_agent_clearing_account_is_spread_over_16_rows(
    engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    with engine.connect() as conn:
        clearing_id = conn.execute(
            select(accounts.c.id, accounts.c.slots).where(
                accounts.c.code == f"agent:{gateway.code}:clearing"
            )
        ).one()
    assert clearing_id.slots == HOT_ACCOUNT_SLOTS == 16
    amounts = {}  # receipt number -> som; consecutive receipts hit every slot
    for i in range(20):
        answer = gateway.pay("sochi", inn, f"{100 * (i + 1)}.00", txn_id=str(1000 + i))
        assert answer["result"] == 0
        amounts[int(answer["prv_txn"])] = 100 * (i + 1)
    total = sum(amounts.values()) * 100

    with engine.connect() as conn:
        rows = conn.execute(
            select(account_balances.c.slot, account_balances.c.balance).where(
                account_balances.c.account_id == clearing_id.id
            )
        ).all()
        assert sorted(r.slot for r in rows) == list(range(16))
        assert sum(1 for r in rows if r.balance != 0) == 16  # 20 consecutive ids cover all
        assert account_balance(conn, clearing_id.id) == sum(r.balance for r in rows) == -total
        assert customers.balance(conn, customers.get(conn, inn)) == total
        # each payment landed on the slot its receipt number picks
        by_slot = {r.slot: r.balance for r in rows}
        for slot in range(16):
            expected = -sum(som * 100 for receipt, som in amounts.items() if receipt % 16 == slot)
            assert by_slot[slot] == expected
