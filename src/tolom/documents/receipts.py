"""Receipts: every payment's unguessable public token, what its public page may say, and what
the payer's own receipt (PDF) shows.

A token is made only when a receipt is first asked for (never on the pay path, which stays
one INSERT shorter) and then never changes, so a printed QR code keeps working. It is
192 random bits: the public page needs no login and no rate limit, because a token cannot
be guessed or enumerated, and a malformed one is refused before the database is asked.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from tolom import audit
from tolom.db.schema import (
    agents,
    customers,
    invoices,
    manual_payments,
    payment_reversals,
    payments,
    receipts,
    services,
)
from tolom.settings import Settings
from tolom.timestamps import as_utc

TOKEN_BYTES = 24  # 192 bits; secrets.token_urlsafe spells them as 32 characters
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_ATTEMPTS = 3  # draws of a token before giving up (a collision is a 2**-192 event)


def is_token(text: str) -> bool:
    """Whether `text` could be a token at all (checked before any database lookup)."""
    return _TOKEN.fullmatch(text) is not None


def public_url(settings: Settings, token: str) -> str:
    """The public confirmation page of a receipt: what its QR code encodes."""
    return f"{settings.public_base_url}/r/{token}"


@dataclass(frozen=True, slots=True)
class Receipt:
    """A payment's receipt token; `created` when this call made it."""

    payment_id: int
    token: str
    created_at: datetime
    created: bool


_STORED = select(receipts.c.token, receipts.c.created_at)
_PAYMENT_EXISTS = select(payments.c.id)
_INSERT_ONCE = {
    # ON CONFLICT without a target: a concurrent twin (same payment) and a token collision
    # (another payment) both insert nothing, and the loop below tells them apart.
    "postgresql": postgresql.insert(receipts).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(receipts).on_conflict_do_nothing(),
}


def token_for(
    conn: Connection, payment_id: int, *, actor: str, address: str | None = None
) -> Receipt | None:
    """The payment's receipt token, made on first request; None if there is no such payment.

    Making one is audited as `receipt.create` (it makes the payment confirmable by anyone
    holding the link); asking again returns the same token and writes nothing.
    """
    found = conn.execute(_STORED.where(receipts.c.payment_id == payment_id)).first()
    if found is not None:
        return Receipt(payment_id, found.token, as_utc(found.created_at), created=False)
    if conn.execute(_PAYMENT_EXISTS.where(payments.c.id == payment_id)).first() is None:
        return None
    for _attempt in range(_ATTEMPTS):
        token = secrets.token_urlsafe(TOKEN_BYTES)
        made = conn.execute(
            _INSERT_ONCE[conn.dialect.name]
            .values(payment_id=payment_id, token=token)
            .returning(receipts.c.created_at)
        ).first()
        if made is not None:
            audit.record(
                conn,
                actor=actor,
                action="receipt.create",
                object_type="payment",
                object_id=payment_id,
                after={"receipt": "created"},  # the token itself stays out of the log
                address=address,
            )
            return Receipt(payment_id, token, as_utc(made.created_at), created=True)
        # A concurrent request made it first (its INSERT waited for that commit), or the
        # token belongs to another payment: the first case is read back, the second redrawn.
        found = conn.execute(_STORED.where(receipts.c.payment_id == payment_id)).first()
        if found is not None:
            return Receipt(payment_id, found.token, as_utc(found.created_at), created=False)
    raise RuntimeError(f"no free receipt token after {_ATTEMPTS} draws")


@dataclass(frozen=True, slots=True)
class Confirmation:
    """All the public page may tell: that this payment exists, and its amount, time and payee.

    Deliberately nothing that names the payer or the agent (no INN, customer or payer name,
    invoice number, agent, txn_id): the link travels on paper and in messengers.
    """

    number: int  # the receipt number (the payment's id)
    amount: int  # tyiyn
    paid_at: datetime  # aware; shown in Asia/Bishkek
    payee: str
    service: str  # sochi | eds
    service_name: str  # Russian, from the services table
    status: str  # accepted | reversed


_CONFIRMATION = (
    select(
        payments.c.id,
        payments.c.amount,
        payments.c.txn_date,
        payments.c.service,
        payments.c.status,
        services.c.name.label("service_name"),
    )
    .join(receipts, receipts.c.payment_id == payments.c.id)
    .join(services, services.c.code == payments.c.service)
)


