"""Reconciliation with agents (сверка) over the API: registry formats, registry uploads, the
calendar of agent-days, a day with its discrepancies, resolving them, closing and
reopening the day, the act and our own registry for the agent.

A thin adapter over `tolom.reconciliation`: the core imports, matches, resolves, closes
and audits; this module reads the request, checks the caller's scope and answers in the
API's shape.
"""

from __future__ import annotations

import codecs
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast, get_args

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from tolom.agents import service as agents
from tolom.agents.service import Agent
from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    Admin,
    Cursor,
    Limit,
    OperatorRoute,
    RawBodyRoute,
    Reader,
    UtcTime,
    Writer,
    bad_input,
    cursor_of,
    date_of,
    id_of,
    next_cursor,
    replayed_headers,
    transaction,
)
from tolom.api.security import Caller
from tolom.backoffice import exports
from tolom.db.engine import is_temporary
from tolom.httpkit.bodies import BodyTooLarge, read_limited
from tolom.httpkit.disconnect import run_while_connected
from tolom.httpkit.downloads import PdfResponse, pdf_answer, pdf_responses
from tolom.httpkit.problems import FieldError, ProblemError, responses
from tolom.money import format_amount
from tolom.reconciliation import days, formats, matching, outbound, registries, shapes
from tolom.reconciliation.days import NotFound, ReconciliationError
from tolom.reconciliation.formats import FormatError, RegistryFormat
from tolom.reconciliation.parsing import RegistryError
from tolom.reconciliation.registries import DayClosed, Imported
from tolom.reconciliation.xlsx import cancelled_when

if TYPE_CHECKING:
    from tolom.reconciliation.act import Act

router = APIRouter(tags=["reconciliation"], route_class=OperatorRoute)
# The upload reads its body itself, after the caller is known, with a size cap.
uploads = APIRouter(route_class=RawBodyRoute)  # tagged by `router`

# The largest registry file taken: the core's own limit (a million lines is about 50 MB).
MAX_UPLOAD_BYTES = registries.MAX_FILE_BYTES
MAX_CALENDAR_AGENTS = 50
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

AgentCode = Annotated[
    str, Path(max_length=32, description="The agent's code.", examples=["optima"])
]
DayText = Annotated[
    str,
    Path(
        pattern=DAY_PATTERN,
        description="The business day (agent-local), YYYY-MM-DD.",
        examples=["2026-11-21"],
        json_schema_extra={"format": "date"},
    ),
]
DiscrepancyId = Annotated[
    str, Path(alias="id", description="The discrepancy's number.", examples=["17"])
]

Kind = Literal["qiwi", "csv", "xlsx"]
Unit = Literal["som", "tyiyn"]
ColumnField = Literal["txn_id", "date", "time", "datetime", "account", "amount"]
DayState = Literal["waiting", "open", "ready", "closed"]
CellState = Literal["none", "waiting", "open", "ready", "closed"]
DiscrepancyKind = Literal[
    "missing_ours", "missing_theirs", "amount_mismatch", "account_mismatch", "duplicate"
]
Resolution = Literal["accepted", "reversed", "explained"]
ActionName = Literal["accept", "reverse", "explain"]
# The API's enumerations are the core's, spelled for the OpenAPI document.
assert get_args(Kind) == formats.KINDS and get_args(Unit) == formats.AMOUNT_UNITS
assert get_args(ColumnField) == formats.FIELDS
assert get_args(DiscrepancyKind) == matching.KINDS
assert get_args(ActionName) == tuple(a.value for a in days.Action)


# --- answers and bodies -----------------------------------------------------------------


