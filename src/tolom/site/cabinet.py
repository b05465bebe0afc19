"""The customer's cabinet `/cabinet` (docs/customers.md#cabinet).

Sign-in: the customer types their INN and chooses e-mail or SMS; the core
(`cabinet.access`) makes a challenge and, when the INN has a contact on that channel, a
6-digit code, which is sent after the answer (`notifications.dispatch.send_direct`: the
code is never kept, so it does not go through the outbox). The browser keeps the
challenge's token in a cookie; the code typed opens a session (a cookie, its CSRF token in
every form). Whoever types an INN is told the same whatever the INN: "if it has a contact on
file, a code was sent there".

Inside: the balance, the reports waiting for money with the top-up that releases them,
the statement with receipts, invoices with their PDFs, signatures with their expiry and a
renewal button, and the contacts form. Every figure is the core's (`cabinet.overview`);
this module reads requests, calls the core and renders. Plain forms: no JavaScript.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tolom import secretbox
from tolom.backoffice import statement_sources
from tolom.billing import customers, invoices, renewals
from tolom.billing.orders import OrderError
from tolom.cabinet import access, overview
from tolom.cabinet.access import AccessError, CabinetSession
from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.formatting import ZONE
from tolom.httpkit.clients import request_address
from tolom.httpkit.downloads import pdf_answer
from tolom.identifiers import is_invoice_number
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.site import pages
from tolom.site.status import ORDER_STATES
from tolom.texts import N_, texts

log = logging.getLogger(__name__)

HOME = "/cabinet"
SESSION_COOKIE = "tolom_cabinet"
CHALLENGE_COOKIE = "tolom_cabinet_code"
FORM_COOKIE = "tolom_cabinet_form"  # the sign-in forms' token (double submit)
MAX_FIELD = 300  # any posted text longer than this is not something our forms send
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,128}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
RETRY_SECONDS = 5

# The core's refusals, said next to their field (or above the form) in the page's words.
ACCESS_ERRORS = {
    "inn": N_("site.cabinet.error.inn"),
    "channel": N_("site.cabinet.error.channel"),
    "wait": N_("site.cabinet.error.wait"),
    "rate_limit": N_("site.cabinet.error.rate_limit"),
    "format": N_("site.cabinet.error.format"),
    "wrong": N_("site.cabinet.error.wrong"),
    "expired": N_("site.cabinet.error.expired"),
}
CONTACT_ERRORS = {
    "email": N_("site.apply.error.email"),
    "phone": N_("site.apply.error.phone"),
    "language": N_("site.cabinet.error.language"),
}
# The languages a customer may be told things in (billing.customers.LANGUAGES), by name.
NOTIFICATION_LANGUAGES = {
    "ru": N_("site.cabinet.language.ru"),
    "ky": N_("site.cabinet.language.ky"),
}
DONE = {
    "contacts": N_("site.cabinet.done.contacts"),
    "renewed": N_("site.cabinet.done.renewed"),
    "renewed_again": N_("site.cabinet.done.renewed_again"),
}
# What a page says for a refused request, above its form.
REFUSALS = {
    "bad_request": N_("site.cabinet.refused.bad_request"),
    "form": N_("site.cabinet.refused.form"),
    "unavailable": N_("site.cabinet.refused.unavailable"),
    "not_renewable": N_("site.cabinet.refused.not_renewable"),
}
INVOICE_STATES = {
    "open": N_("site.cabinet.invoice.open"),
    "expired": N_("site.cabinet.invoice.expired"),
    "paid": N_("site.cabinet.invoice.paid"),
    "cancelled": N_("site.cabinet.invoice.cancelled"),
}


class CabinetRoute(APIRoute):
    """A cabinet route: a database out of reach (a temporary failure anywhere in the
    handler) is the sign-in page saying "try again in a few seconds", 503, never a 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DatabaseError as error:
                if not is_temporary(error):
                    raise
                return _unavailable(request)

        return route


router = APIRouter(include_in_schema=False, route_class=CabinetRoute)


def _runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def _policy(settings: Settings) -> access.Policy:
    return access.Policy(
        code_minutes=settings.cabinet_code_minutes,
        attempts=settings.cabinet_code_attempts,
        resend_seconds=settings.cabinet_resend_seconds,
        per_inn_hour=settings.cabinet_codes_per_inn,
        per_address_hour=settings.cabinet_codes_per_address,
        session_minutes=settings.cabinet_session_minutes,
    )


