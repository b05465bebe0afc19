"""The "How to pay" page `/pay` (docs/customers.md): for each service (СОЧИ top-up by INN,
«Оплата ЭЦП» by invoice number) every channel's steps, and a box that tells whether an INN
or an invoice number can be paid and what exactly to type in each app.

The steps are the company's own texts (`documents.instructions`, the same the invoice PDF
prints), shown as they are, in Russian; the page's own words come from the catalogues.
Whether an account can be paid is the payments core's judgement (`payments.service.
payability`, the rules agents' checks use). Nothing on the page names the customer or shows
a balance: an INN is answered "payable" or why not; an invoice number also gets its amount
and due date, which the invoice in the customer's hands already shows.

A plain GET form: works without JavaScript, and the answer's address can be shared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.documents import instructions
from tolom.formatting import date_time, som
from tolom.payments.model import Service
from tolom.payments.service import Payability, Standing, payability
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.site import pages
from tolom.texts import N_, texts

router = APIRouter(include_in_schema=False)

# Longer than any account: refused unread (and not shown back in the field).
MAX_INPUT = 64
RETRY_AFTER_SECONDS = 5
# What a customer may type between the digits of a number read off paper: spaces, dashes.
_SEPARATORS = re.compile(r"[\s\-]+")
_LINK = re.compile(r"https?://[^\s«»\"'<>]+")

SERVICES: dict[str, Service] = {"sochi": Service.SOCHI, "eds": Service.EDS}
SERVICE_NAMES = {
    Service.SOCHI: N_("site.pay.service.sochi"),
    Service.EDS: N_("site.pay.service.eds"),
}
SERVICE_HINTS = {
    Service.SOCHI: N_("site.pay.service.sochi_hint"),
    Service.EDS: N_("site.pay.service.eds_hint"),
}
# Each verdict's words; (standing, None) for both services alike.
VERDICTS: dict[tuple[Standing, Service | None], str] = {
    (Standing.PAYABLE, Service.SOCHI): N_("site.pay.verdict.payable.sochi"),
    (Standing.PAYABLE, Service.EDS): N_("site.pay.verdict.payable.eds"),
    (Standing.BAD_FORMAT, Service.SOCHI): N_("site.pay.verdict.bad_format.sochi"),
    (Standing.BAD_FORMAT, Service.EDS): N_("site.pay.verdict.bad_format.eds"),
    (Standing.MISTYPED, None): N_("site.pay.verdict.mistyped"),
    (Standing.NOT_FOUND, Service.SOCHI): N_("site.pay.verdict.not_found.sochi"),
    (Standing.NOT_FOUND, Service.EDS): N_("site.pay.verdict.not_found.eds"),
    (Standing.BLOCKED, None): N_("site.pay.verdict.blocked"),
    (Standing.PAID, None): N_("site.pay.verdict.paid"),
    (Standing.EXPIRED, None): N_("site.pay.verdict.expired"),
    (Standing.CANCELLED, None): N_("site.pay.verdict.cancelled"),
}
UNKNOWN_SHAPE = N_("site.pay.verdict.bad_format.any")  # no service chosen, no length fits
# What stands in a text's placeholder before the customer has typed a number.
BLANKS = {
    "inn": N_("site.pay.blank.inn"),
    "invoice_number": N_("site.pay.blank.invoice_number"),
    "amount": N_("site.pay.blank.amount"),
    "valid_until": N_("site.pay.blank.valid_until"),
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the box says about the typed number."""

    number: str  # as judged (separators removed)
    ok: bool
    message: str
    amount: str | None = None  # a payable invoice's amount and due date, in the page's words
    pay_by: str | None = None


@router.get("/pay")
def pay_page(request: Request) -> HTMLResponse:
    """The instructions, and the verdict on `?number=` when one was typed."""
    params = request.query_params
    if pages.has_bad_characters(params.multi_items()):
        return _render(request, None, status=400, refused=True)
    service = SERVICES.get(params.get("service", ""))
    typed = params.get("number")
    if typed is None or not typed.strip():
        return _render(request, service)
    t = texts(pages.language_of(request))
    if len(typed) > MAX_INPUT:
        judged: str | None = None
        number = ""
    else:
        number = _SEPARATORS.sub("", typed)
        judged = number
    service = service or _guess(number)
    if judged is None or service is None:
        key = VERDICTS[(Standing.BAD_FORMAT, service)] if service else UNKNOWN_SHAPE
        return _render(
            request, service, status=422, typed=number, answer=Answer(number, False, t(key))
        )
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.engine.connect() as conn:
            verdict = payability(conn, service, judged)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        return _render(
            request,
            service,
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            typed=number,
            unavailable=True,
        )
    answer = _answer(verdict, judged, pages.language_of(request))
    bad_shape = verdict.standing in (Standing.BAD_FORMAT, Standing.MISTYPED)
    return _render(
        request,
        service,
        status=422 if bad_shape else 200,
        typed=number,
        answer=answer,
        values=_values(verdict, judged) if verdict.payable else None,
    )


