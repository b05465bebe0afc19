"""A registry's text read into lines, or refused with the line and the field named.

`reading.parse` is the entry: text kinds are read here, in this process; an XLSX sheet's
rows come from `xlsx`'s child process and are read here too (in the child).

All or nothing: the first bad line refuses the whole file (`RegistryError`), so nothing of
a broken registry is ever imported. Amounts become integer tyiyn without floats (an XLSX
number is read through its shortest decimal text). Each line's moment is read in the
format's time zone and its business day is its date in the agent's zone, which is how our
payments' `business_date` was set: a payment at 23:59:59 Bishkek time is on the same day
on both sides whatever zone the registry was written in.

The loop is the hot path of a million-line import: dates are parsed once per distinct
text, times by splitting, and zone conversions skipped when the registry is written in
the agent's own zone.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tolom.formatting import som
from tolom.identifiers import is_inn, is_invoice_number_shape, txn_key
from tolom.reconciliation.formats import AUTO, RegistryFormat
from tolom.texts import DEFAULT, N_, Refusal, Texts, texts

MAX_LINES = 2_000_000
PROGRESS_EVERY = 50_000
MAX_FIELD = 64
_DIGITS = re.compile(r"[0-9]{1,20}")
_SOM = re.compile(r"(?P<som>[0-9]{1,15})(?:[.,](?P<tyiyn>[0-9]{1,2}))?")
_TYIYN = re.compile(r"[0-9]{1,17}")
_TOTAL = re.compile(
    r"\s*(?:total|итого)\s*:?\s*(?P<count>[0-9]{1,9})\s+(?P<amount>[0-9 \u00a0\u202f]*[0-9](?:[.,][0-9]{1,2})?)\s*",
    re.IGNORECASE,
)
_GROUPING = str.maketrans("", "", " \u00a0\u202f")
FIELD_NAMES = {
    "txn_id": N_("registry.field.txn_id"),
    "date": N_("registry.field.date"),
    "time": N_("registry.field.time"),
    "datetime": N_("registry.field.datetime"),
    "account": N_("registry.field.account"),
    "amount": N_("registry.field.amount"),
}


def _field_name(t: Texts, field: str) -> str:
    return t(FIELD_NAMES[field]) if field in FIELD_NAMES else field


class RegistryError(Refusal):
    """Why a registry file is refused: the line (1-based) and field, when there is one.

    A refusal worded by key (`texts.Refusal`): `str()` is the Russian text with the line
    and field named first ("Строка 3, поле «сумма»: …"), `said(language)` the same in
    another language, `reason` the why alone (the API names the line and field apart).
    A count is worded with `RegistryError.plural(key, count, count=count)`; a value named
    `field_name` is one of our fields, named in the reader's language. Values are plain
    (text, numbers): the XLSX child process sends them through a pipe (`xlsx._child`).
    """

    def __init__(
        self,
        key: str,
        /,
        *,
        line: int | None = None,
        field: str | None = None,
        counted: int | None = None,
        **values: Any,
    ) -> None:
        self.key = key
        self.values = values
        self.counted = counted
        self.line = line
        self.field = field
        ValueError.__init__(self, self.said(DEFAULT))

    @classmethod
    def plural(
        cls,
        key: str,
        count: int,
        /,
        *,
        line: int | None = None,
        field: str | None = None,
        **values: Any,
    ) -> RegistryError:
        """A refusal whose text agrees with `count` (a plural catalogue entry)."""
        return cls(key, line=line, field=field, counted=count, **values)

    def reason_in(self, language: str | None) -> str:
        """The why alone, in `language`."""
        t = texts(language)
        values = self.values
        if "field_name" in values:
            values = {**values, "field_name": _field_name(t, values["field_name"])}
        if self.counted is not None:
            return t.plural(self.key, self.counted, **values)
        return t(self.key, **values)

    @property
    def reason(self) -> str:
        return self.reason_in(DEFAULT)

    def said(self, language: str | None) -> str:
        t = texts(language)
        reason = self.reason_in(language)
        if self.line is not None and self.field is not None:
            field = _field_name(t, self.field)
            return t("registry.error.at_line_field", line=self.line, field=field, reason=reason)
        if self.line is not None:
            return t("registry.error.at_line", line=self.line, reason=reason)
        if self.field is not None:
            return t("registry.error.at_field", field=_field_name(t, self.field), reason=reason)
        return reason


class Line(NamedTuple):
    line_no: int
    txn_id: str
    occurred_at: str  # ISO 8601 with the offset of the registry's zone, as written
    business_date: date  # the agent-local date
    account: str
    amount: int  # tyiyn


class ParsedRegistry(NamedTuple):
    lines: list[Line]
    total: int  # tyiyn, the sum of the lines (verified against the Total line if any)

    @property
    def days(self) -> set[date]:
        return {line.business_date for line in self.lines}


Row = tuple[int, list[Any]]  # (line number in the file, cells)


# --- reading rows out of the file ---------------------------------------------------------


def _decode(content: bytes, encoding: str) -> str:
    if not content.strip():
        raise RegistryError(N_("registry.error.empty"))
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return content.decode(codec)
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise RegistryError(
            N_("registry.error.encoding"),
            line=line,
            encoding=encoding,
            byte=f"{content[error.start]:02x}",
        ) from error


def _text_rows(text: str, kind: str, delimiter: str) -> Iterator[Row]:
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise RegistryError(N_("registry.error.nul_byte"), line=line)
    if kind == "qiwi":
        for number, raw in enumerate(text.splitlines(), start=1):
            yield number, raw.split("\t")
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as error:
        raise RegistryError(
            N_("registry.error.csv"), line=reader.line_num, error=str(error)
        ) from error


def _blank(cells: list[Any]) -> bool:
    first = cells[0] if cells else None
    if type(first) is str and first.strip():
        return False
    return all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells)


def _may_be_total(cells: list[Any]) -> bool:
    """Cheap pre-test: the Total line starts with a word, a payment line with its txn_id."""
    first = cells[0]
    return not (type(first) is str and first[:1].isdigit()) and not isinstance(first, int)


# --- fields -------------------------------------------------------------------------------


def _text(cell: Any, line: int, field: str) -> str:
    if type(cell) is str:  # the common case, first
        value = cell.strip()
        if value and len(value) <= MAX_FIELD and value.isprintable():
            return value
    if cell is None:
        raise RegistryError(N_("registry.error.blank"), line=line, field=field)
    if isinstance(cell, bool):
        raise RegistryError(N_("registry.error.not_text"), line=line, field=field)
    if isinstance(cell, float):
        if not cell.is_integer():
            raise RegistryError(
                N_("registry.error.not_integer"), line=line, field=field, value=str(cell)
            )
        cell = int(cell)
    value = str(cell).strip()
    if not value:
        raise RegistryError(N_("registry.error.blank"), line=line, field=field)
    if len(value) > MAX_FIELD or not value.isprintable():
        raise RegistryError(N_("registry.error.bad_text"), line=line, field=field)
    return value


def _txn_id(cell: Any, line: int, gateway: bool) -> str:
    value = _text(cell, line, "txn_id")
    if not gateway:
        return value
    if _DIGITS.fullmatch(value) is None:
        raise RegistryError(N_("registry.error.txn_id"), line=line, field="txn_id", value=value)
    return txn_key(value)


def _account(cell: Any, line: int) -> str:
    """An INN (14 digits) or an invoice number (16 digits): the only accounts a payment can
    have. The invoice's check digit is not judged: a line is what the agent says it paid."""
    value = _text(cell, line, "account")
    if isinstance(cell, int | float) and value.isdigit() and len(value) < 14:
        value = value.zfill(14)  # Excel drops an INN's leading zeros when it stores a number
    if not (is_inn(value) or is_invoice_number_shape(value)):
        shown = value if len(value) <= 32 else value[:32] + "…"
        raise RegistryError(N_("registry.error.account"), line=line, field="account", value=shown)
    return value


