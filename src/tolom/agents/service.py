"""Creating and managing agents, and authenticating their requests quickly.

Secrets are 256-bit random tokens, so a single SHA-256 is enough to store them safely
(a slow password hash protects guessable passwords, which these are not) and costs the
hot path microseconds, not the tens of milliseconds of bcrypt or argon2. The REST signing
key must be used, not only compared, so it is stored sealed (`tolom.secretbox`) and
opened once per cache load, never per request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, delete, insert, select, update

from tolom import secretbox
from tolom.addresses import IPNetwork, in_networks
from tolom.db.schema import accounts, agent_services, agents, services
from tolom.ledger.accounts import HOT_ACCOUNT_SLOTS, LedgerAccount, create_account
from tolom.money import format_amount
from tolom.texts import N_, Refusal
from tolom.timestamps import HOME_ZONE_NAME

log = logging.getLogger(__name__)

ANY_ADDRESS = "*"
_CODE = re.compile(r"[a-z][a-z0-9_-]{1,31}")

# The REST gateway's HMAC key is derived from the secret rather than being the secret, so
# the secret (OSMP's Basic password) and the signing key are never used with two primitives.
SIGNING_KEY_CONTEXT = b"tolom-agent-signing-key"

GATEWAY = "gateway"
# Payments an operator records by hand go through the same core as an agent's, each under a
# built-in "channel" agent of its own: the cash desk and the bank account. They have no
# secret, no addresses and never authenticate.
CHANNELS: dict[str, tuple[str, str]] = {
    # code: (name, ledger account they debit)
    "cash_desk": ("Касса компании", "cash_desk"),
    "bank": ("Банковский перевод", "bank"),
}
_NO_SECRET = "-" * 64  # never equal to a SHA-256 hex digest


class AgentError(Refusal):
    """An agent operation that cannot be done, worded by a catalogue key.

    `code` names the reason for pages that say it in their own words ("code.taken"),
    `value` is the offending input where there is one (a network as typed, a zone).
    """

    def __init__(self, key: str, /, *, code: str = "", value: str = "", **values: Any) -> None:
        super().__init__(key, **values)
        self.code = code
        self.value = value


@dataclass(frozen=True, slots=True)
class Limits:
    """The amounts, in tyiyn, an agent may pay into one service."""

    min_amount: int
    max_amount: int


@dataclass(frozen=True, slots=True)
class Agent:
    """Everything a request of this agent needs, loaded once and cached."""

    id: int
    code: str
    name: str
    secret_hash: str
    networks: tuple[IPNetwork, ...] | None  # None: any address
    timezone: ZoneInfo
    enabled: bool
    clearing_account: LedgerAccount
    services: dict[str, Limits] = field(default_factory=dict)
    kind: str = GATEWAY
    signing_key: bytes | None = None  # REST gateway; None until the secret is next rotated
    cancel_window_days: int = 0
    sandbox: bool = False  # a test agent: answered by `payments.sandbox`, never real tables

    @property
    def actor(self) -> str:
        """How the agent appears in reversal records and the audit log."""
        return f"agent:{self.code}"

    def allows_address(self, address: str) -> bool:
        """Whether a request from `address` may act for this agent."""
        return self.networks is None or in_networks(address, self.networks)


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def signing_key_for(secret: str) -> str:
    """The REST signing key (hex) that belongs to a secret."""
    return hmac.new(secret.encode("utf-8"), SIGNING_KEY_CONTEXT, hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_networks(values: list[str]) -> str:
    """Validate CIDRs (or "*") and return their stored form."""
    if not values:
        raise AgentError(N_("agent.error.networks_empty"), code="networks.empty")
    if ANY_ADDRESS in values:
        return ANY_ADDRESS
    stored = []
    for value in values:
        try:
            stored.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as error:
            raise AgentError(
                N_("agent.error.network_bad"), code="networks.bad", value=value, error=str(error)
            ) from error
    return ",".join(stored)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # "Asia" is a directory
        raise AgentError(
            N_("agent.error.timezone"), code="timezone.unknown", value=name, zone=repr(name)
        ) from error


def create(
    conn: Connection,
    *,
    code: str,
    name: str,
    networks: list[str],
    service_codes: list[str],
    timezone: str = HOME_ZONE_NAME,
    secret: str | None = None,
    sandbox: bool = False,
) -> str:
    """Register an agent with its clearing account; returns the secret (shown only once).
    A `sandbox` agent's requests are answered from the magic accounts (`payments.sandbox`)."""
    if not _CODE.fullmatch(code):
        raise AgentError(N_("agent.error.code_format"), code="code.format")
    if conn.execute(select(agents.c.id).where(agents.c.code == code)).first():
        raise AgentError(
            N_("agent.error.code_taken"), code="code.taken", value=code, agent=repr(code)
        )
    stored_networks = parse_networks(networks)
    _zone(timezone)
    known = set(conn.execute(select(services.c.code)).scalars())
    unknown = set(service_codes) - known
    if not service_codes or unknown:
        raise AgentError(
            N_("agent.error.services"), code="services.unknown", allowed=", ".join(sorted(known))
        )
    secret = secret or secrets.token_urlsafe(32)
    clearing = create_account(
        conn,
        code=f"agent:{code}:clearing",
        kind="agent_clearing",
        name=f"Расчёты с агентом {name}",
        may_go_negative=True,
        slots=HOT_ACCOUNT_SLOTS,
    )
    agent_id = conn.execute(
        insert(agents)
        .values(
            code=code,
            name=name,
            secret_hash=hash_secret(secret),
            signing_key_sealed=secretbox.for_connection(conn).seal(signing_key_for(secret)),
            secret_sealed=_sandbox_seal(conn, secret) if sandbox else None,
            allowed_networks=stored_networks,
            timezone=timezone,
            clearing_account_id=clearing.id,
            sandbox=sandbox,
        )
        .returning(agents.c.id)
    ).scalar_one()
    conn.execute(
        insert(agent_services), [{"agent_id": agent_id, "service": s} for s in service_codes]
    )
    return secret


