"""The check, pay and cancel use cases: every rule about what an agent may do, in one place.

Each use case takes plain values and a connection whose transaction the caller owns (the
gateway step, the cash desk, reconciliation), decides, writes, and returns a domain result
(`CheckResult`, `PayResult`, `CancelResult`). It never renders an answer and never logs a
request: the caller turns the result into its protocol's answer and writes the request
record in the same transaction, so a payment, its journal entry, the balance (or the
invoice's paid state), its event and the record of the request that made it commit
together or not at all.

Exactly-once is the database's job: the unique key (agent_id, txn_id) on `payments`
decides which of several identical concurrent requests pays; the others wait for it and
answer from its row.

On PostgreSQL, gateway top-ups (`sochi`) take a faster road with the same rules:
`payments.pgbatch` runs many of them in one server-side call (see its docstring). Everything
here is the reference implementation that SQLite, invoices and operators' payments use; the
tests run every rule on both databases and expect identical answers.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tolom.agents.service import GATEWAY, Agent, Limits
from tolom.billing import charges, orders
from tolom.db.schema import (
    accounts,
    agents,
    customers,
    invoices,
    manual_payments,
    payment_reversals,
    payments,
)
from tolom.events.outbox import EventType, customer_key, emit, inn_key
from tolom.identifiers import is_inn, is_invoice_number, is_invoice_number_shape, txn_key
from tolom.ledger.accounts import LedgerAccount, system_account
from tolom.ledger.posting import InsufficientFunds, Transfer, open_entry, post
from tolom.money import format_amount
from tolom.payments import records
from tolom.payments.model import (
    CancelOutcome,
    CancelResult,
    CheckResult,
    Outcome,
    PayRequest,
    PayResult,
    Service,
)
from tolom.payments.records import PaymentRecord, Reversal
from tolom.payments.wording import t
from tolom.texts import N_
from tolom.timestamps import as_utc

log = logging.getLogger(__name__)

TEMPORARY_MESSAGE = t("agent.retry")
TXN_YEARS = (2000, 2099)  # a txn_date outside these years is a malformed request
# How far ahead of our clock a txn_date may be (the payer's clock may run a little fast).
# Further ahead is refused: a payment dated in the future would sit outside the day's
# reconciliation of the day it really happened.
CLOCK_SKEW = timedelta(minutes=5)


def txn_date_problem(moment: datetime, now: datetime) -> str | None:
    """Why a payment's moment (an agent's txn_date, an operator's received_at) is not
    plausible, in Russian, or None: the one place this rule lives. `moment` is aware.

    The year bound also keeps absurd dates (year 1) from overflowing in a UTC conversion.
    """
    found = txn_date_refusal(moment, now)
    return None if found is None else t(found[0], **found[1])


def txn_date_refusal(moment: datetime, now: datetime) -> tuple[str, dict[str, int]] | None:
    """`txn_date_problem` as its catalogue key and values, for a refusal worded later."""
    low, high = TXN_YEARS
    if not low <= moment.year <= high:
        return N_("agent.txn_date.year"), {"low": low, "high": high}
    if moment > now + CLOCK_SKEW:
        return N_("agent.txn_date.ahead"), {"minutes": CLOCK_SKEW.seconds // 60}
    return None


# What each refusal says (catalogue keys, `payments.wording`); the adapters show it (OSMP
# <comment>, REST problem detail).
_MESSAGES: dict[Outcome, str] = {
    Outcome.OK: N_("agent.ok"),
    Outcome.RETRY: N_("agent.retry"),
    Outcome.PENDING: N_("agent.pending"),
    Outcome.FORBIDDEN: N_("agent.forbidden"),
    Outcome.ALREADY_PAID: N_("agent.already_paid"),
}
_NOT_FOUND = {
    Service.SOCHI: N_("agent.not_found.sochi"),
    Service.EDS: N_("agent.not_found.eds"),
}
_BAD_ACCOUNT = {
    Service.SOCHI: N_("agent.bad_account.sochi"),
    Service.EDS: N_("agent.bad_account.eds"),
}
# 16 digits whose Luhn check digit does not match: the right length, a digit typed wrong.
MISTYPED_INVOICE_NUMBER = N_("agent.bad_account.mistyped")

_CUSTOMER_BY_INN = select(
    customers.c.id, customers.c.name, customers.c.status, customers.c.account_id
).where(customers.c.inn == bindparam("account"))

_INVOICE_COLUMNS = (
    invoices.c.id,
    invoices.c.inn,
    invoices.c.payer_name,
    invoices.c.total,
    invoices.c.status,
    invoices.c.expires_at,
)
_INVOICE_BY_NUMBER = select(*_INVOICE_COLUMNS).where(invoices.c.number == bindparam("account"))
_INVOICE_BY_NUMBER_LOCKED = _INVOICE_BY_NUMBER.with_for_update()

_EXISTING_PAYMENT = (
    select(
        payments.c.id,
        payments.c.service,
        payments.c.account,
        payments.c.amount,
        payments.c.status,
        payments.c.txn_date,
        payments.c.business_date,
        payments.c.created_at,
        manual_payments.c.payment_code,
        manual_payments.c.bank_reference,
        manual_payments.c.payer,
        manual_payments.c.note,
        payment_reversals.c.reason,
        payment_reversals.c.requested_by,
        payment_reversals.c.created_at.label("reversed_at"),
        payment_reversals.c.entry_id.label("reversal_entry_id"),
    )
    .outerjoin(manual_payments, manual_payments.c.payment_id == payments.c.id)
    .outerjoin(payment_reversals, payment_reversals.c.payment_id == payments.c.id)
    .where(payments.c.agent_id == bindparam("agent_id"), payments.c.txn_id == bindparam("txn_id"))
)

_MARK_INVOICE_PAID = (
    update(invoices)
    .where(invoices.c.id == bindparam("invoice_id"), invoices.c.status == "open")
    .values(status="paid", paid_at=bindparam("now"), payment_id=bindparam("b_payment"))
)


# --- the rules that need no database ----------------------------------------------------


def account_format_ok(service: Service, account: str) -> bool:
    """Whether `account` is even shaped like this service's account."""
    return is_inn(account) if service is Service.SOCHI else is_invoice_number(account)


