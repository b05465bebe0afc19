"""The payments search's keyset pages, with and without business days asked for."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from tests.factories import Gateway, add_customer
from tolom.payments import records


def _all_pages(engine: Engine, where: records.PaymentFilter) -> list[int]:
    seen: list[int] = []
    before: int | None = None
    while True:
        with engine.connect() as conn:
            page = records.search(conn, where, before_id=before, limit=2)
        seen.extend(r.id for r in page)
        if len(page) < 2:
            return seen
        before = page[-1].id


def test_pages_walk_every_payment_once_in_order(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    # Made in this order, on these days: a later payment may be of an earlier day.
    made = {}
    for txn, day in (
        ("1", "20261120"),
        ("2", "20261121"),
        ("3", "20261119"),
        ("4", "20261121"),
        ("5", "20261120"),
        ("6", "20261118"),
    ):
        answer = gateway.pay("sochi", inn, "1.00", txn_id=txn, txn_date=f"{day}120000")
        made[int(answer["prv_txn"])] = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    everything = _all_pages(engine, records.PaymentFilter())
    assert everything == sorted(made, reverse=True)  # newest first
    days = records.PaymentFilter(date_from=date(2026, 11, 19), date_to=date(2026, 11, 21))
    in_range = _all_pages(engine, days)
    expected = sorted(
        (i for i, d in made.items() if date(2026, 11, 19) <= d <= date(2026, 11, 21)),
        key=lambda i: (made[i], i),
        reverse=True,
    )
    assert in_range == expected and len(set(in_range)) == 5  # by day, then newest: no repeats
