"""Gauges read from the database at scrape time, never per request: outbox lag, dead
letters, overdue reconciliation days, workers' heartbeats and probe results. One cheap
query each, the result kept a few seconds so that many scrapers (or a scraper per worker)
cannot load the database."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from tolom.db.schema import deliveries, reconciliation_days
from tolom.metrics import heartbeats
from tolom.metrics.health import readiness
from tolom.timestamps import as_utc

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class State:
    outbox_lag_seconds: float  # age of the oldest pending delivery that is due; 0: none
    outbox_pending: int
    dead_letters: int
    reconciliation_overdue: int
    up: bool  # whether the database answered
    ready: bool = False  # and its migrations are current (what /ready says)
    workers: tuple[heartbeats.Heartbeat, ...] = field(default=())
    probes: tuple[heartbeats.ProbeResult, ...] = field(default=())


def read_state(engine: Engine, deadline_days: int, now: datetime | None = None) -> State:
    """The figures, in one short read-only transaction; the heartbeats in another."""
    now = now or datetime.now(UTC)
    overdue_before: date = (now - timedelta(days=deadline_days)).date()
    with engine.connect() as conn:
        # The partial index on pending deliveries serves both.
        oldest, pending = conn.execute(
            select(func.min(deliveries.c.next_attempt_at), func.count()).where(
                deliveries.c.status == "pending"
            )
        ).one()
        dead = conn.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.status == "dead")
        ).scalar_one()
        overdue = conn.execute(
            select(func.count())
            .select_from(reconciliation_days)
            .where(
                reconciliation_days.c.state == "open",
                reconciliation_days.c.business_date < overdue_before,
            )
        ).scalar_one()
    workers, probes = _heartbeats(engine, now)
    lag = 0.0
    if oldest is not None:
        lag = max(0.0, (now - as_utc(oldest)).total_seconds())
    return State(
        lag,
        int(pending),
        int(dead),
        int(overdue),
        True,
        workers=tuple(workers),
        probes=tuple(probes),
    )


def _heartbeats(
    engine: Engine, now: datetime
) -> tuple[list[heartbeats.Heartbeat], list[heartbeats.ProbeResult]]:
    """Apart from the figures above: a schema not yet migrated (a rolling upgrade) leaves
    these out but does not make the database look down."""
    try:
        with engine.connect() as conn:
            return heartbeats.read(conn, now)
    except Exception as error:
        log.warning("metrics: heartbeats unreadable: %s", type(error).__name__)
        return [], []


class StateCollector(Collector):
    """The database gauges, cached `CACHE_SECONDS` per process."""

    def __init__(self, engine: Engine, deadline_days: int) -> None:
        self.engine = engine
        self.deadline_days = deadline_days
        self._lock = threading.Lock()
        self._cached: tuple[float, State] | None = None

    def state(self) -> State:
        with self._lock:  # concurrent scrapes wait for one query instead of running many
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
            try:
                state = read_state(self.engine, self.deadline_days)
                state = replace(state, ready=readiness(self.engine).ready)
            except Exception as error:
                log.warning("metrics: database unreachable: %s", type(error).__name__)
                state = State(0.0, 0, 0, 0, False)
            self._cached = (now, state)
            return state

    def collect(self) -> Iterable[Metric]:
        state = self.state()
        yield GaugeMetricFamily(
            "tolom_database_up", "Whether the database answered the metrics query.", int(state.up)
        )
        yield GaugeMetricFamily(
            "tolom_ready",
            "1 when /ready would answer 200 (database up, migrations current).",
            int(state.ready),
        )
        if not state.up:
            return
        yield GaugeMetricFamily(
            "tolom_outbox_lag_seconds",
            "How long the oldest pending delivery has been due (0: none is).",
            state.outbox_lag_seconds,
        )
        yield GaugeMetricFamily(
            "tolom_outbox_pending", "Deliveries waiting to be sent.", state.outbox_pending
        )
        yield GaugeMetricFamily(
            "tolom_outbox_dead_letters",
            "Deliveries that gave up (status dead); see `tolom events`.",
            state.dead_letters,
        )
        yield GaugeMetricFamily(
            "tolom_reconciliation_days_overdue",
            "Agents' business days still open past TOLOM_RECONCILIATION_DEADLINE_DAYS.",
            state.reconciliation_overdue,
        )
        yield from _workers_and_probes(state)


def _workers_and_probes(state: State) -> Iterable[Metric]:
    """Every worker's heartbeat and the latest probe per gateway, from the database
    (`metrics.heartbeats`): a `tolom worker` process has no metrics files of ours."""
    loops = GaugeMetricFamily(
        "tolom_worker_last_loop_timestamp_seconds",
        "Unix time of each delivery worker's latest loop (it loops at least every "
        "TOLOM_WORKER_POLL_SECONDS), from its heartbeat row; worker = host:pid.",
        labels=["worker"],
    )
    for beat in state.workers:
        if beat.last_loop_at is not None:
            loops.add_metric([beat.worker], beat.last_loop_at.timestamp())
    yield loops
    success = GaugeMetricFamily(
        "tolom_probe_success",
        "1 if the latest synthetic check (tolom probe) paid and cancelled through the "
        "gateway, else 0.",
        labels=["gateway"],
    )
    duration = GaugeMetricFamily(
        "tolom_probe_duration_seconds",
        "How long the latest synthetic check's whole path through the gateway took.",
        labels=["gateway"],
    )
    last_run = GaugeMetricFamily(
        "tolom_probe_last_run_timestamp_seconds",
        "Unix time the latest synthetic check through the gateway finished.",
        labels=["gateway"],
    )
    for probe in state.probes:
        success.add_metric([probe.gateway], int(probe.ok))
        duration.add_metric([probe.gateway], probe.seconds)
        last_run.add_metric([probe.gateway], probe.run_at.timestamp())
    yield from (success, duration, last_run)