def _cookie(request: Request, name: str) -> str | None:
    value = request.cookies.get(name)
    return value if value is not None and _TOKEN.fullmatch(value) else None


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None = None
) -> None:
    """HttpOnly, for /cabinet only; the session's SameSite=Lax (a link from the company's
    site opens the cabinet signed in), the sign-in steps' Strict."""
    response.set_cookie(
        name,
        value,
        path=HOME,
        max_age=max_age,
        httponly=True,
        samesite="lax" if name == SESSION_COOKIE else "strict",
        secure=_runtime(request).settings.secure_cookies,
    )


def _forget(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name,
        path=HOME,
        httponly=True,
        samesite="lax" if name == SESSION_COOKIE else "strict",
        secure=_runtime(request).settings.secure_cookies,
    )


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=pages.HEADERS)


def _bad(items: Iterable[tuple[str, Any]]) -> bool:
    """A request no page of ours sends: U+0000 (no text to PostgreSQL), or over-long."""
    items = list(items)
    too_long = any(len(k) > 40 or (isinstance(v, str) and len(v) > MAX_FIELD) for k, v in items)
    return too_long or pages.has_bad_characters(items)


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form's text fields, or None for one no page of ours sends."""
    form = await request.form()
    items = form.multi_items()
    if _bad(items) or _bad(request.query_params.multi_items()):
        return None
    if any(not isinstance(v, str) for _, v in items):
        return None
    return {k: v for k, v in items if isinstance(v, str)}


async def _session(request: Request) -> CabinetSession | None:
    token = _cookie(request, SESSION_COOKIE)
    if token is None:
        return None
    engine = _runtime(request).engine

    def load() -> CabinetSession | None:
        with engine.connect() as conn:
            return access.session(conn, token)

    return await run_in_threadpool(load)


def _say(request: Request, key: str, **values: Any) -> str:
    """A text in the page's language."""
    return texts(pages.language_of(request))(key, **values)


def _secret_keys(conn: Any) -> list[bytes]:
    return secretbox.for_connection(conn).keys()


# --- signing in ----------------------------------------------------------------------------


