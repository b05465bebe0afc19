"""The request spool: records written while the database is away reach `gateway_requests`."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select

from tolom.db.schema import gateway_requests
from tolom.payments.requestlog import Answer, Exchange, log_row
from tolom.payments.spool import RequestSpool


def make_row(txn_id: str, *, agent_id: int | None = 7, body: str = "<response/>") -> dict[str, Any]:
    exchange = Exchange(
        protocol="osmp",
        peer="10.0.0.1",
        method="GET",
        params=[("command", "pay"), ("txn_id", txn_id), ("sum", "10.00"), ("password", "x")],
        service="sochi",
        agent_id=agent_id,
        command="pay",
        txn_id=txn_id,
    )
    return log_row(exchange, Answer(http_status=200, result=1, body=body, media_type="text/xml"))


def stored(engine: Engine) -> list[dict[str, Any]]:
    """The table's rows without `id`, `received_at` made aware (SQLite returns it naive)."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(gateway_requests))]
    for row in rows:
        del row["id"]
        moment: datetime = row["received_at"]
        row["received_at"] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (r["txn_id"], r["received_at"]))


def by_txn(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["txn_id"], r["received_at"]))


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """Apart from tmp_path itself, where the SQLite database lives."""
    return tmp_path / "spool"


def test_spooled_rows_are_drained_into_the_table(engine: Engine, tmp_path: Path) -> None:
    spool = RequestSpool(tmp_path / "spool", rescan_seconds=0)
    assert not spool.pending()  # no directory yet
    rows = [make_row(str(n)) for n in range(3)]
    rows.append(make_row("кир", agent_id=None, body='<r a="1">\nок</r>'))
    for row in rows:
        spool.append(row)

    assert spool.pending()
    assert files(tmp_path / "spool") == [f"requests-{os.getpid()}.jsonl"]
    assert spool.drain(engine) == 4

    assert stored(engine) == by_txn(rows)
    assert files(tmp_path / "spool") == []
    assert not spool.pending()
    assert spool.drain(engine) == 0


def test_one_drain_takes_every_process_file(engine: Engine, spool_dir: Path) -> None:
    first = RequestSpool(spool_dir, pid=1001)
    second = RequestSpool(spool_dir, pid=1002)
    first.append(make_row("a1"))
    second.append(make_row("b1"))
    first.append(make_row("a2"))
    assert files(spool_dir) == ["requests-1001.jsonl", "requests-1002.jsonl"]

    drainer = RequestSpool(spool_dir, pid=1003, rescan_seconds=0)
    assert drainer.pending()  # found by looking at the directory, not by its own appends
    assert drainer.drain(engine) == 3
    assert [r["txn_id"] for r in stored(engine)] == ["a1", "a2", "b1"]
    assert files(spool_dir) == []


