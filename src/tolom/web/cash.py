"""The back office's cash desk: an operator records cash taken at the company's desk or a bank
transfer, and the printable receipt of any payment.

A thin adapter: the rules (bank details, received_at, recording through the channel agent
exactly once per reference, the `payment.manual` audit line in the payment's transaction)
are `tolom.payments.manual`, shared with the operator API; the receipt's content is
`documents.receipts.document`, shared with the receipt PDF. This module reads the form,
says what is wrong in the user's language and renders the pages.

Idempotency: the form carries a random reference made when it is shown (`web-` and 20 hex
digits) and it is the payment's reference in the channel, so a double submit or a browser's
retry finds the first payment and lands on its receipt instead of paying twice.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, ClassVar, Literal

import segno
from fastapi import APIRouter, Depends
from markupsafe import Markup
from pydantic import AfterValidator, BeforeValidator, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tolom.agents.service import Agent
from tolom.backoffice.users import Session
from tolom.billing import invoices
from tolom.documents import receipts
from tolom.documents.receipt_pdf import requisites_line
from tolom.fields import Channel, PaymentCode, ServiceCode, TypedAmount
from tolom.formatting import ZONE, som
from tolom.money import MalformedAmount, parse_som
from tolom.payments import manual, service
from tolom.payments.model import CheckResult, Outcome, PayResult, Service
from tolom.payments.requestlog import Answer
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
)
from tolom.web.forms import BadFilter, PageForm, mistake
from tolom.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SignedIn = Annotated[Session, Depends(signed_in)]
MayCash = Annotated[Session, Depends(may("cash"))]

PROTOCOL = "web"  # how the page's requests appear in gateway_requests
_REFERENCE = r"^web-[0-9a-f]{20}$"
STEPS = ("check", "pay")
# The longest text each free field takes (the core's limits where it has them).
LIMITS = {
    "account": manual.MAX_ACCOUNT,
    "amount": 32,
    "payer": manual.MAX_PAYER,
    "note": manual.MAX_NOTE,
    "bank_reference": manual.MAX_BANK_REFERENCE,
    "received_at": 32,
}
# The page's answer to each refusal of the core (also the status logged for it).
_STATUS = {
    Outcome.OK: 303,
    Outcome.RETRY: 503,
    Outcome.BAD_ACCOUNT: 422,
    Outcome.NOT_FOUND: 404,
    Outcome.INACTIVE: 409,
    Outcome.FORBIDDEN: 403,
    Outcome.ALREADY_PAID: 409,
    Outcome.TOO_SMALL: 422,
    Outcome.TOO_LARGE: 422,
    Outcome.CONFLICT: 409,
    Outcome.MALFORMED: 422,
    Outcome.PENDING: 503,  # never for a manual payment: the sandbox's alone
}
_DATETIME_LOCAL = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


def new_reference() -> str:
    """A form's idempotency reference: random, made when the form is shown."""
    return f"web-{secrets.token_hex(10)}"


def _not_negative(value: object) -> object:
    """A minus before an amount is said as "must be above zero", not as a wrong format."""
    if isinstance(value, str) and value.strip().startswith("-"):
        try:
            parse_som(value.strip().removeprefix("-"))
        except MalformedAmount:
            return value
        raise mistake(N_("cash.error.amount_positive"))
    return value


def _positive(text: str) -> str:
    """A typed amount must be above zero (its grammar is `fields.TypedAmount`'s)."""
    if text and parse_som(text) <= 0:
        raise mistake(N_("cash.error.amount_positive"))
    return text


class CashForm(PageForm):
    """The form as typed (what is shown again), and what is wrong with it. The choices,
    lengths and amount grammar are the operator API's (`tolom.fields`, `payments.manual`);
    a choice not offered or a broken reference is tampering (400)."""

    mistakes: ClassVar[Mapping[str, str]] = {
        "account": N_("cash.error.too_long"),
        "amount": N_("cash.error.amount_format"),
        "payer": N_("cash.error.too_long"),
        "note": N_("cash.error.too_long"),
        "bank_reference": N_("cash.error.too_long"),
        "received_at": N_("cash.error.too_long"),
    }
    too_long = N_("cash.error.too_long")

    reference: str = Field(pattern=_REFERENCE)
    channel: Channel = "cash_desk"
    service: ServiceCode = "sochi"
    account: str = Field("", max_length=LIMITS["account"])
    amount: Annotated[TypedAmount, BeforeValidator(_not_negative), AfterValidator(_positive)] = (
        Field("", max_length=LIMITS["amount"])
    )
    payer: str = Field("", max_length=LIMITS["payer"])
    note: str = Field("", max_length=LIMITS["note"])
    payment_code: PaymentCode | Literal[""] = ""
    bank_reference: str = Field("", max_length=LIMITS["bank_reference"])
    received_at: str = Field("", max_length=LIMITS["received_at"])

    def params(self) -> list[tuple[str, str]]:
        """What is logged with the request (empty fields left out)."""
        fields = [
            ("reference", self.reference),
            ("channel", self.channel),
            ("service", self.service),
            ("account", self.account),
            ("amount", self.amount),
            ("payment_code", self.payment_code),
            ("bank_reference", self.bank_reference),
            ("payer", self.payer),
            ("note", self.note),
            ("received_at", self.received_at),
        ]
        return [(k, v) for k, v in fields if v]


