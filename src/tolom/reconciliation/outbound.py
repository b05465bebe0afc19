"""Our registry for an agent and day, written in the agent's own format, to send to them.

The same layout the agent sends us (`formats.RegistryFormat`): QIWI text with its Total
line, CSV with the agent's delimiter, header names and encoding, or XLSX; times in the
format's zone, amounts in som or tyiyn as configured. Our accepted payments of that agent
and business day, in the order they were made, read in pages so a million lines never sit
in memory at once. Reading it back with `reading.parse` gives exactly our payments (tested).
"""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import IO, NamedTuple

from sqlalchemy import Engine, select

from tolom.agents.service import Agent
from tolom.db.schema import payments
from tolom.reconciliation.formats import AUTO, RegistryFormat
from tolom.texts import DEFAULT, N_, texts

PAGE = 20_000
MEDIA_TYPES = {
    "qiwi": "text/plain",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
EXTENSIONS = {"qiwi": "txt", "csv": "csv", "xlsx": "xlsx"}


class OurFile(NamedTuple):
    """Our registry written to a nameless temporary file, at its start; closing the file
    deletes it."""

    file: IO[bytes]
    size: int
    name: str
    media_type: str  # with the charset of a text kind


class OurLine(NamedTuple):
    txn_id: str
    occurred: datetime  # aware
    account: str
    amount: int


def our_lines(engine: Engine, agent: Agent, day: date) -> Iterator[OurLine]:
    """Our accepted payments of the agent's day, oldest first, a page per transaction."""
    after = 0
    query = (
        select(
            payments.c.id,
            payments.c.txn_id,
            payments.c.txn_date,
            payments.c.account,
            payments.c.amount,
        )
        .where(
            payments.c.agent_id == agent.id,
            payments.c.business_date == day,
            payments.c.status == "accepted",
        )
        .order_by(payments.c.id)
        .limit(PAGE)
    )
    while True:
        with engine.connect() as conn:
            rows = conn.execute(query.where(payments.c.id > after)).all()
        for row in rows:
            moment = row.txn_date
            yield OurLine(row.txn_id, moment, row.account, int(row.amount))
        if len(rows) < PAGE:
            return
        after = rows[-1].id


def filename(agent: Agent, day: date, fmt: RegistryFormat) -> str:
    return f"tolom-{agent.code}-{day.isoformat()}.{EXTENSIONS[fmt.kind]}"


def _amount_text(tyiyn: int, fmt: RegistryFormat) -> str:
    if fmt.amount_unit == "tyiyn":
        return str(tyiyn)
    return f"{tyiyn // 100}.{tyiyn % 100:02d}"


def _date_format(fmt: RegistryFormat) -> str:
    return "%d.%m.%Y" if fmt.date_format == AUTO else fmt.date_format


def _cells(line: OurLine, fmt: RegistryFormat, agent: Agent) -> dict[str, object]:
    local = line.occurred.astimezone(fmt.zone(agent.timezone))
    values: dict[str, object] = {
        "txn_id": line.txn_id,
        "account": line.account,
        "amount": _amount_text(line.amount, fmt),
        "date": local.strftime(_date_format(fmt)),
        "time": local.strftime(fmt.time_format),
        "datetime": local.strftime(fmt.datetime_format),
    }
    return {name: values[name] for name in fmt.columns}


def _row(cells: dict[str, object], fmt: RegistryFormat) -> list[object]:
    """Cells in the format's column order (numbers are positions; names follow the
    order the format lists them in)."""
    if all(isinstance(column, int) for column in fmt.columns.values()):
        width = max(int(column) for column in fmt.columns.values())
        row: list[object] = [""] * width
        for name, column in fmt.columns.items():
            row[int(column) - 1] = cells[name]
        return row
    return [cells[name] for name in fmt.columns]


def _header(fmt: RegistryFormat) -> list[object]:
    if all(isinstance(column, int) for column in fmt.columns.values()):
        return _row({name: name for name in fmt.columns}, fmt)
    return [str(column) for column in fmt.columns.values()]


def write(engine: Engine, agent: Agent, day: date, fmt: RegistryFormat, out: IO[bytes]) -> int:
    """Write our registry to `out`; the number of payments in it."""
    count = total = 0
    if fmt.kind == "xlsx":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet(fmt.sheet or texts(DEFAULT)(N_("registry.sheet")))
        if fmt.header:
            sheet.append(_header(fmt))
        for line in our_lines(engine, agent, day):
            cells = _cells(line, fmt, agent)
            if fmt.amount_unit == "som":
                cells["amount"] = Decimal(line.amount) / 100  # a number in Excel, exact
            sheet.append(_row(cells, fmt))
            count += 1
            total += line.amount
        if fmt.total_line:  # the Total line's amount is in som, whatever the lines' unit
            sheet.append(["Total:", count, f"{total // 100}.{total % 100:02d}"])
        book.save(out)
        return count
    text = io.TextIOWrapper(out, encoding=fmt.encoding, newline="", write_through=True)
    try:
        if fmt.kind == "qiwi":
            for line in our_lines(engine, agent, day):
                text.write("\t".join(str(c) for c in _row(_cells(line, fmt, agent), fmt)) + "\n")
                count += 1
                total += line.amount
        else:
            writer = csv.writer(text, delimiter=fmt.delimiter, lineterminator="\r\n")
            if fmt.header:
                writer.writerow(_header(fmt))
            for line in our_lines(engine, agent, day):
                writer.writerow(_row(_cells(line, fmt, agent), fmt))
                count += 1
                total += line.amount
        if fmt.total_line:
            text.write(f"Total: {count} {total // 100}.{total % 100:02d}\n")
    finally:
        text.detach()
    return count


def media_type(fmt: RegistryFormat) -> str:
    """The file's media type; a text kind names its encoding."""
    if fmt.kind == "xlsx":
        return MEDIA_TYPES["xlsx"]
    return f"{MEDIA_TYPES[fmt.kind]}; charset={codecs.lookup(fmt.encoding).name}"


def temporary(engine: Engine, agent: Agent, day: date, fmt: RegistryFormat) -> OurFile:
    """Our registry in a temporary file, to be sent: a million lines never sit in memory."""
    file = tempfile.TemporaryFile(prefix="tolom-registry-")  # noqa: SIM115
    try:
        write(engine, agent, day, fmt, file)
        size = file.tell()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return OurFile(file, size, filename(agent, day, fmt), media_type(fmt))
