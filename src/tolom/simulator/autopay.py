"""The simulated MegaPay «Автоплатеж» repeating by itself, as a real wallet's autopay does.

`run_due` runs every autopay whose next Bishkek day has come: the worker calls it every
TOLOM_SIMULATOR_AUTOPAY_SECONDS (`AutopayLoop`, beside the probe in `probe.accompany`),
`tolom simulate autopay` once by hand. Each repeat is the MegaPay journey
(`journeys.play`: check, then pay) over HTTP as the favourite's sandbox agent.

Exactly once, across workers and crashes:
- The repeat is **claimed** first: a conditional UPDATE moves `next_due` on (WHERE id = ?
  AND next_due = the due day read) and sets `last_txn_id` to the repeat's txn_id, with a
  `simulator.autopay.claim` audit line, in one transaction. Of two workers one claims it;
  the other's UPDATE matches no row and it moves on.
- The txn_id is **derived** from (favourite id, due day) (`txn_id_for`), so every attempt
  at one repeat sends the same txn_id and the sandbox's exactly-once (one
  `sandbox_payments` row per (agent, txn_id)) keeps it one payment.
- The outcome is recorded (`simulator.autopay.run`, the page's "last automatic run"):
  result 0 counts a run; a refusal (any other result) ends that repeat, as a wallet shows
  «Автоплатеж не выполнен» and waits for the next day; **no answer**, or still 1 or 90
  after the journey's resends, puts `next_due` back, so the next pass retries the same
  txn_id instead of losing the repeat (the payment may have been made: only the same
  txn_id can tell).
- A crash between claim and record leaves a claim with no outcome. A pass that finds an
  autopay whose latest line is a claim older than `STALE_CLAIM` (three times the longest
  journey) releases it (`simulator.autopay.release`, `next_due` back) and runs it again,
  again with the same txn_id. The release holds the favourite's row (FOR UPDATE; SQLite
  writes one at a time) and re-reads the latest line under it, so two workers never both
  release one claim.

Missed days (the worker was off): a repeat runs once and `next_due` moves to the first
day of its schedule after today; a wallet does not pay three months at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, func, select, update

from tolom import audit
from tolom.db.schema import audit_log, simulator_favourites
from tolom.settings import Settings
from tolom.simulator import favourites, journeys
from tolom.simulator.journeys import SimulatorError
from tolom.texts import DEFAULT
from tolom.timestamps import HOME_ZONE, as_utc

log = logging.getLogger("tolom.simulator")

WORKER = "system:autopay"  # the audit actor of the worker's runs
CLAIM = "simulator.autopay.claim"
RUN = "simulator.autopay.run"
RELEASE = "simulator.autopay.release"
STALE_CLAIM = timedelta(seconds=3 * (1 + journeys.PAY_ATTEMPTS) * journeys.TIMEOUT_SECONDS)
_AGAIN = frozenset({None, 1, 90})  # no answer, or still "try again": retry the same txn_id
_ID_DIGITS = 11  # "9" + YYYYMMDD + 11 digits of the favourite's id: 20 digits, OSMP's most

# What became of a repeat (`AutopayRun.outcome`).
PAID = "paid"
REFUSED = "refused"
RETRY = "retry"
SKIPPED = "skipped"  # its agent cannot be spoken for: nothing claimed, nothing sent


def txn_id_for(favourite_id: int, due: date) -> str:
    """The repeat's txn_id: the same for every attempt at (favourite, due day), digits only,
    20 at most, and never of the length of a hand-made one (`journeys.new_txn_id`, 17)."""
    if favourite_id >= 10**_ID_DIGITS:
        raise ValueError("favourite id too large for a txn_id")
    return f"9{due:%Y%m%d}{favourite_id:0{_ID_DIGITS}d}"


def next_due_after(due: date, every_days: int, today: date) -> date:
    """The first day of the schedule (`due` + k intervals) after today."""
    missed = max((today - due).days, 0) // every_days
    return due + timedelta(days=every_days * (missed + 1))


@dataclass(frozen=True, slots=True)
class AutopayRun:
    """One repeat as a pass handled it."""

    favourite_id: int
    agent: str
    service: str
    account: str
    amount: int
    due: date
    txn_id: str
    outcome: str  # PAID, REFUSED, RETRY, SKIPPED
    next_due: date
    result: int | None = None  # the last OSMP answer's result; None: no answer
    prv_txn: str = ""
    comment: str = ""  # the answer's comment, or why nothing was sent or answered

    def as_json(self) -> dict[str, Any]:
        return {
            "favourite": self.favourite_id,
            "agent": self.agent,
            "service": self.service,
            "account": self.account,
            "due": self.due.isoformat(),
            "txn_id": self.txn_id,
            "outcome": self.outcome,
            "result": self.result,
            "prv_txn": self.prv_txn,
            "comment": self.comment,
            "next_due": self.next_due.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class LastRun:
    """An autopay's latest automatic run, for the simulator page."""

    at: datetime
    txn_id: str
    outcome: str
    result: int | None