def read_form(fields: dict[str, str], t: i18n.Translator) -> CashForm:
    """The posted form (typed mistakes in `errors`); BadFilter for a value no form offers."""
    return CashForm.read(fields, t)


@dataclass(frozen=True, slots=True)
class Checked:
    """What the form asks for, as far as it reads (meaningful once `form.errors` is empty):
    the amount in tyiyn (None when the check step is asked without one) and when the money
    came in."""

    amount: int | None
    received_at: datetime
    received_at_raw: str


def check_form(form: CashForm, t: i18n.Translator, now: datetime, *, paying: bool) -> Checked:
    """Fill `form.errors` with what is wrong with the form itself (before the core sees it).
    The check step needs only the account: the amount and bank details wait for paying."""
    errors = form.errors
    if not form.account and "account" not in errors:
        errors["account"] = t("cash.error.account_required")
    amount = None
    if "amount" not in errors:
        if form.amount:
            amount = parse_som(form.amount)
        elif paying:
            errors["amount"] = t("cash.error.amount_required")
    bank = form.channel == "bank"
    details = manual.details_errors(
        form.channel, form.payment_code or None, form.bank_reference or None
    )
    for name, _message in details if paying else []:
        errors.setdefault(name, t(_REQUIRED[name] if bank else "cash.error.bank_only"))
    received_at = now
    if form.received_at and "received_at" not in errors:
        moment = _local_moment(form.received_at)
        if moment is None:
            errors["received_at"] = t("cash.error.received_at_format")
        else:
            try:
                received_at = manual.check_received_at(moment, now)
            except manual.InvalidField:
                errors["received_at"] = _implausible_received_at(t)
    raw = received_at.isoformat() if not form.received_at else form.received_at
    return Checked(amount, received_at, raw)


def _implausible_received_at(t: i18n.Translator) -> str:
    """The page's words for a moment `service.txn_date_problem` refuses (the rule is the
    core's; only the wording is the page's)."""
    return t("cash.error.received_at", low=service.TXN_YEARS[0])


def _local_moment(text: str) -> datetime | None:
    """A `datetime-local` value ("2026-11-21T10:15") as a moment in Asia/Bishkek."""
    for pattern in _DATETIME_LOCAL:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=ZONE)
        except ValueError:
            continue
    return None


def _logged(outcome: Outcome, message: str, payment_id: int | None = None) -> Answer:
    body = {"outcome": outcome.value, "message": message, "payment_id": payment_id}
    return Answer(
        _STATUS[outcome],
        None,
        json.dumps(body, ensure_ascii=False),
        media_type="application/json",
    )


def _log_pay(result: PayResult) -> Answer:
    return _logged(result.outcome, result.message, result.payment_id)


def _log_check(result: CheckResult) -> Answer:
    answer = _logged(result.outcome, result.message)
    return replace(answer, http_status=200) if result.outcome is Outcome.OK else answer


# --- refusals in the user's words ---------------------------------------------------------


def _invoice_total(request: Request, number: str) -> int | None:
    with runtime(request).engine.connect() as conn:
        found = invoices.get(conn, number)
    return None if found is None else found.total


# A bank payment's missing detail; a refused account, by outcome and service.
_REQUIRED = {
    "payment_code": N_("cash.error.payment_code_required"),
    "bank_reference": N_("cash.error.bank_reference_required"),
}
_REFUSED_ACCOUNT = {
    (Outcome.BAD_ACCOUNT, "sochi"): N_("cash.refused.bad_account.sochi"),
    (Outcome.BAD_ACCOUNT, "eds"): N_("cash.refused.bad_account.eds"),
    (Outcome.NOT_FOUND, "sochi"): N_("cash.refused.not_found.sochi"),
    (Outcome.NOT_FOUND, "eds"): N_("cash.refused.not_found.eds"),
    (Outcome.INACTIVE, "sochi"): N_("cash.refused.inactive.sochi"),
    (Outcome.INACTIVE, "eds"): N_("cash.refused.inactive.eds"),
}