class RegistryFormatSettings(BaseModel):
    """How an agent writes its registry. Settings left out take their defaults (QIWI-style
    text: `txn_id date time account sum` separated by tabs, a final `Total:` line)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "kind": "csv",
                    "encoding": "cp1251",
                    "delimiter": ";",
                    "header": True,
                    "columns": {
                        "txn_id": "Номер",
                        "datetime": "Время",
                        "account": "Счёт",
                        "amount": "Сумма",
                    },
                    "date_format": "auto",
                    "time_format": "%H:%M:%S",
                    "datetime_format": "%d.%m.%Y %H:%M:%S",
                    "timezone": None,
                    "amount_unit": "som",
                    "total_line": False,
                    "sheet": None,
                }
            ]
        },
    )

    kind: Kind = Field(default=cast(Kind, formats.DEFAULT.kind), description="qiwi | csv | xlsx")
    encoding: str = Field(
        default=formats.DEFAULT.encoding,
        max_length=40,
        description="The text file's encoding (utf-8, cp1251, ...).",
    )
    delimiter: str = Field(
        default=formats.DEFAULT.delimiter,
        max_length=8,
        description="CSV: the one-character separator.",
    )
    header: bool = Field(
        default=formats.DEFAULT.header, description="CSV, XLSX: the first row names columns."
    )
    columns: dict[ColumnField, int | str] = Field(
        default_factory=lambda: cast(dict[ColumnField, int | str], dict(formats.DEFAULT.columns)),
        description="Our field → the agent's column: a 1-based number, or the header's name. "
        "txn_id, account, amount, and date (with time) or datetime are required.",
    )
    date_format: str = Field(
        default=formats.DEFAULT.date_format,
        max_length=40,
        description="strftime format, or `auto` (22.11.2026 and 2026-11-22).",
    )
    time_format: str = Field(default=formats.DEFAULT.time_format, max_length=40)
    datetime_format: str = Field(default=formats.DEFAULT.datetime_format, max_length=40)
    timezone: str | None = Field(
        default=formats.DEFAULT.timezone,
        max_length=64,
        description="IANA zone the times are written in; null: the agent's own zone.",
        examples=["Asia/Bishkek"],
    )
    amount_unit: Unit = Field(
        default=cast(Unit, formats.DEFAULT.amount_unit), description="som | tyiyn"
    )
    total_line: bool = Field(
        default=formats.DEFAULT.total_line,
        description="The file ends with `Total: <count> <amount>` (checked when present).",
    )
    sheet: str | None = Field(
        default=formats.DEFAULT.sheet,
        max_length=100,
        description="XLSX: the sheet's name; null: the first sheet.",
    )


# The defaults above are the core's.
assert RegistryFormatSettings().model_dump() == json.loads(formats.DEFAULT.to_json())


class ClassTotal(BaseModel):
    count: int = Field(examples=[1])
    their_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["250.00"])
    our_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["200.00"])


class ClassTotals(BaseModel):
    """Count and sums of each class of discrepancy."""

    missing_ours: ClassTotal = Field(description="In the registry, not ours that day.")
    missing_theirs: ClassTotal = Field(description="Ours, not in the registry.")
    amount_mismatch: ClassTotal
    account_mismatch: ClassTotal
    duplicate: ClassTotal = Field(description="A registry line repeating a txn_id.")


class Summary(BaseModel):
    """Both sides' totals for the day, what matched, each class, and the net difference."""

    their_count: int = Field(examples=[6])
    their_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["870.00"])
    our_count: int = Field(examples=[5])
    our_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["1050.00"])
    matched_count: int = Field(examples=[2])
    matched_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["150.00"])
    difference: str = Field(description="Theirs − ours; may be negative.", examples=["-180.00"])
    discrepancy_count: int = Field(examples=[5])
    classes: ClassTotals


class RegistryImport(BaseModel):
    """A registry imported and matched (or, replayed, the one that already was)."""

    registry: int = Field(description="The registry's number.", examples=[12])
    agent: str = Field(examples=["optima"])
    day: date = Field(description="The business day it lists.")
    lines: int = Field(description="Payment lines in the file.", examples=[6])
    total: str = Field(description=AMOUNT_DESCRIPTION, examples=["870.00"])
    replayed: bool = Field(description="This very file was the day's registry already.")
    superseded: int | None = Field(
        description="The registry this one replaced as the day's current one.", examples=[None]
    )
    summary: Summary


