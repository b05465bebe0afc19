"""The order status page `/status`: whoever holds an invoice's number follows it from
"awaiting payment" to "issued", each step with its date (docs/customers.md).

A GET form, so it works without JavaScript and the answer can be bookmarked. The page
shows only what the invoice itself shows (number, items, amount, due date) and the stages
with their dates: no payer's name, INN, contacts or balance (`billing.orders.Progress`).
The stages and their meaning are `billing.orders.progress`'s; this module only reads the
typed number and words the answer. A mistyped number (letters, length, check digit) is
answered next to the field without asking the database; an unknown one is "not found",
nothing more. Invoice numbers are 15 random digits and a check digit, so they cannot be
enumerated through this page.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from tolom import identifiers
from tolom.billing import orders
from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.documents import receipts
from tolom.httpkit.clients import request_address
from tolom.runtime import Runtime
from tolom.site import pages
from tolom.texts import N_, texts

router = APIRouter(include_in_schema=False)

PATH = "/status"
FIELD = "invoice"
ACTOR = "site:status"  # who made a receipt's token when this page first showed its link
RETRY_AFTER_SECONDS = 5
MAX_ECHO = 40  # characters of what was typed that the form shows again
# What people type between groups of digits, copying the number from a PDF or an SMS.
_SEPARATORS = re.compile(r"[\s\-\u00a0\u202f]+")
_DIGITS = re.compile(r"[0-9]*")
_NUMBER_LENGTH = 16
DIGITS = N_("site.status.error.digits")
NOT_FOUND = N_("site.status.error.not_found")  # and nothing more, whatever the number
LENGTH = "length"  # the problem `number_problem` names by the count of digits typed

STAGES = {
    "awaiting_payment": N_("site.status.stage.awaiting_payment"),
    "paid": N_("site.status.stage.paid"),
    "in_production": N_("site.status.stage.in_production"),
    "issued": N_("site.status.stage.issued"),
    "expired": N_("site.status.stage.expired"),
    "cancelled": N_("site.status.stage.cancelled"),
    "order_cancelled": N_("site.status.stage.order_cancelled"),
}
# What the customer should know or do next, by stage.
NEXT = {
    "awaiting_payment": N_("site.status.next.awaiting_payment"),
    "paid": N_("site.status.next.paid"),
    "in_production": N_("site.status.next.in_production"),
    "issued": N_("site.status.next.issued"),
    "expired": N_("site.status.next.expired"),
    "cancelled": N_("site.status.next.cancelled"),
    "order_cancelled": N_("site.status.next.order_cancelled"),
}
# One order's state (billing.orders.STATUSES), as the list of orders says it.
ORDER_STATES = {
    "paid": N_("site.status.stage.paid"),
    "in_production": N_("site.status.stage.in_production"),
    "issued": N_("site.status.stage.issued"),
    "cancelled": N_("site.status.order.cancelled"),
}


def number_problem(typed: str) -> tuple[str, int] | None:
    """Why `typed` cannot be an invoice number, as (text key or LENGTH, digits typed);
    None if it can. Spaces and hyphens between the digits are allowed."""
    number = _SEPARATORS.sub("", typed)
    if not number:
        return N_("site.status.error.empty"), 0
    if _DIGITS.fullmatch(number) is None:  # ASCII digits only: no letters, no "٤"
        return DIGITS, 0
    if len(number) != _NUMBER_LENGTH:
        return LENGTH, len(number)
    if not identifiers.is_invoice_number(number):
        return N_("site.status.error.luhn"), len(number)
    return None


@router.get(PATH)
def status_page(request: Request) -> HTMLResponse:
    """The form; with `?invoice=` also the invoice's stages, or why there are none."""
    language = pages.language_of(request)
    items = request.query_params.multi_items()
    if pages.has_bad_characters(items):
        return _page(request, language, 400, error=texts(language)(DIGITS))
    typed = request.query_params.get(FIELD)
    if typed is None:
        return _page(request, language, 200)
    echo = typed if len(typed) <= MAX_ECHO else ""
    problem = number_problem(typed)
    if problem is not None:
        key, count = problem
        t = texts(language)
        said = t(key) if key != LENGTH else t.plural("site.status.error.length", count, count=count)
        return _page(request, language, 422, typed=echo, error=said)
    number = _SEPARATORS.sub("", typed)
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.engine.connect() as conn:
            found = orders.progress(conn, number)
        receipt = None
        if found is not None and found.payment_id is not None:
            address = request_address(request, runtime.settings.trusted_proxies)
            with runtime.engine.begin() as conn:
                receipt = receipts.token_for(conn, found.payment_id, actor=ACTOR, address=address)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        return _page(
            request,
            language,
            503,
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
            typed=echo,
            unavailable=True,
        )
    if found is None:
        return _page(request, language, 404, typed=echo, error=texts(language)(NOT_FOUND))
    return _page(
        request,
        language,
        200,
        typed=echo,
        progress=found,
        receipt=None if receipt is None else f"/r/{receipt.token}",
        stage=STAGES[found.stage],
        next=NEXT[found.stage],
        steps=[(STAGES[step.stage], step.at) for step in found.steps],
        ended=found.stage in orders.ENDS,
        order_states=ORDER_STATES,
        english=language == "en",
    )


def _page(
    request: Request,
    language: str,
    status: int,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    shown: dict[str, Any] = {
        "field": FIELD,
        "typed": "",
        "error": None,
        "progress": None,
        "unavailable": False,
        **context,
    }
    return pages.render(
        request, "status", status=status, headers=headers, language=language, **shown
    )
