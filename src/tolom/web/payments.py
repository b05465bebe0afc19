"""The back office's payments list: filters, keyset pages, and the exports behind them.

A thin adapter: the list is `payments.records.search` (newest first, keyset pages), the
files are `backoffice.exports`; this module only reads the form and renders the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tolom.agents import queries as agent_queries
from tolom.backoffice import exports
from tolom.backoffice.users import Session
from tolom.billing import customers, invoices
from tolom.db import Connection
from tolom.documents import receipt_pdf, receipts
from tolom.fields import DayText, PaymentStatus, ServiceCode, day_of
from tolom.payments import records, reversal
from tolom.payments.model import CancelOutcome, CancelResult
from tolom.texts import N_
from tolom.web import forms, i18n
from tolom.web.auth import (
    PageRoute,
    address,
    audit_actor,
    checked_form,
    may,
    message_page,
    redirect,
    runtime,
    signed_in,
    this_page,
)
from tolom.web.forms import BadFilter, PageForm, cursor
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayExport = Annotated[Session, Depends(may("exports"))]
MayReverse = Annotated[Session, Depends(may("reversals"))]

PAGE_SIZE = 50
SERVICES: tuple[str, ...] = get_args(ServiceCode)
STATUSES: tuple[str, ...] = get_args(PaymentStatus)
_MAX_KEY = 64


class ListForm(PageForm):
    """The list's GET form as typed, and the filter it means; every value a form could not
    send is tampering (400)."""

    q: str = Field("", max_length=_MAX_KEY)
    agent: str = Field("", max_length=32)
    service: ServiceCode | Literal[""] = ""
    status: PaymentStatus | Literal[""] = ""
    date_from: DayText = Field("", alias="from")
    date_to: DayText = Field("", alias="to")

    @property
    def where(self) -> records.PaymentFilter:
        return records.PaymentFilter(
            agent=self.agent or None,
            service=self.service or None,
            status=self.status or None,
            date_from=day_of(self.date_from),
            date_to=day_of(self.date_to),
            key=self.q or None,
        )

    def query(self, **extra: str) -> str:
        """The form's fields as a query string (empty ones left out), plus `extra`."""
        fields = {
            "q": self.q,
            "agent": self.agent,
            "service": self.service,
            "status": self.status,
            "from": self.date_from,
            "to": self.date_to,
            **extra,
        }
        return urlencode({k: v for k, v in fields.items() if v})


def list_form(request: Request) -> ListForm:
    """The filter from the query string; BadFilter for a value no form offers."""
    return ListForm.read(request.query_params)


@router.get("/payments")
async def payment_list(request: Request, session: SignedIn) -> Response:
    try:
        form = list_form(request)
        before = cursor(request.query_params.get("before"))
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    engine = runtime(request).reads  # the replica, if any: a list decides nothing

    def load() -> tuple[list[records.PaymentRecord], list[tuple[str, str]]]:
        with engine.connect() as conn:
            found = records.search(conn, form.where, before_id=before, limit=PAGE_SIZE + 1)
            known = [(a.code, f"{a.name} ({a.code})") for a in agent_queries.names(conn)]
            return found, known

    found, known_agents = await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = form.query(before=str(shown[-1].id)) if len(found) > PAGE_SIZE else None
    t = i18n.translator(session.user.language)
    return render(
        "payments.html",
        t=t,
        session=session,
        page="payments",
        title=t("payments.title"),
        here=this_page(request),
        form=form,
        agents=known_agents,
        services=SERVICES,
        statuses=STATUSES,
        rows=shown,
        more=more,
        first_page=before is None,
        filters=form.query(),
        may_export=session.user.may("exports"),
    )


async def _export(request: Request, session: Session, fmt: str) -> Response:
    """The list's filter as a file, written by `backoffice.exports` like the API's."""
    try:
        form = list_form(request)
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    engine = runtime(request).reads  # the replica, if any: an export decides nothing

    def size() -> int | None:
        with engine.connect() as conn:
            try:
                exports.check_size(conn, form.where)
            except exports.ExportTooLarge as error:
                return error.limit
            return None

    too_many = await run_in_threadpool(size)
    if too_many is not None:
        limit = i18n.grouped(too_many, session.user.language)
        return message_page(
            request, session, "export-too-large", "payments.too_large", status=422, limit=limit
        )
    name = exports.filename(form.where, fmt)
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    # Each page in a transaction of its own: a long download holds no transaction.
    rows = exports.payments_rows(engine, form.where)
    if fmt == "csv":
        return StreamingResponse(
            exports.csv_chunks(rows),
            media_type=f"{exports.CSV_MEDIA_TYPE}; charset=utf-8",
            headers=headers,
        )
    file, length = await run_in_threadpool(exports.xlsx_file, rows)
    return StreamingResponse(
        exports.file_chunks(file),
        media_type=exports.XLSX_MEDIA_TYPE,
        headers={**headers, "Content-Length": str(length)},
    )


@router.get("/payments/export.csv")
async def export_csv(request: Request, session: MayExport) -> Response:
    return await _export(request, session, "csv")


@router.get("/payments/export.xlsx")
async def export_xlsx(request: Request, session: MayExport) -> Response:
    return await _export(request, session, "xlsx")


# --- one payment ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the payment's page shows."""

    payment: records.PaymentRecord
    postings: list[records.PostingLine]
    requests: list[records.LoggedRequest]
    receipt_url: str
    customer: customers.Customer | None = None  # whose balance or invoice it paid


