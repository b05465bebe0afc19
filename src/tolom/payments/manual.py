"""Manual payments: cash at the company's cash desk and bank transfers, recorded by operators.

The rules every adapter (the operator API, the back office's cash desk page) shares: which
channels and payment codes exist, what a bank transfer must carry and a cash payment must
not, when the money may have been received, and how the payment is recorded.

Each goes through the one pay use case (`payments.service.pay`) as the built-in channel
agent `cash_desk` or `bank`, with the client's `reference` as its txn_id: the unique key
(agent, txn_id) makes a repeat find the first payment instead of paying twice. The audit
line `payment.manual` is written by `pay`'s `on_accept`, in the payment's transaction, so it
commits with the payment or not at all (and a repeat writes none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from tolom import audit
from tolom.agents.service import Agent
from tolom.db.schema import payments
from tolom.money import format_amount
from tolom.payments import records, service
from tolom.payments.model import CheckResult, Outcome, PayRequest, PayResult, Service
from tolom.payments.requestlog import Answer, Exchange
from tolom.payments.unit import run_logged
from tolom.texts import DEFAULT, N_, Refusal
from tolom.texts import text as say

CHANNELS: tuple[str, ...] = ("cash_desk", "bank")
SERVICES: tuple[str, ...] = tuple(s.value for s in Service)
PAYMENT_CODES: tuple[str, ...] = ("42151410", "42122900")
# The client's idempotency key: the cash receipt (ПКО) or bank document number.
REFERENCE_PATTERN = r"^[A-Za-z0-9._/-]{1,64}$"
MAX_ACCOUNT = 64
MAX_BANK_REFERENCE = 64
MAX_PAYER = 300
MAX_NOTE = 1000
AUDIT_ACTION = "payment.manual"

# The field a refusal by the core is about.
REFUSAL_FIELD: dict[Outcome, str] = {
    Outcome.BAD_ACCOUNT: "account",
    Outcome.NOT_FOUND: "account",
    Outcome.INACTIVE: "account",
    Outcome.ALREADY_PAID: "account",
    Outcome.TOO_SMALL: "amount",
    Outcome.TOO_LARGE: "amount",
    Outcome.CONFLICT: "reference",
    Outcome.MALFORMED: "received_at",
}


class InvalidField(Refusal):
    """A value a manual payment may not have: which field, and why (`message`, in Russian;
    `said(language)` in another language), worded by key like every core refusal."""

    def __init__(self, field: str, key: str, /, **values: Any) -> None:
        self.field = field
        self.key = key
        self.values = values
        self.message = say(DEFAULT, key, **values)
        ValueError.__init__(self, f"{field}: {self.message}")

    def said(self, language: str | None) -> str:
        return f"{self.field}: {say(language, self.key, **self.values)}"


def text(value: str | None) -> str | None:
    """Free text as stored: trimmed, and nothing rather than an empty string."""
    if value is None:
        return None
    return value.strip() or None


def details_errors(
    channel: str,
    payment_code: str | None,
    bank_reference: str | None,
    language: str | None = DEFAULT,
) -> list[tuple[str, str]]:
    """What is wrong with a payment's bank details, as (field, message) pairs (messages in
    `language`, Russian by default).

    A bank transfer needs its payment code (one of `PAYMENT_CODES`) and the payment order's
    number; a cash payment has neither (None: not even an empty value).
    """
    first, second = PAYMENT_CODES
    errors = []
    if channel == "bank":
        if payment_code is None:
            errors.append(("payment_code", N_("manual.error.payment_code_required")))
        elif payment_code not in PAYMENT_CODES:
            errors.append(("payment_code", N_("manual.error.payment_code_unknown")))
        if text(bank_reference) is None:
            errors.append(("bank_reference", N_("manual.error.bank_reference_required")))
    else:
        if payment_code is not None:
            errors.append(("payment_code", N_("manual.error.bank_only")))
        if bank_reference is not None:
            errors.append(("bank_reference", N_("manual.error.bank_only")))
    return [(field, say(language, key, first=first, second=second)) for field, key in errors]


def check_received_at(moment: datetime, now: datetime) -> datetime:
    """When the money was received, if plausible: aware, and as `service.txn_date_problem`
    allows an agent's txn_date. InvalidField("received_at") otherwise."""
    if moment.tzinfo is None:
        raise InvalidField("received_at", N_("manual.error.received_at_offset"))
    problem = service.txn_date_refusal(moment, now)
    if problem is not None:
        key, values = problem
        raise InvalidField("received_at", key, **values)
    return moment


