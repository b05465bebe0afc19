"""Charges: the СОЧИ reporting system takes the price of a sent report from the balance.

The rules, in one place:
- a charge is taken at once (`charged`) only when the balance covers it and no earlier
  charge of the customer is still waiting; otherwise it waits (`awaiting_payment`), so
  reports are released in the order they were sent, and a balance never goes negative and
  is never charged in part;
- every credit to the balance (a top-up, a refund) settles the waiting charges in the same
  transaction, oldest first, for as long as the balance covers the next one;
- a waiting charge can be cancelled; a taken one only refunded, by a reversing entry with a
  reason;
- a client's idempotency key names one charge: a repeat answers with it, a repeat with
  other details is refused.

Every change locks the customer's balance row first (`_lock_balance`), so the charges and
payments of one customer run one after another; their events are emitted under that lock
and so follow commit order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tolom import audit
from tolom.billing import tariffs
from tolom.db.schema import account_balances, charges, customers
from tolom.events.outbox import EventType, customer_key, emit
from tolom.ledger.accounts import LedgerAccount, system_account
from tolom.ledger.posting import Transfer, open_entry, post
from tolom.ledger.statements import LineSource
from tolom.money import format_amount
from tolom.texts import N_, Refusal
from tolom.timestamps import as_utc

REVENUE = "revenue:sochi"
MAX_AMOUNT = 10_000_000_00  # tyiyn: ten million som; anything above is a client's bug


class ChargeError(Refusal):
    """A charge request that cannot be done, worded by a catalogue key; `code` is the
    API's problem code, `field` the request field it is about (if one)."""

    def __init__(self, key: str, /, *, code: str, field: str | None = None, **values: Any) -> None:
        super().__init__(key, **values)
        self.code = code
        self.field = field


@dataclass(frozen=True, slots=True)
class Report:
    """What was charged for: the report as the СОЧИ system knows it (all optional)."""

    report_id: str | None = None
    state_body: str | None = None
    form: str | None = None
    period: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """A client's request to charge a customer; exactly one of amount and tariff is set."""

    client: str
    idempotency_key: str
    inn: str
    description: str
    amount: int | None = None
    tariff: str | None = None
    report: Report = field(default_factory=Report)


@dataclass(frozen=True, slots=True)
class Charge:
    id: int
    inn: str
    customer_name: str
    client: str
    idempotency_key: str
    amount: int
    tariff: str | None
    report: Report
    description: str
    status: str
    created_at: datetime
    settled_at: datetime | None
    closed_at: datetime | None
    settled_by_payment_id: int | None
    refund_reason: str | None
    replayed: bool = False  # this answers a repeat: nothing changed


_COLUMNS = (
    charges.c.id,
    customers.c.inn,
    customers.c.name.label("customer_name"),
    charges.c.client,
    charges.c.idempotency_key,
    charges.c.amount,
    charges.c.tariff_code,
    charges.c.report_id,
    charges.c.state_body,
    charges.c.form,
    charges.c.period,
    charges.c.description,
    charges.c.status,
    charges.c.created_at,
    charges.c.settled_at,
    charges.c.closed_at,
    charges.c.settled_by_payment_id,
    charges.c.refund_reason,
)
_SELECT = select(*_COLUMNS).join(customers, customers.c.id == charges.c.customer_id)


def _charge(row: Any, replayed: bool = False) -> Charge:
    return Charge(
        id=row.id,
        inn=row.inn,
        customer_name=row.customer_name,
        client=row.client,
        idempotency_key=row.idempotency_key,
        amount=row.amount,
        tariff=row.tariff_code,
        report=Report(row.report_id, row.state_body, row.form, row.period),
        description=row.description,
        status=row.status,
        created_at=as_utc(row.created_at),
        settled_at=as_utc(row.settled_at) if row.settled_at else None,
        closed_at=as_utc(row.closed_at) if row.closed_at else None,
        settled_by_payment_id=row.settled_by_payment_id,
        refund_reason=row.refund_reason,
        replayed=replayed,
    )


def get(conn: Connection, charge_id: int) -> Charge | None:
    row = conn.execute(_SELECT.where(charges.c.id == charge_id)).first()
    return _charge(row) if row else None


