"""Importing an agent's registry for one business day, and matching it at once.

In one transaction: the day's row is locked (imports of one agent-day queue up; a closed
day refuses), the file is stored with its lines and matched, and an audit line written,
so a registry is either fully in, matched and audited, or not in at all. A file already
imported as the day's registry changes nothing (same SHA-256 as the current one); a
different file for the day supersedes the current one, which is kept as history (an
earlier version imported again becomes current again, as a new registry).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, insert, select, text, update

from tolom import audit
from tolom.agents import service as agents
from tolom.agents.service import GATEWAY, Agent
from tolom.db.schema import reconciliation_days, registries, registry_lines
from tolom.reconciliation import formats, matching
from tolom.reconciliation.matching import Summary
from tolom.reconciliation.parsing import Line, RegistryError, parse

MAX_FILE_BYTES = 256 * 1024 * 1024
BATCH_TIMEOUT_MS = 600_000
_COPY_CHUNK = 20_000

Progress = Callable[[str, int], None]  # (stage, lines so far): parse, store, match, done


class DayClosed(RegistryError):
    """The agent's day is closed: only an admin's reopening lets a registry in again."""


@dataclass(frozen=True, slots=True)
class Imported:
    registry_id: int
    agent: str
    business_date: date
    lines: int
    total: int
    summary: Summary
    replayed: bool = False  # this very file was the day's registry already: nothing changed
    superseded: int | None = None  # the registry this one replaced


def agent_for_registry(conn: Connection, code: str) -> Agent:
    agent = agents.load(conn, code)
    if agent is None:
        raise RegistryError(f"нет агента с кодом «{code[:32]}»")
    return agent


def _business_day(lines: Sequence[Line], day: date | None) -> date:
    """The day the registry lists: the given one, which every line must be on, or the one
    day all its lines share."""
    if day is not None:
        for line in lines:
            if line.business_date != day:
                raise RegistryError(
                    f"платёж за {line.business_date:%d.%m.%Y} (по времени агента), а реестр "
                    f"за {day:%d.%m.%Y}",
                    line=line.line_no,
                    field="date",
                )
        return day
    days = sorted({line.business_date for line in lines})
    if not days:
        raise RegistryError("в реестре нет платежей: укажите день, за который он")
    if len(days) > 1:
        listed = ", ".join(f"{d:%d.%m.%Y}" for d in days[:5])
        raise RegistryError(f"в реестре платежи за разные дни ({listed}); укажите день")
    return days[0]


def _lock_day(conn: Connection, agent_id: int, day: date) -> str:
    """The day's state, its row locked for the rest of the transaction (made if new)."""
    key = {"agent_id": agent_id, "business_date": day}
    found = conn.execute(
        select(reconciliation_days.c.state).filter_by(**key).with_for_update()
    ).scalar_one_or_none()
    if found is not None:
        return str(found)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(reconciliation_days).values(**key).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(reconciliation_days).values(**key).on_conflict_do_nothing())
    return str(
        conn.execute(
            select(reconciliation_days.c.state).filter_by(**key).with_for_update()
        ).scalar_one()
    )


def _store_lines(conn: Connection, registry_id: int, lines: Sequence[Line]) -> None:
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            copy_sql = (
                "COPY registry_lines (registry_id, line_no, txn_id, occurred_at, "
                "business_date, account, amount) FROM STDIN"
            )
            with cursor.copy(copy_sql) as copy:
                buffer = io.StringIO()
                for index, line in enumerate(lines, start=1):
                    buffer.write(
                        f"{registry_id}\t{line.line_no}\t{_copy_text(line.txn_id)}\t"
                        f"{line.occurred_at}\t{line.business_date.isoformat()}\t"
                        f"{_copy_text(line.account)}\t{line.amount}\n"
                    )
                    if index % _COPY_CHUNK == 0:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
        return
    rows = [
        {
            "registry_id": registry_id,
            "line_no": line.line_no,
            "txn_id": line.txn_id,
            "occurred_at": datetime.fromisoformat(line.occurred_at).astimezone(UTC),
            "business_date": line.business_date,
            "account": line.account,
            "amount": line.amount,
        }
        for line in lines
    ]
    for start in range(0, len(rows), _COPY_CHUNK):
        conn.execute(insert(registry_lines), rows[start : start + _COPY_CHUNK])


def _copy_text(value: str) -> str:
    """A value safe in COPY's text format (the parser already refused control characters)."""
    return value.replace("\\", "\\\\")


def _summary_of(row_summary: str | None) -> Summary:
    assert row_summary is not None
    return Summary.from_json(json.loads(row_summary))


