"""The back office's agents pages: the list with each agent's figures, a new agent, one
agent with its forms (new secret, allow-list, time zone and cancel window, limits per
service, enable/disable).

A thin adapter: the rules and the audit live in `tolom.agents.admin` (which the command
line uses too), the figures in `tolom.backoffice.agent_figures`. Everyone signed in reads;
changes need the "agents" action (administrators). A secret and its REST signing key are
shown once, in the answer to the POST that made them (never stored in clear, never shown
again; every page is sent with `Cache-Control: no-store`).

A change reaches the running gateway at once in this process (`AgentDirectory.forget`)
and within `TOLOM_AGENT_CACHE_SECONDS` in the other server processes, as a change made
with the command line does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlencode
from zoneinfo import available_timezones

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom import audit
from tolom.agents import admin, queries
from tolom.agents.queries import ServiceLine
from tolom.agents.service import AgentError, signing_key_for
from tolom.backoffice import agent_figures
from tolom.backoffice.agent_figures import Figures, Row
from tolom.backoffice.users import Session
from tolom.db import Connection
from tolom.fields import TypedAmount
from tolom.money import parse_som
from tolom.texts import N_
from tolom.timestamps import HOME_ZONE_NAME
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
from tolom.web.forms import BadFilter, Checkbox, PageForm, mistake, one_of
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayChange = Annotated[Session, Depends(may("agents"))]

PAGE_SIZE = 100
HISTORY = 10
DEFAULT_ZONE = HOME_ZONE_NAME
NETWORKS_MAX_CHARS = 8000
NETWORKS_MAX = 200
_CODE_SHAPE = re.compile(r"[a-z][a-z0-9_-]{1,31}")
_SEPARATORS = re.compile(r"[\s,;]+")
_ZONE_AREAS = (
    "Africa/",
    "America/",
    "Antarctica/",
    "Arctic/",
    "Asia/",
    "Atlantic/",
    "Australia/",
    "Europe/",
    "Indian/",
    "Pacific/",
)
# What each successful change says on the agent's page (`?done=`).
DONE = {
    "networks": N_("agents.done.networks"),
    "settings": N_("agents.done.settings"),
    "limits": N_("agents.done.limits"),
    "enabled": N_("agents.done.enabled"),
    "disabled": N_("agents.done.disabled"),
}


def as_json(value: Any) -> str:
    """An audit line's before/after as compact JSON, letters as they are ("" for none)."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


@lru_cache(maxsize=1)
def zones() -> tuple[str, ...]:
    """The time zones the forms offer: the IANA zones of the world's areas, and UTC."""
    found = sorted(z for z in available_timezones() if z.startswith(_ZONE_AREAS))
    return ("UTC", *found)


def _zone_options(current: str) -> tuple[str, ...]:
    # An agent's zone set with the command line may be one the forms do not offer.
    return zones() if current in zones() else (current, *zones())


def _known_code(code: str) -> bool:
    return bool(_CODE_SHAPE.fullmatch(code))


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the agent's page shows."""

    agent: Row
    figures: Figures
    services: list[ServiceLine]
    history: list[dict[str, Any]]
    version: str  # of the current secret, for the rotation form


def _load_detail(request: Request, code: str) -> Detail | None:
    if not _known_code(code):
        return None
    engine, now = runtime(request).engine, options(request).clock()
    with engine.connect() as conn:
        version = queries.gateway_version(conn, code)
        if version is None:
            return None
        listed = agent_figures.gateway_agents(conn, after=None, limit=1, code=code)
        agent = listed[0]
        figures = agent_figures.of_agents(conn, [(agent.id, agent.timezone)], now)[agent.id]
        return Detail(
            agent,
            figures,
            queries.service_lines(conn, agent.id),
            audit.entries(conn, admin.OBJECT_TYPE, code, limit=HISTORY),
            version,
        )


# --- the list -----------------------------------------------------------------------------