def ensure_channels(conn: Connection) -> None:
    """Create the built-in channel agents (cash desk, bank) that are missing."""
    existing = set(conn.execute(select(agents.c.code)).scalars())
    known = list(conn.execute(select(services.c.code)).scalars())
    for code, (name, account_code) in CHANNELS.items():
        if code in existing:
            continue
        account_id = conn.execute(
            select(accounts.c.id).where(accounts.c.code == account_code)
        ).scalar_one()
        agent_id = conn.execute(
            insert(agents)
            .values(
                code=code,
                name=name,
                kind=code,
                secret_hash=_NO_SECRET,
                allowed_networks="",
                timezone=HOME_ZONE_NAME,
                enabled=False,
                clearing_account_id=account_id,
            )
            .returning(agents.c.id)
        ).scalar_one()
        conn.execute(insert(agent_services), [{"agent_id": agent_id, "service": s} for s in known])


def _agent_id(conn: Connection, code: str, *, gateway_only: bool = False) -> int:
    row = conn.execute(select(agents.c.id, agents.c.kind).where(agents.c.code == code)).first()
    if row is None:
        raise AgentError(
            N_("agent.error.not_found"), code="code.unknown", value=code, agent=repr(code)
        )
    if gateway_only and row.kind != GATEWAY:
        raise AgentError(
            N_("agent.error.channel"), code="code.channel", value=code, agent=repr(code)
        )
    return int(row.id)


def set_enabled(conn: Connection, code: str, enabled: bool) -> None:
    """Enable or disable an agent (a disabled agent gets HTTP 403)."""
    agent_id = _agent_id(conn, code, gateway_only=True)
    conn.execute(update(agents).where(agents.c.id == agent_id).values(enabled=enabled))


def rotate_secret(conn: Connection, code: str) -> str:
    """Replace an agent's secret and signing key; returns the new secret (shown only once)."""
    agent_id = _agent_id(conn, code, gateway_only=True)
    secret = secrets.token_urlsafe(32)
    sandbox = conn.execute(select(agents.c.sandbox).where(agents.c.id == agent_id)).scalar_one()
    conn.execute(
        update(agents)
        .where(agents.c.id == agent_id)
        .values(
            secret_hash=hash_secret(secret),
            signing_key_sealed=secretbox.for_connection(conn).seal(signing_key_for(secret)),
            secret_sealed=_sandbox_seal(conn, secret) if sandbox else None,
        )
    )
    return secret


def _sandbox_seal(conn: Connection, secret: str) -> str:
    """A sandbox agent's secret, sealed: the simulator (`tolom.simulator`) speaks as that
    agent. A real agent's secret is never kept but as its hash."""
    return secretbox.for_connection(conn).seal(secret)