def search(
    conn: Connection,
    *,
    inn: str | None = None,
    status: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Charge]:
    """Charges newest first, by customer and status; `after_id` continues a page."""
    query = _SELECT.order_by(charges.c.id.desc()).limit(limit)
    if inn is not None:
        query = query.where(customers.c.inn == inn)
    if status is not None:
        query = query.where(charges.c.status == status)
    if after_id is not None:
        query = query.where(charges.c.id < after_id)
    return [_charge(r) for r in conn.execute(query)]


# --- taking a charge -----------------------------------------------------------------------

_CUSTOMER = select(
    customers.c.id, customers.c.name, customers.c.status, customers.c.account_id
).where(customers.c.inn == bindparam("b_inn"))

_LOCK_BALANCE = (
    select(account_balances.c.balance)
    .where(account_balances.c.account_id == bindparam("b_account"))
    .with_for_update()
)

_FIRST_AWAITING = (
    select(charges.c.id)
    .where(charges.c.customer_id == bindparam("b_customer"))
    .where(charges.c.status == "awaiting_payment")
    .order_by(charges.c.id)
    .limit(1)
)

_AWAITING = (
    select(charges.c.id, charges.c.amount)
    .where(charges.c.customer_id == bindparam("b_customer"))
    .where(charges.c.status == "awaiting_payment")
    .order_by(charges.c.id)
    .with_for_update()
)

_TAKE = (
    update(charges)
    .where(charges.c.id == bindparam("b_charge"), charges.c.status == "awaiting_payment")
    .values(
        status="charged",
        entry_id=bindparam("b_entry"),
        settled_at=bindparam("b_now"),
        settled_by_payment_id=bindparam("b_payment"),
    )
)


def _insert_once(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(charges)
        .on_conflict_do_nothing(index_elements=["client", "idempotency_key"])
        .returning(charges.c.id)
    )


def _lock_balance(conn: Connection, account_id: int) -> int:
    """Lock the customer's balance row (customer accounts have one) and read it."""
    return int(conn.execute(_LOCK_BALANCE, {"b_account": account_id}).scalar_one())


def create(conn: Connection, request: ChargeRequest) -> Charge:
    """Charge a customer, or queue the charge until a top-up covers it; idempotent per key.

    A repeat of a key is answered from the stored charge before anything else is decided,
    so a retry hours later gets the first answer even if the tariff's price changed or the
    customer was blocked in between.
    """
    customer = conn.execute(_CUSTOMER, {"b_inn": request.inn}).first()
    if customer is None:
        raise ChargeError(
            N_("charge.error.customer_not_found"),
            code="customer_not_found",
            field="inn",
            inn=request.inn,
        )
    earlier = _by_key(conn, request)
    if earlier is not None:
        return _repeat(earlier, request, customer.id)
    if customer.status != "active":
        raise ChargeError(
            N_("charge.error.customer_blocked"),
            code="customer_blocked",
            field="inn",
            inn=request.inn,
        )
    amount, tariff = _amount_of(conn, request)
    balance = _lock_balance(conn, customer.account_id)
    charge_id = conn.execute(
        _insert_once(conn),
        {
            "customer_id": customer.id,
            "client": request.client,
            "idempotency_key": request.idempotency_key,
            "amount": amount,
            "tariff_code": tariff,
            "report_id": request.report.report_id,
            "state_body": request.report.state_body,
            "form": request.report.form,
            "period": request.report.period,
            "description": request.description,
            "status": "awaiting_payment",
        },
    ).scalar_one_or_none()
    if charge_id is None:  # an identical request committed while we waited for the lock
        twin = _by_key(conn, request)
        assert twin is not None
        return _repeat(twin, request, customer.id)
    waiting_before = conn.execute(_FIRST_AWAITING, {"b_customer": customer.id}).scalar()
    if waiting_before == charge_id and balance >= amount:
        balance = _take(conn, charge_id, amount, customer.account_id, payment_id=None)
        kind = EventType.CHARGE_CHARGED
    else:
        kind = EventType.CHARGE_AWAITING
    charge = get(conn, charge_id)
    assert charge is not None
    _announce(conn, kind, charge, customer.id, balance)
    return charge


