"""Payments: the filtered list, one payment with its postings and logged requests, reversal."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AMOUNT_EXAMPLE,
    AUTH,
    Cursor,
    Limit,
    OperatorRoute,
    Page,
    Reader,
    UtcTime,
    Writer,
    amount_of,
    bad_input,
    cursor_of,
    date_of,
    date_query,
    id_of,
    replayed_headers,
    transaction,
)
from tolom.backoffice import exports
from tolom.db import Connection, DatabaseError
from tolom.db.engine import is_temporary
from tolom.documents import receipt_pdf, receipts
from tolom.fields import PaymentStatus, ServiceCode
from tolom.httpkit.downloads import PdfResponse, pdf_answer, pdf_responses
from tolom.httpkit.ids import next_cursor
from tolom.httpkit.problems import CANCEL_PROBLEMS, ProblemError, responses
from tolom.money import format_amount
from tolom.payments import records, reversal
from tolom.payments.model import CancelOutcome

router = APIRouter(prefix="/payments", tags=["payments"], route_class=OperatorRoute)

PaymentId = Annotated[
    str, Path(alias="id", description="The payment's number (receipt number).", examples=["1001"])
]


class ReversalOut(BaseModel):
    reason: str = Field(examples=["Ошибочный ИНН"])
    requested_by: str = Field(description="agent:CODE or apikey:NAME", examples=["apikey:buh"])
    created_at: UtcTime
    entry_id: int = Field(description="The reversing journal entry.", examples=[1043])


class ManualOut(BaseModel):
    channel: str = Field(description="cash_desk | bank", examples=["bank"])
    recorded_by: str = Field(examples=["apikey:buh"])
    payment_code: str | None = Field(examples=["42151410"])
    bank_reference: str | None = Field(examples=["ПП-000123"])
    payer: str | None = Field(examples=["ОсОО «Ромашка»"])
    note: str | None = Field(examples=[None])


class Payment(BaseModel):
    """A payment as stored; `id` is also the receipt number."""

    id: int = Field(examples=[1001])
    agent: str = Field(description="Agent code, or cash_desk / bank.", examples=["optima"])
    agent_kind: str = Field(description="gateway | cash_desk | bank", examples=["gateway"])
    txn_id: str = Field(
        description="The agent's txn_id (as a number), or a manual payment's reference.",
        examples=["1234567"],
    )
    service: str = Field(description="sochi | eds", examples=["sochi"])
    account: str = Field(description="INN or invoice number.", examples=["01904202310427"])
    amount: str = Field(description=AMOUNT_DESCRIPTION, examples=[AMOUNT_EXAMPLE])
    status: str = Field(description="accepted | reversed", examples=["accepted"])
    txn_date: UtcTime = Field(description="When it was paid at the agent (UTC).")
    txn_date_raw: str = Field(description="As the agent sent it.", examples=["20261121143005"])
    business_date: date = Field(description="The agent-local day of txn_date.")
    created_at: UtcTime = Field(description="When we stored it (UTC).")
    invoice_number: str | None = Field(description="Service eds: the invoice.", examples=[None])
    reversal: ReversalOut | None = None
    manual: ManualOut | None = Field(default=None, description="Cash desk or bank transfer.")


class PaymentPage(Page):
    items: list[Payment]


class Posting(BaseModel):
    """One posting: `amount` moved from the `debit` account to the `credit` account."""

    entry_id: int = Field(examples=[1042])
    entry_kind: str = Field(description="payment | reversal", examples=["payment"])
    description: str
    created_at: UtcTime
    debit: str = Field(description="Account code.", examples=["agent:optima:clearing"])
    credit: str = Field(description="Account code.", examples=["customer:01904202310427"])
    amount: str = Field(description=AMOUNT_DESCRIPTION, examples=[AMOUNT_EXAMPLE])


class LoggedRequest(BaseModel):
    """A request that touched the payment, as logged (secrets removed) with our answer."""

    id: int
    received_at: UtcTime
    protocol: str = Field(
        description="osmp | rest | api (operator API) | web (back office) | reconciliation "
        "(an agent's registry line accepted)",
        examples=["osmp"],
    )
    peer: str = Field(examples=["203.0.113.10"])
    method: str = Field(examples=["GET"])
    command: str | None = Field(examples=["pay"])
    params: list[list[str]] = Field(
        description="The request's parameters as [name, value] pairs.",
        examples=[[["command", "pay"], ["txn_id", "1234567"], ["sum", "500.00"]]],
    )
    http_status: int = Field(examples=[200])
    response: str = Field(description="The answer's body as sent.")


class PaymentDetail(Payment):
    """A payment with its ledger postings and every logged request about it."""

    postings: list[Posting]
    requests: list[LoggedRequest]


class ReverseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=1000,
        description="Why, for the audit trail.",
        examples=["Ошибочный ИНН"],
    )


def payment_out(record: records.PaymentRecord) -> Payment:
    return Payment(
        id=record.id,
        agent=record.agent,
        agent_kind=record.agent_kind,
        txn_id=record.txn_id,
        service=record.service,
        account=record.account,
        amount=format_amount(record.amount),
        status=record.status,
        txn_date=record.txn_date,
        txn_date_raw=record.txn_date_raw,
        business_date=record.business_date,
        created_at=record.created_at,
        invoice_number=record.invoice_number,
        # the core's dataclasses and these models share their field names
        reversal=ReversalOut.model_validate(record.reversal, from_attributes=True)
        if record.reversal
        else None,
        manual=ManualOut.model_validate(record.manual, from_attributes=True)
        if record.manual
        else None,
    )


def _params(stored: str) -> list[list[str]]:
    try:
        pairs = json.loads(stored)
        return [[str(k), str(v)] for k, v in pairs]
    except (ValueError, TypeError):
        return [["…", stored]]


def _found(conn: Connection, payment_id: int) -> records.PaymentRecord:
    record = records.by_id(conn, payment_id)
    if record is None:
        raise ProblemError("payment_not_found", f"Платёж №{payment_id} не найден")
    return record


def payment_filter(
    agent: Annotated[
        str | None, Query(max_length=32, description="Agent code, or cash_desk / bank.")
    ] = None,
    service_: Annotated[
        ServiceCode | None, Query(alias="service", description="sochi | eds")
    ] = None,
    status: Annotated[PaymentStatus | None, Query(description="accepted | reversed")] = None,
    date_from: Annotated[
        str | None, date_query("First business day (agent-local), YYYY-MM-DD.")
    ] = None,
    date_to: Annotated[
        str | None, date_query("Last business day (agent-local), YYYY-MM-DD.")
    ] = None,
    account: Annotated[
        str | None, Query(max_length=64, description="INN or invoice number.")
    ] = None,
    amount_min: Annotated[
        str | None, Query(max_length=20, description="Smallest amount, e.g. 100.00.")
    ] = None,
    amount_max: Annotated[
        str | None, Query(max_length=20, description="Largest amount, e.g. 5000.00.")
    ] = None,
    txn_id: Annotated[
        str | None,
        Query(
            max_length=64,
            description="The agent's txn_id as stored (a number without leading zeros), or a "
            "manual payment's reference.",
        ),
    ] = None,
) -> records.PaymentFilter:
    """The payment filters of the list and the export, read and checked in one place."""
    low = amount_of(amount_min, "amount_min") if amount_min is not None else None
    high = amount_of(amount_max, "amount_max") if amount_max is not None else None
    if low is not None and high is not None and low > high:
        raise bad_input(("amount_min", "больше amount_max"))
    first, last = date_of(date_from, "date_from"), date_of(date_to, "date_to")
    if first is not None and last is not None and first > last:
        raise bad_input(("date_from", "дата начала позже даты конца"))
    return records.PaymentFilter(
        agent=agent,
        service=service_,
        status=status,
        date_from=first,
        date_to=last,
        account=account,
        amount_min=low,
        amount_max=high,
        txn_id=txn_id,
    )


# Declared after the caller in every route, so that a request without a key is a 401 first.
Filter = Annotated[records.PaymentFilter, Depends(payment_filter)]


@router.get(
    "",
    summary="List payments",
    description="Payments matching every filter given, newest first. Pages: pass "
    "`next_cursor` back as `cursor` until it is null; pages stay stable while new payments "
    "arrive.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_payments(
    caller: Reader, where: Filter, limit: Limit = 50, cursor: Cursor = None
) -> PaymentPage:
    before_id = cursor_of(cursor)
    with transaction(caller.runtime) as conn:
        found = records.search(conn, where, before_id=before_id, limit=limit + 1)
    shown, cursor_out = next_cursor([p.id for p in found], limit)
    return PaymentPage(items=[payment_out(p) for p in found[:shown]], next_cursor=cursor_out)


_EXPORT_DISPOSITION = {
    "Content-Disposition": {
        "description": '`attachment; filename="payments-2026-11-01_2026-11-21.csv"`',
        "schema": {"type": "string"},
    }
}


@router.get(
    "/export",
    summary="Export payments as CSV or XLSX",
    description="Every payment matching the list's filters, newest first, as a file to "
    "download. CSV: UTF-8 with a BOM, `;`-separated, a Russian header, amounts as `1510,00`, "
    "times in Asia/Bishkek; streamed as it is read. XLSX: one sheet, amounts and dates as "
    "numbers and dates, header frozen. At most 1 000 000 payments: a wider filter is a 422 "
    "`export_too_large`, answered before any byte of the file.",
    response_class=Response,
    responses={
        200: {
            "description": "The file, as an attachment.",
            "headers": _EXPORT_DISPOSITION,
            "content": {
                exports.CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
                exports.XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **responses(*AUTH, "invalid_request", "export_too_large"),
    },
)
def export_payments(
    caller: Reader,
    where: Filter,
    format_: Annotated[
        Literal["csv", "xlsx"], Query(alias="format", description="csv (default) | xlsx")
    ] = "csv",
) -> Response:
    with transaction(caller.runtime) as conn:
        try:
            exports.check_size(conn, where)
        except exports.ExportTooLarge as error:
            message = str(error)
            raise ProblemError("export_too_large", message[:1].upper() + message[1:]) from None
    name = exports.filename(where, format_)
    # Each page in a transaction of its own: a long download holds no transaction.
    rows = exports.payments_rows(caller.runtime.engine, where)
    if format_ == "csv":
        return StreamingResponse(
            exports.csv_chunks(rows),
            media_type=f"{exports.CSV_MEDIA_TYPE}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    try:
        file, size = exports.xlsx_file(rows)
    except DatabaseError as error:
        if is_temporary(error):
            raise ProblemError("temporarily_unavailable") from error
        raise
    return StreamingResponse(
        exports.file_chunks(file),
        media_type=exports.XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(size),
        },
    )


@router.get(
    "/{id}",
    summary="One payment with its postings and logged requests",
    description="The payment, its ledger postings (the payment's entry and, if reversed, the "
    "reversal's), and every logged request of its agent with its txn_id: the pay, its "
    "repeats, cancellations.",
    responses=responses(*AUTH, "invalid_request", "payment_not_found"),
)
def get_payment(payment_id: PaymentId, caller: Reader) -> PaymentDetail:
    number = id_of(payment_id)
    with transaction(caller.runtime) as conn:
        record = _found(conn, number)
        entry_ids = [record.entry_id] if record.entry_id is not None else []
        if record.reversal is not None:
            entry_ids.append(record.reversal.entry_id)
        posted = records.postings_of(conn, entry_ids)
        agent_id = records.agent_id_of(conn, record.id)
        logged = records.requests_of(conn, record, agent_id) if agent_id is not None else []
    return PaymentDetail(
        **payment_out(record).model_dump(),
        postings=[
            Posting(
                entry_id=p.entry_id,
                entry_kind=p.entry_kind,
                description=p.description,
                created_at=p.created_at,
                debit=p.debit,
                credit=p.credit,
                amount=format_amount(p.amount),
            )
            for p in posted
        ],
        requests=[
            LoggedRequest(
                id=r.id,
                received_at=r.received_at,
                protocol=r.protocol,
                peer=r.peer,
                method=r.method,
                command=r.command,
                params=_params(r.params),
                http_status=r.http_status,
                response=r.response,
            )
            for r in logged
        ],
    )


@router.post(
    "/{id}/reverse",
    summary="Reverse a payment",
    description="Moves the amount back from the customer's balance (or the invoice's "
    "revenue, reopening the invoice) to the agent's clearing account, with a new journal "
    "entry; no cancel window applies. Idempotent: reversing a reversed payment answers the "
    "same, with `Idempotent-Replayed: true`. Refused while the customer's balance no longer "
    "holds the amount. Audited as `payment.reverse`.",
    responses={
        **responses(
            *AUTH, "invalid_request", "payment_not_found", "balance_spent", "already_served"
        ),
        200: {"description": "The reversed payment.", "headers": replayed_headers()},
    },
)
def reverse_payment(
    payment_id: PaymentId, body: ReverseIn, caller: Writer, response: Response
) -> Payment:
    number = id_of(payment_id)
    with transaction(caller.runtime) as conn:
        result = reversal.reverse_audited(
            conn, number, body.reason, actor=caller.actor, address=caller.address
        )
        if result.outcome is CancelOutcome.MALFORMED:
            raise bad_input(("reason", result.message))
        if result.outcome is not CancelOutcome.OK:
            raise ProblemError(CANCEL_PROBLEMS[result.outcome], result.message)
        record = _found(conn, number)
        if result.replayed:
            response.headers["Idempotent-Replayed"] = "true"
    return payment_out(record)


class ReceiptLink(BaseModel):
    """A payment's receipt: its public confirmation page, which its QR code encodes."""

    payment_id: int = Field(examples=[1001])
    token: str = Field(
        description="32 characters, 192 random bits; made once, never changes.",
        examples=["q3Zt0mXc1Yy8V6sJb4LwR2nKp7HdE9aF"],
    )
    url: str = Field(
        description="The public page: amount, time, payee, service and status only.",
        examples=["https://pay.example.kg/r/q3Zt0mXc1Yy8V6sJb4LwR2nKp7HdE9aF"],
    )
    created_at: UtcTime


