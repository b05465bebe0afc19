"""The dashboard's figures: the money of the last 30 business days, today's and yesterday's
by agent and service, and what needs attention.

Each figure is one cheap query over an indexed range, so the page stays fast with millions
of payments: the accepted payments of the last 30 business days by day, agent and service
(`payments.day_totals`: closed days summed once and stored, the last two grouped live by
an index-only scan of `ix_payments_accepted_day`), the waiting charges (the partial `ix_charges_awaiting`), the
dead deliveries (`ix_deliveries_status`), the signatures expiring soon
(`ix_signature_orders_valid_until`) and the online applications awaiting identity
verification (`ix_applications_status`). The 30-day chart and the two days' tables are both
added up from those few hundred rows.

A payment's business day is its agent's local date (`payments.business_date`); agents,
the cash desk and the bank channel work in Asia/Bishkek, the company's calendar, so
"today" is today in Bishkek. Only accepted payments count: a reversed one is no longer
money received.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, bindparam, func, select

from tolom.billing import applications, orders
from tolom.db.schema import agents, charges, deliveries
from tolom.payments import day_totals


@dataclass(frozen=True, slots=True)
class Line:
    """One row of a totals table: an agent (by code) or a service (by code)."""

    code: str
    name: str  # the agent's name as stored; services are named by the page
    kind: str  # agent kind (gateway | cash_desk | bank), or "service"
    count: int
    total: int  # tyiyn


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    by_agent: list[Line]
    by_service: list[Line]

    @property
    def count(self) -> int:
        return sum(line.count for line in self.by_agent)

    @property
    def total(self) -> int:
        return sum(line.total for line in self.by_agent)


CHART_DAYS = 30  # the chart shows today and the 29 business days before it
CHART_SERVICES = ("sochi", "eds")  # in this order, bottom to top, in the chart and table


@dataclass(frozen=True, slots=True)
class Tally:
    """How many accepted payments, and their sum in tyiyn."""

    count: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class ChartDay:
    """One business day of the chart: its accepted payments per service."""

    day: date
    by_service: dict[str, Tally]  # every code of `Chart.services`, zero when none

    @property
    def count(self) -> int:
        return sum(tally.count for tally in self.by_service.values())

    @property
    def total(self) -> int:
        return sum(tally.total for tally in self.by_service.values())


@dataclass(frozen=True, slots=True)
class Chart:
    """The last CHART_DAYS business days, oldest first: the last one is today."""

    services: tuple[str, ...]
    days: list[ChartDay]

    @property
    def first(self) -> date:
        return self.days[0].day

    @property
    def last(self) -> date:
        return self.days[-1].day

    @property
    def count(self) -> int:
        return sum(day.count for day in self.days)

    @property
    def total(self) -> int:
        return sum(day.total for day in self.days)

    @property
    def busiest(self) -> ChartDay:
        """The day with the largest sum (the latest of equals)."""
        return max(reversed(self.days), key=lambda day: day.total)


@dataclass(frozen=True, slots=True)
class Dashboard:
    today: DayTotals
    yesterday: DayTotals
    awaiting_count: int
    awaiting_total: int  # tyiyn
    dead_deliveries: int
    expiring_signatures: int
    expiry_days: int
    chart: Chart | None = None  # None: not loaded (a page that shows no chart)
    applications_new: int = 0  # online applications awaiting identity verification


def business_today(now: datetime | None = None) -> date:
    """Today in the company's calendar (Asia/Bishkek)."""
    return orders.local_date(now or datetime.now(UTC))


# The agents' names, for the agents the day totals name; sandbox agents' pays never reach
# `payments` (payments.sandbox), and the filter says so.
_AGENTS = select(agents.c.id, agents.c.code, agents.c.name, agents.c.kind).where(
    agents.c.id.in_(bindparam("ids", expanding=True)), agents.c.sandbox.is_(False)
)
_AWAITING = select(func.count(), func.coalesce(func.sum(charges.c.amount), 0)).where(
    charges.c.status == "awaiting_payment"
)
_DEAD = select(func.count()).select_from(deliveries).where(deliveries.c.status == "dead")


def _day(day: date, rows: list[tuple[str, str, str, str, int, int]]) -> DayTotals:
    agent_totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    service_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for code, name, kind, service, count, total in rows:
        for bucket in (agent_totals[(code, name, kind)], service_totals[service]):
            bucket[0] += count
            bucket[1] += total
    by_agent = [Line(c, n, k, v[0], v[1]) for (c, n, k), v in agent_totals.items()]
    by_service = [Line(s, s, "service", v[0], v[1]) for s, v in service_totals.items()]
    # Largest first, as people scan these; the code breaks ties so the order is stable.
    by_agent.sort(key=lambda line: (-line.total, line.code))
    by_service.sort(key=lambda line: (-line.total, line.code))
    return DayTotals(day, by_agent, by_service)


def _chart(first: date, rows: dict[date, list[tuple[str, str, str, str, int, int]]]) -> Chart:
    """Every day from `first`, in order, with zeros where nothing was paid; a service not
    in CHART_SERVICES (one added later) is shown after them."""
    seen = {row[3] for day_rows in rows.values() for row in day_rows}
    services = CHART_SERVICES + tuple(sorted(seen - set(CHART_SERVICES)))
    days = []
    for offset in range(CHART_DAYS):
        day = first + timedelta(days=offset)
        sums = {service: [0, 0] for service in services}
        for _code, _name, _kind, service, count, total in rows.get(day, []):
            sums[service][0] += count
            sums[service][1] += total
        days.append(ChartDay(day, {s: Tally(c, t) for s, (c, t) in sums.items()}))
    return Chart(services, days)


def load(conn: Connection, *, today: date, expiry_days: int) -> Dashboard:
    """Every figure of the dashboard for the business day `today`."""
    yesterday = today - timedelta(days=1)
    first = today - timedelta(days=CHART_DAYS - 1)
    sums = day_totals.totals(conn, first, today, today=today)
    named = {
        int(r.id): (r.code, r.name, r.kind)
        for r in conn.execute(_AGENTS, {"ids": sorted({s.agent_id for s in sums})})
    }
    per_day: dict[date, list[tuple[str, str, str, str, int, int]]] = defaultdict(list)
    for s in sums:
        if s.agent_id in named:
            per_day[s.day].append((*named[s.agent_id], s.service, s.count, s.total))
    awaiting_count, awaiting_total = conn.execute(_AWAITING).one()
    return Dashboard(
        today=_day(today, per_day[today]),
        yesterday=_day(yesterday, per_day[yesterday]),
        awaiting_count=int(awaiting_count),
        awaiting_total=int(awaiting_total),
        dead_deliveries=int(conn.execute(_DEAD).scalar_one()),
        expiring_signatures=orders.expiring_count(conn, today, expiry_days),
        expiry_days=expiry_days,
        chart=_chart(first, per_day),
        applications_new=applications.count_new(conn),
    )
