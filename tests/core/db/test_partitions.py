"""Monthly partitions of the request log and the outbox, and `tolom archive` (issue 16).

Past months in these tests are in 2001, far from the months the migration creates, and
every partition a test makes is dropped at its end (the PostgreSQL schema is shared).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, func, insert, select, text

from tests.factories import Cli, postgres_only
from tolom import archives
from tolom.db import migrate, partitions
from tolom.db.partitions import FAMILIES, Month, partition_name
from tolom.db.schema import audit_log, deliveries, events, gateway_requests
from tolom.events import outbox
from tolom.timestamps import HOME_ZONE

JAN = Month(2001, 1)
FEB = Month(2001, 2)


def _request(conn, moment: datetime, txn_id: str = "1") -> int:  # type: ignore[no-untyped-def]
    row = {
        "received_at": moment,
        "duration_us": 5,
        "protocol": "osmp",
        "peer": "10.0.0.1",
        "method": "GET",
        "txn_id": txn_id,
        "params": "{}",
        "http_status": 200,
        "response": "<response/>",
    }
    return int(
        conn.execute(
            insert(gateway_requests).values(row).returning(gateway_requests.c.id)
        ).scalar_one()
    )


def _event(conn, moment: datetime, status: str = "delivered") -> int:  # type: ignore[no-untyped-def]
    event = conn.execute(
        insert(events)
        .values(
            type="payment.accepted",
            ordering_key="customer:1",
            payload='{"a": 1}',
            created_at=moment,
        )
        .returning(events.c.id)
    ).scalar_one()
    conn.execute(
        insert(deliveries).values(
            event_id=event,
            event_created_at=moment,
            destination="email",
            recipient="a@example.kg",
            ordering_key="customer:1",
            status=status,
        )
    )
    return int(event)


def _where(conn, table: str, row_id: int) -> str:  # type: ignore[no-untyped-def]
    return str(
        conn.execute(
            text(f"SELECT tableoid::regclass FROM {table} WHERE id = :i"), {"i": row_id}
        ).scalar_one()
    )


def _drop(engine: Engine, names: list[str]) -> None:
    """Detach and drop test partitions that exist (an events month is referenced by the
    deliveries' foreign key until it is detached)."""
    with engine.begin() as conn:
        for name in names:
            table = name.rsplit("_", 1)[0]
            if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name}"))
                conn.execute(text(f"DROP TABLE {name}"))


def _months(*suffixes: str) -> list[str]:
    return [f"{t}_{s}" for s in suffixes for t in ("deliveries", "events", "gateway_requests")]


@pytest.fixture
def old_months(engine: Engine) -> Iterator[None]:
    """January and February 2001 of both families; dropped afterwards."""
    with engine.begin() as conn:
        for month in (JAN, FEB):
            for tables in FAMILIES.values():
                for table, _ in tables:
                    conn.execute(text(partitions.create_sql(table, month)))
    yield
    _drop(engine, _months("y2001m01", "y2001m02"))


