"""The outcomes of check and pay, in the core's own terms; adapters map them to protocol codes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from tolom.payments.records import ManualDetails, PaymentRecord, Reversal


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
    FORBIDDEN = "forbidden"  # a service this agent may not use
    ALREADY_PAID = "already_paid"  # the invoice has been paid (by another transaction)
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    CONFLICT = "conflict"  # txn_id already used with another account, amount or service
    MALFORMED = "malformed"
    # The pay is not finished: repeat it later with the same txn_id (OSMP 90). Only the
    # sandbox's magic account answers it (`payments.sandbox`); real pays finish or fail.
    PENDING = "pending"

    @property
    def fatal(self) -> bool:
        return self not in (Outcome.OK, Outcome.RETRY, Outcome.PENDING)


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
    manual: ManualDetails | None = None  # cash desk or bank transfer, recorded by an operator


@dataclass(frozen=True, slots=True)
class PayResult:
    outcome: Outcome
    message: str
    payment_id: int | None = None  # prv_txn, the receipt number
    amount: int | None = None
    replayed: bool = False  # True when this answers a repeat of an earlier pay
    status: str = "accepted"  # of the payment now: a repeat may find it reversed
    txn_date: datetime | None = None  # UTC
    business_date: date | None = None  # the agent-local day of txn_date
    created_at: datetime | None = None
    reversal: Reversal | None = None  # a repeat of a pay cancelled since: why and when


class CancelOutcome(enum.Enum):
    """Every answer a cancellation (reversal) can give."""

    OK = "ok"  # reversed now, or earlier (a repeated cancel gets the same answer)
    RETRY = "retry"  # temporary trouble; nothing was written
    NOT_FOUND = "not_found"  # no such payment (of this agent)
    WINDOW_CLOSED = "window_closed"  # the agent's cancel window has passed
    BALANCE_SPENT = "balance_spent"  # the customer's balance no longer holds the amount
    ALREADY_SERVED = "already_served"  # what the payment bought has been delivered
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class CancelResult:
    outcome: CancelOutcome
    message: str
    payment_id: int | None = None
    replayed: bool = False  # the payment had been reversed before this request
    record: PaymentRecord | None = None  # the payment as it now stands, when OK