@dataclass(frozen=True, slots=True)
class SandboxCredentials:
    """What a tool that speaks to the gateways as an agent (the simulator, the probe) needs."""

    code: str
    secret: str = field(repr=False)
    timezone: str


def sandbox_credentials(
    conn: Connection, code: str, secret: str | None = None
) -> SandboxCredentials:
    """The gateway agent `code` and its secret (the one given, or opened from the store),
    for a tool that pays as an agent. The one rule for every such tool: only a sandbox agent,
    so that none of them can ever make a real payment. AgentError for an unknown or real
    agent, or a sandbox agent whose secret was made before it was kept (rotate it once)."""
    row = conn.execute(
        select(agents.c.sandbox, agents.c.secret_sealed, agents.c.timezone).where(
            agents.c.code == code, agents.c.kind == GATEWAY
        )
    ).first()
    if row is None:
        raise AgentError(N_("agent.error.speaker_unknown"), code="speaker.unknown", agent=code)
    if not row.sandbox:
        raise AgentError(N_("agent.error.speaker_real"), code="speaker.real", agent=code)
    if not secret and row.secret_sealed:
        secret = secretbox.for_connection(conn).open(row.secret_sealed)
    if not secret:
        raise AgentError(N_("agent.error.speaker_no_secret"), code="speaker.no_secret", agent=code)
    return SandboxCredentials(code, secret, row.timezone)


def configure(
    conn: Connection,
    code: str,
    *,
    networks: list[str] | None = None,
    timezone: str | None = None,
    cancel_window_days: int | None = None,
) -> None:
    """Change an agent's allow-list, time zone or cancel window (what is None stays)."""
    agent_id = _agent_id(conn, code, gateway_only=networks is not None)
    values: dict[str, object] = {}
    if networks is not None:
        values["allowed_networks"] = parse_networks(networks)
    if timezone is not None:
        _zone(timezone)
        values["timezone"] = timezone
    if cancel_window_days is not None:
        if not 0 <= cancel_window_days <= 366:
            raise AgentError(N_("agent.error.cancel_window"), code="cancel_window.range")
        values["cancel_window_days"] = cancel_window_days
    if values:
        conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))


def set_service(
    conn: Connection,
    code: str,
    service: str,
    *,
    allowed: bool,
    min_amount: int | None = None,
    max_amount: int | None = None,
    replace: bool = False,
) -> None:
    """Allow or forbid a service for an agent, optionally overriding the service's limits.

    Neither limit given: back to the service's defaults. One given: the other keeps the
    agent's earlier override, unless `replace` (a form that shows both: what is not given
    is the service's default). The resulting range must be payable (0 < min <= max).
    """
    agent_id = _agent_id(conn, code)
    defaults = conn.execute(
        select(services.c.min_amount, services.c.max_amount).where(services.c.code == service)
    ).first()
    if defaults is None:
        raise AgentError(
            N_("agent.error.service"), code="service.unknown", value=service, service=repr(service)
        )
    where = (agent_services.c.agent_id == agent_id) & (agent_services.c.service == service)
    if not allowed:
        conn.execute(delete(agent_services).where(where))
        return
    for name, value in (("min", min_amount), ("max", max_amount)):
        if value is not None and value <= 0:
            raise AgentError(
                N_("agent.error.amount_not_positive"),
                code="amount.not_positive",
                value=name,
                field=name,
            )
    new_min, new_max = min_amount, max_amount
    if not replace and (min_amount is None) != (max_amount is None):  # keep the other override
        current = conn.execute(
            select(agent_services.c.min_amount, agent_services.c.max_amount).where(where)
        ).first()
        if current is not None:
            new_min = current.min_amount if min_amount is None else min_amount
            new_max = current.max_amount if max_amount is None else max_amount
    effective_min = new_min or defaults.min_amount
    effective_max = new_max or defaults.max_amount
    if effective_min > effective_max:
        raise AgentError(
            N_("agent.error.min_over_max"),
            code="amount.min_over_max",
            min=format_amount(effective_min),
            max=format_amount(effective_max),
        )
    conn.execute(delete(agent_services).where(where))
    conn.execute(
        insert(agent_services).values(
            agent_id=agent_id, service=service, min_amount=new_min, max_amount=new_max
        )
    )


def load_all(conn: Connection) -> list[Agent]:
    """Every agent with its services and effective limits."""
    return [
        _agent_from_row(conn, row) for row in conn.execute(select(agents).order_by(agents.c.code))
    ]


