"""Who is asking, and may they: the session cookie, CSRF tokens, safe redirects, role guards.

Pages take the session as a dependency:

    @router.get("/cash")
    async def cash(request: Request, session: Annotated[Session, Depends(may("cash"))]): ...

`signed_in` gives the Session or redirects (303) to /login?next=…; `may(action)` also
answers 403 with the "forbidden" page when the user's role may not do `action`
(`User.may`). Both raise `PageRefusal`, which `PageRoute` turns into its response, so a
page body only runs for a permitted user.

CSRF: every POST form carries a hidden `csrf` equal to the session's token (synchronizer
token, compared in constant time). The login form has no session yet: it carries a random
token that must equal the `tolom_login_csrf` cookie set with the form (double submit).

U+0000 (not text to PostgreSQL) is refused here once for every page, 400 "bad-request":
in any query parameter (`PageRoute`) and any form field's name or value (`form_fields`).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import string
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tolom.backoffice import users
from tolom.backoffice.users import ACTIONS, Session
from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.httpkit.clients import request_address
from tolom.runtime import Runtime
from tolom.texts import N_
from tolom.web import i18n, labels
from tolom.web.pages import render, secure

SESSION_COOKIE = "tolom_session"
LOGIN_CSRF_COOKIE = "tolom_login_csrf"
_TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_")
BAD_CHARACTER = "\x00"  # U+0000: not text to PostgreSQL; see `refuse_bad_characters`


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class WebOptions:
    """What tests may replace (`app.state.web_options`): how a failed login's answer is held
    back, and the clock for logins, lockouts, sessions and the dashboard's "today"."""

    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    clock: Callable[[], datetime] = field(default=_utc_now)


def options(request: Request) -> WebOptions:
    found = getattr(request.app.state, "web_options", None)
    return found if isinstance(found, WebOptions) else WebOptions()


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def audit_actor(session: Session) -> str:
    """How a back-office user appears in the audit log and in reversal records."""
    return f"user:{session.user.username}"


def address(request: Request) -> str:
    """The client's address, believing X-Forwarded-For only from trusted proxies."""
    return request_address(request, runtime(request).settings.trusted_proxies)


class PageRefusal(Exception):
    """Answer with this response instead of the page (a redirect to log in, a 403 page)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PageRoute(APIRoute):
    """A back-office page: refusals become their responses, a database that is out of reach
    a 503 page, and every answer carries the security headers. A query with U+0000 is
    refused before the page runs (`refuse_bad_characters`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                await refuse_bad_characters(request, request.query_params.multi_items())
                response = await handler(request)
            except PageRefusal as refusal:
                response = refusal.response
            except DatabaseError as error:
                if not is_temporary(error):
                    raise
                response = message_page(
                    request, None, "unavailable", "error.unavailable", status=503
                )
            return secure(response)

        return route


# --- redirects --------------------------------------------------------------------------


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site, never elsewhere.

    Only a local absolute path is kept. `//host`, `/\\host` (browsers read a backslash as a
    slash), absolute URLs, and anything with control characters or spaces (browsers drop
    tabs and newlines, which could turn `/\\t/host` into `//host`) become "/".
    """
    if not value or len(value) > 2048 or not value.startswith("/"):
        return "/"
    if value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def this_page(request: Request) -> str:
    """This page's address with its query, to come back to (after a language switch or a
    login); without the query when that is too long or not a safe local path."""
    query = request.url.query
    full = safe_next(request.url.path + (f"?{query}" if query else ""))
    return full if full != "/" else safe_next(request.url.path)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    """To the login page, coming back here afterwards (for a page one reads, GET)."""
    if request.method != "GET":
        return redirect("/login")
    return redirect("/login?next=" + quote(this_page(request), safe=""))


# --- pages of refusal ---------------------------------------------------------------------


# The pages that say one thing (`message_page`): their title and text, by the name a page
# gives.
MESSAGES = {
    "forbidden": (N_("forbidden.title"), N_("forbidden.text")),
    "csrf": (N_("csrf.title"), N_("csrf.text")),
    "error.bad_request": (N_("error.bad_request.title"), N_("error.bad_request.text")),
    "error.unavailable": (N_("error.unavailable.title"), N_("error.unavailable.text")),
    "agents.not_found": (N_("agents.not_found.title"), N_("agents.not_found.text")),
    "application.not_found": (
        N_("application.not_found.title"),
        N_("application.not_found.text"),
    ),
    "audit.not_found": (N_("audit.not_found.title"), N_("audit.not_found.text")),
    "audit.too_large": (N_("audit.too_large.title"), N_("audit.too_large.text")),
    "cash.no_channel": (N_("cash.no_channel.title"), N_("cash.no_channel.text")),
    "customer.not_found": (N_("customer.not_found.title"), N_("customer.not_found.text")),
    "delivery.not_found": (N_("delivery.not_found.title"), N_("delivery.not_found.text")),
    "event.not_found": (N_("event.not_found.title"), N_("event.not_found.text")),
    "invoice.not_found": (N_("invoice.not_found.title"), N_("invoice.not_found.text")),
    "order.not_found": (N_("order.not_found.title"), N_("order.not_found.text")),
    "payment.not_found": (N_("payment.not_found.title"), N_("payment.not_found.text")),
    "payments.too_large": (N_("payments.too_large.title"), N_("payments.too_large.text")),
    "recon.no_act": (N_("recon.no_act.title"), N_("recon.no_act.text")),
    "recon.not_found": (N_("recon.not_found.title"), N_("recon.not_found.text")),
    "recon.too_large": (N_("recon.too_large.title"), N_("recon.too_large.text")),
    "users.not_found": (N_("users.not_found.title"), N_("users.not_found.text")),
    "webhook.not_found": (N_("webhook.not_found.title"), N_("webhook.not_found.text")),
}


def message_page(
    request: Request,
    session: Session | None,
    page: str,
    key: str,
    *,
    status: int,
    language: str | None = None,
    **values: Any,
) -> Response:
    """A page that says one thing: forbidden, a refused form, a bad request, unavailable."""
    t = i18n.translator(session.user.language if session else language)
    return render(
        "message.html",
        status=status,
        t=t,
        session=session,
        page=page,
        title=t(MESSAGES[key][0]),
        text=t(MESSAGES[key][1], **values),
        # The language form comes back here: a page one can GET, never the refused POST.
        here=safe_next(request.url.path) if request.method == "GET" else "/",
    )


def forbidden(request: Request, session: Session) -> Response:
    role = i18n.translator(session.user.language).name(labels.ROLE, session.user.role)
    return message_page(request, session, "forbidden", "forbidden", status=403, role=role)


def csrf_refused(
    request: Request, session: Session | None, language: str | None = None
) -> Response:
    return message_page(request, session, "csrf", "csrf", status=403, language=language)


# --- sessions and guards ----------------------------------------------------------------


def _well_formed(token: str | None) -> bool:
    return token is not None and 0 < len(token) <= 128 and set(token) <= _TOKEN_CHARACTERS


async def current_session(request: Request) -> Session | None:
    """The request's live session and its user (one query), remembered for the request."""
    if hasattr(request.state, "web_session"):
        found: Session | None = request.state.web_session
        return found
    token = request.cookies.get(SESSION_COOKIE)
    session = None
    if _well_formed(token):
        engine, now = runtime(request).engine, options(request).clock()

        def load() -> Session | None:
            with engine.connect() as conn:
                return users.session(conn, token, now=now)

        session = await run_in_threadpool(load)
    request.state.web_session = session
    return session