# --- the pass ------------------------------------------------------------------------------


def run_due(
    settings: Settings,
    engine: Engine,
    today: date,
    *,
    now: datetime | None = None,
    actor: str = WORKER,
    base_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[AutopayRun]:
    """Run every autopay due by `today` (a Bishkek day) once; what became of each."""
    from tolom.probe import base_url as probe_base_url  # the probe's rule: one place

    now = now or datetime.now(UTC)
    base = base_url or probe_base_url(settings)
    _release_stale(engine, now, actor)
    with engine.connect() as conn:
        due_ids = conn.execute(
            select(simulator_favourites.c.id)
            .where(
                simulator_favourites.c.autopay_days.is_not(None),
                simulator_favourites.c.next_due <= today,
            )
            .order_by(simulator_favourites.c.id)
        ).scalars()
        read = (favourites.one(conn, i) for i in list(due_ids))
        # Read again row by row: another worker may have claimed one since (then not due).
        found = [f for f in read if f is not None and f.due(today)]
    runs = []
    for favourite in found:
        done = _run_one(engine, favourite, today, base, actor, transport)
        if done is not None:
            runs.append(done)
    return runs


def _run_one(
    engine: Engine,
    favourite: favourites.Favourite,
    today: date,
    base: str,
    actor: str,
    transport: httpx.AsyncBaseTransport | None,
) -> AutopayRun | None:
    """Claim one due repeat, play it, record it; None if another worker claimed it."""
    assert favourite.next_due is not None and favourite.autopay_days is not None
    due, txn_id = favourite.next_due, txn_id_for(favourite.id, favourite.next_due)
    moved = next_due_after(due, favourite.autopay_days, today)
    skipped = AutopayRun(
        favourite.id,
        favourite.agent,
        favourite.service,
        favourite.account,
        favourite.amount,
        due,
        txn_id,
        SKIPPED,
        due,
    )
    try:
        with engine.connect() as conn:
            who = journeys.speaker(conn, favourite.agent, base)
    except SimulatorError as refused:
        said = str(refused.said(DEFAULT))
        log.warning(
            "autopay cannot run: %s",
            said,
            extra={"favourite": favourite.id, "agent": favourite.agent},
        )
        return replace(skipped, comment=said)
    if not _claim(engine, favourite, txn_id, moved, actor):
        return None
    journey = asyncio.run(
        journeys.play(
            who,
            journeys.MEGAPAY,
            favourite.service,
            favourite.account,
            favourite.amount,
            txn_id=txn_id,
            transport=transport,
        )
    )
    last = journey.exchanges[-1] if journey.exchanges else None
    result = journey.last.result
    if journey.ok:
        outcome = PAID
    elif result in _AGAIN:
        outcome = RETRY
    else:
        outcome = REFUSED
    comment = journey.last.comment or (last.failure if last is not None else "")
    prv_txn = journey.receipt.prv_txn if journey.receipt is not None else ""
    next_due = due if outcome == RETRY else moved
    run = replace(
        skipped,
        outcome=outcome,
        next_due=next_due,
        result=result,
        prv_txn=prv_txn,
        comment=comment,
    )
    with engine.begin() as conn:
        _record(conn, run, moved, actor)
    extra = {k: v for k, v in run.as_json().items() if k != "comment"} | {"reason": comment}
    if outcome == PAID:
        log.info("autopay paid", extra=extra)
    else:
        log.warning("autopay not paid (%s)", outcome, extra=extra)
    return run


def _claim(
    engine: Engine, favourite: favourites.Favourite, txn_id: str, moved: date, actor: str
) -> bool:
    """Take the repeat: only the worker whose UPDATE still finds the due day read."""
    with engine.begin() as conn:
        taken = conn.execute(
            update(simulator_favourites)
            .where(
                simulator_favourites.c.id == favourite.id,
                simulator_favourites.c.next_due == favourite.next_due,
            )
            .values(next_due=moved, last_txn_id=txn_id)
        ).rowcount
        if taken != 1:
            return False
        assert favourite.next_due is not None
        audit.record(
            conn,
            actor=actor,
            action=CLAIM,
            object_type=favourites.OBJECT_TYPE,
            object_id=favourite.id,
            after={
                "txn_id": txn_id,
                "due": favourite.next_due.isoformat(),
                "next_due": moved.isoformat(),
            },
        )
    return True


def _record(conn: Connection, run: AutopayRun, moved: date, actor: str) -> None:
    """The outcome: a paid repeat counts; one to retry gets its due day back (unless the
    favourite changed meanwhile: removed, or run by hand)."""
    row = simulator_favourites.c
    if run.outcome == PAID:
        conn.execute(
            update(simulator_favourites).where(row.id == run.favourite_id).values(runs=row.runs + 1)
        )
    elif run.outcome == RETRY:
        conn.execute(
            update(simulator_favourites)
            .where(row.id == run.favourite_id, row.next_due == moved, row.last_txn_id == run.txn_id)
            .values(next_due=run.due)
        )
    audit.record(
        conn,
        actor=actor,
        action=RUN,
        object_type=favourites.OBJECT_TYPE,
        object_id=run.favourite_id,
        after={
            "txn_id": run.txn_id,
            "due": run.due.isoformat(),
            "outcome": run.outcome,
            "result": run.result,
            "prv_txn": run.prv_txn,
            "comment": run.comment,
            "next_due": run.next_due.isoformat(),
        },
    )


# --- claims a crash left ----------------------------------------------------------------------

_MINE = (CLAIM, RUN, RELEASE)


def _latest_line(conn: Connection, favourite_id: int) -> Any:
    return conn.execute(
        select(audit_log.c.id, audit_log.c.at, audit_log.c.action, audit_log.c.after)
        .where(
            audit_log.c.object_type == favourites.OBJECT_TYPE,
            audit_log.c.object_id == str(favourite_id),
            audit_log.c.action.in_(_MINE),
        )
        .order_by(audit_log.c.id.desc())
        .limit(1)
    ).first()


def _release_stale(engine: Engine, now: datetime, actor: str) -> None:
    """Give back the due day of every claim older than STALE_CLAIM with no outcome."""
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                select(simulator_favourites.c.id).where(
                    simulator_favourites.c.autopay_days.is_not(None),
                    simulator_favourites.c.last_txn_id.is_not(None),
                )
            ).scalars()
        )
        stale = []
        for favourite_id in ids:
            line = _latest_line(conn, favourite_id)
            if line is not None and line.action == CLAIM and as_utc(line.at) < now - STALE_CLAIM:
                stale.append(favourite_id)
    for favourite_id in stale:
        with engine.begin() as conn:
            held = conn.execute(
                select(simulator_favourites.c.next_due, simulator_favourites.c.last_txn_id)
                .where(simulator_favourites.c.id == favourite_id)
                .with_for_update()
            ).first()
            line = _latest_line(conn, favourite_id)  # again, under the row's lock
            if held is None or line is None or line.action != CLAIM:
                continue
            if as_utc(line.at) >= now - STALE_CLAIM:
                continue
            claim = json.loads(line.after)
            released = (
                held.last_txn_id == claim["txn_id"]
                and held.next_due is not None
                and held.next_due.isoformat() == claim["next_due"]
            )
            if released:
                conn.execute(
                    update(simulator_favourites)
                    .where(simulator_favourites.c.id == favourite_id)
                    .values(next_due=date.fromisoformat(claim["due"]))
                )
            # Recorded either way, so that a claim overtaken by a run by hand is not
            # looked at again.
            audit.record(
                conn,
                actor=actor,
                action=RELEASE,
                object_type=favourites.OBJECT_TYPE,
                object_id=favourite_id,
                after={"txn_id": claim["txn_id"], "due": claim["due"], "released": released},
            )
        if released:
            log.warning(
                "autopay claim released: no outcome recorded",
                extra={"favourite": favourite_id, "txn_id": claim["txn_id"], "due": claim["due"]},
            )


