"""The back office's customers: search, registration, and one customer's card with the
statement, the charges, the payments and the notifications sent, the contacts form and
blocking.

A thin adapter: registration, contacts and blocking are `billing.customers.create_audited`,
`set_contacts_audited` and `set_status_audited` (the operator API calls the same functions,
so both write the same `customer.create`, `customer.contacts`, `customer.block` and
`customer.unblock` audit lines); the statement's period and lines are
`billing.customers.statement_period` and `statement`, as in the API. This module reads the
forms, says the core's refusals in the user's language and renders the pages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Annotated, ClassVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.backoffice import statement_sources
from tolom.backoffice.users import Session
from tolom.billing import charges, customers
from tolom.billing.customers import Customer
from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.events import admin as events_admin
from tolom.fields import TypedInn
from tolom.formatting import ZONE
from tolom.identifiers import is_inn
from tolom.ledger import statements
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
from tolom.web.forms import PageForm
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayChange = Annotated[Session, Depends(may("customers"))]

SEARCH_LIMIT = 50
MAX_QUERY = 100  # as the API's search
STATEMENT_LINES = 500  # a longer period is cut here, with a note to narrow it
CHARGES_SHOWN = 20
PAYMENTS_SHOWN = 20
NOTIFICATIONS_SHOWN = 20
_FIELD_MAX = 1000  # any posted text longer than this is not something the forms send
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# After a change the card says what was done: ?done=<one of these>.
DONE = {
    "created": N_("customer.done.created"),
    "contacts": N_("customer.done.contacts"),
    "contacts_same": N_("customer.done.contacts_same"),
    "blocked": N_("customer.done.blocked"),
    "unblocked": N_("customer.done.unblocked"),
    "already_blocked": N_("customer.done.already_blocked"),
    "already_active": N_("customer.done.already_active"),
}
# The core's refusals of contacts and names (field or `CustomerError.code`), said in the page.
_ERRORS = {
    "email": N_("customers.error.email"),
    "phone": N_("customers.error.phone"),
    "language": N_("customers.error.language"),
    "name_empty": N_("customers.error.name_empty"),
    "name_too_long": N_("customers.error.name_too_long"),
    "name_nul": N_("customers.error.name_nul"),
}


def _compact(text: str) -> str:
    """What a person typed for an INN, without the spaces they put between digits."""
    return "".join(text.split())


def _bad_request(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "customer.not_found", status=404)


def _hostile(fields: dict[str, str]) -> bool:
    """A posted form no page of ours sends: over-long texts or names (U+0000 is refused
    before, by `auth.form_fields`)."""
    return any(len(v) > _FIELD_MAX or len(k) > 40 for k, v in fields.items())


# --- the list -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    customer: Customer
    balance: int


@router.get("/customers")
async def customer_list(request: Request, session: SignedIn) -> Response:
    q = request.query_params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        return _bad_request(request, session)
    # An INN typed with spaces ("019 0420 2310427") is searched for without them.
    text = _compact(q) if _compact(q).isascii() and _compact(q).isdigit() else q
    engine = runtime(request).reads  # the replica, if any; the card reads the primary

    def load() -> list[Found]:
        with engine.connect() as conn:
            found = customers.search(conn, text, limit=SEARCH_LIMIT + 1)
            money = statements.balances(conn, [c.account_id for c in found])
        return [Found(c, money.get(c.account_id, 0)) for c in found]

    rows = await run_in_threadpool(load)
    t = i18n.translator(session.user.language)
    return render(
        "customers.html",
        t=t,
        session=session,
        page="customers",
        title=t("customers.title"),
        here=this_page(request),
        q=q,
        max_query=MAX_QUERY,
        rows=rows[:SEARCH_LIMIT],
        more=len(rows) > SEARCH_LIMIT,
        limit=SEARCH_LIMIT,
        may_create=session.user.may("customers"),
    )


# --- a new customer -------------------------------------------------------------------------


class NewForm(PageForm):
    """The registration form as typed, and what is wrong with it (field → message). The INN
    is read as the API reads it (`fields.TypedInn`, spaces between digits dropped); the
    core says what else is wrong (`customers.validate`, `normalise_contacts`)."""

    mistakes: ClassVar[Mapping[str, str]] = {"inn": N_("customers.error.inn")}

    inn: TypedInn = ""
    name: str = ""
    legal_form: str = "ОсОО"
    email: str = ""
    phone: str = ""
    language: str = customers.DEFAULT_LANGUAGE
    exists: str | None = Field(None, exclude=True)  # the INN that is already registered


def _new_page(request: Request, session: Session, form: NewForm, *, status: int = 200) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "customer_new.html",
        status=status,
        t=t,
        session=session,
        page="customers-new",
        title=t("customers.new.title"),
        here="/customers/new",
        form=form,
        legal_forms=customers.LEGAL_FORMS,
        languages_of_notifications=customers.LANGUAGES,
        max_name=customers.MAX_NAME_LENGTH,
        max_email=customers.MAX_EMAIL_LENGTH,
    )


@router.get("/customers/new")
async def new_customer(request: Request, session: MayChange) -> Response:
    return _new_page(request, session, NewForm())


def _contact_errors(error: customers.ContactsError, t: i18n.Translator) -> dict[str, str]:
    """The core's refused contacts, each said next to its field."""
    return {
        name: t(_ERRORS[name], max=customers.MAX_EMAIL_LENGTH)
        for name, _message in error.errors
        if name in ("email", "phone", "language")
    }


