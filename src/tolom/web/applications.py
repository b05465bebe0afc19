"""The back office's queue of online applications (docs/backoffice.md#online-applications):
the list by status with its counts, one application with its invoice and orders, and the
two decisions — the applicant's identity verified, or the application rejected with a
reason.

A thin adapter over `tolom.billing.applications`: `verify_audited` and `reject_audited`
validate, write, audit (as `user:USERNAME` from the client's address) and tell the
customer in one transaction; this module reads the forms, says the core's refusals in the
user's language and renders. Operators (action `orders`, who start production) decide;
every signed-in user reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import BeforeValidator, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.backoffice.users import Session
from tolom.billing import applications, orders
from tolom.db import Connection
from tolom.texts import N_
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
    this_page,
)
from tolom.web.forms import BadFilter, PageForm
from tolom.web.forms import cursor as cursor_of
from tolom.web.forms import number as number_of
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayDecide = Annotated[Session, Depends(may("orders"))]

PAGE_SIZE = 50
ORDERS_SHOWN = 100
VIEWS = (*applications.APPLICATION_STATUSES, "all")
_DONE = {
    "verify": N_("application.done.verify"),
    "reject": N_("application.done.reject"),
    "unchanged": N_("application.done.unchanged"),
}


# --- the list ---------------------------------------------------------------------------


class ListForm(PageForm):
    """The list's GET form as typed (no status: the ones awaiting verification); every
    value a form could not send is tampering (400)."""

    status: Annotated[
        Literal["new", "verified", "rejected", "all"], BeforeValidator(lambda v: v or "new")
    ] = "new"
    office: str = Field("", max_length=applications.MAX_OFFICE_LENGTH, pattern=r"^[^\x00-\x1f]*$")
    inn: str = Field("", pattern=r"^[0-9]{0,14}$")

    def query(self, **extra: str) -> str:
        fields = {"status": self.status, "office": self.office, "inn": self.inn, **extra}
        return urlencode({k: v for k, v in fields.items() if v})


def _bad_request(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


@router.get("/applications")
async def application_list(request: Request, session: SignedIn) -> Response:
    offices = tuple(runtime(request).settings.apply_offices)
    try:
        form = ListForm.read(request.query_params)
        cursor = cursor_of(request.query_params.get("before"))
        if form.office and form.office not in offices:
            raise BadFilter("office")
    except BadFilter:
        return _bad_request(request, session)
    engine = runtime(request).engine

    def load() -> tuple[list[applications.ApplicationRecord], dict[str, int]]:
        with engine.connect() as conn:
            found = applications.search(
                conn,
                status=None if form.status == "all" else form.status,
                office=form.office or None,
                inn=form.inn or None,
                cursor=cursor,
                limit=PAGE_SIZE + 1,
            )
            return found, applications.counts(conn)

    found, counts = await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = form.query(before=str(shown[-1].id)) if len(found) > PAGE_SIZE else None
    t = i18n.translator(session.user.language)
    return render(
        "applications.html",
        t=t,
        session=session,
        page="applications",
        title=t("applications.title"),
        here=this_page(request),
        form=form,
        views=VIEWS,
        counts={**counts, "all": sum(counts.values())},
        offices=offices,
        rows=shown,
        now=options(request).clock(),
        more=more,
        first_page=cursor is None,
        filters=form.query(),
    )


# --- one application -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the application's page shows."""

    application: applications.ApplicationRecord
    orders: list[orders.Order]  # the paid invoice's, in the order they were made
    now: datetime


class RejectForm(PageForm):
    """The rejection's reason as typed: required, no longer than the core keeps."""

    mistakes: ClassVar[Mapping[str, str]] = {"reason": N_("application.reason_required")}
    too_long = N_("application.reason_too_long")

    reason: str = Field("", min_length=1, max_length=applications.MAX_REASON)


