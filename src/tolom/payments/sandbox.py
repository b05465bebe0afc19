"""The agent sandbox: what a sandbox agent's check, pay, cancel and status answer.

A sandbox agent (`agents.sandbox`) uses the same URLs, protocols, signing and answers as
a real one, so its software goes live by changing only its credentials. Its requests are
turned here, by the gateway step, before any real table is read or written and before the
group-commit and PostgreSQL batch roads: this module reads no customer or invoice and
writes no payment, journal entry or balance. Its accepted pays live in `sandbox_payments`
(exactly once per (agent, txn_id), like real ones), its retry counters in
`sandbox_attempts`; both are emptied nightly and by `tolom sandbox reset`.

Events: an accepted pay and a cancel emit what a real one would (payment.accepted, for an
invoice also invoice.paid; payment.reversed), once, marked sandbox (`events.outbox.emit`):
they go only to the webhook endpoints marked for the sandbox, never to a customer. The
events stay (the outbox is append-only) when the sandbox is reset.

It answers from `MAGIC`, the magic INNs and invoice numbers that the agent guides'
"Sandbox" sections list (keep them in step; the tests read this table and a few literals).
Any other well-formed account is "not found" (OSMP 5) for a sandbox agent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tolom import audit
from tolom.agents.service import Agent
from tolom.db.schema import agents, sandbox_attempts, sandbox_payments, sandbox_state
from tolom.events.outbox import EventType, emit, inn_key
from tolom.payments import service
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
from tolom.settings import Settings
from tolom.timestamps import HOME_ZONE, as_utc

log = logging.getLogger("tolom.sandbox")

RETRY_ATTEMPTS = 2
"""The "retry, then OK" account answers 1 to the first two pays of a txn_id, OK to the third."""
PENDING_ATTEMPTS = 2
"""The "not finished, then OK" account answers 90 to the first two pays of a txn_id."""

DISPLAY_NAME = "Тестовый абонент"  # data: the name a check shows, like a customer's name
INVOICE_LINE = "Тестовый счёт"  # data: the one line of the magic invoice's invoice.paid


@dataclass(frozen=True, slots=True)
class MagicAccount:
    """One magic account and what it always answers (for a sandbox agent only).

    `check` and `pay` are the outcomes for a pay within the agent's limits (for the open
    invoice: of exactly its amount); the first `retries` pays of a txn_id are answered
    `interim` (RETRY, OSMP 1; or PENDING, OSMP 90); `slow` answers after
    `Settings.sandbox_slow_seconds`.
    """

    service: Service
    account: str
    check: Outcome
    pay: Outcome
    inactive: str | None = None  # the catalogue key of a 79's reason
    amount_due: int | None = None  # the open invoice's amount, in tyiyn
    retries: int = 0
    interim: Outcome = Outcome.RETRY
    slow: bool = False


_SOCHI, _EDS = Service.SOCHI, Service.EDS
MAGIC_ACCOUNTS: tuple[MagicAccount, ...] = (
    MagicAccount(_SOCHI, "99999000000000", Outcome.OK, Outcome.OK),
    MagicAccount(_SOCHI, "99999000000001", Outcome.OK, Outcome.OK, retries=RETRY_ATTEMPTS),
    MagicAccount(_SOCHI, "99999000000005", Outcome.NOT_FOUND, Outcome.NOT_FOUND),
    MagicAccount(_SOCHI, "99999000000007", Outcome.FORBIDDEN, Outcome.FORBIDDEN),
    MagicAccount(
        _SOCHI,
        "99999000000079",
        Outcome.INACTIVE,
        Outcome.INACTIVE,
        inactive=service.CUSTOMER_BLOCKED,
    ),
    MagicAccount(
        _SOCHI,
        "99999000000090",
        Outcome.OK,
        Outcome.OK,
        retries=PENDING_ATTEMPTS,
        interim=Outcome.PENDING,
    ),
    MagicAccount(_SOCHI, "99999000000241", Outcome.OK, Outcome.TOO_SMALL),
    MagicAccount(_SOCHI, "99999000000242", Outcome.OK, Outcome.TOO_LARGE),
    MagicAccount(_SOCHI, "99999000000300", Outcome.OK, Outcome.CONFLICT),
    MagicAccount(_SOCHI, "99999000000999", Outcome.OK, Outcome.OK, slow=True),
    MagicAccount(_EDS, "9999900000000005", Outcome.OK, Outcome.OK, amount_due=150_000),
    MagicAccount(_EDS, "9999900000000054", Outcome.NOT_FOUND, Outcome.NOT_FOUND),
    MagicAccount(_EDS, "9999900000000070", Outcome.ALREADY_PAID, Outcome.ALREADY_PAID),
    MagicAccount(
        _EDS,
        "9999900000007919",
        Outcome.INACTIVE,
        Outcome.INACTIVE,
        inactive=service.INVOICE_CANCELLED,
    ),
    MagicAccount(
        _EDS,
        "9999900000007927",
        Outcome.INACTIVE,
        Outcome.INACTIVE,
        inactive=service.INVOICE_EXPIRED,
    ),
)
MAGIC: dict[tuple[Service, str], MagicAccount] = {(m.service, m.account): m for m in MAGIC_ACCOUNTS}


def magic(service_: Service, account: str) -> MagicAccount | None:
    return MAGIC.get((service_, account))


def is_slow(service_: Service, account: str) -> bool:
    """Whether the gateway step sleeps before answering (in its event loop, not a thread)."""
    found = magic(service_, account)
    return found is not None and found.slow


# --- check ----------------------------------------------------------------------------------


def check(conn: Connection, agent: Agent, service_: Service, account: str) -> CheckResult:
    """What a check of `account` answers a sandbox agent. Reads and writes nothing real."""
    early = service.precheck(agent, service_, account)
    if early is not None:
        return early
    return _verdict(agent, service_, account, magic(service_, account))


def _verdict(
    agent: Agent, service_: Service, account: str, found: MagicAccount | None
) -> CheckResult:
    if found is None:
        return service.refusal(Outcome.NOT_FOUND, service_)
    if found.check is Outcome.INACTIVE:
        assert found.inactive is not None
        return service.inactive(found.inactive)
    if found.check is not Outcome.OK:
        return service.refusal(found.check, service_, account=account)
    limits = agent.services[service_.value]
    if found.amount_due is not None:
        return CheckResult(Outcome.OK, "OK", display_name=DISPLAY_NAME, amount_due=found.amount_due)
    return CheckResult(
        Outcome.OK,
        "OK",
        display_name=DISPLAY_NAME,
        min_amount=limits.min_amount,
        max_amount=limits.max_amount,
    )


# --- pay ------------------------------------------------------------------------------------

_EXISTING = select(sandbox_payments).where(
    sandbox_payments.c.agent_id == bindparam("agent_id"),
    sandbox_payments.c.txn_id == bindparam("txn_id"),
)


def _dialect(conn: Connection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def pay(conn: Connection, agent: Agent, request: PayRequest) -> PayResult:
    """A sandbox agent's pay: the magic account's answer, recorded in `sandbox_payments`
    exactly once per (agent, txn_id); a repeat answers the first time's receipt number."""
    prepared = service.prepare_pay(agent, request)
    if isinstance(prepared, PayResult):
        return prepared
    request = prepared
    existing = conn.execute(_EXISTING, {"agent_id": agent.id, "txn_id": request.txn_id}).first()
    if existing is not None:
        return _replay(existing, agent, request)
    found = magic(request.service, request.account)
    verdict = _verdict(agent, request.service, request.account, found)
    if verdict.outcome is Outcome.OK:
        verdict = service.judge_amount(verdict, request.amount)
    if verdict.outcome is not Outcome.OK:
        return service.as_pay(verdict)
    assert found is not None
    if found.pay is Outcome.CONFLICT:
        return service.conflict(request)
    if found.pay is Outcome.TOO_SMALL:
        return service.as_pay(service.refusal(Outcome.TOO_SMALL, limit=verdict.min_amount))
    if found.pay is Outcome.TOO_LARGE:
        return service.as_pay(service.refusal(Outcome.TOO_LARGE, limit=verdict.max_amount))
    if found.retries and _attempt(conn, agent, request.txn_id) <= found.retries:
        return service.as_pay(service.refusal(found.interim))
    return _accept(conn, agent, request, found)


