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
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, insert, select, update

from tolom.db.schema import audit_log, users, web_sessions
from tolom.timestamps import as_utc

ROLES = ("admin", "operator", "accountant", "auditor")
LANGUAGES = ("ru", "ky", "en")

# What each role may do. The auditor reads everything and changes nothing; every other
# role reads everything too (a person helping a customer needs the whole picture).
_CHANGES: dict[str, frozenset[str]] = {
    "admin": frozenset({"users", "agents", "settings", "webhooks", "reopen_days"}),
    "operator": frozenset({"customers", "invoices", "cash", "orders"}),
    "accountant": frozenset({"reversals", "exports", "reconciliation", "webhooks"}),
    "auditor": frozenset(),
}
ACTIONS = frozenset().union(*_CHANGES.values())

MIN_PASSWORD = 10
FAILURE_DELAY = 1.0  # seconds before a failed login is answered
_USERNAME = re.compile(r"[a-z][a-z0-9_.-]{1,63}")
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that both cost the same time.

    Made by the first login, not at import: an argon2 hash costs every server process
    ~0.1 s of CPU at startup otherwise (docs/operations.md). `login` makes it whichever
    the username, so that the first login costs the same for a known and an unknown one.
    """
    return _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user operation that cannot be done, with a message for the operator and a `code`
    (e.g. "username.taken") that pages translate."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class LastAdminError(UserError):
    """The change would leave no active administrator."""


class OwnAccountError(UserError):
    """A user may not change their own role, disable themself or reset their own password
    here (the password page is for that)."""


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
        raise UserError(f"password: пароль короче {MIN_PASSWORD} символов", "password.short")
    if len(password) > 256:
        raise UserError("password: пароль длиннее 256 символов", "password.long")


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
            f"username: {username!r}: строчные латинские буквы, цифры, «.», «-», «_», 2–64 знака",
            "username.format",
        )
    if role not in ROLES:
        raise UserError(
            f"role: неизвестная роль {role!r}; допустимы: {', '.join(ROLES)}", "role.unknown"
        )
    if language not in LANGUAGES:
        raise UserError(f"language: допустимы {', '.join(LANGUAGES)}", "language.unknown")
    _check_display_name(display_name)
    check_password(password)
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise UserError(f"username: пользователь {username} уже есть", "username.taken")
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


def change(
    conn: Connection, username: str, *, by: User | None = None, **values: Any
) -> tuple[User, User]:
    """Change role, language, name or active; returns (before, after). Ends the user's
    sessions when they are disabled or their role changes.

    Refused (LastAdminError) when it would leave no active administrator, whoever asks;
    refused (OwnAccountError) when `by`, the user making the change, changes their own
    role or disables themself."""
    before = get(conn, username)
    if before is None:
        raise UserError(f"username: пользователь {username} не найден", "user.not_found")
    if "role" in values and values["role"] not in ROLES:
        raise UserError(
            f"role: неизвестная роль {values['role']!r}; допустимы: {', '.join(ROLES)}",
            "role.unknown",
        )
    if "language" in values and values["language"] not in LANGUAGES:
        raise UserError(f"language: допустимы {', '.join(LANGUAGES)}", "language.unknown")
    if "display_name" in values:
        _check_display_name(values["display_name"])
    new_role = values.get("role", before.role)
    disables = "active" in values and not values["active"] and before.active
    if by is not None and by.username == username and (new_role != before.role or disables):
        raise OwnAccountError("username: свою роль менять и себя отключать нельзя", "own_account")
    if before.role == "admin" and before.active and (new_role != "admin" or disables):
        _keep_an_admin(conn, before)
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
        raise UserError("old_password: текущий пароль неверен", "old_password.wrong")
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
    dummy = _dummy_hash()  # for every login: an unknown name must not cost more, even once
    row = conn.execute(
        select(users).where(users.c.username == username.strip().lower()).with_for_update()
    ).first()
    if row is None or not row.active:
        _verify(dummy, password)
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


# --- administration: what the users page needs ------------------------------------------------

# Letters and digits that cannot be mistaken for one another when read aloud or copied
# from a screen (no 0/O, 1/l/I).
_UNAMBIGUOUS = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
DISPLAY_NAME_MAX = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_display_name(display_name: str) -> None:
    if not display_name.strip():
        raise UserError("display_name: укажите имя", "display_name.empty")
    if len(display_name.strip()) > DISPLAY_NAME_MAX or _CONTROL.search(display_name):
        raise UserError(
            f"display_name: не длиннее {DISPLAY_NAME_MAX} знаков, без управляющих символов",
            "display_name.invalid",
        )


def _keep_an_admin(conn: Connection, leaving: User) -> None:
    """Refuse unless another active administrator remains. The administrators' rows are
    locked (PostgreSQL), so two admins demoting each other at once cannot both succeed."""
    admins = conn.execute(
        select(users.c.id)
        .where(users.c.role == "admin", users.c.active.is_(True))
        .with_for_update()
    ).scalars()
    if not any(found != leaving.id for found in admins):
        raise LastAdminError(
            "username: это последний активный администратор; сначала назначьте другого",
            "last_admin",
        )


def generate_password() -> str:
    """A random password for a person to type once (and then change): four groups of four
    unambiguous characters, about 92 bits."""
    groups = ("".join(secrets.choice(_UNAMBIGUOUS) for _ in range(4)) for _ in range(4))
    return "-".join(groups)


def as_dict(user: User) -> dict[str, Any]:
    """What the audit log and the CLI's JSON show of a user (never a hash or a token)."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "language": user.language,
        "active": user.active,
    }


