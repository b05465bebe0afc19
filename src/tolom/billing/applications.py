"""Online applications for a signature (the site's `/apply`, docs/customers.md#apply) and
the back office's queue that verifies them (docs/backoffice.md#online-applications).

    new → verified | rejected (with a reason)

Applying registers a new INN as a customer, issues the invoice and records the application
"new": the applicant's identity is still to be verified at the office. An operator then
verifies it or rejects it with a reason (`verify_audited`, `reject_audited`): each is
audited and told to the customer. Rejecting cancels the invoice while it is unpaid; a paid
one stays paid, and its money goes back through the orders' cancel. The paid invoice's
orders do not go into production until the application is verified: `orders.start` asks
`blocking_status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from tolom import audit
from tolom.billing import invoices
from tolom.billing.customers import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    LEGAL_FORMS,
    CustomerError,
    create_audited,
    normalise_email,
    normalise_phone,
    validate,
)
from tolom.billing.customers import get as get_customer
from tolom.db.schema import applications
from tolom.db.schema import invoices as invoice_table
from tolom.events.outbox import EventType, emit, inn_key
from tolom.formatting import ZONE
from tolom.identifiers import is_inn
from tolom.texts import N_, Refusal
from tolom.timestamps import as_utc

APPLICATION_STATUSES = ("new", "verified", "rejected")  # "new": identity not verified yet
MAX_OFFICE_LENGTH = 64
MAX_REASON = 500  # characters of a rejection's reason (also what an invoice's cancel keeps)


# --- applying (the site's /apply) ----------------------------------------------------------


class ApplicationRefused(CustomerError):
    """An application refused as a whole (`code` "rate_limit"): nothing was written."""


class ApplicationErrors(CustomerError):
    """An application with bad fields: `refusals` holds (field, refusal) for every one, in
    the form's order (fields: inn, name, legal_form, email, phone, office, items)."""

    def __init__(self, refusals: list[tuple[str, CustomerError]]) -> None:
        first = refusals[0][1]
        super().__init__(first.key, code="fields", **first.values)
        self.args = ("; ".join(str(refusal) for _, refusal in refusals),)
        self.refusals = refusals

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Application:
    """What an application gave the applicant: the invoice to pay and whether it is the one
    an earlier identical application got (`repeated`: nothing new was written)."""

    invoice: invoices.Invoice
    office: str
    repeated: bool
    new_customer: bool


def application_errors(
    *,
    inn: str,
    name: str,
    legal_form: str,
    email: str,
    phone: str,
    office: str,
    offices: Iterable[str],
) -> list[tuple[str, CustomerError]]:
    """Every bad field of an application, with its refusal (empty: all good). The INN,
    name and legal form follow `customers.validate`; the contacts `normalise_contacts`, and
    both are required (the invoice number is sent to them); the office must be one offered."""
    found: list[tuple[str, CustomerError]] = []
    if not is_inn(inn):
        found.append(("inn", CustomerError(N_("customer.error.inn"), code="inn", inn=repr(inn))))
    try:
        validate("0" * 14, name, LEGAL_FORMS[0])  # a valid INN and form: the name's refusal
    except CustomerError as error:
        found.append(("name", error))
    if legal_form not in LEGAL_FORMS:
        found.append(
            (
                "legal_form",
                CustomerError(
                    N_("customer.error.legal_form"),
                    code="legal_form",
                    form=repr(legal_form),
                    allowed=", ".join(LEGAL_FORMS),
                ),
            )
        )
    for field, value, normalise in (
        ("email", email, normalise_email),
        ("phone", phone, normalise_phone),
    ):
        if not value.strip():
            found.append((field, CustomerError(N_("customer.error.contact_required"), code=field)))
            continue
        try:
            normalise(value)
        except CustomerError as error:
            found.append((field, error))
    if office not in list(offices):
        found.append(("office", CustomerError(N_("customer.error.office"), code="office")))
    return found


def applications_since(conn: Connection, address: str, since: datetime) -> int:
    """How many applications came from this network address since `since`."""
    query = select(func.count()).where(
        applications.c.address == address, applications.c.created_at > since
    )
    return int(conn.execute(query.select_from(applications)).scalar_one())


