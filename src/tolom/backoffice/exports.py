"""Exports of payments for accountants: CSV and XLSX, read and written page by page.

An export may cover a million payments, so rows are read in keyset pages
(`records.search`, newest first, as the list shows them) and written as they come: memory
stays flat whatever the period. The API, the CLI and the web pages all export through
here, so the columns and their formats are decided once.

CSV (for Excel in a Russian locale, and for programs): UTF-8 with a byte order mark,
`;` between fields, CRLF line ends, a Russian header row, amounts as `1510,00` (no
grouping, a comma and always two decimals: tyiyn = the digits without the comma), days
as `YYYY-MM-DD` and times as `YYYY-MM-DD HH:MM:SS` in Asia/Bishkek.

XLSX: amounts are numbers with two decimals shown, days and times real dates in
Asia/Bishkek, every text a string cell (never a formula), the header frozen.

Spreadsheet formula injection: a CSV text field starting with `=`, `+`, `-`, `@`, a tab or
a carriage return gets a leading `'`, so Excel shows it rather than evaluates it.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, select

from tolom.db.schema import customers, invoices, payments
from tolom.money import format_amount
from tolom.payments import records
from tolom.texts import N_, Refusal
from tolom.timestamps import HOME_ZONE

# openpyxl is imported where a workbook is written, not here: it costs every server process
# ~0.05 s of CPU at startup, and most never write one (docs/operations.md).
if TYPE_CHECKING:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

ZONE = HOME_ZONE
PAGE_SIZE = 5000
# An XLSX sheet holds 1 048 576 rows; one rule for both formats keeps them interchangeable.
MAX_ROWS = 1_000_000
CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS: Final = ("csv", "xlsx")

STATUS_NAMES = {"accepted": "принят", "reversed": "сторнирован"}
SERVICE_NAMES = {"sochi": "СОЧИ", "eds": "ЭЦП"}

# (header, XLSX column width in characters)
COLUMNS: Final = (
    ("Квитанция", 12),
    ("Рабочий день", 13),
    ("Время оплаты (Бишкек)", 20),
    ("Агент/канал", 14),
    ("txn_id", 18),
    ("Услуга", 8),
    ("Лицевой счёт (ИНН или счёт)", 20),
    ("Абонент/плательщик", 36),
    ("Сумма, сом", 14),
    ("Статус", 13),
    ("Причина сторно", 30),
    ("Код платежа", 12),
    ("Документ банка", 18),
    ("Вносил (касса/банк)", 28),
)
HEADER: Final = tuple(name for name, _ in COLUMNS)

_RISKY_START = ("=", "+", "-", "@", "\t", "\r")
_BOM = "\ufeff"
_CSV_BATCH = 500  # rows per chunk of a streamed CSV
# Control characters XML 1.0 cannot carry (tab, line feed and carriage return it can).
_NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ExportTooLarge(Refusal):
    """More payments match than one export may hold."""

    def __init__(self, limit: int) -> None:
        grouped = f"{limit:,}".replace(",", " ")
        super().__init__(N_("export.error.too_large"), limit=grouped)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One payment as the exports show it."""

    receipt: int
    business_date: date
    paid_at: datetime  # txn_date in Asia/Bishkek
    agent: str
    txn_id: str
    service: str
    account: str
    payer_name: str | None  # the customer (sochi) or the invoice's payer (eds)
    amount: int  # tyiyn
    status: str  # accepted | reversed
    reversal_reason: str | None
    payment_code: str | None
    bank_reference: str | None
    depositor: str | None  # who brought the cash or sent the transfer, as recorded


def check_size(conn: Connection, where: records.PaymentFilter, limit: int | None = None) -> int:
    """How many payments the export of `where` will hold; ExportTooLarge beyond `limit`
    (MAX_ROWS by default).

    Counted first, so a refusal comes before the first byte rather than mid-file.
    """
    limit = MAX_ROWS if limit is None else limit
    found = records.count(conn, where, at_most=limit + 1)
    if found > limit:
        raise ExportTooLarge(limit)
    return found


