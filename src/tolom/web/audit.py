"""The back office's audit log: the list with its filters and keyset pages, one line with
before and after side by side, and the CSV export of a filter.

A thin adapter over `tolom.backoffice.audit_log`. Everyone signed in reads; nobody
changes anything here (the log is append-only, there is no form that posts). The export is
for administrators, accountants and auditors (the `audit_export` action of `backoffice.users`), holds at most
`MAX_EXPORT_ROWS` lines (a wider filter is refused with a page that says so, before the
first byte), is streamed page by page, and is itself written to the log (`audit.export`).
"""

from __future__ import annotations

from itertools import islice
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tolom.backoffice import audit_log, exports
from tolom.backoffice.audit_log import AuditFilter, AuditLine
from tolom.backoffice.users import Session
from tolom.fields import DayText, day_of
from tolom.web import i18n
from tolom.web.auth import (
    PageRefusal,
    PageRoute,
    address,
    forbidden,
    message_page,
    runtime,
    signed_in,
    this_page,
)
from tolom.web.forms import BadFilter, PageForm, cursor
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]

PAGE_SIZE = 50


_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters: no form of ours sends them
_LIMITS = audit_log.LIMITS


class ListForm(PageForm):
    """The list's GET form as typed, and the filter it means. Every field is a free text
    or a date input, so any value a form could not send is tampering (400)."""

    actor: str = Field("", max_length=_LIMITS["actor"], pattern=_PRINTABLE)
    action: str = Field("", max_length=_LIMITS["action"], pattern=_PRINTABLE)
    object_type: str = Field(
        "", alias="type", max_length=_LIMITS["object_type"], pattern=r"^(|[a-z][a-z0-9_]{0,31})$"
    )
    object_id: str = Field("", alias="object", max_length=_LIMITS["object_id"], pattern=_PRINTABLE)
    date_from: DayText = Field("", alias="from")
    date_to: DayText = Field("", alias="to")
    address: str = Field("", max_length=_LIMITS["address"], pattern=_PRINTABLE)

    @property
    def where(self) -> AuditFilter:
        return AuditFilter(
            actor=self.actor or None,
            action=self.action or None,
            object_type=self.object_type or None,
            object_id=self.object_id or None,
            date_from=day_of(self.date_from),
            date_to=day_of(self.date_to),
            address=self.address or None,
        )

    def query(self, **extra: str) -> str:
        """The form's fields as a query string (empty ones left out), plus `extra`."""
        fields = {
            "actor": self.actor,
            "action": self.action,
            "type": self.object_type,
            "object": self.object_id,
            "from": self.date_from,
            "to": self.date_to,
            "address": self.address,
            **extra,
        }
        return urlencode({k: v for k, v in fields.items() if v})


def list_form(request: Request) -> ListForm:
    """The filter from the query string; BadFilter for a value no form could send."""
    return ListForm.read(request.query_params)


def object_link(object_type: str, object_id: str) -> str | None:
    """The page of the object a line names, where there is one."""
    prefix = audit_log.OBJECT_PAGES.get(object_type)
    if prefix is None or not object_id:
        return None
    return prefix + quote(object_id, safe="")


def _bad(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


@router.get("/audit")
async def audit_list(request: Request, session: SignedIn) -> Response:
    try:
        form = list_form(request)
        before = cursor(request.query_params.get("before"))
    except BadFilter:
        return _bad(request, session)
    engine = runtime(request).reads  # the replica, if any

    def load() -> tuple[list[AuditLine], list[str]]:
        with engine.connect() as conn:
            found = audit_log.search(conn, form.where, before_id=before, limit=PAGE_SIZE + 1)
            return found, list(audit_log.object_types(conn))

    found, types = await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = form.query(before=str(shown[-1].id)) if len(found) > PAGE_SIZE else None
    t = i18n.translator(session.user.language)
    return render(
        "audit.html",
        t=t,
        session=session,
        page="audit",
        title=t("audit.title"),
        here=this_page(request),
        form=form,
        rows=shown,
        object_types=types,
        object_link=object_link,
        more=more,
        first_page=before is None,
        filters=form.query(),
        may_export=audit_log.may_export(session.user),
    )


@router.get("/audit/export.csv")
async def export_csv(request: Request, session: SignedIn) -> Response:
    if not audit_log.may_export(session.user):
        raise PageRefusal(forbidden(request, session))
    try:
        form = list_form(request)
    except BadFilter:
        return _bad(request, session)
    engine, client = runtime(request).engine, address(request)
    limit = audit_log.MAX_EXPORT_ROWS

    def check_and_record() -> tuple[int, int] | None:
        """(lines, newest id), or None when too many. The export's own line is written, in
        its own transaction before the first byte, when it goes ahead; the file holds the
        lines up to the newest one at that moment (not its own, nor any written later)."""
        with engine.begin() as conn:
            started = audit_log.start_export(
                conn, form.where, user=session.user, address=client, limit=limit
            )
        return None if started is None else (started.lines, started.up_to_id)

    checked = await run_in_threadpool(check_and_record)
    if checked is None:
        shown = i18n.grouped(limit, session.user.language)
        return message_page(
            request, session, "export-too-large", "audit.too_large", status=422, limit=shown
        )
    _, newest = checked
    found = audit_log.lines(engine, form.where, before_id=newest + 1)
    return StreamingResponse(
        audit_log.csv_chunks(islice(found, limit)),
        media_type=f"{exports.CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{audit_log.filename(form.where)}"'},
    )


# --- one line ------------------------------------------------------------------------------


@router.get("/audit/{line_id}")
async def audit_entry(request: Request, line_id: str, session: SignedIn) -> Response:
    number = line_id if line_id.isascii() and line_id.isdigit() and len(line_id) <= 18 else None
    engine = runtime(request).engine

    def load() -> AuditLine | None:
        if number is None:
            return None
        with engine.connect() as conn:
            return audit_log.by_id(conn, int(number))

    line = await run_in_threadpool(load)
    if line is None:
        return message_page(request, session, "not-found", "audit.not_found", status=404)
    t = i18n.translator(session.user.language)
    return render(
        "audit_entry.html",
        t=t,
        session=session,
        page="audit-one",
        title=t("audit.entry.title", number=line.id),
        here=f"/audit/{line.id}",
        line=line,
        diff=audit_log.compare(line),
        link=object_link(line.object_type, line.object_id),
    )