def _load_detail(request: Request, application_id: int) -> Detail | None:
    engine = runtime(request).engine
    with engine.connect() as conn:
        found = applications.get(conn, application_id)
        if found is None:
            return None
        made = orders.list_orders(
            conn, invoice_number=found.invoice_number, oldest_first=True, limit=ORDERS_SHOWN
        )
    return Detail(found, made, options(request).clock())


def _detail_page(
    request: Request,
    session: Session,
    detail: Detail,
    *,
    status: int = 200,
    error: str | None = None,
    reject: RejectForm | None = None,
) -> Response:
    t = i18n.translator(session.user.language)
    number = detail.application.id
    done = request.query_params.get("done", "")
    return render(
        "application.html",
        status=status,
        t=t,
        session=session,
        page="applications-one",
        title=t("application.title", number=number),
        here=f"/applications/{number}",
        d=detail,
        may_decide=session.user.may("orders"),
        done=t(_DONE[done]) if done in _DONE and status == 200 else "",
        error=error,
        reject=reject or RejectForm(),
        max_reason=applications.MAX_REASON,
    )


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "application.not_found", status=404)


@router.get("/applications/{application_id}")
async def application_page(request: Request, application_id: str, session: SignedIn) -> Response:
    number = number_of(application_id)
    detail = None if number is None else await run_in_threadpool(_load_detail, request, number)
    if detail is None:
        return _not_found(request, session)
    return _detail_page(request, session, detail)


# --- decisions ------------------------------------------------------------------------------


async def _decide(
    request: Request,
    session: Session,
    application_id: str,
    action: str,
    decide: Callable[[Connection, int, str, str], applications.Decision],
    reject: RejectForm | None = None,
) -> Response:
    """Take one decision in one transaction; a refusal re-shows the application (409) with
    the reason, and nothing is written."""
    number = number_of(application_id)
    if number is None:
        return _not_found(request, session)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> applications.Decision | applications.ApplicationError:
        try:
            with engine.begin() as conn:
                return decide(conn, number, audit_actor(session), client)
        except applications.ApplicationError as error:  # not found, decided the other way
            return error

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, applications.Decision):
        shown = action if outcome.changed else "unchanged"
        return redirect(f"/applications/{number}?done={shown}")
    detail = await run_in_threadpool(_load_detail, request, number)
    if detail is None or isinstance(outcome, applications.ApplicationNotFound):
        return _not_found(request, session)
    error = outcome.said(session.user.language)
    return _detail_page(request, session, detail, status=409, error=error, reject=reject)


@router.post("/applications/{application_id}/verify")
async def verify(request: Request, application_id: str, session: MayDecide) -> Response:
    await checked_form(request, session)

    def decide(conn: Connection, number: int, actor: str, client: str) -> applications.Decision:
        return applications.verify_audited(conn, number, actor=actor, address=client)

    return await _decide(request, session, application_id, "verify", decide)


@router.post("/applications/{application_id}/reject")
async def reject(request: Request, application_id: str, session: MayDecide) -> Response:
    """The reason is required: a missing or too long one is said next to the field (422)
    and nothing changes."""
    fields = await checked_form(request, session)
    number = number_of(application_id)
    if number is None:
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    try:
        form = RejectForm.read({"reason": fields.get("reason", "")}, t)
    except BadFilter:
        return _bad_request(request, session)
    if form.errors:
        detail = await run_in_threadpool(_load_detail, request, number)
        if detail is None:
            return _not_found(request, session)
        if len(form.reason) > applications.MAX_REASON:  # the field takes no more
            form = form.model_copy(update={"reason": ""})
        return _detail_page(request, session, detail, status=422, reject=form)
    reason = form.reason

    def decide(conn: Connection, number: int, actor: str, client: str) -> applications.Decision:
        return applications.reject_audited(conn, number, reason=reason, actor=actor, address=client)

    return await _decide(request, session, application_id, "reject", decide, form)