class Registry(BaseModel):
    """The day's current registry."""

    id: int = Field(examples=[12])
    file_name: str = Field(examples=["optima-2026-11-21.txt"])
    imported_at: UtcTime
    imported_by: str = Field(examples=["apikey:buh"])


class Day(BaseModel):
    """An agent's business day in reconciliation."""

    agent: str = Field(examples=["optima"])
    day: date
    state: DayState = Field(
        description="waiting (no registry) | open (discrepancies to resolve) | ready (all "
        "resolved: may be closed) | closed",
        examples=["open"],
    )
    registry: Registry | None
    summary: Summary | None
    unresolved: int = Field(description="Discrepancies still to resolve.", examples=[5])
    closed_by: str | None = Field(examples=[None])
    closed_at: UtcTime | None


class Discrepancy(BaseModel):
    """A difference between the agent's registry and our payments."""

    id: int = Field(examples=[17])
    registry: int = Field(examples=[12])
    kind: DiscrepancyKind = Field(examples=["amount_mismatch"])
    txn_id: str = Field(examples=["102"])
    line: int | None = Field(description="The registry's line, if it has one.", examples=[2])
    payment_id: int | None = Field(description="Our payment, if we have one.", examples=[1002])
    their_account: str | None = Field(examples=["01904202310427"])
    their_amount: str | None = Field(description=AMOUNT_DESCRIPTION, examples=["250.00"])
    our_account: str | None = Field(examples=["01904202310427"])
    our_amount: str | None = Field(description=AMOUNT_DESCRIPTION, examples=["200.00"])
    other_day: date | None = Field(
        description="missing_ours: the day our payment with this txn_id is on, if another.",
        examples=[None],
    )
    other_status: str | None = Field(
        description="missing_ours: that payment's status (accepted | reversed).",
        examples=[None],
    )
    resolution: Resolution | None = Field(examples=[None])
    reason: str | None = Field(examples=[None])
    resolved_by: str | None = Field(examples=[None])
    resolved_at: UtcTime | None
    resolution_payment_id: int | None = Field(
        description="accept: the payment made; reverse: the payment reversed.", examples=[None]
    )
    actions: list[ActionName] = Field(
        description="What it may still be resolved with (empty once resolved).",
        examples=[["reverse", "explain"]],
    )


class DayDetail(Day):
    """The day with a page of its current registry's discrepancies."""

    discrepancy_count: int = Field(
        description="How many discrepancies match `unresolved_only` in all.", examples=[5]
    )
    discrepancies: list[Discrepancy]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.",
        examples=[None],
    )


class CalendarDay(BaseModel):
    agent: str = Field(examples=["optima"])
    day: date
    state: CellState = Field(
        description="none (no payments, no registry) | waiting | open | ready | closed",
        examples=["waiting"],
    )
    unresolved: int = Field(examples=[0])
    has_payments: bool = Field(description="We have payments of the agent that day.")


class Calendar(BaseModel):
    items: list[CalendarDay] = Field(description="Agent by agent (by code), day by day.")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=days.REASON_MAX,
        pattern=r"\S",
        description="Why, for the audit trail and the act.",
        examples=["Агент прислал исправленный реестр"],
    )


class ResolveIn(Reason):
    action: ActionName = Field(
        description="accept (pay the agent's line: missing_ours) | reverse (our payment: "
        "missing_theirs, amount_mismatch, account_mismatch) | explain (any; nothing moves)",
        examples=["explain"],
    )


# --- conversions ------------------------------------------------------------------------


def _summary(summary: matching.Summary | None) -> Summary | None:
    return None if summary is None else Summary.model_validate(shapes.summary_fields(summary))