@router.get(
    "/{id}/receipt",
    summary="The payment's receipt link",
    description="The token and address of the payment's public confirmation page "
    "(`/r/{token}`), made on the first request and the same ever after. The page shows the "
    "receipt number, amount, date and time, payee, service and whether the payment was "
    "reversed, and nothing that names the payer or the agent. Making it is audited as "
    "`receipt.create`.",
    responses=responses(*AUTH, "invalid_request", "payment_not_found"),
)
def get_receipt(payment_id: PaymentId, caller: Reader) -> ReceiptLink:
    number = id_of(payment_id)
    with transaction(caller.runtime) as conn:
        receipt = receipts.token_for(conn, number, actor=caller.actor, address=caller.address)
    if receipt is None:
        raise ProblemError("payment_not_found", f"Платёж №{number} не найден")
    return ReceiptLink(
        payment_id=number,
        token=receipt.token,
        url=receipts.public_url(caller.runtime.settings, receipt.token),
        created_at=receipt.created_at,
    )


@router.get(
    "/{id}/receipt.pdf",
    summary="The payment's receipt as a PDF",
    description="One A5 page for the payer: payee, receipt number, date and time (Asia/"
    "Bishkek), service with the INN and customer (sochi) or the invoice and payer (eds), "
    "amount, the agent or channel (with the bank reference for a transfer), status (a "
    "reversed payment is stamped), and a QR code of the public confirmation page. Makes the "
    "receipt link if there is none yet (see `GET /payments/{id}/receipt`).",
    response_class=PdfResponse,
    responses={
        **pdf_responses("receipt-1001.pdf", "The receipt, as an attachment."),
        **responses(*AUTH, "invalid_request", "payment_not_found"),
    },
)
def get_receipt_pdf(payment_id: PaymentId, caller: Reader) -> PdfResponse:
    number = id_of(payment_id)
    settings = caller.runtime.settings
    with transaction(caller.runtime) as conn:
        document = receipts.document(
            conn, number, settings, actor=caller.actor, address=caller.address
        )
    if document is None:
        raise ProblemError("payment_not_found", f"Платёж №{number} не найден")
    return pdf_answer(receipt_pdf.render(document, settings), f"receipt-{number}.pdf")