@postgres_only
def test_rows_land_in_their_month_or_in_default(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        recent = _request(conn, now)
        stray = _request(conn, datetime(2001, 3, 10, tzinfo=UTC))
        event = outbox.emit(conn, outbox.EventType.PAYMENT_ACCEPTED, ordering_key="k", payload={})
        assert _where(conn, "gateway_requests", recent) == partition_name(
            "gateway_requests", Month.of(now)
        )
        assert _where(conn, "gateway_requests", stray) == "gateway_requests_default"
        assert _where(conn, "events", event) == partition_name("events", Month.of(now))
    try:
        with engine.begin() as conn:
            # A month is created while DEFAULT holds its rows: they move into it.
            assert partitions.ensure(conn, now=datetime(2001, 3, 1, tzinfo=UTC), ahead=0) == [
                "gateway_requests_y2001m03",
                "events_y2001m03",
                "deliveries_y2001m03",
            ]
            assert _where(conn, "gateway_requests", stray) == "gateway_requests_y2001m03"
            assert (
                conn.execute(text("SELECT count(*) FROM gateway_requests_default")).scalar_one()
                == 0
            )
    finally:
        _drop(engine, _months("y2001m03"))


@postgres_only
def test_events_in_default_move_with_their_deliveries_and_stay_append_only(engine: Engine) -> None:
    may = datetime(2001, 5, 3, 12, tzinfo=UTC)
    with engine.begin() as conn:
        event = _event(conn, may, status="pending")
        assert _where(conn, "events", event) == "events_default"
    try:
        with engine.begin() as conn:
            partitions.ensure(conn, now=may, ahead=0)
            assert _where(conn, "events", event) == "events_y2001m05"
            assert (
                str(
                    conn.execute(
                        text("SELECT tableoid::regclass FROM deliveries WHERE event_id = :e"),
                        {"e": event},
                    ).scalar_one()
                )
                == "deliveries_y2001m05"
            )
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text("UPDATE events SET type = 'x' WHERE id = :e"), {"e": event})
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text("UPDATE events_default SET type = 'x'"))
            conn.execute(text("DELETE FROM events WHERE created_at < '2001-06-01'"))
    finally:
        _drop(engine, _months("y2001m05"))


@postgres_only
def test_a_delivery_must_name_its_events_month(engine: Engine) -> None:
    with engine.begin() as conn:
        event = outbox.emit(conn, outbox.EventType.PAYMENT_ACCEPTED, ordering_key="k", payload={})
    with pytest.raises(Exception, match="fk_deliveries_event_id_events"), engine.begin() as conn:
        conn.execute(
            insert(deliveries).values(
                event_id=event,
                event_created_at=datetime(2001, 1, 1, tzinfo=UTC),
                destination="sms",
                ordering_key="k",
            )
        )