@router.get("/agents")
async def agent_list(request: Request, session: SignedIn) -> Response:
    after = request.query_params.get("after") or None
    if after is not None and not _known_code(after):
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    engine, now = runtime(request).engine, options(request).clock()

    def load() -> tuple[list[Row], dict[int, Figures]]:
        with engine.connect() as conn:
            rows = agent_figures.gateway_agents(conn, after=after, limit=PAGE_SIZE + 1)
            shown = rows[:PAGE_SIZE]
            found = agent_figures.of_agents(conn, [(r.id, r.timezone) for r in shown], now)
            return rows, found

    rows, figures = await run_in_threadpool(load)
    shown = rows[:PAGE_SIZE]
    more = urlencode({"after": shown[-1].code}) if len(rows) > PAGE_SIZE else None
    t = i18n.translator(session.user.language)
    return render(
        "agents.html",
        t=t,
        session=session,
        page="agents",
        title=t("agents.title"),
        here="/agents" + (f"?after={after}" if after else ""),
        rows=shown,
        figures=figures,
        more=more,
        first_page=after is None,
        may_change=session.user.may("agents"),
    )


# --- a new agent ------------------------------------------------------------------------------


def networks_of(text: str) -> list[str]:
    """The allow-list as typed: one network (CIDR) or address a line; commas and spaces
    separate too. Checked by `parse_networks` in the core."""
    return [v for v in _SEPARATORS.split(text) if v]


def _few_networks(text: str) -> str:
    if len(networks_of(text)) > NETWORKS_MAX:
        raise mistake(N_("agents.error.networks.too_many"), max=NETWORKS_MAX)
    return text


# The allow-list as typed (the core reads each network: `service.parse_networks`).
Networks = Annotated[str, Field(max_length=NETWORKS_MAX_CHARS), AfterValidator(_few_networks)]
# The cancel window in days as typed: digits (the core says the range, 0 to 366).
CancelDays = Annotated[str, Field(pattern=r"^[0-9]{1,3}$")]
# A limit in som as people type it; longer than the input takes is a mistake too.
Limit = Annotated[TypedAmount, Field(max_length=32)]


class NewForm(PageForm):
    """The new agent's form as typed, and what is wrong with it before the core is asked
    (the code, the name's rules and the networks are the core's: `admin.create`)."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "code": N_("agents.error.code.format"),
        "name": N_("agents.error.name.too_long"),
        "networks": N_("agents.error.networks.too_long"),
        "timezone": N_("agents.error.timezone.unknown"),
        "cancel_window_days": N_("agents.error.cancel_window.range"),
    }

    code: str = Field("", max_length=64)
    name: str = Field("", max_length=admin.NAME_MAX * 2)
    networks: Networks = ""
    timezone: Annotated[str, one_of(zones())] = DEFAULT_ZONE
    cancel_window_days: CancelDays = "0"
    sandbox: Checkbox = False  # a test agent, answered from the magic accounts
    # The services ticked (`service_<code>` checkboxes), set by the page from those it offers.
    services: tuple[str, ...] = Field((), exclude=True)

    @property
    def days(self) -> int:
        return int(self.cancel_window_days)


class RotateForm(PageForm):
    """A new secret: confirmed, for the secret the page showed (`version`)."""

    confirm: Checkbox = False
    version: str = Field("", max_length=64)


class NetworksForm(PageForm):
    mistakes: ClassVar[Mapping[str, str]] = {"networks": N_("agents.error.networks.too_long")}

    networks: Networks = ""


class SettingsForm(PageForm):
    """The time zone (one the forms offer, or the agent's own: checked by the page, which
    knows it) and the cancel window."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "timezone": N_("agents.error.timezone.unknown"),
        "cancel_window_days": N_("agents.error.cancel_window.range"),
    }

    timezone: str = Field("", max_length=64)
    cancel_window_days: CancelDays = ""

    @property
    def days(self) -> int:
        return int(self.cancel_window_days)


