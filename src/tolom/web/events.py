"""The back office's outbox and webhooks: deliveries with their filters and keyset pages
(the dead ones first), one event with its payload and deliveries, re-driving dead
deliveries, and the webhook endpoints (add, enable/disable, a new secret).

A thin adapter over `tolom.events.admin` and `tolom.events.endpoints`, the functions the
`tolom events` and `tolom webhook` commands call; they write their own audit lines
(`delivery.redrive`, `webhook.add`, `webhook.enable`, `webhook.disable`,
`webhook.rotate_secret`) in the change's transaction, here as `user:USERNAME` from the
client's address. Secrets are never audited: a new one is shown once, in the answer to the
POST that made it (every page is sent with `Cache-Control: no-store`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, ClassVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.backoffice.users import Session
from tolom.db import Connection
from tolom.events import admin, endpoints
from tolom.events.outbox import EventType
from tolom.texts import N_
from tolom.web import i18n, labels
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
from tolom.web.forms import BadFilter, Checkbox, PageForm, cursor, mistake, one_of
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayWebhooks = Annotated[Session, Depends(may("webhooks"))]

PAGE_SIZE = 50
DEAD_SHOWN = 10  # the newest dead deliveries shown above the list
TYPES = tuple(t.value for t in EventType)
_MAX_DESTINATION = 40  # "webhook:" and an id, or a channel


def _number(value: str | None) -> int | None:
    """A positive number as typed in a URL; None for anything else."""
    if not value or not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    number = int(value)
    return number if 0 < number < 2**63 else None


def _bad_request(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


def _destinations(
    conn: Connection, t: i18n.Translator
) -> tuple[list[endpoints.Endpoint], dict[str, str]]:
    """Every endpoint, and each destination's name for people (`webhook:3` → "Webhook sochi")."""
    known = endpoints.load_all(conn)
    names = {code: t(key) for code, key in labels.EVENT_DESTINATION.items()}
    for endpoint in known:
        names[endpoint.destination] = t("events.destination.webhook", name=endpoint.name)
    return known, names


# --- deliveries -----------------------------------------------------------------------------


class ListForm(PageForm):
    """The list's GET form as typed; every value a form could not send is tampering (400).
    The destinations are the endpoints of the moment: the page checks that one
    (`checked`)."""

    status: Annotated[str, one_of(("", *admin.STATUSES))] = ""
    destination: str = Field("", max_length=_MAX_DESTINATION)
    type: Annotated[str, one_of(("", *TYPES))] = ""

    def checked(self, names: Mapping[str, str]) -> ListForm:
        """The form, if its destination is one of `names`; BadFilter if not."""
        if self.destination and self.destination not in names:
            raise BadFilter(self.destination)
        return self

    def query(self, **extra: str) -> str:
        fields = {
            "status": self.status,
            "destination": self.destination,
            "type": self.type,
            **extra,
        }
        return urlencode({k: v for k, v in fields.items() if v})


def _list_form(request: Request, names: dict[str, str]) -> tuple[ListForm, int | None]:
    params = request.query_params
    form = ListForm.read(params).checked(names)
    return form, cursor(params.get("before"))


def _redriven(request: Request) -> int | None:
    value = request.query_params.get("redriven")
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 9:
        return None
    return int(value)