def _attempt(conn: Connection, agent: Agent, txn_id: str) -> int:
    """Count one more pay of this txn_id; the count so far, this one included."""
    statement = (
        _dialect(conn).insert(sandbox_attempts).values(agent_id=agent.id, txn_id=txn_id, attempts=1)
    )
    statement = statement.on_conflict_do_update(
        index_elements=["agent_id", "txn_id"],
        set_={"attempts": sandbox_attempts.c.attempts + 1},
    ).returning(sandbox_attempts.c.attempts)
    return int(conn.execute(statement).scalar_one())


def _accept(conn: Connection, agent: Agent, request: PayRequest, found: MagicAccount) -> PayResult:
    business_date = request.txn_date.astimezone(agent.timezone).date()
    statement = (
        _dialect(conn)
        .insert(sandbox_payments)
        .values(
            agent_id=agent.id,
            txn_id=request.txn_id,
            service=request.service.value,
            account=request.account,
            amount=request.amount,
            txn_date_raw=request.txn_date_raw[:40],
            txn_date=request.txn_date.astimezone(UTC),
            business_date=business_date,
            outcome=_behaviour(found),
        )
        .on_conflict_do_nothing(index_elements=["agent_id", "txn_id"])
        .returning(sandbox_payments.c.id, sandbox_payments.c.created_at)
    )
    inserted = conn.execute(statement).first()
    if inserted is None:  # a concurrent identical request won: answer from its row
        existing = conn.execute(_EXISTING, {"agent_id": agent.id, "txn_id": request.txn_id}).one()
        return _replay(existing, agent, request)
    result = PayResult(
        Outcome.OK,
        "OK",
        payment_id=inserted.id,
        amount=request.amount,
        txn_date=request.txn_date.astimezone(UTC),
        business_date=business_date,
        created_at=as_utc(inserted.created_at),
    )
    _announce_payment(conn, agent, request, result)
    return result


