"""Counting failed back-office logins, in the database so every server process agrees.

Three counts, one row each in `login_throttle`:

- per client address: more than `address_limit` failures within `window_minutes` and the
  address is refused (429) until the window ends, before any password is hashed;
- per username, from every address: beyond the looser `username_limit` within the window
  each further attempt at that name waits `username_pause_seconds` (429): it slows down a
  guesser with many addresses but never locks the name out;
- per (username, address): failures in a row make the answer slower (0.5 s, doubling, at
  most 8 s) and `lockout_after` of them lock that name *from that address* for
  `lockout_minutes`. Someone else's guesses cannot lock a user out of their own address;
  a success from an address clears its count.

Nothing here depends on whether the username exists: unknown names are counted alike, so
neither the answers nor their timing tell them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tolom.db.schema import login_throttle
from tolom.settings import Settings
from tolom.timestamps import as_utc

FIRST_DELAY = 0.5  # seconds before the first failure of a (username, address) is answered
MAX_DELAY = 8.0  # the delay doubles per failure in a row, up to this
KEEP = timedelta(days=1)  # rows with no failure for this long (and no block) are pruned


@dataclass(frozen=True, slots=True)
class Policy:
    lockout_after: int = 5
    lockout_minutes: float = 15
    address_limit: int = 20
    username_limit: int = 50
    window_minutes: float = 15
    username_pause_seconds: float = 30

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            lockout_after=settings.login_lockout_after,
            lockout_minutes=settings.login_lockout_minutes,
            address_limit=settings.login_address_limit,
            username_limit=settings.login_username_limit,
            window_minutes=settings.login_throttle_window_minutes,
            username_pause_seconds=settings.login_username_pause_seconds,
        )


@dataclass(frozen=True, slots=True)
class State:
    """What the counts say before an attempt is checked."""

    throttled_until: datetime | None  # the address or the username is refused until then
    locked_until: datetime | None  # this username from this address is locked until then


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure, counted: how long to hold its answer back, and the lock it caused if any."""

    delay_seconds: float
    locked_until: datetime | None


def key(username: str, address: str | None) -> tuple[str, str]:
    """The (username, address) as stored: normalised, cut to the columns' width."""
    return username.strip().lower()[:64], (address or "")[:64]


def delay(failures: int) -> float:
    """How long the answer to the `failures`-th failure in a row is held back."""
    if failures <= 0:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * float(2 ** min(failures - 1, 16)))


def retry_after(until: datetime, now: datetime) -> int:
    """Whole seconds to wait (at least 1), for a Retry-After header."""
    return max(1, math.ceil((until - now).total_seconds()))


def _rows(username: str, address: str) -> list[tuple[str, str, str]]:
    # In primary-key order, so concurrent transactions lock them in the same order.
    return [("address", "", address), ("pair", username, address), ("username", username, "")]


def _where(scope: str, username: str, address: str) -> Any:
    return and_(
        login_throttle.c.scope == scope,
        login_throttle.c.username == username,
        login_throttle.c.address == address,
    )


def state(conn: Connection, username: str, address: str | None, now: datetime) -> State:
    """The address's, the username's and the pair's blocks, in one query."""
    name, where = key(username, address)
    found = conn.execute(
        select(login_throttle.c.scope, login_throttle.c.blocked_until).where(
            or_(*(_where(*row) for row in _rows(name, where)))
        )
    ).all()
    throttled: datetime | None = None
    locked: datetime | None = None
    for scope, blocked in found:
        until = as_utc(blocked) if blocked is not None else None
        if until is None or until <= now:
            continue
        if scope == "pair":
            locked = until
        elif throttled is None or until > throttled:
            throttled = until
    return State(throttled, locked)


def _ensure(conn: Connection, scope: str, username: str, address: str, now: datetime) -> None:
    """Insert the row unless it is there (concurrent first failures must not collide)."""
    values = {
        "scope": scope,
        "username": username,
        "address": address,
        "failures": 0,
        "window_start": now,
        "last_failure": now,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(login_throttle).values(**values).on_conflict_do_nothing())


def record_failure(
    conn: Connection, username: str, address: str | None, policy: Policy, now: datetime
) -> Failure:
    """Count a failed login on the address, the username and the pair (in the caller's
    transaction, which should be short: no password hashing while it is open)."""
    name, where = key(username, address)
    window = timedelta(minutes=policy.window_minutes)
    result = Failure(delay(1), None)
    for scope, row_name, row_address in _rows(name, where):
        _ensure(conn, scope, row_name, row_address, now)
        condition = _where(scope, row_name, row_address)
        row = conn.execute(select(login_throttle).where(condition).with_for_update()).one()
        failures, start = row.failures, as_utc(row.window_start)
        blocked = as_utc(row.blocked_until) if row.blocked_until is not None else None
        if scope == "pair":
            if blocked is not None and blocked <= now:  # a lock that ended starts afresh
                failures, blocked = 0, None
            if blocked is None:
                failures += 1
                if failures >= policy.lockout_after:
                    blocked = now + timedelta(minutes=policy.lockout_minutes)
            result = Failure(delay(failures), blocked)
        else:
            if start + window <= now:
                failures, start = 0, now
            failures += 1
            if scope == "address" and failures >= policy.address_limit:
                blocked = start + window
            elif scope == "username" and failures >= policy.username_limit:
                blocked = now + timedelta(seconds=policy.username_pause_seconds)
        conn.execute(
            update(login_throttle)
            .where(condition)
            .values(failures=failures, window_start=start, last_failure=now, blocked_until=blocked)
        )
    prune(conn, now)
    return result


def record_success(conn: Connection, username: str, address: str | None) -> None:
    """A success from an address clears that address's count for the name."""
    name, where = key(username, address)
    conn.execute(delete(login_throttle).where(_where("pair", name, where)))


def clear_username(conn: Connection, username: str) -> None:
    """Forget every count and lock of a username (an operator's unlock or password reset)."""
    name, _ = key(username, None)
    conn.execute(
        delete(login_throttle).where(
            login_throttle.c.scope.in_(("pair", "username")), login_throttle.c.username == name
        )
    )


def prune(conn: Connection, now: datetime) -> None:
    """Drop rows that no longer hold anything back and saw no failure for a day."""
    conn.execute(
        delete(login_throttle).where(
            login_throttle.c.last_failure < now - KEEP,
            or_(login_throttle.c.blocked_until.is_(None), login_throttle.c.blocked_until < now),
        )
    )
