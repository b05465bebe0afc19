"""The outbox worker: delivers `deliveries` rows at least once, in order per line.

A line is one destination (a webhook endpoint, `email` or `sms`) and one ordering key;
only the oldest pending delivery of a line (its head) is ever attempted, so a line goes
out in event id order while other lines proceed. A dead delivery leaves its line.

No database transaction is held while a receiver is called: a short transaction takes due
rows with a lease (`lease_until`), the attempt runs outside any transaction, and another
short transaction records the outcome. The conditional UPDATE that sets the lease is what
makes a worker the owner of a row, so two workers never attempt one delivery at the same
time; a worker that dies mid-attempt leaves a lease that simply runs out, and the row is
attempted again (hence at least once: receivers deduplicate by event id).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import Engine, and_, bindparam, exists, or_, select, update

from tolom import metrics, secretbox
from tolom.db.engine import is_temporary
from tolom.db.schema import deliveries, events, webhook_endpoints
from tolom.events import webhooks
from tolom.notifications import dispatch
from tolom.settings import Settings
from tolom.timestamps import as_utc

log = logging.getLogger("tolom.worker")

WEBHOOK_PREFIX = "webhook:"
HOUSEKEEPING_SECONDS = 3600.0  # how often a running worker runs its scheduled jobs

# A scheduled job: run hourly by the worker, whatever its area (e.g. billing.scheduled).
Job = Callable[[Engine, Settings], None]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker owns until `lease_until`, with what sending it needs."""

    id: int
    event_id: int
    event_type: str
    event_created_at: datetime
    payload: str
    destination: str
    recipient: str | None
    language: str | None
    attempts: int  # before this one
    url: str | None
    secret: str | None  # sealed (tolom.secretbox): opened only to sign, in `send`
    lease_until: datetime


def _now() -> datetime:
    return datetime.now(UTC)


# Nobody is attempting it: never leased, or the lease ran out (its worker died).
_UNLEASED = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("b_now"))
_earlier = deliveries.alias("earlier")
_CANDIDATES = (
    select(
        deliveries.c.id,
        deliveries.c.event_id,
        deliveries.c.destination,
        deliveries.c.recipient,
        deliveries.c.language,
        deliveries.c.attempts,
        events.c.type,
        events.c.created_at,
        events.c.payload,
        webhook_endpoints.c.url,
        webhook_endpoints.c.secret_sealed,
    )
    .select_from(
        deliveries.join(
            events,
            # With the partition key, PostgreSQL probes one month's events, not every month.
            and_(
                events.c.id == deliveries.c.event_id,
                events.c.created_at == deliveries.c.event_created_at,
            ),
        ).outerjoin(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
    )
    .where(
        deliveries.c.status == "pending",
        deliveries.c.next_attempt_at <= bindparam("b_due"),
        _UNLEASED,
        # The head of its line: no older pending delivery of the same destination and key.
        ~exists().where(
            _earlier.c.status == "pending",
            _earlier.c.destination == deliveries.c.destination,
            _earlier.c.ordering_key == deliveries.c.ordering_key,
            _earlier.c.event_id < deliveries.c.event_id,
        ),
        # A disabled endpoint's deliveries wait, without spending attempts.
        or_(deliveries.c.endpoint_id.is_(None), webhook_endpoints.c.enabled),
    )
    .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
    .limit(bindparam("b_limit"))
    # PostgreSQL: let concurrent workers pass over rows another one is taking right now.
    .with_for_update(skip_locked=True, of=deliveries)
)

_TAKE = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), deliveries.c.status == "pending", _UNLEASED)
    .values(lease_until=bindparam("b_lease"))
)
# Outcomes are recorded only while this worker still holds its lease (the lease is the token).
_OWNED = and_(
    deliveries.c.id == bindparam("b_id"), deliveries.c.lease_until == bindparam("b_lease")
)
_DELIVERED = (
    update(deliveries)
    .where(_OWNED)
    .values(
        status="delivered",
        delivered_at=bindparam("b_now"),
        attempts=deliveries.c.attempts + 1,
        lease_until=None,
    )
)
_FAILED = (
    update(deliveries)
    .where(_OWNED)
    .values(
        status=bindparam("b_status"),
        attempts=deliveries.c.attempts + 1,
        last_error=bindparam("b_error"),
        next_attempt_at=bindparam("b_next"),
        lease_until=None,
    )
)