def is_mistyped(service: Service, account: str) -> bool:
    """An invoice number of the right length whose Luhn check digit does not match: a digit
    typed wrong, told apart from something that is no invoice number at all."""
    return (
        service is Service.EDS
        and is_invoice_number_shape(account)
        and not is_invoice_number(account)
    )


def payment_key(agent: Agent, txn_id: str) -> str:
    """The idempotency key under which a payment is stored and found again.

    An agent's txn_id is a number ("0090" and "90" are one transaction); a manual payment's
    reference is kept as the operator's system wrote it.
    """
    return txn_key(txn_id) if agent.kind == GATEWAY else txn_id


def refusal(
    outcome: Outcome,
    service: Service | None = None,
    *,
    limit: int | None = None,
    account: str | None = None,
) -> CheckResult:
    """A refusal with its message: the one place where refusals are worded. `service`
    names the account (not found, bad format); `limit` the amount (too small, too large);
    `account`, the refused account, tells a mistyped invoice number (only its check digit
    is wrong) from a wrong format."""
    if outcome is Outcome.NOT_FOUND:
        assert service is not None
        message = t(_NOT_FOUND[service])
    elif outcome is Outcome.BAD_ACCOUNT:
        assert service is not None
        if account is not None and is_mistyped(service, account):
            message = t(MISTYPED_INVOICE_NUMBER)
        else:
            message = t(_BAD_ACCOUNT[service])
    elif outcome is Outcome.TOO_SMALL:
        message = t("agent.too_small", limit=format_amount(limit or 0))
    elif outcome is Outcome.TOO_LARGE:
        message = t("agent.too_large", limit=format_amount(limit or 0))
    else:
        message = t(_MESSAGES[outcome])
    return CheckResult(outcome, message)


def inactive(reason: str) -> CheckResult:
    """Result 79: the account exists but cannot be paid now (`reason`: a catalogue key,
    one of the three below)."""
    return CheckResult(Outcome.INACTIVE, t(reason))


CUSTOMER_BLOCKED = N_("agent.inactive.blocked")
INVOICE_CANCELLED = N_("agent.inactive.cancelled")
INVOICE_EXPIRED = N_("agent.inactive.expired")


def precheck(agent: Agent, service: Service, account: str) -> CheckResult | None:
    """The refusal that needs no lookup (service not allowed, malformed account), or None."""
    if service.value not in agent.services:
        return refusal(Outcome.FORBIDDEN, service)
    if not account_format_ok(service, account):
        return refusal(Outcome.BAD_ACCOUNT, service, account=account)
    return None


