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
from tolom.ledger.statements import LineSource, StatementLine
from tolom.payments import records
from tolom.texts import N_, Texts

# A statement line by the kind of its entry.
LINE_TEXTS = {
    "payment": N_("customer.line.payment"),
    "reversal": N_("customer.line.reversal"),
    "charge": N_("customer.line.charge"),
    "charge_refund": N_("customer.line.charge_refund"),
    "order_refund": N_("customer.line.order_refund"),
}


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


def describe(t: Texts, line: StatementLine, source: LineSource | None) -> str:
    """A statement line in `t`'s language, from what its entry records; the entry's stored
    (Russian) description when its source is not one a statement knows. The back office's
    customer card and the customer's cabinet say lines alike."""
    if source is None or source.kind != line.entry_kind or source.kind not in LINE_TEXTS:
        return line.description
    text = t(
        LINE_TEXTS[source.kind],
        number=source.number,
        agent=source.agent or "",
        reference=source.reference or "",
        invoice=source.reference or "",
    )
    return f"{text}: {source.text}" if source.text else text
