"""`tolom export`: files for the accountants — payments as CSV or XLSX, as the API gives them."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tolom.backoffice import exports
from tolom.cli.common import JsonOption, emit, engine, fail, t, transaction
from tolom.payments import records

export_app = typer.Typer(help="Exports for the accountants (CSV, XLSX).", no_args_is_help=True)

PROGRESS_EVERY = 50_000  # rows between progress lines on stderr
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(text: str | None, option: str, as_json: bool) -> date | None:
    if text is None:
        return None
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    fail(t("cli.export.bad_date", option=option, text=repr(text)), as_json)


def _format_of(chosen: str | None, output: Path, as_json: bool) -> str:
    if chosen is not None:
        if chosen not in exports.FORMATS:
            fail(
                t("cli.export.allowed", option="--format", values=", ".join(exports.FORMATS)),
                as_json,
            )
        return chosen
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in exports.FORMATS:
        fail(t("cli.export.format_needed"), as_json)
    return suffix


def _with_progress(rows: Iterable[exports.ExportRow]) -> Iterator[exports.ExportRow]:
    """The rows, with a line on stderr every PROGRESS_EVERY of them (rewritten on a tty)."""
    interactive = sys.stderr.isatty()
    written = 0
    for row in rows:
        yield row
        written += 1
        if written % PROGRESS_EVERY == 0:
            text = t("cli.export.progress", rows=f"{written:,}".replace(",", " "))
            typer.echo(f"\r{text}" if interactive else text, err=True, nl=not interactive)
    if interactive and written >= PROGRESS_EVERY:
        typer.echo("", err=True)


@export_app.command("payments")
def export_payments(
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")],
    date_from: Annotated[
        str | None, typer.Option("--from", help="First business day, YYYY-MM-DD.")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Last business day, YYYY-MM-DD.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Agent code, or cash_desk / bank.")] = None,
    service: Annotated[str | None, typer.Option(help="sochi | eds")] = None,
    status: Annotated[str | None, typer.Option(help="accepted | reversed")] = None,
    account: Annotated[str | None, typer.Option(help="INN or invoice number.")] = None,
    format_: Annotated[
        str | None,
        typer.Option("--format", help="csv | xlsx; by default the file's extension."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Payments matching the filters, newest first, to a CSV or XLSX file (as the API's
    GET /payments/export). Written to FILE.part first, renamed when complete."""
    chosen = _format_of(format_, output, as_json)
    if service is not None and service not in exports.SERVICE_NAMES:
        fail(
            t("cli.export.allowed", option="--service", values=", ".join(exports.SERVICE_NAMES)),
            as_json,
        )
    if status is not None and status not in exports.STATUS_NAMES:
        fail(
            t("cli.export.allowed", option="--status", values=", ".join(exports.STATUS_NAMES)),
            as_json,
        )
    first, last = _day(date_from, "--from", as_json), _day(date_to, "--to", as_json)
    if first is not None and last is not None and first > last:
        fail(t("cli.export.reversed_range"), as_json)
    where = records.PaymentFilter(
        agent=agent,
        service=service,
        status=status,
        date_from=first,
        date_to=last,
        account=account,
    )
    with transaction() as conn:
        try:
            exports.check_size(conn, where)
        except exports.ExportTooLarge as error:
            fail(str(error), as_json)
    partial = output.with_name(output.name + ".part")
    db = engine()
    try:
        rows = _with_progress(exports.payments_rows(db, where))
        with partial.open("wb") as file:
            if chosen == "csv":
                written = exports.write_csv(rows, file)
            else:
                written = exports.write_xlsx(rows, file)
        os.replace(partial, output)
    except OSError as error:
        partial.unlink(missing_ok=True)
        fail(t("cli.write_failed", path=output, reason=error.strerror or error), as_json)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        db.dispose()
    emit(
        {"file": str(output), "format": chosen, "rows": written},
        as_json,
        t("cli.export.done", count=written, file=output),
    )
