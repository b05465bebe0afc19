"""The back office's users pages: the list, a new user, one user with their forms (role and
language, disable/enable, a new password, unlock).

A thin adapter: the rules live in `tolom.backoffice.users` (which the command line uses
too): the last active administrator stays one, nobody changes their own role or disables
themself, a role change or disabling ends the user's sessions, a new password unlocks and
ends them. Everyone signed in reads the list (no password hashes, session tokens or
failure counters: only "locked until"); changes need the "users" action (administrators)
and are audited with the command line's action names (`user.create`, `user.role`,
`user.language`, `user.disable`, `user.enable`, `user.reset_password`) and `user.unlock`.

A generated password is shown once, in the answer to the POST that made it (every page is
sent with `Cache-Control: no-store`); only its argon2id hash is stored.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.backoffice import passwords, users
from tolom.backoffice.users import (
    DISPLAY_NAME_MAX,
    MIN_PASSWORD,
    ROLES,
    Overview,
    Session,
    UserError,
)
from tolom.texts import LANGUAGES, N_
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
)
from tolom.web.forms import BadFilter, PageForm, one_of
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayChange = Annotated[Session, Depends(may("users"))]

_USERNAME = re.compile(r"[a-z][a-z0-9_.-]{1,63}")
# What each successful change says on the user's page (`?done=`).
DONE = {
    "created": N_("users.done.created"),
    "changed": N_("users.done.changed"),
    "disabled": N_("users.done.disabled"),
    "enabled": N_("users.done.enabled"),
    "unlocked": N_("users.done.unlocked"),
    "unchanged": N_("users.done.unchanged"),
}
# What each refusal of the core (`UserError.code`) says; anything else: "users.error.other".
ERRORS = {
    "username.format": N_("users.error.username.format"),
    "username.taken": N_("users.error.username.taken"),
    "display_name.empty": N_("users.error.display_name.empty"),
    "display_name.invalid": N_("users.error.display_name.invalid"),
    "password.short": N_("users.error.password.short"),
    "password.long": N_("users.error.password.long"),
    "role.unknown": N_("users.error.role.unknown"),
    "language.unknown": N_("users.error.language.unknown"),
    "user.not_found": N_("users.error.user.not_found"),
    "last_admin": N_("users.error.last_admin"),
    "own_account": N_("users.error.own_account"),
}


# A role and a language are chosen from the select's options: anything else is tampering.
Role = Annotated[str, one_of(ROLES)]
PageLanguage = Annotated[str, one_of(LANGUAGES)]
# A password as typed: every character counts, spaces at the ends too.
Password = Annotated[str, StringConstraints(strip_whitespace=False)]


class NewForm(PageForm):
    """The new user's form as typed; the core says what is wrong with the username, the
    name and the password (`users.create_audited`, `check_password`). No password given:
    one is generated and shown once."""

    username: str = ""
    display_name: str = ""
    role: Role
    language: PageLanguage = "ru"
    password: Password = ""
    repeat_password: Password = ""

    @property
    def generated(self) -> bool:
        return not self.password


class ChangeForm(PageForm):
    """A user's role and language, both always posted."""

    role: Role
    language: PageLanguage


def _known(username: str) -> bool:
    return bool(_USERNAME.fullmatch(username))


def _shown(typed: str) -> str:
    """What was typed, to show back in its field (U+0000 never gets here: `auth.form_fields`)."""
    return typed[:200]


def _error_text(t: i18n.Translator, error: UserError) -> str:
    key = ERRORS.get(error.code, N_("users.error.other"))
    return t(key, min=MIN_PASSWORD, max=DISPLAY_NAME_MAX)


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "users.not_found", status=404)


# --- the list -----------------------------------------------------------------------------


@router.get("/users")
async def user_list(request: Request, session: SignedIn) -> Response:
    engine, now = runtime(request).engine, options(request).clock()

    def load() -> list[Overview]:
        with engine.connect() as conn:
            return users.overview(conn, now)

    found = await run_in_threadpool(load)
    t = i18n.translator(session.user.language)
    return render(
        "users.html",
        t=t,
        session=session,
        page="users",
        title=t("users.title"),
        here="/users",
        rows=found,
        may_change=session.user.may("users"),
    )


# --- a new user ---------------------------------------------------------------------------


def _new_form(
    request: Request,
    session: Session,
    *,
    form: NewForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "user_new.html",
        status=status,
        t=t,
        session=session,
        page="users-new",
        title=t("users.new.title"),
        here="/users/new",
        roles=ROLES,
        languages_offered=LANGUAGES,
        username=_shown(form.username if form else ""),
        display_name=_shown(form.display_name if form else ""),
        role=form.role if form else "operator",
        language=form.language if form else "ru",
        error=error,
        min_length=MIN_PASSWORD,
    )


@router.get("/users/new")
async def new_user_form(request: Request, session: MayChange) -> Response:
    return _new_form(request, session)


@router.post("/users/new")
async def create_user(request: Request, session: MayChange) -> Response:
    fields = await checked_form(request, session)
    t = i18n.translator(session.user.language)
    try:
        form = NewForm.read(fields)
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    if form.password != form.repeat_password:
        return _new_form(request, session, form=form, error=t("users.error.mismatch"), status=422)
    chosen = users.generate_password() if form.generated else form.password
    engine, client = runtime(request).engine, address(request)

    def create() -> users.User:
        users.check_password(chosen)  # before the hash: a refused password costs none
        encoded = passwords.hash_with_pool(chosen)  # before the transaction, not inside it
        with engine.begin() as conn:
            return users.create_audited(
                conn,
                username=form.username,
                display_name=form.display_name,
                role=form.role,
                password=chosen,
                language=form.language,
                password_hash=encoded,
                actor=audit_actor(session),
                address=client,
            )

    try:
        user = await run_in_threadpool(create)
    except UserError as error:
        status = 409 if error.code == "username.taken" else 422
        return _new_form(request, session, form=form, error=_error_text(t, error), status=status)
    if not form.generated:
        return redirect(f"/users/{user.username}?done=created")
    return _secret_page(request, session, user, chosen, created=True)