def _day_fields(found: days.Day) -> dict[str, Any]:
    registry = None
    if found.registry_id is not None:
        registry = Registry(
            id=found.registry_id,
            file_name=found.file_name or "",
            imported_at=found.imported_at,
            imported_by=found.imported_by or "",
        )
    return {
        "agent": found.agent,
        "day": found.business_date,
        "state": found.state,
        "registry": registry,
        "summary": _summary(found.summary),
        "unresolved": found.unresolved,
        "closed_by": found.closed_by,
        "closed_at": found.closed_at,
    }


def _discrepancy(found: days.Discrepancy) -> Discrepancy:
    return Discrepancy.model_validate(shapes.discrepancy_fields(found))


def _format_out(fmt: RegistryFormat) -> RegistryFormatSettings:
    return RegistryFormatSettings.model_validate(json.loads(fmt.to_json()))


# --- shared steps -----------------------------------------------------------------------


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


@contextmanager
def _database() -> Iterator[None]:
    """The core's own transactions: a database out of reach or busy is "retry", as in
    `transaction`."""
    try:
        yield
    except SQLAlchemyError as error:
        if is_temporary(error):
            raise ProblemError("temporarily_unavailable") from error
        raise


def _no_agent(code: str) -> ProblemError:
    return ProblemError("agent_not_found", f"Агент «{code}» не найден")


def _agent(conn: Connection, code: str) -> Agent:
    found = agents.load(conn, code)
    if found is None:
        raise _no_agent(code)
    return found


def _day_of(text: str, field: str = "day") -> date:
    """A day given as YYYY-MM-DD; one that does not exist is a 422 naming the field."""
    when = date_of(text, field)
    assert when is not None
    return when


def _refused(error: ReconciliationError, code: str) -> ProblemError:
    """A refusal of the core as a problem: the agent or the discrepancy not found (404),
    anything else a 409 with the core's message."""
    if isinstance(error, NotFound):
        return ProblemError(code, _sentence(str(error)))
    return ProblemError("reconciliation_refused", _sentence(str(error)))


def _load_day(caller: Caller, code: str, when: date) -> days.Day:
    with transaction(caller.runtime) as conn:
        try:
            return days.day(conn, code, when)
        except NotFound:
            raise _no_agent(code) from None


# --- registry formats ---------------------------------------------------------------------


@router.get(
    "/agents/{code}/registry-format",
    summary="The agent's registry format",
    description="How the agent writes its registry: file kind, columns, encoding, date and "
    "time formats, time zone, amount unit. An agent never configured has the default, "
    "QIWI-style text.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found"),
)
def get_registry_format(code: AgentCode, caller: Reader) -> RegistryFormatSettings:
    with transaction(caller.runtime) as conn:
        return _format_out(formats.load(conn, _agent(conn, code).id))


@router.put(
    "/agents/{code}/registry-format",
    summary="Set the agent's registry format",
    description="Replaces the agent's registry format with these settings (those left out "
    "take their defaults). Settings that cannot be used are a 422 saying what is wrong, and "
    "nothing is stored. Audited as `registry_format.set` with the settings before and after, "
    "when they change. Registries already imported are not read again.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found"),
)
def put_registry_format(
    code: AgentCode, body: RegistryFormatSettings, caller: Admin
) -> RegistryFormatSettings:
    try:
        wanted = formats.from_mapping(body.model_dump())
    except FormatError as error:
        message = str(error)
        raise ProblemError(
            "invalid_request",
            f"Формат реестра не подходит: {message}",
            errors=[FieldError(field="body", message=message)],
        ) from None
    with transaction(caller.runtime) as conn:
        agent = _agent(conn, code)
        done = formats.set_audited(
            conn, agent.id, agent.code, wanted, actor=caller.actor, address=caller.address
        )
        return _format_out(done.after)


# --- registry upload --------------------------------------------------------------------