def customer_of(conn: Connection, record: records.PaymentRecord) -> customers.Customer | None:
    """The registered customer a payment is for: a top-up's INN, or the INN of the paid
    invoice (an invoice made out to a mere payer name has none)."""
    if record.service == "sochi":
        return customers.get(conn, record.account)
    invoice = invoices.get(conn, record.invoice_number) if record.invoice_number else None
    if invoice is None or invoice.inn is None:
        return None
    return customers.get(conn, invoice.inn)


def params_text(stored: str) -> str:
    """A logged request's parameters one `name=value` a line (as stored if not a list)."""
    try:
        pairs = json.loads(stored)
        return "\n".join(f"{k}={v}" for k, v in pairs)
    except (ValueError, TypeError):
        return stored


def _load_detail(request: Request, session: Session, payment_id: int) -> Detail | None:
    engine, settings = runtime(request).engine, runtime(request).settings
    with engine.begin() as conn:
        record = records.by_id(conn, payment_id)
        if record is None:
            return None
        entry_ids = [record.entry_id] if record.entry_id is not None else []
        if record.reversal is not None:
            entry_ids.append(record.reversal.entry_id)
        posted = records.postings_of(conn, entry_ids)
        agent_id = records.agent_id_of(conn, record.id)
        logged = records.requests_of(conn, record, agent_id) if agent_id is not None else []
        receipt = receipts.token_for(
            conn, record.id, actor=audit_actor(session), address=address(request)
        )
        customer = customer_of(conn, record)
    url = receipts.public_url(settings, receipt.token) if receipt is not None else ""
    return Detail(record, posted, logged, url, customer)


def _detail_page(
    request: Request,
    session: Session,
    detail: Detail,
    *,
    status: int = 200,
    error: str | None = None,
    reason: str = "",
) -> Response:
    t = i18n.translator(session.user.language)
    number = detail.payment.id
    return render(
        "payment.html",
        status=status,
        t=t,
        session=session,
        page="payments-one",
        title=t("payment.title", number=number),
        here=f"/payments/{number}",
        d=detail,
        params_text=params_text,
        may_reverse=session.user.may("reversals") and detail.payment.status == "accepted",
        reversed_now=request.query_params.get("reversed") == "1",
        error=error,
        reason=reason,
    )


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "payment.not_found", status=404)


@router.get("/payments/{payment_id}")
async def payment_page(request: Request, payment_id: str, session: SignedIn) -> Response:
    number = forms.number(payment_id)
    detail = None
    if number is not None:
        detail = await run_in_threadpool(_load_detail, request, session, number)
    if detail is None:
        return _not_found(request, session)
    return _detail_page(request, session, detail)


@router.get("/payments/{payment_id}/receipt.pdf")
async def receipt_pdf_file(request: Request, payment_id: str, session: SignedIn) -> Response:
    number = forms.number(payment_id)
    engine, settings, client = runtime(request).engine, runtime(request).settings, address(request)

    def build() -> bytes | None:
        if number is None:
            return None
        with engine.begin() as conn:
            found = receipts.document(
                conn, number, settings, actor=audit_actor(session), address=client
            )
        return None if found is None else receipt_pdf.render(found, settings)

    content = await run_in_threadpool(build)
    if content is None:
        return _not_found(request, session)
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="receipt-{number}.pdf"'},
    )


# --- reversal -----------------------------------------------------------------------------

REASON_MAX = 500
# Refusals as the page says them; anything else (a retry) says "try again".
_REFUSALS = {
    CancelOutcome.BALANCE_SPENT: N_("payment.refused.balance_spent"),
    CancelOutcome.ALREADY_SERVED: N_("payment.refused.already_served"),
    CancelOutcome.NOT_FOUND: N_("payment.not_found.text"),
}
_RETRY = N_("payment.refused.retry")


class _Refused(Exception):
    def __init__(self, result: CancelResult) -> None:
        super().__init__(result.message)
        self.result = result


@router.post("/payments/{payment_id}/reverse")
async def reverse(request: Request, payment_id: str, session: MayReverse) -> Response:
    fields = await checked_form(request, session)
    number = forms.number(payment_id)
    if number is None:
        return _not_found(request, session)
    reason = fields.get("reason", "").strip()
    t = i18n.translator(session.user.language)
    error: str | None = None
    if not reason:
        error = t("payment.reason_required")
    elif len(reason) > REASON_MAX:
        error = t("payment.reason_too_long", max=REASON_MAX)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> CancelResult:
        try:
            with engine.begin() as conn:
                result = reversal.reverse_audited(
                    conn, number, reason, actor=audit_actor(session), address=client
                )
                if result.outcome is not CancelOutcome.OK or result.replayed:
                    raise _Refused(result)  # rolls the transaction back
                return result
        except _Refused as refused:
            return refused.result

    if error is None:
        result = await run_in_threadpool(attempt)
        if result.outcome is CancelOutcome.OK and not result.replayed:
            return redirect(f"/payments/{number}?reversed=1")
        if result.replayed:
            error = t("payment.refused.already_reversed")
        else:
            error = t(_REFUSALS.get(result.outcome, _RETRY))
    detail = await run_in_threadpool(_load_detail, request, session, number)
    if detail is None:
        return _not_found(request, session)
    return _detail_page(request, session, detail, status=409, error=error, reason=reason)