def _secret_page(
    request: Request, session: Session, user: users.User, password: str, *, created: bool
) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "user_secret.html",
        t=t,
        session=session,
        page="users-secret",
        title=t("users.secret.title", username=user.username),
        here=f"/users/{user.username}",
        target=user,
        password=password,
        created=created,
    )


# --- one user -----------------------------------------------------------------------------


def _load(request: Request, username: str) -> Overview | None:
    if not _known(username):
        return None
    engine, now = runtime(request).engine, options(request).clock()
    with engine.connect() as conn:
        found = users.overview(conn, now, username=username)
    return found[0] if found else None


def _user_page(
    request: Request,
    session: Session,
    shown: Overview,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    t = i18n.translator(session.user.language)
    done = request.query_params.get("done", "") if request.method == "GET" else ""
    target = shown.user
    return render(
        "user.html",
        status=status,
        t=t,
        session=session,
        page="users-one",
        title=t("users.one.title", username=target.username),
        here=f"/users/{target.username}",
        o=shown,
        target=target,
        roles=ROLES,
        languages_offered=LANGUAGES,
        may_change=session.user.may("users"),
        own=target.username == session.user.username,
        done=t(DONE[done]) if done in DONE else "",
        error=error,
    )


@router.get("/users/{username}")
async def user_page(request: Request, username: str, session: SignedIn) -> Response:
    shown = await run_in_threadpool(_load, request, username)
    if shown is None:
        return _not_found(request, session)
    return _user_page(request, session, shown)


async def _refused(request: Request, session: Session, username: str, error: UserError) -> Response:
    """The user's page again with why the change was refused (nothing was changed)."""
    shown = await run_in_threadpool(_load, request, username)
    if shown is None or error.code == "user.not_found":
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    status = 409 if error.code in ("last_admin", "own_account") else 422
    return _user_page(request, session, shown, status=status, error=_error_text(t, error))


@router.post("/users/{username}/change")
async def change_user(request: Request, username: str, session: MayChange) -> Response:
    """Role and language, each audited as the command line does (`user.role`,
    `user.language`); a new role ends the user's sessions."""
    fields = await checked_form(request, session)
    if not _known(username):
        return _not_found(request, session)
    try:
        form = ChangeForm.read(fields)
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    engine, client = runtime(request).engine, address(request)

    def change() -> bool:
        with engine.begin() as conn:
            before, after = users.change_audited(
                conn,
                username,
                by=session.user,
                actor=audit_actor(session),
                address=client,
                role=form.role,
                language=form.language,
            )
        return before != after

    try:
        changed = await run_in_threadpool(change)
    except UserError as error:
        return await _refused(request, session, username, error)
    return redirect(f"/users/{username}?done={'changed' if changed else 'unchanged'}")


async def _set_active(request: Request, username: str, session: Session, active: bool) -> Response:
    await checked_form(request, session)
    if not _known(username):
        return _not_found(request, session)
    engine, client = runtime(request).engine, address(request)

    def change() -> bool:
        with engine.begin() as conn:
            before, after = users.change_audited(
                conn,
                username,
                by=session.user,
                actor=audit_actor(session),
                address=client,
                active=active,
            )
            return before != after

    try:
        changed = await run_in_threadpool(change)
    except UserError as error:
        return await _refused(request, session, username, error)
    done = ("enabled" if active else "disabled") if changed else "unchanged"
    return redirect(f"/users/{username}?done={done}")


@router.post("/users/{username}/disable")
async def disable_user(request: Request, username: str, session: MayChange) -> Response:
    return await _set_active(request, username, session, False)


@router.post("/users/{username}/enable")
async def enable_user(request: Request, username: str, session: MayChange) -> Response:
    return await _set_active(request, username, session, True)


@router.post("/users/{username}/reset-password")
async def reset_password(request: Request, username: str, session: MayChange) -> Response:
    """A generated password, shown once in this answer; the user's sessions end and any
    lock is lifted."""
    await checked_form(request, session)
    if not _known(username):
        return _not_found(request, session)
    engine, client = runtime(request).engine, address(request)

    def reset() -> tuple[users.User, str]:
        generated = users.new_password()  # hashed before the transaction, not inside it
        with engine.begin() as conn:
            return users.reset_password_audited(
                conn,
                username,
                by=session.user,
                generated=generated,
                actor=audit_actor(session),
                address=client,
            )

    try:
        user, password = await run_in_threadpool(reset)
    except UserError as error:
        return await _refused(request, session, username, error)
    return _secret_page(request, session, user, password, created=False)


@router.post("/users/{username}/unlock")
async def unlock_user(request: Request, username: str, session: MayChange) -> Response:
    await checked_form(request, session)
    if not _known(username):
        return _not_found(request, session)
    engine, client, now = runtime(request).engine, address(request), options(request).clock()

    def unlock() -> bool:
        with engine.begin() as conn:
            return users.unlock_audited(
                conn, username, now, actor=audit_actor(session), address=client
            )

    try:
        unlocked = await run_in_threadpool(unlock)
    except UserError as error:
        return await _refused(request, session, username, error)
    return redirect(f"/users/{username}?done={'unlocked' if unlocked else 'unchanged'}")