# --- for the page -----------------------------------------------------------------------------


def last_runs(conn: Connection, favourite_ids: list[int]) -> dict[int, LastRun]:
    """Each autopay's latest automatic run (the `simulator.autopay.run` line)."""
    if not favourite_ids:
        return {}
    latest = (
        select(func.max(audit_log.c.id))
        .where(
            audit_log.c.object_type == favourites.OBJECT_TYPE,
            audit_log.c.object_id.in_([str(i) for i in favourite_ids]),
            audit_log.c.action == RUN,
        )
        .group_by(audit_log.c.object_id)
    )
    rows = conn.execute(
        select(audit_log.c.object_id, audit_log.c.at, audit_log.c.after).where(
            audit_log.c.id.in_(latest)
        )
    )
    found = {}
    for row in rows:
        after = json.loads(row.after)
        found[int(row.object_id)] = LastRun(
            as_utc(row.at), str(after["txn_id"]), str(after["outcome"]), after.get("result")
        )
    return found


# --- beside the worker ----------------------------------------------------------------------


class AutopayLoop(threading.Thread):
    """`run_due` every TOLOM_SIMULATOR_AUTOPAY_SECONDS until `stop`; a failure is logged and
    the loop goes on."""

    def __init__(self, settings: Settings, engine: Engine, stop: threading.Event) -> None:
        super().__init__(name="tolom-autopay", daemon=True)
        self.settings = settings
        self.engine = engine
        self.stop = stop

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                run_due(self.settings, self.engine, datetime.now(HOME_ZONE).date())
            except Exception:
                log.exception("autopays failed to run")
            if self.stop.wait(self.settings.simulator_autopay_seconds):
                break