def _amount(cell: Any, line: int, unit: str) -> int:
    if isinstance(cell, bool) or cell is None:
        raise RegistryError(N_("registry.error.amount_blank"), line=line, field="amount")
    if isinstance(cell, int | float | Decimal):
        try:
            number = Decimal(str(cell))
        except InvalidOperation as error:
            raise RegistryError(
                N_("registry.error.not_number"), line=line, field="amount", value=str(cell)
            ) from error
        scaled = number * 100 if unit == "som" else number
        if scaled != scaled.to_integral_value():
            key = (
                N_("registry.error.som_decimals")
                if unit == "som"
                else N_("registry.error.tyiyn_fraction")
            )
            raise RegistryError(key, line=line, field="amount", value=str(cell))
        value = int(scaled)
    else:
        text = str(cell).strip()
        if not text.isdigit() and not text.replace(".", "", 1).isdigit():
            text = text.translate(_GROUPING)
        match = (_SOM if unit == "som" else _TYIYN).fullmatch(text)
        if match is None:
            shown = str(cell).strip()[:30]
            key = (
                N_("registry.error.som_format")
                if unit == "som"
                else N_("registry.error.tyiyn_format")
            )
            raise RegistryError(key, line=line, field="amount", value=shown)
        if unit == "som":
            value = int(match["som"]) * 100 + int((match["tyiyn"] or "0").ljust(2, "0"))
        else:
            value = int(text)
    if value <= 0:
        raise RegistryError(N_("registry.error.not_positive"), line=line, field="amount")
    return value


