"""Creating and managing agents, and authenticating their requests quickly.

Secrets are 256-bit random tokens, so a single SHA-256 is enough to store them safely
(a slow password hash protects guessable passwords, which these are not) and costs the
hot path microseconds, not the tens of milliseconds of bcrypt or argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, delete, insert, select, update

from tolom.addresses import IPNetwork, in_networks
from tolom.db.schema import agent_services, agents, services
from tolom.ledger.accounts import HOT_ACCOUNT_SLOTS, LedgerAccount, create_account
from tolom.money import format_amount

ANY_ADDRESS = "*"
_CODE = re.compile(r"[a-z][a-z0-9_-]{1,31}")


class AgentError(ValueError):
    """An agent operation that cannot be done, with a message for the operator."""


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

    def allows_address(self, address: str) -> bool:
        """Whether a request from `address` may act for this agent."""
        return self.networks is None or in_networks(address, self.networks)


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_networks(values: list[str]) -> str:
    """Validate CIDRs (or "*") and return their stored form."""
    if not values:
        raise AgentError(
            "allow-ip: укажите хотя бы одну сеть (--allow-ip CIDR) или явно --allow-any-ip"
        )
    if ANY_ADDRESS in values:
        return ANY_ADDRESS
    try:
        return ",".join(str(ipaddress.ip_network(v.strip(), strict=False)) for v in values)
    except ValueError as error:
        raise AgentError(f"allow-ip: {error}") from error


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # "Asia" is a directory
        raise AgentError(f"timezone: неизвестный часовой пояс {name!r}") from error


def create(
    conn: Connection,
    *,
    code: str,
    name: str,
    networks: list[str],
    service_codes: list[str],
    timezone: str = "Asia/Bishkek",
    secret: str | None = None,
) -> str:
    """Register an agent with its clearing account; returns the secret (shown only once)."""
    if not _CODE.fullmatch(code):
        raise AgentError("code: латинские строчные буквы, цифры, - и _, от 2 до 32 символов")
    if conn.execute(select(agents.c.id).where(agents.c.code == code)).first():
        raise AgentError(f"code: агент {code!r} уже есть")
    stored_networks = parse_networks(networks)
    _zone(timezone)
    known = set(conn.execute(select(services.c.code)).scalars())
    unknown = set(service_codes) - known
    if not service_codes or unknown:
        raise AgentError(f"services: допустимы {', '.join(sorted(known))}")
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
            allowed_networks=stored_networks,
            timezone=timezone,
            clearing_account_id=clearing.id,
        )
        .returning(agents.c.id)
    ).scalar_one()
    conn.execute(
        insert(agent_services), [{"agent_id": agent_id, "service": s} for s in service_codes]
    )
    return secret


def _agent_id(conn: Connection, code: str) -> int:
    agent_id = conn.execute(select(agents.c.id).where(agents.c.code == code)).scalar()
    if agent_id is None:
        raise AgentError(f"code: агент {code!r} не найден")
    return int(agent_id)


def set_enabled(conn: Connection, code: str, enabled: bool) -> None:
    """Enable or disable an agent (a disabled agent gets HTTP 403)."""
    conn.execute(update(agents).where(agents.c.id == _agent_id(conn, code)).values(enabled=enabled))


def rotate_secret(conn: Connection, code: str) -> str:
    """Replace an agent's secret; returns the new one (shown only once)."""
    secret = secrets.token_urlsafe(32)
    conn.execute(
        update(agents)
        .where(agents.c.id == _agent_id(conn, code))
        .values(secret_hash=hash_secret(secret))
    )
    return secret


def set_networks(conn: Connection, code: str, networks: list[str]) -> None:
    """Replace an agent's address allow-list."""
    stored = parse_networks(networks)
    conn.execute(
        update(agents).where(agents.c.id == _agent_id(conn, code)).values(allowed_networks=stored)
    )


def set_service(
    conn: Connection,
    code: str,
    service: str,
    *,
    allowed: bool,
    min_amount: int | None = None,
    max_amount: int | None = None,
) -> None:
    """Allow or forbid a service for an agent, optionally overriding the service's limits.

    Neither limit given: back to the service's defaults. One given: the other keeps the
    agent's earlier override. The resulting range must be payable (0 < min <= max).
    """
    agent_id = _agent_id(conn, code)
    defaults = conn.execute(
        select(services.c.min_amount, services.c.max_amount).where(services.c.code == service)
    ).first()
    if defaults is None:
        raise AgentError(f"service: нет услуги {service!r}")
    where = (agent_services.c.agent_id == agent_id) & (agent_services.c.service == service)
    if not allowed:
        conn.execute(delete(agent_services).where(where))
        return
    for name, value in (("min", min_amount), ("max", max_amount)):
        if value is not None and value <= 0:
            raise AgentError(f"{name}: сумма должна быть больше нуля")
    new_min, new_max = min_amount, max_amount
    if (min_amount is None) != (max_amount is None):  # one given: keep the other override
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
            f"max: минимальная сумма ({format_amount(effective_min)}) больше максимальной "
            f"({format_amount(effective_max)}): такую услугу нельзя оплатить"
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
    return Agent(
        id=row.id,  # type: ignore[attr-defined]
        code=row.code,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        secret_hash=row.secret_hash,  # type: ignore[attr-defined]
        networks=networks,
        timezone=_zone(row.timezone),  # type: ignore[attr-defined]
        enabled=row.enabled,  # type: ignore[attr-defined]
        clearing_account=LedgerAccount(row.clearing_account_id, HOT_ACCOUNT_SLOTS),  # type: ignore[attr-defined]
        services=limits,
    )


class AgentDirectory:
    """Agents by code, cached for `ttl` seconds so authentication costs no query per request.

    A change made with the CLI (disable, new secret, limits) reaches every server process
    within `ttl` seconds.
    """

    def __init__(self, engine: Engine, ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Agent | None]] = {}

    def get(self, code: str) -> Agent | None:
        """The agent with this code, or None; from the cache when fresh."""
        now = time.monotonic()
        cached = self._cache.get(code)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with self._engine.connect() as conn:
            agent = load(conn, code)
        with self._lock:
            if len(self._cache) > 10_000:  # unknown codes must not grow memory without bound
                self._cache.clear()
            self._cache[code] = (now, agent)
        return agent

    def authenticate(self, code: str, secret: str) -> Agent | None:
        """The agent if the code exists and the secret is right, else None."""
        agent = self.get(code)
        if agent is None:
            # Same work as a real comparison, so timing does not reveal which codes exist.
            secret_matches(secret, "0" * 64)
            return None
        return agent if secret_matches(secret, agent.secret_hash) else None

    def clear(self) -> None:
        """Forget everything (tests, and after changes made in this process)."""
        with self._lock:
            self._cache.clear()
