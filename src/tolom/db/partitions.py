"""Monthly partitions of the request log and the outbox (PostgreSQL).

`gateway_requests` (by `received_at`), `events` (by `created_at`) and `deliveries` (by
`event_created_at`, its event's month, so an event and its deliveries leave together) are
partitioned by month of the home zone (Asia/Bishkek), with a DEFAULT partition each so
that an insert never fails for want of a month. `ensure` creates the coming months (the
worker runs it hourly); `tolom.archives` exports and drops old ones. On SQLite nothing is
partitioned and `ensure` does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from tolom.settings import Settings
from tolom.timestamps import HOME_ZONE

log = logging.getLogger("tolom.partitions")

# Each family is partitioned alike and archived together; the parent comes first.
FAMILIES: dict[str, tuple[tuple[str, str], ...]] = {
    "requests": (("gateway_requests", "received_at"),),
    "events": (("events", "created_at"), ("deliveries", "event_created_at")),
}
MONTHS_AHEAD = 3  # months beyond the current one that always exist
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tolom_partitions'))"


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month of the home zone."""

    year: int
    month: int

    @classmethod
    def of(cls, moment: datetime) -> Month:
        local = moment.astimezone(HOME_ZONE)
        return cls(local.year, local.month)

    @classmethod
    def parse(cls, value: str) -> Month:
        """`YYYY-MM`; ValueError otherwise."""
        year, _, month = value.partition("-")
        if len(year) != 4 or len(month) != 2 or not (year + month).isdigit():
            raise ValueError(value)
        if not 1 <= int(month) <= 12:
            raise ValueError(value)
        return cls(int(year), int(month))

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=HOME_ZONE)

    def end(self) -> datetime:
        return self.plus(1).start()

    def suffix(self) -> str:
        return f"y{self.year:04d}m{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def partition_name(table: str, month: Month | None) -> str:
    """`gateway_requests_y2026m01`; `gateway_requests_default` for None."""
    return f"{table}_{month.suffix() if month else 'default'}"


def _month_of_name(table: str, name: str) -> Month | None:
    suffix = name.removeprefix(f"{table}_")
    if len(suffix) == 8 and suffix[0] == "y" and suffix[5] == "m":
        return Month(int(suffix[1:5]), int(suffix[6:8]))
    return None


def create_sql(table: str, month: Month | None) -> str:
    """The DDL of one partition (idempotent)."""
    name = partition_name(table, month)
    if month is None:
        return f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} DEFAULT"
    return (
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES"
        f" FROM ('{month.start().isoformat()}') TO ('{month.end().isoformat()}')"
    )


def is_partitioned(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _exists(conn: Connection, name: str) -> bool:
    found = conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
    return bool(found.scalar_one())


def ensure(conn: Connection, now: datetime | None = None, ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create the current month's and the next `ahead` months' partitions that are
    missing (PostgreSQL; nothing elsewhere); the names created.

    Rows that already fell into DEFAULT for such a month are moved into it first (a
    partition cannot be created while DEFAULT holds rows of its range)."""
    if not is_partitioned(conn):
        return []
    current = Month.of(now or datetime.now(UTC))
    wanted = [current.plus(i) for i in range(ahead + 1)]
    missing = [
        (family, month)
        for family, tables in FAMILIES.items()
        for month in wanted
        if not all(_exists(conn, partition_name(t, month)) for t, _ in tables)
    ]
    if not missing:
        return []
    conn.execute(text(_LOCK))  # one creator at a time; held until commit
    created: list[str] = []
    for family, month in missing:
        created += _create_month(conn, FAMILIES[family], month)
    return created


def _create_month(conn: Connection, tables: Sequence[tuple[str, str]], month: Month) -> list[str]:
    """One family's month: set DEFAULT's rows of that month aside (children first, for the
    foreign key), create the partitions, put the rows back (parents first)."""
    bounds = {"a": month.start(), "b": month.end()}
    created: list[str] = []
    held: list[tuple[str, str]] = []
    for table, key in reversed(tables):
        if _exists(conn, partition_name(table, month)):
            continue
        default = partition_name(table, None)
        stray = conn.execute(
            text(f"SELECT count(*) FROM {default} WHERE {key} >= :a AND {key} < :b"),  # noqa: S608
            bounds,
        ).scalar_one()
        if stray:
            aside = f"tolom_aside_{table}"
            conn.execute(
                text(f"CREATE TEMP TABLE {aside} ON COMMIT DROP AS SELECT * FROM {default} LIMIT 0")  # noqa: S608
            )
            # The outbox is append-only: its trigger is lifted for this move only.
            conn.execute(text(f"ALTER TABLE {default} DISABLE TRIGGER USER"))
            conn.execute(
                text(
                    f"WITH moved AS (DELETE FROM {default} WHERE {key} >= :a AND {key} < :b"  # noqa: S608
                    f" RETURNING *) INSERT INTO {aside} SELECT * FROM moved"
                ),
                bounds,
            )
            conn.execute(text(f"ALTER TABLE {default} ENABLE TRIGGER USER"))
            held.append((table, aside))
            log.warning("moving %d row(s) of %s from %s into its month", stray, month, default)
    for table, _ in tables:
        name = partition_name(table, month)
        if not _exists(conn, name):
            conn.execute(text(create_sql(table, month)))
            created.append(name)
            log.info("partition %s created", name)
    for table, aside in reversed(held):
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM {aside}"))  # noqa: S608
    return created


def ensure_job(engine: Engine, settings: Settings) -> None:
    """The worker's hourly job: the coming months exist before their rows arrive."""
    with engine.begin() as conn:
        if is_partitioned(conn):
            # Creating a partition locks its parent: never queue behind a long transaction
            # (and so in front of every payment); the next hour tries again.
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
        created = ensure(conn)
    if created:
        log.info("partitions created: %s", ", ".join(created))


@dataclass(frozen=True, slots=True)
class Partition:
    table: str
    name: str
    month: Month | None  # None: DEFAULT (PostgreSQL) or no partitions (SQLite)
    rows: int
    size: int | None  # bytes on disk (PostgreSQL)


def partitions(conn: Connection) -> list[Partition]:
    """Every month of each partitioned table, with its rows (exact) and size."""
    found: list[Partition] = []
    for tables in FAMILIES.values():
        for table, key in tables:
            if is_partitioned(conn):
                names = conn.execute(
                    text(
                        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_inherits i"
                        " JOIN pg_class c ON c.oid = i.inhrelid"
                        " WHERE i.inhparent = to_regclass(:t) ORDER BY c.relname"
                    ),
                    {"t": table},
                ).all()
                for name, size in names:
                    rows = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
                    month = _month_of_name(table, name)
                    found.append(Partition(table, name, month, int(rows), int(size)))
            else:
                for month, rows in _sqlite_months(conn, table, key):
                    found.append(Partition(table, table, month, rows, None))
    return found


def _sqlite_months(conn: Connection, table: str, key: str) -> list[tuple[Month, int]]:
    # Stored as UTC; the home zone is UTC+6 all year.
    rows = conn.execute(
        text(
            f"SELECT strftime('%Y-%m', {key}, '+6 hours') AS m, count(*) FROM {table}"  # noqa: S608
            " GROUP BY m ORDER BY m"
        )
    ).all()
    return [(Month.parse(m), int(n)) for m, n in rows if m]
