"""The back office's signature orders: the work queue, the signatures about to expire, one
order with its history, and the transitions (start, issue, cancel with a refund).

A thin adapter over `tolom.billing.orders`, like the API's `/api/v1/orders`: the same
transitions with the same settings (`signature_validity_months`,
`order_refund_percent_in_production`), audited by `orders.audit_transition` with the same
actions (`order.start`, `order.issue`, `order.cancel`) as `user:USERNAME` from the
client's address, in the transition's transaction.

Cancelling takes two steps: the form with the reason shows the refund the policy gives;
the next page asks to confirm that sum, and the confirmed sum goes to the core
(`expected_refund`), which refuses if the order moved on meanwhile and the policy now
gives another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from pydantic import BeforeValidator, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.backoffice.users import Session
from tolom.billing import customers, invoices, orders
from tolom.db import Connection
from tolom.fields import OrderStatus
from tolom.texts import N_
from tolom.web import i18n, labels
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
from tolom.web.forms import BadFilter, Checkbox, PageForm
from tolom.web.forms import cursor as cursor_of
from tolom.web.forms import number as number_of
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayOrder = Annotated[Session, Depends(may("orders"))]

PAGE_SIZE = 50
VIEWS = ("paid", "in_production", "issued", "cancelled", "all")
QUEUE = ("paid", "in_production")  # worked through in the order they were paid
MAX_WITHIN_DAYS = 366
REASON_MAX = 1000  # as the API's CancelIn
_MAX_INVOICE = 32
_DONE = {
    "start": N_("order.done.start"),
    "issue": N_("order.done.issue"),
    "cancel": N_("order.done.cancel"),
    "unchanged": N_("order.done.unchanged"),
}
# A refused transition names what was asked.
_ACTIONS = {
    "start": N_("order.action.start"),
    "issue": N_("order.action.issue"),
    "cancel": N_("order.action.cancel"),
}


def _tyiyn(value: str | None) -> int | None:
    """An amount in tyiyn as a form carries it (digits, zero allowed); None otherwise."""
    if not value or not (value.isascii() and value.isdigit()) or len(value) > 15:
        return None
    return int(value)


# --- the list ---------------------------------------------------------------------------


class ListForm(PageForm):
    """The list's GET form as typed (no status: the paid queue); every value a form could
    not send is tampering (400)."""

    status: Annotated[OrderStatus | Literal["all"], BeforeValidator(lambda v: v or "paid")] = "paid"
    inn: str = Field("", pattern=r"^[0-9]{0,14}$")  # the start of an INN
    invoice: str = Field("", max_length=_MAX_INVOICE, pattern=r"^[^\x00-\x1f]*$")

    @property
    def oldest_first(self) -> bool:
        return self.status in QUEUE

    def query(self, **extra: str) -> str:
        fields = {"status": self.status, "inn": self.inn, "invoice": self.invoice, **extra}
        return urlencode({k: v for k, v in fields.items() if v})


def list_form(request: Request) -> ListForm:
    return ListForm.read(request.query_params)


def _bad_request(request: Request, session: Session) -> Response:
    return message_page(request, session, "bad-request", "error.bad_request", status=400)


@router.get("/orders")
async def order_list(request: Request, session: SignedIn) -> Response:
    try:
        form = list_form(request)
        # The queue pages forwards (after=), the other views backwards (before=).
        cursor = cursor_of(request.query_params.get("after" if form.oldest_first else "before"))
        if request.query_params.get("before" if form.oldest_first else "after"):
            raise BadFilter("cursor")
    except BadFilter:
        return _bad_request(request, session)
    engine = runtime(request).engine

    def load() -> list[orders.Order]:
        with engine.connect() as conn:
            return orders.list_orders(
                conn,
                status=None if form.status == "all" else form.status,
                inn=form.inn or None,
                invoice_number=form.invoice or None,
                oldest_first=form.oldest_first,
                after_id=cursor if form.oldest_first else None,
                before_id=None if form.oldest_first else cursor,
                limit=PAGE_SIZE + 1,
            )

    found = await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = None
    if len(found) > PAGE_SIZE:
        more = form.query(**{"after" if form.oldest_first else "before": str(shown[-1].id)})
    t = i18n.translator(session.user.language)
    return render(
        "orders.html",
        t=t,
        session=session,
        page="orders",
        title=t("orders.title"),
        here=this_page(request),
        view=form.status,
        form=form,
        views=VIEWS,
        rows=[(order, None) for order in shown],
        more=more,
        first_page=cursor is None,
        filters=form.query(),
        within_days=0,
    )


@router.get("/orders/expiring")
async def expiring_list(request: Request, session: SignedIn) -> Response:
    settings = runtime(request).settings
    days_text = request.query_params.get("days", "").strip()
    try:
        after = cursor_of(request.query_params.get("after"))
        if days_text == "":
            days = settings.signature_expiry_warning_days
        elif days_text.isascii() and days_text.isdigit() and int(days_text) <= MAX_WITHIN_DAYS:
            days = int(days_text)
        else:
            raise BadFilter(days_text)
    except BadFilter:
        return _bad_request(request, session)
    engine = runtime(request).engine
    today = orders.local_date(options(request).clock())

    def load() -> list[orders.Expiring]:
        with engine.connect() as conn:
            return orders.expiring(conn, today, days, after_id=after, limit=PAGE_SIZE + 1)

    found = await run_in_threadpool(load)
    shown = found[:PAGE_SIZE]
    more = (
        urlencode({"days": str(days), "after": str(shown[-1].order.id)})
        if len(found) > PAGE_SIZE
        else None
    )
    t = i18n.translator(session.user.language)
    return render(
        "orders.html",
        t=t,
        session=session,
        page="orders-expiring",
        title=t("orders.expiring.title"),
        here=this_page(request),
        view="expiring",
        form=ListForm(status="all"),  # the expiring view shows no status
        views=VIEWS,
        rows=[(e.order, e.days_left) for e in shown],
        more=more,
        first_page=after is None,
        filters=urlencode({"days": str(days)}),
        within_days=days,
    )


# --- one order ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the order's page shows."""

    order: orders.Order
    customer: customers.Customer | None  # the one with the invoice's INN, if any
    payer_name: str | None  # as on the invoice
    refund_due: int  # what cancelling now refunds by the policy (0 once issued/cancelled)
    percent: int  # the refund percent once production has started
    valid_until_if_issued: date | None  # a signature issued today would be valid until
    validity_months: int
    # Why Start is refused while paid: the invoice's online application is not verified.
    hold: orders.IdentityNotVerified | None = None


