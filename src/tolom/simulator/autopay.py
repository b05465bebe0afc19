"""The simulated MegaPay «Автоплатеж» repeating by itself, as a real wallet's autopay does.

`run_due` runs every autopay whose next Bishkek day has come: the worker calls it every
TOLOM_SIMULATOR_AUTOPAY_SECONDS (`AutopayLoop`, started by `companions.accompany`),
`tolom simulate autopay` once by hand. Each repeat is the MegaPay journey
(`journeys.play`: check, then pay) over HTTP as the favourite's sandbox agent.

Exactly once, across workers and crashes; the state is the favourite's own row:
- The repeat is **claimed** first: a conditional UPDATE sets `claimed_at` WHERE id = ? AND
  `next_due` = the due day read AND no claim is in progress (`claimed_at` NULL, or older
  than `STALE_CLAIM`, three times the longest journey: its worker died). Of two workers
  one claims it; the other's UPDATE matches no row and it moves on.
- The txn_id is **derived** from (favourite id, due day) (`txn_id_for`), so every attempt
  at one repeat, a stale claim's included, sends the same txn_id and the sandbox's
  exactly-once (one `sandbox_payments` row per (agent, txn_id)) keeps it one payment.
- The outcome clears the claim (WHERE `claimed_at` = this claim's: a claim taken over
  records nothing) and keeps the last run for the page: result 0 counts a run; a refusal
  (any other result) ends that repeat, as a wallet shows «Автоплатеж не выполнен»; **no
  answer**, or still 1 or 90 after the journey's resends, leaves `next_due` as it was, so
  the next pass retries the same txn_id (the payment may have been made: only the same
  txn_id can tell).

Missed days (the worker was off): a repeat runs once and `next_due` moves to the first
day of its schedule after today; a wallet does not pay three months at once.

The audit lines (`simulator.autopay.claim`, `simulator.autopay.run`) are history only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, case, or_, select, update

from tolom import audit
from tolom.db.schema import simulator_favourites
from tolom.settings import Settings
from tolom.simulator import favourites, journeys
from tolom.simulator.journeys import SimulatorError
from tolom.texts import DEFAULT
from tolom.timestamps import HOME_ZONE, as_utc

if TYPE_CHECKING:  # httpx loads on first use: a server's start does not need it
    import httpx

log = logging.getLogger("tolom.simulator")

WORKER = "system:autopay"  # the audit actor of the worker's runs
CLAIM = "simulator.autopay.claim"
RUN = "simulator.autopay.run"
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
    now = now or datetime.now(UTC)
    base = base_url or settings.own_gateways_url
    with engine.connect() as conn:
        found = favourites.due_autopays(conn, today, now - STALE_CLAIM)
    runs = []
    for favourite in found:
        done = _run_one(engine, favourite, today, now, base, actor, transport)
        if done is not None:
            runs.append(done)
    return runs


def _run_one(
    engine: Engine,
    favourite: favourites.Favourite,
    today: date,
    now: datetime,
    base: str,
    actor: str,
    transport: httpx.AsyncBaseTransport | None,
) -> AutopayRun | None:
    """Claim one due repeat, play it, record it; None if another worker claimed it."""
    assert favourite.next_due is not None and favourite.autopay_days is not None
    due, txn_id = favourite.next_due, txn_id_for(favourite.id, favourite.next_due)
    moved = next_due_after(due, favourite.autopay_days, today)
    run = AutopayRun(
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
        return replace(run, comment=said)
    if not _claim(engine, favourite, now, actor):
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
    result = journey.last.result
    outcome = PAID if journey.ok else RETRY if result in _AGAIN else REFUSED
    last = journey.exchanges[-1] if journey.exchanges else None
    run = replace(
        run,
        outcome=outcome,
        next_due=due if outcome == RETRY else moved,
        result=result,
        prv_txn=journey.receipt.prv_txn if journey.receipt is not None else "",
        comment=journey.last.comment or (last.failure if last is not None else ""),
    )
    with engine.begin() as conn:
        _record(conn, run, now, actor)
    extra = {k: v for k, v in run.as_json().items() if k != "comment"} | {"reason": run.comment}
    if outcome == PAID:
        log.info("autopay paid", extra=extra)
    else:
        log.warning("autopay not paid (%s)", outcome, extra=extra)
    return run


def _claim(engine: Engine, favourite: favourites.Favourite, now: datetime, actor: str) -> bool:
    """Take the repeat: only the worker whose UPDATE still finds the due day read and no
    claim in progress (a stale one is taken over, in the same UPDATE)."""
    assert favourite.next_due is not None
    row = simulator_favourites.c
    with engine.begin() as conn:
        taken = conn.execute(
            update(simulator_favourites)
            .where(
                row.id == favourite.id,
                row.next_due == favourite.next_due,
                or_(row.claimed_at.is_(None), row.claimed_at < now - STALE_CLAIM),
            )
            .values(claimed_at=now)
        ).rowcount
        if taken != 1:
            return False
        stale = favourite.claimed_at
        audit.record(
            conn,
            actor=actor,
            action=CLAIM,
            object_type=favourites.OBJECT_TYPE,
            object_id=favourite.id,
            after={
                "txn_id": txn_id_for(favourite.id, favourite.next_due),
                "due": favourite.next_due.isoformat(),
                "stale_claim": None if stale is None else as_utc(stale).isoformat(),
            },
        )
    if stale is not None:
        log.warning(
            "autopay claim taken over: no outcome recorded",
            extra={"favourite": favourite.id, "claimed_at": as_utc(stale).isoformat()},
        )
    return True


def _record(conn: Connection, run: AutopayRun, claimed_at: datetime, actor: str) -> None:
    """The outcome, on the row this pass claimed (if it is still ours): the claim cleared,
    the last run kept; a paid repeat counts; the due day moves on unless it is to be
    retried (or it was moved meanwhile by a run by hand)."""
    row = simulator_favourites.c
    values: dict[str, Any] = {
        "claimed_at": None,
        "last_run_at": datetime.now(UTC),
        "last_run_txn_id": run.txn_id,
        "last_outcome": run.outcome,
        "last_result": run.result,
        "next_due": case((row.next_due == run.due, run.next_due), else_=row.next_due),
    }
    if run.outcome == PAID:
        values |= {"runs": row.runs + 1, "last_txn_id": run.txn_id}
    conn.execute(
        update(simulator_favourites)
        .where(row.id == run.favourite_id, row.claimed_at == claimed_at)
        .values(values)
    )
    audit.record(
        conn,
        actor=actor,
        action=RUN,
        object_type=favourites.OBJECT_TYPE,
        object_id=run.favourite_id,
        after={k: v for k, v in run.as_json().items() if k != "favourite"},
    )


def last_runs(conn: Connection, favourite_ids: list[int]) -> dict[int, LastRun]:
    """Each autopay's latest automatic run, if it had one."""
    row = simulator_favourites.c
    rows = conn.execute(
        select(
            row.id, row.last_run_at, row.last_run_txn_id, row.last_outcome, row.last_result
        ).where(row.id.in_(favourite_ids), row.last_run_at.is_not(None))
    )
    return {
        r.id: LastRun(as_utc(r.last_run_at), r.last_run_txn_id, r.last_outcome, r.last_result)
        for r in rows
    }


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