def prepare_pay(agent: Agent, request: PayRequest) -> PayRequest | PayResult:
    """The request under its payment key, or the refusal that needs no database."""
    request = replace(request, txn_id=payment_key(agent, request.txn_id))
    problem = txn_date_problem(request.txn_date, datetime.now(UTC))
    if problem is not None:
        return PayResult(Outcome.MALFORMED, t("agent.bad_txn_date", problem=problem))
    early = precheck(agent, request.service, request.account)
    return as_pay(early) if early is not None else request


def judge_customer(row: Any, limits: Limits) -> CheckResult:
    """What a check says of a customer row (None: no such INN)."""
    standing = customer_standing(row)
    if standing is Standing.NOT_FOUND:
        return refusal(Outcome.NOT_FOUND, Service.SOCHI)
    if standing is Standing.BLOCKED:
        return inactive(CUSTOMER_BLOCKED)
    return CheckResult(
        Outcome.OK,
        "OK",
        display_name=row.name,
        min_amount=limits.min_amount,
        max_amount=limits.max_amount,
    )


def judge_invoice(row: Any) -> CheckResult:
    """What a check says of an invoice row (None: no such number)."""
    standing = invoice_standing(row, datetime.now(UTC))
    if standing is Standing.NOT_FOUND:
        return refusal(Outcome.NOT_FOUND, Service.EDS)
    if standing is Standing.CANCELLED:
        return inactive(INVOICE_CANCELLED)
    if standing is Standing.PAID:
        return refusal(Outcome.ALREADY_PAID, Service.EDS)
    if standing is Standing.EXPIRED:
        return inactive(INVOICE_EXPIRED)
    return CheckResult(Outcome.OK, "OK", display_name=row.payer_name, amount_due=row.total)


# --- payability: the same judgement, for a customer who is about to pay -------------------


class Standing(enum.StrEnum):
    """Whether an account can be paid now, in words a customer may be told: the reasons
    `judge_customer`, `judge_invoice` and `refusal` word for agents, without who it is."""

    PAYABLE = "payable"
    BAD_FORMAT = "bad_format"  # not shaped like the service's account
    MISTYPED = "mistyped"  # 16 digits, the Luhn check digit wrong
    NOT_FOUND = "not_found"
    BLOCKED = "blocked"  # a customer who may not be topped up
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Payability:
    """`payability`'s verdict. It never names the customer nor shows a balance: whoever
    knows the account may read it. An invoice's amount and due date are printed on the
    invoice itself, so a payable invoice's verdict carries them."""

    service: Service
    standing: Standing
    amount_due: int | None = None  # eds, payable: the invoice's total, in tyiyn
    pay_by: datetime | None = None  # eds, payable: when the invoice expires (UTC)

    @property
    def payable(self) -> bool:
        return self.standing is Standing.PAYABLE


def customer_standing(row: Any) -> Standing:
    """Whether a customer row (None: no such INN) may be topped up."""
    if row is None:
        return Standing.NOT_FOUND
    return Standing.PAYABLE if row.status == "active" else Standing.BLOCKED


def invoice_standing(row: Any, now: datetime) -> Standing:
    """Whether an invoice row (None: no such number) may be paid at `now`."""
    if row is None:
        return Standing.NOT_FOUND
    if row.status == "cancelled":
        return Standing.CANCELLED
    if row.status == "paid":
        return Standing.PAID
    return Standing.EXPIRED if as_utc(row.expires_at) <= now else Standing.PAYABLE


def payability(
    conn: Connection, service: Service, account: str, now: datetime | None = None
) -> Payability:
    """Whether `account` can be paid for `service` now, by any agent that offers the
    service: the check's rules without an agent. Writes nothing."""
    if not account_format_ok(service, account):
        mistyped = is_mistyped(service, account)
        return Payability(service, Standing.MISTYPED if mistyped else Standing.BAD_FORMAT)
    if service is Service.SOCHI:
        customer = conn.execute(_CUSTOMER_BY_INN, {"account": account}).first()
        return Payability(service, customer_standing(customer))
    invoice = conn.execute(_INVOICE_BY_NUMBER, {"account": account}).first()
    standing = invoice_standing(invoice, now or datetime.now(UTC))
    if standing is not Standing.PAYABLE or invoice is None:
        return Payability(service, standing)
    return Payability(service, standing, invoice.total, as_utc(invoice.expires_at))