@dataclass(frozen=True, slots=True)
class Overview:
    """A user as the users page shows them: no password hash, no sessions, no failure count."""

    user: User
    locked_until: datetime | None  # only while the lock lasts
    last_login: datetime | None  # from the audit log's latest `user.login`
    created_at: datetime


def overview(
    conn: Connection, now: datetime | None = None, username: str | None = None
) -> list[Overview]:
    """Every user (or the one named), by username, with lock and last login.

    The last login is the newest `user.login` line of the user in the audit log, found
    through its (object_type, object_id, id) index: one query for the whole list."""
    now = now or datetime.now(UTC)
    last_login = (
        select(audit_log.c.at)
        .where(
            audit_log.c.object_type == "user",
            audit_log.c.object_id == users.c.username,
            audit_log.c.action == "user.login",
        )
        .order_by(audit_log.c.id.desc())
        .limit(1)
        .correlate(users)
        .scalar_subquery()
    )
    query = select(users, last_login.label("last_login")).order_by(users.c.username)
    if username is not None:
        query = query.where(users.c.username == username)
    found = []
    for row in conn.execute(query):
        locked = as_utc(row.locked_until) if row.locked_until is not None else None
        found.append(
            Overview(
                _user(row),
                locked if locked is not None and locked > now else None,
                as_utc(row.last_login) if row.last_login is not None else None,
                as_utc(row.created_at),
            )
        )
    return found


def unlock(conn: Connection, username: str, now: datetime | None = None) -> datetime | None:
    """End a user's lockout (and their count of failed logins); returns when the lock would
    have ended, or None, changing nothing, if they were not locked."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        select(users.c.id, users.c.locked_until)
        .where(users.c.username == username)
        .with_for_update()
    ).first()
    if row is None:
        raise UserError(f"username: пользователь {username} не найден", "user.not_found")
    locked = as_utc(row.locked_until) if row.locked_until is not None else None
    if locked is None or locked <= now:
        return None  # not locked: nothing to change (an old lock ended by itself)
    conn.execute(
        update(users).where(users.c.id == row.id).values(failed_logins=0, locked_until=None)
    )
    return locked


def reset_password(conn: Connection, username: str, *, by: User | None = None) -> tuple[User, str]:
    """Give a user a new generated password (shown once by the caller); also unlocks them
    and ends their sessions. `by` may not reset their own (the password page is for that)."""
    user = get(conn, username)
    if user is None:
        raise UserError(f"username: пользователь {username} не найден", "user.not_found")
    if by is not None and by.username == username:
        raise OwnAccountError("username: свой пароль меняют на странице пароля", "own_account")
    password = generate_password()
    set_password(conn, user.id, password)
    return user, password
