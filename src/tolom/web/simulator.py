"""The back office's wallet simulator (`/simulator`): the seeds' «Оптима 24» and MegaPay
journeys on a phone-like screen, each step sent over HTTP to this server's OSMP gateway as
a sandbox agent, with every request and raw answer shown beside the phone.

A thin adapter over `tolom.simulator` (the journeys, shared with `tolom simulate`, and the
MegaPay favourites and autopays). Screens that send nothing are GET links; a step that
speaks OSMP is a POST with the session's CSRF token. Users whose role may `simulate`
(operators, administrators) use it. The server it speaks to is `TOLOM_PUBLIC_BASE_URL`
(tests may set `app.state.simulator_transport`, an httpx transport, to keep it in process).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.agents import queries
from tolom.backoffice.users import Session
from tolom.formatting import ZONE
from tolom.money import format_amount
from tolom.simulator import autopay, favourites, journeys
from tolom.simulator.journeys import Exchange, Journey, SimulatorError, Speaker
from tolom.texts import N_
from tolom.web import i18n
from tolom.web.auth import (
    PageRoute,
    audit_actor,
    bad_request,
    checked_form,
    may,
    redirect,
    runtime,
)
from tolom.web.forms import BadFilter, PageForm, number, one_of
from tolom.web.pages import render

if TYPE_CHECKING:  # httpx loads on first use: a server's start does not need it
    import httpx

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MaySimulate = Annotated[Session, Depends(may("simulate"))]

# The screens each wallet shows without sending anything (GET ?screen=).
SCREENS = {
    "optima": ("home", "payments", "dealers", "provider"),
    "megapay": ("home", "payments", "others", "service"),
}
_TRAIL_MAX = 70_000  # characters of the exchanges a step carries to the next


class Step(PageForm):
    """Where the journey stands, as the screens' links and forms carry it."""

    mistakes: ClassVar[Mapping[str, str]] = {}

    wallet: Annotated[str, one_of(journeys.WALLETS)] = "optima"
    agent: str = Field("", max_length=32)
    screen: str = Field("home", max_length=16)
    service: Annotated[str, one_of(journeys.SERVICES)] = "sochi"
    account: str = Field("", max_length=32)
    amount: str = Field("", max_length=32)
    q: str = Field("", max_length=64)
    action: str = Field("pay", max_length=16)
    autopay_days: str = Field("", max_length=3)
    trail: str = Field("", max_length=_TRAIL_MAX)


def _transport(request: Request) -> httpx.AsyncBaseTransport | None:
    found = getattr(request.app.state, "simulator_transport", None)
    import httpx

    return found if isinstance(found, httpx.AsyncBaseTransport) else None


def _today() -> Any:
    return datetime.now(ZONE).date()


def _trail(text: str) -> list[Exchange]:
    """The exchanges an earlier step carried (BadFilter if no page of ours wrote them)."""
    if not text:
        return []
    try:
        return [Exchange.from_dict(item) for item in json.loads(text)]
    except (ValueError, TypeError) as error:
        raise BadFilter("trail") from error


async def _page(
    request: Request,
    session: Session,
    step: Step,
    *,
    status: int = 200,
    exchanges: list[Exchange] | None = None,
    journey: Journey | None = None,
    problem: str = "",
    notice: str = "",
) -> Response:
    engine = runtime(request).engine

    def load() -> tuple[
        list[queries.SandboxAgent], list[favourites.Favourite], dict[int, autopay.LastRun]
    ]:
        with engine.connect() as conn:
            saved = favourites.listing(conn, "megapay")
            repeats = [f.id for f in saved if f.autopay_days is not None]
            return queries.sandbox_agents(conn), saved, autopay.last_runs(conn, repeats)

    agents, saved, last_runs = await run_in_threadpool(load)
    t = i18n.translator(session.user.language)
    exchanges = exchanges if exchanges is not None else []
    check = next((e.answer for e in exchanges if e.command == "check"), None)
    agent = step.agent or next((a.code for a in agents if a.speakable), "")
    return render(
        "simulator.html",
        status=status,
        t=t,
        session=session,
        page="simulator",
        title=t("simulator.title"),
        here=f"/simulator?{urlencode({'wallet': step.wallet, 'agent': agent})}",
        step=step,
        agent=agent,
        agents=agents,
        wallet=journeys.WALLETS[step.wallet],
        wallets=journeys.WALLETS,
        services=journeys.SERVICES,
        exchanges=exchanges,
        trail=json.dumps([e.as_dict() for e in exchanges], ensure_ascii=False),
        check=check,
        journey=journey,
        problem=problem,
        notice=notice,
        favourites=saved,
        last_runs=last_runs,
        autopay_days=favourites.AUTOPAY_DAYS,
        today=_today(),
        base_url=runtime(request).settings.own_gateways_url,
        amount_text=format_amount,
    )