def payments_rows(
    db: Connection | Engine, where: records.PaymentFilter, *, page_size: int = PAGE_SIZE
) -> Iterator[ExportRow]:
    """The payments matching `where`, newest first, read `page_size` at a time.

    Given an Engine, each page is read in a transaction of its own, so a long export holds
    no transaction (nor, on SQLite, the write lock) while it writes. The keyset keeps pages
    from overlapping; payments that arrive during the export are not in it.
    """
    if page_size < 1:
        raise ValueError("page_size must be positive")
    before: int | None = None
    while True:
        if isinstance(db, Engine):
            with db.begin() as conn:
                page = _page(conn, where, before, page_size)
        else:
            page = _page(db, where, before, page_size)
        yield from page
        if len(page) < page_size:
            return
        before = page[-1].receipt


def _page(
    conn: Connection, where: records.PaymentFilter, before: int | None, size: int
) -> list[ExportRow]:
    found = records.search(conn, where, before_id=before, limit=size)
    names = _payer_names(conn, [p.id for p in found])
    return [_row(p, names.get(p.id)) for p in found]


def _payer_names(conn: Connection, ids: list[int]) -> dict[int, str]:
    """Who paid, per payment id: the invoice's payer (eds) or the customer (sochi)."""
    if not ids:
        return {}
    rows = conn.execute(
        select(payments.c.id, invoices.c.payer_name, customers.c.name)
        .outerjoin(invoices, invoices.c.id == payments.c.invoice_id)
        .outerjoin(customers, customers.c.id == payments.c.customer_id)
        .where(payments.c.id.in_(ids))
    )
    found: dict[int, str] = {}
    for r in rows:
        name = r.payer_name if r.payer_name is not None else r.name
        if name is not None:
            found[r.id] = name
    return found


def _row(record: records.PaymentRecord, payer_name: str | None) -> ExportRow:
    manual = record.manual
    return ExportRow(
        receipt=record.id,
        business_date=record.business_date,
        paid_at=record.txn_date.astimezone(ZONE),
        agent=record.agent,
        txn_id=record.txn_id,
        service=record.service,
        account=record.account,
        payer_name=payer_name,
        amount=record.amount,
        status=record.status,
        reversal_reason=record.reversal.reason if record.reversal else None,
        payment_code=manual.payment_code if manual else None,
        bank_reference=manual.bank_reference if manual else None,
        depositor=manual.payer if manual else None,
    )


def filename(where: records.PaymentFilter, fmt: str) -> str:
    """`payments-2026-11-01_2026-11-21.csv`: the days covered, as far as the filter says."""
    first, last = where.date_from, where.date_to
    if first is not None and last is not None:
        span = f"{first.isoformat()}_{last.isoformat()}"
    elif first is not None:
        span = f"from-{first.isoformat()}"
    elif last is not None:
        span = f"to-{last.isoformat()}"
    else:
        span = "all"
    return f"payments-{span}.{fmt}"


# --- CSV ---------------------------------------------------------------------------------


def neutralise(text: str) -> str:
    """A text that a spreadsheet would read as a formula, made plain with a leading `'`."""
    return "'" + text if text.startswith(_RISKY_START) else text


def _csv_text(value: str | None) -> str:
    return "" if value is None else neutralise(value)


def csv_amount(tyiyn: int) -> str:
    """`1510,00`: a comma, as Excel in a Russian locale reads numbers; no grouping."""
    return format_amount(tyiyn).replace(".", ",")


def _csv_fields(row: ExportRow) -> list[str]:
    return [
        str(row.receipt),
        row.business_date.isoformat(),
        row.paid_at.strftime("%Y-%m-%d %H:%M:%S"),
        _csv_text(row.agent),
        _csv_text(row.txn_id),
        SERVICE_NAMES.get(row.service, row.service),
        _csv_text(row.account),
        _csv_text(row.payer_name),
        csv_amount(row.amount),
        STATUS_NAMES.get(row.status, row.status),
        _csv_text(row.reversal_reason),
        _csv_text(row.payment_code),
        _csv_text(row.bank_reference),
        _csv_text(row.depositor),
    ]


def csv_chunks(rows: Iterable[ExportRow]) -> Iterator[bytes]:
    """The CSV file as UTF-8 chunks (the first starts with the BOM), for streaming."""
    return csv_table_chunks(HEADER, (_csv_fields(row) for row in rows))


