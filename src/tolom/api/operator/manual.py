"""Manual payments: cash at the company's cash desk and bank transfers, recorded by operators.

Each goes through the one pay use case (`payments.service.pay`) as the built-in channel
agent `cash_desk` or `bank`, with the client's `reference` as its txn_id: the unique key
(agent, txn_id) makes a repeat find the first payment instead of paying twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from tolom import audit
from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AMOUNT_EXAMPLE,
    AUTH,
    OperatorRoute,
    Writer,
    amount_of,
    bad_input,
    replayed_headers,
    transaction,
)
from tolom.api.operator.payments import Payment, payment_out
from tolom.api.problems import (
    PROBLEM_MEDIA_TYPE,
    FieldError,
    ProblemError,
    problem_body,
    responses,
)
from tolom.gateway.rest import PAY_PROBLEMS
from tolom.money import format_amount
from tolom.payments import records, service
from tolom.payments.model import Outcome, PayRequest, PayResult, Service
from tolom.payments.requestlog import Answer, Exchange

router = APIRouter(prefix="/manual-payments", tags=["manual payments"], route_class=OperatorRoute)

PaymentCode = Literal["42151410", "42122900"]
PAYMENT_CODES: tuple[str, ...] = get_args(PaymentCode)
# How far ahead of our clock a `received_at` may be (clocks of other systems drift).
CLOCK_SKEW = timedelta(minutes=5)

# The JSON APIs share one map from the core's outcomes to problem codes; a manual payment's
# idempotency key is its reference, so a conflict is named after that.
_PROBLEMS = {**PAY_PROBLEMS, Outcome.CONFLICT: "reference_conflict"}
# The field a refusal is about, named in the problem's `errors`.
_FIELD_OF = {
    Outcome.BAD_ACCOUNT: "account",
    Outcome.NOT_FOUND: "account",
    Outcome.INACTIVE: "account",
    Outcome.ALREADY_PAID: "account",
    Outcome.TOO_SMALL: "amount",
    Outcome.TOO_LARGE: "amount",
    Outcome.CONFLICT: "reference",
    Outcome.MALFORMED: "received_at",
}


class ManualPaymentIn(BaseModel):
    """A cash or bank-transfer payment to record."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "bank",
                    "reference": "PP-2026-000123",
                    "service": "sochi",
                    "account": "01904202310427",
                    "amount": "15000.00",
                    "payment_code": "42151410",
                    "bank_reference": "000123",
                    "payer": "ОсОО «Ромашка»",
                    "received_at": "2026-11-21T10:15:00+06:00",
                }
            ]
        },
    )

    channel: Literal["cash_desk", "bank"] = Field(description="cash_desk | bank")
    reference: str = Field(
        pattern=r"^[A-Za-z0-9._/-]{1,64}$",
        description="Your idempotency key: the cash receipt (ПКО) or bank document number. "
        "Unique per channel; a repeat with the same data answers the same payment.",
        examples=["PKO-2026-000042"],
    )
    service: Literal["sochi", "eds"] = Field(
        description="sochi: top up a balance (account = INN); eds: pay an invoice "
        "(account = invoice number, amount = its total)."
    )
    account: str = Field(max_length=64, examples=["01904202310427"])
    amount: str = Field(max_length=20, description=AMOUNT_DESCRIPTION, examples=[AMOUNT_EXAMPLE])
    payment_code: PaymentCode | None = Field(
        default=None, description="Bank transfers: the payment code. Required for bank."
    )
    bank_reference: str | None = Field(
        default=None,
        max_length=64,
        description="Bank transfers: the payment order's number. Required for bank.",
        examples=["000123"],
    )
    payer: str | None = Field(default=None, max_length=300, examples=["ОсОО «Ромашка»"])
    note: str | None = Field(default=None, max_length=1000)
    received_at: str | None = Field(
        default=None,
        max_length=40,
        description="When the money was received: ISO 8601 with an offset. Default: now. "
        "Its date in Asia/Bishkek is the payment's business day.",
        examples=["2026-11-21T10:15:00+06:00"],
    )


def _text(value: str | None) -> str | None:
    """Free text as stored: trimmed, and nothing rather than an empty string."""
    if value is None:
        return None
    return value.strip() or None


def _received_at(raw: str | None, now: datetime) -> datetime:
    if raw is None:
        return now
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise bad_input(
            ("received_at", "нужны дата и время ISO 8601 со смещением: 2026-11-21T10:15:00+06:00")
        )
    low, high = service.TXN_YEARS
    if not low <= moment.year <= high:
        raise bad_input(("received_at", f"год должен быть от {low} до {high}"))
    if moment > now + CLOCK_SKEW:
        raise bad_input(("received_at", "дата поступления в будущем"))
    return moment


