"""The field rules of what people and programs send us, as pydantic types that the operator
API's models and the back-office forms (`web.forms.PageForm`) both declare their fields with.

The rules themselves stay where they always were (the amount grammars in `money`, the INN in
`identifiers`, the manual payments' choices and lengths in `payments.manual`); this module
only states each once in the shape pydantic reads, so the two adapters cannot drift apart.
Every type keeps the text as it was sent (a page shows it back when something is wrong);
the value it means is read with the same function (`money.parse_amount`, `money.parse_som`,
`date.fromisoformat`). A refusal is a `ValueError` whose text is the API's Russian message
(`httpkit.problems.field_errors` shows it); the pages say it in their own words.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field

from tolom.billing import customers, invoices, orders
from tolom.identifiers import is_inn
from tolom.money import MalformedAmount, parse_amount, parse_som
from tolom.payments import manual
from tolom.payments.model import Service
from tolom.reconciliation import days as reconciliation_days
from tolom.texts import DEFAULT, N_, text

# The API's Russian messages (pydantic's ValueError texts), from the catalogue.
AMOUNT_MESSAGE = text(DEFAULT, N_("field.error.amount"))
INN_MESSAGE = text(DEFAULT, N_("field.error.inn"))
DAY_MESSAGE = text(DEFAULT, N_("agent.field.date"))
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _amount(text: str) -> str:
    try:
        parse_amount(text)
    except MalformedAmount:
        raise ValueError(AMOUNT_MESSAGE) from None
    return text


def _typed_amount(text: str) -> str:
    if text:
        try:
            parse_som(text)
        except MalformedAmount:
            raise ValueError(AMOUNT_MESSAGE) from None
    return text


def _inn(text: str) -> str:
    if not is_inn(text):
        raise ValueError(INN_MESSAGE)
    return text


def _typed_inn(text: str) -> str:
    return _inn(text) if text else text


def _compact(value: object) -> object:
    """What a person typed for a number, without the spaces they put between digits."""
    return "".join(value.split()) if isinstance(value, str) else value


def _day(text: str) -> str:
    if text:
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ValueError(DAY_MESSAGE) from None
    return text


# An amount as programs send it ("500", "500.5", "500.50"): `money.AMOUNT_PATTERN`.
Amount = Annotated[str, AfterValidator(_amount)]
# An amount as people type it ("1 510,50"; `money.parse_som`), or nothing yet.
TypedAmount = Annotated[str, AfterValidator(_typed_amount)]
# An INN: exactly 14 ASCII digits (`identifiers.is_inn`).
Inn = Annotated[str, AfterValidator(_inn)]
# An INN as people type it, spaces between the digits dropped; empty: none given.
TypedInn = Annotated[str, BeforeValidator(_compact), AfterValidator(_typed_inn)]
# A day as YYYY-MM-DD (what a date input sends; "20261121" or "0" is not one, nor is a day
# that does not exist); empty: none. The API's date parameters read `DAY_PATTERN` too.
DayText = Annotated[str, Field(pattern=r"^(|[0-9]{4}-[0-9]{2}-[0-9]{2})$"), AfterValidator(_day)]


def day_of(text: str) -> date | None:
    """The date a `DayText` means (None when empty)."""
    return date.fromisoformat(text) if text else None


# The choices a request may name, as the core spells them (each asserted below).
ServiceCode = Literal["sochi", "eds"]  # `payments.model.Service`
PaymentStatus = Literal["accepted", "reversed"]  # `payments.records`
InvoiceState = Literal["open", "expired", "paid", "cancelled"]  # `billing.invoices.STATES`
OrderStatus = Literal["paid", "in_production", "issued", "cancelled"]  # `billing.orders`
Language = Literal["ru", "ky"]  # of notifications: `billing.customers.LANGUAGES`

# Manual payments (`payments.manual`): the channels and payment codes a cash or bank payment
# may name, and its reference.
Channel = Literal["cash_desk", "bank"]
PaymentCode = Literal["42151410", "42122900"]
PAYMENT_CODES: tuple[str, ...] = get_args(PaymentCode)
Reference = Annotated[str, Field(pattern=manual.REFERENCE_PATTERN)]

# Why a reconciliation step (resolving a discrepancy, reopening a day) was taken: some text,
# not only spaces, and no longer than the core keeps (`reconciliation.days.REASON_MAX`).
ReconciliationReason = Annotated[
    str, Field(min_length=1, max_length=reconciliation_days.REASON_MAX, pattern=r"\S")
]

assert get_args(ServiceCode) == tuple(s.value for s in Service)
assert get_args(InvoiceState) == invoices.STATES
assert get_args(OrderStatus) == orders.STATUSES
assert get_args(Language) == customers.LANGUAGES
assert get_args(Channel) == manual.CHANNELS
assert PAYMENT_CODES == manual.PAYMENT_CODES