async def signed_in(request: Request) -> Session:
    """The dependency of every page: the session, or a redirect (303) to log in."""
    session = await current_session(request)
    if session is None:
        response = login_redirect(request)
        if request.cookies.get(SESSION_COOKIE):  # expired or ended: forget it
            forget_session_cookie(request, response)
        raise PageRefusal(response)
    return session


def refuse_unless(request: Request, session: Session, action: str) -> None:
    """Answer 403 (the "forbidden" page) unless the user's role may do `action`."""
    if not session.user.may(action):
        raise PageRefusal(forbidden(request, session))


def may(action: str) -> Callable[[Request], Coroutine[Any, Any, Session]]:
    """A dependency: the session of a user whose role may do `action` (see `User.may`)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {sorted(ACTIONS)}")

    async def guard(request: Request) -> Session:
        session = await signed_in(request)
        refuse_unless(request, session, action)
        return session

    return guard


# --- forms and CSRF ---------------------------------------------------------------------


def bad_request(request: Request, session: Session | None) -> Response:
    """The page for a request no page of ours sends (400)."""
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


async def refuse_bad_characters(request: Request, items: Iterable[tuple[str, Any]]) -> None:
    """The one back-office guard against U+0000: PostgreSQL text cannot hold it and no
    page of ours sends it, so a query parameter or form field with it in its name or its
    text is refused (400) alike on both databases, before any page reads it. Uploaded
    files are bytes, judged by their parser, not here."""
    if any(BAD_CHARACTER in k or (isinstance(v, str) and BAD_CHARACTER in v) for k, v in items):
        raise PageRefusal(bad_request(request, await current_session(request)))


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form's text fields (files and repeated names are ignored); every field,
    repeated ones too, passed through `refuse_bad_characters`."""
    form = await request.form()
    await refuse_bad_characters(request, form.multi_items())
    return {k: v for k, v in form.items() if isinstance(v, str)}


def tokens_match(expected: str | None, offered: str | None) -> bool:
    if not expected or not offered:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The form of a POST by a signed-in user, refused (403) unless it carries the
    session's CSRF token."""
    fields = await form_fields(request)
    if not session.csrf_matches(fields.get("csrf")):
        raise PageRefusal(csrf_refused(request, session))
    return fields


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def login_csrf_of(request: Request) -> str | None:
    token = request.cookies.get(LOGIN_CSRF_COOKIE)
    return token if _well_formed(token) else None


# --- cookies ------------------------------------------------------------------------------


def _secure_cookies(request: Request) -> bool:
    return runtime(request).settings.secure_cookies


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """HttpOnly (scripts cannot read it), SameSite=Lax (not sent with other sites' POSTs),
    Secure when configured; no Max-Age, so it ends with the browser — the server ends it
    after `web_session_hours` in any case."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(request),
    )


def forget_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure_cookies(request)
    )


def set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/login",
        max_age=12 * 3600,
        httponly=True,
        samesite="strict",
        secure=_secure_cookies(request),
    )


def forget_login_csrf_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        LOGIN_CSRF_COOKIE,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=_secure_cookies(request),
    )