def parse_received_at(raw: str | None, now: datetime) -> datetime:
    """`received_at` as ISO 8601 with an offset (`now` when absent), checked."""
    if raw is None:
        return now
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidField("received_at", N_("manual.error.received_at_format"))
    return check_received_at(moment, now)


@dataclass(frozen=True, slots=True)
class ManualPayment:
    """A cash or bank-transfer payment to record, its values already checked."""

    channel: str  # cash_desk | bank
    reference: str  # the idempotency key, unique per channel
    service: Service
    account: str  # sochi: INN; eds: invoice number
    amount: int  # tyiyn
    received_at: datetime  # aware
    received_at_raw: str  # as the client wrote it, for disputes
    payment_code: str | None = None  # bank only
    bank_reference: str | None = None  # bank only, trimmed
    payer: str | None = None  # trimmed
    note: str | None = None  # trimmed

    def audited(self) -> dict[str, Any]:
        """The audit line's `after`."""
        return {
            "channel": self.channel,
            "reference": self.reference,
            "service": self.service.value,
            "account": self.account,
            "amount": format_amount(self.amount),
            "payment_code": self.payment_code,
            "bank_reference": self.bank_reference,
            "payer": self.payer,
            "note": self.note,
            "received_at": self.received_at.isoformat(),
        }


def record(
    engine: Engine,
    agent: Agent,
    payment: ManualPayment,
    *,
    actor: str,
    address: str,
    protocol: str,
    params: list[tuple[str, str]],
    render: Callable[[PayResult], Answer],
) -> PayResult:
    """Pay `payment` through its channel `agent` exactly once per reference, audited as
    `payment.manual` by `actor` with the payment; returns the result (a repeat with the same
    data: the first payment, `replayed`). The request is logged in `gateway_requests` as
    `protocol` with `params` and the answer `render` makes of the result."""
    if agent.code != payment.channel:
        raise ValueError(f"agent {agent.code} is not the {payment.channel} channel")
    request = PayRequest(
        service=payment.service,
        txn_id=payment.reference,
        account=payment.account,
        amount=payment.amount,
        txn_date=payment.received_at,
        txn_date_raw=payment.received_at_raw,
        manual=records.ManualDetails(
            channel=payment.channel,
            recorded_by=actor,
            payment_code=payment.payment_code,
            bank_reference=payment.bank_reference,
            payer=payment.payer,
            note=payment.note,
        ),
    )
    exchange = Exchange(
        protocol=protocol,
        peer=address,
        method="POST",
        params=params,
        service=payment.service.value,
        agent_id=agent.id,
        command="pay",
    )

    def write_audit(conn: Connection, result: PayResult) -> None:
        assert result.payment_id is not None
        audit.record(
            conn,
            actor=actor,
            action=AUDIT_ACTION,
            object_type="payment",
            object_id=result.payment_id,
            after=payment.audited(),
            address=address,
        )

    exchange.txn_id = request.txn_id
    result, _answer = run_logged(
        engine,
        exchange,
        lambda conn: service.pay(conn, agent, request, on_accept=write_audit),
        render,
        retry=PayResult(Outcome.RETRY, service.TEMPORARY_MESSAGE),
        payment_of=lambda result: result.payment_id,
    )
    return result


def preview(
    engine: Engine,
    agent: Agent,
    service_: Service,
    account: str,
    *,
    address: str,
    protocol: str,
    render: Callable[[CheckResult], Answer],
) -> CheckResult:
    """What paying `account` through the channel would meet, before paying: who the
    customer is and the limits (sochi), or the invoice's payer and total (eds), or why it
    would be refused. The core's check: it writes only its log record (`protocol`)."""
    exchange = Exchange(
        protocol=protocol,
        peer=address,
        method="POST",
        params=[("service", service_.value), ("account", account)],
        service=service_.value,
        agent_id=agent.id,
        command="check",
    )
    result, _answer = run_logged(
        engine,
        exchange,
        lambda conn: service.check(conn, agent, service_, account),
        render,
        retry=CheckResult(Outcome.RETRY, service.TEMPORARY_MESSAGE),
        payment_of=lambda _result: None,
    )
    return result


def payment_of(conn: Connection, agent: Agent, reference: str) -> int | None:
    """The id of the payment recorded through `agent` under `reference`, if any."""
    key = service.payment_key(agent, reference)
    found = conn.execute(
        select(payments.c.id).where(payments.c.agent_id == agent.id, payments.c.txn_id == key)
    ).scalar()
    return None if found is None else int(found)
