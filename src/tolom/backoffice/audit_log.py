"""Reading the audit log: filters, keyset pages, one line, and its CSV export.

The log is append-only (`tolom.audit.record` writes it; the database refuses UPDATE and
DELETE), so this module only reads. Lines are shown newest first and paged by id (keyset:
`id < before`), never by OFFSET, so a page costs the same however deep it is.

Filters, all optional and combined with AND:
- actor: exact (`user:aida`), or a prefix when it ends with `:` (`apikey:`, `cli:`) or
  `*` (`user:ai*`);
- action: a prefix (`payment.` or `payment.reverse`);
- object type and object id: exact;
- business days (Asia/Bishkek) from and to, both included;
- address: exact, or a prefix when it ends with `*` (`10.0.*`).

A prefix is matched with LIKE on PostgreSQL (escaped, so `_` and `%` are plain characters;
an index on the column serves it) and with `substr` on SQLite, whose LIKE ignores the case
of ASCII letters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Engine, func, select

from tolom import audit
from tolom.backoffice import exports
from tolom.backoffice.users import User
from tolom.db.schema import audit_log
from tolom.timestamps import HOME_ZONE, as_utc

ZONE = HOME_ZONE
# One export holds at most this many lines; a wider filter is refused before the first byte.
MAX_EXPORT_ROWS = 100_000
EXPORT_PAGE_SIZE = 2000
# Who may download the log: those who check (auditor), account (accountant) or run
# (admin) the system. Reading it on the page is open to every signed-in user.
CSV_HEADER: Final = (
    "№",
    "Время (Бишкек)",
    "Кто",
    "Адрес",
    "Действие",
    "Тип объекта",
    "Объект",
    "До (JSON)",
    "После (JSON)",
)
# The longest value each filter may carry: the columns' own widths.
LIMITS: Final = {"actor": 80, "action": 64, "object_type": 32, "object_id": 64, "address": 64}


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    address: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The filter as the export's own audit line records it (set fields only)."""
        found = {
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "address": self.address,
        }
        return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True, slots=True)
class AuditLine:
    id: int
    at: datetime  # UTC
    actor: str
    address: str | None
    action: str
    object_type: str
    object_id: str
    before: str | None  # JSON as stored
    after: str | None


def may_export(user: User) -> bool:
    """Whether `user` may download the audit log (the role table: `users._CHANGES`)."""
    return user.may("audit_export")


def start_of_day(day: date) -> datetime:
    """The UTC moment a Bishkek day begins."""
    return datetime.combine(day, time(0), ZONE).astimezone(UTC)


