"""The check and pay use cases: every rule about what an agent may do, in one place.

Each use case runs in one database transaction that also stores the request record, so a
payment, its journal entry, the balance (or the invoice's paid state) and the log of the
request that made it commit together or not at all. Exactly-once is the database's job:
the unique key (agent_id, txn_id) on `payments` decides which of several identical
concurrent requests pays; the others wait for it and answer from its row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from tolom.agents.service import GATEWAY, Agent
from tolom.billing import charges, orders
from tolom.db.engine import is_temporary
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
from tolom.identifiers import is_inn, is_invoice_number, txn_key
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
from tolom.payments.records import PaymentRecord
from tolom.payments.requestlog import Answer, Exchange, record
from tolom.timestamps import as_utc

log = logging.getLogger(__name__)

Render = Callable[[Any], Answer]

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
    )
    .outerjoin(manual_payments, manual_payments.c.payment_id == payments.c.id)
    .where(payments.c.agent_id == bindparam("agent_id"), payments.c.txn_id == bindparam("txn_id"))
)

_MARK_INVOICE_PAID = (
    update(invoices)
    .where(invoices.c.id == bindparam("invoice_id"), invoices.c.status == "open")
    .values(status="paid", paid_at=bindparam("now"), payment_id=bindparam("b_payment"))
)

TEMPORARY_MESSAGE = "Временная ошибка, повторите запрос позже"
TXN_YEARS = (2000, 2099)  # a txn_date outside these years is a malformed request


class _Undo(Exception):
    """Roll the transaction back and answer with `result`."""

    def __init__(self, result: PayResult) -> None:
        super().__init__(result.message)
        self.result = result


def account_format_ok(service: Service, account: str) -> bool:
    """Whether `account` is even shaped like this service's account."""
    return is_inn(account) if service is Service.SOCHI else is_invoice_number(account)


def payment_key(agent: Agent, txn_id: str) -> str:
    """The idempotency key under which a payment is stored and found again.

    An agent's txn_id is a number ("0090" and "90" are one transaction); a manual payment's
    reference is kept as the operator's system wrote it.
    """
    return txn_key(txn_id) if agent.kind == GATEWAY else txn_id


def _evaluate(
    conn: Connection, agent: Agent, service: Service, account: str, *, lock: bool
) -> tuple[CheckResult, Any]:
    """What a check says about this account, and the row it found (customer or invoice)."""
    limits = agent.services.get(service.value)
    if limits is None:
        return CheckResult(Outcome.FORBIDDEN, "Услуга недоступна для этого агента"), None
    if not account_format_ok(service, account):
        expected = "ИНН: 14 цифр" if service is Service.SOCHI else "номер счёта: 16 цифр"
        return CheckResult(
            Outcome.BAD_ACCOUNT, f"Неверный формат лицевого счёта ({expected})"
        ), None
    if service is Service.SOCHI:
        customer = conn.execute(_CUSTOMER_BY_INN, {"account": account}).first()
        if customer is None:
            return CheckResult(Outcome.NOT_FOUND, "Абонент с таким ИНН не найден"), None
        if customer.status != "active":
            return CheckResult(Outcome.INACTIVE, "Абонент заблокирован"), customer
        return (
            CheckResult(
                Outcome.OK,
                "OK",
                display_name=customer.name,
                min_amount=limits.min_amount,
                max_amount=limits.max_amount,
            ),
            customer,
        )
    query = _INVOICE_BY_NUMBER_LOCKED if lock else _INVOICE_BY_NUMBER
    invoice = conn.execute(query, {"account": account}).first()
    if invoice is None:
        return CheckResult(Outcome.NOT_FOUND, "Счёт на оплату не найден"), None
    if invoice.status == "cancelled":
        return CheckResult(Outcome.INACTIVE, "Счёт аннулирован"), invoice
    if invoice.status == "paid":
        return CheckResult(Outcome.ALREADY_PAID, "Счёт уже оплачен"), invoice
    if as_utc(invoice.expires_at) <= datetime.now(UTC):
        return CheckResult(Outcome.INACTIVE, "Срок оплаты счёта истёк"), invoice
    return (
        CheckResult(Outcome.OK, "OK", display_name=invoice.payer_name, amount_due=invoice.total),
        invoice,
    )


def check(
    engine: Engine,
    agent: Agent,
    service: Service,
    account: str,
    exchange: Exchange,
    render: Callable[[CheckResult], Answer],
) -> Answer:
    """Say whether `account` can be paid and who or what it is. Writes only the log record."""
    try:
        with engine.begin() as conn:
            result, _row = _evaluate(conn, agent, service, account, lock=False)
            answer = render(result)
            record(conn, exchange, answer)
            return answer
    except Exception as error:  # the agent gets "retry", never our traceback
        _log_failure("check", error)
        answer = render(CheckResult(Outcome.RETRY, TEMPORARY_MESSAGE))
        record_separately(engine, exchange, answer)
        return answer