class LimitsForm(PageForm):
    """One service: allowed or not, and its limits in som (read only when allowed; an
    empty one is the service's default)."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "min": N_("agents.error.min.malformed"),
        "max": N_("agents.error.max.malformed"),
    }

    allowed: Checkbox = False
    min: Limit = ""
    max: Limit = ""

    @model_validator(mode="before")
    @classmethod
    def _only_when_allowed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("allowed") not in ("1", True):
            return {**data, "min": "", "max": ""}
        return data

    @property
    def low(self) -> int | None:
        return parse_som(self.min) if self.allowed and self.min else None

    @property
    def high(self) -> int | None:
        return parse_som(self.max) if self.allowed and self.max else None


class EnabledForm(PageForm):
    enabled: Literal["0", "1"]


Form = TypeVar("Form", bound=PageForm)


def _new_page(
    request: Request,
    session: Session,
    form: NewForm,
    known_services: list[str],
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "agent_new.html",
        status=status,
        t=t,
        session=session,
        page="agents-new",
        title=t("agents.new.title"),
        here="/agents/new",
        form=form,
        errors=errors or {},
        zones=_zone_options(form.timezone),
        known_services=known_services,
    )


async def _known_services(request: Request) -> list[str]:
    engine = runtime(request).engine

    def load() -> list[str]:
        with engine.connect() as conn:
            return queries.service_codes(conn)

    return await run_in_threadpool(load)


@router.get("/agents/new")
async def new_agent_form(request: Request, session: MayChange) -> Response:
    known = await _known_services(request)
    return _new_page(request, session, NewForm(services=tuple(known)), known)


class FormError(ValueError):
    """A field the page itself refuses, before the core is asked: (field, message key)."""

    def __init__(self, field_name: str, key: str, **values: Any) -> None:
        super().__init__(key)
        self.field = field_name
        self.key = key
        self.values = values


# Where the core's refusals are said on the forms: its reason (`AgentError.code`) → (field,
# message key).
_CORE_ERRORS = {
    "code.format": ("code", N_("agents.error.code.format")),
    "code.taken": ("code", N_("agents.error.code.taken")),
    "name.length": ("name", N_("agents.error.name.length")),
    "name.control": ("name", N_("agents.error.name.control")),
    "networks.empty": ("networks", N_("agents.error.networks.empty")),
    "networks.bad": ("networks", N_("agents.error.networks.bad")),
    "timezone.unknown": ("timezone", N_("agents.error.timezone.unknown")),
    "services.unknown": ("services", N_("agents.error.services.none")),
    "cancel_window.range": ("cancel_window_days", N_("agents.error.cancel_window.range")),
    "amount.not_positive": ("limits", N_("agents.error.amount.not_positive")),
    "amount.min_over_max": ("limits", N_("agents.error.amount.min_over_max")),
    "secret.changed": ("rotate", N_("agents.error.secret.changed")),
}


def _core_error(error: AgentError) -> FormError:
    field_name, key = _CORE_ERRORS.get(error.code, ("form", N_("agents.error.refused")))
    return FormError(field_name, key, value=error.value)


def _say(t: i18n.Translator, error: FormError) -> str:
    values = dict(error.values)
    if "value" in values:
        values["value"] = str(values["value"])[:80]
    return t(error.key, **values) if values else t(error.key)


def _status_of(error: FormError) -> int:
    return 409 if error.key in ("agents.error.code.taken", "agents.error.secret.changed") else 422


@router.post("/agents/new")
async def create_agent(request: Request, session: MayChange) -> Response:
    fields = await checked_form(request, session)
    known = await _known_services(request)
    t = i18n.translator(session.user.language)
    ticked = tuple(s for s in known if fields.get(f"service_{s}") == "1")
    try:
        form = NewForm.read(fields, t).model_copy(update={"services": ticked})
    except BadFilter:
        return _bad_request(request, session)
    if not form.services:
        form.errors.setdefault("services", t("agents.error.services.none"))
    if form.errors:
        if "timezone" in form.errors:  # never offer back what the select does not have
            form = form.model_copy(update={"timezone": DEFAULT_ZONE})
        return _new_page(request, session, form, known, errors=form.errors, status=422)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> str:
        with engine.begin() as conn:
            return admin.create(
                conn,
                code=form.code,
                name=form.name,
                networks=networks_of(form.networks),
                service_codes=list(form.services),
                timezone=form.timezone,
                cancel_window_days=form.days,
                sandbox=form.sandbox,
                actor=audit_actor(session),
                address=client,
            )

    try:
        secret = await run_in_threadpool(attempt)
    except AgentError as refused:
        problem = _core_error(refused)
        errors = {problem.field: _say(t, problem)}
        return _new_page(request, session, form, known, errors=errors, status=_status_of(problem))
    runtime(request).agents.forget(form.code)  # a code asked for before it existed
    return _secret_page(request, session, form.code, secret, list(form.services), rotated=False)


def _secret_page(
    request: Request,
    session: Session,
    code: str,
    secret: str,
    service_codes: list[str],
    *,
    rotated: bool,
) -> Response:
    """The one and only time a secret and its signing key are shown."""
    t = i18n.translator(session.user.language)
    response = render(
        "agent_secret.html",
        status=201 if not rotated else 200,
        t=t,
        session=session,
        page="agents-secret",
        title=t("agents.secret.title", code=code),
        here=f"/agents/{code}",  # the language form must not post this page again
        code=code,
        secret=secret,
        signing_key=signing_key_for(secret),
        base=runtime(request).settings.public_base_url,
        service_codes=service_codes,
        rotated=rotated,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# --- one agent ------------------------------------------------------------------------------


def _detail_page(
    request: Request,
    session: Session,
    detail: Detail,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    done: str | None = None,
) -> Response:
    t = i18n.translator(session.user.language)
    agent = detail.agent
    return render(
        "agent.html",
        status=status,
        t=t,
        session=session,
        page="agents-one",
        title=t("agents.one.title", code=agent.code),
        here=f"/agents/{agent.code}",
        d=detail,
        a=agent,
        f=detail.figures,
        may_change=session.user.may("agents"),
        zones=_zone_options(agent.timezone),
        errors=errors or {},
        typed=typed or {},
        done=done,
        as_json=as_json,
    )


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "agents.not_found", status=404)


@router.get("/agents/{code}")
async def agent_page(request: Request, code: str, session: SignedIn) -> Response:
    detail = await run_in_threadpool(_load_detail, request, code)
    if detail is None:
        return _not_found(request, session)
    done = request.query_params.get("done")
    return _detail_page(request, session, detail, done=DONE.get(done or ""))


def _typed(fields: dict[str, str]) -> dict[str, str]:
    """What was posted, shown back in the agent's page's forms."""
    return {k: v[:NETWORKS_MAX_CHARS] for k, v in fields.items() if k != "csrf"}


async def _refused(
    request: Request,
    session: Session,
    code: str,
    errors: dict[str, str],
    *,
    status: int = 422,
    typed: dict[str, str] | None = None,
) -> Response:
    """The agent's page again with what was refused next to its form, nothing changed."""
    detail = await run_in_threadpool(_load_detail, request, code)
    if detail is None:
        return _not_found(request, session)
    return _detail_page(request, session, detail, status=status, errors=errors, typed=typed)