def _key(service_: str, account: str) -> str:
    """The events' ordering key, in the real ones' forms (inn:INN, invoice:NUMBER)."""
    return inn_key(account if service_ == Service.SOCHI.value else None, account)


def _announce_payment(
    conn: Connection, agent: Agent, request: PayRequest, result: PayResult
) -> None:
    """payment.accepted (and an invoice's invoice.paid) as a real pay's, marked sandbox:
    no customer, no balance, no orders. Only a pay that inserted its row gets here, so a
    repeat emits nothing."""
    sochi = request.service is Service.SOCHI
    key = _key(request.service.value, request.account)
    emit(
        conn,
        EventType.PAYMENT_ACCEPTED,
        ordering_key=key,
        sandbox=True,
        payload={
            "payment_id": result.payment_id,
            "service": request.service.value,
            "account": request.account,
            "amount": request.amount,
            "agent": agent.code,
            "txn_id": request.txn_id,
            "business_date": result.business_date,
            "created_at": result.created_at,
            "inn": request.account if sochi else None,
            "customer_name": DISPLAY_NAME if sochi else None,
            "invoice_number": None if sochi else request.account,
            "balance": None,
        },
    )
    if sochi:
        return
    line = {
        "product_code": "sandbox",
        "name": INVOICE_LINE,
        "quantity": 1,
        "unit_price": request.amount,
        "amount": request.amount,
    }
    emit(
        conn,
        EventType.INVOICE_PAID,
        ordering_key=key,
        sandbox=True,
        payload={
            "invoice_number": request.account,
            "inn": None,
            "payer_name": DISPLAY_NAME,
            "total": request.amount,
            "payment_id": result.payment_id,
            "lines": [line],
            "orders": [],
        },
    )


def _behaviour(found: MagicAccount) -> str:
    if found.slow:
        return "slow"
    if found.retries:
        return "pending_then_ok" if found.interim is Outcome.PENDING else "retry_then_ok"
    return "invoice" if found.amount_due is not None else "ok"


def _replay(existing: Any, agent: Agent, request: PayRequest) -> PayResult:
    """The answer to a repeat: the first pay's receipt, or 300 if anything differs."""
    if (existing.service, existing.account, existing.amount) != (
        request.service.value,
        request.account,
        request.amount,
    ):
        return service.conflict(request)
    found = _record(existing, agent)
    return PayResult(
        Outcome.OK,
        "OK",
        payment_id=found.id,
        amount=found.amount,
        replayed=True,
        status=found.status,
        txn_date=found.txn_date,
        business_date=found.business_date,
        created_at=found.created_at,
        reversal=found.reversal,
    )


def _record(row: Any, agent: Agent) -> PaymentRecord:
    """A sandbox pay in the shape every adapter renders a payment from."""
    cancelled = row.cancelled_at is not None
    return PaymentRecord(
        id=row.id,
        agent=agent.code,
        agent_kind=agent.kind,
        txn_id=row.txn_id,
        service=row.service,
        account=row.account,
        amount=row.amount,
        status="reversed" if cancelled else "accepted",
        txn_date=as_utc(row.txn_date),
        txn_date_raw=row.txn_date_raw,
        business_date=row.business_date,
        created_at=as_utc(row.created_at),
        entry_id=None,
        invoice_number=row.account if row.service == Service.EDS.value else None,
        reversal=Reversal(row.cancel_reason or "", agent.actor, as_utc(row.cancelled_at), 0)
        if cancelled
        else None,
        manual=None,
    )


# --- status and cancel ------------------------------------------------------------------


def find(conn: Connection, agent: Agent, txn_id: str) -> PaymentRecord | None:
    """A sandbox agent's pay by its txn_id, as it stands now."""
    row = conn.execute(
        _EXISTING, {"agent_id": agent.id, "txn_id": service.payment_key(agent, txn_id)}
    ).first()
    return None if row is None else _record(row, agent)