def test_a_line_cut_short_by_a_crash_is_skipped(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = RequestSpool(tmp_path)
    spool.append(make_row("1"))
    spool.append(make_row("2"))
    with spool.path.open("ab") as file:
        file.write(b'{"received_at": "2026-01-05T09:00:00+00:00", "dura')  # died mid-write
    # The same pid writing again (a restarted container's pid 1) starts a fresh line.
    spool.append(make_row("3"))

    with caplog.at_level(logging.WARNING, logger="tolom.payments.spool"):
        assert spool.drain(engine) == 3
    assert [r["txn_id"] for r in stored(engine)] == ["1", "2", "3"]
    warnings = [r for r in caplog.records if r.getMessage() == "skipping an unreadable spool line"]
    assert len(warnings) == 1
    assert warnings[0].__dict__["line"] == 3


def test_an_abandoned_claim_is_taken_over(engine: Engine, spool_dir: Path) -> None:
    dead = RequestSpool(spool_dir, pid=1001)
    dead.append(make_row("1"))
    dead.append(make_row("2"))
    # The drainer (pid 999999) renamed it and died before inserting: its lock died with it.
    dead.path.rename(spool_dir / "requests-1001.jsonl.draining-999999-0badcafe")

    drainer = RequestSpool(spool_dir, pid=1002, rescan_seconds=0)
    assert drainer.pending()
    assert drainer.drain(engine) == 2
    assert [r["txn_id"] for r in stored(engine)] == ["1", "2"]
    assert files(spool_dir) == []


def test_a_claim_being_drained_is_left_to_its_drainer(engine: Engine, spool_dir: Path) -> None:
    owner = RequestSpool(spool_dir, pid=1001)
    owner.append(make_row("1"))
    claimed = spool_dir / "requests-1001.jsonl.draining-1002-00000000"
    owner.path.rename(claimed)
    with claimed.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live drainer in the middle of its insert
        assert RequestSpool(spool_dir, pid=1003).drain(engine) == 0
        assert files(spool_dir) == [claimed.name]
    assert RequestSpool(spool_dir, pid=1003).drain(engine) == 1
    assert len(stored(engine)) == 1


def test_database_unavailable_keeps_the_rows_for_later(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = RequestSpool(tmp_path / "spool")
    spool.append(make_row("1"))
    unreachable = create_engine(f"sqlite:///{tmp_path}/no/such/dir/tolom.sqlite3")
    try:
        with caplog.at_level(logging.WARNING, logger="tolom.payments.spool"):
            assert spool.drain(unreachable) == 0
    finally:
        unreachable.dispose()
    assert "database unavailable" in caplog.text
    [left] = files(tmp_path / "spool")
    assert ".draining-" in left  # claimed, its lock released: the next drain takes it over

    spool.append(make_row("2"))
    assert spool.pending()
    assert spool.drain(engine) == 2
    assert [r["txn_id"] for r in stored(engine)] == ["1", "2"]
    assert files(tmp_path / "spool") == []


def test_rows_the_database_refuses_are_set_aside(
    engine: Engine, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = RequestSpool(spool_dir, pid=1001, rescan_seconds=0)
    bad = make_row("1") | {"peer": None}  # NOT NULL: would fail on every retry
    spool.append(bad)
    RequestSpool(spool_dir, pid=1002).append(make_row("2"))

    with caplog.at_level(logging.ERROR, logger="tolom.payments.spool"):
        assert spool.drain(engine) == 1  # the good file still goes in
    assert [r["txn_id"] for r in stored(engine)] == ["2"]
    [rejected] = files(spool_dir)
    assert rejected.startswith("requests-1001.jsonl.rejected-")
    assert "set aside" in caplog.text
    assert not spool.pending()
    assert spool.drain(engine) == 0


def test_append_on_an_unwritable_directory_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    spool = RequestSpool(blocker / "spool")  # works as root too, unlike chmod
    with caplog.at_level(logging.ERROR, logger="tolom.payments.spool"):
        spool.append(make_row("42"))
    [record] = caplog.records
    assert record.getMessage() == "gateway request record lost: cannot spool it"
    assert record.__dict__["txn_id"] == "42"
    assert '"txn_id": "42"' in record.__dict__["record"]  # the log keeps the record itself
    assert not spool.pending()
    assert spool.drain(create_engine("sqlite://")) == 0


def test_appends_racing_drains_lose_nothing(engine: Engine, spool_dir: Path) -> None:
    spool = RequestSpool(spool_dir)
    other = RequestSpool(spool_dir, pid=1001)  # another process draining the same files
    writers, per_writer = 4, 25
    done = threading.Event()
    drained: list[int] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            spool.append(make_row(f"{n}-{i}"))

    def drain(by: RequestSpool) -> None:
        while not done.is_set():
            drained.append(by.drain(engine))

    drainers = [threading.Thread(target=drain, args=(s,)) for s in (spool, other)]
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in drainers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in drainers:
        thread.join()
    drained.append(spool.drain(engine))

    assert sum(drained) == writers * per_writer
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(gateway_requests)) == sum(drained)
        txn_ids = set(conn.scalars(select(gateway_requests.c.txn_id)))
    assert len(txn_ids) == writers * per_writer
    assert files(spool_dir) == []