def _amount_of(conn: Connection, request: ChargeRequest) -> tuple[int, str | None]:
    """The amount to charge: the client's, or the tariff's price; never both, never none."""
    if (request.amount is None) == (request.tariff is None):
        raise ChargeError(
            N_("charge.error.amount_or_tariff"), code="invalid_request", field="amount"
        )
    if request.tariff is None:
        assert request.amount is not None
        if not 0 < request.amount <= MAX_AMOUNT:
            raise ChargeError(
                N_("charge.error.amount_positive"), code="invalid_request", field="amount"
            )
        return request.amount, None
    tariff = tariffs.get(conn, request.tariff)
    if tariff is None or not tariff.active:
        raise ChargeError(
            N_("charge.error.tariff"),
            code="invalid_request",
            field="tariff",
            tariff=repr(request.tariff),
        )
    return tariff.price, tariff.code


def _by_key(conn: Connection, request: ChargeRequest) -> Any:
    return conn.execute(
        _SELECT.add_columns(charges.c.customer_id).where(
            charges.c.client == request.client,
            charges.c.idempotency_key == request.idempotency_key,
        )
    ).first()


def _repeat(row: Any, request: ChargeRequest, customer_id: int) -> Charge:
    """A repeat of a charge already made under this key: the same answer, or a conflict.

    The same request means the same customer, report and description, and the same amount
    or the same tariff (whatever the tariff costs today)."""
    same = (
        row.customer_id == customer_id
        and row.tariff_code == request.tariff
        and (request.tariff is not None or row.amount == request.amount)
        and Report(row.report_id, row.state_body, row.form, row.period) == request.report
        and row.description == request.description
    )
    if not same:
        raise ChargeError(
            N_("charge.error.idempotency_conflict"),
            code="idempotency_conflict",
            field="idempotency_key",
            idempotency_key=repr(request.idempotency_key),
        )
    return _charge(row, replayed=True)


def _take(
    conn: Connection, charge_id: int, amount: int, account_id: int, *, payment_id: int | None
) -> int:
    """Post the charge (customer → revenue) and mark it charged; returns the new balance."""
    entry_id = open_entry(conn, kind="charge", description=f"Списание №{charge_id}: отчёт СОЧИ")
    balances = post(
        conn,
        entry_id=entry_id,
        transfers=[
            Transfer(
                debit=LedgerAccount(account_id),
                credit=system_account(conn, REVENUE),
                amount=amount,
            )
        ],
        slot_key=charge_id,
    )
    taken = conn.execute(
        _TAKE,
        {
            "b_charge": charge_id,
            "b_entry": entry_id,
            "b_now": datetime.now(UTC),
            "b_payment": payment_id,
        },
    )
    if taken.rowcount != 1:  # the balance row lock makes this impossible; refuse to guess
        raise RuntimeError(f"charge {charge_id} is no longer awaiting payment")
    return balances[account_id]


def settle_awaiting(
    conn: Connection, customer_id: int, account_id: int, balance: int, *, payment_id: int | None
) -> int:
    """Take the customer's waiting charges, oldest first, while the balance covers the next.

    Called in the transaction that credited the balance, which therefore holds the balance
    row's lock; `balance` is the balance after that credit. Returns the balance after the
    charges taken.
    """
    waiting = conn.execute(_AWAITING, {"b_customer": customer_id}).all()
    if not waiting:
        return balance
    for charge_id, amount in waiting:
        if amount > balance:
            break
        balance = _take(conn, charge_id, amount, account_id, payment_id=payment_id)
        charge = get(conn, charge_id)
        assert charge is not None
        _announce(conn, EventType.CHARGE_SETTLED, charge, customer_id, balance)
    return balance


# --- cancel and refund ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Owner:
    """The customer of a charge whose balance row this transaction has locked."""

    customer_id: int
    account_id: int
    balance: int


def _locked(conn: Connection, charge_id: int) -> tuple[Charge, _Owner]:
    """The charge, with its customer's balance row locked."""
    owner = conn.execute(
        select(charges.c.customer_id, customers.c.account_id)
        .join(customers, customers.c.id == charges.c.customer_id)
        .where(charges.c.id == charge_id)
    ).first()
    if owner is None:
        raise ChargeError(N_("charge.error.not_found"), code="charge_not_found", charge=charge_id)
    balance = _lock_balance(conn, owner.account_id)
    charge = get(conn, charge_id)
    assert charge is not None
    return charge, _Owner(owner.customer_id, owner.account_id, balance)


