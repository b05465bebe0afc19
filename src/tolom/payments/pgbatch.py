"""PostgreSQL's road for the busiest use cases: gateway top-ups and checks, many at a time.

A batch of `sochi` pays is one call of the server-side function `tolom_pay_sochi`
(migration 0008): the lookup of an earlier payment and of the customer, the decision, the
idempotent insert, the journal entry and posting, both balance rows and the
`payment.accepted` event with its deliveries — for every pay of the batch, in one round
trip, with no SQLAlchemy on the way. A batch of `sochi` checks is one SELECT. Python keeps
the wording of every answer (`service.refusal`) and the rules that need no database
(`service.prepare_pay`, `service.precheck`), so the function only decides what the rows
say. The gateway tests (`tests/adapters/gateway/test_osmp_gateway.py`, `test_rest_gateway.py`,
`test_group_commit.py`, the stateful `test_stateful.py`) run every rule on SQLite (pure
Python) and on PostgreSQL (this road) and expect identical answers.

The caller owns the transaction (`gateway.step`): it settles reports awaiting payment for
the customers the function flags, writes the request records, and commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from tolom.agents.service import Agent
from tolom.billing import charges
from tolom.db.schema import gateway_requests
from tolom.events.outbox import NOTIFIED, EventType
from tolom.ledger.accounts import account_balance
from tolom.payments import records, service
from tolom.payments.model import CheckResult, Outcome, PayRequest, PayResult, Service

if TYPE_CHECKING:
    import psycopg

_PAY_SOCHI = (
    "SELECT item, outcome, payment_id, amount, status, txn_date, business_date, created_at,"
    " replayed, customer_id, account_id, awaiting, limit_amount"
    " FROM tolom_pay_sochi(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_CUSTOMERS = "SELECT inn, id, name, status FROM customers WHERE inn = ANY(%s)"
_NOTIFY = EventType.PAYMENT_ACCEPTED in NOTIFIED
_RECORD_COLUMNS = [c.name for c in gateway_requests.columns if c.name != "id"]
# Our own column names only: nothing from outside reaches this text.
_INSERT_RECORD = (
    f"INSERT INTO gateway_requests ({', '.join(_RECORD_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join(['%s'] * len(_RECORD_COLUMNS))})"
)


@dataclass(frozen=True, slots=True)
class _Customer:
    name: str
    status: str


def driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one (same transaction)."""
    import psycopg  # here: a server on SQLite never loads it

    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def check_and_pay(
    conn: Connection,
    checks: Sequence[tuple[Agent, str]],
    pays: Sequence[tuple[Agent, PayRequest]],
) -> tuple[list[CheckResult], list[PayResult]]:
    """Sochi checks (well-formed INNs, agents allowed) and prepared sochi pays
    (`service.prepare_pay` passed) of gateway agents: one SELECT for the checks and one
    call for the pays, sent together in one round trip (pipeline mode, with the BEGIN).

    Then settles the reports awaiting payment of every customer the batch credited, in the
    caller's transaction, after all the credits (each customer once).
    """
    raw = driver(conn)
    with raw.cursor() as check_cursor, raw.cursor() as pay_cursor:
        with raw.pipeline():
            if checks:
                inns = [account for _, account in checks]
                check_cursor.execute(_CUSTOMERS, (inns,), prepare=True)
            if pays:
                pay_cursor.execute(_PAY_SOCHI, (*_columns(pays), _NOTIFY), prepare=True)
        found = {
            inn: _Customer(name, status)
            for inn, _id, name, status in (check_cursor.fetchall() if checks else [])
        }
        rows = pay_cursor.fetchall() if pays else []
    checked = [
        service.judge_customer(found.get(account), agent.services[Service.SOCHI.value])
        for agent, account in checks
    ]
    results: list[PayResult | None] = [None] * len(pays)
    to_settle: dict[int, tuple[int, int]] = {}  # customer → (account, last payment)
    for row in rows:
        item, outcome = row[0] - 1, row[1]
        results[item] = _with_reversal(conn, _result(outcome, row, pays[item][1]))
        if row[11]:
            to_settle[row[9]] = (row[10], row[2])
    for customer_id, (account_id, payment_id) in to_settle.items():
        balance = account_balance(conn, account_id)
        charges.settle_awaiting(conn, customer_id, account_id, balance, payment_id=payment_id)
    paid = [result for result in results if result is not None]
    assert len(paid) == len(pays), "tolom_pay_sochi skipped a pay"
    return checked, paid


def _columns(pays: Sequence[tuple[Agent, PayRequest]]) -> list[list[Any]]:
    """The function's array arguments: one array per column, one element per pay."""
    columns: list[list[Any]] = [[] for _ in range(13)]
    for agent, request in pays:
        limits = agent.services[Service.SOCHI.value]
        clearing = agent.clearing_account
        values = (
            agent.id,
            agent.code,
            clearing.id,
            clearing.slots,
            request.txn_id,
            request.account,
            request.amount,
            limits.min_amount,
            limits.max_amount,
            request.txn_date_raw,
            request.txn_date.astimezone(UTC),
            request.txn_date.astimezone(agent.timezone).date(),
            service.describe(agent, request),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def record_and_commit(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert request records and commit, in one round trip (pipeline mode)."""
    raw = driver(conn)
    with raw.pipeline(), raw.cursor() as cursor:
        cursor.executemany(_INSERT_RECORD, [[row[c] for c in _RECORD_COLUMNS] for row in rows])
        raw.commit()


def _with_reversal(conn: Connection, result: PayResult) -> PayResult:
    """A repeat of a pay cancelled since carries the cancellation, as `service.replay`
    does. The function does not return it: such repeats are rare, so one more read for
    them beats a wider row for every pay."""
    if not (result.replayed and result.status == "reversed" and result.payment_id is not None):
        return result
    record = records.by_id(conn, result.payment_id)
    return result if record is None else replace(result, reversal=record.reversal)


def _result(outcome: str, row: Any, request: PayRequest) -> PayResult:
    (_, _, payment_id, amount, status, txn_date, business_date, created_at, replayed) = row[:9]
    if outcome == "ok":
        return PayResult(
            Outcome.OK,
            "OK",
            payment_id=payment_id,
            amount=amount,
            replayed=replayed,
            status=status,
            txn_date=txn_date,
            business_date=business_date,
            created_at=created_at,
        )
    if outcome == "conflict":
        return service.conflict(request)
    if outcome == "inactive":
        return service.as_pay(service.inactive(service.CUSTOMER_BLOCKED))
    return service.as_pay(service.refusal(Outcome(outcome), Service.SOCHI, limit=row[12]))
