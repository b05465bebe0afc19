"""The back-office pages of this increment: log in and out, password, language, dashboard
(with its 30-day chart, drawn as SVG on the server by `tolom.web.charts`).

Thin adapters like the API's: the rules (passwords, lockout, sessions, roles) live in
`tolom.backoffice.users`, the figures in `tolom.backoffice.dashboard`. Every change a user
makes here is written to the audit log in the same transaction, as `user:USERNAME` from
the client's address.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.backoffice import dashboard, passwords, users
from tolom.backoffice.login_throttle import Policy
from tolom.backoffice.users import MIN_PASSWORD, Session, UserError
from tolom.texts import LANGUAGES
from tolom.web import charts, i18n
from tolom.web.auth import (
    SESSION_COOKIE,
    PageRoute,
    address,
    audit_actor,
    checked_form,
    csrf_refused,
    current_session,
    forget_login_csrf_cookie,
    forget_session_cookie,
    form_fields,
    login_csrf_of,
    message_page,
    new_login_csrf,
    options,
    redirect,
    runtime,
    safe_next,
    set_login_csrf_cookie,
    set_session_cookie,
    signed_in,
    this_page,
    tokens_match,
)
from tolom.web.pages import render

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]

# A wrong current password on the password form is answered this much later: a stolen
# session cookie must not become a fast way to guess the password.
WRONG_OLD_PASSWORD_DELAY = 1.0


# --- log in and out -----------------------------------------------------------------------


def _login_page(
    request: Request,
    language: str,
    next_path: str,
    *,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> Response:
    token = login_csrf_of(request) or new_login_csrf()
    t = i18n.translator(language)
    response = render(
        "login.html",
        status=status,
        t=t,
        session=None,
        page="login",
        title=t("login.title"),
        here="/login",
        next_path=next_path,
        login_csrf=token,
        error=error,
        username=username,
    )
    set_login_csrf_cookie(request, response, token)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if await current_session(request) is not None:
        return redirect(next_path)
    return _login_page(request, i18n.language_of(request.query_params.get("lang")), next_path)


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await form_fields(request)
    language = i18n.language_of(fields.get("lang"))
    if not tokens_match(login_csrf_of(request), fields.get("csrf")):
        return csrf_refused(request, None, language)
    next_path = safe_next(fields.get("next"))
    username = fields.get("username", "").strip()
    password = fields.get("password", "")
    settings, engine = runtime(request).settings, runtime(request).engine
    client, now = address(request), options(request).clock()
    t = i18n.translator(language)
    shown = username if len(username) <= 64 else ""

    def check() -> users.LoginCheck:
        with engine.connect() as conn:
            return users.check_login(conn, username, client, now=now)

    def finish(verified: bool, new_hash: str | None) -> users.LoginResult:
        with engine.begin() as conn:
            return users.finish_login_audited(
                conn,
                found,
                verified,
                new_hash,
                policy=Policy.of(settings),
                session_hours=settings.web_session_hours,
                now=now,
                address=client,
            )

    # A short read, the argon2 verify on its own bounded pool with no connection held
    # (the gateways' threads and SQLite's write lock stay free), then a short write.
    found = await run_in_threadpool(check)
    result = users.refused_early(found, now)
    if result is None:
        hashing = passwords.pool(settings.password_hash_threads, settings.password_hash_queue)
        try:
            verified, new_hash = await hashing.run(lambda: found.verification(password))
        except passwords.PoolBusy:
            result = users.LoginResult(None, refusal="busy", retry_after=2)
        else:
            result = await run_in_threadpool(finish, verified, new_hash)
    if result.token is not None:
        response = redirect(next_path)
        set_session_cookie(request, response, result.token)
        forget_login_csrf_cookie(request, response)
        return response
    log.warning("back-office login refused (%s) from %s", result.refusal, client)
    if result.refusal in ("throttled", "busy"):
        if result.refusal == "busy":
            error = t("login.busy")
        elif result.retry_after < 120:
            seconds = result.retry_after
            error = t.plural("login.throttled_seconds", seconds, seconds=seconds)
        else:
            minutes = math.ceil(result.retry_after / 60)
            error = t.plural("login.throttled_minutes", minutes, minutes=minutes)
        refusal = _login_page(request, language, next_path, error=error, username=shown, status=429)
        refusal.headers["Retry-After"] = str(result.retry_after)
        return refusal
    await options(request).sleep(result.delay_seconds)  # slows guessing, blocks no one else
    if result.refusal == "locked":
        minutes = max(1, math.ceil(settings.login_lockout_minutes))
        error = t.plural("login.locked", minutes, minutes=minutes)
    else:
        error = t("login.bad_credentials")
    return _login_page(request, language, next_path, error=error, username=shown)


@router.post("/logout")
async def logout(request: Request, session: SignedIn) -> Response:
    await checked_form(request, session)
    token, engine, client = (
        request.cookies.get(SESSION_COOKIE),
        runtime(request).engine,
        address(request),
    )

    def end() -> None:
        with engine.begin() as conn:
            users.logout_audited(
                conn, token, session.user, actor=audit_actor(session), address=client
            )

    await run_in_threadpool(end)
    response = redirect("/login")
    forget_session_cookie(request, response)
    return response


# --- the user's own settings ----------------------------------------------------------------


def _password_page(
    request: Request, session: Session, *, errors: list[str], changed: bool = False
) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "password.html",
        t=t,
        session=session,
        page="password",
        title=t("password.title"),
        here="/password",
        errors=errors,
        changed=changed,
        min_length=MIN_PASSWORD,
    )


@router.get("/password")
async def password_form(request: Request, session: SignedIn) -> Response:
    changed = request.query_params.get("changed") == "1"
    return _password_page(request, session, errors=[], changed=changed)


@router.post("/password")
async def change_password(request: Request, session: SignedIn) -> Response:
    fields = await checked_form(request, session)
    old, new = fields.get("old_password", ""), fields.get("new_password", "")
    t = i18n.translator(session.user.language)
    if new != fields.get("repeat_password", ""):
        return _password_page(request, session, errors=[t("password.mismatch")])
    settings, engine, client = runtime(request).settings, runtime(request).engine, address(request)
    hashing = passwords.pool(settings.password_hash_threads, settings.password_hash_queue)

    def stored() -> str:
        with engine.connect() as conn:
            return users.password_hash_of(conn, session.user.id)

    def change(verified_hash: str, new_hash: str) -> str:
        with engine.begin() as conn:
            return users.change_password_audited(
                conn,
                session.user,
                verified_hash=verified_hash,
                new=new,
                new_hash=new_hash,
                session_hours=settings.web_session_hours,
                actor=audit_actor(session),
                address=client,
            )

    async def attempt() -> str:
        """Verify and hash on the hashing pool with no transaction open, then a short write."""
        current = await run_in_threadpool(stored)
        if not await hashing.run(lambda: passwords.verify(current, old)):
            raise UserError("old_password: текущий пароль неверен", "old_password.wrong")
        users.check_password(new)
        new_hash = await hashing.run(lambda: passwords.hash_password(new))
        return await run_in_threadpool(change, current, new_hash)

    try:
        token = await attempt()
    except passwords.PoolBusy:
        return _password_page(request, session, errors=[t("login.busy")])
    except UserError as error:
        if str(error).startswith("old_password:"):
            await options(request).sleep(WRONG_OLD_PASSWORD_DELAY)
            message = t("password.old_wrong")
        elif len(new) < MIN_PASSWORD:
            message = t("password.too_short", min=MIN_PASSWORD)
        else:
            message = t("password.too_long")
        return _password_page(request, session, errors=[message])
    response = redirect("/password?changed=1")
    set_session_cookie(request, response, token)  # every older session, this one too, ended
    return response


@router.post("/language")
async def change_language(request: Request, session: SignedIn) -> Response:
    fields = await checked_form(request, session)
    language = fields.get("language", "")
    if language not in LANGUAGES:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    engine, client = runtime(request).engine, address(request)

    def change() -> None:
        with engine.begin() as conn:
            users.set_own_language_audited(
                conn, session.user, language, actor=audit_actor(session), address=client
            )

    await run_in_threadpool(change)
    return redirect(safe_next(fields.get("next")))


# --- the dashboard ------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request, session: SignedIn) -> Response:
    engine, settings = runtime(request).engine, runtime(request).settings
    today = dashboard.business_today(options(request).clock())

    def load() -> dashboard.Dashboard:
        with engine.connect() as conn:
            return dashboard.load(
                conn, today=today, expiry_days=settings.signature_expiry_warning_days
            )

    figures = await run_in_threadpool(load)
    t = i18n.translator(session.user.language)
    chart = charts.layout(figures.chart) if figures.chart is not None else None
    return render(
        "dashboard.html",
        t=t,
        session=session,
        page="dashboard",
        title=t("dashboard.title"),
        here=this_page(request),
        d=figures,
        chart=chart,
        axis_label=charts.axis_labels([tick.value for tick in chart.ticks] if chart else [], t).get,
    )