def _read(fields: Mapping[str, object]) -> Step:
    return Step.read(fields)


async def _speaker(request: Request, agent: str) -> Speaker:
    engine, base = runtime(request).engine, runtime(request).settings.own_gateways_url

    def load() -> Speaker:
        with engine.connect() as conn:
            return journeys.speaker(conn, agent, base)

    return await run_in_threadpool(load)


def _said(session: Session, error: SimulatorError) -> str:
    return error.said(session.user.language)


# --- the screens ---------------------------------------------------------------------------


@router.get("/simulator")
async def simulator(request: Request, session: MaySimulate) -> Response:
    try:
        step = _read(dict(request.query_params))
    except BadFilter:
        return bad_request(request, session)
    if step.screen not in SCREENS[step.wallet]:
        return bad_request(request, session)
    return await _page(request, session, step)


# --- «Оптима 24»: the check, then the pay -------------------------------------------------------


@router.post("/simulator/check")
async def optima_check(request: Request, session: MaySimulate) -> Response:
    """The account typed on Dos Tek Group's screen: the wallet's `check`."""
    try:
        step = _read(await checked_form(request, session))
        who = await _speaker(request, step.agent)
    except BadFilter:
        return bad_request(request, session)
    except SimulatorError as error:
        return await _page(request, session, step, status=409, problem=_said(session, error))
    exchange = await journeys.check(who, step.service, step.account, transport=_transport(request))
    screen = "amount" if exchange.answer.ok else "refused"
    moved = step.model_copy(update={"screen": screen})
    if exchange.answer.ok and not step.amount and "amount" in exchange.answer.fields:
        moved = moved.model_copy(update={"amount": exchange.answer.fields["amount"]})
    return await _page(request, session, moved, exchanges=[exchange])


@router.post("/simulator/pay")
async def optima_pay(request: Request, session: MaySimulate) -> Response:
    """«Оплатить»: the wallet's `pay`, then the receipt."""
    try:
        step = _read(await checked_form(request, session))
        earlier = _trail(step.trail)
        who = await _speaker(request, step.agent)
        sum_ = journeys.amount(step.amount)
    except BadFilter:
        return bad_request(request, session)
    except SimulatorError as error:
        moved = step.model_copy(update={"screen": "amount"})
        return await _page(
            request,
            session,
            moved,
            status=409,
            exchanges=_trail(step.trail),
            problem=_said(session, error),
        )
    sent = await journeys.pay(who, step.service, step.account, sum_, transport=_transport(request))
    journey = journeys.finish(
        who, journeys.OPTIMA, step.service, step.account, sum_, earlier + sent
    )
    return await _finished(request, session, step, journey)


async def _finished(
    request: Request, session: Session, step: Step, journey: Journey, notice: str = ""
) -> Response:
    screen = "receipt" if journey.ok else "refused"
    moved = step.model_copy(update={"screen": screen, "account": journey.account})
    return await _page(
        request,
        session,
        moved,
        exchanges=list(journey.exchanges),
        journey=journey,
        notice=notice,
    )