@router.get("/events")
async def delivery_list(request: Request, session: SignedIn) -> Response:
    engine = runtime(request).engine
    t = i18n.translator(session.user.language)

    def names() -> dict[str, str]:
        with engine.connect() as conn:
            return _destinations(conn, t)[1]

    known = await run_in_threadpool(names)
    try:
        form, before = _list_form(request, known)
    except BadFilter:
        return _bad_request(request, session)
    # The dead ones first, when the list is not already only them (first page only).
    show_dead = not form.status and before is None

    def load() -> tuple[list[admin.Delivery], list[admin.Delivery]]:
        destination, event_type = form.destination or None, form.type or None
        with engine.connect() as conn:
            found = admin.list_deliveries(
                conn,
                status=form.status or None,
                destination=destination,
                event_type=event_type,
                before_id=before,
                limit=PAGE_SIZE + 1,
            )
            dead = []
            if show_dead:
                dead = admin.list_deliveries(
                    conn,
                    status="dead",
                    destination=destination,
                    event_type=event_type,
                    limit=DEAD_SHOWN,
                )
        return found, dead

    found, dead = await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = form.query(before=str(shown[-1].id)) if len(found) > PAGE_SIZE else None
    dead_form = form.model_copy(update={"status": "dead"})
    return render(
        "events.html",
        t=t,
        session=session,
        page="events",
        title=t("events.title"),
        here=this_page(request),
        form=form,
        statuses=admin.STATUSES,
        destinations=sorted(known.items(), key=lambda item: item[1]),
        names=known,
        types=TYPES,
        rows=shown,
        dead=dead,
        dead_filter=dead_form.query(),
        more=more,
        first_page=before is None,
        filters=form.query(),
        may_redrive=session.user.may("webhooks"),
        redriven=_redriven(request),
    )


# --- one event ------------------------------------------------------------------------------


async def _show_event(
    request: Request,
    session: Session,
    event_id: int,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    engine = runtime(request).engine
    t = i18n.translator(session.user.language)

    def load() -> tuple[admin.Event, dict[str, str]] | None:
        with engine.connect() as conn:
            try:
                event = admin.show_event(conn, event_id)
            except admin.DeliveryError:
                return None
            return event, _destinations(conn, t)[1]

    found = await run_in_threadpool(load)
    if found is None:
        return message_page(request, session, "not-found", "event.not_found", status=404)
    event, names = found
    return render(
        "event.html",
        status=status,
        t=t,
        session=session,
        page="events-one",
        title=t("event.title", number=event.id),
        here=f"/events/{event.id}",
        event=event,
        payload=json.dumps(event.payload, ensure_ascii=False, indent=2, sort_keys=True),
        names=names,
        may_redrive=session.user.may("webhooks"),
        redriven=status == 200 and request.query_params.get("redriven") == "1",
        error=error,
    )


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str, session: SignedIn) -> Response:
    number = _number(event_id)
    if number is None:
        return message_page(request, session, "not-found", "event.not_found", status=404)
    return await _show_event(request, session, number)


# --- re-drive ------------------------------------------------------------------------------


@router.post("/events/deliveries/{delivery_id}/redrive")
async def redrive_one(request: Request, delivery_id: str, session: MayWebhooks) -> Response:
    """A dead delivery back to pending (`admin.redrive`, audited `delivery.redrive`)."""
    await checked_form(request, session)
    number = _number(delivery_id)
    if number is None:
        return message_page(request, session, "not-found", "delivery.not_found", status=404)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> admin.DeliveryError | None:
        try:
            with engine.begin() as conn:
                admin.redrive(
                    conn, delivery_ids=[number], actor=audit_actor(session), address=client
                )
        except admin.DeliveryError as error:
            return error
        return None

    def event_of() -> admin.Delivery | None:
        with engine.connect() as conn:
            return admin.get_delivery(conn, number)

    error = await run_in_threadpool(attempt)
    delivery = await run_in_threadpool(event_of)
    if delivery is None:
        return message_page(request, session, "not-found", "delivery.not_found", status=404)
    if error is None:
        return redirect(f"/events/{delivery.event_id}?redriven=1")
    t = i18n.translator(session.user.language)
    text = t(
        "delivery.refused.not_dead",
        number=number,
        status=t.name(labels.EVENT_STATUS, error.current or delivery.status),
    )
    return await _show_event(request, session, delivery.event_id, status=409, error=text)