_FILE_SCHEMA = {"type": "string", "format": "binary"}
_UPLOAD_BODY = {
    "required": True,
    "description": "The registry file as it is, in the agent's format (`GET "
    "/agents/{code}/registry-format`). Any Content-Type; these are the usual ones.",
    "content": {
        "text/plain": {
            "schema": {"type": "string"},
            "example": "101\t21.11.2026\t09:00:00\t01904202310427\t100.00\nTotal: 1 100.00\n",
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": _FILE_SCHEMA},
        exports.XLSX_MEDIA_TYPE: {"schema": _FILE_SCHEMA},
    },
}


def _size(limit: int) -> str:
    megabyte = 1024 * 1024
    return f"{limit // megabyte} МБ" if limit % megabyte == 0 else f"{limit} байт"


def _registry_refused(error: RegistryError) -> ProblemError:
    """A bad file as `registry_invalid`, naming the line and the field when known."""
    return ProblemError(
        "registry_invalid",
        _sentence(str(error)),
        errors=[FieldError(field=error.field or "file", message=error.reason, line=error.line)],
    )


def _import(
    caller: Caller,
    code: str,
    content: bytes,
    name: str,
    when: date | None,
    gone: threading.Event,
) -> Imported:
    with transaction(caller.runtime) as conn:
        _agent(conn, code)
    try:
        with _database(), cancelled_when(gone):  # an XLSX parse stops if the caller leaves
            return registries.import_registry(
                caller.runtime.engine,
                code,
                content,
                file_name=name,
                actor=caller.actor,
                day=when,
                address=caller.address,
            )
    except DayClosed as error:
        raise ProblemError("day_closed", _sentence(str(error))) from None
    except RegistryError as error:
        raise _registry_refused(error) from None


@uploads.post(
    "/agents/{code}/registries",
    status_code=201,
    summary="Upload the agent's registry of a day",
    description="The body is the registry file itself (text, CSV or XLSX, as the agent's "
    "format says), at most 256 MB. It is read, stored and matched against our payments of "
    "the agent's business day at once, in one transaction: 201 with the summary. The same "
    "file again, while it is the day's registry, changes nothing: 200 with "
    "`Idempotent-Replayed: true`. Another file for the day supersedes the current one (the "
    "old one is kept as history) and is matched afresh. A bad file is refused whole with "
    "422 `registry_invalid`, whose `errors` name the line and the field; nothing is stored. "
    "A closed day refuses new files (409 `day_closed`) until an administrator reopens it. "
    "Audited as `registry.import`.",
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        200: {
            "model": RegistryImport,
            "description": "This very file is the day's registry already; nothing changed.",
            "headers": replayed_headers(),
        },
        **responses(
            *AUTH,
            "invalid_request",
            "agent_not_found",
            "day_closed",
            "request_too_large",
            "registry_invalid",
        ),
    },
)
async def upload_registry(
    request: Request,
    code: AgentCode,
    caller: Writer,
    response: Response,
    day: Annotated[
        str | None,
        Query(
            pattern=DAY_PATTERN,
            description="The business day it lists, YYYY-MM-DD; every line must be on it. "
            "Default: the one day all its lines are on.",
            examples=["2026-11-21"],
            json_schema_extra={"format": "date"},
        ),
    ] = None,
    file_name: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The file's name, kept with the registry and shown in the act.",
            examples=["optima-2026-11-21.txt"],
        ),
    ] = None,
) -> RegistryImport:
    when = date_of(day, "day")
    name = (file_name or "").strip()
    if not name.isprintable():
        raise bad_input(("file_name", "имя файла: только печатные символы"))
    try:
        content = await read_limited(request, MAX_UPLOAD_BYTES)
    except BodyTooLarge:
        raise ProblemError(
            "request_too_large", f"Файл реестра больше {_size(MAX_UPLOAD_BYTES)}"
        ) from None
    done = await run_while_connected(
        request, lambda gone: _import(caller, code, content, name or "registry", when, gone)
    )
    if done.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    summary = _summary(done.summary)
    assert summary is not None
    return RegistryImport(
        registry=done.registry_id,
        agent=done.agent,
        day=done.business_date,
        lines=done.lines,
        total=format_amount(done.total),
        replayed=done.replayed,
        superseded=done.superseded,
        summary=summary,
    )