def _prefix(column: Any, prefix: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        exact: ColumnElement[bool] = func.substr(column, 1, len(prefix)) == prefix
        return exact
    like: ColumnElement[bool] = column.startswith(prefix, autoescape=True)
    return like


def _exact_or_prefix(column: Any, value: str, dialect: str, *, colon: bool) -> ColumnElement[bool]:
    if value.endswith("*"):
        return _prefix(column, value[:-1], dialect)
    if colon and value.endswith(":"):
        return _prefix(column, value, dialect)
    result: ColumnElement[bool] = column == value
    return result


def _conditions(where: AuditFilter, dialect: str) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    c = audit_log.c
    if where.actor:
        found.append(_exact_or_prefix(c.actor, where.actor, dialect, colon=True))
    if where.action:
        found.append(_prefix(c.action, where.action, dialect))
    if where.object_type:
        found.append(c.object_type == where.object_type)
    if where.object_id:
        found.append(c.object_id == where.object_id)
    if where.date_from:
        found.append(c.at >= start_of_day(where.date_from))
    if where.date_to:
        found.append(c.at < start_of_day(where.date_to + timedelta(days=1)))
    if where.address:
        found.append(_exact_or_prefix(c.address, where.address, dialect, colon=False))
    return found


# A line's `at` is its transaction's start (CURRENT_TIMESTAMP) and its id is drawn when it
# is written; no transaction that writes to the log lasts this long.
_LONGEST_TRANSACTION = timedelta(days=1)


def _id_bounds(conn: Connection, where: AuditFilter) -> list[ColumnElement[bool]]:
    """Bounds on the id equivalent to a day range, found with two probes of the `at`
    index, so that the newest-first scan by id starts and stops at the range instead of
    walking every newer line first (ids and moments grow together, but the planner
    cannot know it).

    A line L whose transaction began more than a day before the range's start was written
    before the range's first transaction began, so every line of the range has a greater
    id; likewise every line of the range has a smaller id than a line whose transaction
    began more than a day after the range's end. The `at` conditions stay: the bounds
    only make the scan shorter, never the answer different."""
    found: list[ColumnElement[bool]] = []
    c = audit_log.c
    if where.date_from:
        early = start_of_day(where.date_from) - _LONGEST_TRANSACTION
        lower = conn.execute(
            select(c.id).where(c.at < early).order_by(c.at.desc()).limit(1)
        ).scalar()
        if lower is not None:
            found.append(c.id > lower)
    if where.date_to:
        late = start_of_day(where.date_to + timedelta(days=1)) + _LONGEST_TRANSACTION
        upper = conn.execute(select(c.id).where(c.at >= late).order_by(c.at).limit(1)).scalar()
        if upper is not None:
            found.append(c.id < upper)
    return found


def _where(conn: Connection, where: AuditFilter) -> list[ColumnElement[bool]]:
    return _conditions(where, conn.dialect.name) + _id_bounds(conn, where)


def _line(row: Any) -> AuditLine:
    return AuditLine(
        row.id,
        as_utc(row.at),
        row.actor,
        row.address,
        row.action,
        row.object_type,
        row.object_id,
        row.before,
        row.after,
    )


def search(
    conn: Connection, where: AuditFilter, *, before_id: int | None = None, limit: int = 50
) -> list[AuditLine]:
    """Lines matching `where`, newest first, with ids below `before_id` (the next page)."""
    query = select(audit_log).where(*_where(conn, where))
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    return [_line(r) for r in conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit))]


def by_id(conn: Connection, line_id: int) -> AuditLine | None:
    row = conn.execute(select(audit_log).where(audit_log.c.id == line_id)).first()
    return _line(row) if row else None


def newest_id(conn: Connection) -> int:
    """The id of the newest line (0 for an empty log): exports stop there."""
    return int(conn.execute(select(func.coalesce(func.max(audit_log.c.id), 0))).scalar_one())


def count(
    conn: Connection, where: AuditFilter, *, at_most: int, before_id: int | None = None
) -> int:
    """How many lines match (below `before_id`), counting no further than `at_most`."""
    query = select(audit_log.c.id).where(*_where(conn, where))
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    matching = query.limit(at_most).subquery()
    return int(conn.execute(select(func.count()).select_from(matching)).scalar_one())


@dataclass(frozen=True, slots=True)
class ExportStart:
    """An export that goes ahead: how many lines it holds, up to which id."""

    lines: int
    up_to_id: int


def start_export(
    conn: Connection,
    where: AuditFilter,
    *,
    user: User,
    address: str | None = None,
    limit: int = MAX_EXPORT_ROWS,
) -> ExportStart | None:
    """Decide an export of the lines matching `where` and write its own `audit.export`
    line; None (and no line) when more than `limit` lines match. The file holds the lines
    up to the newest one at this moment (not the export's own line, nor any written later):
    commit before the first byte is sent."""
    newest = newest_id(conn)
    found = count(conn, where, at_most=limit + 1, before_id=newest + 1)
    if found > limit:
        return None
    audit.record(
        conn,
        actor=f"user:{user.username}",
        action="audit.export",
        object_type="audit_log",
        object_id="csv",
        after={"filter": where.as_dict(), "lines": found, "up_to_id": newest},
        address=address,
    )
    return ExportStart(found, newest)