class CancelForm(PageForm):
    """The cancel form as typed; `confirming` (the page's, never posted) once the reason
    passed and the refund is to be confirmed."""

    mistakes: ClassVar[Mapping[str, str]] = {"reason": N_("order.reason_required")}
    too_long = N_("order.reason_too_long")

    reason: str = Field("", min_length=1, max_length=REASON_MAX)
    no_refund: Checkbox = False
    confirming: bool = Field(False, exclude=True)


def _load_detail(request: Request, order_id: int) -> Detail | None:
    engine, settings = runtime(request).engine, runtime(request).settings
    today = orders.local_date(options(request).clock())
    with engine.connect() as conn:
        order = orders.get(conn, order_id)
        if order is None:
            return None
        customer = customers.get(conn, order.inn) if order.inn else None
        payer = invoices.payer_name(conn, order.invoice_number)
        hold = orders.identity_hold(conn, order) if order.status == "paid" else None
    percent = settings.order_refund_percent_in_production
    months = settings.signature_validity_months
    return Detail(
        order=order,
        customer=customer,
        payer_name=payer,
        refund_due=orders.refund_due(order, percent),
        percent=percent,
        valid_until_if_issued=orders.add_months(today, months)
        if order.kind == "signature"
        else None,
        validity_months=months,
        hold=hold,
    )


def _detail_page(
    request: Request,
    session: Session,
    detail: Detail,
    *,
    status: int = 200,
    error: str | None = None,
    cancel: CancelForm | None = None,
) -> Response:
    t = i18n.translator(session.user.language)
    number = detail.order.id
    done = request.query_params.get("done", "")
    today = orders.local_date(options(request).clock())
    valid_until = detail.order.valid_until
    return render(
        "order.html",
        status=status,
        t=t,
        session=session,
        page="orders-one",
        title=t("order.title", number=number),
        here=f"/orders/{number}",
        d=detail,
        may_change=session.user.may("orders"),
        done=t(_DONE[done]) if done in _DONE and status == 200 else "",
        error=error,
        cancel=cancel or CancelForm(),
        days_left=(valid_until - today).days if valid_until else None,
    )


def _not_found(request: Request, session: Session) -> Response:
    return message_page(request, session, "not-found", "order.not_found", status=404)


@router.get("/orders/{order_id}")
async def order_page(request: Request, order_id: str, session: SignedIn) -> Response:
    number = number_of(order_id)
    detail = None if number is None else await run_in_threadpool(_load_detail, request, number)
    if detail is None:
        return _not_found(request, session)
    return _detail_page(request, session, detail)


# --- transitions ----------------------------------------------------------------------------