# --- the calendar and a day -------------------------------------------------------------


@router.get(
    "/reconciliation/days",
    summary="The calendar of agents' days",
    description="Every gateway agent's days from `from` to `to` (at most 93 days): whether "
    "we have payments, whether the registry came, how many discrepancies are open, whether "
    "the day is closed.",
    responses=responses(*AUTH, "invalid_request"),
)
def reconciliation_calendar(
    caller: Reader,
    start: Annotated[
        str,
        Query(
            alias="from",
            pattern=DAY_PATTERN,
            description="First day, YYYY-MM-DD.",
            examples=["2026-11-01"],
            json_schema_extra={"format": "date"},
        ),
    ],
    end: Annotated[
        str,
        Query(
            alias="to",
            pattern=DAY_PATTERN,
            description="Last day, YYYY-MM-DD.",
            examples=["2026-11-30"],
            json_schema_extra={"format": "date"},
        ),
    ],
    agent: Annotated[
        list[str] | None,
        Query(description="Only these agents' codes (repeat the parameter for several)."),
    ] = None,
) -> Calendar:
    first, last = _day_of(start, "from"), _day_of(end, "to")
    codes = agent or None
    if codes is not None and (len(codes) > MAX_CALENDAR_AGENTS or any(len(c) > 32 for c in codes)):
        raise bad_input(
            ("agent", f"не больше {MAX_CALENDAR_AGENTS} кодов агентов, до 32 символов каждый")
        )
    with transaction(caller.runtime) as conn:
        try:
            cells = days.calendar(conn, first, last, codes)
        except ReconciliationError as error:
            raise bad_input(("to", str(error))) from None
    return Calendar(
        items=[
            CalendarDay(
                agent=cell.agent,
                day=cell.business_date,
                state=cell.state,
                unresolved=cell.unresolved,
                has_payments=cell.has_payments,
            )
            for cell in cells
        ]
    )


