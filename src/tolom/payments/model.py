"""The outcomes of check and pay, in the core's own terms; adapters map them to protocol codes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Service(enum.StrEnum):
    """What is being paid for."""

    SOCHI = "sochi"  # top-up of a customer's SOCHI balance; account = INN
    EDS = "eds"  # an invoice for a signature / carrier; account = invoice number


class Outcome(enum.Enum):
    """Every answer check and pay can give. `fatal` tells an agent whether to stop retrying."""

    OK = "ok"
    RETRY = "retry"  # temporary trouble on our side; nothing was written
    BAD_ACCOUNT = "bad_account"  # the account is not even well-formed
    NOT_FOUND = "not_found"
    INACTIVE = "inactive"  # blocked customer, cancelled or expired invoice
    FORBIDDEN = "forbidden"  # invoice already paid, or a service this agent may not use
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    CONFLICT = "conflict"  # txn_id already used with another account, amount or service
    MALFORMED = "malformed"

    @property
    def fatal(self) -> bool:
        return self not in (Outcome.OK, Outcome.RETRY)


@dataclass(frozen=True, slots=True)
class CheckResult:
    outcome: Outcome
    message: str
    display_name: str | None = None  # who or what the account is, for the agent's app
    amount_due: int | None = None  # eds: what the invoice asks for, in tyiyn
    min_amount: int | None = None  # sochi: the range the agent may pay
    max_amount: int | None = None


@dataclass(frozen=True, slots=True)
class PayRequest:
    """A pay as the core sees it, whatever protocol carried it."""

    service: Service
    txn_id: str
    account: str
    amount: int  # tyiyn
    txn_date: datetime  # aware
    txn_date_raw: str  # as sent, for disputes


@dataclass(frozen=True, slots=True)
class PayResult:
    outcome: Outcome
    message: str
    payment_id: int | None = None  # prv_txn, the receipt number
    amount: int | None = None
    replayed: bool = False  # True when this answers a repeat of an earlier pay