def csv_table_chunks(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[bytes]:
    """Any table as this module's CSV (BOM, `;`, CRLF), in UTF-8 chunks for streaming. The
    caller makes each field safe (`neutralise` for texts)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    pending = 0
    yield (_BOM + _take(buffer)).encode("utf-8")
    for row in rows:
        writer.writerow(row)
        pending += 1
        if pending == _CSV_BATCH:
            yield _take(buffer).encode("utf-8")
            pending = 0
    if pending:
        yield _take(buffer).encode("utf-8")


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def write_csv(rows: Iterable[ExportRow], stream: IO[bytes]) -> int:
    """Write the CSV to a binary stream; returns the number of payments written."""
    written = 0

    def counted() -> Iterator[ExportRow]:
        nonlocal written
        for row in rows:
            written += 1
            yield row

    for chunk in csv_chunks(counted()):
        stream.write(chunk)
    return written


# --- XLSX --------------------------------------------------------------------------------

_AMOUNT_FORMAT = "#,##0.00"
_DAY_FORMAT = "DD.MM.YYYY"
_TIME_FORMAT = "DD.MM.YYYY HH:MM:SS"


def _xlsx_text(sheet: WriteOnlyWorksheet, value: str | None) -> Any:
    """A string cell whatever the text: openpyxl would store `=…` as a formula."""
    if value is None:
        return None
    clean = _NOT_IN_XML.sub("\ufffd", value)
    if not clean.startswith("="):
        return clean  # openpyxl stores any other str as a string cell
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=clean)
    cell.data_type = "s"
    return cell


def xlsx_text(sheet: WriteOnlyWorksheet, value: str | None) -> Any:
    """A free text as a cell of any write-only workbook (the reconciliation act too): never a
    formula, never a character XML cannot hold."""
    return _xlsx_text(sheet, value)


def _xlsx_formatted(sheet: WriteOnlyWorksheet, value: Any, number_format: str) -> WriteOnlyCell:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    cell.number_format = number_format
    return cell


def _xlsx_cells(sheet: WriteOnlyWorksheet, row: ExportRow) -> list[Any]:
    return [
        row.receipt,
        _xlsx_formatted(sheet, row.business_date, _DAY_FORMAT),
        # Excel has no time zones: the Bishkek wall time, as the header says.
        _xlsx_formatted(sheet, row.paid_at.replace(tzinfo=None), _TIME_FORMAT),
        _xlsx_text(sheet, row.agent),
        _xlsx_text(sheet, row.txn_id),
        SERVICE_NAMES.get(row.service, row.service),
        _xlsx_text(sheet, row.account),
        _xlsx_text(sheet, row.payer_name),
        # Decimal, not float: written exactly as digits.
        _xlsx_formatted(sheet, Decimal(row.amount).scaleb(-2), _AMOUNT_FORMAT),
        STATUS_NAMES.get(row.status, row.status),
        _xlsx_text(sheet, row.reversal_reason),
        _xlsx_text(sheet, row.payment_code),
        _xlsx_text(sheet, row.bank_reference),
        _xlsx_text(sheet, row.depositor),
    ]


def write_xlsx(rows: Iterable[ExportRow], target: str | Path | IO[bytes]) -> int:
    """Write the XLSX (openpyxl's write-only mode: rows go to disk as they come) to a path or
    a binary stream; returns the number of payments written."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Платежи")
    sheet.freeze_panes = "A2"
    for index, (_, width) in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    bold, wrap = Font(bold=True), Alignment(wrap_text=True, vertical="top")
    header = []
    for name in HEADER:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font, cell.alignment = bold, wrap
        header.append(cell)
    sheet.append(header)
    written = 0
    for row in rows:
        sheet.append(_xlsx_cells(sheet, row))
        written += 1
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{written + 1}"
    book.save(target)  # a path or a binary stream
    return written


def xlsx_file(rows: Iterable[ExportRow]) -> tuple[IO[bytes], int]:
    """The XLSX in a nameless temporary file, rewound, and its size.

    openpyxl finishes the file only at the end, so it is built on disk before it is sent;
    the file has no name and goes away when closed (by `file_chunks`, or here on error),
    even if the client hangs up mid-way.
    """
    file = tempfile.TemporaryFile(prefix="tolom-export-", suffix=".xlsx")  # noqa: SIM115
    try:
        write_xlsx(rows, file)
        size = file.tell()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file, size


def file_chunks(file: IO[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    """The file's bytes, then the file closed (which deletes a TemporaryFile)."""
    with file:
        while chunk := file.read(size):
            yield chunk
