"""The back office's invoices: the list, a new invoice from the catalogue, one invoice with
its payments and orders, its PDF, and cancellation.

A thin adapter: listing, issuing and cancelling are `billing.invoices.search`,
`create_audited` and `cancel_audited` (the operator API calls the same functions, so both
write the same `invoice.create` and `invoice.cancel` audit lines); the PDF is
`documents.invoice_pdf`, sent as the API sends it. This module reads the forms, says the
core's refusals in the user's language and renders the pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, BeforeValidator, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom import audit
from tolom.backoffice.users import Session
from tolom.billing import catalog, customers, invoices, orders
from tolom.billing.catalog import Product
from tolom.billing.customers import Customer
from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.fields import InvoiceState, TypedInn
from tolom.formatting import ZONE
from tolom.httpkit.downloads import pdf_answer
from tolom.identifiers import is_inn, is_invoice_number, is_invoice_number_shape
from tolom.payments import records
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
from tolom.web.forms import BadFilter, PageForm, at_most, cursor, mistake
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayInvoice = Annotated[Session, Depends(may("invoices"))]

PAGE_SIZE = 50
ORDERS_SHOWN = 100
PAYMENTS_SHOWN = 20
_QUANTITY_DIGITS = 7  # longer is refused before it is read as a number
_FIELD_MAX = 1000  # any posted text longer than this is not something the form sends
_FILTER_MAX = 64  # the list's inputs take no more


def _digits(text: str) -> str:
    """What a person typed for a number, without the spaces they put between digits."""
    return "".join(text.split())


# --- the list ---------------------------------------------------------------------------


def _compact(value: object) -> object:
    return _digits(value) if isinstance(value, str) else value


def _number_shape(text: str) -> str:
    """A searched number must look like one (16 digits); the check digit may be wrong."""
    if text and not is_invoice_number_shape(text):
        raise mistake(N_("invoices.bad_number"))
    return text


class ListForm(PageForm):
    """The list's GET form as typed: a number or INN typed wrongly is said next to its
    field (with spaces between digits dropped); a state not offered or a text longer than
    the inputs take is tampering (400)."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "q": N_("invoices.bad_number"),
        "inn": N_("invoices.bad_inn"),
    }

    q: Annotated[
        str, BeforeValidator(_compact), AfterValidator(_number_shape), at_most(_FILTER_MAX)
    ] = ""
    inn: Annotated[TypedInn, at_most(_FILTER_MAX)] = ""
    status: InvoiceState | Literal[""] = ""

    def query(self, **extra: str) -> str:
        fields = {"q": self.q, "inn": self.inn, "status": self.status, **extra}
        return urlencode({k: v for k, v in fields.items() if v})


def list_form(request: Request, t: i18n.Translator) -> ListForm:
    return ListForm.read(request.query_params, t)


@router.get("/invoices")
async def invoice_list(request: Request, session: SignedIn) -> Response:
    t = i18n.translator(session.user.language)
    try:
        form = list_form(request, t)
        before = cursor(request.query_params.get("before"))
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    engine, now = runtime(request).engine, options(request).clock()

    def load() -> list[invoices.Invoice]:
        with engine.connect() as conn:
            return invoices.search(
                conn,
                status=form.status or None,
                inn=form.inn or None,
                number=form.q or None,
                before_id=before,
                limit=PAGE_SIZE + 1,
                now=now,
            )

    found = [] if form.errors else await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = form.query(before=str(shown[-1].id)) if len(found) > PAGE_SIZE else None
    return render(
        "invoices.html",
        status=400 if form.errors else 200,
        t=t,
        session=session,
        page="invoices",
        title=t("invoices.title"),
        here=this_page(request),
        form=form,
        states=invoices.STATES,
        rows=shown,
        now=now,
        more=more,
        first_page=before is None,
        filters=form.query(),
        may_create=session.user.may("invoices"),
    )


# --- a new invoice ------------------------------------------------------------------------


