"""What each line of a customer's statement records (the payment, reversal, charge or
refund behind it), gathered from the areas that wrote those entries.

Payments and billing each read back their own entries; this module may import both
(billing may not import payments: payments call billing when they are taken), so the
statement's lines are assembled here.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from tolom.billing import charges, orders
from tolom.ledger.statements import LineSource
from tolom.payments import records


def of_entries(conn: Connection, entry_ids: Iterable[int]) -> dict[int, LineSource]:
    """The source of each of these journal entries that a customer's statement can show
    (payments, reversals, charges and their refunds, order refunds), by entry id; an entry
    of another kind is absent."""
    ids = sorted(set(entry_ids))
    if not ids:
        return {}
    found = records.statement_sources(conn, ids)
    found.update(charges.statement_sources(conn, ids))
    found.update(orders.statement_sources(conn, ids))
    return found