@router.post("/events/redrive-dead")
async def redrive_dead(request: Request, session: MayWebhooks) -> Response:
    """Every dead delivery of one destination back to pending."""
    fields = await checked_form(request, session)
    destination = fields.get("destination", "")
    engine, client = runtime(request).engine, address(request)
    t = i18n.translator(session.user.language)

    def attempt() -> int | None:
        with engine.begin() as conn:
            if destination not in _destinations(conn, t)[1]:
                return None
            return len(
                admin.redrive(
                    conn,
                    all_dead=True,
                    destination=destination,
                    actor=audit_actor(session),
                    address=client,
                )
            )

    count = await run_in_threadpool(attempt)
    if count is None:
        return _bad_request(request, session)
    query = urlencode({"destination": destination, "redriven": str(count)})
    return redirect(f"/events?{query}")


# --- webhook endpoints ---------------------------------------------------------------------


def _endpoint_name(text: str) -> str:
    if not endpoints.is_name(text):
        raise mistake(N_("webhooks.error.name"))
    return text


class EndpointForm(PageForm):
    """A new endpoint as typed; the core checks the address (`endpoints.add`). The event
    types are the checkboxes ticked ("*": every type; none ticked: every type too)."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "name": N_("webhooks.error.name"),
        "url": N_("webhooks.error.url"),
        "events": N_("webhooks.error.events"),
    }

    name: Annotated[str, AfterValidator(_endpoint_name)] = ""
    url: str = Field("", max_length=endpoints.MAX_URL)
    events: tuple[Annotated[str, one_of(("*", *TYPES))], ...] = ("*",)
    sandbox: Checkbox = False  # receives the sandbox agents' events instead of real ones

    @property
    def event_types(self) -> str:
        """The types as the core takes them."""
        return "*" if "*" in self.events else " ".join(self.events)


def _webhooks_page(
    request: Request,
    session: Session,
    *,
    known: list[endpoints.Endpoint],
    backlog: dict[str, dict[str, int]],
    status: int = 200,
    form: EndpointForm | None = None,
    errors: list[str] | None = None,
    done: str = "",
) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "webhooks.html",
        status=status,
        t=t,
        session=session,
        page="events-webhooks",
        title=t("webhooks.title"),
        here="/webhooks",
        endpoints=known,
        backlog=backlog,
        types=TYPES,
        may_change=session.user.may("webhooks"),
        form=form or EndpointForm(),
        errors=errors or [],
        done=done,
    )


def _load_webhooks(request: Request) -> tuple[list[endpoints.Endpoint], dict[str, dict[str, int]]]:
    with runtime(request).engine.connect() as conn:
        return endpoints.load_all(conn), admin.backlog(conn)


_DONE = {"enabled": N_("webhooks.done.enabled"), "disabled": N_("webhooks.done.disabled")}


def _done_text(request: Request, t: i18n.Translator) -> str:
    done, name = request.query_params.get("done", ""), request.query_params.get("name", "")
    if done in _DONE and endpoints.is_name(name):
        return t(_DONE[done], name=name)
    return ""


@router.get("/webhooks")
async def webhook_list(request: Request, session: SignedIn) -> Response:
    known, backlog = await run_in_threadpool(_load_webhooks, request)
    done = _done_text(request, i18n.translator(session.user.language))
    return _webhooks_page(request, session, known=known, backlog=backlog, done=done)


def _secret_page(
    request: Request, session: Session, name: str, secret: str, *, rotated: bool
) -> Response:
    """The one and only time a secret is shown: in the answer to the POST that made it."""
    t = i18n.translator(session.user.language)
    response = render(
        "webhook_secret.html",
        status=200 if rotated else 201,
        t=t,
        session=session,
        page="events-webhooks",
        title=t("webhooks.secret.rotated", name=name)
        if rotated
        else t("webhooks.secret.added", name=name),
        here="/webhooks",
        name=name,
        secret=secret,
        rotated=rotated,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# The core's refusals of an endpoint (`EndpointError.code`), as the page says them.
_ERRORS = {
    "name": N_("webhooks.error.name"),
    "url": N_("webhooks.error.url"),
    "url_scheme": N_("webhooks.error.url_scheme"),
    "url_host": N_("webhooks.error.url_host"),
    "url_credentials": N_("webhooks.error.url_credentials"),
    "url_forbidden": N_("webhooks.error.url_forbidden"),
    "events": N_("webhooks.error.events"),
}


def _endpoint_error(t: i18n.Translator, error: endpoints.EndpointError, name: str) -> str:
    code = error.code if error.code else "url"
    if code == "exists":
        return t("webhooks.error.exists", name=name)
    if code == "not_found":
        return t("webhook.not_found.text")
    return t(_ERRORS.get(code, N_("webhooks.error.url")))


@router.post("/webhooks")
async def add_webhook(request: Request, session: MayWebhooks) -> Response:
    fields = await checked_form(request, session)
    chosen = tuple(v for v in (await request.form()).getlist("events") if isinstance(v, str) and v)
    t = i18n.translator(session.user.language)
    try:
        form = EndpointForm.read({**fields, "events": chosen or ("*",)}, t)
    except BadFilter:
        return _bad_request(request, session)
    engine, client = runtime(request).engine, address(request)
    allowed = runtime(request).settings.webhook_allowed_networks

    def attempt() -> tuple[int, str] | endpoints.EndpointError:
        try:
            with engine.begin() as conn:
                return endpoints.add(
                    conn,
                    name=form.name,
                    url=form.url,
                    event_types=form.event_types,
                    actor=audit_actor(session),
                    address=client,
                    allowed_networks=allowed,
                    sandbox=form.sandbox,
                )
        except endpoints.EndpointError as error:
            return error

    # A name the core would refuse never reaches the database (U+0000 is not text to
    # PostgreSQL): the form said it.
    status, errors = 422, list(form.errors.values())
    if not errors:
        outcome = await run_in_threadpool(attempt)
        if isinstance(outcome, tuple):
            return _secret_page(request, session, form.name, outcome[1], rotated=False)
        status = 409 if outcome.code == "exists" else 422
        errors = [_endpoint_error(t, outcome, form.name)]
    known, backlog = await run_in_threadpool(_load_webhooks, request)
    return _webhooks_page(
        request,
        session,
        known=known,
        backlog=backlog,
        status=status,
        form=form,
        errors=errors,
    )


async def _change_endpoint(
    request: Request, session: Session, name: str, change: str
) -> Response | str:
    """Enable, disable or rotate `name`; the new secret for a rotation, else the response."""
    await checked_form(request, session)
    if not endpoints.is_name(name):
        return message_page(request, session, "not-found", "webhook.not_found", status=404)
    engine, client, actor = runtime(request).engine, address(request), audit_actor(session)

    def attempt() -> str | None:
        try:
            with engine.begin() as conn:
                if change == "rotate":
                    return endpoints.rotate_secret(conn, name, actor=actor, address=client)
                endpoints.set_enabled(conn, name, change == "enable", actor=actor, address=client)
                return ""
        except endpoints.EndpointError:
            return None  # the only refusal here: no such endpoint

    outcome = await run_in_threadpool(attempt)
    if outcome is None:
        return message_page(request, session, "not-found", "webhook.not_found", status=404)
    if outcome:
        return outcome
    done = "enabled" if change == "enable" else "disabled"
    return redirect("/webhooks?" + urlencode({"done": done, "name": name}))


@router.post("/webhooks/{name}/enable")
async def enable_webhook(request: Request, name: str, session: MayWebhooks) -> Response:
    answer = await _change_endpoint(request, session, name, "enable")
    assert isinstance(answer, Response)
    return answer


@router.post("/webhooks/{name}/disable")
async def disable_webhook(request: Request, name: str, session: MayWebhooks) -> Response:
    answer = await _change_endpoint(request, session, name, "disable")
    assert isinstance(answer, Response)
    return answer


@router.post("/webhooks/{name}/rotate")
async def rotate_webhook_secret(request: Request, name: str, session: MayWebhooks) -> Response:
    answer = await _change_endpoint(request, session, name, "rotate")
    if isinstance(answer, Response):
        return answer
    return _secret_page(request, session, name, answer, rotated=True)
