"""The back office's reconciliation pages: the calendar of agent-days, the upload of an
agent's registry, one agent-day with its discrepancies (resolved with a reason), closing and
reopening the day, and the act and our registry as downloads.

A thin adapter over `tolom.reconciliation` (the CLI's `tolom reconcile` calls the same
functions): the core checks, changes and audits; this module reads forms and renders pages.
"""

from __future__ import annotations

import tempfile
import threading
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import IO, Annotated, ClassVar

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tolom.agents import queries as agent_queries
from tolom.backoffice import exports
from tolom.backoffice.users import Session
from tolom.fields import DayText, ReconciliationReason, day_of
from tolom.httpkit.disconnect import run_while_connected
from tolom.reconciliation import days, formats, outbound, queries, registries
from tolom.reconciliation.days import Day, Discrepancy, NotFound, ReconciliationError
from tolom.reconciliation.matching import KINDS
from tolom.reconciliation.parsing import RegistryError
from tolom.reconciliation.xlsx import cancelled_when
from tolom.texts import N_
from tolom.timestamps import HOME_ZONE
from tolom.web import i18n
from tolom.web.auth import (
    PageRoute,
    address,
    audit_actor,
    checked_form,
    may,
    message_page,
    options,
    redirect,
    runtime,
    signed_in,
)
from tolom.web.forms import BadFilter, PageForm, mistake
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayReconcile = Annotated[Session, Depends(may("reconciliation"))]
MayReopen = Annotated[Session, Depends(may("reopen_days"))]

BISHKEK = HOME_ZONE
MAX_UPLOAD_MB = 64
MAX_UPLOAD = MAX_UPLOAD_MB * 1024 * 1024
LIST_LIMIT = 500
REASON_MAX = days.REASON_MAX
STATES = ("none", "waiting", "open", "ready", "closed")
YEARS = (2000, 2099)  # the days the pages take


def _known_month(text: str) -> str:
    if text and not (YEARS[0] <= int(text[:4]) <= YEARS[1] and 1 <= int(text[5:]) <= 12):
        raise ValueError("no such month")
    return text


class CalendarForm(PageForm):
    """The calendar's month ("YYYY-MM"; none: this month); anything else is tampering."""

    month: Annotated[
        str, Field(pattern=r"^(|[0-9]{4}-[0-9]{2})$"), AfterValidator(_known_month)
    ] = ""

    def first(self, today: date) -> date:
        """The first day of the month shown."""
        if not self.month:
            return today.replace(day=1)
        return date(int(self.month[:4]), int(self.month[5:]), 1)


