"""Back-office users: argon2 passwords, roles and what each may do, lockout, sessions.

Passwords are chosen by people, so unlike agents' and API keys' random secrets they are
stored with a slow hash (argon2id). Sessions are random 256-bit tokens in a cookie, stored
as SHA-256 (a stolen database does not log anyone in) with their CSRF token beside them.

A login never hashes inside a transaction: `check_login` (a short read), then
`LoginCheck.verification` on the hashing pool (`passwords`) with no connection held, then
`finish_login` (a short write). Failures are counted, slowed down and locked per username
and client address by `login_throttle`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from tolom import audit
from tolom.backoffice import login_throttle, passwords
from tolom.backoffice.login_throttle import Policy
from tolom.db.schema import audit_log, users, web_sessions
from tolom.texts import LANGUAGES, N_, Refusal
from tolom.timestamps import as_utc

ROLES = ("admin", "operator", "accountant", "auditor")

# What each role may do. The auditor reads everything and changes nothing; every other
# role reads everything too (a person helping a customer needs the whole picture).
_CHANGES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {"users", "agents", "settings", "webhooks", "reopen_days", "audit_export", "simulate"}
    ),
    "operator": frozenset({"customers", "invoices", "cash", "orders", "simulate"}),
    "accountant": frozenset({"reversals", "exports", "reconciliation", "webhooks", "audit_export"}),
    "auditor": frozenset({"audit_export"}),  # reads everything, changes nothing
}
ACTIONS = frozenset().union(*_CHANGES.values())

MIN_PASSWORD = 10
_USERNAME = re.compile(r"[a-z][a-z0-9_.-]{1,63}")
# Made by the first login, not at import (see `passwords.dummy_hash`).
_dummy_hash = passwords.dummy_hash


class UserError(Refusal):
    """A user operation that cannot be done, worded by a catalogue key, with a `code`
    (e.g. "username.taken") that pages say in their own words."""

    def __init__(self, key: str, /, code: str = "", **values: Any) -> None:
        super().__init__(key, **values)
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
    """`token` on success; otherwise why not, and how long to hold the answer back (a
    failure) or how long the client must wait before trying again (`throttled`, 429)."""

    token: str | None
    user: User | None = None
    refusal: str | None = None  # bad_credentials | locked | throttled | busy
    delay_seconds: float = 0.0
    retry_after: int = 0  # seconds, for `throttled` and `busy`


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """What the short read before a login found: the hash to verify the password against
    (the dummy one when there is no such active user), and any block on the attempt."""

    username: str
    address: str | None
    user_id: int | None
    password_hash: str | None  # None: verify against the dummy hash
    throttled_until: datetime | None
    locked_until: datetime | None

    def verification(self, password: str) -> tuple[bool, str | None]:
        """What runs on a hashing thread: whether the password matches, and its new hash
        when the stored one uses old parameters. The same argon2 work whoever asks."""
        dummy = passwords.dummy_hash()  # made by the first login, whichever the name
        if self.password_hash is None:
            passwords.verify(dummy, password)
            return False, None
        if not passwords.verify(self.password_hash, password):
            return False, None
        if passwords.needs_rehash(self.password_hash):
            return True, passwords.hash_password(password)
        return True, None


def _user(row: Any) -> User:
    return User(row.id, row.username, row.display_name, row.role, row.language, row.active)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(N_("user.error.password_short"), "password.short", min=MIN_PASSWORD)
    if len(password) > 256:
        raise UserError(N_("user.error.password_long"), "password.long", max=256)


def create(
    conn: Connection,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str,
    language: str = "ru",
    password_hash: str | None = None,
) -> User:
    """Add a user. `password_hash`: `password` hashed by the caller before it opened its
    transaction (`passwords.hash_with_pool`); otherwise it is hashed here, on the pool."""
    if not _USERNAME.fullmatch(username):
        raise UserError(N_("user.error.username_format"), "username.format", name=repr(username))
    if role not in ROLES:
        raise UserError(
            N_("user.error.role"), "role.unknown", role=repr(role), allowed=", ".join(ROLES)
        )
    if language not in LANGUAGES:
        raise UserError(N_("user.error.language"), "language.unknown", allowed=", ".join(LANGUAGES))
    _check_display_name(display_name)
    check_password(password)
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise UserError(N_("user.error.taken"), "username.taken", username=username)
    user_id = conn.execute(
        insert(users)
        .values(
            username=username,
            display_name=display_name.strip(),
            password_hash=password_hash or passwords.hash_with_pool(password),
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
        raise UserError(N_("user.error.not_found"), "user.not_found", username=username)
    if "role" in values and values["role"] not in ROLES:
        raise UserError(
            N_("user.error.role"),
            "role.unknown",
            role=repr(values["role"]),
            allowed=", ".join(ROLES),
        )
    if "language" in values and values["language"] not in LANGUAGES:
        raise UserError(N_("user.error.language"), "language.unknown", allowed=", ".join(LANGUAGES))
    if "display_name" in values:
        _check_display_name(values["display_name"])
    new_role = values.get("role", before.role)
    disables = "active" in values and not values["active"] and before.active
    if by is not None and by.username == username and (new_role != before.role or disables):
        raise OwnAccountError(N_("user.error.own_role"), "own_account")
    if before.role == "admin" and before.active and (new_role != "admin" or disables):
        _keep_an_admin(conn, before)
    conn.execute(update(users).where(users.c.id == before.id).values(**values))
    after = get(conn, username)
    assert after is not None
    if after.role != before.role or not after.active:
        end_sessions(conn, after.id)
    return before, after


def set_password(
    conn: Connection, user_id: int, password: str, *, password_hash: str | None = None
) -> None:
    """Set a new password, unlock, and end every session of the user.

    `password_hash`, when the caller hashed `password` before opening its transaction (so
    that the transaction is not held open for the hash); otherwise it is hashed here."""
    check_password(password)
    encoded = password_hash or passwords.hash_with_pool(password)
    username = conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            password_hash=encoded,
            password_changed_at=datetime.now(UTC),
            failed_logins=0,
            locked_until=None,
        )
        .returning(users.c.username)
    ).scalar_one()
    login_throttle.clear_username(conn, username)
    end_sessions(conn, user_id)


def password_hash_of(conn: Connection, user_id: int) -> str:
    """The stored hash, to verify a password against outside the transaction."""
    found: str = conn.execute(
        select(users.c.password_hash).where(users.c.id == user_id)
    ).scalar_one()
    return found


def change_password(
    conn: Connection,
    user: User,
    *,
    verified_hash: str,
    new: str,
    new_hash: str,
    session_hours: float,
) -> str:
    """A user changes their own password; returns a new session token (the old ones end).

    The caller verified the current password against `verified_hash` and hashed `new` as
    `new_hash` beforehand, with no transaction open; if the stored hash changed meanwhile,
    the current password is refused as wrong."""
    if password_hash_of(conn, user.id) != verified_hash:
        raise UserError(N_("user.error.old_password"), "old_password.wrong")
    set_password(conn, user.id, new, password_hash=new_hash)
    return _open_session(conn, user.id, None, hours=session_hours)[0]


def check_login(
    conn: Connection, username: str, address: str | None, *, now: datetime
) -> LoginCheck:
    """The short read before a login: the user's hash and the throttle's blocks. Nothing
    here may tell a known username from an unknown one to the caller's client."""
    name = username.strip().lower()
    found = None
    if name:
        found = conn.execute(
            select(users.c.id, users.c.password_hash, users.c.active).where(
                users.c.username == name
            )
        ).first()
    state = login_throttle.state(conn, name, address, now)
    usable = found is not None and found.active
    return LoginCheck(
        username=name,
        address=address,
        user_id=found.id if usable and found is not None else None,
        password_hash=found.password_hash if usable and found is not None else None,
        throttled_until=state.throttled_until,
        locked_until=state.locked_until,
    )


