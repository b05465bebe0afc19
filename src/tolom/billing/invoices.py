"""Invoices (счета на оплату) for signatures and carriers, paid through the `eds` service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, insert, select, update
from sqlalchemy.exc import IntegrityError

from tolom import audit
from tolom.db.schema import customers, invoice_lines, invoices, products
from tolom.formatting import ZONE
from tolom.identifiers import is_inn, new_invoice_number
from tolom.money import format_amount
from tolom.texts import N_, Refusal
from tolom.timestamps import as_utc

MAX_QUANTITY = 1000  # of one product in one invoice
MAX_PAYER_NAME = 300  # characters
MAX_VALIDITY_DAYS = 366  # the latest due date one may choose, in days from today
MAX_REASON = 500  # characters of a cancellation's reason
STATES = ("open", "expired", "paid", "cancelled")  # what `Invoice.state` says


class InvoiceError(Refusal):
    """An invoice operation that cannot be done, worded by a catalogue key.

    The text is "field: text" (`str()` in Russian: the API and the CLI show it); `code`
    names the refusal for adapters that say it in other words (the pages), `product` the
    catalogue code a refused item line is about.
    """

    def __init__(
        self, key: str, /, *, code: str = "", product: str | None = None, **values: Any
    ) -> None:
        super().__init__(key, **values)
        self.code = code
        self.product = product


class InvoiceNotFound(InvoiceError):
    """No invoice has this number."""


class NotCancellable(InvoiceError):
    """The invoice is paid: its payment must be reversed before it can be cancelled."""


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    product_code: str
    name: str
    quantity: int
    unit_price: int
    amount: int


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice with its lines; `state` also says "expired" for an open, overdue one."""

    id: int
    number: str
    inn: str | None
    payer_name: str
    total: int
    status: str
    expires_at: datetime
    created_at: datetime
    paid_at: datetime | None
    payment_id: int | None
    lines: tuple[InvoiceLine, ...]
    cancelled_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """open | expired | paid | cancelled."""
        if self.status == "open" and as_utc(self.expires_at) <= now:
            return "expired"
        return self.status


def parse_item(text: str) -> tuple[str, int]:
    """CODE or CODE:QTY, as the CLI takes items."""
    code, _, qty = text.partition(":")
    if not code:
        raise InvoiceError(N_("invoice.error.item_code"), item=repr(text))
    if not qty:
        return code, 1
    if not qty.isascii() or not qty.isdigit() or not 1 <= int(qty) <= MAX_QUANTITY:
        raise InvoiceError(N_("invoice.error.item_quantity"), item=repr(text), max=MAX_QUANTITY)
    return code, int(qty)


def create(
    conn: Connection,
    *,
    items: list[tuple[str, int]],
    payer_name: str | None,
    inn: str | None,
    validity_days: int,
    now: datetime | None = None,
) -> Invoice:
    """Issue an invoice for catalogue items at their current prices. Without `payer_name`
    the payer is the registered customer with this INN (refused if there is none)."""
    if not items:
        raise InvoiceError(N_("invoice.error.no_items"), code="no_items")
    if inn is not None and not is_inn(inn):
        raise InvoiceError(N_("invoice.error.inn"), code="inn", inn=repr(inn))
    if payer_name is None:
        payer_name = _customer_name(conn, inn)
    if not payer_name.strip():
        raise InvoiceError(N_("invoice.error.payer"), code="payer")
    if len(payer_name.strip()) > MAX_PAYER_NAME or "\x00" in payer_name:
        raise InvoiceError(
            N_("invoice.error.payer_too_long"), code="payer_too_long", max=MAX_PAYER_NAME
        )
    catalogue = {r.code: r for r in conn.execute(select(products))}
    lines = []
    for code, quantity in items:
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvoiceError(
                N_("invoice.error.quantity"),
                code="quantity",
                product=code,
                item=repr(code),
                max=MAX_QUANTITY,
            )
        product = catalogue.get(code)
        if product is None or not product.active:
            raise InvoiceError(
                N_("invoice.error.unknown_product"),
                code="unknown_product",
                product=code,
                item=repr(code),
            )
        if product.price is None:
            raise InvoiceError(
                N_("invoice.error.no_price"), code="no_price", product=code, item=repr(code)
            )
        lines.append(
            InvoiceLine(code, product.name, quantity, product.price, product.price * quantity)
        )
    total = sum(line.amount for line in lines)
    now = now or datetime.now(UTC)
    expires_at = now + timedelta(days=validity_days)
    for _attempt in range(5):
        number = new_invoice_number()
        try:
            with conn.begin_nested():
                invoice_id = conn.execute(
                    insert(invoices)
                    .values(
                        number=number,
                        inn=inn,
                        payer_name=payer_name.strip(),
                        total=total,
                        expires_at=expires_at,
                        created_at=now,
                    )
                    .returning(invoices.c.id)
                ).scalar_one()
            break
        except IntegrityError:
            continue  # a random number collided with an existing one: draw again
    else:
        raise InvoiceError(N_("invoice.error.no_number"), code="no_number")
    conn.execute(
        insert(invoice_lines),
        [
            {
                "invoice_id": invoice_id,
                "product_code": line.product_code,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": line.amount,
            }
            for line in lines
        ],
    )
    invoice = get(conn, number)
    assert invoice is not None
    return invoice