def lines(
    db: Connection | Engine,
    where: AuditFilter,
    *,
    before_id: int | None = None,
    page_size: int = EXPORT_PAGE_SIZE,
) -> Iterator[AuditLine]:
    """Every line matching `where` (below `before_id`), newest first, read a page at a
    time; given an Engine, each page in a transaction of its own (a long download holds
    none)."""
    before = before_id
    while True:
        if isinstance(db, Engine):
            with db.connect() as conn:
                page = search(conn, where, before_id=before, limit=page_size)
        else:
            page = search(db, where, before_id=before, limit=page_size)
        yield from page
        if len(page) < page_size:
            return
        before = page[-1].id


def _text(value: str | None) -> str:
    return "" if value is None else exports.neutralise(value)


def csv_fields(line: AuditLine) -> list[str]:
    return [
        str(line.id),
        line.at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S"),
        _text(line.actor),
        _text(line.address),
        _text(line.action),
        _text(line.object_type),
        _text(line.object_id),
        _text(line.before),
        _text(line.after),
    ]


def csv_chunks(found: Iterator[AuditLine]) -> Iterator[bytes]:
    """The export as the payments' CSV is written (BOM, `;`, CRLF), chunk by chunk."""
    return exports.csv_table_chunks(CSV_HEADER, (csv_fields(line) for line in found))


def filename(where: AuditFilter) -> str:
    first, last = where.date_from, where.date_to
    if first and last:
        span = f"{first.isoformat()}_{last.isoformat()}"
    elif first:
        span = f"from-{first.isoformat()}"
    elif last:
        span = f"to-{last.isoformat()}"
    else:
        span = "all"
    return f"audit-{span}.csv"


# --- one line, before and after -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of pretty JSON; `changed` when it shows a key whose value differs."""

    text: str
    changed: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    before: list[Segment]
    after: list[Segment]
    changed_keys: list[str]


_MISSING = object()


def parse(stored: str | None) -> Any:
    """The stored JSON as a value; text that is not JSON stays the text."""
    if stored is None:
        return None
    try:
        return json.loads(stored)
    except ValueError:
        return stored


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def _segments(value: Any, changed: set[str]) -> list[Segment]:
    if value is None:
        return []
    if not isinstance(value, dict) or not value:
        return [Segment(_pretty(value))]
    keys = sorted(value)
    found = [Segment("{\n")]
    for index, key in enumerate(keys):
        inner = _pretty(value[key]).replace("\n", "\n  ")
        comma = "," if index < len(keys) - 1 else ""
        found.append(Segment("  "))
        found.append(Segment(f"{json.dumps(key, ensure_ascii=False)}: {inner}", key in changed))
        found.append(Segment(f"{comma}\n"))
    found.append(Segment("}"))
    return found


def compare(line: AuditLine) -> Comparison:
    """Before and after as pretty JSON, the top-level keys whose values differ marked.

    A key present on one side only counts as changed (it appeared or went away)."""
    before, after = parse(line.before), parse(line.after)
    changed: list[str] = []
    if isinstance(before, dict) or isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        new = after if isinstance(after, dict) else {}
        changed = sorted(
            k for k in old.keys() | new.keys() if old.get(k, _MISSING) != new.get(k, _MISSING)
        )
    marked = set(changed)
    return Comparison(_segments(before, marked), _segments(after, marked), changed)


# The pages of objects the log names, where such a page exists.
OBJECT_PAGES: Final = {
    "payment": "/payments/",
    "customer": "/customers/",
    "invoice": "/invoices/",
    "agent": "/agents/",
    "user": "/users/",
    "order": "/orders/",
}


def object_types(conn: Connection) -> Sequence[str]:
    """The kinds of objects the filter offers: those with pages, and any seen in the
    newest lines (a short, bounded read)."""
    recent = select(audit_log.c.object_type).order_by(audit_log.c.id.desc()).limit(2000)
    seen = set(conn.execute(select(recent.subquery().c.object_type).distinct()).scalars())
    return sorted(seen | set(OBJECT_PAGES))