def _guess(number: str) -> Service | None:
    """The service a number's length points to when none was chosen: 14 characters an INN,
    16 an invoice number (the core then judges the characters)."""
    return {14: Service.SOCHI, 16: Service.EDS}.get(len(number))


def _answer(verdict: Payability, number: str, language: str) -> Answer:
    t = texts(language)
    key = VERDICTS.get((verdict.standing, verdict.service)) or VERDICTS[(verdict.standing, None)]
    if verdict.amount_due is None or verdict.pay_by is None:
        return Answer(number, verdict.payable, t(key))
    return Answer(
        number,
        True,
        t(key),
        amount=som(verdict.amount_due, english=language == "en"),
        pay_by=date_time(verdict.pay_by),
    )


def _values(verdict: Payability, number: str) -> dict[str, str]:
    """A payable account's placeholders, filled as the invoice PDF fills them."""
    if verdict.service is Service.SOCHI:
        return {"inn": number}
    assert verdict.amount_due is not None and verdict.pay_by is not None
    return instructions.invoice_values(number, verdict.amount_due, verdict.pay_by)


def shown_instructions(
    runtime: Runtime, service: Service, values: dict[str, str] | None, language: str
) -> instructions.Instructions:
    """The company's instructions for `service`, filled with the customer's number, or with
    blanks in the page's language before one is typed."""
    t = texts(language)
    how = instructions.load(runtime.settings.payment_instructions_file)[service.value]
    blanks = {name: t(BLANKS[name]) for name in instructions.PLACEHOLDERS[service.value]}
    return how.filled(values or blanks)


def instruction_context(settings: Settings) -> dict[str, Any]:
    """What `templates/site/_instructions.html` needs beside the instructions: the link
    cutter, and the company's bank requisites for the bank transfer (None: not configured,
    the customer is told to ask the office)."""
    requisites = [
        (N_("site.pay.requisites.recipient"), settings.company_name),
        (N_("site.pay.requisites.inn"), settings.company_inn),
        (N_("site.pay.requisites.bank"), settings.company_bank_name),
        (N_("site.pay.requisites.bik"), settings.company_bank_bik),
        (N_("site.pay.requisites.account"), settings.company_bank_account),
    ]
    return {"pieces": pieces, "requisites": requisites if settings.company_bank_account else None}


def pieces(text: str) -> list[tuple[str, str | None]]:
    """A text cut into (text, link) pieces, so an address in the company's texts (the
    terminals map) is a link; everything else stays text, escaped."""
    found: list[tuple[str, str | None]] = []
    at = 0
    for match in _LINK.finditer(text):
        address = match.group(0).rstrip(".,;:)")
        found.append((text[at : match.start()], None))
        found.append((address, address))
        at = match.start() + len(address)
    found.append((text[at:], None))
    return [piece for piece in found if piece[0]]


def _render(
    request: Request,
    service: Service | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    typed: str = "",
    answer: Answer | None = None,
    values: dict[str, str] | None = None,
    refused: bool = False,
    unavailable: bool = False,
) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    language = pages.language_of(request)
    settings = runtime.settings
    context: dict[str, Any] = {
        "service": service.value if service else None,
        "services": [(s.value, SERVICE_NAMES[s], SERVICE_HINTS[s]) for s in SERVICES.values()],
        "typed": typed if len(typed) <= MAX_INPUT else "",
        "answer": answer,
        "refused": refused,
        "unavailable": unavailable,
        "how": shown_instructions(runtime, service, values, language) if service else None,
        "filled": values is not None,
        **instruction_context(settings),
    }
    return pages.render(
        request, "pay", status=status, headers=headers, language=language, **context
    )
