"""Charges: the СОЧИ reporting system charges a customer's balance for a sent report.

A thin adapter over `tolom.billing.charges`, which holds every rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    Cursor,
    Limit,
    OperatorRoute,
    Page,
    UtcTime,
    amount_of,
    bad_input,
    cursor_of,
    id_of,
    replayed_headers,
    transaction,
)
from tolom.api.security import Caller, require
from tolom.billing import charges
from tolom.fields import Inn
from tolom.httpkit.ids import next_cursor
from tolom.httpkit.problems import ProblemError, responses
from tolom.money import format_amount

router = APIRouter(prefix="/charges", tags=["charges"], route_class=OperatorRoute)

# The СОЧИ system charges with a `charges` key; operators read with `read` and refund with
# `write` (admin has them all).
Charger = Annotated[Caller, Depends(require("charges"))]
ChargeReader = Annotated[Caller, Depends(require("charges", "read"))]
Refunder = Annotated[Caller, Depends(require("charges", "write"))]

ChargeStatus = Literal["awaiting_payment", "charged", "cancelled", "refunded"]
_KEY_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


class ReportIn(BaseModel):
    """The report charged for, as the СОЧИ system names it; all optional, kept as sent."""

    model_config = ConfigDict(extra="forbid")

    report_id: str | None = Field(default=None, max_length=64, examples=["R-2026-000123"])
    state_body: str | None = Field(default=None, max_length=16, examples=["sti"])
    form: str | None = Field(default=None, max_length=64, examples=["vat"])
    period: str | None = Field(
        default=None, max_length=16, description="The reporting period.", examples=["2026-10"]
    )


class ChargeIn(BaseModel):
    """Charge a customer for a report: an amount, or a tariff whose price is taken."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "report-R-2026-000123",
                    "inn": "01904202310427",
                    "tariff": "sti-vat-month",
                    "report": {"report_id": "R-2026-000123", "period": "2026-10"},
                    "description": "НДС за октябрь 2026",
                }
            ]
        },
    )

    idempotency_key: str = Field(
        pattern=_KEY_PATTERN,
        description="The client's key for this charge (letters, digits, `_.:-`, ≤ 64): a "
        "repeat with the same key answers with the same charge and never charges twice.",
        examples=["report-R-2026-000123"],
    )
    inn: Inn = Field(max_length=64, examples=["01904202310427"])
    amount: str | None = Field(
        default=None,
        max_length=20,
        description=f"{AMOUNT_DESCRIPTION} Give this or `tariff`.",
        examples=["150.00"],
    )
    tariff: str | None = Field(
        default=None,
        max_length=32,
        description="A tariff code (`GET /api/v1/tariffs`): its price is charged.",
        examples=["sti-vat-month"],
    )
    report: ReportIn = Field(default_factory=ReportIn)
    description: str = Field(min_length=1, max_length=500, examples=["НДС за октябрь 2026"])


class ReportOut(BaseModel):
    report_id: str | None
    state_body: str | None
    form: str | None
    period: str | None


class Charge(BaseModel):
    """A charge and where it stands."""

    id: int = Field(examples=[17])
    inn: str = Field(examples=["01904202310427"])
    customer_name: str = Field(examples=["ОсОО «Айкөл»"])
    amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["150.00"])
    tariff: str | None = Field(examples=["sti-vat-month"])
    report: ReportOut
    description: str = Field(examples=["НДС за октябрь 2026"])
    status: ChargeStatus = Field(
        description="charged: taken from the balance; awaiting_payment: the balance was too "
        "low, a top-up will take it (oldest first); cancelled: dropped while waiting; "
        "refunded: returned to the balance by a reversing entry.",
        examples=["awaiting_payment"],
    )
    created_at: UtcTime
    settled_at: UtcTime | None = Field(description="When it was taken from the balance.")
    closed_at: UtcTime | None = Field(description="When it was cancelled or refunded.")
    payment_id: int | None = Field(
        description="The top-up that released it from awaiting payment, if one did.",
        examples=[None],
    )
    refund_reason: str | None = Field(examples=[None])


class ChargePage(Page):
    items: list[Charge]


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, examples=["Отчёт отклонён ГНС"])


def _out(charge: charges.Charge) -> Charge:
    return Charge(
        id=charge.id,
        inn=charge.inn,
        customer_name=charge.customer_name,
        amount=format_amount(charge.amount),
        tariff=charge.tariff,
        report=ReportOut(
            report_id=charge.report.report_id,
            state_body=charge.report.state_body,
            form=charge.report.form,
            period=charge.report.period,
        ),
        description=charge.description,
        status=charge.status,
        created_at=charge.created_at,
        settled_at=charge.settled_at,
        closed_at=charge.closed_at,
        payment_id=charge.settled_by_payment_id,
        refund_reason=charge.refund_reason,
    )