def _shift(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _day_of(value: str) -> date | None:
    """A day of a path ("YYYY-MM-DD" within `YEARS`), or None."""
    if len(value) != 10:
        return None
    try:
        found = date.fromisoformat(value)
    except ValueError:
        return None
    return found if YEARS[0] <= found.year <= YEARS[1] else None


def _within_years(text: str) -> str:
    if text and _day_of(text) is None:
        raise mistake(N_("recon.upload.bad_day"))
    return text


def _code_ok(code: str) -> bool:
    """An agent code from the path could be one (the form guard sees no path segments)."""
    return 0 < len(code) <= 32 and code.isprintable()


def _today(request: Request) -> date:
    return options(request).clock().astimezone(BISHKEK).date()


# --- the calendar ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    agent: str
    name: str
    cells: list[days.Cell]


class UploadForm(PageForm):
    """The upload's fields as typed (the file is read apart, bounded): the agent (one of
    the gateway agents, checked by the page) and the registry's day, if given; what is
    wrong is said above the form."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "agent": N_("recon.upload.no_agent"),
        "day": N_("recon.upload.bad_day"),
    }

    agent: str = Field("", max_length=32)
    day: Annotated[DayText, AfterValidator(_within_years)] = ""

    @property
    def chosen_day(self) -> date | None:
        return None if "day" in self.errors else day_of(self.day)


class ReasonForm(PageForm):
    """A resolution (`action`, which the discrepancy's own actions bound) or a reopening,
    with its reason: the operator API's rule (`fields.ReconciliationReason`)."""

    mistakes: ClassVar[Mapping[str, str]] = {"reason": N_("recon.reason_required")}
    too_long = N_("recon.reason_too_long")

    reason: ReconciliationReason = ""
    action: str = Field("", max_length=16)


def _load_calendar(request: Request, first: date) -> tuple[list[Row], list[date]]:
    last = first.replace(day=monthrange(first.year, first.month)[1])
    # The replica, if any: the calendar only points at days; a day's page, its actions
    # and its documents read the primary (what was just resolved or closed shows there).
    with runtime(request).reads.connect() as conn:
        cells = days.calendar(conn, first, last)
        names = {a.code: a.name for a in agent_queries.names(conn, gateway_only=True)}
    by_agent: dict[str, list[days.Cell]] = {}
    for cell in cells:
        by_agent.setdefault(cell.agent, []).append(cell)
    rows = [Row(code, str(names.get(code, code)), found) for code, found in by_agent.items()]
    every = [first.replace(day=n) for n in range(1, last.day + 1)]
    return rows, every


async def _calendar_page(
    request: Request,
    session: Session,
    first: date,
    *,
    form: UploadForm | None = None,
    status: int = 200,
) -> Response:
    rows, every = await run_in_threadpool(_load_calendar, request, first)
    t = i18n.translator(session.user.language)
    month = f"{first:%Y-%m}"
    return render(
        "reconciliation.html",
        status=status,
        t=t,
        session=session,
        page="reconciliation",
        title=t("recon.title"),
        here=f"/reconciliation?month={month}",
        month=month,
        month_name=f"{first:%m.%Y}",
        prev_month=f"{_shift(first, -1):%Y-%m}",
        next_month=f"{_shift(first, 1):%Y-%m}",
        rows=rows,
        every=every,
        states=STATES,
        form=form or UploadForm(),
        may_upload=session.user.may("reconciliation"),
        max_mb=MAX_UPLOAD_MB,
    )


def _bad_request(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "recon.not_found", status=404)


@router.get("/reconciliation")
async def calendar_page(request: Request, session: SignedIn) -> Response:
    try:
        form = CalendarForm.read(request.query_params)
    except BadFilter:
        return _bad_request(request, session)
    return await _calendar_page(request, session, form.first(_today(request)))


@router.post("/reconciliation/upload")
async def upload(request: Request, session: MayReconcile) -> Response:
    t = i18n.translator(session.user.language)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD + 64 * 1024:
        # Refused before the body is read: nothing is parsed, nothing imported.
        return message_page(
            request, session, "too-large", "recon.too_large", status=413, mb=MAX_UPLOAD_MB
        )
    fields = await checked_form(request, session)
    upload_file = (await request.form()).get("file")
    try:
        form = UploadForm.read(fields, t)
    except BadFilter:
        return _bad_request(request, session)
    engine = runtime(request).engine

    def gateway_agents() -> set[str]:
        with engine.connect() as conn:
            return agent_queries.reconciled_codes(conn)

    if "agent" not in form.errors and form.agent not in await run_in_threadpool(gateway_agents):
        form.errors["agent"] = t("recon.upload.no_agent")
    chosen_day = form.chosen_day
    first = (chosen_day or _today(request)).replace(day=1)
    content = b""
    if not isinstance(upload_file, UploadFile) or not upload_file.filename:
        form.errors["file"] = t("recon.upload.no_file")
    else:
        content = await upload_file.read(MAX_UPLOAD + 1)
        if len(content) > MAX_UPLOAD:
            form.errors["file"] = t("recon.upload.too_large", mb=MAX_UPLOAD_MB)
    if form.errors:
        return await _calendar_page(request, session, first, form=form, status=422)
    assert isinstance(upload_file, UploadFile)
    name = (upload_file.filename or "registry")[-200:]
    client = address(request)

    def attempt(gone: threading.Event) -> registries.Imported:
        with cancelled_when(gone):  # an XLSX parse stops if the operator leaves
            return registries.import_registry(
                engine,
                form.agent,
                content,
                file_name=name,
                actor=audit_actor(session),
                day=chosen_day,
                address=client,
            )

    try:
        done = await run_while_connected(request, attempt)
    except RegistryError as error:
        form.errors["form"] = t("recon.upload.refused", reason=error.said(t.language))
        status = 409 if isinstance(error, registries.DayClosed) else 422
        return await _calendar_page(request, session, first, form=form, status=status)
    outcome = "replayed=1" if done.replayed else "imported=1"
    return redirect(f"/reconciliation/{done.agent}/{done.business_date.isoformat()}?{outcome}")


# --- one agent-day --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayView:
    day: Day
    listed: list[Discrepancy]
    more: bool
    line_count: int | None
    total: int | None


def _load_day(request: Request, code: str, when: date, only_open: bool) -> DayView | None:
    with runtime(request).engine.connect() as conn:
        try:
            found = days.day(conn, code, when)
        except NotFound:
            return None
        listed: list[Discrepancy] = []
        count = total = None
        if found.registry_id is not None:
            listed = days.discrepancies_of(
                conn, found.registry_id, unresolved_only=only_open, limit=LIST_LIMIT + 1
            )
            totals = queries.registry_totals(conn, found.registry_id)
            if totals is not None:
                count, total = totals.line_count, totals.total_amount
    return DayView(found, listed[:LIST_LIMIT], len(listed) > LIST_LIMIT, count, total)


def _target(request: Request, agent: str, day_text: str) -> tuple[str, date] | None:
    when = _day_of(day_text)
    if when is None or not _code_ok(agent):
        return None
    return agent, when


async def _day_page(
    request: Request,
    session: Session,
    agent: str,
    when: date,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[int, str] | None = None,
    reasons: dict[int, str] | None = None,
    reopen_reason: str = "",
) -> Response:
    only_open = request.query_params.get("only") == "open"
    view = await run_in_threadpool(_load_day, request, agent, when, only_open)
    if view is None:
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    params = request.query_params
    notice = None
    if params.get("imported") == "1" and view.line_count is not None and view.total is not None:
        notice = t(
            "recon.imported",
            file=view.day.file_name or "",
            lines=t.number(view.line_count),
            amount=t.money(view.total),
        )
    elif params.get("replayed") == "1":
        notice = t("recon.replayed")
    elif params.get("closed") == "1":
        notice = t("recon.closed_now")
    elif params.get("reopened") == "1":
        notice = t("recon.reopened_now")
    elif params.get("resolved", "").isdigit() and len(params["resolved"]) <= 18:
        notice = t("recon.resolved_now", number=params["resolved"])
    base = f"/reconciliation/{agent}/{when.isoformat()}"
    return render(
        "reconciliation_day.html",
        status=status,
        t=t,
        session=session,
        page="reconciliation-day",
        title=t("recon.day.title", agent=agent, day=i18n.day(when)),
        here=base + ("?only=open" if only_open else ""),
        v=view,
        base=base,
        kinds=KINDS,
        only_open=only_open,
        list_limit=LIST_LIMIT,
        notice=notice,
        error=error,
        errors=errors or {},
        reasons=reasons or {},
        reopen_reason=reopen_reason,
        reason_max=REASON_MAX,
        may_reconcile=session.user.may("reconciliation"),
        may_reopen=session.user.may("reopen_days"),
        month=f"{when:%Y-%m}",
    )


@router.get("/reconciliation/{agent}/{day_text}")
async def day_page(request: Request, agent: str, day_text: str, session: SignedIn) -> Response:
    target = _target(request, agent, day_text)
    if target is None:
        return _bad_request(request, session)
    return await _day_page(request, session, *target)


def _reason_form(fields: dict[str, str], t: i18n.Translator) -> tuple[ReasonForm, str | None]:
    """The posted reason form and what is wrong with it, if anything."""
    form = ReasonForm.read(fields, t)
    return form, form.errors.get("reason")


def _discrepancy_of_day(
    request: Request, agent: str, when: date, number: int
) -> Discrepancy | None:
    """The discrepancy if it belongs to a registry of this agent-day (any version)."""
    with runtime(request).engine.connect() as conn:
        try:
            found = days.get_discrepancy(conn, number)
        except NotFound:
            return None
        of = queries.registry_day(conn, found.registry_id)
    return found if of is not None and (of.agent, of.business_date) == (agent, when) else None


@router.post("/reconciliation/{agent}/{day_text}/discrepancies/{number}")
async def resolve(
    request: Request, agent: str, day_text: str, number: str, session: MayReconcile
) -> Response:
    fields = await checked_form(request, session)
    target = _target(request, agent, day_text)
    if target is None or not (number.isascii() and number.isdigit() and len(number) <= 18):
        return _bad_request(request, session)
    code, when = target
    found = await run_in_threadpool(_discrepancy_of_day, request, code, when, int(number))
    if found is None:
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    try:
        form, error = _reason_form(fields, t)
    except BadFilter:
        return _bad_request(request, session)
    action, reason = form.action, form.reason
    status = 422
    if error is None and not found.resolved and action not in [a.value for a in found.actions]:
        error = t("recon.bad_action")
    if error is None:
        engine, client = runtime(request).engine, address(request)

        def attempt() -> None:
            days.resolve(
                engine, found.id, action, reason, actor=audit_actor(session), address=client
            )

        try:
            await run_in_threadpool(attempt)
        except ReconciliationError as refused:
            error, status = t("recon.refused", reason=refused.said(t.language)), 409
        else:
            return redirect(
                f"/reconciliation/{code}/{when.isoformat()}?resolved={found.id}#d-{found.id}"
            )
    return await _day_page(
        request,
        session,
        code,
        when,
        status=status,
        errors={found.id: error},
        reasons={found.id: reason[:REASON_MAX]},
    )


@router.post("/reconciliation/{agent}/{day_text}/close")
async def close_day(request: Request, agent: str, day_text: str, session: MayReconcile) -> Response:
    await checked_form(request, session)
    target = _target(request, agent, day_text)
    if target is None:
        return _bad_request(request, session)
    code, when = target
    engine, client = runtime(request).engine, address(request)
    t = i18n.translator(session.user.language)

    def attempt() -> None:
        days.close(engine, code, when, actor=audit_actor(session), address=client)

    try:
        await run_in_threadpool(attempt)
    except NotFound:
        return _not_found(request, session)
    except ReconciliationError as refused:
        error = t("recon.refused", reason=refused.said(t.language))
        return await _day_page(request, session, code, when, status=409, error=error)
    return redirect(f"/reconciliation/{code}/{when.isoformat()}?closed=1")


@router.post("/reconciliation/{agent}/{day_text}/reopen")
async def reopen_day(request: Request, agent: str, day_text: str, session: MayReopen) -> Response:
    fields = await checked_form(request, session)
    target = _target(request, agent, day_text)
    if target is None:
        return _bad_request(request, session)
    code, when = target
    t = i18n.translator(session.user.language)
    try:
        form, error = _reason_form(fields, t)
    except BadFilter:
        return _bad_request(request, session)
    reason = form.reason
    status = 422
    if error is None:
        engine, client = runtime(request).engine, address(request)

        def attempt() -> None:
            days.reopen(engine, code, when, reason, actor=audit_actor(session), address=client)

        try:
            await run_in_threadpool(attempt)
        except NotFound:
            return _not_found(request, session)
        except ReconciliationError as refused:
            error, status = t("recon.refused", reason=refused.said(t.language)), 409
        else:
            return redirect(f"/reconciliation/{code}/{when.isoformat()}?reopened=1")
    return await _day_page(
        request, session, code, when, status=status, error=error, reopen_reason=reason[:REASON_MAX]
    )


# --- downloads ------------------------------------------------------------------------------


async def _act_file(
    request: Request, session: Session, agent: str, day_text: str, kind: str
) -> Response:
    target = _target(request, agent, day_text)
    if target is None:
        return _bad_request(request, session)
    code, when = target
    engine, settings = runtime(request).engine, runtime(request).settings

    def build() -> bytes | str:
        # The act module brings fpdf, ~0.25 s of CPU: imported by the first act, not by
        # every server process at startup (docs/operations.md).
        from tolom.reconciliation import act

        with engine.connect() as conn:
            try:
                found = act.load(conn, code, when)
            except NotFound:
                return "not-found"
            except ReconciliationError:
                return "no-act"
        return act.pdf(found, settings) if kind == "pdf" else act.xlsx(found, settings)

    content = await run_in_threadpool(build)
    if content == "not-found":
        return _not_found(request, session)
    if isinstance(content, str):
        return message_page(request, session, "no-act", "recon.no_act", status=404)
    media = "application/pdf" if kind == "pdf" else outbound.MEDIA_TYPES["xlsx"]
    name = f"akt-{code}-{when.isoformat()}.{kind}"
    return Response(
        content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/reconciliation/{agent}/{day_text}/act.pdf")
async def act_pdf(request: Request, agent: str, day_text: str, session: SignedIn) -> Response:
    return await _act_file(request, session, agent, day_text, "pdf")


@router.get("/reconciliation/{agent}/{day_text}/act.xlsx")
async def act_xlsx(request: Request, agent: str, day_text: str, session: SignedIn) -> Response:
    return await _act_file(request, session, agent, day_text, "xlsx")


@router.get("/reconciliation/{agent}/{day_text}/our-registry")
async def our_registry(request: Request, agent: str, day_text: str, session: SignedIn) -> Response:
    target = _target(request, agent, day_text)
    if target is None:
        return _bad_request(request, session)
    code, when = target
    engine = runtime(request).engine

    def build() -> tuple[IO[bytes], int, str, str] | None:
        with engine.connect() as conn:
            try:
                found = registries.agent_for_registry(conn, code)
            except RegistryError:
                return None
            fmt = formats.load(conn, found.id)
        # On disk, not in memory: a busy agent-day is a million lines.
        file = tempfile.TemporaryFile(prefix="tolom-registry-")  # noqa: SIM115
        try:
            outbound.write(engine, found, when, fmt, file)
            size = file.tell()
            file.seek(0)
        except BaseException:
            file.close()
            raise
        return file, size, outbound.filename(found, when, fmt), outbound.MEDIA_TYPES[fmt.kind]

    built = await run_in_threadpool(build)
    if built is None:
        return _not_found(request, session)
    file, size, name, media = built
    return StreamingResponse(
        exports.file_chunks(file),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(size),
        },
    )