def import_registry(
    engine: Engine,
    agent_code: str,
    content: bytes,
    *,
    file_name: str,
    actor: str,
    day: date | None = None,
    address: str | None = None,
    progress: Progress | None = None,
) -> Imported:
    """Parse, store and match a registry; RegistryError (nothing imported) when it is bad."""
    say = progress or (lambda _stage, _lines: None)
    if len(content) > MAX_FILE_BYTES:
        raise RegistryError(f"файл больше {MAX_FILE_BYTES // (1024 * 1024)} МБ")
    digest = hashlib.sha256(content).hexdigest()
    with engine.connect() as conn:
        agent = agent_for_registry(conn, agent_code)
        fmt = formats.load(conn, agent.id)
        same = conn.execute(
            select(registries).where(
                registries.c.agent_id == agent.id,
                registries.c.sha256 == digest,
                registries.c.state == "current",
            )
        ).first()
    if same is not None and day in (None, same.business_date):
        # This very file is its day's registry already: answered without reading it again.
        return Imported(
            same.id,
            agent.code,
            same.business_date,
            same.line_count,
            same.total_amount,
            _summary_of(same.summary),
            replayed=True,
        )
    say("parse", 0)
    parsed = parse(
        content,
        fmt,
        agent.timezone,
        gateway=agent.kind == GATEWAY,
        progress=lambda lines: say("parse", lines),
    )
    business_day = _business_day(parsed.lines, day)
    name = (file_name or "registry").strip()[:200] or "registry"

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A batch job, not a payment: a million lines may take longer than the payments'
            # statement timeout, and an import of the same day may wait for this one.
            conn.execute(text(f"SET LOCAL statement_timeout = {BATCH_TIMEOUT_MS}"))
            conn.execute(text(f"SET LOCAL lock_timeout = {BATCH_TIMEOUT_MS}"))
            # Matching hashes a million txn_ids on each side: in memory, not in batches on disk.
            conn.execute(text("SET LOCAL work_mem = '256MB'"))
        state = _lock_day(conn, agent.id, business_day)
        of_day = (registries.c.agent_id == agent.id) & (registries.c.business_date == business_day)
        current = conn.execute(
            select(registries.c.id, registries.c.sha256, registries.c.summary).where(
                of_day, registries.c.state == "current"
            )
        ).one_or_none()
        if current is not None and current.sha256 == digest:
            return Imported(
                current.id,
                agent.code,
                business_day,
                len(parsed.lines),
                parsed.total,
                _summary_of(current.summary),
                replayed=True,
            )
        if state == "closed":  # the same file again is answered above, even then
            raise DayClosed(
                f"день {business_day:%d.%m.%Y} агента {agent.code} закрыт; "
                "переоткрыть его может администратор"
            )
        if current is not None:
            conn.execute(
                update(registries).where(registries.c.id == current.id).values(state="superseded")
            )
        registry_id = int(
            conn.execute(
                insert(registries)
                .values(
                    agent_id=agent.id,
                    business_date=business_day,
                    sha256=digest,
                    file_name=name,
                    kind=fmt.kind,
                    line_count=len(parsed.lines),
                    total_amount=parsed.total,
                    state="current",
                    imported_by=actor[:80],
                )
                .returning(registries.c.id)
            ).scalar_one()
        )
        say("store", len(parsed.lines))
        _store_lines(conn, registry_id, parsed.lines)
        if conn.dialect.name == "postgresql" and len(parsed.lines) >= 10_000:
            # Fresh statistics, or the planner matches a million lines it thinks are none.
            conn.execute(text("ANALYZE registry_lines"))
        if current is not None:
            conn.execute(
                update(registries)
                .where(registries.c.id == current.id)
                .values(superseded_by=registry_id)
            )
        say("match", len(parsed.lines))
        summary = matching.run(
            conn,
            registry_id=registry_id,
            agent_id=agent.id,
            day=business_day,
            their_count=len(parsed.lines),
            their_amount=parsed.total,
        )
        conn.execute(
            update(registries)
            .where(registries.c.id == registry_id)
            .values(summary=json.dumps(summary.to_json()))
        )
        audit.record(
            conn,
            actor=actor,
            action="registry.import",
            object_type="registry",
            object_id=registry_id,
            before=None if current is None else {"registry": current.id},
            after={
                "agent": agent.code,
                "day": business_day.isoformat(),
                "file": name,
                "sha256": digest,
                "lines": len(parsed.lines),
                "total": parsed.total,
                "discrepancies": summary.discrepancy_count,
                "at": datetime.now(UTC).isoformat(),
            },
            address=address,
        )
    return Imported(
        registry_id,
        agent.code,
        business_day,
        len(parsed.lines),
        parsed.total,
        summary,
        superseded=None if current is None else int(current.id),
    )