def get(conn: Connection, number: str) -> Invoice | None:
    """The invoice with this number, with its lines."""
    row = conn.execute(select(invoices).where(invoices.c.number == number)).first()
    if row is None:
        return None
    lines = tuple(
        InvoiceLine(r.product_code, r.name, r.quantity, r.unit_price, r.amount)
        for r in conn.execute(
            select(invoice_lines)
            .where(invoice_lines.c.invoice_id == row.id)
            .order_by(invoice_lines.c.id)
        )
    )
    return _from_row(row, lines)


def payer_name(conn: Connection, number: str) -> str | None:
    """The payer's name as the invoice was written (None for an unknown number or none
    given), without reading its lines."""
    found: str | None = conn.execute(
        select(invoices.c.payer_name).where(invoices.c.number == number)
    ).scalar_one_or_none()
    return found


def _from_row(row: Any, lines: tuple[InvoiceLine, ...] = ()) -> Invoice:
    """An `invoices` row as an Invoice (a listed one has no lines)."""
    return Invoice(
        row.id,
        row.number,
        row.inn,
        row.payer_name,
        row.total,
        row.status,
        as_utc(row.expires_at),
        as_utc(row.created_at),
        as_utc(row.paid_at) if row.paid_at else None,
        row.payment_id,
        lines,
        as_utc(row.cancelled_at) if row.cancelled_at else None,
    )


def cancel(conn: Connection, number: str, now: datetime | None = None) -> Invoice:
    """Cancel an unpaid invoice; a paid one is refused (its payment must be reversed first)."""
    invoice = get(conn, number)
    if invoice is None:
        raise InvoiceNotFound(N_("invoice.error.not_found"), code="not_found", number=number)
    if invoice.status == "paid":
        raise NotCancellable(N_("invoice.error.paid"), code="paid", number=number)
    if invoice.status == "open":
        conn.execute(
            update(invoices)
            .where(invoices.c.id == invoice.id)
            .where(invoices.c.status == "open")
            .values(status="cancelled", cancelled_at=now or datetime.now(UTC))
        )
    cancelled = get(conn, number)
    assert cancelled is not None
    return cancelled


# --- the use cases the API and the pages share --------------------------------------------