def apply_audited(
    conn: Connection,
    *,
    inn: str,
    name: str,
    legal_form: str,
    email: str,
    phone: str,
    language: str,
    office: str,
    offices: Iterable[str],
    items: list[tuple[str, int]],
    validity_days: int,
    per_hour: int,
    actor: str,
    address: str | None,
    now: datetime | None = None,
) -> Application:
    """An online application for a signature, in the caller's transaction.

    Refused (ApplicationErrors, every bad field; invoices.InvoiceError for the items;
    ApplicationRefused "rate_limit" past `per_hour` applications from this address in the
    last hour) with nothing written. The same INN asking again for the same items, written
    to the same payer, while that invoice is open gets it again and nothing is written.
    Otherwise a new INN becomes a customer (`customer.create`; its contacts and language
    are the applicant's), an existing customer keeps its record and contacts; the invoice is
    issued (`invoice.create`), the application recorded pending verification ("new"), and
    `application.created` tells the customer's contacts the number.
    """
    now = now or datetime.now(UTC)
    name = name.strip()
    errors = application_errors(
        inn=inn,
        name=name,
        legal_form=legal_form,
        email=email,
        phone=phone,
        office=office,
        offices=offices,
    )
    if not items:
        errors.append(("items", CustomerError(N_("invoice.error.no_items"), code="no_items")))
    if errors:
        raise ApplicationErrors(errors)
    if address is not None and applications_since(conn, address, now - timedelta(hours=1)) >= (
        per_hour
    ):
        raise ApplicationRefused(N_("customer.error.rate_limit"), code="rate_limit")
    earlier = invoices.open_invoice_for(conn, inn, items, payer_name=name, now=now)
    if earlier is not None:
        return Application(earlier, office, repeated=True, new_customer=False)
    customer = get_customer(conn, inn)
    new_customer = customer is None
    if customer is None:
        customer = create_audited(
            conn,
            inn=inn,
            name=name,
            legal_form=legal_form,
            email=email,
            phone=phone,
            language=language if language in LANGUAGES else DEFAULT_LANGUAGE,
            actor=actor,
            address=address,
        )
    invoice = invoices.create_audited(
        conn,
        items=items,
        payer_name=name,
        inn=inn,
        validity_days=validity_days,
        actor=actor,
        address=address,
        now=now,
    )
    conn.execute(
        insert(applications).values(
            inn=inn,
            invoice_number=invoice.number,
            office=office,
            status="new",
            created_at=now,
            address=address,
        )
    )
    emit(
        conn,
        EventType.APPLICATION_CREATED,
        ordering_key=inn_key(inn, invoice.number),
        customer_id=customer.id,
        payload={
            "invoice_number": invoice.number,
            "inn": inn,
            "total": invoice.total,
            "office": office,
            "valid_until": as_utc(invoice.expires_at).astimezone(ZONE).date().isoformat(),
            "lines": [
                {
                    "product_code": line.product_code,
                    "name": line.name,
                    "quantity": line.quantity,
                    "amount": line.amount,
                }
                for line in invoice.lines
            ],
        },
    )
    return Application(invoice, office, repeated=False, new_customer=new_customer)


# --- the back office's queue ---------------------------------------------------------------


class ApplicationError(Refusal):
    """A decision on an application that cannot be taken, worded by a catalogue key; `code`
    names it for adapters (not_found, decided, reason)."""

    def __init__(self, key: str, /, *, code: str = "", **values: Any) -> None:
        super().__init__(key, **values)
        self.code = code


class ApplicationNotFound(ApplicationError):
    """No application has this id."""


class AlreadyDecided(ApplicationError):
    """The application was decided the other way: a decision is never taken back."""