def judge_amount(verdict: CheckResult, amount: int) -> CheckResult:
    """A payable account's verdict on an amount: too small, too large, or as it was."""
    low = verdict.amount_due if verdict.amount_due is not None else verdict.min_amount
    high = verdict.amount_due if verdict.amount_due is not None else verdict.max_amount
    assert low is not None and high is not None
    if amount < low:
        return refusal(Outcome.TOO_SMALL, limit=low)
    if amount > high:
        return refusal(Outcome.TOO_LARGE, limit=high)
    return verdict


def as_pay(verdict: CheckResult) -> PayResult:
    return PayResult(verdict.outcome, verdict.message)


def replay(existing: Any, request: PayRequest) -> PayResult:
    """The answer to a repeat: the original payment, or a conflict if anything differs."""
    same = (
        existing.service == request.service.value
        and existing.account == request.account
        and existing.amount == request.amount
    )
    if request.manual is not None:  # an operator's details are part of what was recorded
        same = same and (
            existing.payment_code,
            existing.bank_reference,
            existing.payer,
            existing.note,
        ) == (
            request.manual.payment_code,
            request.manual.bank_reference,
            request.manual.payer,
            request.manual.note,
        )
    if not same:
        return conflict(request)
    return PayResult(
        Outcome.OK,
        "OK",
        payment_id=existing.id,
        amount=existing.amount,
        replayed=True,
        status=existing.status,
        txn_date=as_utc(existing.txn_date),
        business_date=existing.business_date,
        created_at=as_utc(existing.created_at),
        reversal=Reversal(
            existing.reason,
            existing.requested_by,
            as_utc(existing.reversed_at),
            existing.reversal_entry_id,
        )
        if existing.reason is not None
        else None,
    )


def conflict(request: PayRequest) -> PayResult:
    """Result 300: this txn_id (or reference) was used for a different payment."""
    return PayResult(
        Outcome.CONFLICT,
        t("agent.conflict.txn_id", txn_id=request.txn_id)
        if request.manual is None
        else t("agent.conflict.reference", txn_id=request.txn_id),
    )


def describe(agent: Agent, request: PayRequest) -> str:
    """The journal entry's description of a payment."""
    what = "Пополнение баланса СОЧИ, ИНН" if request.service is Service.SOCHI else "Оплата счёта"
    if agent.kind == GATEWAY:
        return f"{what} {request.account}; агент {agent.code}, txn_id {request.txn_id}"
    return f"{what} {request.account}; {agent.name}, документ {request.txn_id}"


# --- check --------------------------------------------------------------------------------


def check(conn: Connection, agent: Agent, service: Service, account: str) -> CheckResult:
    """Whether `account` can be paid and who or what it is. Writes nothing."""
    return _evaluate(conn, agent, service, account, lock=False)[0]


def _evaluate(
    conn: Connection, agent: Agent, service: Service, account: str, *, lock: bool
) -> tuple[CheckResult, Any]:
    """What a check says about this account, and the row it found (customer or invoice)."""
    early = precheck(agent, service, account)
    if early is not None:
        return early, None
    if service is Service.SOCHI:
        customer = conn.execute(_CUSTOMER_BY_INN, {"account": account}).first()
        return judge_customer(customer, agent.services[service.value]), customer
    query = _INVOICE_BY_NUMBER_LOCKED if lock else _INVOICE_BY_NUMBER
    invoice = conn.execute(query, {"account": account}).first()
    return judge_invoice(invoice), invoice


# --- pay ------------------------------------------------------------------------------------


class _Undo(Exception):
    """Roll the payment's savepoint back and answer with `result`."""

    def __init__(self, result: PayResult) -> None:
        super().__init__(result.message)
        self.result = result


def pay(
    conn: Connection,
    agent: Agent,
    request: PayRequest,
    *,
    on_accept: Callable[[Connection, PayResult], None] | None = None,
) -> PayResult:
    """Accept a payment exactly once per (agent, txn_id) and answer as the first time.

    Runs in the caller's transaction, inside a savepoint of its own: a refusal leaves
    nothing behind, and the caller still writes its request record and commits. Database
    errors propagate (the caller answers "retry" after rolling back). `on_accept` runs in
    the same transaction when a new payment was accepted (not on a repeat), so what it
    writes (an audit line) commits with the payment or not at all.
    """
    prepared = prepare_pay(agent, request)
    if isinstance(prepared, PayResult):
        return prepared
    try:
        with conn.begin_nested():
            result = _pay(conn, agent, prepared)
            if on_accept is not None and not result.replayed:
                on_accept(conn, result)
            return result
    except _Undo as undo:
        return undo.result


