"""Reconciliation routes: registry formats, the calendar, a day with its discrepancies,
resolving them, closing and reopening the day (the upload and the files have modules of
their own, included here)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response

from tolom.api.operator.common import (
    AUTH,
    Admin,
    Cursor,
    Limit,
    OperatorRoute,
    Reader,
    Writer,
    bad_input,
    cursor_of,
    id_of,
    replayed_headers,
    transaction,
)
from tolom.api.operator.reconciliation import files, uploads
from tolom.api.operator.reconciliation.refusals import day_of, no_agent, refused
from tolom.api.operator.reconciliation.schemas import (
    DAY_PATTERN,
    AgentCode,
    Calendar,
    DayDetail,
    DayText,
    Discrepancy,
    DiscrepancyId,
    Reason,
    RegistryFormat,
    ResolveIn,
    calendar_out,
    day_out,
    discrepancy_out,
)
from tolom.api.operator.reconciliation.schemas import Day as DayOut
from tolom.api.security import Caller
from tolom.httpkit.database import retry_later_when_unavailable
from tolom.httpkit.ids import next_cursor
from tolom.httpkit.problems import FieldError, ProblemError, responses
from tolom.reconciliation import days, formats, queries
from tolom.reconciliation.days import NotFound, ReconciliationError
from tolom.reconciliation.formats import FormatError

router = APIRouter(tags=["reconciliation"], route_class=OperatorRoute)

MAX_CALENDAR_AGENTS = 50


def _load_day(caller: Caller, code: str, when: date) -> days.Day:
    with transaction(caller.runtime) as conn:
        try:
            return days.day(conn, code, when)
        except NotFound:
            raise no_agent(code) from None


# --- registry formats ---------------------------------------------------------------------


@router.get(
    "/agents/{code}/registry-format",
    summary="The agent's registry format",
    description="How the agent writes its registry: file kind, columns, encoding, date and "
    "time formats, time zone, amount unit. An agent never configured has the default, "
    "QIWI-style text.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found"),
)
def get_registry_format(code: AgentCode, caller: Reader) -> RegistryFormat:
    with transaction(caller.runtime) as conn:
        try:
            return queries.agent_format(conn, code).format
        except NotFound:
            raise no_agent(code) from None


@router.put(
    "/agents/{code}/registry-format",
    summary="Set the agent's registry format",
    description="Replaces the agent's registry format with these settings (those left out "
    "take their defaults). Settings that cannot be used are a 422 saying what is wrong, and "
    "nothing is stored. Audited as `registry_format.set` with the settings before and after, "
    "when they change. Registries already imported are not read again.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found"),
)
def put_registry_format(code: AgentCode, body: RegistryFormat, caller: Admin) -> RegistryFormat:
    try:
        wanted = formats.validate(body)
    except FormatError as error:
        message = str(error)
        raise ProblemError(
            "invalid_request",
            f"Формат реестра не подходит: {message}",
            errors=[FieldError(field="body", message=message)],
        ) from None
    with transaction(caller.runtime) as conn:
        try:
            agent = queries.agent(conn, code)
        except NotFound:
            raise no_agent(code) from None
        done = formats.set_audited(
            conn, agent.id, agent.code, wanted, actor=caller.actor, address=caller.address
        )
        return done.after


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
    first, last = day_of(start, "from"), day_of(end, "to")
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
    return calendar_out(cells)


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
    when = day_of(day)
    after = cursor_of(cursor)
    with transaction(caller.runtime) as conn:
        try:
            found = days.day(conn, code, when)
        except NotFound:
            raise no_agent(code) from None
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
        **dict(day_out(found)),
        discrepancy_count=total,
        discrepancies=[discrepancy_out(d) for d in listed[:shown]],
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
            return discrepancy_out(days.get_discrepancy(conn, number))
        except NotFound as error:
            raise refused(error, "discrepancy_not_found") from None


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
        with retry_later_when_unavailable():
            after = days.resolve(
                caller.runtime.engine,
                number,
                body.action,
                body.reason,
                actor=caller.actor,
                address=caller.address,
            )
    except ReconciliationError as error:
        raise refused(error, "discrepancy_not_found") from None
    if before.resolved:
        response.headers["Idempotent-Replayed"] = "true"
    return discrepancy_out(after)


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
def close_day(code: AgentCode, day: DayText, caller: Writer, response: Response) -> DayOut:
    when = day_of(day)
    before = _load_day(caller, code, when)
    try:
        with retry_later_when_unavailable():
            after = days.close(
                caller.runtime.engine, code, when, actor=caller.actor, address=caller.address
            )
    except ReconciliationError as error:
        raise refused(error, "agent_not_found") from None
    if before.state == "closed":
        response.headers["Idempotent-Replayed"] = "true"
    return day_out(after)


@router.post(
    "/reconciliation/days/{code}/{day}/reopen",
    summary="Reopen a closed day (admin)",
    description="With a reason. The day takes registries and resolutions again; its act is "
    "a draft until it is closed again. A day that is not closed is refused with 409 "
    "`reconciliation_refused`. Audited as `reconciliation.reopen`.",
    responses=responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
)
def reopen_day(code: AgentCode, day: DayText, body: Reason, caller: Admin) -> DayOut:
    when = day_of(day)
    try:
        with retry_later_when_unavailable():
            after = days.reopen(
                caller.runtime.engine,
                code,
                when,
                body.reason,
                actor=caller.actor,
                address=caller.address,
            )
    except ReconciliationError as error:
        raise refused(error, "agent_not_found") from None
    return day_out(after)


router.include_router(files.router)
router.include_router(uploads.router)