def pay(
    engine: Engine,
    agent: Agent,
    request: PayRequest,
    exchange: Exchange,
    render: Callable[[PayResult], Answer],
    *,
    on_accept: Callable[[Connection, PayResult], None] | None = None,
) -> Answer:
    """Accept a payment exactly once per (agent, txn_id) and answer as the first time.

    Sets `exchange.txn_id` to the payment's key (`payment_key`) before rendering.

    `on_accept` runs in the payment's transaction when a new payment was accepted (not on
    a repeat), so what it writes (an audit line) commits with the payment or not at all.
    """
    request = replace(request, txn_id=payment_key(agent, request.txn_id))
    exchange.txn_id = request.txn_id
    if not TXN_YEARS[0] <= request.txn_date.year <= TXN_YEARS[1]:
        # Also keeps absurd dates (year 1) from overflowing in the UTC conversion below.
        result = PayResult(
            Outcome.MALFORMED,
            f"Неверный txn_date: год должен быть от {TXN_YEARS[0]} до {TXN_YEARS[1]}",
        )
    else:
        try:
            with engine.begin() as conn:
                result = _pay(conn, agent, request)
                if on_accept is not None and not result.replayed:
                    on_accept(conn, result)
                answer = render(result)
                record(conn, exchange, answer, payment_id=result.payment_id)
                return answer
        except _Undo as undo:
            result = undo.result
        except Exception as error:
            # Rolled back, so nothing moved: "retry" is safe, and a repeat will find the
            # payment if the commit did go through before the connection broke.
            _log_failure("pay", error)
            result = PayResult(Outcome.RETRY, TEMPORARY_MESSAGE)
    answer = render(result)
    record_separately(engine, exchange, answer, payment_id=result.payment_id)
    return answer


def _pay(conn: Connection, agent: Agent, request: PayRequest) -> PayResult:
    verdict, target = _evaluate(conn, agent, request.service, request.account, lock=True)
    refusal = verdict.outcome if verdict.outcome is not Outcome.OK else None
    message = verdict.message
    if refusal is None:
        limits = agent.services[request.service.value]
        low, high = (
            (verdict.amount_due, verdict.amount_due)
            if request.service is Service.EDS
            else (limits.min_amount, limits.max_amount)
        )
        assert low is not None and high is not None
        if request.amount < low:
            refusal = Outcome.TOO_SMALL
            message = f"Сумма меньше допустимой ({format_amount(low)})"
        elif request.amount > high:
            refusal = Outcome.TOO_LARGE
            message = f"Сумма больше допустимой ({format_amount(high)})"
    if refusal is not None:
        # A repeat of a pay that succeeded earlier gets its original answer even if the
        # account has since been blocked, the invoice paid or the limits changed.
        existing = conn.execute(
            _EXISTING_PAYMENT, {"agent_id": agent.id, "txn_id": request.txn_id}
        ).first()
        raise _Undo(_replay(existing, request) if existing else PayResult(refusal, message))

    assert target is not None
    business_date = request.txn_date.astimezone(agent.timezone).date()
    entry_id = open_entry(conn, kind="payment", description=_describe(agent, request))
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
        raise _Undo(_replay(existing, request))
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
            raise _Undo(PayResult(Outcome.ALREADY_PAID, "Счёт уже оплачен"))
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


def _replay(existing: Any, request: PayRequest) -> PayResult:
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
        return PayResult(
            Outcome.CONFLICT,
            f"txn_id {request.txn_id} уже использован с другим лицевым счётом или суммой"
            if request.manual is None
            else f"Ссылка {request.txn_id} уже использована для другого платежа "
            "(другие счёт, сумма или реквизиты)",
        )
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


def _describe(agent: Agent, request: PayRequest) -> str:
    what = "Пополнение баланса СОЧИ, ИНН" if request.service is Service.SOCHI else "Оплата счёта"
    if agent.kind == GATEWAY:
        return f"{what} {request.account}; агент {agent.code}, txn_id {request.txn_id}"
    return f"{what} {request.account}; {agent.name}, документ {request.txn_id}"


def _log_failure(what: str, error: BaseException) -> None:
    if isinstance(error, SQLAlchemyError) and is_temporary(error):
        log.warning("%s: temporary database failure: %s", what, error.__class__.__name__)
    else:
        log.exception("%s: unexpected failure, answered 'retry'", what)