def refusal_text(
    request: Request,
    t: i18n.Translator,
    form: CashForm,
    agent: Agent,
    outcome: Outcome,
    *,
    conflict_with: int | None = None,
) -> str:
    """What the page says about a refusal by the core (runs in a worker thread: it may read
    the invoice's total)."""
    sochi = form.service == Service.SOCHI.value
    kind = "sochi" if sochi else "eds"
    if (outcome, kind) in _REFUSED_ACCOUNT:
        return t(_REFUSED_ACCOUNT[outcome, kind], account=form.account)
    if outcome is Outcome.ALREADY_PAID:
        return t("cash.refused.already_paid", account=form.account)
    if outcome in (Outcome.TOO_SMALL, Outcome.TOO_LARGE):
        limits = agent.services.get(form.service)
        if sochi and limits is not None:
            return t(
                "cash.refused.limits",
                min=t.money(limits.min_amount),
                max=t.money(limits.max_amount),
            )
        total = _invoice_total(request, form.account)
        if total is not None:
            return t("cash.refused.total", total=t.money(total))
        return t("cash.refused.retry")
    if outcome is Outcome.FORBIDDEN:
        return t(
            "cash.refused.forbidden",
            service=t.name(labels.SERVICE, form.service),
            channel=t.name(labels.CHANNEL, form.channel),
        )
    if outcome is Outcome.CONFLICT:
        return t("cash.refused.conflict", number=conflict_with or "—")
    if outcome is Outcome.MALFORMED:
        return _implausible_received_at(t)
    return t("cash.refused.retry")


# --- the form -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """The check step's answer, as the page shows it."""

    ok: bool
    text: str


def _form_page(
    session: Session,
    form: CashForm,
    *,
    status: int = 200,
    refusal: str | None = None,
    verdict: Verdict | None = None,
    conflict_with: int | None = None,
) -> Response:
    t = i18n.translator(session.user.language)
    return render(
        "cash.html",
        status=status,
        t=t,
        session=session,
        page="cash",
        title=t("cash.title"),
        here="/cash",
        form=form,
        channels=manual.CHANNELS,
        services=manual.SERVICES,
        payment_codes=manual.PAYMENT_CODES,
        limits=LIMITS,
        refusal=refusal,
        verdict=verdict,
        conflict_with=conflict_with,
    )


@router.get("/cash")
async def cash_page(request: Request, session: MayCash) -> Response:
    return _form_page(session, CashForm(reference=new_reference()))


def _channel(request: Request, channel: str) -> Agent | None:
    return runtime(request).agents.get(channel)


@router.post("/cash")
async def take_payment(request: Request, session: MayCash) -> Response:
    fields = await checked_form(request, session)
    step = fields.get("step", "")
    t = i18n.translator(session.user.language)
    try:
        if step not in STEPS:
            raise BadFilter(step)
        form = read_form(fields, t)
    except BadFilter:
        return message_page(request, session, "bad-request", "error.bad_request", status=400)
    checked = check_form(form, t, options(request).clock(), paying=step == "pay")
    if form.errors:
        return _form_page(session, form, status=422)
    agent = await run_in_threadpool(_channel, request, form.channel)
    if agent is None:  # `tolom db upgrade` creates both channels
        channel = t.name(labels.CHANNEL, form.channel)
        return message_page(
            request, session, "cash", "cash.no_channel", status=503, channel=channel
        )
    if step == "check":
        return await _check(request, session, form, agent, checked)
    return await _pay(request, session, form, agent, checked)


