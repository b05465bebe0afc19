"""Reconciliation at scale: a big registry must not stop payments (SQLite's write lock is
the whole database's), must be matched through indexes, and must never be half in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.dialects import sqlite

from tests.factories import Gateway, add_customer
from tolom.db.schema import discrepancies, registries, registry_lines
from tolom.reconciliation import matching
from tolom.reconciliation import registries as imports
from tolom.reconciliation.parsing import Line

DAY = date(2026, 11, 21)


def _registry(lines: list[tuple[str, str, str]]) -> bytes:
    """QIWI text of the day: (txn_id, account, amount) per line, at 12:00:00."""
    body, cents = "", 0
    for txn, account, amount in lines:
        body += f"{txn}\t21.11.2026\t12:00:00\t{account}\t{amount}\n"
        som, _, tyiyn = amount.partition(".")
        cents += int(som) * 100 + int(tyiyn)
    return (body + f"Total: {len(lines)} {cents // 100}.{cents % 100:02d}\n").encode()


def _big(inn: str, ours: list[str], size: int) -> bytes:
    """Our payments' lines, then lines unknown to us up to `size` (all missing on ours)."""
    lines = [(txn, inn, "10.00") for txn in ours]
    lines += [(str(900_000 + n), inn, "10.00") for n in range(size - len(ours))]
    return _registry(lines)


def _sqlite_only(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's database-wide write lock; PostgreSQL locks rows")


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(registries)).scalar_one(),
            conn.execute(select(func.count()).select_from(registry_lines)).scalar_one(),
            conn.execute(select(func.count()).select_from(discrepancies)).scalar_one(),
        )


