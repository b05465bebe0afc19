"""Accepted payments per business day, agent and service, with closed days summed once.

The dashboard's 30-day chart and the agents pages' 30-day figures add up ~25 000 payments a
day at 10 million payments; grouping them on every request cost 200–400 ms. A closed day's
sums are therefore stored (`payment_day_totals`, the day listed in `payment_days_summed`)
the first time a reader needs them, and read from there afterwards; the last days are
always summed live.

The rule that keeps a stored day equal to the live sum:

- only a *closed* day is stored: at least two days before today in Bishkek, by both the
  caller's clock and the database's (`CLOSED_DAYS`), so no ordinary pay lands in it (an
  agent's business day is its local date, at most one day behind Bishkek);
- any change to a payment of a stored day deletes that day's rows in the same transaction,
  by a trigger on `payments` (migration 0018): a pay that arrives late with an old
  `txn_date`, a reversal, any other update or delete. The next reader sums the day again;
- storing and changing cannot miss each other: on PostgreSQL the summing transaction
  locks `payment_days_summed` against the trigger's DELETE (SHARE ROW EXCLUSIVE), so it
  waits for writers that already touched the table and sums after they commit, and a
  writer that comes later waits for it and then deletes what it stored; on SQLite every
  write transaction holds the database's write lock (BEGIN IMMEDIATE).

Sandbox agents never have payments here (`payments.sandbox`); readers exclude them by
joining the agents they show.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection, func, insert, literal, null, select, text, union_all
from sqlalchemy.exc import DBAPIError

from tolom.db.schema import payment_day_totals, payment_days_summed, payments

# A day is stored only when it is at least this many days before today (Bishkek).
CLOSED_DAYS = 2


@dataclass(frozen=True, slots=True)
class DayTotal:
    """The accepted payments of one business day, agent and service."""

    day: date
    agent_id: int
    service: str
    count: int
    total: int  # tyiyn


def last_closed(today: date) -> date:
    """The latest day that may be stored when today (Bishkek) is `today`."""
    return today - timedelta(days=CLOSED_DAYS)


def live(
    conn: Connection, days: Sequence[date] | tuple[date, date], agent_ids: Collection[int] | None
) -> list[DayTotal]:
    """The sums grouped from `payments` now: for the listed days, or a (first, last) range
    given as a tuple."""
    query = select(
        payments.c.business_date,
        payments.c.agent_id,
        payments.c.service,
        func.count().label("n"),
        func.sum(payments.c.amount).label("total"),
    ).where(payments.c.status == "accepted")
    if isinstance(days, tuple):
        query = query.where(payments.c.business_date.between(days[0], days[1]))
    else:
        query = query.where(payments.c.business_date.in_(list(days)))
    if agent_ids is not None:
        query = query.where(payments.c.agent_id.in_(list(agent_ids)))
    query = query.group_by(payments.c.business_date, payments.c.agent_id, payments.c.service)
    return [
        DayTotal(r.business_date, int(r.agent_id), r.service, int(r.n), int(r.total))
        for r in conn.execute(query)
    ]


def totals(
    conn: Connection,
    first: date,
    last: date,
    *,
    today: date,
    agent_ids: Collection[int] | None = None,
) -> list[DayTotal]:
    """Every (day, agent, service) sum of accepted payments from `first` to `last`, equal to
    `live` over that range; `today` is today in Bishkek by the caller's clock.

    Closed days come from the stored sums; a closed day not stored yet is summed and stored
    (a write: `conn` must be a connection of reads, whose open transaction is committed
    first). Where storing fails (a read-only database, a lock not granted in time), the
    day is summed live and nothing is stored."""
    closed_to = min(last, last_closed(today))
    found: list[DayTotal] = []
    if first <= closed_to:
        summed, stored = _stored(conn, first, closed_to, agent_ids)
        found.extend(stored)
        span = (closed_to - first).days + 1
        missing = [d for d in (first + timedelta(days=i) for i in range(span)) if d not in summed]
        if missing:
            found.extend(_sum_and_store(conn, missing, agent_ids))
    if last > closed_to:
        found.extend(live(conn, (max(first, closed_to + timedelta(days=1)), last), agent_ids))
    return found


def _stored(
    conn: Connection, first: date, last: date, agent_ids: Collection[int] | None
) -> tuple[set[date], list[DayTotal]]:
    """The stored days in the range and their sums, read in one statement (one snapshot)."""
    marks = select(
        payment_days_summed.c.business_date,
        null().label("agent_id"),
        null().label("service"),
        literal(0).label("n"),
        literal(0).label("total"),
    ).where(payment_days_summed.c.business_date.between(first, last))
    sums = select(
        payment_day_totals.c.business_date,
        payment_day_totals.c.agent_id,
        payment_day_totals.c.service,
        payment_day_totals.c.count,
        payment_day_totals.c.total,
    ).where(payment_day_totals.c.business_date.between(first, last))
    if agent_ids is not None:
        sums = sums.where(payment_day_totals.c.agent_id.in_(list(agent_ids)))
    summed: set[date] = set()
    stored: list[DayTotal] = []
    for row in conn.execute(union_all(marks, sums)):
        day = row[0] if isinstance(row[0], date) else date.fromisoformat(row[0])
        if row[1] is None:
            summed.add(day)
        else:
            stored.append(DayTotal(day, int(row[1]), row[2], int(row[3]), int(row[4])))
    # A day's sums without its mark cannot be: the trigger deletes both together.
    return summed, [s for s in stored if s.day in summed]


def _database_today(conn: Connection) -> date:
    if conn.dialect.name == "postgresql":
        today: date = conn.execute(
            text("SELECT (now() AT TIME ZONE 'Asia/Bishkek')::date")
        ).scalar_one()
        return today
    return date.fromisoformat(conn.execute(text("SELECT date('now', '+6 hours')")).scalar_one())


def _sum_and_store(
    conn: Connection, missing: list[date], agent_ids: Collection[int] | None
) -> list[DayTotal]:
    """Sum the missing days of every agent; store the closed ones; return the asked agents'."""
    if conn.in_transaction():
        conn.commit()  # a connection of reads: nothing of the caller's is pending
    try:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("LOCK TABLE payment_days_summed IN SHARE ROW EXCLUSIVE MODE"))
            closed_to = last_closed(_database_today(conn))
            already = set(
                conn.execute(
                    select(payment_days_summed.c.business_date).where(
                        payment_days_summed.c.business_date.in_(missing)
                    )
                ).scalars()
            )
            summed = live(conn, missing, None)
            storable = [d for d in missing if d <= closed_to and d not in already]
            if storable:
                conn.execute(insert(payment_days_summed), [{"business_date": d} for d in storable])
                rows = [s for s in summed if s.day in set(storable)]
                if rows:
                    conn.execute(
                        insert(payment_day_totals),
                        [
                            {
                                "business_date": s.day,
                                "agent_id": s.agent_id,
                                "service": s.service,
                                "count": s.count,
                                "total": s.total,
                            }
                            for s in rows
                        ],
                    )
    except DBAPIError:
        if conn.in_transaction():
            conn.rollback()
        summed = live(conn, missing, agent_ids)
        if conn.in_transaction():
            conn.commit()
        return summed
    if agent_ids is None:
        return summed
    wanted = set(agent_ids)
    return [s for s in summed if s.agent_id in wanted]
