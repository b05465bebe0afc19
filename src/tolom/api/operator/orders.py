"""Signature orders: list and look up, carry through production to issue, cancel, and the
signatures about to expire. Transitions need `write` and are audited; lists need `read`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    Cursor,
    Limit,
    OperatorRoute,
    Page,
    Reader,
    UtcTime,
    Writer,
    bad_input,
    core_message,
    cursor_of,
    id_of,
    replayed_headers,
    transaction,
)
from tolom.billing import orders
from tolom.db import Connection
from tolom.fields import OrderStatus
from tolom.httpkit.ids import next_cursor
from tolom.httpkit.problems import ProblemError, responses
from tolom.money import format_amount

router = APIRouter(prefix="/orders", tags=["signature orders"], route_class=OperatorRoute)

OrderId = Annotated[str, Path(alias="id", description="The order's number.", examples=["17"])]
MAX_WITHIN_DAYS = 366


class Order(BaseModel):
    """One unit of a paid invoice line: a signature or a carrier to produce and hand over."""

    id: int = Field(examples=[17])
    invoice_number: str = Field(examples=["4000000000000002"])
    unit: int = Field(description="1..quantity of its invoice line.", examples=[1])
    inn: str | None = Field(description="The invoice's INN.", examples=["01904202310427"])
    payment_id: int = Field(description="The payment that paid it.", examples=[1001])
    product_code: str = Field(examples=["eds-head"])
    kind: Literal["signature", "carrier"] = Field(examples=["signature"])
    name: str = Field(examples=["Электронная подпись руководителя (облачная), 12 месяцев"])
    price: str = Field(description=AMOUNT_DESCRIPTION, examples=["1510.00"])
    status: OrderStatus = Field(
        description="paid → in_production → issued, or cancelled", examples=["paid"]
    )
    created_at: UtcTime
    production_started_at: UtcTime | None
    issued_at: UtcTime | None
    valid_until: date | None = Field(
        description="Signatures: the last day it is valid (issue date in Bishkek + 12 months)."
    )
    expiry_notified_at: UtcTime | None = Field(description="When signature.expiring was announced.")
    cancelled_at: UtcTime | None
    cancel_reason: str | None = Field(examples=[None])
    refund_amount: str | None = Field(
        description=f"Credited to the customer's balance on cancellation. {AMOUNT_DESCRIPTION}",
        examples=[None],
    )


class OrderPage(Page):
    items: list[Order]


class ExpiringOrder(Order):
    days_left: int = Field(description="Days until valid_until; 0: its last day.", examples=[21])


class ExpiringPage(Page):
    items: list[ExpiringOrder]


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=1000,
        description="Why, for the audit trail and the customer.",
        examples=["Клиент отказался"],
    )
    no_refund: bool = Field(
        default=False,
        description="true: the money is returned outside Tolom (or not at all); nothing is "
        "credited to a balance and the reason records it.",
    )


def order_out(order: orders.Order) -> Order:
    return Order(
        id=order.id,
        invoice_number=order.invoice_number,
        unit=order.unit,
        inn=order.inn,
        payment_id=order.payment_id,
        product_code=order.product_code,
        kind=order.kind,
        name=order.name,
        price=format_amount(order.price),
        status=order.status,
        created_at=order.created_at,
        production_started_at=order.production_started_at,
        issued_at=order.issued_at,
        valid_until=order.valid_until,
        expiry_notified_at=order.expiry_notified_at,
        cancelled_at=order.cancelled_at,
        cancel_reason=order.cancel_reason,
        refund_amount=None if order.refund_amount is None else format_amount(order.refund_amount),
    )


@router.get(
    "",
    summary="List signature orders",
    description="Orders matching every filter given, newest first. Pages: pass `next_cursor` "
    "back as `cursor` until it is null.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_orders(
    caller: Reader,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this state.")] = None,
    inn: Annotated[str | None, Query(max_length=64, description="Only this INN's.")] = None,
    invoice: Annotated[
        str | None, Query(max_length=64, description="Only this invoice's (its number).")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> OrderPage:
    before_id = cursor_of(cursor)
    with transaction(caller.runtime) as conn:
        found = orders.list_orders(
            conn,
            status=status,
            inn=inn,
            invoice_number=invoice,
            before_id=before_id,
            limit=limit + 1,
        )
    shown, cursor_out = next_cursor([o.id for o in found], limit)
    return OrderPage(items=[order_out(o) for o in found[:shown]], next_cursor=cursor_out)


@router.get(
    "/expiring",
    summary="Signatures about to expire",
    description="Issued signatures whose `valid_until` is today or within `within_days` days "
    "(default TOLOM_SIGNATURE_EXPIRY_WARNING_DAYS), in issue order. Dates are in Bishkek. "
    "Pages: pass `next_cursor` back as `cursor` until it is null.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_expiring(
    caller: Reader,
    within_days: Annotated[
        int | None,
        Query(ge=0, le=MAX_WITHIN_DAYS, description="Days ahead to look (0: today only)."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ExpiringPage:
    after_id = cursor_of(cursor)
    days = (
        within_days
        if within_days is not None
        else caller.runtime.settings.signature_expiry_warning_days
    )
    today = orders.local_date(datetime.now(UTC))
    with transaction(caller.runtime) as conn:
        found = orders.expiring(conn, today, days, after_id=after_id, limit=limit + 1)
    shown, cursor_out = next_cursor([e.order.id for e in found], limit)
    return ExpiringPage(
        items=[
            ExpiringOrder(**order_out(e.order).model_dump(), days_left=e.days_left)
            for e in found[:shown]
        ],
        next_cursor=cursor_out,
    )


@router.get(
    "/{id}",
    summary="One signature order",
    responses=responses(*AUTH, "invalid_request", "order_not_found"),
)
def get_order(order_id: OrderId, caller: Reader) -> Order:
    number = id_of(order_id)
    with transaction(caller.runtime) as conn:
        order = orders.get(conn, number)
    if order is None:
        raise ProblemError("order_not_found", f"Заказ №{number} не найден")
    return order_out(order)


def _transition(
    caller: Writer,
    response: Response,
    order_id: str,
    action: str,
    change: Callable[[Connection, int], orders.Transition],
) -> Order:
    """Run one transition in one transaction; audit it when it changed something."""
    number = id_of(order_id)
    try:
        with transaction(caller.runtime) as conn:
            done = change(conn, number)
            out = order_out(done.order)
            orders.audit_transition(
                conn, done, action=action, actor=caller.actor, address=caller.address
            )
    except orders.OrderNotFound as error:
        raise ProblemError("order_not_found", str(error)) from None
    except orders.OrderStateError as error:
        raise ProblemError("order_state_conflict", str(error)) from None
    except orders.RefundImpossible as error:
        raise ProblemError("refund_impossible", str(error)) from None
    except orders.OrderError as error:
        raise bad_input(core_message(error, "body")) from None
    if not done.changed:
        response.headers["Idempotent-Replayed"] = "true"
    return out


_TRANSITION_RESPONSES = {
    **responses(*AUTH, "invalid_request", "order_not_found", "order_state_conflict"),
    200: {"description": "The order as it now stands.", "headers": replayed_headers()},
}


@router.post(
    "/{id}/start",
    summary="Start producing an order",
    description="paid → in_production. Repeating it answers the order as it stands, with "
    "`Idempotent-Replayed: true`; any other state is a 409, as is an order whose invoice "
    "came from an online application whose applicant's identity is not verified yet (or "
    "was rejected) in the back office. Emits order.in_production; audited as `order.start`.",
    responses=_TRANSITION_RESPONSES,
)
def start_order(order_id: OrderId, caller: Writer, response: Response) -> Order:
    return _transition(caller, response, order_id, "order.start", orders.start)


@router.post(
    "/{id}/issue",
    summary="Issue a produced order",
    description="in_production → issued. A signature is then valid for "
    "TOLOM_SIGNATURE_VALIDITY_MONTHS calendar months from today's date in Bishkek "
    "(`valid_until`). Repeating it answers the order as it stands, with "
    "`Idempotent-Replayed: true`; any other state is a 409. Emits order.issued; audited as "
    "`order.issue`.",
    responses=_TRANSITION_RESPONSES,
)
def issue_order(order_id: OrderId, caller: Writer, response: Response) -> Order:
    months = caller.runtime.settings.signature_validity_months
    return _transition(
        caller,
        response,
        order_id,
        "order.issue",
        lambda conn, number: orders.issue(conn, number, validity_months=months),
    )


@router.post(
    "/{id}/cancel",
    summary="Cancel an order with a refund per policy",
    description="paid | in_production → cancelled. The refund, credited to the balance of "
    "the customer with the invoice's INN, is the whole price before production and "
    "TOLOM_ORDER_REFUND_PERCENT_IN_PRODUCTION per cent of it (rounded down to a tyiyn) after. "
    "Without such a customer it is refused with 409 `refund_impossible` unless `no_refund` "
    "says the money is returned outside Tolom. An issued order is not cancelled (409). "
    "Repeating it answers the order as it stands, with `Idempotent-Replayed: true`, and "
    "refunds nothing more. Emits order.cancelled; audited as `order.cancel`.",
    responses={
        **_TRANSITION_RESPONSES,
        **responses(*AUTH, "invalid_request", "order_state_conflict", "refund_impossible"),
    },
)
def cancel_order(order_id: OrderId, body: CancelIn, caller: Writer, response: Response) -> Order:
    percent = caller.runtime.settings.order_refund_percent_in_production
    return _transition(
        caller,
        response,
        order_id,
        "order.cancel",
        lambda conn, number: orders.cancel(
            conn,
            number,
            body.reason,
            refund_percent_in_production=percent,
            no_refund=body.no_refund,
        ),
    )