def _validate_details(body: ManualPaymentIn) -> list[tuple[str, str]]:
    errors = []
    if body.channel == "bank":
        if body.payment_code is None:
            errors.append(
                ("payment_code", f"для банковского перевода: {' или '.join(PAYMENT_CODES)}")
            )
        if _text(body.bank_reference) is None:
            errors.append(
                ("bank_reference", "для банковского перевода: номер платёжного поручения")
            )
    else:
        if body.payment_code is not None:
            errors.append(("payment_code", "только для банковского перевода"))
        if body.bank_reference is not None:
            errors.append(("bank_reference", "только для банковского перевода"))
    return errors


def _refusal(result: PayResult) -> ProblemError:
    code = _PROBLEMS[result.outcome]
    field = _FIELD_OF.get(result.outcome)
    errors = [FieldError(field=field, message=result.message)] if field else None
    return ProblemError(code, result.message, errors=errors)


def _render(result: PayResult) -> Answer:
    """What is logged in gateway_requests as our answer."""
    if result.outcome is Outcome.OK:
        body = {"id": result.payment_id, "status": result.status, "replayed": result.replayed}
        return Answer(
            200 if result.replayed else 201, None, json.dumps(body), media_type="application/json"
        )
    problem = _refusal(result).problem
    return Answer(problem.status, None, problem_body(problem), media_type=PROBLEM_MEDIA_TYPE)


@router.post(
    "",
    status_code=201,
    summary="Record a cash or bank-transfer payment",
    description="Credits the customer's balance (sochi) or pays the invoice (eds) exactly as "
    "an agent's payment would, through the cash desk or bank channel. `reference` is the "
    "idempotency key: the first request answers 201; a repeat with the same data answers "
    "200 with the same payment and `Idempotent-Replayed: true`; the same reference with "
    "other data is refused with 409 `reference_conflict`. Audited as `payment.manual`.",
    responses={
        **responses(
            *AUTH,
            "invalid_request",
            "invalid_account",
            "amount_too_small",
            "amount_too_large",
            "service_not_allowed",
            "account_not_found",
            "account_inactive",
            "invoice_already_paid",
            "reference_conflict",
        ),
        200: {
            "description": "A repeat: the payment recorded by the first request.",
            "headers": replayed_headers(),
            "model": Payment,
        },
    },
)
def record_manual_payment(body: ManualPaymentIn, caller: Writer, response: Response) -> Payment:
    errors = _validate_details(body)
    amount = amount_of(body.amount, "amount")
    if errors:
        raise bad_input(*errors)
    now = datetime.now(UTC)
    received = _received_at(body.received_at, now)
    runtime = caller.runtime
    try:
        agent = runtime.agents.get(body.channel)
    except Exception as error:  # the agents' table is out of reach
        raise ProblemError("temporarily_unavailable") from error
    if agent is None:  # `tolom db upgrade` creates both channels
        raise ProblemError("internal_error", f"Канал {body.channel} не настроен")
    request = PayRequest(
        service=Service(body.service),
        txn_id=body.reference,
        account=body.account,
        amount=amount,
        txn_date=received,
        txn_date_raw=body.received_at or received.isoformat(),
        manual=records.ManualDetails(
            channel=body.channel,
            recorded_by=caller.actor,
            payment_code=body.payment_code,
            bank_reference=_text(body.bank_reference),
            payer=_text(body.payer),
            note=_text(body.note),
        ),
    )
    exchange = Exchange(
        protocol="api",
        peer=caller.address,
        method="POST",
        params=[(k, str(v)) for k, v in body.model_dump(exclude_none=True).items()],
        service=body.service,
        agent_id=agent.id,
        command="pay",
    )
    answered: list[PayResult] = []

    def render(result: PayResult) -> Answer:
        answered.append(result)
        return _render(result)

    def write_audit(conn: Connection, result: PayResult) -> None:
        audit.record(
            conn,
            actor=caller.actor,
            action="payment.manual",
            object_type="payment",
            object_id=cast(int, result.payment_id),
            after=_audited(body, amount, received),
            address=caller.address,
        )

    service.pay(runtime.engine, agent, request, exchange, render, on_accept=write_audit)
    result = answered[-1]
    if result.outcome is not Outcome.OK:
        raise _refusal(result)
    assert result.payment_id is not None
    with transaction(runtime) as conn:
        record = records.by_id(conn, result.payment_id)
    assert record is not None
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return payment_out(record)


def _audited(body: ManualPaymentIn, amount: int, received: datetime) -> dict[str, Any]:
    return {
        "channel": body.channel,
        "reference": body.reference,
        "service": body.service,
        "account": body.account,
        "amount": format_amount(amount),
        "payment_code": body.payment_code,
        "bank_reference": _text(body.bank_reference),
        "payer": _text(body.payer),
        "note": _text(body.note),
        "received_at": received.isoformat(),
    }