def cancel(conn: Connection, charge_id: int) -> Charge:
    """Cancel a charge that is still waiting; a cancelled one answers as it is."""
    charge, owner = _locked(conn, charge_id)
    if charge.status == "cancelled":
        return replace(charge, replayed=True)
    if charge.status != "awaiting_payment":
        raise ChargeError(N_("charge.error.not_awaiting"), code="charge_not_awaiting")
    conn.execute(
        update(charges)
        .where(charges.c.id == charge_id)
        .values(status="cancelled", closed_at=datetime.now(UTC))
    )
    cancelled = get(conn, charge_id)
    assert cancelled is not None
    _announce(conn, EventType.CHARGE_CANCELLED, cancelled, owner.customer_id, owner.balance)
    # The queue's head may have been this charge: the next ones may now fit.
    settle_awaiting(conn, owner.customer_id, owner.account_id, owner.balance, payment_id=None)
    return cancelled


def refund(conn: Connection, charge_id: int, reason: str) -> Charge:
    """Return a taken charge to the balance by a reversing entry; twice answers the same."""
    reason = reason.strip()
    if not reason:
        raise ChargeError(N_("charge.error.reason"), code="invalid_request", field="reason")
    charge, owner = _locked(conn, charge_id)
    if charge.status == "refunded":
        return replace(charge, replayed=True)
    if charge.status != "charged":
        raise ChargeError(N_("charge.error.not_charged"), code="charge_not_charged")
    entry_id = open_entry(
        conn,
        kind="charge_refund",
        description=f"Возврат списания №{charge_id}: {reason}"[:500],
    )
    balances = post(
        conn,
        entry_id=entry_id,
        transfers=[
            Transfer(
                debit=system_account(conn, REVENUE),
                credit=LedgerAccount(owner.account_id),
                amount=charge.amount,
            )
        ],
        slot_key=charge_id,
    )
    conn.execute(
        update(charges)
        .where(charges.c.id == charge_id, charges.c.status == "charged")
        .values(
            status="refunded",
            refund_entry_id=entry_id,
            refund_reason=reason[:1000],
            closed_at=datetime.now(UTC),
        )
    )
    refunded = get(conn, charge_id)
    assert refunded is not None
    balance = balances[owner.account_id]
    _announce(conn, EventType.CHARGE_REFUNDED, refunded, owner.customer_id, balance, reason=reason)
    settle_awaiting(conn, owner.customer_id, owner.account_id, balance, payment_id=None)
    return refunded


def _json_time(moment: datetime | None) -> str | None:
    # as the API writes times: ISO 8601, UTC as "Z"
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def snapshot(charge: Charge) -> dict[str, Any]:
    """What the audit log shows of a charge: the operator API's view of it (amount in som)."""
    return {
        "id": charge.id,
        "inn": charge.inn,
        "customer_name": charge.customer_name,
        "amount": format_amount(charge.amount),
        "tariff": charge.tariff,
        "report": {
            "report_id": charge.report.report_id,
            "state_body": charge.report.state_body,
            "form": charge.report.form,
            "period": charge.report.period,
        },
        "description": charge.description,
        "status": charge.status,
        "created_at": _json_time(charge.created_at),
        "settled_at": _json_time(charge.settled_at),
        "closed_at": _json_time(charge.closed_at),
        "payment_id": charge.settled_by_payment_id,
        "refund_reason": charge.refund_reason,
    }


def create_audited(
    conn: Connection, request: ChargeRequest, *, actor: str, address: str | None = None
) -> Charge:
    """`create`, and a `charge.create` audit line in the same transaction; a repeat of
    the same request answers the charge made the first time and writes nothing."""
    charge = create(conn, request)
    if not charge.replayed:
        audit.record(
            conn,
            actor=actor,
            action="charge.create",
            object_type="charge",
            object_id=charge.id,
            after=snapshot(charge),
            address=address,
        )
    return charge