def search(
    conn: Connection,
    *,
    status: str | None = None,
    inn: str | None = None,
    number: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> list[Invoice]:
    """Invoices matching every filter given, newest first, without their lines.

    `status` is a state as `Invoice.state` says it ("expired": open and overdue at `now`);
    `before_id` pages (keyset: the last id seen). Callers ask for one more than they show
    to learn whether there is a next page.
    """
    if status is not None and status not in STATES:
        raise InvoiceError(N_("invoice.error.status"), code="status", status=repr(status))
    now = now or datetime.now(UTC)
    query: Select[Any] = select(invoices)
    if status == "open":
        query = query.where(invoices.c.status == "open", invoices.c.expires_at > now)
    elif status == "expired":
        query = query.where(invoices.c.status == "open", invoices.c.expires_at <= now)
    elif status is not None:
        query = query.where(invoices.c.status == status)
    if inn is not None:
        query = query.where(invoices.c.inn == inn)
    if number is not None:
        query = query.where(invoices.c.number == number)
    if before_id is not None:
        query = query.where(invoices.c.id < before_id)
    rows = conn.execute(query.order_by(invoices.c.id.desc()).limit(limit))
    return [_from_row(row) for row in rows]


def _utc_text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")


def audit_view(invoice: Invoice, now: datetime) -> dict[str, Any]:
    """The invoice as the audit log records it (the API's JSON shape: amounts as "1510.00",
    moments in UTC)."""
    return {
        "number": invoice.number,
        "inn": invoice.inn,
        "payer_name": invoice.payer_name,
        "total": format_amount(invoice.total),
        "status": invoice.state(now),
        "created_at": _utc_text(invoice.created_at),
        "expires_at": _utc_text(invoice.expires_at),
        "paid_at": _utc_text(invoice.paid_at),
        "payment_id": invoice.payment_id,
        "lines": [
            {
                "product": line.product_code,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": format_amount(line.unit_price),
                "amount": format_amount(line.amount),
            }
            for line in invoice.lines
        ],
    }


def _customer_name(conn: Connection, inn: str | None) -> str:
    """The name of the registered customer with this INN: the payer when none is named."""
    name = (
        None
        if inn is None
        else conn.execute(select(customers.c.name).where(customers.c.inn == inn)).scalar()
    )
    if name is None:
        if inn is None:
            raise InvoiceError(N_("invoice.error.payer"), code="payer")
        raise InvoiceError(N_("invoice.error.payer_unknown_inn"), code="payer", inn=inn)
    return str(name)


def create_audited(
    conn: Connection,
    *,
    items: list[tuple[str, int]],
    payer_name: str | None,
    inn: str | None,
    validity_days: int,
    actor: str,
    address: str | None,
    now: datetime | None = None,
) -> Invoice:
    """Issue an invoice (`create`) and write `invoice.create` to the audit log, in the
    caller's transaction."""
    invoice = create(
        conn, items=items, payer_name=payer_name, inn=inn, validity_days=validity_days, now=now
    )
    audit.record(
        conn,
        actor=actor,
        action="invoice.create",
        object_type="invoice",
        object_id=invoice.number,
        after=audit_view(invoice, now or datetime.now(UTC)),
        address=address,
    )
    return invoice


def cancel_audited(
    conn: Connection,
    number: str,
    *,
    actor: str,
    address: str | None,
    reason: str | None = None,
    now: datetime | None = None,
) -> tuple[Invoice, bool]:
    """Cancel an unpaid invoice and write `invoice.cancel` (with the reason, if one is
    given) to the audit log, in the caller's transaction.

    Returns the invoice and whether it was cancelled now: one already cancelled is
    returned as it is and nothing is written. A paid one raises NotCancellable (its
    payment must be reversed first), an unknown number InvoiceNotFound.
    """
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise InvoiceError(N_("invoice.error.reason"), code="reason", max=MAX_REASON)
    now = now or datetime.now(UTC)
    before = get(conn, number)
    if before is None:
        raise InvoiceNotFound(N_("invoice.error.not_found"), code="not_found", number=number)
    if before.status == "cancelled":
        return before, False
    if before.status == "paid":
        raise NotCancellable(
            N_("invoice.error.paid_by"), code="paid", number=number, payment=before.payment_id
        )
    after = cancel(conn, number, now=now)
    if after.status != "cancelled":  # paid in between
        raise NotCancellable(N_("invoice.error.paid_meanwhile"), code="paid", number=number)
    audit.record(
        conn,
        actor=actor,
        action="invoice.cancel",
        object_type="invoice",
        object_id=number,
        before={"status": before.state(now)},
        after={"status": "cancelled", "reason": reason} if reason else {"status": "cancelled"},
        address=address,
    )
    return after, True


def validity_days_until(due: date, now: datetime) -> int:
    """The `validity_days` of an invoice due on `due` (a date in Bishkek): it can then be
    paid until that day, at the time of day it was issued. The day must be after today
    and at most MAX_VALIDITY_DAYS away."""
    days = (due - as_utc(now).astimezone(ZONE).date()).days
    if not 1 <= days <= MAX_VALIDITY_DAYS:
        raise InvoiceError(N_("invoice.error.due"), code="due", days=MAX_VALIDITY_DAYS)
    return days


def open_invoice_for(
    conn: Connection,
    inn: str,
    items: list[tuple[str, int]],
    *,
    payer_name: str | None = None,
    now: datetime | None = None,
) -> Invoice | None:
    """The newest invoice of this INN that can still be paid (open, not expired) and asks
    for exactly these items (product → total quantity, in any order or split), and, when
    `payer_name` is given, is written to that payer (compared ignoring case and spaces
    around): what a repeated application gets instead of a new invoice."""
    wanted: dict[str, int] = {}
    for code, quantity in items:
        wanted[code] = wanted.get(code, 0) + quantity
    if not wanted:
        return None
    now = now or datetime.now(UTC)
    for found in search(conn, status="open", inn=inn, limit=20, now=now):
        if payer_name is not None and found.payer_name.strip().casefold() != (
            payer_name.strip().casefold()
        ):
            continue
        invoice = get(conn, found.number)
        assert invoice is not None
        asked: dict[str, int] = {}
        for line in invoice.lines:
            asked[line.product_code] = asked.get(line.product_code, 0) + line.quantity
        if asked == wanted:
            return invoice
    return None
