"""The online application for a signature `/apply` (docs/customers.md#apply).

The applicant chooses products from the catalogue, gives the organisation's INN, name and
legal form, a phone and an e-mail and the office where identity will be verified; the core
(`billing.applications.apply_audited`) registers a new INN as a customer pending verification,
issues the invoice (audited as `site:apply`), records the application and tells the
contacts the number. The page then shows the number, the amount, the PDF's link and the
"How to pay" steps filled with the number. Every rule is the core's; this module reads the
form, says refusals next to their fields in the page's language and renders.

Anti-abuse without third parties: a hidden honeypot field people leave empty; a form token
signed (HMAC) with the installation's secret key carrying the moment the form was shown,
refused when forged, younger than `TOLOM_APPLY_MIN_SECONDS` or older than
`TOKEN_MAX_AGE`; and the core's per-address limit (`TOLOM_APPLY_PER_HOUR`). A plain POST
form: works without JavaScript.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from tolom import secretbox
from tolom.billing import applications, catalog, customers, invoices
from tolom.billing.catalog import Product
from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.documents import instructions
from tolom.formatting import date_time, som
from tolom.httpkit.clients import request_address
from tolom.httpkit.downloads import pdf_answer
from tolom.identifiers import is_invoice_number
from tolom.payments.model import Service
from tolom.runtime import Runtime
from tolom.site import pages, pay
from tolom.texts import N_, texts

router = APIRouter(include_in_schema=False)

ACTOR = "site:apply"
HONEYPOT = "website"  # hidden from people; a robot filling every field fills it
TOKEN_MAX_AGE = timedelta(hours=2)
RETRY_AFTER_SECONDS = 5
MAX_FIELD = 1000  # any posted text longer than this is not something the form sends
MAX_NAME = 40  # of a posted field's name
_QUANTITY_DIGITS = 4
_TOKEN_PURPOSE = b"tolom site apply form token"
FIELDS = ("inn", "name", "legal_form", "email", "phone", "office")
# The words said next to each field, per the core's refusal (field, code); code "" any.
ERRORS: dict[tuple[str, str], str] = {
    ("inn", ""): N_("site.apply.error.inn"),
    ("name", "name_too_long"): N_("site.apply.error.name_too_long"),
    ("name", ""): N_("site.apply.error.name"),
    ("legal_form", ""): N_("site.apply.error.legal_form"),
    ("email", "email"): N_("site.apply.error.email_required"),
    ("email", ""): N_("site.apply.error.email"),
    ("phone", "phone"): N_("site.apply.error.phone_required"),
    ("phone", ""): N_("site.apply.error.phone"),
    ("office", ""): N_("site.apply.error.office"),
    ("items", ""): N_("site.apply.error.items"),
}
REFUSALS = {
    "bad_request": N_("site.apply.refused.bad_request"),
    "robot": N_("site.apply.refused.robot"),
    "token": N_("site.apply.refused.token"),
    "too_fast": N_("site.apply.refused.too_fast"),
    "rate_limit": N_("site.apply.refused.rate_limit"),
    "unavailable": N_("site.apply.refused.unavailable"),
}


# --- the form token ----------------------------------------------------------------------


def _keys(runtime: Runtime) -> list[bytes]:
    """The token keys: derived from the installation's secret keys (the first signs, all
    verify, so a key rotation does not void forms already shown)."""
    with runtime.engine.connect() as conn:
        secrets = secretbox.for_connection(conn).keys()
    return [hmac.new(key, _TOKEN_PURPOSE, hashlib.sha256).digest() for key in secrets]


def _signature(key: bytes, stamp: str) -> str:
    return hmac.new(key, stamp.encode("ascii"), hashlib.sha256).hexdigest()


def form_token(runtime: Runtime, shown_at: datetime) -> str:
    """A token carrying the moment the form was shown, signed: "<unix seconds>.<hmac>"."""
    stamp = str(int(shown_at.timestamp()))
    return f"{stamp}.{_signature(_keys(runtime)[0], stamp)}"


def token_refusal(runtime: Runtime, token: str, now: datetime) -> str | None:
    """Why the token is refused ("token": forged, malformed or too old; "too_fast": the
    form was sent sooner than a person fills it), or None."""
    stamp, _, signature = token.partition(".")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return "token"
    if not any(hmac.compare_digest(_signature(k, stamp), signature) for k in _keys(runtime)):
        return "token"
    age = now - datetime.fromtimestamp(int(stamp), UTC)
    if age > TOKEN_MAX_AGE or age < timedelta(seconds=-60):
        return "token"
    if age < timedelta(seconds=runtime.settings.apply_min_seconds):
        return "too_fast"
    return None


# --- the pages -----------------------------------------------------------------------------


def _offered(products: list[Product]) -> list[Product]:
    """What one may apply for: the active, priced products."""
    return [p for p in products if p.active and p.price is not None]


def _products(runtime: Runtime) -> list[Product]:
    with runtime.engine.connect() as conn:
        return _offered(catalog.list_products(conn))


def _form_page(
    request: Request,
    runtime: Runtime,
    products: list[Product],
    *,
    status: int = 200,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    refusal: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    language = pages.language_of(request)
    return pages.render(
        request,
        "apply",
        status=status,
        headers=headers,
        language=language,
        products=[(p, som(p.price or 0, english=language == "en")) for p in products],
        legal_forms=customers.LEGAL_FORMS,
        offices=runtime.settings.apply_offices,
        typed=typed or {},
        errors=errors or {},
        refusal=REFUSALS[refusal] if refusal else None,
        token=form_token(runtime, datetime.now(UTC)),
        honeypot=HONEYPOT,
        max_quantity=invoices.MAX_QUANTITY,
    )


@router.get("/apply")
async def apply_form(request: Request) -> Response:
    """The empty form, with a fresh token."""
    runtime: Runtime = request.app.state.runtime
    if pages.has_bad_characters(request.query_params.multi_items()):
        return _form_page(request, runtime, [], status=400, refusal="bad_request")
    products = await run_in_threadpool(_products, runtime)
    return _form_page(request, runtime, products)


def _said(field: str, refusal: customers.CustomerError, language: str) -> str:
    key = ERRORS.get((field, refusal.code)) or ERRORS[(field, "")]
    return texts(language)(key)


@router.post("/apply")
async def apply_send(request: Request) -> Response:
    """Read the application, check the token and the honeypot, and let the core decide."""
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    language = pages.language_of(request)
    t = texts(language)
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    products = await run_in_threadpool(_products, runtime)
    if (
        len(fields) != len(form.multi_items())
        or pages.has_bad_characters(fields.items())
        or any(len(k) > MAX_NAME or len(v) > MAX_FIELD for k, v in fields.items())
        or pages.has_bad_characters(request.query_params.multi_items())
    ):
        return _form_page(request, runtime, products, status=400, refusal="bad_request")
    typed = {name: fields.get(name, "").strip() for name in FIELDS}
    typed.update({k: v.strip() for k, v in fields.items() if k.startswith("qty-")})
    now = datetime.now(UTC)
    if fields.get(HONEYPOT, ""):
        return _form_page(request, runtime, products, status=400, refusal="robot", typed=typed)
    refused = await run_in_threadpool(token_refusal, runtime, fields.get("token", ""), now)
    if refused is not None:
        status = 429 if refused == "too_fast" else 400
        return _form_page(request, runtime, products, status=status, refusal=refused, typed=typed)
    errors: dict[str, str] = {}
    items: list[tuple[str, int]] = []
    known = {p.code for p in products}
    for name, value in typed.items():
        if not name.startswith("qty-") or not value:
            continue
        code = name.removeprefix("qty-")
        if code not in known:
            return _form_page(request, runtime, products, status=400, refusal="bad_request")
        if not (value.isascii() and value.isdigit()) or len(value) > _QUANTITY_DIGITS:
            errors[name] = t("site.apply.error.quantity", max=invoices.MAX_QUANTITY)
        elif int(value) > 0:
            items.append((code, int(value)))
    inn = "".join(typed["inn"].split())
    address = request_address(request, settings.trusted_proxies)

    def attempt() -> applications.Application:
        with runtime.engine.begin() as conn:
            return applications.apply_audited(
                conn,
                inn=inn,
                name=typed["name"],
                legal_form=typed["legal_form"],
                email=typed["email"],
                phone=typed["phone"],
                language=language,
                office=typed["office"],
                offices=settings.apply_offices,
                items=items,
                validity_days=settings.invoice_validity_days,
                per_hour=settings.apply_per_hour,
                actor=ACTOR,
                address=address,
                now=now,
            )

    if errors:  # a quantity mistyped: the core still says what else is wrong
        found = applications.application_errors(
            inn=inn,
            name=typed["name"],
            legal_form=typed["legal_form"],
            email=typed["email"],
            phone=typed["phone"],
            office=typed["office"],
            offices=settings.apply_offices,
        )
        errors.update({field: _said(field, error, language) for field, error in found})
        return _form_page(request, runtime, products, status=422, typed=typed, errors=errors)
    try:
        application = await run_in_threadpool(attempt)
    except applications.ApplicationErrors as error:
        said = {field: _said(field, refusal, language) for field, refusal in error.refusals}
        return _form_page(request, runtime, products, status=422, typed=typed, errors=said)
    except applications.ApplicationRefused:
        return _form_page(
            request,
            runtime,
            products,
            status=429,
            refusal="rate_limit",
            typed=typed,
            headers={"Retry-After": "3600"},
        )
    except customers.CustomerExists:  # the INN was registered a moment ago: send again
        return _form_page(
            request,
            runtime,
            products,
            status=503,
            refusal="unavailable",
            typed=typed,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except invoices.InvoiceError as error:
        field = f"qty-{error.product}" if error.product else "items"
        said = {field: t("site.apply.error.items")}
        return _form_page(request, runtime, products, status=422, typed=typed, errors=said)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        return _form_page(
            request,
            runtime,
            products,
            status=503,
            refusal="unavailable",
            typed=typed,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return _done_page(request, runtime, application, language)


def _done_page(
    request: Request, runtime: Runtime, application: applications.Application, language: str
) -> HTMLResponse:
    invoice = application.invoice
    values = instructions.invoice_values(invoice.number, invoice.total, invoice.expires_at)
    context: dict[str, Any] = {
        "invoice": invoice,
        "amount": som(invoice.total, english=language == "en"),
        "pay_by": date_time(invoice.expires_at),
        "office": application.office,
        "repeated": application.repeated,
        "how": pay.shown_instructions(runtime, Service.EDS, values, language),
        **pay.instruction_context(runtime.settings),
        "grouped_number": " ".join(invoice.number[i : i + 4] for i in range(0, 16, 4)),
    }
    return pages.render(request, "apply_done", language=language, **context)


@router.get("/apply/{number}.pdf")
async def apply_pdf(request: Request, number: str) -> Response:
    """The invoice's PDF by its number: the key its holder has (docs/customers.md#apply)."""
    runtime: Runtime = request.app.state.runtime

    def build() -> bytes | None:
        from tolom.documents import invoice_pdf  # fpdf: imported by the first PDF

        if not is_invoice_number(number):
            return None
        with runtime.engine.connect() as conn:
            invoice = invoices.get(conn, number)
        return None if invoice is None else invoice_pdf.render(invoice, runtime.settings)

    content = await run_in_threadpool(build)
    if content is None:
        return HTMLResponse("Not Found", status_code=404, headers=pages.HEADERS)
    answer = pdf_answer(content, f"invoice-{number}.pdf")
    answer.headers.update(pages.HEADERS)
    return answer
