"""Prometheus metrics: what the gateway, the database pool and the worker record, and the
`/metrics` exposition (see docs/operations.md "Metrics and health").

Recording is a few in-memory (or, under `tolom serve --workers N`, memory-mapped) number
updates per request: no database round trip, and labels only from small closed sets
(protocol, service, command, result code) — never an account, a txn_id or an agent.

Multiprocess mode: prometheus_client picks memory-mapped values at import when
PROMETHEUS_MULTIPROC_DIR is set; `tolom serve` sets it (see `metrics.processes`) before it
starts its workers, so each worker writes its own files and any worker's `/metrics` adds
them all up. Gauges that need the database are computed at scrape time (`metrics.state`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event

__all__ = ["CONTENT_TYPE_LATEST", "MULTIPROCESS"]

# Chosen by prometheus_client when it was imported: memory-mapped files or plain memory.
MULTIPROCESS: bool = bool(getattr(values.ValueClass, "_multiprocess", False))

# The metric objects live here, not in prometheus_client's global registry: the exposition
# builds its own registry per scrape (multiprocess mode requires it).
_OWN = CollectorRegistry(auto_describe=False)

# Agents expect an answer within seconds; most take a few milliseconds.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GATEWAY_REQUESTS = Histogram(
    "tolom_gateway_request_duration_seconds",
    "Agent gateway requests by protocol, service, command and result code (OSMP result, "
    "REST HTTP status): time from reading the request to its committed answer.",
    ["protocol", "service", "command", "result"],
    buckets=_LATENCY_BUCKETS,
    registry=_OWN,
)
PAYS_ACCEPTED = Counter(
    "tolom_pays_accepted",
    "Payments accepted through the gateways (repeats of an accepted pay not counted).",
    ["service"],
    registry=_OWN,
)
PAYS_AMOUNT = Counter(
    "tolom_pays_accepted_tyiyn",
    "Sum of the payments accepted through the gateways, in tyiyn.",
    ["service"],
    registry=_OWN,
)
DB_TEMPORARY_ERRORS = Counter(
    "tolom_db_temporary_errors",
    "Temporary database failures answered 'retry' (gateway) or 503 (API, pages).",
    ["where"],
    registry=_OWN,
)
DB_POOL_IN_USE = Gauge(
    "tolom_db_pool_connections_in_use",
    "Database connections checked out of the server processes' pools.",
    registry=_OWN,
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "tolom_db_pool_connections_max",
    "Connections the server processes' pools may open (size + overflow).",
    registry=_OWN,
    multiprocess_mode="livesum",
)
# The delivery worker's latest loop (Unix time), for its heartbeat row: a `tolom worker`
# process shares no metrics files with the servers, so tolom_worker_last_loop_timestamp_seconds
# is read from the database at scrape time (`metrics.heartbeats`, `metrics.state`).
_last_loop: float | None = None

_KNOWN_COMMANDS = frozenset({"check", "pay", "cancel", "status"})
_KNOWN_SERVICES = frozenset({"sochi", "eds"})  # a REST body may name anything
_instrumented: weakref.WeakSet[Engine] = weakref.WeakSet()


def observe_gateway(
    protocol: str, service: str | None, command: str | None, result: int | str, started: float
) -> None:
    """One gateway answer: its labels (closed sets) and seconds since `started`
    (`time.perf_counter()`)."""
    GATEWAY_REQUESTS.labels(
        protocol,
        service if service in _KNOWN_SERVICES else "none",
        command if command in _KNOWN_COMMANDS else "none",
        str(result),
    ).observe(time.perf_counter() - started)


def pay_accepted(service: str, amount: int) -> None:
    PAYS_ACCEPTED.labels(service).inc()
    PAYS_AMOUNT.labels(service).inc(amount)


def database_unavailable(where: str) -> None:
    """A temporary database failure turned into "retry later" (`where`: gateway, http)."""
    DB_TEMPORARY_ERRORS.labels(where).inc()


def worker_heartbeat() -> None:
    """The worker loops (at least every TOLOM_WORKER_POLL_SECONDS)."""
    global _last_loop
    _last_loop = time.time()


def last_loop() -> float | None:
    """Unix time of this process's latest worker loop; None before the first."""
    return _last_loop


def instrument_pool(engine: Engine) -> None:
    """Count the engine's checked-out connections (once per engine): two number updates
    per checkout, read by any process's scrape."""
    if engine in _instrumented:
        return
    _instrumented.add(engine)
    pool: Any = engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if callable(size):
        DB_POOL_CAPACITY.inc(size() + max(overflow, 0))
    event.listen(engine, "checkout", lambda *_: DB_POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: DB_POOL_IN_USE.dec())


def process_exiting() -> None:
    """This server process is stopping: its live gauges leave the sums."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _Own(Collector):
    """This process's metric objects, for a single-process exposition."""

    def collect(self) -> Iterable[Metric]:
        return _OWN.collect()


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text format of every metric: all processes' in multiprocess mode, plus `extra`
    collectors (the scrape-time gauges)."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        _forget_dead_processes()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Own())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def _forget_dead_processes() -> None:
    """Drop the live gauges of workers that died without `process_exiting` (SIGKILL, a
    supervisor replacing a hung worker): their files name their pid."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        pid_text = name[: -len(".db")].rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            multiprocess.mark_process_dead(int(pid_text), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