class _Clock:
    """Dates and times of one file: each distinct date text parsed once."""

    def __init__(self, fmt: RegistryFormat) -> None:
        self.fmt = fmt
        self.dates: dict[str, date] = {}

    def day(self, cell: Any, line: int) -> date:
        if isinstance(cell, datetime):
            return cell.date()
        if isinstance(cell, date):
            return cell
        text = _text(cell, line, "date")
        found = self.dates.get(text)
        if found is None:
            found = self._parse_day(text, line)
            _check_year(found.year, line)
            if len(self.dates) < 10_000:
                self.dates[text] = found
        return found

    def _parse_day(self, text: str, line: int) -> date:
        try:
            if self.fmt.date_format != AUTO:
                return datetime.strptime(text, self.fmt.date_format).date()
            if len(text) == 10 and text[2] == "." and text[5] == ".":
                return date(int(text[6:]), int(text[3:5]), int(text[:2]))
            if len(text) == 10 and text[4] == "-" and text[7] == "-":
                return date.fromisoformat(text)
        except ValueError:
            pass
        if self.fmt.date_format == AUTO:
            raise RegistryError(
                N_("registry.error.not_date_auto"), line=line, field="date", value=text[:30]
            )
        raise RegistryError(
            N_("registry.error.not_date"),
            line=line,
            field="date",
            value=text[:30],
            format=self.fmt.date_format,
        )

    def clock_time(self, cell: Any, line: int) -> time:
        if isinstance(cell, datetime):
            return cell.time()
        if isinstance(cell, time):
            return cell
        text = _text(cell, line, "time")
        try:
            if self.fmt.time_format == "%H:%M:%S":
                if len(text) == 8 and text[2] == ":" and text[5] == ":" and text.isascii():
                    return time(int(text[:2]), int(text[3:5]), int(text[6:]))
                hours, minutes, seconds = text.split(":")
                if len(minutes) == 2 and len(seconds) == 2 and 1 <= len(hours) <= 2:
                    return time(int(hours), int(minutes), int(seconds))
            else:
                return datetime.strptime(text, self.fmt.time_format).time()
        except ValueError:
            pass
        raise RegistryError(
            N_("registry.error.not_time"),
            line=line,
            field="time",
            value=text[:30],
            format=self.fmt.time_format,
        )

    def moment(self, cell: Any, line: int) -> datetime:
        if isinstance(cell, datetime):
            return cell.replace(tzinfo=None)
        text = _text(cell, line, "datetime")
        try:
            return datetime.strptime(text, self.fmt.datetime_format)
        except ValueError:
            raise RegistryError(
                N_("registry.error.not_datetime"),
                line=line,
                field="datetime",
                value=text[:30],
                format=self.fmt.datetime_format,
            ) from None


# --- the file -------------------------------------------------------------------------------


def _positions(fmt: RegistryFormat, header: list[Any] | None, line: int) -> dict[str, int]:
    """0-based cell index of each field, from numbers or the header's names."""
    found: dict[str, int] = {}
    names = [str(cell).strip().casefold() if cell is not None else "" for cell in header or []]
    for name, column in fmt.columns.items():
        if isinstance(column, int):
            found[name] = column - 1
            continue
        try:
            found[name] = names.index(column.strip().casefold())
        except ValueError:
            raise RegistryError(
                N_("registry.error.no_column"), line=line, column=column, field_name=name
            ) from None
    return found