class NewForm(PageForm):
    """The new invoice's form as typed, and what is wrong with it (field → message). The
    INN is read as the API's customers read it (`fields.TypedInn`); what may be invoiced
    is the core's to say (`invoices.create`). The quantities (`qty-<product>`) are the
    page's to read: their names come from the catalogue."""

    mistakes: ClassVar[Mapping[str, str]] = {"inn": N_("invoices.error.inn")}

    inn: TypedInn = ""
    payer_name: str = ""
    due: str = ""
    quantities: dict[str, str] = Field(default_factory=dict, exclude=True)
    summary: list[str] = Field(default_factory=list, exclude=True)  # refusals no field shows


def _offered(products: list[Product]) -> list[Product]:
    """The products the form lists: the active ones (those without a price get no input)."""
    return [p for p in products if p.active]


def _new_page(
    request: Request,
    session: Session,
    form: NewForm,
    products: list[Product],
    *,
    status: int = 200,
) -> Response:
    t = i18n.translator(session.user.language)
    today = options(request).clock().astimezone(ZONE).date()
    return render(
        "invoice_new.html",
        status=status,
        t=t,
        session=session,
        page="invoices-new",
        title=t("invoices.new.title"),
        here="/invoices/new",
        form=form,
        products=_offered(products),
        max_quantity=invoices.MAX_QUANTITY,
        max_payer=invoices.MAX_PAYER_NAME,
        validity_days=runtime(request).settings.invoice_validity_days,
        due_min=date.fromordinal(today.toordinal() + 1).isoformat(),
        due_max=date.fromordinal(today.toordinal() + invoices.MAX_VALIDITY_DAYS).isoformat(),
    )


def _products(request: Request) -> list[Product]:
    with runtime(request).engine.connect() as conn:
        return catalog.list_products(conn)


@router.get("/invoices/new")
async def new_invoice(request: Request, session: MayInvoice) -> Response:
    inn = request.query_params.get("inn", "").strip()
    if len(inn) > 64:
        inn = ""
    engine = runtime(request).engine

    def load() -> tuple[list[Product], Customer | None]:
        with engine.connect() as conn:
            found = customers.get(conn, inn) if is_inn(inn) else None
            return catalog.list_products(conn), found

    products, customer = await run_in_threadpool(load)
    # A link's INN is shown as given (the form says what is wrong with it when posted).
    form = NewForm.model_construct(inn=inn, payer_name=customer.name if customer else "")
    return _new_page(request, session, form, products)


def _read_new_form(
    fields: dict[str, str], products: list[Product], t: i18n.Translator, now: datetime
) -> tuple[NewForm, list[tuple[str, int]], int | None]:
    """The form as typed, the items it asks for and the validity its due date means.

    Only the typing is checked here (digits, a date); what may be invoiced is the core's
    to say (`invoices.create`)."""
    form = NewForm.read(fields, t)
    items: list[tuple[str, int]] = []
    known = {p.code for p in products}
    posted = [name.removeprefix("qty-") for name in fields if name.startswith("qty-")]
    # The form's products in catalogue order, then any other code that was posted (a
    # product removed from the catalogue meanwhile); the core refuses what it must.
    for code in [p.code for p in products] + [c for c in posted if c not in known]:
        typed = fields.get(f"qty-{code}", "").strip()
        form.quantities[code] = typed
        if not typed:
            continue
        if not (typed.isascii() and typed.isdigit()) or len(typed) > _QUANTITY_DIGITS:
            form.errors[f"qty-{code}"] = t("invoices.error.quantity", max=invoices.MAX_QUANTITY)
            continue
        if int(typed) > 0:
            items.append((code, int(typed)))
    validity: int | None = None
    if form.due:
        try:
            validity = invoices.validity_days_until(date.fromisoformat(form.due), now)
        except (ValueError, invoices.InvoiceError):
            form.errors["due"] = _due_error(t)
    return form, items, validity


def _due_error(t: i18n.Translator) -> str:
    days = invoices.MAX_VALIDITY_DAYS
    return t.plural("invoices.error.due", days, days=days)


