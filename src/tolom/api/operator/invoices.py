"""Invoices for signatures and carriers: issue from the catalogue, look up, list, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    Cursor,
    Limit,
    OperatorRoute,
    Page,
    Reader,
    UtcTime,
    Writer,
    bad_input,
    core_message,
    cursor_of,
    transaction,
)
from tolom.billing import invoices
from tolom.db import Connection
from tolom.fields import InvoiceState
from tolom.httpkit.downloads import PdfResponse, pdf_answer, pdf_responses
from tolom.httpkit.ids import next_cursor
from tolom.httpkit.problems import ProblemError, responses
from tolom.identifiers import is_invoice_number
from tolom.money import format_amount

router = APIRouter(prefix="/invoices", tags=["invoices"], route_class=OperatorRoute)

# The core's field names (as in its error messages) as this API spells them.
_FIELDS = {"item": "items", "name": "payer_name", "inn": "inn"}


class ItemIn(BaseModel):
    """A catalogue product and how many."""

    model_config = ConfigDict(extra="forbid")

    product: str = Field(
        max_length=32, description="Code from the catalogue.", examples=["eds-head"]
    )
    quantity: int = Field(default=1, ge=1, le=invoices.MAX_QUANTITY, examples=[1])


class InvoiceIn(BaseModel):
    """An invoice to issue at the catalogue's current prices."""

    model_config = ConfigDict(extra="forbid")

    inn: str | None = Field(
        default=None,
        max_length=64,
        description="Payer's INN, if known.",
        examples=["01904202310427"],
    )
    payer_name: str | None = Field(
        default=None,
        max_length=300,
        description="Who pays. May be left out when `inn` is a registered customer: the "
        "customer's name is used.",
        examples=["ОсОО «Новый клиент»"],
    )
    items: list[ItemIn] = Field(min_length=1, max_length=50)


class InvoiceLine(BaseModel):
    product: str = Field(examples=["eds-head"])
    name: str = Field(examples=["Электронная подпись руководителя (облачная), 12 месяцев"])
    quantity: int = Field(examples=[1])
    unit_price: str = Field(description=AMOUNT_DESCRIPTION, examples=["1510.00"])
    amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["1510.00"])


class InvoiceSummary(BaseModel):
    """An invoice without its lines."""

    number: str = Field(
        description="16 digits: what the customer types as the account of service `eds`.",
        examples=["4000000000000002"],
    )
    inn: str | None = Field(examples=["01904202310427"])
    payer_name: str = Field(examples=["ОсОО «Новый клиент»"])
    total: str = Field(description=AMOUNT_DESCRIPTION, examples=["1510.00"])
    status: InvoiceState = Field(
        description="open | expired (open, past `expires_at`) | paid | cancelled",
        examples=["open"],
    )
    created_at: UtcTime
    expires_at: UtcTime
    paid_at: UtcTime | None
    payment_id: int | None = Field(description="The payment that paid it.", examples=[None])


class Invoice(InvoiceSummary):
    """An invoice with its lines."""

    lines: list[InvoiceLine]


class InvoicePage(Page):
    items: list[InvoiceSummary]


def _summary(invoice: invoices.Invoice, now: datetime) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "inn": invoice.inn,
        "payer_name": invoice.payer_name,
        "total": format_amount(invoice.total),
        "status": invoice.state(now),
        "created_at": invoice.created_at,
        "expires_at": invoice.expires_at,
        "paid_at": invoice.paid_at,
        "payment_id": invoice.payment_id,
    }


def _out(invoice: invoices.Invoice) -> Invoice:
    return Invoice(
        **_summary(invoice, datetime.now(UTC)),
        lines=[
            InvoiceLine(
                product=line.product_code,
                name=line.name,
                quantity=line.quantity,
                unit_price=format_amount(line.unit_price),
                amount=format_amount(line.amount),
            )
            for line in invoice.lines
        ],
    )


def _found(conn: Connection, number: str) -> invoices.Invoice:
    if not is_invoice_number(number):
        raise bad_input(("number", "номер счёта: 16 цифр с верной контрольной цифрой"))
    invoice = invoices.get(conn, number)
    if invoice is None:
        raise ProblemError("invoice_not_found", f"Счёт {number} не найден")
    return invoice