def test_pays_are_answered_while_a_big_registry_imports_on_sqlite(
    engine: Engine, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails when the import holds the write lock: a pay then waits TOLOM_LOCK_TIMEOUT_MS
    and answers result 1 ("retry"), and a writer alongside gets "database is locked"."""
    _sqlite_only(engine)
    inn = add_customer(engine)
    ours = [str(100 + n) for n in range(3)]
    for txn in ours:
        assert gateway.pay("sochi", inn, "10.00", txn_id=txn)["result"] == 0
    content = _big(inn, ours, 4000)
    stages: list[str] = []
    answers: list[int] = []

    def pay_at_each_step(stage: str, _lines: int) -> None:
        # Every step the import reports (staging, matching, every chunk written) must
        # leave the write lock free: a pay made right there is answered at once.
        if stage != "parse":
            stages.append(stage)
            answer = gateway.pay("sochi", inn, "1.00", txn_date="20261122100000")
            answers.append(answer["result"])

    monkeypatch.setattr(imports, "_WRITE_CHUNK", 1000)  # several chunks: a pay between each
    done: list[imports.Imported] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(
                imports.import_registry(
                    engine,
                    "optima",
                    content,
                    file_name="big.txt",
                    actor="user:buh",
                    progress=pay_at_each_step,
                )
            )
        except BaseException as error:
            failed.append(error)

    importer = threading.Thread(target=run)
    writes: list[str] = []
    importer.start()
    while importer.is_alive():  # a plain write transaction, with the app's lock wait
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE agents SET name = name WHERE code = 'optima'"))
            writes.append("ok")
        except Exception as error:
            writes.append(f"{type(error).__name__}: {error}")
        importer.join(timeout=0.01)
    assert not failed, failed
    assert answers and answers == [0] * len(answers)
    assert writes and set(writes) == {"ok"}
    assert "store" in stages and "match" in stages and len(stages) >= 5
    [imported] = done
    assert imported.summary.classes["missing_ours"].count == 4000 - 3
    assert imported.summary.matched_count == 3
    assert _counts(engine)[1:] == (4000, 4000 - 3)


@pytest.fixture
def staged(engine: Engine) -> Iterator[Any]:
    """The import's own connection with the staging TEMP tables (SQLite)."""
    _sqlite_only(engine)
    pooled = engine.raw_connection()
    db = pooled.driver_connection
    for statement in (*matching.DROP_STAGE, *matching.STAGE_TABLES, matching.STAGE_INDEX):
        db.execute(statement)
    yield db
    for statement in matching.DROP_STAGE:
        db.execute(statement)
    pooled.close()


def test_sqlite_matching_probes_indexes_and_never_scans_inside_a_loop(staged: Any) -> None:
    """The nested loop was: for each registry line, a scan of all our payments of the day."""
    params = {"agent_id": 1, "day": DAY.isoformat()}
    for statement in (matching.FIND_LINES_SQLITE, matching.FIND_THEIRS_SQLITE):
        plan = [str(row[3]) for row in staged.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
        scans = [step for step in plan if step.startswith("SCAN")]
        assert len(scans) <= 1, plan  # at most the one outer loop
        assert all("payments" not in step and " p" not in step for step in scans), plan
        searches = [step for step in plan if step.startswith("SEARCH")]
        assert searches and all("USING" in step and "INDEX" in step for step in searches), plan
        assert "AUTOMATIC" not in " ".join(plan), plan


def test_a_sqlite_import_takes_no_write_lock_while_staging_and_matching(
    engine: Engine, staged: Any
) -> None:
    """TEMP tables are the connection's own database: writing them leaves the main
    database's write lock free for payments."""
    staged.execute("BEGIN")
    staged.execute(
        "INSERT INTO temp.registry_stage (line_no, txn_id, occurred_at, account, amount, "
        "repeated) VALUES (1, '1', 'x', '1', 100, 0)"
    )
    staged.execute("SELECT count(*) FROM main.payments").fetchone()  # a read of ours too
    try:
        with engine.begin() as conn:  # BEGIN IMMEDIATE: would wait, then fail, if held
            conn.execute(text("UPDATE agents SET name = name"))
    finally:
        staged.execute("COMMIT")


def test_an_import_failing_half_way_leaves_nothing_and_the_old_registry_current(
    engine: Engine, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "10.00", txn_id="100")["result"] == 0
    first = imports.import_registry(
        engine, "optima", _big(inn, ["100"], 10), file_name="a.txt", actor="user:buh"
    )
    before = _counts(engine)

    class Interrupted(Exception):
        pass

    def interrupt(stage: str, lines: int) -> None:
        if stage == "store" and 0 < lines < 3000:  # SQLite: after some chunks are written
            raise Interrupted
        if stage == "match" and engine.dialect.name == "postgresql":  # lines stored
            raise Interrupted

    monkeypatch.setattr(imports, "_WRITE_CHUNK", 500)
    with pytest.raises(Interrupted):
        imports.import_registry(
            engine,
            "optima",
            _big(inn, ["100"], 3000),
            file_name="b.txt",
            actor="user:buh",
            progress=interrupt,
        )
    assert _counts(engine) == before
    with engine.connect() as conn:
        current = conn.execute(
            select(registries.c.id).where(registries.c.state == "current")
        ).scalar_one()
    assert current == first.registry_id


def test_a_registry_whose_import_died_is_swept_by_the_next_import(
    engine: Engine, gateway: Gateway
) -> None:
    """A process killed half-way leaves a registry row without a summary (never current)
    and some lines: the next import deletes them once they are old enough."""
    _sqlite_only(engine)
    inn = add_customer(engine)
    with engine.begin() as conn:
        agent_id = conn.execute(text("SELECT id FROM agents WHERE code = 'optima'")).scalar()
        dead = conn.execute(
            insert(registries)
            .values(
                agent_id=agent_id,
                business_date=DAY,
                sha256="0" * 64,
                file_name="dead.txt",
                kind="qiwi",
                line_count=2,
                total_amount=2000,
                state="superseded",
                imported_by="user:buh",
                imported_at=datetime.now(UTC) - timedelta(hours=2),
            )
            .returning(registries.c.id)
        ).scalar_one()
        conn.execute(
            insert(registry_lines),
            [
                {
                    "registry_id": dead,
                    "line_no": 1,
                    "txn_id": "1",
                    "occurred_at": datetime.now(UTC),
                    "business_date": DAY,
                    "account": inn,
                    "amount": 1000,
                }
            ],
        )
    done = imports.import_registry(
        engine, "optima", _big(inn, [], 3), file_name="c.txt", actor="user:buh"
    )
    with engine.connect() as conn:
        assert conn.execute(select(registries.c.file_name)).scalars().all() == ["c.txt"]
        assert (
            conn.execute(select(registry_lines.c.registry_id)).scalars().all()
            == [done.registry_id] * 3
        )


@pytest.mark.parametrize(
    "moment",
    [
        "2026-11-21T00:30:05+06:00",
        "2026-11-21T23:59:59-05:00",
        "2026-11-21T10:15:00+05:45",
        "2026-11-21T10:15:00.250000+06:00",
        "2026-11-21T10:15:00+00:00",
    ],
)
def test_staged_moments_are_stored_as_sqlalchemy_stores_them(moment: str) -> None:
    bind = sqlite.DATETIME(timezone=True).bind_processor(sqlite.dialect())
    assert bind is not None
    line = Line(1, "1", moment, DAY, "1", 100)
    [staged] = imports._utc_texts([line])
    assert staged == bind(datetime.fromisoformat(moment).astimezone(UTC))