async def _check(
    request: Request, session: Session, form: CashForm, agent: Agent, checked: Checked
) -> Response:
    t = i18n.translator(session.user.language)
    engine, client = runtime(request).engine, address(request)

    def look() -> tuple[CheckResult, str | None]:
        result = manual.preview(
            engine,
            agent,
            Service(form.service),
            form.account,
            address=client,
            protocol=PROTOCOL,
            render=_log_check,
        )
        if result.outcome is Outcome.OK:
            return result, None
        return result, refusal_text(request, t, form, agent, result.outcome)

    result, refused = await run_in_threadpool(look)
    if refused is not None:
        return _form_page(session, form, status=_STATUS[result.outcome], refusal=refused)
    name = result.display_name or "—"
    if result.amount_due is not None:  # an invoice: its total is the amount
        total = result.amount_due
        if checked.amount is None:
            # "1 510,00", as the amount field reads it
            form = form.model_copy(update={"amount": som(total, currency="")})
        text = t("cash.check.eds", name=name, total=t.money(total))
        if checked.amount is not None and checked.amount != total:
            form.errors["amount"] = t("cash.refused.total", total=t.money(total))
    else:
        low, high = result.min_amount or 0, result.max_amount or 0
        text = t("cash.check.sochi", name=name, min=t.money(low), max=t.money(high))
        if checked.amount is not None and not low <= checked.amount <= high:
            form.errors["amount"] = t("cash.refused.limits", min=t.money(low), max=t.money(high))
    return _form_page(session, form, verdict=Verdict(ok=not form.errors, text=text))


async def _pay(
    request: Request, session: Session, form: CashForm, agent: Agent, checked: Checked
) -> Response:
    assert checked.amount is not None
    t = i18n.translator(session.user.language)
    engine, client = runtime(request).engine, address(request)
    payment = manual.ManualPayment(
        channel=form.channel,
        reference=form.reference,
        service=Service(form.service),
        account=form.account,
        amount=checked.amount,
        received_at=checked.received_at,
        received_at_raw=checked.received_at_raw,
        payment_code=form.payment_code or None,
        bank_reference=manual.text(form.bank_reference),
        payer=manual.text(form.payer),
        note=manual.text(form.note),
    )

    def attempt() -> tuple[PayResult, str | None, int | None]:
        result = manual.record(
            engine,
            agent,
            payment,
            actor=audit_actor(session),
            address=client,
            protocol=PROTOCOL,
            params=form.params(),
            render=_log_pay,
        )
        if result.outcome is Outcome.OK:
            return result, None, None
        earlier = None
        if result.outcome is Outcome.CONFLICT:
            with engine.connect() as conn:
                earlier = manual.payment_of(conn, agent, form.reference)
        text = refusal_text(request, t, form, agent, result.outcome, conflict_with=earlier)
        return result, text, earlier

    result, refused, earlier = await run_in_threadpool(attempt)
    if refused is None:
        assert result.payment_id is not None
        shown = "replayed" if result.replayed else "recorded"
        return redirect(f"/payments/{result.payment_id}/receipt?{shown}=1")
    if result.outcome is Outcome.CONFLICT:
        # the next submit is a new payment, knowingly
        form = form.model_copy(update={"reference": new_reference()})
    field_name = manual.REFUSAL_FIELD.get(result.outcome)
    if field_name in ("account", "amount"):
        form.errors[field_name] = refused
    return _form_page(
        session,
        form,
        status=_STATUS[result.outcome],
        refusal=refused,
        conflict_with=earlier,
    )


# --- the receipt ----------------------------------------------------------------------------


def qr_svg(data: str, label: str) -> Markup:
    """`data` as a QR code in inline SVG markup (the pages' CSP allows no data: images)."""
    symbol = segno.make(data, error="m", micro=False)
    out = io.BytesIO()
    symbol.save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        title=label,
        svgclass="qr",
        lineclass=None,
        omitsize=True,
        light="#fff",
        nl=False,
    )
    return Markup(out.getvalue().decode("utf-8"))  # noqa: S704 - segno's own markup, title escaped


def _receipt_id(value: str) -> int | None:
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return int(value)


@router.get("/payments/{payment_id}/receipt")
async def receipt_page(request: Request, payment_id: str, session: SignedIn) -> Response:
    number = _receipt_id(payment_id)
    engine, settings, client = runtime(request).engine, runtime(request).settings, address(request)

    def load() -> receipts.ReceiptDocument | None:
        if number is None:
            return None
        with engine.begin() as conn:
            return receipts.document(
                conn, number, settings, actor=audit_actor(session), address=client
            )

    found = await run_in_threadpool(load)
    if found is None:
        return message_page(request, session, "not-found", "payment.not_found", status=404)
    t = i18n.translator(session.user.language)
    shown = request.query_params
    return render(
        "receipt.html",
        t=t,
        session=session,
        page="payments-receipt",
        title=t("receipt.title", number=found.number),
        here=f"/payments/{found.number}/receipt",
        r=found,
        requisites=requisites_line(settings),
        qr=qr_svg(found.url, t("receipt.qr")),
        recorded=shown.get("recorded") == "1",
        replayed=shown.get("replayed") == "1",
        may_cash=session.user.may("cash"),
    )
