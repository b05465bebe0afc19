"""`tolom charge`: look at report charges, cancel a waiting one, refund a taken one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tolom.billing import charges
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.formatting import som
from tolom.money import format_amount
from tolom.texts import N_

charge_app = typer.Typer(
    help="Report charges of the СОЧИ system (waiting, taken, refunded).", no_args_is_help=True
)

STATUS_NAMES = {
    "awaiting_payment": N_("cli.charge.status.awaiting_payment"),
    "charged": N_("cli.charge.status.charged"),
    "cancelled": N_("cli.charge.status.cancelled"),
    "refunded": N_("cli.charge.status.refunded"),
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
    payment = charge.settled_by_payment_id
    paid_by = t("cli.charge.paid_by", payment=payment) if payment else ""
    status = t(STATUS_NAMES[charge.status]) if charge.status in STATUS_NAMES else charge.status
    return (
        f"№{charge.id:<7} {charge.inn}  {som(charge.amount):>14}  "
        f"{status}{paid_by}  {charge.description}"
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
        fail(
            t("cli.charge.bad_status", status=repr(status), statuses=", ".join(STATUS_NAMES)),
            as_json,
        )
    with transaction() as conn:
        found = charges.search(conn, inn=inn, status=status, limit=limit)
        waiting = charges.awaiting_total(conn, inn) if inn is not None else None
    human = "\n".join(_line(c) for c in found) or t("cli.charge.none")
    if waiting and waiting[0]:
        human += "\n" + t("cli.charge.waiting", count=waiting[0], amount=som(waiting[1]))
    emit([_json(c) for c in found], as_json, human)


@charge_app.command("show")
def charge_show(charge_id: int, as_json: JsonOption = False) -> None:
    """One charge."""
    with transaction() as conn:
        charge = charges.get(conn, charge_id)
    if charge is None:
        fail(t("cli.charge.not_found", id=charge_id), as_json)
    emit(_json(charge), as_json, _line(charge))


@charge_app.command("cancel")
def charge_cancel(charge_id: int, as_json: JsonOption = False) -> None:
    """Cancel a charge that still awaits payment (nothing was taken)."""
    try:
        with transaction() as conn:
            charge = charges.cancel_audited(conn, charge_id, actor=cli_actor())
    except charges.ChargeError as error:
        fail(str(error), as_json)
    emit(_json(charge), as_json, t("cli.charge.cancelled", line=_line(charge)))


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
    emit(_json(charge), as_json, t("cli.charge.refunded", line=_line(charge)))