@router.get(
    "/reconciliation/days/{code}/{day}",
    summary="An agent's day with its discrepancies",
    description="The day's state, its current registry and summary, and its discrepancies "
    "in number order, a page at a time (`limit`, `cursor`); `discrepancy_count` says how "
    "many there are in all. A day without a registry is `waiting`, with no discrepancies.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found"),
)
def get_day(
    code: AgentCode,
    day: DayText,
    caller: Reader,
    unresolved_only: Annotated[
        bool, Query(description="Only the discrepancies still to resolve.")
    ] = False,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> DayDetail:
    when = _day_of(day)
    after = cursor_of(cursor)
    with transaction(caller.runtime) as conn:
        try:
            found = days.day(conn, code, when)
        except NotFound:
            raise _no_agent(code) from None
        listed = (
            days.discrepancies_of(
                conn,
                found.registry_id,
                unresolved_only=unresolved_only,
                limit=limit + 1,
                after=after,
            )
            if found.registry_id is not None
            else []
        )
    shown, cursor_out = next_cursor([d.id for d in listed], limit)
    total = 0
    if found.summary is not None:
        total = found.unresolved if unresolved_only else found.summary.discrepancy_count
    return DayDetail(
        **_day_fields(found),
        discrepancy_count=total,
        discrepancies=[_discrepancy(d) for d in listed[:shown]],
        next_cursor=cursor_out,
    )


# --- resolving, closing, reopening ------------------------------------------------------


@router.get(
    "/reconciliation/discrepancies/{id}",
    summary="One discrepancy",
    responses=responses(*AUTH, "invalid_request", "discrepancy_not_found"),
)
def get_discrepancy(discrepancy_id: DiscrepancyId, caller: Reader) -> Discrepancy:
    number = id_of(discrepancy_id)
    with transaction(caller.runtime) as conn:
        try:
            return _discrepancy(days.get_discrepancy(conn, number))
        except NotFound as error:
            raise _refused(error, "discrepancy_not_found") from None


@router.post(
    "/reconciliation/discrepancies/{id}/resolve",
    summary="Resolve a discrepancy",
    description="With a reason, always. `accept` pays the agent's registry line through the "
    "normal pay use case under the agent's txn_id (never twice); `reverse` reverses our "
    "payment as `POST /payments/{id}/reverse` does; `explain` moves nothing. Resolving it "
    "again the same way answers the same with `Idempotent-Replayed: true`; another way, an "
    "action that does not suit its kind, a superseded registry or a closed day are refused "
    "with 409 `reconciliation_refused`. Audited as `discrepancy.accept`, "
    "`discrepancy.reverse` (with `payment.reverse`) or `discrepancy.explain`.",
    responses={
        200: {"description": "The discrepancy, resolved.", "headers": replayed_headers()},
        **responses(*AUTH, "invalid_request", "discrepancy_not_found", "reconciliation_refused"),
    },
)
def resolve_discrepancy(
    discrepancy_id: DiscrepancyId, body: ResolveIn, caller: Writer, response: Response
) -> Discrepancy:
    number = id_of(discrepancy_id)
    try:
        with transaction(caller.runtime) as conn:
            before = days.get_discrepancy(conn, number)
        with _database():
            after = days.resolve(
                caller.runtime.engine,
                number,
                body.action,
                body.reason,
                actor=caller.actor,
                address=caller.address,
            )
    except ReconciliationError as error:
        raise _refused(error, "discrepancy_not_found") from None
    if before.resolved:
        response.headers["Idempotent-Replayed"] = "true"
    return _discrepancy(after)


@router.post(
    "/reconciliation/days/{code}/{day}/close",
    summary="Close an agent's day",
    description="Only when every discrepancy of the day's current registry is resolved; a "
    "day without a registry cannot be closed (409 `reconciliation_refused`). A closed day "
    "refuses registries and resolutions until an administrator reopens it; its act is "
    "final. Closing a closed day answers it unchanged with `Idempotent-Replayed: true`. "
    "Audited as `reconciliation.close`.",
    responses={
        200: {"description": "The day, closed.", "headers": replayed_headers()},
        **responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
    },
)
def close_day(code: AgentCode, day: DayText, caller: Writer, response: Response) -> Day:
    when = _day_of(day)
    before = _load_day(caller, code, when)
    try:
        with _database():
            after = days.close(
                caller.runtime.engine, code, when, actor=caller.actor, address=caller.address
            )
    except ReconciliationError as error:
        raise _refused(error, "agent_not_found") from None
    if before.state == "closed":
        response.headers["Idempotent-Replayed"] = "true"
    return Day(**_day_fields(after))


@router.post(
    "/reconciliation/days/{code}/{day}/reopen",
    summary="Reopen a closed day (admin)",
    description="With a reason. The day takes registries and resolutions again; its act is "
    "a draft until it is closed again. A day that is not closed is refused with 409 "
    "`reconciliation_refused`. Audited as `reconciliation.reopen`.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
)
def reopen_day(code: AgentCode, day: DayText, body: Reason, caller: Admin) -> Day:
    when = _day_of(day)
    try:
        with _database():
            after = days.reopen(
                caller.runtime.engine,
                code,
                when,
                body.reason,
                actor=caller.actor,
                address=caller.address,
            )
    except ReconciliationError as error:
        raise _refused(error, "agent_not_found") from None
    return Day(**_day_fields(after))


# --- files: the act and our registry ------------------------------------------------------


class XlsxResponse(Response):
    media_type = exports.XLSX_MEDIA_TYPE


def _disposition(example: str) -> dict[str, Any]:
    return {
        "Content-Disposition": {
            "description": f'`attachment; filename="{example}"`',
            "schema": {"type": "string"},
        }
    }


def _act(caller: Caller, code: str, when: date) -> Act:
    # The act module brings fpdf, ~0.25 s of CPU: imported by the first act, not by every
    # server process at startup (docs/operations.md).
    from tolom.reconciliation import act

    with transaction(caller.runtime) as conn:
        try:
            return act.load(conn, code, when)
        except ReconciliationError as error:
            raise _refused(error, "agent_not_found") from None


_ACT = (
    "The act of reconciliation (акт сверки) of the agent's day: both sides' totals, what "
    "matched, every discrepancy with its resolution (who, when, why), the net difference "
    "and signature lines. Stamped as a draft (ЧЕРНОВИК) until the day is closed. A day "
    "without a registry has no act (409 `reconciliation_refused`)."
)


@router.get(
    "/reconciliation/days/{code}/{day}/act.pdf",
    summary="The act of the day as a PDF",
    description=_ACT,
    response_class=PdfResponse,
    responses={
        **pdf_responses("akt-optima-2026-11-21.pdf", "The act, as an attachment."),
        **responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
    },
)
def get_act_pdf(code: AgentCode, day: DayText, caller: Reader) -> PdfResponse:
    from tolom.reconciliation import act

    when = _day_of(day)
    found = _act(caller, code, when)
    content = act.pdf(found, caller.runtime.settings)
    return pdf_answer(content, f"akt-{found.day.agent}-{when.isoformat()}.pdf")


@router.get(
    "/reconciliation/days/{code}/{day}/act.xlsx",
    summary="The act of the day as an XLSX workbook",
    description=_ACT + " Two sheets: the act, and the discrepancies one per row.",
    response_class=XlsxResponse,
    responses={
        200: {
            "description": "The act, as an attachment.",
            "content": {exports.XLSX_MEDIA_TYPE: {"schema": _FILE_SCHEMA}},
            "headers": _disposition("akt-optima-2026-11-21.xlsx"),
        },
        **responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
    },
)
def get_act_xlsx(code: AgentCode, day: DayText, caller: Reader) -> XlsxResponse:
    from tolom.reconciliation import act

    when = _day_of(day)
    found = _act(caller, code, when)
    content = act.xlsx(found, caller.runtime.settings)
    return XlsxResponse(
        content,
        headers={
            "Content-Disposition": (
                f'attachment; filename="akt-{found.day.agent}-{when.isoformat()}.xlsx"'
            ),
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/reconciliation/days/{code}/{day}/our-registry",
    summary="Our registry of the agent's day, in the agent's format",
    description="Our accepted payments of the agent's business day, oldest first, written "
    "in the agent's own registry format (kind, columns, encoding, zone, amount unit), to "
    "send to the agent: what it reads back is exactly our payments. Built in a temporary "
    "file, then sent; a day without payments gives a file with no lines.",
    response_class=Response,
    responses={
        200: {
            "description": "The file, as an attachment; text in the format's encoding.",
            "content": {
                outbound.MEDIA_TYPES["qiwi"]: {"schema": {"type": "string"}},
                outbound.MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                outbound.MEDIA_TYPES["xlsx"]: {"schema": _FILE_SCHEMA},
            },
            "headers": _disposition("tolom-optima-2026-11-21.txt"),
        },
        **responses(*AUTH, "invalid_request", "agent_not_found"),
    },
)
def get_our_registry(code: AgentCode, day: DayText, caller: Reader) -> Response:
    when = _day_of(day)
    with transaction(caller.runtime) as conn:
        agent = _agent(conn, code)
        fmt = formats.load(conn, agent.id)
    # A million lines do not sit in memory: written to a nameless file, then streamed.
    file = tempfile.TemporaryFile(prefix="tolom-registry-")  # noqa: SIM115
    try:
        with _database():
            outbound.write(caller.runtime.engine, agent, when, fmt, file)
        size = file.tell()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    media_type = outbound.MEDIA_TYPES[fmt.kind]
    if fmt.kind != "xlsx":
        media_type += f"; charset={codecs.lookup(fmt.encoding).name}"
    return StreamingResponse(
        exports.file_chunks(file),
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{outbound.filename(agent, when, fmt)}"',
            "Content-Length": str(size),
            "Cache-Control": "no-store",
        },
    )


router.include_router(uploads)