def _total_of(cells: list[Any], line: int) -> tuple[int, int] | None:
    text = " ".join(str(cell) for cell in cells if cell is not None and str(cell).strip())
    match = _TOTAL.fullmatch(text)
    if match is None:
        return None
    if not match["amount"].translate(_GROUPING).strip("0.,"):  # "Total: 0 0.00": no payments
        return int(match["count"]), 0
    return int(match["count"]), _amount(match["amount"], line, "som")


class _Moments:
    """A written local moment as stored (ISO 8601 with the zone's offset) and its business
    day in the agent's zone, worked out once per minute of the file, not once per line."""

    def __init__(self, zone: ZoneInfo, agent_zone: ZoneInfo) -> None:
        self.zone = zone
        self.agent_zone = agent_zone
        self.same = zone.key == agent_zone.key
        self.cache: dict[tuple[date, int, int], tuple[str, str, date]] = {}

    def of(self, day: date, hour: int, minute: int, second: int) -> tuple[str, date]:
        key = (day, hour, minute)
        found = self.cache.get(key)
        if found is None:
            written = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
            offset = written.strftime("%z")
            business = day if self.same else written.astimezone(self.agent_zone).date()
            found = (
                f"{day.isoformat()}T{hour:02d}:{minute:02d}:",
                f"{offset[:3]}:{offset[3:]}",
                business,
            )
            if len(self.cache) < 500_000:
                self.cache[key] = found
        return f"{found[0]}{second:02d}{found[1]}", found[2]


# The default QIWI layout read with one expression per line; a line it does not match goes
# through the general path, which either reads it or says exactly what is wrong with it.
_QIWI_LINE = re.compile(
    r"([0-9]{1,20})\t([0-9]{2}\.[0-9]{2}\.[0-9]{4}|[0-9]{4}-[0-9]{2}-[0-9]{2})\t"
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})\t([0-9]{14}(?:[0-9]{2})?)\t"  # account: INN or invoice
    r"([0-9]{1,15})(?:[.,]([0-9]{1,2}))?"
)


def _fast_qiwi(fmt: RegistryFormat) -> bool:
    return (
        fmt.kind == "qiwi"
        and fmt.columns == {"txn_id": 1, "date": 2, "time": 3, "account": 4, "amount": 5}
        and fmt.date_format in (AUTO, "%d.%m.%Y")
        and fmt.time_format == "%H:%M:%S"
        and fmt.amount_unit == "som"
    )


