"""`tolom invoice`: invoices for signatures and carriers (their PDF: cli/documents.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tolom.billing import invoices
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.cli.documents import invoice_pdf
from tolom.formatting import som
from tolom.money import format_amount
from tolom.settings import get_settings

invoice_app = typer.Typer(help="Invoices for signatures and carriers.", no_args_is_help=True)


def _invoice_json(invoice: invoices.Invoice) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "inn": invoice.inn,
        "payer_name": invoice.payer_name,
        "total": format_amount(invoice.total),
        "status": invoice.state(datetime.now(UTC)),
        "expires_at": invoice.expires_at.isoformat(),
        "payment_id": invoice.payment_id,
        "lines": [
            {
                "product": line.product_code,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": format_amount(line.unit_price),
                "amount": format_amount(line.amount),
            }
            for line in invoice.lines
        ],
    }


def _invoice_human(invoice: invoices.Invoice) -> str:
    data = _invoice_json(invoice)
    lines = [
        t("cli.invoice.title_inn", number=invoice.number, payer=invoice.payer_name, inn=invoice.inn)
        if invoice.inn
        else t("cli.invoice.title", number=invoice.number, payer=invoice.payer_name),
        t(
            "cli.invoice.summary",
            total=som(invoice.total),
            status=data["status"],
            day=data["expires_at"][:10],
        ),
    ]
    lines += [
        f"  {x['quantity']} × {x['unit_price']} = {x['amount']}  {x['name']}" for x in data["lines"]
    ]
    return "\n".join(lines)


@invoice_app.command("create")
def invoice_create(
    item: Annotated[
        list[str],
        typer.Option("--item", help="CODE or CODE:QTY from `tolom catalog list`; repeat."),
    ],
    inn: Annotated[str | None, typer.Option(help="Payer's INN, if known.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Payer's name (default: the customer's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue an invoice; prints its number (what the customer types as the account) and total."""
    try:
        items = [invoices.parse_item(i) for i in item]
        with transaction() as conn:
            # Without --name the core names the registered customer with this INN.
            invoice = invoices.create_audited(
                conn,
                items=items,
                payer_name=name,
                inn=inn,
                validity_days=get_settings().invoice_validity_days,
                actor=cli_actor(),
                address=None,
            )
    except invoices.InvoiceError as error:
        if name is None and error.code == "payer":  # no --name and no such customer
            fail(t("cli.invoice.name_needed"), as_json)
        fail(str(error), as_json)
    emit(_invoice_json(invoice), as_json, _invoice_human(invoice))


@invoice_app.command("show")
def invoice_show(number: str, as_json: JsonOption = False) -> None:
    """An invoice with its lines and state."""
    with transaction() as conn:
        invoice = invoices.get(conn, number)
    if invoice is None:
        fail(t("cli.invoice.not_found", number=number), as_json)
    emit(_invoice_json(invoice), as_json, _invoice_human(invoice))


@invoice_app.command("cancel")
def invoice_cancel(number: str, as_json: JsonOption = False) -> None:
    """Cancel an unpaid invoice (agents then get result 79)."""
    try:
        with transaction() as conn:
            invoice = invoices.cancel(conn, number)
    except invoices.InvoiceError as error:
        fail(str(error), as_json)
    emit(_invoice_json(invoice), as_json, t("cli.invoice.cancelled", number=number))


invoice_app.command("pdf")(invoice_pdf)
