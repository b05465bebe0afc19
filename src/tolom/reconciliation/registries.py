"""Importing an agent's registry for one business day, and matching it at once.

A registry is either fully in, matched and audited, or not in at all. A file already
imported as the day's registry changes nothing (same SHA-256 as the current one); a
different file for the day supersedes the current one, which is kept as history (an
earlier version imported again becomes current again, as a new registry).

PostgreSQL: one transaction. The day's row is locked (imports of one agent-day queue up; a
closed day refuses), the file is stored with its lines (COPY) and matched, and an audit
line written. Pays are not held up: they touch none of those rows.

SQLite: a write transaction locks the whole database, so one long transaction would stop
every payment for the length of the import (and its lock wait, TOLOM_LOCK_TIMEOUT_MS, is
short). The lines are staged and matched in TEMP tables of the import's own connection,
which take no write lock (`matching.run_staged`); then the registry is written in short
write transactions of `_WRITE_CHUNK` rows, under a registry row that no reader counts yet
(state `superseded`, no summary: every reader goes through the current registry), and
made current in one last short transaction that also locks the day, supersedes the old
registry and writes the audit line. Until then the registry is invisible; an import that
fails half-way deletes what it wrote, and one whose process died is swept by the next
import after `_ABANDONED` (see `_sweep_abandoned`).
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, literal_column, select, text, update

from tolom import audit
from tolom.agents import service as agents
from tolom.agents.service import GATEWAY, Agent
from tolom.db.schema import discrepancies, reconciliation_days, registries, registry_lines
from tolom.reconciliation import formats, matching
from tolom.reconciliation.matching import Summary
from tolom.reconciliation.parsing import Line, RegistryError
from tolom.reconciliation.reading import parse
from tolom.texts import N_

MAX_FILE_BYTES = 256 * 1024 * 1024
BATCH_TIMEOUT_MS = 600_000
_COPY_CHUNK = 20_000
# SQLite: rows per write transaction (a few tens of milliseconds of the write lock), and
# the age after which a registry row without a summary is an import whose process died.
_WRITE_CHUNK = 5_000
_ABANDONED = timedelta(hours=1)


def too_large_refusal(limit: int = MAX_FILE_BYTES) -> RegistryError:
    """Why a file over `limit` bytes is refused unread: the same words from the API, the
    CLI and the watched folder."""
    megabyte = 1024 * 1024
    if limit % megabyte == 0:
        return RegistryError(N_("registry.error.too_large_mb"), mb=limit // megabyte)
    return RegistryError.plural("registry.error.too_large_bytes", limit, count=limit)


def too_large(limit: int = MAX_FILE_BYTES, language: str | None = None) -> str:
    """`too_large_refusal` as text (Russian unless `language` says otherwise)."""
    return too_large_refusal(limit).said(language)


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
    if agent is None or agent.sandbox:  # a sandbox agent's pays are never reconciled
        raise RegistryError(N_("reconciliation.error.no_agent"), code=code[:32])
    return agent


def _business_day(lines: Sequence[Line], day: date | None) -> date:
    """The day the registry lists: the given one, which every line must be on, or the one
    day all its lines share."""
    if day is not None:
        for line in lines:
            if line.business_date != day:
                raise RegistryError(
                    N_("registry.error.other_day"),
                    line=line.line_no,
                    field="date",
                    paid=f"{line.business_date:%d.%m.%Y}",
                    day=f"{day:%d.%m.%Y}",
                )
        return day
    days = sorted({line.business_date for line in lines})
    if not days:
        raise RegistryError(N_("registry.error.no_day"))
    if len(days) > 1:
        listed = ", ".join(f"{d:%d.%m.%Y}" for d in days[:5])
        raise RegistryError(N_("registry.error.many_days"), days=listed)
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


def _insert_registry(
    conn: Connection,
    *,
    agent_id: int,
    day: date,
    digest: str,
    name: str,
    kind: str,
    lines: int,
    total: int,
    state: str,
    actor: str,
) -> int:
    """The registry's row (its lines go in apart), on either database's road; its id."""
    return int(
        conn.execute(
            insert(registries)
            .values(
                agent_id=agent_id,
                business_date=day,
                sha256=digest,
                file_name=name,
                kind=kind,
                line_count=lines,
                total_amount=total,
                state=state,
                imported_by=actor[:80],
            )
            .returning(registries.c.id)
        ).scalar_one()
    )


def _audit_import(
    conn: Connection,
    actor: str,
    address: str | None,
    registry_id: int,
    current: Any,
    facts: dict[str, Any],
) -> None:
    """The `registry.import` audit line, on either database's road."""
    audit.record(
        conn,
        actor=actor,
        action="registry.import",
        object_type="registry",
        object_id=registry_id,
        before=None if current is None else {"registry": current.id},
        after={**facts, "at": datetime.now(UTC).isoformat()},
        address=address,
    )


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
        raise too_large_refusal()
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
    if engine.dialect.name == "sqlite":
        return _import_staged(
            engine,
            agent,
            fmt.kind,
            parsed.lines,
            parsed.total,
            day=business_day,
            digest=digest,
            name=name,
            actor=actor,
            address=address,
            say=say,
        )

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
            raise _closed(agent, business_day)
        if current is not None:
            conn.execute(
                update(registries).where(registries.c.id == current.id).values(state="superseded")
            )
        registry_id = _insert_registry(
            conn,
            agent_id=agent.id,
            day=business_day,
            digest=digest,
            name=name,
            kind=fmt.kind,
            lines=len(parsed.lines),
            total=parsed.total,
            state="current",
            actor=actor,
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
        _audit_import(
            conn,
            actor,
            address,
            registry_id,
            current,
            {
                "agent": agent.code,
                "day": business_day.isoformat(),
                "file": name,
                "sha256": digest,
                "lines": len(parsed.lines),
                "total": parsed.total,
                "discrepancies": summary.discrepancy_count,
            },
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


# --- SQLite: staged in TEMP tables, written in short transactions, made current at once --


def _import_staged(
    engine: Engine,
    agent: Agent,
    kind: str,
    lines: Sequence[Line],
    total: int,
    *,
    day: date,
    digest: str,
    name: str,
    actor: str,
    address: str | None,
    say: Progress,
) -> Imported:
    """The SQLite import: no write transaction longer than `_WRITE_CHUNK` rows."""
    _sweep_abandoned(engine)
    with engine.connect() as conn:  # a closed day refuses before any work
        state = conn.execute(
            select(reconciliation_days.c.state).where(
                reconciliation_days.c.agent_id == agent.id,
                reconciliation_days.c.business_date == day,
            )
        ).scalar_one_or_none()
    if state == "closed":
        raise _closed(agent, day)
    pooled = engine.raw_connection()
    db = pooled.driver_connection
    assert isinstance(db, sqlite3.Connection)
    registry_id: int | None = None
    busy_ms = int(db.execute("PRAGMA busy_timeout").fetchone()[0])
    try:
        # A batch job waits for the write lock behind payments as long as it takes.
        db.execute(f"PRAGMA busy_timeout = {BATCH_TIMEOUT_MS}")
        say("store", len(lines))
        _stage(db, lines)
        say("match", len(lines))
        summary = matching.run_staged(
            db, agent_id=agent.id, day=day, their_count=len(lines), their_amount=total
        )
        say("store", len(lines))
        with _batch_transaction(engine) as conn:
            registry_id = _insert_registry(
                conn,
                agent_id=agent.id,
                day=day,
                digest=digest,
                name=name,
                kind=kind,
                lines=len(lines),
                total=total,
                state="superseded",  # not counted by any reader until made current
                actor=actor,
            )
        _copy_in_chunks(
            db,
            _COPY_LINES,
            len(lines),
            {"registry_id": registry_id, "day": day.isoformat()},
            lambda written: say("store", written),
        )
        found = int(db.execute("SELECT count(*) FROM temp.registry_found").fetchone()[0])
        _copy_in_chunks(db, _COPY_FOUND, found, {"registry_id": registry_id})
        done = _make_current(
            engine,
            agent,
            registry_id,
            day=day,
            digest=digest,
            name=name,
            lines=lines,
            total=total,
            summary=summary,
            actor=actor,
            address=address,
        )
        if done.replayed or done.registry_id != registry_id:
            _drop_staged(engine, registry_id)
        registry_id = None  # current (or dropped): nothing to undo
        return done
    finally:
        try:
            for statement in matching.DROP_STAGE:
                db.execute(statement)
            db.execute(f"PRAGMA busy_timeout = {busy_ms}")
        finally:
            pooled.close()
        if registry_id is not None:  # failed or interrupted half-way: none of it stays
            _drop_staged(engine, registry_id)


@contextmanager
def _batch_transaction(engine: Engine) -> Iterator[Connection]:
    """A short write transaction of the import (SQLite), which waits for the write lock
    behind payments as long as it takes rather than the payments' lock timeout."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        busy_ms = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
        raw.execute(f"PRAGMA busy_timeout = {BATCH_TIMEOUT_MS}")
        try:
            with conn.begin():
                yield conn
        finally:
            raw.execute(f"PRAGMA busy_timeout = {busy_ms}")


def _closed(agent: Agent, day: date) -> DayClosed:
    return DayClosed(N_("registry.error.day_closed"), day=f"{day:%d.%m.%Y}", agent=agent.code)


def _utc_texts(lines: Sequence[Line]) -> Iterator[str]:
    """Each line's moment as SQLAlchemy stores a UTC DateTime in SQLite. The offset is
    applied once per (minute, offset) rather than per line: a million datetime round trips
    would cost seconds."""
    minutes: dict[str, str] = {}
    for line in lines:
        moment = line.occurred_at
        # "2026-11-21T14:03:00+06:00": whole seconds with an offset (what the parser writes)
        if len(moment) == 25 and moment[19] in "+-":
            key = moment[:16] + moment[19:]
            utc = minutes.get(key)
            if utc is None:
                shifted = datetime.fromisoformat(moment[:16] + ":00" + moment[19:])
                utc = minutes[key] = shifted.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
            yield f"{utc}:{moment[17:19]}.000000"
        else:
            yield datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _stage(db: sqlite3.Connection, lines: Sequence[Line]) -> None:
    """The lines into `temp.registry_stage`, a second line of a txn_id marked `repeated`."""
    for statement in (*matching.DROP_STAGE, *matching.STAGE_TABLES):
        db.execute(statement)

    def rows() -> Iterator[tuple[Any, ...]]:
        seen: set[str] = set()
        remember = seen.add
        for line, occurred in zip(lines, _utc_texts(lines), strict=True):
            txn_id = line.txn_id
            repeated = txn_id in seen
            if not repeated:
                remember(txn_id)
            yield (line.line_no, txn_id, occurred, line.account, line.amount, repeated)

    db.execute("BEGIN")  # writes only the TEMP database: no lock on the main one
    try:
        db.executemany(
            "INSERT INTO temp.registry_stage (line_no, txn_id, occurred_at, account, amount, "
            "repeated) VALUES (?, ?, ?, ?, ?, ?)",
            rows(),
        )
        db.execute(matching.STAGE_INDEX)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


_COPY_LINES = """
    INSERT INTO main.registry_lines
        (registry_id, line_no, txn_id, occurred_at, business_date, account, amount)
    SELECT :registry_id, line_no, txn_id, occurred_at, :day, account, amount
    FROM temp.registry_stage WHERE seq > :after AND seq <= :upto ORDER BY seq
"""
_COPY_FOUND = """
    INSERT INTO main.discrepancies
        (registry_id, kind, txn_id, line_no, payment_id,
         their_account, their_amount, our_account, our_amount)
    SELECT :registry_id, kind, txn_id, line_no, payment_id,
           their_account, their_amount, our_account, our_amount
    FROM temp.registry_found WHERE seq > :after AND seq <= :upto ORDER BY seq
"""


def _copy_in_chunks(
    db: sqlite3.Connection,
    statement: str,
    count: int,
    params: dict[str, Any],
    written: Callable[[int], None] | None = None,
) -> None:
    """Staged rows (seq 1 … count) into the main database, `_WRITE_CHUNK` per transaction.

    After each, the import waits as long as it held the lock: a payment waiting for it
    (SQLite's busy handler retries at intervals growing to 100 ms) then finds it free,
    rather than losing it to the next chunk again and again."""
    for after in range(0, count, _WRITE_CHUNK):
        if written is not None and after:
            written(after)
        db.execute("BEGIN IMMEDIATE")
        held = time.monotonic()
        try:
            db.execute(statement, {**params, "after": after, "upto": after + _WRITE_CHUNK})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        time.sleep(time.monotonic() - held)


def _make_current(
    engine: Engine,
    agent: Agent,
    registry_id: int,
    *,
    day: date,
    digest: str,
    name: str,
    lines: Sequence[Line],
    total: int,
    summary: Summary,
    actor: str,
    address: str | None,
) -> Imported:
    """The one short transaction that makes a written registry the day's: as the
    PostgreSQL import decides (same file: replayed; closed day: refused; else supersede)."""
    with _batch_transaction(engine) as conn:
        state = _lock_day(conn, agent.id, day)
        of_day = (registries.c.agent_id == agent.id) & (registries.c.business_date == day)
        current = conn.execute(
            select(registries.c.id, registries.c.sha256, registries.c.summary).where(
                of_day, registries.c.state == "current"
            )
        ).one_or_none()
        if current is not None and current.sha256 == digest:  # imported meanwhile
            return Imported(
                current.id,
                agent.code,
                day,
                len(lines),
                total,
                _summary_of(current.summary),
                replayed=True,
            )
        if state == "closed":
            raise _closed(agent, day)
        if current is not None:
            conn.execute(
                update(registries)
                .where(registries.c.id == current.id)
                .values(state="superseded", superseded_by=registry_id)
            )
        conn.execute(
            update(registries)
            .where(registries.c.id == registry_id)
            .values(state="current", summary=json.dumps(summary.to_json()))
        )
        _audit_import(
            conn,
            actor,
            address,
            registry_id,
            current,
            {
                "agent": agent.code,
                "day": day.isoformat(),
                "file": name,
                "sha256": digest,
                "lines": len(lines),
                "total": total,
                "discrepancies": summary.discrepancy_count,
            },
        )
    return Imported(
        registry_id,
        agent.code,
        day,
        len(lines),
        total,
        summary,
        superseded=None if current is None else int(current.id),
    )


def _drop_staged(engine: Engine, registry_id: int) -> None:
    """Delete a registry that never became current, in short transactions."""
    for table, key in (
        (discrepancies, discrepancies.c.id),
        (registry_lines, literal_column("rowid")),
    ):
        while True:
            held = time.monotonic()
            with _batch_transaction(engine) as conn:
                chunk = (
                    select(key)
                    .select_from(table)
                    .where(table.c.registry_id == registry_id)
                    .limit(_WRITE_CHUNK)
                    .scalar_subquery()
                )
                deleted = conn.execute(delete(table).where(key.in_(chunk))).rowcount
            if not deleted:
                break
            time.sleep(time.monotonic() - held)  # payments get the lock in between
    with _batch_transaction(engine) as conn:
        conn.execute(
            delete(registries).where(
                registries.c.id == registry_id,
                registries.c.state == "superseded",
                registries.c.summary.is_(None),
            )
        )


def _sweep_abandoned(engine: Engine) -> None:
    """Registries whose import died half-way (a summary is written when one is made
    current, so a row without one, older than any import takes, was never finished)."""
    cutoff = datetime.now(UTC) - _ABANDONED
    with engine.connect() as conn:
        stale = (
            conn.execute(
                select(registries.c.id).where(
                    registries.c.summary.is_(None), registries.c.imported_at < cutoff
                )
            )
            .scalars()
            .all()
        )
    for registry_id in stale:
        _drop_staged(engine, int(registry_id))