def _bad_request(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


async def _change(
    request: Request,
    session: Session,
    code: str,
    fields: dict[str, str],
    change: Any,
    done: str,
) -> Response:
    """Run `change(conn, actor, address)` for an existing gateway agent; on a refusal show
    the agent's page with the error next to its form, nothing changed."""
    if not _known_code(code):
        return _not_found(request, session)
    engine, client = runtime(request).engine, address(request)
    t = i18n.translator(session.user.language)

    def attempt() -> FormError | None:
        try:
            with engine.begin() as conn:
                if not queries.is_gateway(conn, code):
                    return FormError("form", N_("agents.not_found.text"))
                change(conn, audit_actor(session), client)
        except AgentError as refused:
            return _core_error(refused)
        except FormError as refused:
            return refused
        return None

    problem = await run_in_threadpool(attempt)
    if problem is not None and problem.key == "agents.not_found.text":
        return _not_found(request, session)
    if problem is None:
        runtime(request).agents.forget(code)
        return redirect(f"/agents/{code}?done={done}")
    errors = {problem.field: _say(t, problem)}
    return await _refused(
        request, session, code, errors, status=_status_of(problem), typed=_typed(fields)
    )


@router.post("/agents/{code}/rotate")
async def rotate(request: Request, code: str, session: MayChange) -> Response:
    fields = await checked_form(request, session)
    if not _known_code(code):
        return _not_found(request, session)
    try:
        form = RotateForm.read(fields)
    except BadFilter:
        return _bad_request(request, session)
    t = i18n.translator(session.user.language)
    problem: FormError | None = None
    if not form.confirm:
        problem = FormError("rotate", N_("agents.error.rotate.confirm"))
    engine, client = runtime(request).engine, address(request)

    def attempt() -> tuple[str, list[str]] | FormError | None:
        try:
            with engine.begin() as conn:
                if admin.current_version(conn, code) is None:
                    return None
                secret = admin.rotate_secret(
                    conn,
                    code,
                    actor=audit_actor(session),
                    address=client,
                    expected_version=form.version,
                )
                return secret, queries.allowed_services(conn, code)
        except AgentError as refused:
            return _core_error(refused)

    if problem is None:
        result = await run_in_threadpool(attempt)
        if result is None:
            return _not_found(request, session)
        if isinstance(result, tuple):
            runtime(request).agents.forget(code)
            secret, service_codes = result
            return _secret_page(request, session, code, secret, service_codes, rotated=True)
        problem = result
    errors = {problem.field: _say(t, problem)}
    return await _refused(request, session, code, errors, status=_status_of(problem))


async def _read_change(
    request: Request, session: Session, code: str, form_class: type[Form], **shown: str
) -> tuple[dict[str, str], Form | Response]:
    """The posted fields and the form they make; or the answer when the form cannot go on
    (a mistake said on the agent's page, tampering, an unknown agent)."""
    fields = await checked_form(request, session)
    if not _known_code(code):
        return fields, _not_found(request, session)
    try:
        form = form_class.read(fields, i18n.translator(session.user.language))
    except BadFilter:
        return fields, _bad_request(request, session)
    if form.errors:
        errors: dict[str, str] = {}
        for name, message in form.errors.items():  # the limits' errors are said together
            errors.setdefault("limits" if name in ("min", "max") else name, message)
        typed = _typed(fields) | shown
        return fields, await _refused(request, session, code, errors, typed=typed)
    return fields, form


@router.post("/agents/{code}/networks")
async def change_networks(request: Request, code: str, session: MayChange) -> Response:
    fields, form = await _read_change(request, session, code, NetworksForm)
    if isinstance(form, Response):
        return form
    networks = networks_of(form.networks)

    def change(conn: Connection, actor: str, client: str) -> None:
        admin.configure(conn, code, networks=networks, actor=actor, address=client)

    return await _change(request, session, code, fields, change, "networks")


@router.post("/agents/{code}/settings")
async def change_settings(request: Request, code: str, session: MayChange) -> Response:
    fields, form = await _read_change(request, session, code, SettingsForm)
    if isinstance(form, Response):
        return form

    def change(conn: Connection, actor: str, client: str) -> None:
        # A zone set with the command line may be one the forms do not offer: it may stay.
        if form.timezone not in zones() and form.timezone != queries.timezone_of(conn, code):
            raise FormError("timezone", N_("agents.error.timezone.unknown"))
        admin.configure(
            conn,
            code,
            timezone=form.timezone,
            cancel_window_days=form.days,
            actor=actor,
            address=client,
        )

    return await _change(request, session, code, fields, change, "settings")


@router.post("/agents/{code}/services/{service_code}")
async def change_limits(
    request: Request, code: str, service_code: str, session: MayChange
) -> Response:
    shown = service_code[:16]
    fields, form = await _read_change(request, session, code, LimitsForm, service=shown)
    if isinstance(form, Response):
        return form

    def change(conn: Connection, actor: str, client: str) -> None:
        if service_code not in queries.service_codes(conn):
            raise FormError("limits", N_("agents.error.service.unknown"))
        admin.set_service(
            conn,
            code,
            service_code,
            allowed=form.allowed,
            min_amount=form.low,
            max_amount=form.high,
            replace=True,
            actor=actor,
            address=client,
        )

    fields = {**fields, "service": shown}
    return await _change(request, session, code, fields, change, "limits")


@router.post("/agents/{code}/enabled")
async def change_enabled(request: Request, code: str, session: MayChange) -> Response:
    fields = await checked_form(request, session)
    try:
        enabled = EnabledForm.read(fields).enabled == "1"
    except BadFilter:
        return _bad_request(request, session)

    def change(conn: Connection, actor: str, client: str) -> None:
        admin.set_enabled(conn, code, enabled, actor=actor, address=client)

    return await _change(
        request, session, code, fields, change, "enabled" if enabled else "disabled"
    )
