"""Renewing a signature: a new invoice for the same product, asked for by its holder.

The customer's cabinet offers it beside every signature issued to the customer's INN
(docs/customers.md#cabinet). Asking again while that invoice can still be paid gives the
same invoice (`invoices.open_invoice_for`), so a double click makes one invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from tolom.billing import catalog, invoices, orders
from tolom.billing.customers import Customer
from tolom.billing.orders import OrderError, OrderNotFound
from tolom.texts import N_


class NotRenewable(OrderError):
    """Only an issued signature is renewed, and only while its product is on sale."""


@dataclass(frozen=True, slots=True)
class Renewal:
    invoice: invoices.Invoice
    repeated: bool  # the open invoice of an earlier request: nothing was written


def renew_audited(
    conn: Connection,
    order_id: int,
    *,
    customer: Customer,
    validity_days: int,
    actor: str,
    address: str | None,
    now: datetime | None = None,
) -> Renewal:
    """An invoice for one more signature like order `order_id`, to the customer's name.

    Refused: OrderNotFound when the order is not this customer's; NotRenewable when it is
    not an issued signature or its product is no longer sold at a price."""
    now = now or datetime.now(UTC)
    order = orders.get(conn, order_id)
    if order is None or order.inn != customer.inn:
        raise OrderNotFound(N_("order.error.not_found"), order=order_id)
    if order.kind != "signature" or order.status != "issued":
        raise NotRenewable(N_("order.error.not_renewable"), order=order_id)
    product = catalog.get_product(conn, order.product_code)
    if product is None or not product.active or product.price is None:
        raise NotRenewable(N_("order.error.not_renewable"), order=order_id)
    items = [(order.product_code, 1)]
    earlier = invoices.open_invoice_for(
        conn, customer.inn, items, payer_name=customer.name, now=now
    )
    if earlier is not None:
        return Renewal(earlier, repeated=True)
    invoice = invoices.create_audited(
        conn,
        items=items,
        payer_name=customer.name,
        inn=customer.inn,
        validity_days=validity_days,
        actor=actor,
        address=address,
        now=now,
    )
    return Renewal(invoice, repeated=False)