@dataclass(frozen=True, slots=True)
class ApplicationRecord:
    """An application as the queue shows it, with its invoice's payer, total and state."""

    id: int
    inn: str
    invoice_number: str
    office: str
    status: str  # APPLICATION_STATUSES
    reason: str | None  # why it was rejected
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None  # user:NAME
    payer_name: str
    total: int  # tyiyn: the invoice's
    invoice_status: str  # as stored: open | paid | cancelled
    invoice_expires_at: datetime

    @property
    def paid(self) -> bool:
        return self.invoice_status == "paid"

    def invoice_state(self, now: datetime) -> str:
        """The invoice as `Invoice.state` says it: open | expired | paid | cancelled."""
        if self.invoice_status == "open" and self.invoice_expires_at <= now:
            return "expired"
        return self.invoice_status


@dataclass(frozen=True, slots=True)
class Decision:
    """The application after a decision; `changed` is False for a repeat (nothing was
    written); `invoice_cancelled` when the rejection cancelled its unpaid invoice."""

    application: ApplicationRecord
    changed: bool
    invoice_cancelled: bool = False


_RECORD = select(
    applications,
    invoice_table.c.payer_name,
    invoice_table.c.total,
    invoice_table.c.status.label("invoice_status"),
    invoice_table.c.expires_at.label("invoice_expires_at"),
).join(invoice_table, invoice_table.c.number == applications.c.invoice_number)


def _from_row(row: Any) -> ApplicationRecord:
    return ApplicationRecord(
        id=row.id,
        inn=row.inn,
        invoice_number=row.invoice_number,
        office=row.office,
        status=row.status,
        reason=row.reason,
        created_at=as_utc(row.created_at),
        decided_at=as_utc(row.decided_at) if row.decided_at is not None else None,
        decided_by=row.decided_by,
        payer_name=row.payer_name,
        total=row.total,
        invoice_status=row.invoice_status,
        invoice_expires_at=as_utc(row.invoice_expires_at),
    )


def get(conn: Connection, application_id: int) -> ApplicationRecord | None:
    """The application with this id, if any."""
    row = conn.execute(_RECORD.where(applications.c.id == application_id)).first()
    return None if row is None else _from_row(row)