def load(conn: Connection, code: str) -> Agent | None:
    """One agent by code."""
    row = conn.execute(select(agents).where(agents.c.code == code)).first()
    return None if row is None else _agent_from_row(conn, row)


def _agent_from_row(conn: Connection, row: object) -> Agent:
    limits = {}
    query = (
        select(
            agent_services.c.service,
            agent_services.c.min_amount,
            agent_services.c.max_amount,
            services.c.min_amount.label("default_min"),
            services.c.max_amount.label("default_max"),
        )
        .join(services, services.c.code == agent_services.c.service)
        .where(agent_services.c.agent_id == row.id)  # type: ignore[attr-defined]
    )
    for s in conn.execute(query):
        limits[s.service] = Limits(s.min_amount or s.default_min, s.max_amount or s.default_max)
    stored: str = row.allowed_networks  # type: ignore[attr-defined]
    networks = (
        None
        if stored == ANY_ADDRESS
        else tuple(ipaddress.ip_network(n) for n in stored.split(",") if n)
    )
    slots = conn.execute(
        select(accounts.c.slots).where(accounts.c.id == row.clearing_account_id)  # type: ignore[attr-defined]
    ).scalar_one()
    return Agent(
        id=row.id,  # type: ignore[attr-defined]
        code=row.code,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        secret_hash=row.secret_hash,  # type: ignore[attr-defined]
        networks=networks,
        timezone=_zone(row.timezone),  # type: ignore[attr-defined]
        enabled=row.enabled,  # type: ignore[attr-defined]
        clearing_account=LedgerAccount(row.clearing_account_id, slots),  # type: ignore[attr-defined]
        services=limits,
        kind=row.kind,  # type: ignore[attr-defined]
        signing_key=_signing_key(conn, row),
        cancel_window_days=row.cancel_window_days,  # type: ignore[attr-defined]
        sandbox=bool(row.sandbox),  # type: ignore[attr-defined]
    )


def _signing_key(conn: Connection, row: object) -> bytes | None:
    """The agent's REST signing key, opened; None when it has none or it cannot be opened
    (then OSMP still works, REST refuses, and the log says why)."""
    sealed = row.signing_key_sealed  # type: ignore[attr-defined]
    if not sealed:
        return None
    try:
        return bytes.fromhex(secretbox.for_connection(conn).open(sealed))
    except (secretbox.SecretKeyError, secretbox.SealError) as error:
        log.error("agent %s: its REST signing key cannot be opened: %s", row.code, error)  # type: ignore[attr-defined]
        return None


def verify_secret(agent: Agent | None, secret: str) -> Agent | None:
    """The agent if `secret` is its secret, else None (also when there is no agent)."""
    if agent is None:
        # Same work as a real comparison, so timing does not reveal which codes exist.
        secret_matches(secret, "0" * 64)
        return None
    return agent if secret_matches(secret, agent.secret_hash) else None


class AgentDirectory:
    """Agents by code, cached for `ttl` seconds so authentication costs no query per request.

    A change made with the CLI (disable, new secret, limits) reaches every server process
    within `ttl` seconds; a change made on the back-office pages `forget`s the agent in the
    process that served the page at once, and reaches the other processes within `ttl`.
    """

    def __init__(self, engine: Engine, ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Agent | None]] = {}

    MISS = object()  # `cached` found nothing fresh: ask `get`

    def cached(self, code: str) -> Agent | object | None:
        """The agent from the cache without touching the database, or `MISS`."""
        cached = self._cache.get(code)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        return self.MISS

    def get(self, code: str) -> Agent | None:
        """The agent with this code, or None; from the cache when fresh."""
        cached = self.cached(code)
        if cached is not self.MISS:
            return cached  # type: ignore[return-value]
        now = time.monotonic()
        with self._engine.connect() as conn:
            agent = load(conn, code)
        with self._lock:
            if len(self._cache) > 10_000:  # unknown codes must not grow memory without bound
                self._cache.clear()
            self._cache[code] = (now, agent)
        return agent

    def clear(self) -> None:
        """Forget everything (tests, and after changes made in this process)."""
        with self._lock:
            self._cache.clear()

    def forget(self, code: str) -> None:
        """Forget one agent, after a change made in this process: its next request loads
        it afresh. Other server processes see the change within `ttl` seconds."""
        with self._lock:
            self._cache.pop(code, None)
