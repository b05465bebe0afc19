"""`tolom payment`: one payment's documents (its receipt as a PDF and its public link)."""

from __future__ import annotations

import typer

from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.cli.documents import Output, write_pdf
from tolom.documents import receipt_pdf, receipts
from tolom.settings import get_settings

payment_app = typer.Typer(help="Payments: receipts.", no_args_is_help=True)


@payment_app.command("receipt")
def receipt(payment_id: str, output: Output = None, as_json: JsonOption = False) -> None:
    """Save a payment's receipt as a PDF; prints its public confirmation link."""
    if not payment_id.isascii() or not payment_id.isdigit() or len(payment_id) > 18:
        fail(t("cli.payment.bad_number", number=repr(payment_id)), as_json)
    number = int(payment_id)
    settings = get_settings()
    with transaction() as conn:
        document = receipts.document(conn, number, settings, actor=cli_actor())
    if document is None:
        fail(t("cli.payment.not_found", number=number), as_json)
    written = write_pdf(
        receipt_pdf.render(document, settings), output, f"receipt-{number}.pdf", as_json
    )
    if written != "-":
        emit(
            {"payment_id": number, "file": written, "url": document.url},
            as_json,
            t("cli.payment.receipt_saved", number=number, file=written, url=document.url),
        )
