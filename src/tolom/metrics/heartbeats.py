"""Worker heartbeats and probe results, kept in the database so that any server's /metrics
reports them.

A `tolom worker` runs as a process of its own, often on another host: it shares no
metrics directory with the servers Prometheus scrapes, so an in-process gauge of its
loop would never be seen. Instead its `Beacon` thread writes one row every
`BEAT_SECONDS` (`worker_heartbeats`: host:pid and the time of the worker's latest loop,
which `metrics.worker_heartbeat` notes); the synthetic check (`tolom.probe`) writes its
latest result per gateway (`probe_results`). `metrics.state` reads both at scrape time.

A worker that stops cleanly deletes its row; one killed leaves it, growing stale (what
the alert is for) until a successor on the same host removes rows of dead pids at start,
or `FORGET_SECONDS` pass.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from tolom import metrics
from tolom.db.schema import probe_results, worker_heartbeats
from tolom.timestamps import as_utc

log = logging.getLogger("tolom.worker")

BEAT_SECONDS = 10.0
"""How often a worker writes its heartbeat row (the stale alert allows 120 s)."""
FORGET_SECONDS = 3600.0
"""A heartbeat row older than this is neither reported nor kept."""
PROBE_FORGET_SECONDS = 86400.0
"""A probe result older than this is not reported (the probe was switched off)."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker: str  # host:pid
    last_loop_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    gateway: str
    ok: bool
    seconds: float
    failed_step: str | None
    reason: str | None
    run_at: datetime
    worker: str


def worker_name() -> str:
    """This process, as its heartbeat row names it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def beat(engine: Engine, worker: str, started_at: datetime, last_loop: float | None) -> None:
    """Write this worker's row: when it started, and its latest loop (Unix time)."""
    now = datetime.now(UTC)
    looped = None if last_loop is None else datetime.fromtimestamp(last_loop, UTC)
    host, _, pid = worker.rpartition(":")
    with engine.begin() as conn:
        statement = _insert(conn, worker_heartbeats).values(
            worker=worker,
            host=host[:190],
            pid=int(pid),
            started_at=started_at,
            last_loop_at=looped,
            beat_at=now,
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["worker"],
                set_={"last_loop_at": statement.excluded.last_loop_at, "beat_at": now},
            )
        )


def forget(engine: Engine, workers: Sequence[str]) -> None:
    """Remove heartbeat rows: of a worker stopping cleanly, or of dead processes."""
    if workers:
        with engine.begin() as conn:
            conn.execute(delete(worker_heartbeats).where(worker_heartbeats.c.worker.in_(workers)))


def forget_the_dead(engine: Engine) -> list[str]:
    """Rows of this host whose process is gone (killed, so it could not remove its own),
    and rows older than `FORGET_SECONDS` anywhere; returns the rows removed."""
    host = socket.gethostname()
    too_old = datetime.now(UTC) - timedelta(seconds=FORGET_SECONDS)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                worker_heartbeats.c.worker,
                worker_heartbeats.c.host,
                worker_heartbeats.c.pid,
                worker_heartbeats.c.beat_at,
            )
        ).all()
    dead = [
        row.worker
        for row in rows
        if (row.host == host[:190] and not _alive(row.pid)) or as_utc(row.beat_at) < too_old
    ]
    forget(engine, dead)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_probe(engine: Engine, results: Sequence[ProbeResult]) -> None:
    """The latest probe result per gateway (one row each, replaced)."""
    with engine.begin() as conn:
        for result in results:
            values = {
                "ok": result.ok,
                "seconds": result.seconds,
                "failed_step": result.failed_step,
                "reason": None if result.reason is None else result.reason[:1000],
                "run_at": result.run_at,
                "worker": result.worker,
            }
            statement = _insert(conn, probe_results).values(gateway=result.gateway, **values)
            conn.execute(statement.on_conflict_do_update(index_elements=["gateway"], set_=values))


def read(conn: Connection, now: datetime) -> tuple[list[Heartbeat], list[ProbeResult]]:
    """What a scrape reports: recent heartbeats and recent probe results."""
    beats = conn.execute(
        select(worker_heartbeats.c.worker, worker_heartbeats.c.last_loop_at)
        .where(worker_heartbeats.c.beat_at >= now - timedelta(seconds=FORGET_SECONDS))
        .order_by(worker_heartbeats.c.worker)
    ).all()
    probes = conn.execute(
        select(probe_results)
        .where(probe_results.c.run_at >= now - timedelta(seconds=PROBE_FORGET_SECONDS))
        .order_by(probe_results.c.gateway)
    ).all()
    return (
        [
            Heartbeat(b.worker, None if b.last_loop_at is None else as_utc(b.last_loop_at))
            for b in beats
        ],
        [
            ProbeResult(
                p.gateway,
                bool(p.ok),
                p.seconds,
                p.failed_step,
                p.reason,
                as_utc(p.run_at),
                p.worker,
            )
            for p in probes
        ],
    )


class Beacon(threading.Thread):
    """Writes this worker's heartbeat row every `BEAT_SECONDS` until `stop`, then removes
    it. The row carries the worker loop's own latest time (`metrics.last_loop`), so a hung
    loop goes stale even though this thread still writes."""

    def __init__(self, engine: Engine, stop: threading.Event) -> None:
        super().__init__(name="tolom-heartbeat", daemon=True)
        self.engine = engine
        self.stop = stop
        self.worker = worker_name()
        self.started_at = datetime.now(UTC)

    def run(self) -> None:
        try:
            removed = forget_the_dead(self.engine)
            if removed:
                log.info("heartbeats of stopped workers removed", extra={"workers": removed})
        except Exception as error:
            log.warning("heartbeat cleanup failed: %s", type(error).__name__)
        while True:
            try:
                beat(self.engine, self.worker, self.started_at, metrics.last_loop())
            except Exception as error:  # the database away: the heartbeat goes stale, as it should
                log.warning("heartbeat not written: %s", type(error).__name__)
            # Soon again until the worker has looped once (its first hourly jobs may take a
            # while), then every BEAT_SECONDS.
            if self.stop.wait(BEAT_SECONDS if metrics.last_loop() is not None else 0.5):
                break
        try:
            forget(self.engine, [self.worker])
        except Exception as error:
            log.warning("heartbeat not removed: %s", type(error).__name__)