@router.post(
    "",
    status_code=201,
    summary="Issue an invoice",
    description="Issues an invoice for catalogue products at their current prices; it can be "
    "paid (service `eds`, account = its number) until `expires_at`. Audited as "
    "`invoice.create`.",
    responses=responses(*AUTH, "invalid_request"),
)
def create_invoice(body: InvoiceIn, caller: Writer) -> Invoice:
    try:
        with transaction(caller.runtime) as conn:
            invoice = invoices.create_audited(
                conn,
                items=[(item.product, item.quantity) for item in body.items],
                payer_name=body.payer_name,
                inn=body.inn,
                validity_days=caller.runtime.settings.invoice_validity_days,
                actor=caller.actor,
                address=caller.address,
            )
    except invoices.InvoiceError as error:
        field, message = core_message(error, "items")
        raise bad_input((_FIELDS.get(field, field), message)) from None
    return _out(invoice)


@router.get(
    "",
    summary="List invoices",
    description="Newest first, optionally only those in one state or of one INN. Pages: pass "
    "`next_cursor` back as `cursor` until it is null.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_invoices(
    caller: Reader,
    status: Annotated[
        InvoiceState | None, Query(description="Only invoices in this state.")
    ] = None,
    inn: Annotated[str | None, Query(max_length=64, description="Only this payer's INN.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> InvoicePage:
    before_id = cursor_of(cursor)
    now = datetime.now(UTC)
    with transaction(caller.runtime) as conn:
        found = invoices.search(
            conn, status=status, inn=inn, before_id=before_id, limit=limit + 1, now=now
        )
    shown, cursor_out = next_cursor([i.id for i in found], limit)
    return InvoicePage(
        items=[InvoiceSummary(**_summary(i, now)) for i in found[:shown]],
        next_cursor=cursor_out,
    )


@router.get(
    "/{number}",
    summary="One invoice with its lines",
    responses=responses(*AUTH, "invalid_request", "invoice_not_found"),
)
def get_invoice(number: str, caller: Reader) -> Invoice:
    with transaction(caller.runtime) as conn:
        return _out(_found(conn, number))


@router.get(
    "/{number}/pdf",
    summary="The invoice as a PDF",
    description="One A4 document for the payer: the seller's requisites (settings), the "
    "invoice number in large type (what the customer types as the account of service "
    "`eds`), date, due date, payer and INN, lines, total, a QR code of the number, and how "
    "to pay it in every channel (Optima 24, MegaPay, terminals, bank transfer, cash desk) "
    "from the company's payment instructions. A paid, cancelled or expired invoice is "
    "stamped instead of carrying the instructions.",
    response_class=PdfResponse,
    responses={
        **pdf_responses("invoice-4000000000000002.pdf", "The invoice, as an attachment."),
        **responses(*AUTH, "invalid_request", "invoice_not_found"),
    },
)
def get_invoice_pdf(number: str, caller: Reader) -> PdfResponse:
    # Imported by the first PDF: fpdf costs every server process ~0.25 s of CPU at startup
    # otherwise (docs/operations.md).
    from tolom.documents import invoice_pdf

    with transaction(caller.runtime) as conn:
        invoice = _found(conn, number)
    content = invoice_pdf.render(invoice, caller.runtime.settings)
    return pdf_answer(content, f"invoice-{invoice.number}.pdf")


@router.post(
    "/{number}/cancel",
    summary="Cancel an unpaid invoice",
    description="Agents are then refused payments of it (OSMP result 79). Cancelling a "
    "cancelled invoice changes nothing; a paid one is refused (reverse its payment first). "
    "Audited as `invoice.cancel`.",
    responses=responses(*AUTH, "invalid_request", "invoice_not_found", "invoice_not_cancellable"),
)
def cancel_invoice(number: str, caller: Writer) -> Invoice:
    with transaction(caller.runtime) as conn:
        _found(conn, number)
        try:
            after, _changed = invoices.cancel_audited(
                conn, number, actor=caller.actor, address=caller.address
            )
        except invoices.InvoiceError as error:
            raise ProblemError(
                "invoice_not_cancellable", core_message(error, "number")[1]
            ) from None
        return _out(after)
