"""Signing in to the customer's cabinet: an INN and a one-time code sent to a contact the
company has on file for it, then a session like the back office's.

A code is 6 digits, valid `Policy.code_minutes`, used once, and kept only as an HMAC under
a key derived from the installation's secret keys (a copy of the database cannot be
searched for the code). The browser holds the challenge's random token in a cookie; the
code typed is checked against that challenge alone, and `Policy.attempts` wrong codes end
it. A new code for an INN ends the INN's earlier codes. Codes are asked for at most every
`resend_seconds` and `per_inn_hour` times an hour per INN, and `per_address_hour` times an
hour per client address.

Whoever asks learns nothing about the INN: an INN nobody has, or one without a contact on
the chosen channel, gets a challenge like any other (nothing is sent, and no code fits
it), with the same answers and limits. A session is a random token in a cookie, stored as
its SHA-256 with its CSRF token beside it (`backoffice.users` does the same for staff).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Column, Connection, delete, func, insert, select, update

from tolom import audit
from tolom.billing import customers
from tolom.billing.customers import Customer
from tolom.db.schema import cabinet_codes, cabinet_sessions
from tolom.db.schema import customers as customers_table
from tolom.identifiers import is_inn
from tolom.texts import N_, Refusal
from tolom.timestamps import as_utc

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")
CODE_DIGITS = 6
_KEY_PURPOSE = b"tolom cabinet sign-in code"
_KEPT = timedelta(days=2)  # how long used and expired codes stay to be counted


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits of signing in (settings `TOLOM_CABINET_*`, docs/customers.md#cabinet)."""

    code_minutes: float = 10
    attempts: int = 5
    resend_seconds: float = 60
    per_inn_hour: int = 5
    per_address_hour: int = 20
    session_minutes: float = 60


class AccessError(Refusal):
    """A sign-in step refused, with a `code` the page says in its own words: inn (not 14
    digits), channel, wait (a code was sent moments ago: `retry_after` seconds), rate_limit
    (too many codes this hour), format (a code is 6 digits), wrong (`left` attempts
    remain), expired (the challenge is over: ask for a new code)."""

    def __init__(self, key: str, /, code: str, retry_after: int = 0, left: int = 0) -> None:
        super().__init__(key, retry_after=retry_after, left=left)
        self.code = code
        self.retry_after = retry_after
        self.left = left


@dataclass(frozen=True, slots=True)
class Challenge:
    """A request for a code: the token for the browser's cookie and, when there is someone
    to send it to, the code, where and in which language. `code` is None for an INN nobody
    has or without a contact on the channel: the page says the same either way."""

    token: str
    channel: Channel
    code: str | None
    recipient: str | None
    language: str
    minutes: float


@dataclass(frozen=True, slots=True)
class CabinetSession:
    """A signed-in customer: who, the form token of their session and when it ends."""

    customer: Customer
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(self.csrf_token, offered)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _code_keys(secret_keys: Sequence[bytes]) -> list[bytes]:
    return [hmac.new(key, _KEY_PURPOSE, hashlib.sha256).digest() for key in secret_keys]


def _code_hash(key: bytes, token_hash: str, code: str) -> str:
    """The code bound to its challenge: the same code of another challenge differs."""
    return hmac.new(key, f"{token_hash}:{code}".encode("ascii"), hashlib.sha256).hexdigest()


def _recent(conn: Connection, column: Column[str], value: str, since: datetime) -> int:
    query = select(func.count()).select_from(cabinet_codes)
    query = query.where(column == value, cabinet_codes.c.created_at > since)
    return int(conn.execute(query).scalar_one())