def claim(
    engine: Engine, settings: Settings, limit: int, due_by: datetime | None = None
) -> list[Claimed]:
    """Take up to `limit` due line heads (due by `due_by`, default now) with a lease."""
    now = _now()
    lease_until = now + timedelta(seconds=settings.delivery_lease_seconds)
    with engine.begin() as conn:
        rows = conn.execute(
            _CANDIDATES, {"b_now": now, "b_due": due_by or now, "b_limit": limit}
        ).all()
        owned = [
            r
            for r in rows
            if conn.execute(_TAKE, {"b_id": r.id, "b_now": now, "b_lease": lease_until}).rowcount
            == 1
        ]
    return [
        Claimed(
            id=r.id,
            event_id=r.event_id,
            event_type=r.type,
            event_created_at=as_utc(r.created_at),
            payload=r.payload,
            destination=r.destination,
            recipient=r.recipient,
            language=r.language,
            attempts=r.attempts,
            url=r.url,
            secret=r.secret_sealed,
            lease_until=lease_until,
        )
        for r in owned
    ]


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones (jitter not included)."""
    doubled = settings.delivery_backoff_seconds * 2.0 ** min(attempts - 1, 60)
    return min(doubled, settings.delivery_backoff_max_seconds)


def send(settings: Settings, http: httpx.Client, item: Claimed) -> str:
    """Attempt one delivery; returns a short note on success, raises on failure."""
    if item.destination.startswith(WEBHOOK_PREFIX):
        if item.url is None or item.secret is None:
            raise ValueError(f"no endpoint for {item.destination}")
        body = webhooks.envelope(
            item.event_id, item.event_type, item.event_created_at, item.payload
        )
        status = webhooks.post(
            http,
            item.url,
            secretbox.for_settings(settings).open(item.secret),
            item.event_id,
            body,
            settings.webhook_allowed_networks,
        )
        return f"HTTP {status}"
    if item.destination in ("email", "sms") and item.recipient:
        channel: Literal["email", "sms"] = "email" if item.destination == "email" else "sms"
        dispatch.deliver(
            settings,
            destination=channel,
            recipient=item.recipient,
            language=item.language or "ru",
            event_type=item.event_type,
            event_id=item.event_id,
            payload=json.loads(item.payload),
            created_at=item.event_created_at,
        )
        return "sent"
    raise ValueError(f"unknown destination {item.destination!r}")


def _short(error: BaseException) -> str:
    text = (
        str(error)
        if isinstance(error, webhooks.WebhookFailed)
        else f"{type(error).__name__}: {error}"
    )
    return webhooks.shorten(text)


class Worker:
    """Delivers due deliveries in a small thread pool, one per line at a time."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        concurrency: int | None = None,
        stop: threading.Event | None = None,
        jobs: Sequence[Job] = (),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.concurrency = concurrency or settings.worker_concurrency
        self.stop = stop or threading.Event()
        self.jobs = tuple(jobs)
        self._next_housekeeping = 0.0

    def run(self, *, once: bool = False) -> int:
        """Deliver until stopped (or, `once`, until nothing that was due at the start is
        left); returns how many attempts were made."""
        if self.settings.delivery_lease_seconds <= self.settings.webhook_timeout_seconds:
            log.warning(
                "the delivery lease (%gs) is not longer than the webhook timeout (%gs): a slow "
                "receiver may get an event from two workers at once",
                self.settings.delivery_lease_seconds,
                self.settings.webhook_timeout_seconds,
            )
        started = _now()
        attempts = 0
        in_flight: set[Future[None]] = set()
        self._run_jobs()
        with (
            webhooks.client(
                self.settings.webhook_timeout_seconds, self.settings.webhook_allowed_networks
            ) as http,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="delivery") as pool,
        ):
            while not self.stop.is_set():
                metrics.worker_heartbeat()  # tolom_worker_last_loop_timestamp_seconds
                free = self.concurrency - len(in_flight)
                claimed, retry = (
                    self._claim(free, started if once else None) if free else ([], False)
                )
                in_flight |= {pool.submit(self._attempt, http, item) for item in claimed}
                attempts += len(claimed)
                if in_flight:
                    _, in_flight = wait(
                        in_flight, self.settings.worker_poll_seconds, FIRST_COMPLETED
                    )
                elif once and not retry:
                    break
                else:
                    self.stop.wait(self.settings.worker_poll_seconds)
                if time.monotonic() >= self._next_housekeeping:
                    self._run_jobs()
        return attempts

    def _run_jobs(self) -> None:
        """The scheduled jobs, hourly; one failing does not stop the others or delivery."""
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
        for job in self.jobs:
            try:
                job(self.engine, self.settings)
            except Exception:
                log.exception("scheduled job %s failed; next try in an hour", job.__name__)
        if self.jobs:
            log.info("scheduled jobs run (%d); next run in an hour", len(self.jobs))

    def _claim(self, limit: int, due_by: datetime | None) -> tuple[list[Claimed], bool]:
        """The claimed rows, and whether a temporary database error asks for another try."""
        try:
            return claim(self.engine, self.settings, limit, due_by), False
        except Exception as error:
            if not is_temporary(error):
                raise
            log.warning("claiming deliveries failed, will retry: %s", error)
            return [], True

    def _attempt(self, http: httpx.Client, item: Claimed) -> None:
        started = time.monotonic()
        try:
            note = send(self.settings, http, item)
        except Exception as error:  # any failure is a failed attempt, retried later
            self._failed(item, _short(error))
        else:
            took = time.monotonic() - started
            self._record(item, _DELIVERED, {}, logging.INFO, f"delivered ({note}) in {took:.2f}s")

    def _failed(self, item: Claimed, error: str) -> None:
        attempts = item.attempts + 1
        now = _now()
        if attempts >= self.settings.delivery_max_attempts:
            values: dict[str, Any] = {"b_status": "dead", "b_next": now}
            level = logging.ERROR
            outcome = (
                f"dead after {attempts} attempts ({error}); "
                f"re-drive: tolom events redrive --delivery {item.id}"
            )
        else:
            delay = retry_delay(self.settings, attempts) * random.uniform(0.9, 1.1)  # noqa: S311
            values = {"b_status": "pending", "b_next": now + timedelta(seconds=delay)}
            level = logging.WARNING
            outcome = (
                f"failed ({error}), attempt {attempts}/{self.settings.delivery_max_attempts}, "
                f"next in {delay:.0f}s"
            )
        self._record(item, _FAILED, {**values, "b_error": error}, level, outcome)

    def _record(
        self, item: Claimed, statement: Any, values: dict[str, Any], level: int, outcome: str
    ) -> None:
        params = {"b_id": item.id, "b_lease": item.lease_until, "b_now": _now(), **values}
        where = f"delivery {item.id} (event {item.event_id} {item.event_type} → {item.destination})"
        try:
            with self.engine.begin() as conn:
                recorded = conn.execute(statement, params).rowcount == 1
        except Exception:
            log.exception(
                "%s: %s, but recording it failed; retried after the lease", where, outcome
            )
            return
        if recorded:
            log.log(level, "%s: %s", where, outcome)
        else:
            log.warning(
                "%s: %s, but the lease ran out first; another attempt may follow", where, outcome
            )
