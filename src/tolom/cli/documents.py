"""`tolom invoice pdf`: documents as files, for operators who print or send them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tolom.billing import invoices
from tolom.cli.common import JsonOption, emit, fail, t, transaction
from tolom.identifiers import is_invoice_number
from tolom.settings import get_settings

Output = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--output",
        help="Where to write the PDF (default: a file named after the document in the "
        "current directory; '-' for standard output).",
    ),
]


def write_pdf(content: bytes, output: Path | None, default_name: str, as_json: bool) -> str:
    """Write the PDF where asked; the name written to (or "-")."""
    if output is not None and str(output) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return "-"
    path = output or Path(default_name)
    try:
        path.write_bytes(content)
    except OSError as error:
        fail(t("cli.write_failed", path=path, reason=error.strerror or error), as_json)
    return str(path)


def invoice_pdf(number: str, output: Output = None, as_json: JsonOption = False) -> None:
    """Save an invoice as a PDF with the company's payment instructions."""
    if not is_invoice_number(number):
        fail(t("cli.invoice.bad_number", number=repr(number)), as_json)
    with transaction() as conn:
        invoice = invoices.get(conn, number)
    if invoice is None:
        fail(t("cli.invoice.not_found", number=number), as_json)
    from tolom.documents import invoice_pdf as invoice_document  # fpdf: only when writing one

    settings = get_settings()
    written = write_pdf(
        invoice_document.render(invoice, settings), output, f"invoice-{number}.pdf", as_json
    )
    if not settings.company_bank_account:
        typer.secho(
            t("cli.invoice.no_bank"),
            fg="yellow",
            err=True,
        )
    if written != "-":
        emit(
            {"invoice_number": number, "file": written},
            as_json,
            t("cli.invoice.saved", number=number, file=written),
        )