class _Reader:
    """The state of one file being read: formats, caches, the lines so far."""

    def __init__(
        self,
        fmt: RegistryFormat,
        agent_zone: ZoneInfo,
        gateway: bool,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.fmt = fmt
        self.progress = progress
        self.gateway = gateway
        self.clock = _Clock(fmt)
        self.moments = _Moments(fmt.zone(agent_zone), agent_zone)
        self.positions: dict[str, int] | None = None
        if fmt.kind == "qiwi" or not fmt.header:
            self.positions = _positions(fmt, None, 1)
        self.lines: list[Line] = []
        self.total = 0
        self.declared: tuple[int, int] | None = None
        self.declared_at = 0

    def row(self, number: int, cells: list[Any]) -> None:
        """Read one row of cells: a header, a payment, the Total line or nothing."""
        if _blank(cells):
            return
        if self.positions is None:  # the header row
            self.positions = _positions(self.fmt, cells, number)
            return
        if self.declared is not None:
            raise RegistryError(
                N_("registry.error.after_total"), line=number, total_line=self.declared_at
            )
        if self.fmt.total_line and _may_be_total(cells):
            total_line = _total_of(cells, number)
            if total_line is not None:
                self.declared, self.declared_at = total_line, number
                return
        positions = self.positions
        width = max(positions.values()) + 1
        if len(cells) < width:
            if self.fmt.kind == "qiwi":
                raise RegistryError.plural(
                    "registry.error.too_few_tabs", width, line=number, count=width, found=len(cells)
                )
            raise RegistryError.plural(
                "registry.error.too_few_cells", width, line=number, count=width, found=len(cells)
            )
        txn_id = _txn_id(cells[positions["txn_id"]], number, self.gateway)
        account = _account(cells[positions["account"]], number)
        amount = _amount(cells[positions["amount"]], number, self.fmt.amount_unit)
        if "datetime" in positions:
            written = self.clock.moment(cells[positions["datetime"]], number)
            _check_year(written.year, number)
            day, at = written.date(), written.time()
        else:
            day = self.clock.day(cells[positions["date"]], number)
            at = (
                self.clock.clock_time(cells[positions["time"]], number)
                if "time" in positions
                else time()
            )
        occurred, business_date = self.moments.of(day, at.hour, at.minute, at.second)
        self.add(Line(number, txn_id, occurred, business_date, account, amount))

    def add(self, line: Line) -> None:
        if len(self.lines) >= MAX_LINES:
            raise _too_many_lines(line.line_no)
        self.lines.append(line)
        self.total += line.amount

    def qiwi_text(self, text: str) -> None:
        """The default QIWI layout, a line at a time, fast when the line is well formed."""
        if "\x00" in text:
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise RegistryError(N_("registry.error.nul_byte"), line=line)
        match_line = _QIWI_LINE.fullmatch
        dates = self.clock.dates
        moment = self.moments.of
        lines, gateway = self.lines, self.gateway
        progress = self.progress
        for number, raw in enumerate(text.splitlines(), start=1):
            if progress is not None and not number % PROGRESS_EVERY:
                progress(number)
            found = match_line(raw) if self.declared is None else None
            if found is None:
                self.row(number, raw.split("\t"))
                continue
            txn, day_text, hh, mm, ss, account, som_part, tyiyn_part = found.groups()
            hour, minute, second = int(hh), int(mm), int(ss)
            amount = int(som_part) * 100 + (int(tyiyn_part.ljust(2, "0")) if tyiyn_part else 0)
            day = dates.get(day_text)
            if day is None or hour > 23 or minute > 59 or second > 59 or amount == 0:
                self.row(number, raw.split("\t"))  # reads it, or says what is wrong
                continue
            occurred, business_date = moment(day, hour, minute, second)
            if len(lines) >= MAX_LINES:
                raise _too_many_lines(number)
            lines.append(
                Line(
                    number,
                    str(int(txn)) if gateway else txn,
                    occurred,
                    business_date,
                    account,
                    amount,
                )
            )
            self.total += amount

    def result(self) -> ParsedRegistry:
        if self.positions is None:
            raise RegistryError(N_("registry.error.header_only"))
        if self.fmt.total_line:
            if self.declared is None:
                raise RegistryError(N_("registry.error.no_total"))
            count, amount = self.declared
            if (count, amount) != (len(self.lines), self.total):
                raise RegistryError(
                    N_("registry.error.total_differs"),
                    line=self.declared_at,
                    declared=count,
                    declared_amount=som(amount),
                    found=len(self.lines),
                    found_amount=som(self.total),
                )
        elif not self.lines:
            raise RegistryError(N_("registry.error.no_lines"))
        return ParsedRegistry(self.lines, self.total)


def _check_year(year: int, line: int) -> None:
    if not 2000 <= year <= 2099:
        raise RegistryError(N_("registry.error.year"), line=line, field="date", year=year)


def _too_many_lines(line: int) -> RegistryError:
    return RegistryError.plural(
        "registry.error.too_many_lines", MAX_LINES, line=line, count=MAX_LINES
    )


def read(
    content: bytes,
    fmt: RegistryFormat,
    agent_zone: ZoneInfo,
    *,
    gateway: bool = True,
    progress: Callable[[int], None] | None = None,
    rows: Iterable[Row] | None = None,
) -> ParsedRegistry:
    """A registry read in this process (`reading.parse` says which process reads which
    kind): the text itself, or `rows` already read out of it (the XLSX child passes the
    sheet's). Every payment line, or RegistryError for the first thing wrong."""
    reader = _Reader(fmt, agent_zone, gateway, progress)
    if rows is None and _fast_qiwi(fmt):
        reader.qiwi_text(_decode(content, fmt.encoding))
        return reader.result()
    if rows is None:
        rows = _text_rows(_decode(content, fmt.encoding), fmt.kind, fmt.delimiter)
    for number, cells in rows:
        if progress is not None and not number % PROGRESS_EVERY:
            progress(number)
        reader.row(number, cells)
    return reader.result()