def _pay(conn: Connection, agent: Agent, request: PayRequest) -> PayResult:
    verdict, target = _evaluate(conn, agent, request.service, request.account, lock=True)
    if verdict.outcome is Outcome.OK:
        verdict = judge_amount(verdict, request.amount)
    if verdict.outcome is not Outcome.OK:
        # A repeat of a pay that succeeded earlier gets its original answer even if the
        # account has since been blocked, the invoice paid or the limits changed.
        existing = conn.execute(
            _EXISTING_PAYMENT, {"agent_id": agent.id, "txn_id": request.txn_id}
        ).first()
        raise _Undo(replay(existing, request) if existing else as_pay(verdict))

    assert target is not None
    business_date = request.txn_date.astimezone(agent.timezone).date()
    entry_id = open_entry(conn, kind="payment", description=describe(agent, request))
    inserted = conn.execute(
        _insert_payment_once(conn),
        {
            "agent_id": agent.id,
            "txn_id": request.txn_id,
            "service": request.service.value,
            "account": request.account,
            "amount": request.amount,
            "customer_id": target.id if request.service is Service.SOCHI else None,
            "invoice_id": target.id if request.service is Service.EDS else None,
            "entry_id": entry_id,
            "txn_date_raw": request.txn_date_raw[:40],
            "txn_date": request.txn_date.astimezone(UTC),
            "business_date": business_date,
        },
    ).first()
    if inserted is None:
        # Another request with this txn_id committed first (we waited for it on the
        # unique index): answer from its row and roll our writes back.
        existing = conn.execute(
            _EXISTING_PAYMENT, {"agent_id": agent.id, "txn_id": request.txn_id}
        ).one()
        raise _Undo(replay(existing, request))
    payment_id = inserted.id

    if request.service is Service.SOCHI:
        credit = LedgerAccount(target.account_id)
    else:
        credit = system_account(conn, "revenue:eds")
        paid = conn.execute(
            _MARK_INVOICE_PAID,
            {"invoice_id": target.id, "now": datetime.now(UTC), "b_payment": payment_id},
        )
        if paid.rowcount != 1:  # cannot happen under the row lock; refuse rather than guess
            raise _Undo(as_pay(refusal(Outcome.ALREADY_PAID, Service.EDS)))
    if request.manual is not None:
        conn.execute(
            insert(manual_payments).values(payment_id=payment_id, **asdict(request.manual))
        )
    balances = post(
        conn,
        entry_id=entry_id,
        transfers=[Transfer(debit=agent.clearing_account, credit=credit, amount=request.amount)],
        slot_key=payment_id,
    )
    result = PayResult(
        Outcome.OK,
        "OK",
        payment_id=payment_id,
        amount=request.amount,
        txn_date=request.txn_date.astimezone(UTC),
        business_date=business_date,
        created_at=as_utc(inserted.created_at),
    )
    # Events in the order things happened: the payment, then what it caused.
    if request.service is Service.SOCHI:
        credited = balances[target.account_id]
        _announce_payment(conn, agent, request, result, target, balance=credited)
        # The top-up releases the reports waiting for it, in this same transaction.
        charges.settle_awaiting(conn, target.id, target.account_id, credited, payment_id=payment_id)
    else:
        _announce_payment(conn, agent, request, result, target, balance=None)
        # One signature order per unit bought, and the invoice.paid event, with the payment.
        orders.create_for_payment(conn, target.id, payment_id)
    return result


def _announce_payment(
    conn: Connection,
    agent: Agent,
    request: PayRequest,
    result: PayResult,
    target: Any,
    *,
    balance: int | None,
) -> None:
    """Emit payment.accepted: the customer is told of a top-up, other systems of both."""
    sochi = request.service is Service.SOCHI
    emit(
        conn,
        EventType.PAYMENT_ACCEPTED,
        ordering_key=customer_key(target.id) if sochi else inn_key(target.inn, request.account),
        customer_id=target.id if sochi else None,
        payload={
            "payment_id": result.payment_id,
            "service": request.service.value,
            "account": request.account,
            "amount": request.amount,
            "agent": agent.code,
            "txn_id": request.txn_id,
            "business_date": result.business_date,
            "created_at": result.created_at,
            "inn": request.account if sochi else target.inn,
            "customer_name": target.name if sochi else None,
            "invoice_number": None if sochi else request.account,
            "balance": balance,
        },
    )