def cancel(conn: Connection, agent: Agent, txn_id: str, reason: str) -> CancelResult:
    """Cancel a sandbox pay within the agent's cancel window, as a real cancel would;
    a repeated cancel answers like the first."""
    reason = reason.strip()
    if not reason:
        return CancelResult(CancelOutcome.MALFORMED, t("agent.cancel.no_reason"))
    key = service.payment_key(agent, txn_id)
    row = conn.execute(_EXISTING.with_for_update(), {"agent_id": agent.id, "txn_id": key}).first()
    if row is None:
        return CancelResult(CancelOutcome.NOT_FOUND, t("agent.cancel.not_found"))
    if row.cancelled_at is not None:
        done = t("agent.cancel.done")
        return CancelResult(
            CancelOutcome.OK, done, row.id, replayed=True, record=_record(row, agent)
        )
    today = datetime.now(agent.timezone).date()
    accepted = as_utc(row.created_at).astimezone(agent.timezone).date()
    if (today - accepted).days > agent.cancel_window_days:
        message = (
            t("agent.cancel.window_same_day")
            if agent.cancel_window_days == 0
            else t("agent.cancel.window_days", days=agent.cancel_window_days)
        )
        return CancelResult(CancelOutcome.WINDOW_CLOSED, message, row.id)
    conn.execute(
        update(sandbox_payments)
        .where(sandbox_payments.c.id == row.id)
        .values(cancelled_at=datetime.now(UTC), cancel_reason=reason[:1000])
    )
    now = conn.execute(_EXISTING, {"agent_id": agent.id, "txn_id": key}).one()
    sochi = now.service == Service.SOCHI.value
    emit(
        conn,
        EventType.PAYMENT_REVERSED,
        ordering_key=_key(now.service, now.account),
        sandbox=True,
        payload={
            "payment_id": now.id,
            "service": now.service,
            "account": now.account,
            "amount": now.amount,
            "reason": now.cancel_reason,
            "requested_by": agent.actor,
            "inn": now.account if sochi else None,
            "customer_name": DISPLAY_NAME if sochi else None,
            "invoice_number": None if sochi else now.account,
            "txn_id": now.txn_id,
            "created_at": as_utc(now.created_at),
            "balance": None,
        },
    )
    return CancelResult(
        CancelOutcome.OK, t("agent.cancel.done"), row.id, record=_record(now, agent)
    )


# --- reset ------------------------------------------------------------------------------


def reset(conn: Connection, *, agent_id: int | None = None, actor: str) -> int:
    """Empty the sandbox (one agent's part of it, or all): its pays and retry counters.
    Audited as `sandbox.reset`; returns how many pays were removed."""
    pays = delete(sandbox_payments)
    attempts = delete(sandbox_attempts)
    if agent_id is not None:
        pays = pays.where(sandbox_payments.c.agent_id == agent_id)
        attempts = attempts.where(sandbox_attempts.c.agent_id == agent_id)
    removed = conn.execute(pays).rowcount
    conn.execute(attempts)
    audit.record(
        conn,
        actor=actor,
        action="sandbox.reset",
        object_type="sandbox",
        object_id=agent_id if agent_id is not None else "all",
        after={"removed": removed},
    )
    return int(removed)


def sandbox_agent_id(conn: Connection, code: str) -> int | None:
    """The id of the sandbox agent with this code; None if there is none."""
    found = conn.execute(
        select(agents.c.id).where(agents.c.code == code, agents.c.sandbox.is_(True))
    ).scalar()
    return None if found is None else int(found)


def reset_nightly(conn: Connection, today: date) -> int | None:
    """Reset once per Bishkek day. The upsert on the one-row `sandbox_state` lets one of
    several workers win: the others wait on its row, then find the day taken (and a
    missing row is made). None: already reset today."""
    insert = _dialect(conn).insert(sandbox_state).values(id=1, reset_on=today)
    won = conn.execute(
        insert.on_conflict_do_update(
            index_elements=["id"],
            set_={"reset_on": insert.excluded.reset_on},
            where=sandbox_state.c.reset_on.is_(None) | (sandbox_state.c.reset_on < today),
        ).returning(sandbox_state.c.id)
    ).first()
    if won is None:
        return None
    return reset(conn, actor="system:sandbox")


def nightly_job(engine: Engine, settings: Settings) -> None:
    """The event worker's job (`billing.scheduled.JOBS`): the day's first run resets."""
    with engine.begin() as conn:
        removed = reset_nightly(conn, datetime.now(HOME_ZONE).date())
    if removed is not None:
        log.info("sandbox reset for the day: %d pay(s) removed", removed)
