"""`tolom charge`: look at report charges, cancel a waiting one, refund a taken one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tolom.billing import charges
from tolom.cli.common import JsonOption, cli_actor, emit, fail, transaction
from tolom.money import format_amount

charge_app = typer.Typer(
    help="Report charges of the СОЧИ system (waiting, taken, refunded).", no_args_is_help=True
)

STATUS_NAMES = {
    "awaiting_payment": "ожидает оплаты",
    "charged": "списано",
    "cancelled": "отменено",
    "refunded": "возвращено",
}


def _json(charge: charges.Charge) -> dict[str, Any]:
    return {
        "id": charge.id,
        "inn": charge.inn,
        "customer_name": charge.customer_name,
        "amount": format_amount(charge.amount),
        "tariff": charge.tariff,
        "report_id": charge.report.report_id,
        "state_body": charge.report.state_body,
        "form": charge.report.form,
        "period": charge.report.period,
        "description": charge.description,
        "status": charge.status,
        "created_at": charge.created_at,
        "settled_at": charge.settled_at,
        "closed_at": charge.closed_at,
        "payment_id": charge.settled_by_payment_id,
        "refund_reason": charge.refund_reason,
        "client": charge.client,
    }


def _line(charge: charges.Charge) -> str:
    paid_by = f", платёж №{charge.settled_by_payment_id}" if charge.settled_by_payment_id else ""
    return (
        f"№{charge.id:<7} {charge.inn}  {format_amount(charge.amount):>10} сом  "
        f"{STATUS_NAMES.get(charge.status, charge.status)}{paid_by}  {charge.description}"
    )


@charge_app.command("list")
def charge_list(
    inn: Annotated[str | None, typer.Option(help="Only this customer.")] = None,
    status: Annotated[
        str | None, typer.Option(help="awaiting_payment | charged | cancelled | refunded")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The latest charges, newest first."""
    if status is not None and status not in STATUS_NAMES:
        fail(f"неизвестный статус {status!r}; допустимы: {', '.join(STATUS_NAMES)}", as_json)
    with transaction() as conn:
        found = charges.search(conn, inn=inn, status=status, limit=limit)
        waiting = charges.awaiting_total(conn, inn) if inn is not None else None
    human = "\n".join(_line(c) for c in found) or "Списаний нет."
    if waiting and waiting[0]:
        human += f"\nОжидают оплаты: {waiting[0]} на {format_amount(waiting[1])} сом."
    emit([_json(c) for c in found], as_json, human)


@charge_app.command("show")
def charge_show(charge_id: int, as_json: JsonOption = False) -> None:
    """One charge."""
    with transaction() as conn:
        charge = charges.get(conn, charge_id)
    if charge is None:
        fail(f"списание №{charge_id} не найдено", as_json)
    emit(_json(charge), as_json, _line(charge))


@charge_app.command("cancel")
def charge_cancel(charge_id: int, as_json: JsonOption = False) -> None:
    """Cancel a charge that still awaits payment (nothing was taken)."""
    try:
        with transaction() as conn:
            charge = charges.cancel_audited(conn, charge_id, actor=cli_actor())
    except charges.ChargeError as error:
        fail(str(error), as_json)
    emit(_json(charge), as_json, f"Отменено: {_line(charge)}")


@charge_app.command("refund")
def charge_refund(
    charge_id: int,
    reason: Annotated[str, typer.Option(help="Why (kept with the reversing entry).")],
    as_json: JsonOption = False,
) -> None:
    """Return a taken charge to the customer's balance by a reversing entry."""
    try:
        with transaction() as conn:
            charge = charges.refund_audited(conn, charge_id, reason, actor=cli_actor())
    except charges.ChargeError as error:
        fail(str(error), as_json)
    emit(_json(charge), as_json, f"Возвращено на баланс: {_line(charge)}")
