"""`tolom order`: signature orders through production to issue, cancellation, and the daily
job that lists (and announces) signatures about to expire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tolom.billing import orders
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.db import Connection
from tolom.formatting import som
from tolom.money import format_amount
from tolom.settings import get_settings
from tolom.texts import N_

orders_app = typer.Typer(
    help="Signature and carrier orders of paid invoices.", no_args_is_help=True
)

_STATUS_TEXT = {
    "paid": N_("cli.order.status.paid"),
    "in_production": N_("cli.order.status.in_production"),
    "issued": N_("cli.order.status.issued"),
    "cancelled": N_("cli.order.status.cancelled"),
}


def _order_json(order: orders.Order) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": order.id,
        "invoice_number": order.invoice_number,
        "unit": order.unit,
        "inn": order.inn,
        "payment_id": order.payment_id,
        "product_code": order.product_code,
        "kind": order.kind,
        "name": order.name,
        "price": format_amount(order.price),
        "status": order.status,
        "created_at": moment(order.created_at),
        "production_started_at": moment(order.production_started_at),
        "issued_at": moment(order.issued_at),
        "valid_until": order.valid_until.isoformat() if order.valid_until else None,
        "expiry_notified_at": moment(order.expiry_notified_at),
        "cancelled_at": moment(order.cancelled_at),
        "cancel_reason": order.cancel_reason,
        "refund_amount": None
        if order.refund_amount is None
        else format_amount(order.refund_amount),
    }


def _order_line(order: orders.Order) -> str:
    extra = t("cli.order.until", day=order.valid_until.isoformat()) if order.valid_until else ""
    return t(
        "cli.order.line",
        id=order.id,
        status=t(_STATUS_TEXT[order.status]),
        invoice=order.invoice_number,
        inn=order.inn or "—",
        price=format_amount(order.price),
        name=order.name,
        extra=extra,
    )


def _order_human(order: orders.Order) -> str:
    lines = [
        t("cli.order.title", id=order.id, name=order.name, kind=order.kind),
        t(
            "cli.order.details",
            invoice=order.invoice_number,
            unit=order.unit,
            payment=order.payment_id,
            inn=order.inn or t("cli.order.no_inn"),
            price=som(order.price),
        ),
        t("cli.order.status", status=t(_STATUS_TEXT[order.status])),
    ]
    if order.issued_at:
        lines.append(t("cli.order.issued_at", moment=order.issued_at.isoformat()[:19]))
    if order.valid_until:
        lines.append(t("cli.order.valid_until", day=order.valid_until.isoformat()))
    if order.cancelled_at:
        refund = som(order.refund_amount or 0)
        lines.append(t("cli.order.cancelled_at", reason=order.cancel_reason, refund=refund))
    return "\n".join(lines)


@orders_app.command("list")
def order_list(
    status: Annotated[
        str | None, typer.Option(help="paid, in_production, issued or cancelled.")
    ] = None,
    inn: Annotated[str | None, typer.Option(help="Only this INN's orders.")] = None,
    invoice: Annotated[str | None, typer.Option(help="Only this invoice's orders.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Orders, newest first."""
    if status is not None and status not in orders.STATUSES:
        fail(t("cli.order.bad_status", statuses=", ".join(orders.STATUSES)), as_json)
    with transaction() as conn:
        found = orders.list_orders(
            conn, status=status, inn=inn, invoice_number=invoice, limit=limit
        )
    emit(
        [_order_json(o) for o in found],
        as_json,
        "\n".join(_order_line(o) for o in found) or t("cli.order.none"),
    )


@orders_app.command("show")
def order_show(order_id: int, as_json: JsonOption = False) -> None:
    """One order with its state, validity and refund."""
    with transaction() as conn:
        order = orders.get(conn, order_id)
    if order is None:
        fail(t("cli.order.not_found", id=order_id), as_json)
    emit(_order_json(order), as_json, _order_human(order))


def _transition(
    order_id: int,
    action: str,
    change: Callable[[Connection], orders.Transition],
    as_json: bool,
    done_text: str,
) -> None:
    """One transition in one transaction, with its audit line when it changed something."""
    try:
        with transaction() as conn:
            done = change(conn)
            orders.audit_transition(conn, done, action=action, actor=cli_actor())
    except orders.OrderError as error:
        fail(str(error), as_json)
    headline = done_text if done.changed else t("cli.order.unchanged")
    emit(_order_json(done.order), as_json, f"{headline}\n{_order_human(done.order)}")


@orders_app.command("start")
def order_start(order_id: int, as_json: JsonOption = False) -> None:
    """paid → in_production. Audited."""
    _transition(
        order_id,
        "order.start",
        lambda conn: orders.start(conn, order_id),
        as_json,
        t("cli.order.to_production"),
    )


@orders_app.command("issue")
def order_issue(order_id: int, as_json: JsonOption = False) -> None:
    """in_production → issued; a signature gets its valid_until. Audited."""
    months = get_settings().signature_validity_months
    _transition(
        order_id,
        "order.issue",
        lambda conn: orders.issue(conn, order_id, validity_months=months),
        as_json,
        t("cli.order.issued"),
    )


@orders_app.command("cancel")
def order_cancel(
    order_id: int,
    reason: Annotated[str, typer.Option(help="Why (for the audit trail and the customer).")],
    no_refund: Annotated[
        bool,
        typer.Option("--no-refund", help="The money is returned outside Tolom: credit no balance."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """paid | in_production → cancelled, refunding per policy to the customer's balance."""
    percent = get_settings().order_refund_percent_in_production
    _transition(
        order_id,
        "order.cancel",
        lambda conn: orders.cancel(
            conn,
            order_id,
            reason,
            refund_percent_in_production=percent,
            no_refund=no_refund,
        ),
        as_json,
        t("cli.order.cancelled"),
    )


@orders_app.command("expiring")
def order_expiring(
    within_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=366,
            help="Days ahead to look (default TOLOM_SIGNATURE_EXPIRY_WARNING_DAYS).",
        ),
    ] = None,
    announce: Annotated[
        bool,
        typer.Option(
            "--announce",
            help="Also emit signature.expiring for each not announced before (the daily job).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Issued signatures expiring within N days; with --announce, tell the customers once."""
    days = within_days if within_days is not None else get_settings().signature_expiry_warning_days
    today = orders.local_date(datetime.now(UTC))
    with transaction() as conn:
        announced = orders.announce_expiring(conn, today, days) if announce else 0
        found = orders.expiring(conn, today, days)
    data: dict[str, Any] = {
        "today": today.isoformat(),
        "within_days": days,
        "items": [{**_order_json(e.order), "days_left": e.days_left} for e in found],
    }
    if announce:
        data["announced"] = announced
    lines = [
        t("cli.order.expiring", line=_order_line(e.order), days=e.days_left) for e in found
    ] or [t("cli.order.none_expiring", days=days)]
    if announce:
        lines.append(t("cli.order.announced", count=announced))
    emit(data, as_json, "\n".join(lines))