def search(
    conn: Connection,
    *,
    status: str | None = None,
    office: str | None = None,
    inn: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> list[ApplicationRecord]:
    """Applications matching every filter given (INN exact), newest first; `cursor` pages
    (keyset: the last id seen). Callers ask for one more than they show to learn whether
    there is a next page."""
    query = _RECORD
    if status is not None:
        query = query.where(applications.c.status == status)
    if office is not None:
        query = query.where(applications.c.office == office)
    if inn is not None:
        query = query.where(applications.c.inn == inn)
    if cursor is not None:
        query = query.where(applications.c.id < cursor)
    rows = conn.execute(query.order_by(applications.c.id.desc()).limit(limit))
    return [_from_row(row) for row in rows]


def counts(conn: Connection) -> dict[str, int]:
    """How many applications are in each status (every status, zero when none)."""
    found = dict.fromkeys(APPLICATION_STATUSES, 0)
    query = select(applications.c.status, func.count()).group_by(applications.c.status)
    for status, count in conn.execute(query):
        found[status] = int(count)
    return found


def count_new(conn: Connection) -> int:
    """How many applications await identity verification (the dashboard's figure)."""
    query = select(func.count()).select_from(applications).where(applications.c.status == "new")
    return int(conn.execute(query).scalar_one())


def of_invoice(conn: Connection, invoice_number: str) -> tuple[int, str] | None:
    """The (id, status) of the application that made this invoice; None for an invoice an
    operator issued. One lookup by the unique `invoice_number`."""
    row = conn.execute(
        select(applications.c.id, applications.c.status).where(
            applications.c.invoice_number == invoice_number
        )
    ).first()
    return None if row is None else (int(row.id), str(row.status))


def _locked(conn: Connection, application_id: int) -> ApplicationRecord:
    """The application under a row lock (a concurrent decision waits, then sees this one)."""
    locked = conn.execute(
        select(applications.c.id).where(applications.c.id == application_id).with_for_update()
    ).first()
    found = get(conn, application_id) if locked is not None else None
    if found is None:
        raise ApplicationNotFound(
            N_("application.error.not_found"), code="not_found", application=application_id
        )
    return found


def _decide(
    conn: Connection,
    application: ApplicationRecord,
    status: str,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> ApplicationRecord:
    conn.execute(
        update(applications)
        .where(applications.c.id == application.id, applications.c.status == "new")
        .values(status=status, reason=reason, decided_at=now, decided_by=actor[:80])
    )
    decided = get(conn, application.id)
    assert decided is not None
    return decided


def _announce(
    conn: Connection, type: EventType, application: ApplicationRecord, **extra: Any
) -> None:
    customer = get_customer(conn, application.inn)
    emit(
        conn,
        type,
        ordering_key=inn_key(application.inn, application.invoice_number),
        customer_id=customer.id if customer else None,
        payload={
            "application_id": application.id,
            "invoice_number": application.invoice_number,
            "inn": application.inn,
            "office": application.office,
            "invoice_paid": application.paid,
            **extra,
        },
    )


def verify_audited(
    conn: Connection,
    application_id: int,
    *,
    actor: str,
    address: str | None,
    now: datetime | None = None,
) -> Decision:
    """The applicant's identity was verified at the office: new → verified, in the
    caller's transaction, audited `application.verify` and told (`application.verified`).
    The invoice's orders may then go into production. A verified one is returned as it
    is; a rejected one is refused (AlreadyDecided)."""
    application = _locked(conn, application_id)
    if application.status == "verified":
        return Decision(application, changed=False)
    if application.status != "new":
        raise AlreadyDecided(
            N_("application.error.already_rejected"), code="decided", application=application.id
        )
    now = now or datetime.now(UTC)
    verified = _decide(conn, application, "verified", reason=None, actor=actor, now=now)
    audit.record(
        conn,
        actor=actor,
        action="application.verify",
        object_type="application",
        object_id=application.id,
        before={"status": application.status},
        after={"status": verified.status, "invoice_number": verified.invoice_number},
        address=address,
    )
    _announce(conn, EventType.APPLICATION_VERIFIED, verified)
    return Decision(verified, changed=True)


def reason_of(text: str) -> str:
    """A rejection's reason as kept: stripped, 1..MAX_REASON characters, no U+0000;
    ApplicationError "reason" otherwise."""
    reason = text.strip()
    if not reason or len(reason) > MAX_REASON or "\x00" in reason:
        raise ApplicationError(N_("application.error.reason"), code="reason", max=MAX_REASON)
    return reason


def reject_audited(
    conn: Connection,
    application_id: int,
    *,
    reason: str,
    actor: str,
    address: str | None,
    now: datetime | None = None,
) -> Decision:
    """The applicant's identity could not be verified: new → rejected with the reason, in
    the caller's transaction, audited `application.reject` and told
    (`application.rejected`, with the reason).

    An invoice still unpaid is cancelled with it (`invoice.cancel`, audited with the same
    reason): nobody is to pay for what will not be made. A paid one stays paid: its money
    goes back through cancelling its orders. A rejected application is returned as it is
    (the first reason stays); a verified one is refused (AlreadyDecided).
    """
    reason = reason_of(reason)
    application = _locked(conn, application_id)
    if application.status == "rejected":
        return Decision(application, changed=False)
    if application.status != "new":
        raise AlreadyDecided(
            N_("application.error.already_verified"), code="decided", application=application.id
        )
    now = now or datetime.now(UTC)
    cancelled = False
    if application.invoice_status == "open":
        try:
            _, cancelled = invoices.cancel_audited(
                conn,
                application.invoice_number,
                actor=actor,
                address=address,
                reason=reason,
                now=now,
            )
        except invoices.NotCancellable:  # paid a moment ago: it stays paid
            cancelled = False
    rejected = _decide(conn, application, "rejected", reason=reason, actor=actor, now=now)
    audit.record(
        conn,
        actor=actor,
        action="application.reject",
        object_type="application",
        object_id=application.id,
        before={"status": application.status},
        after={
            "status": rejected.status,
            "reason": reason,
            "invoice_number": rejected.invoice_number,
            "invoice_status": rejected.invoice_status,
        },
        address=address,
    )
    _announce(
        conn,
        EventType.APPLICATION_REJECTED,
        rejected,
        reason=reason,
        invoice_cancelled=cancelled,
    )
    return Decision(rejected, changed=True, invoice_cancelled=cancelled)