def _wait_for_resend(conn: Connection, inn: str, now: datetime, policy: Policy) -> int:
    """Seconds until the INN may have another code (0: now)."""
    latest = conn.execute(
        select(func.max(cabinet_codes.c.created_at)).where(
            cabinet_codes.c.inn == inn,
            cabinet_codes.c.created_at > now - timedelta(seconds=policy.resend_seconds),
        )
    ).scalar_one()
    if latest is None:
        return 0
    left = as_utc(latest) + timedelta(seconds=policy.resend_seconds) - now
    return max(1, int(left.total_seconds() + 0.999))


def request_code(
    conn: Connection,
    *,
    inn: str,
    channel: str,
    address: str | None,
    secret_keys: Sequence[bytes],
    policy: Policy,
    now: datetime | None = None,
) -> Challenge:
    """A new challenge for `inn`, with a code for the customer's contact on `channel` if
    there is one; the INN's earlier codes end. Refused (AccessError) for a malformed INN or
    channel, too soon after the last code (`wait`), or past the hourly limits."""
    now = now or datetime.now(UTC)
    if not is_inn(inn):
        raise AccessError(N_("cabinet.error.inn"), code="inn")
    if channel not in CHANNELS:
        raise AccessError(N_("cabinet.error.channel"), code="channel")
    hour_ago = now - timedelta(hours=1)
    if address is not None and (
        _recent(conn, cabinet_codes.c.address, address, hour_ago) >= policy.per_address_hour
    ):
        raise AccessError(N_("cabinet.error.rate_limit"), code="rate_limit", retry_after=3600)
    wait = _wait_for_resend(conn, inn, now, policy)
    if wait:
        raise AccessError(N_("cabinet.error.wait"), code="wait", retry_after=wait)
    if _recent(conn, cabinet_codes.c.inn, inn, hour_ago) >= policy.per_inn_hour:
        raise AccessError(N_("cabinet.error.rate_limit"), code="rate_limit", retry_after=3600)
    customer = customers.get(conn, inn)
    recipient = None
    if customer is not None:
        recipient = customer.email if channel == "email" else customer.phone
    token = secrets.token_urlsafe(32)
    token_hash = _sha256(token)
    code = customer_id = None
    if customer is not None and recipient:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        customer_id = customer.id
    conn.execute(
        update(cabinet_codes)
        .where(cabinet_codes.c.inn == inn, cabinet_codes.c.expires_at > now)
        .values(expires_at=now)
    )
    conn.execute(
        delete(cabinet_codes).where(
            cabinet_codes.c.inn == inn, cabinet_codes.c.created_at < now - _KEPT
        )
    )
    conn.execute(
        insert(cabinet_codes).values(
            token_hash=token_hash,
            inn=inn,
            customer_id=customer_id,
            channel=channel,
            code_hash=_code_hash(_code_keys(secret_keys)[0], token_hash, code) if code else None,
            address=address[:64] if address else None,
            created_at=now,
            expires_at=now + timedelta(minutes=policy.code_minutes),
        )
    )
    return Challenge(
        token=token,
        channel="sms" if channel == "sms" else "email",
        code=code,
        recipient=recipient if code else None,
        language=customer.language if customer else customers.DEFAULT_LANGUAGE,
        minutes=policy.code_minutes,
    )


def pending_channel(conn: Connection, token: str | None, now: datetime | None = None) -> str | None:
    """The channel of a live challenge (the code page says where the code went), or None."""
    if not token or len(token) > 128:
        return None
    row = conn.execute(
        select(cabinet_codes.c.channel, cabinet_codes.c.expires_at, cabinet_codes.c.used_at).where(
            cabinet_codes.c.token_hash == _sha256(token)
        )
    ).first()
    if row is None or row.used_at is not None or as_utc(row.expires_at) <= (now or _now()):
        return None
    return str(row.channel)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SignIn:
    """A code checked: the new session's token, or why not. Returned, not raised, so that
    the caller commits the attempt it counted either way."""

    session_token: str | None = None
    refusal: AccessError | None = None