@postgres_only
def test_ensure_creates_the_coming_months_once(engine: Engine) -> None:
    later = datetime(2040, 1, 15, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            assert partitions.ensure(conn) == []  # the migration made them
            created = partitions.ensure(conn, now=later, ahead=1)
            assert sorted(created) == sorted(
                f"{table}_y2040m0{m}"
                for table in ("gateway_requests", "events", "deliveries")
                for m in (1, 2)
            )
            assert partitions.ensure(conn, now=later, ahead=1) == []
    finally:
        _drop(engine, _months("y2040m01", "y2040m02"))


@postgres_only
def test_archive_exports_a_month_then_drops_it(
    engine: Engine, old_months: None, cli: Cli, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        january = [
            _request(conn, datetime(2001, 1, d, 10, tzinfo=UTC), txn_id=str(d)) for d in (2, 3, 4)
        ]
        february = _request(conn, datetime(2001, 2, 1, tzinfo=UTC))
        _event(conn, datetime(2001, 1, 20, tzinfo=UTC))

    listed = cli("archive", "list")
    assert listed.exit_code == 0, listed.output
    assert "gateway_requests_y2001m01" in listed.output

    dry = cli("archive", "run", "--before", "2001-02", "--to", str(tmp_path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not list(tmp_path.iterdir())

    result = cli("archive", "run", "--before", "2001-02", "--to", str(tmp_path))
    assert result.exit_code == 0, result.output
    archive = tmp_path / "gateway_requests_y2001m01.csv.gz"
    rows = list(archives.read_rows(archive))
    assert [int(r["id"]) for r in rows] == january
    assert [r["txn_id"] for r in rows] == ["2", "3", "4"]
    manifest = json.loads((tmp_path / "gateway_requests_y2001m01.manifest.json").read_text())
    assert manifest["rows"] == 3
    assert manifest["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert len(list(archives.read_rows(tmp_path / "events_y2001m01.csv.gz"))) == 1
    assert len(list(archives.read_rows(tmp_path / "deliveries_y2001m01.csv.gz"))) == 1

    with engine.begin() as conn:
        for table in ("gateway_requests", "events", "deliveries"):
            assert (
                conn.execute(text("SELECT to_regclass(:n)"), {"n": f"{table}_y2001m01"}).scalar()
                is None
            )
        assert _where(conn, "gateway_requests", february) == "gateway_requests_y2001m02"
        assert conn.execute(select(func.count()).select_from(gateway_requests)).scalar_one() == 1
        audited = (
            conn.execute(select(audit_log.c.object_id).where(audit_log.c.actor == "cli:archive"))
            .scalars()
            .all()
        )
    assert sorted(audited) == ["deliveries:2001-01", "events:2001-01", "gateway_requests:2001-01"]


@postgres_only
def test_archive_refuses_an_events_month_with_pending_deliveries(
    engine: Engine, old_months: None, cli: Cli, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        event = _event(conn, datetime(2001, 1, 20, tzinfo=UTC), status="pending")
        _request(conn, datetime(2001, 1, 2, tzinfo=UTC))

    result = cli("archive", "run", "--before", "2001-02", "--to", str(tmp_path))
    assert result.exit_code == 1
    assert "2001-01" in result.output
    assert (tmp_path / "gateway_requests_y2001m01.csv.gz").exists()  # the request log went
    assert not (tmp_path / "events_y2001m01.csv.gz").exists()
    with engine.begin() as conn:
        assert _where(conn, "events", event) == "events_y2001m01"
        conn.execute(
            text("UPDATE deliveries SET status = 'delivered' WHERE event_id = :e"), {"e": event}
        )
    assert cli("archive", "run", "--before", "2001-02", "--to", str(tmp_path)).exit_code == 0
    assert (tmp_path / "events_y2001m01.csv.gz").exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_archive_exports_then_deletes_the_request_log(
    engine: Engine, cli: Cli, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        january = [_request(conn, datetime(2001, 1, d, tzinfo=UTC)) for d in (2, 3)]
        # 31 January, 20:00 UTC is 1 February in Bishkek: February's.
        february = _request(conn, datetime(2001, 1, 31, 20, tzinfo=UTC))
        _event(conn, datetime(2001, 1, 5, tzinfo=UTC))
    result = cli("archive", "run", "--before", "2001-02", "--to", str(tmp_path))
    assert result.exit_code == 1  # the outbox is not archived on SQLite, and says so
    rows = list(archives.read_rows(tmp_path / "gateway_requests_y2001m01.csv.gz"))
    assert [int(r["id"]) for r in rows] == january
    with engine.begin() as conn:
        left = conn.execute(select(gateway_requests.c.id)).scalars().all()
        assert left == [february]
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 1


def test_month_arithmetic_and_names() -> None:
    assert Month.parse("2026-12").plus(1) == Month(2027, 1)
    assert Month(2027, 1).plus(-13) == Month(2025, 12)
    assert Month.of(datetime(2026, 1, 31, 19, tzinfo=UTC)) == Month(2026, 2)  # Bishkek
    assert Month(2026, 2).start() == datetime(2026, 2, 1, tzinfo=HOME_ZONE)
    assert partition_name("events", Month(2026, 2)) == "events_y2026m02"
    for bad in ("2026-1", "2026-13", "26-01", "abcd-ef"):
        with pytest.raises(ValueError):
            Month.parse(bad)


@postgres_only
def test_the_migration_downgrades_and_upgrades_with_the_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        request = _request(conn, datetime.now(UTC))
        event = outbox.emit(conn, outbox.EventType.PAYMENT_ACCEPTED, ordering_key="k", payload={})
    config = migrate.alembic_config(engine)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0012")
        conn.commit()
        kinds = dict(
            conn.execute(
                text(
                    "SELECT relname, relkind FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
                    " AND relname IN ('gateway_requests', 'events', 'deliveries')"
                )
            ).all()
        )
        assert kinds == {"gateway_requests": "r", "events": "r", "deliveries": "r"}
        assert (
            conn.execute(select(func.count()).select_from(text("gateway_requests"))).scalar_one()
            == 1
        )
    migrate.upgrade(engine)
    with engine.begin() as conn:
        assert _where(conn, "gateway_requests", request).startswith("gateway_requests_y")
        assert _where(conn, "events", event).startswith("events_y")
        next_id = _request(conn, datetime.now(UTC))
        assert next_id > request  # the sequence carried over
