"""Back-office users: argon2 passwords, roles and what each may do, lockout, sessions.

Passwords are chosen by people, so unlike agents' and API keys' random secrets they are
stored with a slow hash (argon2id). Sessions are random 256-bit tokens in a cookie, stored
as SHA-256 (a stolen database does not log anyone in) with their CSRF token beside them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, insert, select, update

from tolom.db.schema import users, web_sessions
from tolom.timestamps import as_utc

ROLES = ("admin", "operator", "accountant", "auditor")
LANGUAGES = ("ru", "ky", "en")

# What each role may do. The auditor reads everything and changes nothing; every other
# role reads everything too (a person helping a customer needs the whole picture).
_CHANGES: dict[str, frozenset[str]] = {
    "admin": frozenset({"users", "agents", "settings", "webhooks"}),
    "operator": frozenset({"customers", "invoices", "cash", "orders"}),
    "accountant": frozenset({"reversals", "exports", "reconciliation", "webhooks"}),
    "auditor": frozenset(),
}
ACTIONS = frozenset().union(*_CHANGES.values())

MIN_PASSWORD = 10
FAILURE_DELAY = 1.0  # seconds before a failed login is answered
_USERNAME = re.compile(r"[a-z][a-z0-9_.-]{1,63}")
_hasher = PasswordHasher()
# Verified against when the username is unknown, so that both cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user operation that cannot be done, with a message for the operator."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    language: str
    active: bool

    def may(self, action: str) -> bool:
        """Whether this user may make changes of the kind `action` (see `_CHANGES`)."""
        return action in _CHANGES.get(self.role, frozenset())


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(self.csrf_token, offered)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """`token` on success; otherwise why not, and how long to hold the answer back."""

    token: str | None
    user: User | None = None
    refusal: str | None = None  # bad_credentials | locked
    delay_seconds: float = 0.0


def _user(row: Any) -> User:
    return User(row.id, row.username, row.display_name, row.role, row.language, row.active)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: пароль короче {MIN_PASSWORD} символов")
    if len(password) > 256:
        raise UserError("password: пароль длиннее 256 символов")


def create(
    conn: Connection,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str,
    language: str = "ru",
) -> User:
    if not _USERNAME.fullmatch(username):
        raise UserError(
            f"username: {username!r}: строчные латинские буквы, цифры, «.», «-», «_», 2–64 знака"
        )
    if role not in ROLES:
        raise UserError(f"role: неизвестная роль {role!r}; допустимы: {', '.join(ROLES)}")
    if language not in LANGUAGES:
        raise UserError(f"language: допустимы {', '.join(LANGUAGES)}")
    if not display_name.strip():
        raise UserError("display_name: укажите имя")
    check_password(password)
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise UserError(f"username: пользователь {username} уже есть")
    user_id = conn.execute(
        insert(users)
        .values(
            username=username,
            display_name=display_name.strip(),
            password_hash=_hasher.hash(password),
            role=role,
            language=language,
        )
        .returning(users.c.id)
    ).scalar_one()
    return User(user_id, username, display_name.strip(), role, language, True)


def get(conn: Connection, username: str) -> User | None:
    row = conn.execute(select(users).where(users.c.username == username)).first()
    return _user(row) if row else None


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]


def change(conn: Connection, username: str, **values: Any) -> tuple[User, User]:
    """Change role, language, name or active; returns (before, after). Ends the user's
    sessions when they are disabled or their role changes."""
    before = get(conn, username)
    if before is None:
        raise UserError(f"username: пользователь {username} не найден")
    if "role" in values and values["role"] not in ROLES:
        raise UserError(f"role: неизвестная роль {values['role']!r}; допустимы: {', '.join(ROLES)}")
    if "language" in values and values["language"] not in LANGUAGES:
        raise UserError(f"language: допустимы {', '.join(LANGUAGES)}")
    conn.execute(update(users).where(users.c.id == before.id).values(**values))
    after = get(conn, username)
    assert after is not None
    if after.role != before.role or not after.active:
        end_sessions(conn, after.id)
    return before, after


def set_password(conn: Connection, user_id: int, password: str) -> None:
    """Set a new password, unlock, and end every session of the user."""
    check_password(password)
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            password_hash=_hasher.hash(password),
            password_changed_at=datetime.now(UTC),
            failed_logins=0,
            locked_until=None,
        )
    )
    end_sessions(conn, user_id)


def change_password(
    conn: Connection, user: User, old: str, new: str, *, session_hours: float
) -> str:
    """A user changes their own password; returns a new session token (the old ones end)."""
    row = conn.execute(select(users.c.password_hash).where(users.c.id == user.id)).one()
    if not _verify(row.password_hash, old):
        raise UserError("old_password: текущий пароль неверен")
    set_password(conn, user.id, new)
    return _open_session(conn, user.id, None, hours=session_hours)[0]


def _verify(encoded: str, password: str) -> bool:
    try:
        return _hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


def login(
    conn: Connection,
    username: str,
    password: str,
    *,
    address: str | None,
    session_hours: float,
    max_failures: int,
    lockout_minutes: float,
    now: datetime | None = None,
) -> LoginResult:
    """Check a username and password; on success open a session.

    Every failure is answered after the same delay (the caller waits `delay_seconds`), so
    neither the time nor the answer tells a known username from an unknown one; failures
    are counted on the user, and after `max_failures` in a row the user is locked for
    `lockout_minutes`, even for the right password. An unknown username costs the same
    hash as a known one.
    """
    now = now or datetime.now(UTC)
    row = conn.execute(
        select(users).where(users.c.username == username.strip().lower()).with_for_update()
    ).first()
    if row is None or not row.active:
        _verify(_DUMMY_HASH, password)
        return LoginResult(None, refusal="bad_credentials", delay_seconds=FAILURE_DELAY)
    if row.locked_until is not None and as_utc(row.locked_until) > now:
        return LoginResult(None, refusal="locked", delay_seconds=FAILURE_DELAY)
    if not _verify(row.password_hash, password):
        failures = row.failed_logins + 1
        locked = now + timedelta(minutes=lockout_minutes) if failures >= max_failures else None
        conn.execute(
            update(users)
            .where(users.c.id == row.id)
            .values(failed_logins=0 if locked else failures, locked_until=locked)
        )
        return LoginResult(
            None, refusal="locked" if locked else "bad_credentials", delay_seconds=FAILURE_DELAY
        )
    conn.execute(
        update(users).where(users.c.id == row.id).values(failed_logins=0, locked_until=None)
    )
    if _hasher.check_needs_rehash(row.password_hash):
        conn.execute(
            update(users).where(users.c.id == row.id).values(password_hash=_hasher.hash(password))
        )
    token, _csrf = _open_session(conn, row.id, address, hours=session_hours, now=now)
    return LoginResult(token, user=_user(row))


def _open_session(
    conn: Connection,
    user_id: int,
    address: str | None,
    *,
    hours: float,
    now: datetime | None = None,
) -> tuple[str, str]:
    now = now or datetime.now(UTC)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(
        insert(web_sessions).values(
            token_hash=_hash_token(token),
            user_id=user_id,
            csrf_token=csrf,
            address=address[:64] if address else None,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return token, csrf


def session(conn: Connection, token: str | None, now: datetime | None = None) -> Session | None:
    """The live session of a cookie's token, with its user, if any."""
    if not token or len(token) > 128:
        return None
    row = conn.execute(
        select(users, web_sessions.c.csrf_token, web_sessions.c.expires_at)
        .join(web_sessions, web_sessions.c.user_id == users.c.id)
        .where(web_sessions.c.token_hash == _hash_token(token))
    ).first()
    if row is None or not row.active or as_utc(row.expires_at) <= (now or datetime.now(UTC)):
        return None
    return Session(_user(row), row.csrf_token, as_utc(row.expires_at))


def logout(conn: Connection, token: str | None) -> None:
    if token:
        conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == _hash_token(token)))


def end_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