def cancel_audited(
    conn: Connection, charge_id: int, *, actor: str, address: str | None = None
) -> Charge:
    """`cancel`, and a `charge.cancel` audit line in the same transaction; a repeat (the
    charge was cancelled already) answers it as it is and writes nothing. What the API and
    the CLI both call."""
    charge = cancel(conn, charge_id)
    if not charge.replayed:
        audit.record(
            conn,
            actor=actor,
            action="charge.cancel",
            object_type="charge",
            object_id=charge_id,
            before={"status": "awaiting_payment"},
            after={"status": charge.status},
            address=address,
        )
    return charge


def refund_audited(
    conn: Connection, charge_id: int, reason: str, *, actor: str, address: str | None = None
) -> Charge:
    """`refund`, and a `charge.refund` audit line (with the reason) in the same
    transaction; a repeat answers the refunded charge and writes nothing. What the API and
    the CLI both call."""
    charge = refund(conn, charge_id, reason)
    if not charge.replayed:
        audit.record(
            conn,
            actor=actor,
            action="charge.refund",
            object_type="charge",
            object_id=charge_id,
            before={"status": "charged"},
            after={"status": charge.status, "reason": charge.refund_reason},
            address=address,
        )
    return charge


@dataclass(frozen=True, slots=True)
class Awaiting:
    """A charge waiting for money, and the least top-up that releases it: a top-up takes
    the waiting charges oldest first while the balance covers the next (`settle_awaiting`),
    so this one is taken once the balance covers it and every older one."""

    charge: Charge
    missing: int  # tyiyn


def awaiting(conn: Connection, inn: str, balance: int, limit: int = 200) -> list[Awaiting]:
    """The customer's waiting charges, oldest first, each with what is still missing."""
    rows = conn.execute(
        _SELECT.where(customers.c.inn == inn, charges.c.status == "awaiting_payment")
        .order_by(charges.c.id)
        .limit(limit)
    )
    found, needed = [], 0
    for row in rows:
        charge = _charge(row)
        needed += charge.amount
        found.append(Awaiting(charge, max(0, needed - balance)))
    return found


def awaiting_total(conn: Connection, inn: str) -> tuple[int, int]:
    """How many charges of the customer wait, and their sum."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(charges.c.amount), 0))
        .select_from(charges.join(customers, customers.c.id == charges.c.customer_id))
        .where(customers.c.inn == inn, charges.c.status == "awaiting_payment")
    ).one()
    return int(row[0]), int(row[1])


def _announce(
    conn: Connection,
    kind: EventType,
    charge: Charge,
    customer_id: int,
    balance: int,
    reason: str | None = None,
) -> None:
    payload: dict[str, Any] = {
        "charge_id": charge.id,
        "inn": charge.inn,
        "customer_name": charge.customer_name,
        "amount": charge.amount,
        "status": charge.status,
        "report_id": charge.report.report_id,
        "state_body": charge.report.state_body,
        "form": charge.report.form,
        "period": charge.report.period,
        "description": charge.description,
        "created_at": charge.created_at,
        "settled_at": charge.settled_at,
        "payment_id": charge.settled_by_payment_id,
        "balance": balance,
    }
    if reason is not None:
        payload["reason"] = reason
    emit(
        conn, kind, ordering_key=customer_key(customer_id), payload=payload, customer_id=customer_id
    )


def statement_sources(conn: Connection, entry_ids: Iterable[int]) -> dict[int, LineSource]:
    """The charges and charge refunds among these journal entries, as a customer's
    statement shows them, by entry id (other entries are absent)."""
    ids = sorted(set(entry_ids))
    if not ids:
        return {}
    found: dict[int, LineSource] = {}
    row: Any
    for row in conn.execute(
        select(charges.c.entry_id, charges.c.id, charges.c.description).where(
            charges.c.entry_id.in_(ids)
        )
    ):
        found[row.entry_id] = LineSource("charge", row.id, text=row.description)
    for row in conn.execute(
        select(charges.c.refund_entry_id, charges.c.id, charges.c.refund_reason).where(
            charges.c.refund_entry_id.in_(ids)
        )
    ):
        found[row.refund_entry_id] = LineSource("charge_refund", row.id, text=row.refund_reason)
    return found
