"""Archives of old months of the request log and the outbox (`tolom archive`).

A month is written to a gzip CSV per table with a manifest (rows, SHA-256), the file is
read back and counted, and only then is the month dropped: on PostgreSQL its partitions
are detached and dropped (`tolom.db.partitions`), on SQLite the request log's rows are
deleted in batches (the outbox is append-only there and is left alone). Audited as
"cli:archive".
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from tolom import audit
from tolom.db.partitions import FAMILIES, Month, is_partitioned, partition_name, partitions

ACTOR = "cli:archive"
SQLITE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Archived:
    table: str
    month: str
    rows: int
    file: str
    sha256: str
    dropped: bool


@dataclass(frozen=True, slots=True)
class Refused:
    family: str
    month: str
    reason: str  # "pending_deliveries" | "not_supported"
    count: int


def months_before(conn: Connection, family: str, before: Month) -> list[Month]:
    """The months of `family` older than `before` that hold a partition (or rows)."""
    table, _ = FAMILIES[family][0]
    return sorted(
        {p.month for p in partitions(conn) if p.table == table and p.month and p.month < before}
    )


def archive_month(
    engine: Engine, family: str, month: Month, to: Path, *, dry_run: bool = False
) -> tuple[list[Archived], Refused | None]:
    """Export one month of a family, verify the files, then drop the month; audited.

    PostgreSQL: in one transaction the month's partitions are locked against writes,
    copied out, the files re-read and counted, then detached and dropped. An events month
    with deliveries still pending is refused."""
    with engine.begin() as conn:
        postgres = is_partitioned(conn)
        if not postgres and family != "requests":
            return [], Refused(family, str(month), "not_supported", 0)
        tables = FAMILIES[family]
        if postgres:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            for table, _ in tables:
                conn.execute(text(f"LOCK TABLE {partition_name(table, month)} IN SHARE MODE"))
        if family == "events":
            pending = conn.execute(
                text(
                    f"SELECT count(*) FROM {partition_name('deliveries', month)}"  # noqa: S608
                    " WHERE status = 'pending'"
                )
            ).scalar_one()
            if pending:
                return [], Refused(family, str(month), "pending_deliveries", int(pending))
        done: list[Archived] = []
        for table, key in tables:
            source = partition_name(table, month) if postgres else table
            bounds = {"a": month.start(), "b": month.end()}
            where = "" if postgres else f" WHERE {key} >= :a AND {key} < :b"
            if not postgres:
                bounds = {k: v.astimezone(UTC).replace(tzinfo=None) for k, v in bounds.items()}
            rows = int(
                conn.execute(text(f"SELECT count(*) FROM {source}{where}"), bounds).scalar_one()  # noqa: S608
            )
            name = f"{table}_{month.suffix()}"
            path = to / f"{name}.csv.gz"
            if dry_run:
                done.append(Archived(table, str(month), rows, str(path), "", dropped=False))
                continue
            to.mkdir(parents=True, exist_ok=True)
            digest = _export(conn, source, where, bounds, path)
            counted = _count_file(path)
            if counted != rows:
                raise ArchiveError(f"{path}: {counted} rows read back, {rows} in the database")
            manifest = {
                "table": table,
                "month": str(month),
                "rows": rows,
                "file": path.name,
                "sha256": digest,
                "written_at": datetime.now(UTC).isoformat(),
            }
            (to / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            done.append(Archived(table, str(month), rows, str(path), digest, dropped=True))
        if dry_run:
            return done, None
        if postgres:
            for table, _ in reversed(tables):  # deliveries (the referencing side) first
                name = partition_name(table, month)
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name}"))
                conn.execute(text(f"DROP TABLE {name}"))
        else:
            table, key = tables[0]
            _sqlite_delete(conn, table, key, month)
        for item in done:
            audit.record(
                conn,
                actor=ACTOR,
                action="archive",
                object_type="partition",
                object_id=f"{item.table}:{item.month}",
                after=asdict(item),
            )
    return done, None


class ArchiveError(Exception):
    """An archive file did not read back as written: nothing was dropped."""


def _export(conn: Connection, source: str, where: str, bounds: dict[str, Any], path: Path) -> str:
    """Write the rows as gzip CSV with a header, fsync it; the file's SHA-256."""
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wb") as out:
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            copy = f"COPY (SELECT * FROM {source} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"  # noqa: S608
            with raw.cursor() as cursor, cursor.copy(copy) as stream:  # type: ignore[union-attr]
                for chunk in stream:
                    out.write(bytes(chunk))
        else:
            result = conn.execute(text(f"SELECT * FROM {source}{where} ORDER BY id"), bounds)  # noqa: S608
            wrapper = io.TextIOWrapper(out, encoding="utf-8", newline="")
            writer = csv.writer(wrapper)
            writer.writerow(result.keys())
            for row in result:
                writer.writerow(["" if v is None else v for v in row])
            wrapper.flush()
            wrapper.detach()
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    partial.rename(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    """An archive's rows back, as the CSV holds them."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        yield from csv.DictReader(stream)


def _count_file(path: Path) -> int:
    return sum(1 for _ in read_rows(path))


def _sqlite_delete(conn: Connection, table: str, key: str, month: Month) -> None:
    bounds = {
        "a": month.start().astimezone(UTC).replace(tzinfo=None),
        "b": month.end().astimezone(UTC).replace(tzinfo=None),
        "n": SQLITE_BATCH,
    }
    while True:
        gone = conn.execute(
            text(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"  # noqa: S608
                f" WHERE {key} >= :a AND {key} < :b LIMIT :n)"
            ),
            bounds,
        ).rowcount
        if gone < SQLITE_BATCH:
            return


def due(
    engine: Engine, retention: dict[str, int], before: Month | None = None
) -> list[tuple[str, Month]]:
    """The (family, month) pairs older than `before`, or than each family's retention
    (months kept, counting the current one), oldest first."""
    current = Month.of(datetime.now(UTC))
    with engine.connect() as conn:
        return sorted(
            (
                (family, month)
                for family in FAMILIES
                for month in months_before(
                    conn, family, before or current.plus(1 - retention[family])
                )
            ),
            key=lambda pair: (pair[1], pair[0]),
        )