def _sign_in_page(
    request: Request,
    *,
    status: int = 200,
    typed: dict[str, str] | None = None,
    error: str | None = None,
    refusal: str | None = None,
    values: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The INN form; a form token is given (and kept in a cookie) if the browser has none."""
    form_token = _cookie(request, FORM_COOKIE) or secrets.token_urlsafe(32)
    response = pages.render(
        request,
        "cabinet_sign_in",
        status=status,
        headers=headers,
        typed=typed or {"channel": "email"},
        error=error,
        refusal=refusal,
        values=values or {},
        form_token=form_token,
    )
    if _cookie(request, FORM_COOKIE) != form_token:
        _set_cookie(request, response, FORM_COOKIE, form_token)
    return response


def _form_refused(request: Request) -> Response:
    return _sign_in_page(request, status=403, refusal=_say(request, REFUSALS["form"]))


def _form_token_ok(request: Request, fields: dict[str, str]) -> bool:
    expected = _cookie(request, FORM_COOKIE)
    offered = fields.get("form", "")
    return expected is not None and secrets.compare_digest(expected, offered)


def _unavailable(request: Request) -> Response:
    return _sign_in_page(
        request,
        status=503,
        refusal=_say(request, REFUSALS["unavailable"]),
        headers={"Retry-After": str(RETRY_SECONDS)},
    )


def _send_code(settings: Settings, challenge: access.Challenge) -> None:
    """Send the code (after the answer: how long sending takes says nothing about the INN).
    A failure is logged without the code; the customer asks for a new one."""
    if challenge.code is None or challenge.recipient is None:
        return
    # Imported by the first code sent: the SMS sender's HTTP client is not for every start.
    from tolom.notifications import dispatch
    from tolom.notifications.errors import NotificationError

    try:
        dispatch.send_direct(
            settings,
            destination=challenge.channel,
            recipient=challenge.recipient,
            language=challenge.language,
            message_type="cabinet.code",
            payload={"code": challenge.code, "minutes": int(challenge.minutes)},
        )
    except NotificationError as error:
        log.warning("cabinet sign-in code not sent by %s: %s", challenge.channel, error)


@router.get(HOME)
async def cabinet(request: Request) -> Response:
    """The cabinet when signed in; otherwise the sign-in form."""
    if _bad(request.query_params.multi_items()):
        return _sign_in_page(request, status=400, refusal=_say(request, REFUSALS["bad_request"]))
    session = await _session(request)
    if session is None:
        response = _sign_in_page(request)
        if request.cookies.get(SESSION_COOKIE):  # ended or expired: forget it
            _forget(request, response, SESSION_COOKIE)
        return response
    return await _cabinet_page(request, session)


@router.post(f"{HOME}/code")
async def ask_for_code(request: Request) -> Response:
    """Make a challenge for the INN typed and send its code; then the code form."""
    runtime = _runtime(request)
    fields = await _form(request)
    if fields is None:
        return _sign_in_page(request, status=400, refusal=_say(request, REFUSALS["bad_request"]))
    if not _form_token_ok(request, fields):
        return _form_refused(request)
    typed = {"inn": fields.get("inn", "").strip(), "channel": fields.get("channel", "email")}
    inn = "".join(typed["inn"].split())
    address = request_address(request, runtime.settings.trusted_proxies)

    def ask() -> access.Challenge:
        with runtime.engine.begin() as conn:
            return access.request_code(
                conn,
                inn=inn,
                channel=typed["channel"],
                address=address,
                secret_keys=_secret_keys(conn),
                policy=_policy(runtime.settings),
            )

    try:
        challenge = await run_in_threadpool(ask)
    except AccessError as error:
        t = texts(pages.language_of(request))
        said = t(ACCESS_ERRORS[error.code], seconds=error.retry_after)
        if error.code in ("inn", "channel"):
            return _sign_in_page(request, status=422, typed=typed, error=said)
        return _sign_in_page(
            request,
            status=429,
            typed=typed,
            refusal=said,
            headers={"Retry-After": str(error.retry_after)},
        )
    response = _redirect(f"{HOME}/code")
    _set_cookie(
        request,
        response,
        CHALLENGE_COOKIE,
        challenge.token,
        max_age=int(challenge.minutes * 60),
    )
    response.background = BackgroundTask(_send_code, runtime.settings, challenge)
    return response


def _code_page(
    request: Request,
    channel: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    return pages.render(
        request,
        "cabinet_code",
        status=status,
        channel=channel,
        error=error,
        form_token=_cookie(request, FORM_COOKIE) or "",
        minutes=int(_runtime(request).settings.cabinet_code_minutes),
    )


@router.get(f"{HOME}/code")
async def code_form(request: Request) -> Response:
    """Where to type the code; back to the INN form when there is no live challenge."""
    token = _cookie(request, CHALLENGE_COOKIE)
    engine = _runtime(request).engine

    def channel_of() -> str | None:
        with engine.connect() as conn:
            return access.pending_channel(conn, token)

    channel = await run_in_threadpool(channel_of) if token else None
    if channel is None:
        return _redirect(HOME)
    return _code_page(request, channel)


@router.post(f"{HOME}/code/check")
async def check_code(request: Request) -> Response:
    """Check the code typed; right, sign in and open the cabinet."""
    runtime = _runtime(request)
    fields = await _form(request)
    if fields is None:
        return _sign_in_page(request, status=400, refusal=_say(request, REFUSALS["bad_request"]))
    if not _form_token_ok(request, fields):
        return _form_refused(request)
    token = _cookie(request, CHALLENGE_COOKIE)
    address = request_address(request, runtime.settings.trusted_proxies)

    def check() -> tuple[access.SignIn, str]:
        with runtime.engine.begin() as conn:
            channel = access.pending_channel(conn, token) or "email"
            tried = access.sign_in(
                conn,
                token=token,
                code=fields.get("code", ""),
                address=address,
                secret_keys=_secret_keys(conn),
                policy=_policy(runtime.settings),
            )
            return tried, channel

    tried, channel = await run_in_threadpool(check)
    if tried.refusal is not None:
        t = texts(pages.language_of(request))
        said = t(ACCESS_ERRORS[tried.refusal.code], left=tried.refusal.left)
        if tried.refusal.code == "expired":
            response = _sign_in_page(request, status=422, refusal=said)
            _forget(request, response, CHALLENGE_COOKIE)
            return response
        return _code_page(request, channel, status=422, error=said)
    assert tried.session_token is not None
    session_token = tried.session_token
    response = _redirect(HOME)
    _forget(request, response, CHALLENGE_COOKIE)
    _set_cookie(request, response, SESSION_COOKIE, session_token)
    return response


# --- inside ---------------------------------------------------------------------------------


def _period(request: Request) -> tuple[date, date, str | None, dict[str, str]]:
    """The statement's days from ?from=&to= (this month by default), and what is wrong."""
    typed = {k: request.query_params.get(k, "").strip()[:10] for k in ("from", "to")}
    today = datetime.now(UTC).astimezone(ZONE).date()
    days: list[date | None] = []
    for name in ("from", "to"):
        value = typed[name]
        if not value:
            days.append(None)
            continue
        try:
            if not _DAY.fullmatch(value):
                raise ValueError(value)
            days.append(date.fromisoformat(value))
        except ValueError:
            first, last = customers.statement_period(None, None, today=today)
            return first, last, N_("site.cabinet.error.day"), typed
    try:
        first, last = customers.statement_period(days[0], days[1], today=today)
    except customers.CustomerError as error:
        first, last = customers.statement_period(None, None, today=today)
        key = (
            N_("site.cabinet.error.period_too_long")
            if error.code == "period_too_long"
            else N_("site.cabinet.error.period_order")
        )
        return first, last, key, typed
    return first, last, None, {"from": first.isoformat(), "to": last.isoformat()}


async def _cabinet_page(
    request: Request,
    session: CabinetSession,
    *,
    status: int = 200,
    contacts: dict[str, str] | None = None,
    contact_errors: dict[str, str] | None = None,
    refusal: str | None = None,
) -> Response:
    engine = _runtime(request).engine
    first, last, period_error, period_typed = _period(request)
    language = pages.language_of(request)
    t = texts(language)

    def load() -> overview.Overview:
        with engine.connect() as conn:
            return overview.load(conn, session.customer, first, last)

    found = await run_in_threadpool(load)
    lines = [
        replace(
            line, description=statement_sources.describe(t, line, found.sources.get(line.entry_id))
        )
        for line in found.statement.lines
    ]
    receipts = {
        line.entry_id: source.number
        for line in found.statement.lines
        if (source := found.sources.get(line.entry_id)) is not None and source.kind == "payment"
    }
    done_key = request.query_params.get("done", "")
    customer = session.customer
    return pages.render(
        request,
        "cabinet",
        status=status,
        language=language,
        session=session,
        customer=customer,
        found=found,
        lines=lines,
        receipts=receipts,
        first=first,
        last=last,
        period_error=period_error,
        period_typed=period_typed,
        done=DONE.get(done_key),
        renewed=request.query_params.get("number", "") if done_key.startswith("renewed") else "",
        refusal=refusal,
        order_states=ORDER_STATES,
        invoice_states=INVOICE_STATES,
        contacts=contacts
        or {
            "email": customer.email or "",
            "phone": customer.phone or "",
            "language": customer.language,
        },
        contact_errors=contact_errors or {},
        notification_languages=[(c, NOTIFICATION_LANGUAGES[c]) for c in customers.LANGUAGES],
        now=datetime.now(UTC),
        english=language == "en",
    )


async def _signed_in_form(
    request: Request,
) -> tuple[CabinetSession, dict[str, str]] | Response:
    """The session and the form of a POST made inside the cabinet: a request without a
    live session goes to sign in; one without the session's form token is refused (403)."""
    fields = await _form(request)
    session = await _session(request)
    if session is None:
        return _redirect(HOME)
    if fields is None:
        return await _cabinet_page(
            request, session, status=400, refusal=_say(request, REFUSALS["bad_request"])
        )
    if not session.csrf_matches(fields.get("csrf")):
        return await _cabinet_page(
            request, session, status=403, refusal=_say(request, REFUSALS["form"])
        )
    return session, fields


@router.post(f"{HOME}/sign-out")
async def sign_out(request: Request) -> Response:
    found = await _signed_in_form(request)
    if isinstance(found, Response):
        return found
    token = _cookie(request, SESSION_COOKIE)
    engine = _runtime(request).engine

    def end() -> None:
        with engine.begin() as conn:
            access.sign_out(conn, token)

    await run_in_threadpool(end)
    response = _redirect(HOME)
    _forget(request, response, SESSION_COOKIE)
    return response


@router.post(f"{HOME}/contacts")
async def change_contacts(request: Request) -> Response:
    """The customer's own e-mail, phone and language of notifications (audited)."""
    found = await _signed_in_form(request)
    if isinstance(found, Response):
        return found
    session, fields = found
    runtime = _runtime(request)
    typed = {k: fields.get(k, "").strip() for k in ("email", "phone", "language")}
    t = texts(pages.language_of(request))
    address = request_address(request, runtime.settings.trusted_proxies)
    inn = session.customer.inn

    def save() -> None:
        with runtime.engine.begin() as conn:
            customers.set_contacts_audited(
                conn,
                inn,
                email=typed["email"],
                phone=typed["phone"],
                language=typed["language"],
                actor=access.actor_of(inn),
                address=address,
            )

    try:
        await run_in_threadpool(save)
    except customers.ContactsError as error:
        said = {field: t(CONTACT_ERRORS[field]) for field, _ in error.refusals}
        return await _cabinet_page(
            request, session, status=422, contacts=typed, contact_errors=said
        )
    return _redirect(f"{HOME}?done=contacts#contacts")


@router.post(f"{HOME}/renew")
async def renew(request: Request) -> Response:
    """A new invoice for one more signature like an issued one; then its number."""
    found = await _signed_in_form(request)
    if isinstance(found, Response):
        return found
    session, fields = found
    runtime = _runtime(request)
    order = fields.get("order", "")
    if not (order.isascii() and order.isdigit() and len(order) <= 18):
        return await _cabinet_page(
            request, session, status=400, refusal=_say(request, REFUSALS["bad_request"])
        )
    address = request_address(request, runtime.settings.trusted_proxies)

    def make() -> renewals.Renewal:
        with runtime.engine.begin() as conn:
            return renewals.renew_audited(
                conn,
                int(order),
                customer=session.customer,
                validity_days=runtime.settings.invoice_validity_days,
                actor=access.actor_of(session.customer.inn),
                address=address,
            )

    try:
        renewal = await run_in_threadpool(make)
    except (OrderError, invoices.InvoiceError):
        return await _cabinet_page(
            request, session, status=409, refusal=_say(request, REFUSALS["not_renewable"])
        )
    done = "renewed_again" if renewal.repeated else "renewed"
    return _redirect(f"{HOME}?done={done}&number={renewal.invoice.number}#invoices")


def _not_found() -> Response:
    return HTMLResponse("Not Found", status_code=404, headers=pages.HEADERS)


@router.get(HOME + "/receipts/{payment_id}.pdf")
async def receipt_pdf(request: Request, payment_id: str) -> Response:
    """The receipt of one of the customer's own payments."""
    session = await _session(request)
    if session is None:
        return _redirect(HOME)
    if not (payment_id.isascii() and payment_id.isdigit() and len(payment_id) <= 18):
        return _not_found()
    runtime = _runtime(request)
    address = request_address(request, runtime.settings.trusted_proxies)

    def build() -> bytes | None:
        from tolom.documents import receipt_pdf as pdf  # fpdf: imported by the first PDF
        from tolom.documents import receipts

        with runtime.engine.begin() as conn:
            found = receipts.document(
                conn,
                int(payment_id),
                runtime.settings,
                actor=access.actor_of(session.customer.inn),
                address=address,
                inn=session.customer.inn,
            )
        return None if found is None else pdf.render(found, runtime.settings)

    content = await run_in_threadpool(build)
    if content is None:
        return _not_found()
    answer = pdf_answer(content, f"receipt-{payment_id}.pdf")
    answer.headers.update(pages.HEADERS)
    return answer


@router.get(HOME + "/invoices/{number}.pdf")
async def invoice_pdf(request: Request, number: str) -> Response:
    """One of the customer's own invoices."""
    session = await _session(request)
    if session is None:
        return _redirect(HOME)
    runtime = _runtime(request)

    def build() -> bytes | None:
        from tolom.documents import invoice_pdf as pdf  # fpdf: imported by the first PDF

        if not is_invoice_number(number):
            return None
        with runtime.engine.connect() as conn:
            invoice = invoices.get(conn, number)
        if invoice is None or invoice.inn != session.customer.inn:
            return None
        return pdf.render(invoice, runtime.settings)

    content = await run_in_threadpool(build)
    if content is None:
        return _not_found()
    answer = pdf_answer(content, f"invoice-{number}.pdf")
    answer.headers.update(pages.HEADERS)
    return answer
