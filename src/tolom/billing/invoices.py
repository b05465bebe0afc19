"""Invoices (счета на оплату) for signatures and carriers, paid through the `eds` service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from tolom.db.schema import invoice_lines, invoices, products
from tolom.identifiers import is_inn, new_invoice_number
from tolom.timestamps import as_utc

MAX_QUANTITY = 1000  # of one product in one invoice


class InvoiceError(ValueError):
    """An invoice operation that cannot be done, with a message for the operator."""


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

    def state(self, now: datetime) -> str:
        """open | expired | paid | cancelled."""
        if self.status == "open" and as_utc(self.expires_at) <= now:
            return "expired"
        return self.status


def parse_item(text: str) -> tuple[str, int]:
    """CODE or CODE:QTY, as the CLI takes items."""
    code, _, qty = text.partition(":")
    if not code:
        raise InvoiceError(f"item: пустой код товара в {text!r}")
    if not qty:
        return code, 1
    if not qty.isascii() or not qty.isdigit() or not 1 <= int(qty) <= MAX_QUANTITY:
        raise InvoiceError(f"item: количество в {text!r} должно быть целым от 1 до {MAX_QUANTITY}")
    return code, int(qty)


def create(
    conn: Connection,
    *,
    items: list[tuple[str, int]],
    payer_name: str,
    inn: str | None,
    validity_days: int,
    now: datetime | None = None,
) -> Invoice:
    """Issue an invoice for catalogue items at their current prices."""
    if not items:
        raise InvoiceError("item: в счёте должна быть хотя бы одна позиция")
    if inn is not None and not is_inn(inn):
        raise InvoiceError(f"inn: ИНН должен состоять ровно из 14 цифр, получено {inn!r}")
    if not payer_name.strip():
        raise InvoiceError("name: укажите плательщика")
    catalogue = {r.code: r for r in conn.execute(select(products))}
    lines = []
    for code, quantity in items:
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvoiceError(f"item: количество {code!r} должно быть от 1 до {MAX_QUANTITY}")
        product = catalogue.get(code)
        if product is None or not product.active:
            raise InvoiceError(f"item: нет товара {code!r} в каталоге")
        if product.price is None:
            raise InvoiceError(f"item: у товара {code!r} не задана цена (tolom catalog set-price)")
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
        raise InvoiceError("не удалось выбрать свободный номер счёта")
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
    )


def cancel(conn: Connection, number: str, now: datetime | None = None) -> Invoice:
    """Cancel an unpaid invoice; a paid one is refused (its payment must be reversed first)."""
    invoice = get(conn, number)
    if invoice is None:
        raise InvoiceError(f"number: счёт {number} не найден")
    if invoice.status == "paid":
        raise InvoiceError(f"number: счёт {number} уже оплачен, отменить нельзя")
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