def _customer_error(error: customers.CustomerError, t: i18n.Translator) -> dict[str, str]:
    """The core's refusal of an INN, a name or a legal form, next to its field."""
    if error.code == "inn":
        return {"inn": t("customers.error.inn")}
    if error.code in ("name_empty", "name_too_long", "name_nul"):
        return {"name": t(_ERRORS[error.code], max=customers.MAX_NAME_LENGTH)}
    if error.code == "legal_form":
        return {"legal_form": t("customers.error.legal_form")}
    return {"form": t("customers.error.retry")}


@router.post("/customers/new")
async def create_customer(request: Request, session: MayChange) -> Response:
    fields = await checked_form(request, session)
    if _hostile(fields):
        return _bad_request(request, session)
    t = i18n.translator(session.user.language)
    form = NewForm.read({"legal_form": "", "language": ""} | fields, t)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> Customer:
        with engine.begin() as conn:
            return customers.create_audited(
                conn,
                inn=form.inn,
                name=form.name,
                legal_form=form.legal_form,
                email=form.email or None,
                phone=form.phone or None,
                language=form.language,
                actor=audit_actor(session),
                address=client,
            )

    try:
        # Every field is checked before the database is asked (all errors at once).
        try:
            customers.validate(form.inn, form.name, form.legal_form)
        except customers.CustomerError as error:
            form.errors.update(_customer_error(error, t))
        try:
            customers.normalise_contacts(email=form.email, phone=form.phone, language=form.language)
        except customers.ContactsError as error:
            form.errors.update(_contact_errors(error, t))
        if form.errors:
            return _new_page(request, session, form, status=422)
        customer = await run_in_threadpool(attempt)
    except customers.CustomerExists:
        form = form.model_copy(update={"exists": form.inn})
        form.errors["inn"] = t("customers.error.exists", inn=form.inn)
        return _new_page(request, session, form, status=409)
    except customers.ContactsError as error:
        form.errors.update(_contact_errors(error, t))
        return _new_page(request, session, form, status=422)
    except customers.CustomerError as error:
        form.errors.update(_customer_error(error, t))
        return _new_page(request, session, form, status=422)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        form.errors["form"] = t("customers.error.retry")
        return _new_page(request, session, form, status=503)
    return redirect(f"/customers/{customer.inn}?done=created")


