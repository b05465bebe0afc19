"""How an agent writes its registry: the file kind, the columns, the encoding, the time zone.

QIWI-style text is the default (tab-separated `txn_id date time account sum` and a final
`Total: <count> <amount>` line). Agents that send CSV or XLSX get a mapping of our fields to
their columns (by header name or 1-based position), their date and time formats, the file's
encoding (cp1251 is common here) and the time zone their times are written in (default:
the agent's own). One format per agent, stored as JSON in `registry_formats`.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, Strict, with_config
from sqlalchemy import Connection, delete, insert, select

from tolom import audit
from tolom.db.schema import registry_formats
from tolom.texts import N_, Refusal

Kind = Literal["qiwi", "csv", "xlsx"]
ColumnField = Literal["txn_id", "date", "time", "datetime", "account", "amount"]
Unit = Literal["som", "tyiyn"]
KINDS: tuple[Kind, ...] = get_args(Kind)
FIELDS: tuple[ColumnField, ...] = get_args(ColumnField)
REQUIRED = ("txn_id", "account", "amount")
AMOUNT_UNITS: tuple[Unit, ...] = get_args(Unit)
# "auto" reads 22.11.2026 and 2026-11-22 (never 11/22/2026: ambiguous with 22/11).
AUTO = "auto"
# A column: a 1-based number or the header's name ("3" in a name is read as the number).
Column = Annotated[int, Strict()] | Annotated[str, Strict()]
QIWI_COLUMNS: dict[ColumnField, Column] = {
    "txn_id": 1,
    "date": 2,
    "time": 3,
    "account": 4,
    "amount": 5,
}
_EXAMPLE: dict[str, Any] = {
    "kind": "csv",
    "encoding": "cp1251",
    "delimiter": ";",
    "header": True,
    "columns": {"txn_id": "Номер", "datetime": "Время", "account": "Счёт", "amount": "Сумма"},
    "date_format": "auto",
    "time_format": "%H:%M:%S",
    "datetime_format": "%d.%m.%Y %H:%M:%S",
    "timezone": None,
    "amount_unit": "som",
    "total_line": False,
    "sheet": None,
}


class FormatError(Refusal):
    """A registry format that cannot be used, worded by key for the operator
    (`texts.Refusal`)."""


# The one definition of the settings: the operator API reads and publishes it as it is
# (pydantic reads the field types and their `Field` notes; `from_mapping` checks what the
# CLI and the stored JSON give in the same terms, with the operator's wording).
@with_config(ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]}))
@dataclass(frozen=True, slots=True)
class RegistryFormat:
    """How an agent writes its registry. Settings left out take their defaults (QIWI-style
    text: `txn_id date time account sum` separated by tabs, a final `Total:` line)."""

    kind: Annotated[Kind, Field(description="qiwi | csv | xlsx")] = "qiwi"
    encoding: Annotated[
        str, Field(max_length=40, description="The text file's encoding (utf-8, cp1251, ...).")
    ] = "utf-8"
    delimiter: Annotated[
        str, Field(max_length=8, description="CSV: the one-character separator.")
    ] = ";"  # qiwi is tab-separated
    header: Annotated[
        bool, Strict(), Field(description="CSV, XLSX: the first row names columns.")
    ] = False
    columns: Annotated[
        dict[ColumnField, Column],
        Field(
            description="Our field → the agent's column: a 1-based number, or the header's "
            "name. txn_id, account, amount, and date (with time) or datetime are required."
        ),
    ] = field(default_factory=lambda: dict(QIWI_COLUMNS))
    date_format: Annotated[
        str,
        Field(max_length=40, description="strftime format, or `auto` (22.11.2026 and 2026-11-22)."),
    ] = AUTO
    time_format: Annotated[str, Field(max_length=40)] = "%H:%M:%S"
    datetime_format: Annotated[str, Field(max_length=40)] = "%Y-%m-%d %H:%M:%S"
    timezone: Annotated[
        str | None,
        Field(
            max_length=64,
            description="IANA zone the times are written in; null: the agent's own zone.",
            examples=["Asia/Bishkek"],
        ),
    ] = None
    amount_unit: Annotated[Unit, Field(description="som | tyiyn")] = "som"
    total_line: Annotated[
        bool,
        Strict(),
        Field(description="The file ends with `Total: <count> <amount>` (checked when present)."),
    ] = True
    sheet: Annotated[
        str | None,
        Field(max_length=100, description="XLSX: the sheet's name; null: the first sheet."),
    ] = None

    def zone(self, agent_zone: ZoneInfo) -> ZoneInfo:
        return agent_zone if self.timezone is None else ZoneInfo(self.timezone)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


DEFAULT = RegistryFormat()


def _column(value: Any, name: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FormatError(N_("registry_format.error.column_type"), name=name)
    if isinstance(value, int):
        if not 1 <= value <= 200:
            raise FormatError(N_("registry_format.error.column_number"), name=name)
        return value
    text = value.strip()
    if text.isdigit():
        return _column(int(text), name)
    if not text or len(text) > 100:
        raise FormatError(N_("registry_format.error.column_name"), name=name)
    return text


def validate(fmt: RegistryFormat) -> RegistryFormat:
    """The format if it can be used; FormatError saying what is wrong otherwise."""
    if fmt.kind not in KINDS:
        raise FormatError(N_("registry_format.error.kind"), kinds=", ".join(KINDS))
    try:
        codecs.lookup(fmt.encoding)
    except LookupError as error:
        raise FormatError(
            N_("registry_format.error.encoding"), encoding=repr(fmt.encoding)
        ) from error
    if fmt.kind == "csv" and len(fmt.delimiter) != 1:
        raise FormatError(N_("registry_format.error.delimiter"))
    if fmt.amount_unit not in AMOUNT_UNITS:
        raise FormatError(N_("registry_format.error.unit"))
    if fmt.timezone is not None:
        try:
            ZoneInfo(fmt.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise FormatError(
                N_("registry_format.error.timezone"), timezone=repr(fmt.timezone)
            ) from error
    unknown = set(fmt.columns) - set(FIELDS)
    if unknown:
        raise FormatError(N_("registry_format.error.fields"), names=", ".join(sorted(unknown)))
    missing = ", ".join(name for name in REQUIRED if name not in fmt.columns)
    if "datetime" not in fmt.columns and "date" not in fmt.columns:
        if missing:
            raise FormatError(N_("registry_format.error.missing_and_date"), names=missing)
        raise FormatError(N_("registry_format.error.missing_date"))
    if missing:
        raise FormatError(N_("registry_format.error.missing"), names=missing)
    columns = {name: _column(value, name) for name, value in fmt.columns.items()}
    named = [value for value in columns.values() if isinstance(value, str)]
    if named and not fmt.header:
        raise FormatError(N_("registry_format.error.header_needed"))
    if fmt.kind == "qiwi" and (fmt.header or named):
        raise FormatError(N_("registry_format.error.qiwi_numbers"))
    if len(set(columns.values())) != len(columns):
        raise FormatError(N_("registry_format.error.column_twice"))
    return replace(fmt, columns=columns)


def from_mapping(data: dict[str, Any]) -> RegistryFormat:
    """A format from JSON-like settings (unknown keys refused), validated."""
    known = set(RegistryFormat.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise FormatError(N_("registry_format.error.settings"), names=", ".join(sorted(unknown)))
    try:
        fmt = RegistryFormat(**data)
    except TypeError as error:
        raise FormatError(N_("registry_format.error.unreadable"), error=str(error)) from error
    if not isinstance(fmt.columns, dict):
        raise FormatError(N_("registry_format.error.columns"))
    for name in ("kind", "encoding", "delimiter", "date_format", "time_format"):
        if not isinstance(getattr(fmt, name), str):
            raise FormatError(N_("registry_format.error.not_text"), name=name)
    if not isinstance(fmt.header, bool) or not isinstance(fmt.total_line, bool):
        raise FormatError(N_("registry_format.error.booleans"))
    return validate(fmt)


def load(conn: Connection, agent_id: int) -> RegistryFormat:
    """The agent's registry format; QIWI-style text when none was configured."""
    stored = conn.execute(
        select(registry_formats.c.settings).where(registry_formats.c.agent_id == agent_id)
    ).scalar_one_or_none()
    return DEFAULT if stored is None else from_mapping(json.loads(stored))


