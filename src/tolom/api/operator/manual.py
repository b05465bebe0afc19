"""Manual payments: cash at the company's cash desk and bank transfers, recorded by operators.

A thin adapter: the rules (channels, payment codes, bank details, received_at, recording
through the channel agent with its audit line) live in `tolom.payments.manual`; this module
reads the JSON body and answers with the payment or a problem.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

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
from tolom.fields import Amount, Channel, PaymentCode, Reference, ServiceCode
from tolom.httpkit.problems import (
    PAY_PROBLEMS,
    PROBLEM_MEDIA_TYPE,
    FieldError,
    ProblemError,
    problem_body,
    responses,
)
from tolom.payments import manual, records
from tolom.payments.model import Outcome, PayResult, Service
from tolom.payments.requestlog import Answer

router = APIRouter(prefix="/manual-payments", tags=["manual payments"], route_class=OperatorRoute)

# The JSON APIs share one map from the core's outcomes to problem codes; a manual payment's
# idempotency key is its reference, so a conflict is named after that.
_PROBLEMS = {**PAY_PROBLEMS, Outcome.CONFLICT: "reference_conflict"}
# The field a refusal is about, named in the problem's `errors`.
_FIELD_OF = manual.REFUSAL_FIELD


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

    channel: Channel = Field(description="cash_desk | bank")
    reference: Reference = Field(
        description="Your idempotency key: the cash receipt (ПКО) or bank document number. "
        "Unique per channel; a repeat with the same data answers the same payment.",
        examples=["PKO-2026-000042"],
    )
    service: ServiceCode = Field(
        description="sochi: top up a balance (account = INN); eds: pay an invoice "
        "(account = invoice number, amount = its total)."
    )
    account: str = Field(max_length=manual.MAX_ACCOUNT, examples=["01904202310427"])
    amount: Amount = Field(max_length=20, description=AMOUNT_DESCRIPTION, examples=[AMOUNT_EXAMPLE])
    payment_code: PaymentCode | None = Field(
        default=None, description="Bank transfers: the payment code. Required for bank."
    )
    bank_reference: str | None = Field(
        default=None,
        max_length=manual.MAX_BANK_REFERENCE,
        description="Bank transfers: the payment order's number. Required for bank.",
        examples=["000123"],
    )
    payer: str | None = Field(
        default=None, max_length=manual.MAX_PAYER, examples=["ОсОО «Ромашка»"]
    )
    note: str | None = Field(default=None, max_length=manual.MAX_NOTE)
    received_at: str | None = Field(
        default=None,
        max_length=40,
        description="When the money was received: ISO 8601 with an offset. Default: now. "
        "Its date in Asia/Bishkek is the payment's business day.",
        examples=["2026-11-21T10:15:00+06:00"],
    )


def _received_at(raw: str | None, now: datetime) -> datetime:
    try:
        return manual.parse_received_at(raw, now)
    except manual.InvalidField as error:
        raise bad_input((error.field, error.message)) from None


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
    errors = manual.details_errors(body.channel, body.payment_code, body.bank_reference)
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
    payment = manual.ManualPayment(
        channel=body.channel,
        reference=body.reference,
        service=Service(body.service),
        account=body.account,
        amount=amount,
        received_at=received,
        received_at_raw=body.received_at or received.isoformat(),
        payment_code=body.payment_code,
        bank_reference=manual.text(body.bank_reference),
        payer=manual.text(body.payer),
        note=manual.text(body.note),
    )
    result = manual.record(
        runtime.engine,
        agent,
        payment,
        actor=caller.actor,
        address=caller.address,
        protocol="api",
        params=[(k, str(v)) for k, v in body.model_dump(exclude_none=True).items()],
        render=_render,
    )
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
