"""The agents pages' figures: what each gateway agent brought in, and how its requests fared.

A payment's business day is its agent's local date (`payments.business_date`), so each
agent's "today" is today in its own time zone. Every figure is a bounded, indexed query
over the agents of one page (never over all payments):

- payments: at most 31 business days for the page's agents, by agent and day
  (`payments.day_totals`: closed days summed once and stored, the last two grouped live);
  accepted payments only, a reversed one is no longer money received;
- requests: the request log since the start of yesterday in the agents' zone
  (`ix_gateway_requests_received`), one query per distinct start of day (agents in the
  same zone share one): the last request and the refusals of today. Older requests are
  not looked at, so "last request" means "in the last two business days".

A sandbox agent (`payments.sandbox`) never has a payment here (its pays live in
`sandbox_payments`), so its money figures are zero; its requests are its own and count.

A request counts as refused when it was answered with an HTTP error (401/403: disabled,
address not allowed; 4xx from the REST gateway) or with an OSMP result other than 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, case, func, or_, select

from tolom.agents.service import GATEWAY
from tolom.db.schema import agents, gateway_requests
from tolom.payments import day_totals
from tolom.timestamps import HOME_ZONE

MONTH_DAYS = 30


@dataclass(frozen=True, slots=True)
class Tally:
    """How many accepted payments, and their sum in tyiyn."""

    count: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Figures:
    """One agent's figures; days are business days in the agent's zone."""

    today: date
    on_today: Tally = field(default_factory=Tally)
    on_yesterday: Tally = field(default_factory=Tally)
    last_30_days: Tally = field(default_factory=Tally)  # today and the 29 days before
    last_request: datetime | None = None  # since the start of yesterday
    requests_today: int = 0
    refused_today: int = 0

    @property
    def yesterday(self) -> date:
        return self.today - timedelta(days=1)

    @property
    def month_from(self) -> date:
        return self.today - timedelta(days=MONTH_DAYS - 1)


@dataclass(frozen=True, slots=True)
class Row:
    """An agent of the list (a gateway agent: the cash desk and bank are channels)."""

    id: int
    code: str
    name: str
    enabled: bool
    allowed_networks: str  # as stored: "*" or CIDRs, comma-separated
    timezone: str
    cancel_window_days: int
    sandbox: bool = False  # a test agent: the list marks it; it never has real payments

    @property
    def networks(self) -> list[str]:
        return [] if self.allowed_networks == "*" else self.allowed_networks.split(",")

    @property
    def any_address(self) -> bool:
        return self.allowed_networks == "*"


def local_today(zone: ZoneInfo, now: datetime) -> date:
    """The business day that is today in `zone`."""
    return now.astimezone(zone).date()


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """The moment (UTC) a local day begins in `zone`."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def gateway_agents(
    conn: Connection, *, after: str | None, limit: int, code: str | None = None
) -> list[Row]:
    """Gateway agents by code, `limit` of them after the code `after` (a keyset page), or
    the one with `code`."""
    query = (
        select(
            agents.c.id,
            agents.c.code,
            agents.c.name,
            agents.c.enabled,
            agents.c.allowed_networks,
            agents.c.timezone,
            agents.c.cancel_window_days,
            agents.c.sandbox,
        )
        .where(agents.c.kind == GATEWAY)
        .order_by(agents.c.code)
        .limit(limit)
    )
    if after is not None:
        query = query.where(agents.c.code > after)
    if code is not None:
        query = query.where(agents.c.code == code)
    return [
        Row(
            int(r.id),
            r.code,
            r.name,
            bool(r.enabled),
            r.allowed_networks,
            r.timezone,
            int(r.cancel_window_days),
            bool(r.sandbox),
        )
        for r in conn.execute(query)
    ]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, OSError):  # stored zones are checked when set; be safe anyway
        return HOME_ZONE


def of_agents(
    conn: Connection, zones: Sequence[tuple[int, str]], now: datetime
) -> dict[int, Figures]:
    """The figures of the agents given as (id, time zone name) at the moment `now`."""
    if not zones:
        return {}
    today = {agent_id: local_today(_zone(name), now) for agent_id, name in zones}
    ids = list(today)
    per_day: dict[int, dict[date, Tally]] = defaultdict(dict)
    sums = day_totals.totals(
        conn,
        min(today.values()) - timedelta(days=MONTH_DAYS - 1),
        max(today.values()),
        today=local_today(HOME_ZONE, now),
        agent_ids=ids,
    )
    for s in sums:
        was = per_day[s.agent_id].get(s.day, Tally())
        per_day[s.agent_id][s.day] = Tally(was.count + s.count, was.total + s.total)

    requests = _requests(conn, zones, today)
    found = {}
    for agent_id, day in today.items():
        days = per_day.get(agent_id, {})
        month_from = day - timedelta(days=MONTH_DAYS - 1)
        month = [t for d, t in days.items() if month_from <= d <= day]
        last, asked, refused = requests.get(agent_id, (None, 0, 0))
        found[agent_id] = Figures(
            today=day,
            on_today=days.get(day, Tally()),
            on_yesterday=days.get(day - timedelta(days=1), Tally()),
            last_30_days=Tally(sum(t.count for t in month), sum(t.total for t in month)),
            last_request=last,
            requests_today=asked,
            refused_today=refused,
        )
    return found


_REFUSED = or_(
    gateway_requests.c.http_status >= 400,
    and_(gateway_requests.c.result.is_not(None), gateway_requests.c.result != 0),
)


def _requests(
    conn: Connection, zones: Sequence[tuple[int, str]], today: dict[int, date]
) -> dict[int, tuple[datetime | None, int, int]]:
    """(last request since yesterday began, requests today, refused today) per agent."""
    by_start: dict[tuple[datetime, datetime], list[int]] = defaultdict(list)
    for agent_id, name in zones:
        zone = _zone(name)
        day = today[agent_id]
        by_start[(_day_start(day - timedelta(days=1), zone), _day_start(day, zone))].append(
            agent_id
        )
    found: dict[int, tuple[datetime | None, int, int]] = {}
    for (since, today_start), ids in by_start.items():
        is_today = gateway_requests.c.received_at >= today_start
        query = (
            select(
                gateway_requests.c.agent_id,
                func.max(gateway_requests.c.received_at).label("last"),
                func.sum(case((is_today, 1), else_=0)).label("asked"),
                func.sum(case((and_(is_today, _REFUSED), 1), else_=0)).label("refused"),
            )
            .where(gateway_requests.c.received_at >= since, gateway_requests.c.agent_id.in_(ids))
            .group_by(gateway_requests.c.agent_id)
        )
        for row in conn.execute(query):
            found[int(row.agent_id)] = (row.last, int(row.asked or 0), int(row.refused or 0))
    return found