def record_separately(
    engine: Engine, exchange: Exchange, answer: Answer, payment_id: int | None = None
) -> None:
    """Log a request outside a use case's transaction (refused early, or rolled back).

    Best effort: when the database is down the answer still goes out, and the failure is
    in the server log.
    """
    try:
        with engine.begin() as conn:
            record(conn, exchange, answer, payment_id=payment_id)
    except Exception as error:
        log.error(
            "could not record a gateway request (%s): %s",
            exchange.protocol,
            error.__class__.__name__,
        )


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
        payments.c.business_date,
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


def cancel(
    engine: Engine,
    agent: Agent,
    txn_id: str,
    reason: str,
    exchange: Exchange,
    render: Callable[[CancelResult], Answer],
) -> Answer:
    """An agent cancels its own payment, within its cancel window; logged like a pay."""
    key = payment_key(agent, txn_id)
    exchange.txn_id = key
    try:
        with engine.begin() as conn:
            where = (payments.c.agent_id == agent.id) & (payments.c.txn_id == key)
            result = _reverse(conn, where, reason, agent.actor, window=agent)
            result = replace(result, record=records.by_id(conn, result.payment_id or 0))
            answer = render(result)
            record(conn, exchange, answer, payment_id=result.payment_id)
            return answer
    except _UndoCancel as undo:
        result = undo.result
    except Exception as error:
        _log_failure("cancel", error)
        result = CancelResult(CancelOutcome.RETRY, TEMPORARY_MESSAGE)
    answer = render(result)
    record_separately(engine, exchange, answer, payment_id=result.payment_id)
    return answer


def find(
    engine: Engine,
    agent: Agent,
    txn_id: str,
    exchange: Exchange,
    render: Callable[[PaymentRecord | None], Answer],
) -> Answer:
    """An agent asks how its payment stands; the question is logged like the others.

    Raises on database trouble: the adapter answers "retry" and logs separately.
    """
    key = payment_key(agent, txn_id)
    exchange.txn_id = key
    with engine.begin() as conn:
        found = records.by_txn(conn, agent.id, key)
        answer = render(found)
        record(conn, exchange, answer, payment_id=found.id if found else None)
        return answer


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
        raise _UndoCancel(CancelResult(CancelOutcome.MALFORMED, "Укажите причину отмены"))
    payment = conn.execute(_PAYMENT_FOR_REVERSAL.where(where)).first()
    if payment is None:
        raise _UndoCancel(CancelResult(CancelOutcome.NOT_FOUND, "Платёж не найден"))
    if payment.status == "reversed":
        return CancelResult(CancelOutcome.OK, "Платёж отменён", payment.id, replayed=True)
    if window is not None:
        today = datetime.now(window.timezone).date()
        if (today - payment.business_date).days > window.cancel_window_days:
            raise _UndoCancel(
                CancelResult(
                    CancelOutcome.WINDOW_CLOSED,
                    "Срок отмены истёк: платёж можно отменить только в день его проведения"
                    if window.cancel_window_days == 0
                    else f"Срок отмены истёк ({window.cancel_window_days} дн. после дня платежа)",
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
                CancelResult(CancelOutcome.ALREADY_SERVED, "Счёт уже не связан с этим платежом")
            )
        source = system_account(conn, "revenue:eds")
    entry_id = open_entry(
        conn,
        kind="reversal",
        description=f"Отмена платежа №{payment.id} ({payment.account}): {reason}"[:500],
    )
    try:
        post(
            conn,
            entry_id=entry_id,
            transfers=[Transfer(debit=source, credit=clearing, amount=payment.amount)],
            slot_key=payment.id,
        )
    except InsufficientFunds as error:
        raise _UndoCancel(
            CancelResult(
                CancelOutcome.BALANCE_SPENT,
                "Отмена невозможна: на балансе абонента уже нет этой суммы; обратитесь к оператору",
                payment.id,
            )
        ) from error
    conn.execute(
        insert(payment_reversals).values(
            payment_id=payment.id, entry_id=entry_id, reason=reason[:1000], requested_by=actor
        )
    )
    conn.execute(update(payments).where(payments.c.id == payment.id).values(status="reversed"))
    if payment.service == Service.SOCHI.value:
        key = customer_key(payment.customer_id)
    else:
        inn = conn.execute(
            select(invoices.c.inn).where(invoices.c.id == payment.invoice_id)
        ).scalar_one()
        key = inn_key(inn, payment.account)
    emit(
        conn,
        EventType.PAYMENT_REVERSED,
        ordering_key=key,
        customer_id=payment.customer_id,
        payload={
            "payment_id": payment.id,
            "service": payment.service,
            "account": payment.account,
            "amount": payment.amount,
            "reason": reason,
            "requested_by": actor,
        },
    )
    return CancelResult(CancelOutcome.OK, "Платёж отменён", payment.id)