# --- one customer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """The statement's days as typed (`from`, `to`) and as read, or what is wrong."""

    typed_from: str
    typed_to: str
    first: date | None = None
    last: date | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Card:
    """Everything the customer's page shows."""

    customer: Customer
    balance: int
    statement: statements.Statement | None
    awaiting: list[charges.Charge]
    awaiting_count: int
    awaiting_total: int
    recent_charges: list[charges.Charge]
    payments: list[records.PaymentRecord]
    notifications: list[events_admin.Notification]
    sources: dict[int, statements.LineSource] = field(default_factory=dict)  # by entry id


def _period(request: Request, t: i18n.Translator) -> Period:
    """The statement's period from ?from=&to= (default: this month in Asia/Bishkek)."""
    typed_from = request.query_params.get("from", "").strip()
    typed_to = request.query_params.get("to", "").strip()
    shown_from = typed_from if len(typed_from) <= 10 else ""
    shown_to = typed_to if len(typed_to) <= 10 else ""
    days: list[date | None] = []
    for typed in (typed_from, typed_to):
        if not typed:
            days.append(None)
            continue
        try:
            if not _DAY.fullmatch(typed):
                raise ValueError(typed)
            days.append(date.fromisoformat(typed))
        except ValueError:
            return Period(shown_from, shown_to, error=t("customer.error.bad_date"))
    today = options(request).clock().astimezone(ZONE).date()
    try:
        first, last = customers.statement_period(days[0], days[1], today=today)
    except customers.CustomerError as error:
        key = (
            N_("customer.error.period_too_long")
            if error.code == "period_too_long"
            else N_("customer.error.period_order")
        )
        message = t(key, days=customers.MAX_STATEMENT_DAYS)
        return Period(shown_from, shown_to, error=message)
    return Period(typed_from or first.isoformat(), typed_to or last.isoformat(), first, last)


def _load_card(request: Request, inn: str, period: Period | None) -> Card | None:
    if not is_inn(inn):
        return None
    engine = runtime(request).engine
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        if customer is None:
            return None
        found = None
        if period is not None and period.first is not None and period.last is not None:
            found = customers.statement(
                conn, customer, period.first, period.last, limit=STATEMENT_LINES
            )
        waiting, waiting_total = charges.awaiting_total(conn, inn)
        return Card(
            customer=customer,
            sources=statement_sources.of_entries(conn, [x.entry_id for x in found.lines])
            if found
            else {},
            balance=customers.balance(conn, customer),
            statement=found,
            awaiting=charges.search(conn, inn=inn, status="awaiting_payment", limit=CHARGES_SHOWN),
            awaiting_count=waiting,
            awaiting_total=waiting_total,
            recent_charges=charges.search(conn, inn=inn, limit=CHARGES_SHOWN),
            # The payments to this INN (its account): `ix_payments_account` answers at once.
            # The list's search box (`key`) also matches a txn_id equal to the INN, which
            # without an index on txn_id reads the whole table for a quiet customer.
            payments=records.search(
                conn, records.PaymentFilter(account=inn), before_id=None, limit=PAYMENTS_SHOWN
            ),
            notifications=events_admin.customer_notifications(
                conn, customer.id, limit=NOTIFICATIONS_SHOWN
            ),
        )


class ContactsForm(PageForm):
    """The contacts form as typed, and what is wrong with it (the core's rules say)."""

    email: str = ""
    phone: str = ""
    language: str = customers.DEFAULT_LANGUAGE


