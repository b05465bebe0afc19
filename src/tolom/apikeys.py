"""API keys for the operator and service API: bearer tokens with scopes, stored hashed.

A key looks like `tolom_<prefix>_<secret>`. The prefix is public (it finds the row and
names the key in logs); the whole key is stored as SHA-256, which is enough for a 256-bit
random token (see `agents.service` on why no slow hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update

from tolom import audit
from tolom.db.schema import api_keys
from tolom.texts import N_, Refusal

# Each scope grants the ones it implies: admin > write > read; `charges` is the СОЧИ
# system's service key (create, read and cancel charges, quote tariffs), which admin also has.
SCOPES: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"write", "read"}),
    "charges": frozenset({"charges"}),
    "admin": frozenset({"admin", "write", "read", "charges"}),
}
_NAME = re.compile(r"[a-z][a-z0-9_.-]{1,63}")
_TOKEN = re.compile(r"tolom_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


class ApiKeyError(Refusal):
    """An API key operation that cannot be done, worded by a catalogue key."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    secret_hash: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def actor(self) -> str:
        """How the key appears in the audit log and on reversals."""
        return f"apikey:{self.name}"

    def grants(self, scope: str) -> bool:
        """Whether this key may do what `scope` allows."""
        return any(scope in SCOPES[s] for s in self.scopes if s in SCOPES)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(values: list[str]) -> frozenset[str]:
    """Validate scope names."""
    scopes = frozenset(v.strip() for value in values for v in value.split(",") if v.strip())
    unknown = scopes - SCOPES.keys()
    if not scopes or unknown:
        raise ApiKeyError(N_("apikey.error.scope"), allowed=", ".join(SCOPES))
    return scopes


def create(conn: Connection, *, name: str, scopes: list[str]) -> str:
    """Create a key; returns the token, shown only once."""
    if not _NAME.fullmatch(name):
        raise ApiKeyError(N_("apikey.error.name"))
    if conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first():
        raise ApiKeyError(N_("apikey.error.exists"), name=repr(name))
    granted = parse_scopes(scopes)
    prefix = secrets.token_hex(6)
    token = f"tolom_{prefix}_{secrets.token_urlsafe(32)}"
    conn.execute(
        insert(api_keys).values(
            name=name,
            prefix=prefix,
            secret_hash=_hash(token),
            scopes=" ".join(sorted(granted)),
        )
    )
    return token


def _from_row(row: object) -> ApiKey:
    return ApiKey(
        id=row.id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        prefix=row.prefix,  # type: ignore[attr-defined]
        secret_hash=row.secret_hash,  # type: ignore[attr-defined]
        scopes=frozenset(row.scopes.split()),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
    )


def list_keys(conn: Connection) -> list[ApiKey]:
    return [_from_row(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.name))]


def revoke(conn: Connection, name: str) -> None:
    """Revoke a key for good (it stays listed, as revoked)."""
    done = conn.execute(
        update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    if done.rowcount != 1:
        raise ApiKeyError(N_("apikey.error.not_found"), name=repr(name))


def create_audited(
    conn: Connection, *, name: str, scopes: list[str], actor: str, address: str | None = None
) -> tuple[str, list[str]]:
    """`create`, and `apikey.create` audited with the scopes granted; returns the token
    (shown only once) and the scopes, sorted."""
    token = create(conn, name=name, scopes=scopes)
    granted = sorted(parse_scopes(scopes))
    audit.record(
        conn,
        actor=actor,
        action="apikey.create",
        object_type="api_key",
        object_id=name,
        after={"name": name, "scopes": granted},
        address=address,
    )
    return token, granted


def revoke_audited(conn: Connection, name: str, *, actor: str, address: str | None = None) -> None:
    """`revoke`, and `apikey.revoke` audited."""
    revoke(conn, name)
    audit.record(
        conn,
        actor=actor,
        action="apikey.revoke",
        object_type="api_key",
        object_id=name,
        before={"revoked": False},
        after={"revoked": True},
        address=address,
    )


class KeyDirectory:
    """Keys by prefix, cached for `ttl` seconds, so a request costs no extra query.

    A revocation reaches every server process within `ttl` seconds.
    """

    def __init__(self, engine: Engine, ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def authenticate(self, token: str) -> ApiKey | None:
        """The key if the token is well-formed, known, not revoked and right; else None."""
        match = _TOKEN.fullmatch(token)
        key = self._get(match.group(1)) if match else None
        expected = key.secret_hash if key is not None else "0" * 64
        right = hmac.compare_digest(_hash(token), expected)  # same work either way
        if key is None or not right or key.revoked_at is not None:
            return None
        return key

    def _get(self, prefix: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._cache.get(prefix)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with self._engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).first()
        key = None if row is None else _from_row(row)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[prefix] = (now, key)
        return key