_PAYMENT_COLUMNS = (
    "agent_id",
    "txn_id",
    "service",
    "account",
    "amount",
    "customer_id",
    "invoice_id",
    "entry_id",
    "txn_date_raw",
    "txn_date",
    "business_date",
)


def _build_insert_payment_once(dialect: Any) -> Any:
    return (
        dialect.insert(payments)
        .values({c: bindparam(c) for c in _PAYMENT_COLUMNS})
        .on_conflict_do_nothing(index_elements=["agent_id", "txn_id"])
        .returning(payments.c.id, payments.c.created_at)
    )


# INSERT ... ON CONFLICT (agent_id, txn_id) DO NOTHING RETURNING id: the statement that
# makes pay exactly-once. Both dialects spell it the same; SQLAlchemy wants each's own.
_INSERT_PAYMENT_ONCE = {
    "postgresql": _build_insert_payment_once(postgresql),
    "sqlite": _build_insert_payment_once(sqlite),
}


def _insert_payment_once(conn: Connection) -> Any:
    return _INSERT_PAYMENT_ONCE[conn.dialect.name]


# --- status ---------------------------------------------------------------------------------


def find(conn: Connection, agent: Agent, txn_id: str) -> PaymentRecord | None:
    """An agent's payment by its txn_id, as it stands now."""
    return records.by_txn(conn, agent.id, payment_key(agent, txn_id))


# --- cancellation (reversal) ------------------------------------------------------------

_PAYMENT_FOR_REVERSAL = (
    select(
        payments.c.id,
        payments.c.agent_id,
        payments.c.service,
        payments.c.account,
        payments.c.amount,
        payments.c.status,
        payments.c.customer_id,
        payments.c.invoice_id,
        payments.c.created_at,
        payments.c.txn_id,
        agents.c.clearing_account_id,
        accounts.c.slots.label("clearing_slots"),
    )
    .join(agents, agents.c.id == payments.c.agent_id)
    .join(accounts, accounts.c.id == agents.c.clearing_account_id)
    .with_for_update(of=payments)
)

_REOPEN_INVOICE = (
    update(invoices)
    .where(
        invoices.c.id == bindparam("invoice_id"), invoices.c.payment_id == bindparam("b_payment")
    )
    .values(status="open", paid_at=None, payment_id=None)
)


def cancel(conn: Connection, agent: Agent, txn_id: str, reason: str) -> CancelResult:
    """An agent cancels its own payment, within its cancel window.

    Runs in the caller's transaction inside a savepoint: a refusal leaves nothing behind.
    """
    key = payment_key(agent, txn_id)
    where = (payments.c.agent_id == agent.id) & (payments.c.txn_id == key)
    try:
        with conn.begin_nested():
            result = _reverse(conn, where, reason, agent.actor, window=agent)
    except _UndoCancel as undo:
        return undo.result
    return replace(result, record=records.by_id(conn, result.payment_id or 0))


def reverse(conn: Connection, payment_id: int, reason: str, actor: str) -> CancelResult:
    """An operator reverses any payment, at any time, in the caller's transaction.

    No cancel window applies; the balance and delivery rules do. Raises nothing for a
    refusal: the result says why, and the caller must roll back unless it is OK.
    """
    try:
        with conn.begin_nested():
            return _reverse(conn, payments.c.id == payment_id, reason, actor, window=None)
    except _UndoCancel as undo:
        return undo.result


class _UndoCancel(Exception):
    def __init__(self, result: CancelResult) -> None:
        super().__init__(result.message)
        self.result = result