def _card_page(
    request: Request,
    session: Session,
    card: Card,
    period: Period,
    *,
    status: int = 200,
    contacts: ContactsForm | None = None,
    error: str | None = None,
) -> Response:
    t = i18n.translator(session.user.language)
    customer = card.customer
    if card.statement is not None:
        lines = tuple(
            replace(
                line,
                description=statement_sources.describe(t, line, card.sources.get(line.entry_id)),
            )
            for line in card.statement.lines
        )
        card = replace(card, statement=replace(card.statement, lines=lines))
    done = DONE.get(request.query_params.get("done", ""))
    here = f"/customers/{customer.inn}"
    if period.error is None and request.method == "GET" and "from" in request.query_params:
        here += "?" + urlencode({"from": period.typed_from, "to": period.typed_to})
    return render(
        "customer.html",
        status=status,
        t=t,
        session=session,
        page="customers-one",
        title=t("customer.title", inn=customer.inn),
        here=here,
        c=card,
        customer=customer,
        period=period,
        contacts=contacts
        or ContactsForm(
            email=customer.email or "", phone=customer.phone or "", language=customer.language
        ),
        languages_of_notifications=customers.LANGUAGES,
        may_change=session.user.may("customers"),
        may_invoice=session.user.may("invoices"),
        done=t(done) if done else None,
        error=error,
        statement_limit=STATEMENT_LINES,
        max_days=customers.MAX_STATEMENT_DAYS,
        max_email=customers.MAX_EMAIL_LENGTH,
        charges_shown=CHARGES_SHOWN,
    )


@router.get("/customers/{inn}")
async def customer_page(request: Request, inn: str, session: SignedIn) -> Response:
    t = i18n.translator(session.user.language)
    period = _period(request, t)
    card = await run_in_threadpool(_load_card, request, inn, period)
    if card is None:
        return _not_found(request, session)
    return _card_page(request, session, card, period, status=400 if period.error else 200)


async def _after_refusal(
    request: Request,
    session: Session,
    inn: str,
    *,
    status: int,
    contacts: ContactsForm | None = None,
    error: str | None = None,
) -> Response:
    """The card again, with what was refused next to its form."""
    t = i18n.translator(session.user.language)
    period = _period(request, t)
    card = await run_in_threadpool(_load_card, request, inn, period)
    if card is None:
        return _not_found(request, session)
    return _card_page(request, session, card, period, status=status, contacts=contacts, error=error)


@router.post("/customers/{inn}/contacts")
async def change_contacts(request: Request, inn: str, session: MayChange) -> Response:
    fields = await checked_form(request, session)
    if _hostile(fields):
        return _bad_request(request, session)
    if not is_inn(inn):
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    form = ContactsForm.read({"language": ""} | fields)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> bool:
        """Whether anything changed."""
        with engine.begin() as conn:
            before, after = customers.set_contacts_audited(
                conn,
                inn,
                email=form.email,
                phone=form.phone,
                language=form.language,
                actor=audit_actor(session),
                address=client,
            )
        return before != after

    try:
        changed = await run_in_threadpool(attempt)
    except customers.CustomerNotFound:
        return _not_found(request, session)
    except customers.ContactsError as error:
        form.errors.update(_contact_errors(error, t))
        return await _after_refusal(request, session, inn, status=422, contacts=form)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        form.errors["form"] = t("customers.error.retry")
        return await _after_refusal(request, session, inn, status=503, contacts=form)
    return redirect(f"/customers/{inn}?done={'contacts' if changed else 'contacts_same'}")


async def _set_status(request: Request, inn: str, session: Session, status: str) -> Response:
    await checked_form(request, session)
    if not is_inn(inn):
        return _not_found(request, session)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> bool:
        """Whether the status changed."""
        with engine.begin() as conn:
            before, after = customers.set_status_audited(
                conn, inn, status, actor=audit_actor(session), address=client
            )
        return before.status != after.status

    try:
        changed = await run_in_threadpool(attempt)
    except customers.CustomerNotFound:
        return _not_found(request, session)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        t = i18n.translator(session.user.language)
        return await _after_refusal(
            request, session, inn, status=503, error=t("customers.error.retry")
        )
    blocked = status == "blocked"
    if changed:
        done = "blocked" if blocked else "unblocked"
    else:
        done = "already_blocked" if blocked else "already_active"
    return redirect(f"/customers/{inn}?done={done}")


@router.post("/customers/{inn}/block")
async def block(request: Request, inn: str, session: MayChange) -> Response:
    return await _set_status(request, inn, session, "blocked")


@router.post("/customers/{inn}/unblock")
async def unblock(request: Request, inn: str, session: MayChange) -> Response:
    return await _set_status(request, inn, session, "active")