def _refusal(form: NewForm, error: invoices.InvoiceError, t: i18n.Translator) -> None:
    """Say the core's refusal next to the field it is about."""
    product = error.product or ""
    shown = product if len(product) <= 40 else product[:40] + "…"
    quantity = f"qty-{product}"
    inn = form.inn
    if error.code == "inn":
        form.errors["inn"] = t("invoices.error.inn")
    elif error.code == "payer":
        form.errors["payer_name"] = (
            t("invoices.error.payer_unknown_inn", inn=inn) if inn else t("invoices.error.payer")
        )
    elif error.code == "payer_too_long":
        form.errors["payer_name"] = t("invoices.error.payer_too_long", max=invoices.MAX_PAYER_NAME)
    elif error.code == "no_items":
        form.errors["items"] = t("invoices.error.no_items")
    elif error.code == "quantity":
        form.errors[quantity] = t("invoices.error.quantity", max=invoices.MAX_QUANTITY)
    elif error.code in ("unknown_product", "no_price"):
        key = (
            N_("invoices.error.no_price")
            if error.code == "no_price"
            else N_("invoices.error.unknown_product")
        )
        message = t(key, product=shown)
        form.errors[quantity] = message
        form.summary.append(message)  # the product may have no input on the page
    elif error.code == "due":
        form.errors["due"] = _due_error(t)
    else:
        form.summary.append(t("invoices.error.retry"))


@router.post("/invoices/new")
async def create_invoice(request: Request, session: MayInvoice) -> Response:
    fields = await checked_form(request, session)
    t = i18n.translator(session.user.language)
    products = await run_in_threadpool(_products, request)
    if any(len(v) > _FIELD_MAX or len(k) > 40 for k, v in fields.items()):
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    now = options(request).clock()
    try:
        form, items, validity = _read_new_form(fields, products, t, now)
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    if form.errors:
        return _new_page(request, session, form, products, status=422)
    engine, client = runtime(request).engine, address(request)
    settings = runtime(request).settings
    inn = form.inn or None

    def attempt() -> invoices.Invoice:
        with engine.begin() as conn:
            payer = form.payer_name
            if not payer and inn is not None and is_inn(inn):
                customer = customers.get(conn, inn)
                payer = customer.name if customer else ""
            return invoices.create_audited(
                conn,
                items=items,
                payer_name=payer,
                inn=inn,
                validity_days=validity or settings.invoice_validity_days,
                actor=audit_actor(session),
                address=client,
                now=now,
            )

    try:
        invoice = await run_in_threadpool(attempt)
    except invoices.InvoiceError as error:
        _refusal(form, error, t)
        return _new_page(request, session, form, products, status=422)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        form.summary.append(t("invoices.error.retry"))
        return _new_page(request, session, form, products, status=503)
    return redirect(f"/invoices/{invoice.number}?created=1")


# --- one invoice ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the invoice's page shows."""

    invoice: invoices.Invoice
    state: str
    customer: Customer | None
    payments: list[records.PaymentRecord]
    orders: list[orders.Order]
    more_orders: bool
    cancellation: dict[str, Any] | None  # the `invoice.cancel` audit line, if any


def _load_detail(request: Request, number: str) -> Detail | None:
    if not is_invoice_number(number):
        return None
    engine, now = runtime(request).engine, options(request).clock()
    with engine.connect() as conn:
        invoice = invoices.get(conn, number)
        if invoice is None:
            return None
        customer = customers.get(conn, invoice.inn) if invoice.inn else None
        paid_with = records.search(
            conn,
            records.PaymentFilter(service="eds", account=number),
            before_id=None,
            limit=PAYMENTS_SHOWN,
        )
        made = orders.list_orders(conn, invoice_number=number, limit=ORDERS_SHOWN + 1)
        cancellation = None
        if invoice.status == "cancelled":
            lines = audit.entries(conn, "invoice", number, limit=20)
            cancellation = next((e for e in lines if e["action"] == "invoice.cancel"), None)
    return Detail(
        invoice,
        invoice.state(now),
        customer,
        paid_with,
        made[:ORDERS_SHOWN],
        len(made) > ORDERS_SHOWN,
        cancellation,
    )