def _reverse(
    conn: Connection, where: Any, reason: str, actor: str, *, window: Agent | None
) -> CancelResult:
    """Reverse one payment with a new journal entry; a second call answers like the first.

    The payment row is locked first, so concurrent cancels of one payment run one after
    the other and the later one finds it reversed. The UNIQUE key on
    `payment_reversals.payment_id` backs this up in the database.
    """
    reason = reason.strip()
    if not reason:
        raise _UndoCancel(CancelResult(CancelOutcome.MALFORMED, t("agent.cancel.no_reason")))
    payment = conn.execute(_PAYMENT_FOR_REVERSAL.where(where)).first()
    if payment is None:
        raise _UndoCancel(CancelResult(CancelOutcome.NOT_FOUND, t("agent.cancel.not_found")))
    if payment.status == "reversed":
        return CancelResult(CancelOutcome.OK, t("agent.cancel.done"), payment.id, replayed=True)
    if window is not None:
        # Counted from the day Tolom accepted the payment, in the agent's zone: never from
        # the txn_date the agent sent, which is theirs to choose.
        today = datetime.now(window.timezone).date()
        accepted = as_utc(payment.created_at).astimezone(window.timezone).date()
        if (today - accepted).days > window.cancel_window_days:
            raise _UndoCancel(
                CancelResult(
                    CancelOutcome.WINDOW_CLOSED,
                    t("agent.cancel.window_same_day")
                    if window.cancel_window_days == 0
                    else t("agent.cancel.window_days", days=window.cancel_window_days),
                    payment.id,
                )
            )
    clearing = LedgerAccount(payment.clearing_account_id, payment.clearing_slots)
    if payment.service == Service.SOCHI.value:
        account_id = conn.execute(
            select(customers.c.account_id).where(customers.c.id == payment.customer_id)
        ).scalar_one()
        source = LedgerAccount(account_id)
    else:
        # The invoice's orders are cancelled with it; refused once production has started.
        try:
            orders.cancel_for_reversal(conn, payment.invoice_id, reason)
        except orders.OrderStateError as error:
            raise _UndoCancel(
                CancelResult(CancelOutcome.ALREADY_SERVED, str(error), payment.id)
            ) from error
        reopened = conn.execute(
            _REOPEN_INVOICE, {"invoice_id": payment.invoice_id, "b_payment": payment.id}
        )
        if reopened.rowcount != 1:
            raise _UndoCancel(
                CancelResult(CancelOutcome.ALREADY_SERVED, t("agent.cancel.unlinked"))
            )
        source = system_account(conn, "revenue:eds")
    entry_id = open_entry(
        conn,
        kind="reversal",
        description=f"Отмена платежа №{payment.id} ({payment.account}): {reason}"[:500],
    )
    try:
        balances = post(
            conn,
            entry_id=entry_id,
            transfers=[Transfer(debit=source, credit=clearing, amount=payment.amount)],
            slot_key=payment.id,
        )
    except InsufficientFunds as error:
        raise _UndoCancel(
            CancelResult(
                CancelOutcome.BALANCE_SPENT,
                t("agent.cancel.balance_spent"),
                payment.id,
            )
        ) from error
    conn.execute(
        insert(payment_reversals).values(
            payment_id=payment.id, entry_id=entry_id, reason=reason[:1000], requested_by=actor
        )
    )
    conn.execute(update(payments).where(payments.c.id == payment.id).values(status="reversed"))
    _announce_reversal(conn, payment, reason, actor, balances)
    return CancelResult(CancelOutcome.OK, t("agent.cancel.done"), payment.id)


def _announce_reversal(
    conn: Connection, payment: Any, reason: str, actor: str, balances: dict[int, int]
) -> None:
    """Emit payment.reversed: other systems learn of it, and the customer who was told of
    the payment (a top-up's, or the one with the paid invoice's INN) is told it was undone."""
    customer: Any
    if payment.service == Service.SOCHI.value:
        customer = conn.execute(
            select(customers.c.id, customers.c.name, customers.c.account_id).where(
                customers.c.id == payment.customer_id
            )
        ).one()
        inn: str | None = payment.account
        key = customer_key(customer.id)
        balance = balances.get(customer.account_id)
    else:
        inn = conn.execute(
            select(invoices.c.inn).where(invoices.c.id == payment.invoice_id)
        ).scalar_one()
        key = inn_key(inn, payment.account)
        customer = conn.execute(
            select(customers.c.id, customers.c.name).where(customers.c.inn == inn)
        ).first()
        balance = None
    sochi = payment.service == Service.SOCHI.value
    emit(
        conn,
        EventType.PAYMENT_REVERSED,
        ordering_key=key,
        customer_id=customer.id if customer is not None else None,
        payload={
            "payment_id": payment.id,
            "service": payment.service,
            "account": payment.account,
            "amount": payment.amount,
            "reason": reason,
            "requested_by": actor,
            "inn": inn,
            "customer_name": customer.name if sochi else None,
            "invoice_number": None if sochi else payment.account,
            "txn_id": payment.txn_id,
            "created_at": as_utc(payment.created_at),
            "balance": balance,
        },
    )