def save(conn: Connection, agent_id: int, fmt: RegistryFormat) -> RegistryFormat:
    """Store the agent's format (validated first) in the caller's transaction."""
    checked = validate(fmt)
    conn.execute(delete(registry_formats).where(registry_formats.c.agent_id == agent_id))
    conn.execute(insert(registry_formats).values(agent_id=agent_id, settings=checked.to_json()))
    return checked


@dataclass(frozen=True, slots=True)
class FormatChange:
    """The agent's format before and after a change (equal: nothing was changed)."""

    before: RegistryFormat
    after: RegistryFormat

    @property
    def changed(self) -> bool:
        return self.before != self.after


def set_audited(
    conn: Connection,
    agent_id: int,
    agent_code: str,
    fmt: RegistryFormat,
    *,
    actor: str,
    address: str | None = None,
) -> FormatChange:
    """Replace the agent's format and write `registry_format.set` (the settings before and
    after) in the caller's transaction; the format it already has changes and writes
    nothing. FormatError, before anything is written, for one that cannot be used. What
    the API and the CLI both call."""
    wanted = validate(fmt)
    before = load(conn, agent_id)
    if wanted == before:
        return FormatChange(before, before)
    after = save(conn, agent_id, wanted)
    audit.record(
        conn,
        actor=actor,
        action="registry_format.set",
        object_type="agent",
        object_id=agent_code,
        before=json.loads(before.to_json()),
        after=json.loads(after.to_json()),
        address=address,
    )
    return FormatChange(before, after)