def _detail_page(
    request: Request,
    session: Session,
    detail: Detail,
    *,
    status: int = 200,
    confirm: bool = False,
    error: str | None = None,
    reason: str = "",
) -> Response:
    t = i18n.translator(session.user.language)
    number = detail.invoice.number
    return render(
        "invoice.html",
        status=status,
        t=t,
        session=session,
        page="invoices-one",
        title=t("invoice.title", number=number),
        here=f"/invoices/{number}",
        d=detail,
        may_cancel=session.user.may("invoices") and detail.invoice.status == "open",
        confirm=confirm,
        created_now=request.query_params.get("created") == "1",
        cancelled_now=request.query_params.get("cancelled") == "1",
        error=error,
        reason=reason,
        reason_max=invoices.MAX_REASON,
    )


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "invoice.not_found", status=404)


@router.get("/invoices/{number}.pdf")
async def invoice_pdf_file(request: Request, number: str, session: SignedIn) -> Response:
    engine, settings = runtime(request).engine, runtime(request).settings

    def build() -> bytes | None:
        # Imported by the first PDF: fpdf costs every server process ~0.25 s of CPU at
        # startup otherwise (docs/operations.md).
        from tolom.documents import invoice_pdf

        if not is_invoice_number(number):
            return None
        with engine.connect() as conn:
            invoice = invoices.get(conn, number)
        return None if invoice is None else invoice_pdf.render(invoice, settings)

    content = await run_in_threadpool(build)
    if content is None:
        return _not_found(request, session)
    return pdf_answer(content, f"invoice-{number}.pdf")


@router.get("/invoices/{number}")
async def invoice_page(request: Request, number: str, session: SignedIn) -> Response:
    detail = await run_in_threadpool(_load_detail, request, number)
    if detail is None:
        return _not_found(request, session)
    return _detail_page(request, session, detail)


@router.get("/invoices/{number}/cancel")
async def cancel_confirmation(request: Request, number: str, session: MayInvoice) -> Response:
    detail = await run_in_threadpool(_load_detail, request, number)
    if detail is None:
        return _not_found(request, session)
    if detail.invoice.status != "open":  # nothing to confirm: the page says what it is
        return redirect(f"/invoices/{number}")
    return _detail_page(request, session, detail, confirm=True)


class CancelForm(PageForm):
    """The cancellation's reason, optional and no longer than the core keeps (as the
    API's)."""

    mistakes: ClassVar[Mapping[str, str]] = {"reason": N_("invoice.refused.reason")}

    reason: str = Field("", max_length=invoices.MAX_REASON)


@router.post("/invoices/{number}/cancel")
async def cancel_invoice(request: Request, number: str, session: MayInvoice) -> Response:
    fields = await checked_form(request, session)
    if not is_invoice_number(number):
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    try:
        form = CancelForm.read(fields, t)
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    reason = form.reason
    engine, client, now = runtime(request).engine, address(request), options(request).clock()

    def attempt() -> str | None:
        """None when cancelled now; else what the page says."""
        try:
            with engine.begin() as conn:
                _after, changed = invoices.cancel_audited(
                    conn, number, actor=audit_actor(session), address=client, reason=reason, now=now
                )
        except invoices.InvoiceNotFound:
            return "not_found"
        except invoices.NotCancellable:
            return "paid"
        except invoices.InvoiceError as error:
            return error.code or "retry"
        return None if changed else "not_open"

    try:
        refused = "reason" if form.errors else await run_in_threadpool(attempt)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        refused = "retry"
    if refused is None:
        return redirect(f"/invoices/{number}?cancelled=1")
    detail = await run_in_threadpool(_load_detail, request, number)
    if detail is None or refused == "not_found":
        return _not_found(request, session)
    if refused == "paid":
        message = t("invoice.refused.paid", payment=detail.invoice.payment_id or "—")
    elif refused == "reason":
        message = form.errors.get("reason") or t("invoice.refused.reason", max=invoices.MAX_REASON)
    elif refused == "not_open":
        message = t("invoice.refused.not_open")
    else:
        message = t("invoice.refused.retry")
    still_open = detail.invoice.status == "open"
    return _detail_page(
        request,
        session,
        detail,
        status=409 if refused != "reason" else 422,
        confirm=still_open,
        error=message,
        reason=reason if len(reason) <= _FIELD_MAX else "",
    )