def sign_in(
    conn: Connection,
    *,
    token: str | None,
    code: str,
    address: str | None,
    secret_keys: Sequence[bytes],
    policy: Policy,
    now: datetime | None = None,
) -> SignIn:
    """Check the code typed against the challenge of `token`; right, open a session (the
    code is used up). Otherwise the refusal: `format`, `wrong` (with the attempts left) or
    `expired` (no such challenge, used, out of time or out of attempts). Each check of a
    well-formed code counts as an attempt, atomically, so simultaneous guesses cannot
    exceed the limit and one code opens one session. Commit whatever it returns."""
    now = now or datetime.now(UTC)
    code = code.strip()
    if not (len(code) == CODE_DIGITS and code.isascii() and code.isdigit()):
        return SignIn(refusal=AccessError(N_("cabinet.error.format"), code="format"))
    expired = SignIn(refusal=AccessError(N_("cabinet.error.expired"), code="expired"))
    if not token or len(token) > 128:
        return expired
    token_hash = _sha256(token)
    row = conn.execute(
        update(cabinet_codes)
        .where(
            cabinet_codes.c.token_hash == token_hash,
            cabinet_codes.c.used_at.is_(None),
            cabinet_codes.c.expires_at > now,
            cabinet_codes.c.attempts < policy.attempts,
        )
        .values(attempts=cabinet_codes.c.attempts + 1)
        .returning(
            cabinet_codes.c.id,
            cabinet_codes.c.code_hash,
            cabinet_codes.c.customer_id,
            cabinet_codes.c.attempts,
            cabinet_codes.c.inn,
        )
    ).first()
    if row is None:
        return expired
    right = row.code_hash is not None and any(
        hmac.compare_digest(_code_hash(key, token_hash, code), row.code_hash)
        for key in _code_keys(secret_keys)
    )
    if not right:
        left = policy.attempts - int(row.attempts)
        if left <= 0:
            return expired
        return SignIn(refusal=AccessError(N_("cabinet.error.wrong"), code="wrong", left=left))
    used = conn.execute(
        update(cabinet_codes)
        .where(cabinet_codes.c.id == row.id, cabinet_codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # the same code, sent twice at once: one session only
        return expired
    session_token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(
        delete(cabinet_sessions).where(
            cabinet_sessions.c.customer_id == row.customer_id,
            cabinet_sessions.c.expires_at <= now,
        )
    )
    conn.execute(
        insert(cabinet_sessions).values(
            token_hash=_sha256(session_token),
            customer_id=row.customer_id,
            csrf_token=csrf,
            address=address[:64] if address else None,
            created_at=now,
            expires_at=now + timedelta(minutes=policy.session_minutes),
        )
    )
    audit.record(
        conn,
        actor=actor_of(row.inn),
        action="cabinet.sign_in",
        object_type="customer",
        object_id=row.inn,
        address=address,
    )
    return SignIn(session_token=session_token)


def actor_of(inn: str) -> str:
    """How a signed-in customer appears in the audit log."""
    return f"customer:{inn}"


def session(
    conn: Connection, token: str | None, now: datetime | None = None
) -> CabinetSession | None:
    """The live session of a cookie's token, with its customer (one query), if any."""
    if not token or len(token) > 128:
        return None
    row = conn.execute(
        select(customers_table, cabinet_sessions.c.csrf_token, cabinet_sessions.c.expires_at)
        .join(cabinet_sessions, cabinet_sessions.c.customer_id == customers_table.c.id)
        .where(cabinet_sessions.c.token_hash == _sha256(token))
    ).first()
    if row is None or as_utc(row.expires_at) <= (now or _now()):
        return None
    return CabinetSession(customers.from_row(row), row.csrf_token, as_utc(row.expires_at))


def sign_out(conn: Connection, token: str | None) -> None:
    """End the session of this cookie's token (nothing if there is none)."""
    if token and len(token) <= 128:
        conn.execute(
            delete(cabinet_sessions).where(cabinet_sessions.c.token_hash == _sha256(token))
        )