def _refusal(t: i18n.Translator, error: orders.OrderError, action: str, detail: Detail) -> str:
    """The refusal as the page says it, from the order as it now stands."""
    if isinstance(error, orders.RefundChanged):
        return t("order.refused.refund_changed", amount=t.money(error.due))
    if isinstance(error, orders.RefundImpossible):
        return t("order.refused.no_customer", amount=t.money(detail.refund_due))
    if isinstance(error, orders.IdentityNotVerified):
        return error.said(t.language)
    if action == "issue" and detail.order.status == "paid":
        return t("order.refused.not_started")
    return t(
        "order.refused",
        action=t(_ACTIONS[action]),
        status=t.name(labels.ORDER_STATUS, detail.order.status),
    )


async def _transition(
    request: Request,
    session: Session,
    order_id: str,
    action: str,
    change: Callable[[Connection, int], orders.Transition],
    cancel: CancelForm | None = None,
) -> Response:
    """Run one transition and its audit line in one transaction; a refusal re-shows the
    order (409) with the reason, and nothing is written."""
    number = number_of(order_id)
    if number is None:
        return _not_found(request, session)
    engine, client = runtime(request).engine, address(request)

    def attempt() -> orders.Transition | orders.OrderError:
        try:
            with engine.begin() as conn:
                done = change(conn, number)
                orders.audit_transition(
                    conn, done, action=f"order.{action}", actor=audit_actor(session), address=client
                )
                return done
        except orders.OrderError as error:  # not found, refused, refund changed/impossible
            return error

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, orders.Transition):
        return redirect(f"/orders/{number}?done={action if outcome.changed else 'unchanged'}")
    detail = await run_in_threadpool(_load_detail, request, number)
    if detail is None or isinstance(outcome, orders.OrderNotFound):
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    shown = None
    if cancel is not None and detail.order.status in QUEUE:
        # The sum changed: ask to confirm the new one; any other refusal: the form again.
        again = isinstance(outcome, orders.RefundChanged)
        shown = cancel.model_copy(update={"confirming": again})
    error = _refusal(t, outcome, action, detail)
    return _detail_page(request, session, detail, status=409, error=error, cancel=shown)


@router.post("/orders/{order_id}/start")
async def start(request: Request, order_id: str, session: MayOrder) -> Response:
    await checked_form(request, session)
    return await _transition(request, session, order_id, "start", orders.start)


@router.post("/orders/{order_id}/issue")
async def issue(request: Request, order_id: str, session: MayOrder) -> Response:
    await checked_form(request, session)
    months = runtime(request).settings.signature_validity_months

    def change(conn: Connection, number: int) -> orders.Transition:
        return orders.issue(conn, number, validity_months=months)

    return await _transition(request, session, order_id, "issue", change)


@router.post("/orders/{order_id}/cancel")
async def cancel(request: Request, order_id: str, session: MayOrder) -> Response:
    """Without `confirm`: check the reason and ask to confirm the policy's refund. With
    `confirm` and the confirmed `refund` (tyiyn): cancel, if that is still the refund."""
    fields = await checked_form(request, session)
    number = number_of(order_id)
    if number is None:
        return _not_found(request, session)
    t = i18n.translator(session.user.language)
    try:
        form = CancelForm.read({k: fields.get(k, "") for k in ("reason", "no_refund")}, t)
    except BadFilter:
        return _bad_request(request, session)
    error = form.errors.get("reason")
    if len(form.reason) > REASON_MAX:  # not shown again: the field takes no more
        form = form.model_copy(update={"reason": ""})
    reason = form.reason
    confirmed = fields.get("confirm") == "1"
    expected = _tyiyn(fields.get("refund")) if confirmed else None
    if confirmed and expected is None:
        return _bad_request(request, session)
    if error is None and confirmed:
        percent = runtime(request).settings.order_refund_percent_in_production

        def change(conn: Connection, order: int) -> orders.Transition:
            return orders.cancel(
                conn,
                order,
                reason,
                refund_percent_in_production=percent,
                no_refund=form.no_refund,
                expected_refund=expected,
            )

        return await _transition(request, session, order_id, "cancel", change, form)
    detail = await run_in_threadpool(_load_detail, request, number)
    if detail is None:
        return _not_found(request, session)
    if error is not None:
        return _detail_page(request, session, detail, status=422, error=error, cancel=form)
    if detail.order.status not in QUEUE:
        state = orders.OrderStateError(detail.order.status)
        return _detail_page(
            request, session, detail, status=409, error=_refusal(t, state, "cancel", detail)
        )
    if detail.refund_due > 0 and detail.customer is None and not form.no_refund:
        # What the core would refuse on confirming (RefundImpossible), said before it.
        nowhere = orders.RefundImpossible(detail.order.status)
        return _detail_page(
            request,
            session,
            detail,
            status=409,
            error=_refusal(t, nowhere, "cancel", detail),
            cancel=form,
        )
    confirming = form.model_copy(update={"confirming": True})
    return _detail_page(request, session, detail, cancel=confirming)