def finish_login(
    conn: Connection,
    check: LoginCheck,
    verified: bool,
    new_hash: str | None,
    *,
    policy: Policy,
    session_hours: float,
    now: datetime,
) -> LoginResult:
    """The short write after a login's password was verified (outside any transaction):
    a session on success; otherwise count the failure. Every failure is answered alike
    (unknown name, wrong password, disabled user, or locked from this address), after a
    delay that grows with the failures in a row of this name from this address."""
    row = None
    if verified and check.locked_until is None and check.user_id is not None:
        row = conn.execute(select(users).where(users.c.id == check.user_id)).first()
        if row is None or not row.active or row.password_hash != check.password_hash:
            row = None  # changed while the password was being verified: refuse
    if row is None:
        failure = login_throttle.record_failure(conn, check.username, check.address, policy, now)
        if failure.locked_until is not None and check.user_id is not None:
            # The users page shows (and `unlock` lifts) the latest lock from any address.
            conn.execute(
                update(users)
                .where(users.c.id == check.user_id)
                .values(locked_until=failure.locked_until)
            )
        return LoginResult(
            None,
            refusal="locked" if failure.locked_until is not None else "bad_credentials",
            delay_seconds=failure.delay_seconds,
        )
    login_throttle.record_success(conn, check.username, check.address)
    if new_hash is not None:
        conn.execute(update(users).where(users.c.id == row.id).values(password_hash=new_hash))
    token, _csrf = _open_session(conn, row.id, check.address, hours=session_hours, now=now)
    return LoginResult(token, user=_user(row))