def _problem(error: charges.ChargeError) -> ProblemError:
    if error.code == "invalid_request":
        return bad_input((error.field or "body", str(error)))
    return ProblemError(error.code, str(error))


_CREATE_PROBLEMS = (
    "invalid_request",
    "customer_not_found",
    "customer_blocked",
    "idempotency_conflict",
)


@router.post(
    "",
    status_code=201,
    summary="Charge a customer for a report",
    description="Takes the amount (or the tariff's price) from the customer's balance at once "
    "(`charged`) when the balance covers it and no earlier charge of the customer waits; "
    "otherwise the charge waits (`awaiting_payment`) and the next top-up takes it, oldest "
    "first. Never a negative balance, never a partial charge. A repeat with the same "
    "`idempotency_key` answers 200 with the same charge and `Idempotent-Replayed: true`; "
    "with other details, 409 `idempotency_conflict`. Needs a key with scope `charges`.",
    responses={
        **responses(*AUTH, *_CREATE_PROBLEMS),
        200: {
            "description": "A repeat: the charge made the first time.",
            "model": Charge,
            "headers": replayed_headers(),
        },
    },
)
def create_charge(body: ChargeIn, caller: Charger, response: Response) -> Charge:
    request = charges.ChargeRequest(
        client=caller.actor,
        idempotency_key=body.idempotency_key,
        inn=body.inn,
        description=body.description.strip() or body.description,
        amount=amount_of(body.amount, "amount") if body.amount is not None else None,
        tariff=body.tariff,
        report=charges.Report(
            body.report.report_id, body.report.state_body, body.report.form, body.report.period
        ),
    )
    try:
        with transaction(caller.runtime) as conn:
            charge = charges.create_audited(
                conn, request, actor=caller.actor, address=caller.address
            )
            out = _out(charge)
    except charges.ChargeError as error:
        raise _problem(error) from None
    if charge.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return out


@router.get(
    "",
    summary="List charges",
    description="Newest first; by customer and status (e.g. all `awaiting_payment` of one "
    "INN). Pages: pass `next_cursor` back as `cursor` until it is null.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_charges(
    caller: ChargeReader,
    inn: Annotated[str | None, Query(max_length=64, description="Only this customer.")] = None,
    status: Annotated[ChargeStatus | None, Query(description="Only in this state.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ChargePage:
    after = cursor_of(cursor)
    with transaction(caller.runtime) as conn:
        found = charges.search(conn, inn=inn, status=status, after_id=after, limit=limit + 1)
    shown, cursor_out = next_cursor([c.id for c in found], limit)
    return ChargePage(items=[_out(c) for c in found[:shown]], next_cursor=cursor_out)


@router.get(
    "/{charge_id}",
    summary="One charge",
    responses=responses(*AUTH, "invalid_request", "charge_not_found"),
)
def get_charge(charge_id: str, caller: ChargeReader) -> Charge:
    number = id_of(charge_id, "charge_id")
    with transaction(caller.runtime) as conn:
        charge = charges.get(conn, number)
    if charge is None:
        raise ProblemError("charge_not_found", f"Списание №{number} не найдено")
    return _out(charge)


@router.post(
    "/{charge_id}/cancel",
    summary="Cancel a charge that awaits payment",
    description="Only while `awaiting_payment`: nothing was taken, so nothing moves. "
    "Cancelling a cancelled charge answers it as it is; a taken one is refused with "
    "`charge_not_awaiting` (refund it instead). Audited as `charge.cancel`.",
    responses=responses(*AUTH, "invalid_request", "charge_not_found", "charge_not_awaiting"),
)
def cancel_charge(charge_id: str, caller: Charger) -> Charge:
    number = id_of(charge_id, "charge_id")
    try:
        with transaction(caller.runtime) as conn:
            charge = charges.cancel_audited(
                conn, number, actor=caller.actor, address=caller.address
            )
    except charges.ChargeError as error:
        raise _problem(error) from None
    return _out(charge)


@router.post(
    "/{charge_id}/refund",
    summary="Refund a taken charge",
    description="Returns the amount to the balance with a reversing journal entry and a "
    "reason; the money then releases any waiting charges as a top-up would. A refunded "
    "charge answers as it is; one not taken is refused with `charge_not_charged` (cancel it "
    "instead). Needs `charges` or `write`. Audited as `charge.refund`.",
    responses=responses(*AUTH, "invalid_request", "charge_not_found", "charge_not_charged"),
)
def refund_charge(charge_id: str, body: RefundIn, caller: Refunder) -> Charge:
    number = id_of(charge_id, "charge_id")
    try:
        with transaction(caller.runtime) as conn:
            charge = charges.refund_audited(
                conn, number, body.reason, actor=caller.actor, address=caller.address
            )
    except charges.ChargeError as error:
        raise _problem(error) from None
    return _out(charge)