# --- MegaPay: one screen, then the receipt; favourites and autopays ------------------------------


@router.post("/simulator/megapay")
async def megapay(request: Request, session: MaySimulate) -> Response:
    """The service screen's buttons: «ОПЛАТИТЬ» (check, then pay), «ДОБАВИТЬ В
    ИЗБРАННОЕ» and «АВТОПЛАТЕЖ» (saved templates)."""
    t = i18n.translator(session.user.language)
    try:
        step = _read(await checked_form(request, session))
        if step.action not in ("pay", "favourite", "autopay"):
            raise BadFilter("action")
        step = step.model_copy(update={"wallet": "megapay", "screen": "service"})
        sum_ = journeys.amount(step.amount)
        if step.action == "pay":
            who = await _speaker(request, step.agent)
    except BadFilter:
        return bad_request(request, session)
    except SimulatorError as error:
        return await _page(request, session, step, status=409, problem=_said(session, error))
    if step.action == "pay":
        journey = await journeys.play(
            who, journeys.MEGAPAY, step.service, step.account, sum_, transport=_transport(request)
        )
        return await _finished(request, session, step, journey)
    days = None
    if step.action == "autopay":
        if not step.autopay_days.isdigit():
            return bad_request(request, session)
        days = int(step.autopay_days)
    engine, actor = runtime(request).engine, audit_actor(session)

    def save() -> None:
        with engine.begin() as conn:
            favourites.add(
                conn,
                wallet_="megapay",
                agent=step.agent,
                service_=step.service,
                account=step.account,
                amount=sum_,
                autopay_days=days,
                today=_today(),
                actor=actor,
            )

    try:
        await run_in_threadpool(save)
    except SimulatorError as error:
        return await _page(request, session, step, status=409, problem=_said(session, error))
    key = N_("simulator.autopay.saved") if days else N_("simulator.favourite.saved")
    return await _page(request, session, step, notice=t(key))


def _favourite_id(value: str) -> int | None:
    return number(value)


@router.post("/simulator/favourites/{favourite_id}/run")
async def run_favourite(request: Request, favourite_id: str, session: MaySimulate) -> Response:
    """Pay a favourite again, or run an autopay's repeat now: a new txn_id each time."""
    await checked_form(request, session)
    found_id = _favourite_id(favourite_id)
    engine = runtime(request).engine

    def load() -> favourites.Favourite | None:
        with engine.connect() as conn:
            return None if found_id is None else favourites.one(conn, found_id)

    found = await run_in_threadpool(load)
    if found is None or found_id is None:
        return redirect("/simulator?wallet=megapay&screen=payments")
    step = Step(
        wallet="megapay",
        agent=found.agent,
        screen="service",
        service=found.service,
        account=found.account,
        amount=format_amount(found.amount),
    )
    try:
        who = await _speaker(request, found.agent)
    except SimulatorError as error:
        return await _page(request, session, step, status=409, problem=_said(session, error))
    journey = await journeys.play(
        who,
        journeys.MEGAPAY,
        found.service,
        found.account,
        found.amount,
        transport=_transport(request),
    )
    if journey.ok and journey.receipt is not None:
        txn_id, actor = journey.receipt.txn_id, audit_actor(session)

        def ran() -> None:
            with engine.begin() as conn:
                favourites.ran(conn, found_id, txn_id, today=_today(), actor=actor)

        await run_in_threadpool(ran)
    return await _finished(request, session, step, journey)


@router.post("/simulator/favourites/{favourite_id}/delete")
async def delete_favourite(request: Request, favourite_id: str, session: MaySimulate) -> Response:
    await checked_form(request, session)
    found_id = _favourite_id(favourite_id)
    engine, actor = runtime(request).engine, audit_actor(session)

    def remove() -> None:
        if found_id is not None:
            with engine.begin() as conn:
                favourites.remove(conn, found_id, actor=actor)

    await run_in_threadpool(remove)
    return redirect("/simulator?wallet=megapay&screen=payments")