def refused_early(check: LoginCheck, now: datetime) -> LoginResult | None:
    """`throttled` (429) when the address or the username is held back: answered before
    any password is hashed, whether or not the name exists."""
    if check.throttled_until is None:
        return None
    return LoginResult(
        None,
        refusal="throttled",
        retry_after=login_throttle.retry_after(check.throttled_until, now),
    )


def login(
    engine: Engine,
    username: str,
    password: str,
    *,
    address: str | None,
    session_hours: float,
    policy: Policy | None = None,
    now: datetime | None = None,
) -> LoginResult:
    """Check a username and password and, if right, open a session (for threads: the CLI
    and tests; the login page does the same steps without holding a thread).

    A short read, the argon2 verify on the hashing pool with no connection held, then a
    short write: a login never keeps a transaction open (on SQLite, the write lock every
    gateway needs) while the password is hashed."""
    now = now or datetime.now(UTC)
    policy = policy or Policy()
    with engine.connect() as conn:
        check = check_login(conn, username, address, now=now)
    early = refused_early(check, now)
    if early is not None:
        return early
    try:
        verified, new_hash = passwords.pool().call(lambda: check.verification(password))
    except passwords.PoolBusy:
        return LoginResult(None, refusal="busy", retry_after=1)
    with engine.begin() as conn:
        return finish_login(
            conn,
            check,
            verified,
            new_hash,
            policy=policy,
            session_hours=session_hours,
            now=now,
        )


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
        raise UserError(N_("user.error.display_name_empty"), "display_name.empty")
    if len(display_name.strip()) > DISPLAY_NAME_MAX or _CONTROL.search(display_name):
        raise UserError(
            N_("user.error.display_name_invalid"), "display_name.invalid", max=DISPLAY_NAME_MAX
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
        raise LastAdminError(N_("user.error.last_admin"), "last_admin")


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
    """End a user's lockouts from every address (and their counts of failed logins);
    returns when the latest lock would have ended, or None if none was in force."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        select(users.c.id, users.c.locked_until)
        .where(users.c.username == username)
        .with_for_update()
    ).first()
    if row is None:
        raise UserError(N_("user.error.not_found"), "user.not_found", username=username)
    locked = as_utc(row.locked_until) if row.locked_until is not None else None
    login_throttle.clear_username(conn, username)
    if locked is None or locked <= now:
        return None  # not locked: nothing to lift (an old lock ended by itself)
    conn.execute(
        update(users).where(users.c.id == row.id).values(failed_logins=0, locked_until=None)
    )
    return locked


def reset_password(
    conn: Connection,
    username: str,
    *,
    by: User | None = None,
    generated: tuple[str, str] | None = None,
) -> tuple[User, str]:
    """Give a user a new generated password (shown once by the caller); also unlocks them
    and ends their sessions. `by` may not reset their own (the password page is for that).

    `generated`: a (password, hash) pair from `new_password()`, made before the caller's
    transaction so that it is not held open for the hash."""
    user = get(conn, username)
    if user is None:
        raise UserError(N_("user.error.not_found"), "user.not_found", username=username)
    if by is not None and by.username == username:
        raise OwnAccountError(N_("user.error.own_password"), "own_account")
    password, encoded = generated or (generate_password(), None)
    set_password(conn, user.id, password, password_hash=encoded)
    return user, password


def new_password() -> tuple[str, str]:
    """A generated password and its hash (hashed on the pool), for `reset_password`."""
    password = generate_password()
    return password, passwords.hash_with_pool(password)


# --- audited changes: what the back office and the command line call ----------------------

OBJECT_TYPE = "user"
# The audit action of each changeable field (`active` says which way it went).
_CHANGE_ACTIONS = {"role": "user.role", "language": "user.language", "display_name": "user.name"}


def _record(
    conn: Connection,
    action: str,
    username: str,
    *,
    actor: str,
    address: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=username,
        before=before,
        after=after,
        address=address,
    )


def create_audited(
    conn: Connection,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str,
    language: str = "ru",
    password_hash: str | None = None,
    actor: str,
    address: str | None = None,
) -> User:
    """`create`, and its `user.create` audit line in the same transaction."""
    user = create(
        conn,
        username=username,
        display_name=display_name,
        role=role,
        password=password,
        language=language,
        password_hash=password_hash,
    )
    _record(conn, "user.create", user.username, actor=actor, address=address, after=as_dict(user))
    return user


def change_audited(
    conn: Connection,
    username: str,
    *,
    by: User | None = None,
    actor: str,
    address: str | None = None,
    **values: Any,
) -> tuple[User, User]:
    """`change`, one field at a time in the order given, each field that changed audited
    with its own action (`user.role`, `user.language`, `user.name`, `user.enable`,
    `user.disable`) and the whole user before and after it; returns (before, after) of
    the whole change. A change that changes nothing writes no line."""
    first: User | None = None
    last: User | None = None
    for name, value in values.items():
        before, after = change(conn, username, by=by, **{name: value})
        first = first or before
        last = after
        if before == after:
            continue
        if name == "active":
            action = "user.enable" if value else "user.disable"
        else:
            action = _CHANGE_ACTIONS[name]
        _record(
            conn,
            action,
            username,
            actor=actor,
            address=address,
            before=as_dict(before),
            after=as_dict(after),
        )
    if first is None or last is None:
        found = get(conn, username)
        if found is None:
            raise UserError(N_("user.error.not_found"), "user.not_found", username=username)
        return found, found
    return first, last


def reset_password_audited(
    conn: Connection,
    username: str,
    *,
    by: User | None = None,
    generated: tuple[str, str] | None = None,
    actor: str,
    address: str | None = None,
) -> tuple[User, str]:
    """`reset_password` (a generated password), and `user.reset_password` audited."""
    user, password = reset_password(conn, username, by=by, generated=generated)
    _record(conn, "user.reset_password", username, actor=actor, address=address)
    return user, password


def set_password_audited(
    conn: Connection,
    username: str,
    password: str,
    *,
    password_hash: str | None = None,
    actor: str,
    address: str | None = None,
) -> User:
    """A chosen password for a user (the command line's reset): `set_password`, and
    `user.reset_password` audited. Raises UserError for an unknown user."""
    user = get(conn, username)
    if user is None:
        raise UserError(N_("user.error.not_found"), "user.not_found", username=username)
    set_password(conn, user.id, password, password_hash=password_hash)
    _record(conn, "user.reset_password", username, actor=actor, address=address)
    return user


def unlock_audited(
    conn: Connection,
    username: str,
    now: datetime | None = None,
    *,
    actor: str,
    address: str | None = None,
) -> bool:
    """`unlock`, and `user.unlock` audited with when the lock would have ended; False
    (and no line) when no lock was in force."""
    lifted = unlock(conn, username, now)
    if lifted is None:
        return False
    _record(
        conn,
        "user.unlock",
        username,
        actor=actor,
        address=address,
        before={"locked_until": lifted.isoformat()},
        after={"locked_until": None},
    )
    return True


def finish_login_audited(
    conn: Connection,
    check: LoginCheck,
    verified: bool,
    new_hash: str | None,
    *,
    policy: Policy,
    session_hours: float,
    now: datetime,
    address: str | None = None,
) -> LoginResult:
    """`finish_login`, and `user.login` audited (by the user) when it let them in."""
    result = finish_login(
        conn, check, verified, new_hash, policy=policy, session_hours=session_hours, now=now
    )
    if result.user is not None:
        name = result.user.username
        _record(conn, "user.login", name, actor=f"user:{name}", address=address)
    return result


def logout_audited(
    conn: Connection, token: str | None, user: User, *, actor: str, address: str | None = None
) -> None:
    """`logout`, and `user.logout` audited."""
    logout(conn, token)
    _record(conn, "user.logout", user.username, actor=actor, address=address)


def change_password_audited(
    conn: Connection,
    user: User,
    *,
    verified_hash: str,
    new: str,
    new_hash: str,
    session_hours: float,
    actor: str,
    address: str | None = None,
) -> str:
    """`change_password` (a user's own), and `user.change_password` audited; returns the
    new session token."""
    token = change_password(
        conn,
        user,
        verified_hash=verified_hash,
        new=new,
        new_hash=new_hash,
        session_hours=session_hours,
    )
    _record(conn, "user.change_password", user.username, actor=actor, address=address)
    return token


def set_own_language_audited(
    conn: Connection, user: User, language: str, *, actor: str, address: str | None = None
) -> bool:
    """A user's choice of their own language, audited as `user.language` (only the
    language, before and after) when it changed; True when it did."""
    before, after = change(conn, user.username, language=language)
    if before == after:
        return False
    _record(
        conn,
        "user.language",
        user.username,
        actor=actor,
        address=address,
        before={"language": before.language},
        after={"language": after.language},
    )
    return True
