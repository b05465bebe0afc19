"""What a signed-in customer sees of their own account, read from the areas that own it:
the balance and the reports waiting for money (billing.charges), the statement with the
source of each line (backoffice.statement_sources), invoices, and signature orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection

from tolom.backoffice import statement_sources
from tolom.billing import charges, customers, invoices, orders
from tolom.billing.customers import Customer
from tolom.ledger.statements import LineSource, Statement

INVOICES_SHOWN = 20
ORDERS_SHOWN = 50
STATEMENT_LINES = 500


@dataclass(frozen=True, slots=True)
class Overview:
    customer: Customer
    balance: int  # tyiyn
    awaiting: list[charges.Awaiting]
    invoices: list[invoices.Invoice]
    orders: list[orders.Order]
    statement: Statement
    sources: dict[int, LineSource] = field(default_factory=dict)  # by journal entry id

    @property
    def missing(self) -> int:
        """The least top-up that releases every waiting report (0: none waits)."""
        return self.awaiting[-1].missing if self.awaiting else 0


def load(conn: Connection, customer: Customer, first: date, last: date) -> Overview:
    """The cabinet's page for `customer`, with the statement over the days first–last."""
    balance = customers.balance(conn, customer)
    statement = customers.statement(conn, customer, first, last, limit=STATEMENT_LINES)
    return Overview(
        customer=customer,
        balance=balance,
        awaiting=charges.awaiting(conn, customer.inn, balance),
        invoices=invoices.search(conn, inn=customer.inn, limit=INVOICES_SHOWN),
        orders=orders.list_orders(conn, inn=customer.inn, limit=ORDERS_SHOWN),
        statement=statement,
        sources=statement_sources.of_entries(conn, [x.entry_id for x in statement.lines]),
    )