def confirm(conn: Connection, token: str, settings: Settings) -> Confirmation | None:
    """What the public page shows for a token; None for an unknown or malformed one."""
    if not is_token(token):
        return None
    row = conn.execute(_CONFIRMATION.where(receipts.c.token == token)).first()
    if row is None:
        return None
    return Confirmation(
        number=row.id,
        amount=row.amount,
        paid_at=as_utc(row.txn_date),
        payee=settings.company_name,
        service=row.service,
        service_name=row.service_name,
        status=row.status,
    )


@dataclass(frozen=True, slots=True)
class ReceiptDocument:
    """What the payer's receipt shows. It is theirs, so it names the account and the payer,
    and for a manual payment who paid it and the operator's note."""

    number: int
    token: str
    url: str  # the public page
    amount: int
    paid_at: datetime
    service: str  # sochi | eds
    service_name: str
    status: str  # accepted | reversed
    reversed_at: datetime | None
    channel: str  # gateway | cash_desk | bank
    channel_name: str  # the agent's name, or the cash desk / bank transfer
    inn: str | None  # sochi: the account; eds: the invoice's, if it has one
    payer: str | None  # sochi: the customer; eds: the invoice's payer
    invoice_number: str | None
    payment_code: str | None  # bank transfers
    bank_reference: str | None  # bank transfers: the payment order's number
    payee: str
    # Manual payments (cash desk, bank): who brought the cash or sent the transfer, and the
    # operator's note, as the operator typed them. Never on the public page (`confirm`).
    paid_by: str | None = None
    note: str | None = None


_DOCUMENT = (
    select(
        payments.c.id,
        payments.c.amount,
        payments.c.txn_date,
        payments.c.service,
        payments.c.status,
        payments.c.account,
        services.c.name.label("service_name"),
        agents.c.kind.label("channel"),
        agents.c.name.label("channel_name"),
        customers.c.name.label("customer_name"),
        invoices.c.number.label("invoice_number"),
        invoices.c.inn.label("invoice_inn"),
        invoices.c.payer_name,
        manual_payments.c.payment_code,
        manual_payments.c.bank_reference,
        manual_payments.c.payer.label("paid_by"),
        manual_payments.c.note,
        payment_reversals.c.created_at.label("reversed_at"),
    )
    .join(services, services.c.code == payments.c.service)
    .join(agents, agents.c.id == payments.c.agent_id)
    .outerjoin(customers, customers.c.id == payments.c.customer_id)
    .outerjoin(invoices, invoices.c.id == payments.c.invoice_id)
    .outerjoin(manual_payments, manual_payments.c.payment_id == payments.c.id)
    .outerjoin(payment_reversals, payment_reversals.c.payment_id == payments.c.id)
)


def document(
    conn: Connection,
    payment_id: int,
    settings: Settings,
    *,
    actor: str,
    address: str | None = None,
    inn: str | None = None,
) -> ReceiptDocument | None:
    """The payer's receipt of a payment (making its token if need be); None if no payment,
    or, with `inn`, none of that INN's (a customer's cabinet shows only its own)."""
    row = conn.execute(_DOCUMENT.where(payments.c.id == payment_id)).first()
    if row is None:
        return None
    sochi = row.service == "sochi"
    if inn is not None and (row.account if sochi else row.invoice_inn) != inn:
        return None
    receipt = token_for(conn, payment_id, actor=actor, address=address)
    if receipt is None:
        return None
    return ReceiptDocument(
        number=row.id,
        token=receipt.token,
        url=public_url(settings, receipt.token),
        amount=row.amount,
        paid_at=as_utc(row.txn_date),
        service=row.service,
        service_name=row.service_name,
        status=row.status,
        reversed_at=as_utc(row.reversed_at) if row.reversed_at is not None else None,
        channel=row.channel,
        channel_name=row.channel_name,
        inn=row.account if sochi else row.invoice_inn,
        payer=row.customer_name if sochi else row.payer_name,
        invoice_number=None if sochi else row.invoice_number,
        payment_code=row.payment_code,
        bank_reference=row.bank_reference,
        payee=settings.company_name,
        paid_by=row.paid_by,
        note=row.note,
    )
