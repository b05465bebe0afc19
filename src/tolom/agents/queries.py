"""Reading agents back for the adapters: names for filters and forms, one gateway agent's
services with their limits, its zone and the tag of its current secret.

Pages, API routes and commands read agents only through these functions (and
`tolom.backoffice.agent_figures` for the figures), never the tables themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from tolom.agents.admin import credentials_version
from tolom.agents.service import GATEWAY
from tolom.db.schema import agent_services, agents, services
from tolom.money import format_amount


@dataclass(frozen=True, slots=True)
class AgentName:
    """An agent or channel as lists and filters name it."""

    code: str
    name: str


def names(conn: Connection, *, gateway_only: bool = False) -> list[AgentName]:
    """Every agent (with the cash-desk and bank channels unless `gateway_only`), by code."""
    query = select(agents.c.code, agents.c.name).order_by(agents.c.code)
    if gateway_only:
        query = query.where(agents.c.kind == GATEWAY)
    return [AgentName(str(r.code), str(r.name)) for r in conn.execute(query)]


def gateway_codes(conn: Connection) -> set[str]:
    """The codes of the gateway agents (not the channels)."""
    return {a.code for a in names(conn, gateway_only=True)}


def reconciled_codes(conn: Connection) -> set[str]:
    """The codes of the gateway agents whose registries are reconciled: not the sandbox
    agents, whose pays never reach `payments` (`tolom.payments.sandbox`)."""
    query = select(agents.c.code).where(agents.c.kind == GATEWAY, agents.c.sandbox.is_(False))
    return {str(code) for code in conn.execute(query).scalars()}


def is_gateway(conn: Connection, code: str) -> bool:
    """True when `code` is a gateway agent's (a channel's is not)."""
    query = select(agents.c.id).where(agents.c.code == code, agents.c.kind == GATEWAY)
    return conn.execute(query).first() is not None


def gateway_version(conn: Connection, code: str) -> str | None:
    """`admin.credentials_version` of a gateway agent's current secret; None when `code`
    is no gateway agent's."""
    stored = conn.execute(
        select(agents.c.secret_hash).where(agents.c.code == code, agents.c.kind == GATEWAY)
    ).scalar()
    return None if stored is None else credentials_version(stored)


def timezone_of(conn: Connection, code: str) -> str | None:
    """The zone an agent's business days are counted in; None for an unknown code."""
    found: str | None = conn.execute(
        select(agents.c.timezone).where(agents.c.code == code)
    ).scalar()
    return found


def allowed_services(conn: Connection, code: str) -> list[str]:
    """The codes of the services an agent may take payments for, in code order."""
    query = (
        select(agent_services.c.service)
        .join(agents, agents.c.id == agent_services.c.agent_id)
        .where(agents.c.code == code)
        .order_by(agent_services.c.service)
    )
    return [str(s) for s in conn.execute(query).scalars()]


def service_codes(conn: Connection) -> list[str]:
    """Every service's code, in order: what an agent may be allowed."""
    return [
        str(s) for s in conn.execute(select(services.c.code).order_by(services.c.code)).scalars()
    ]


@dataclass(frozen=True, slots=True)
class ServiceLine:
    """A service as an agent has it: allowed or not, the agent's own limits (None: the
    service's default) and the defaults, in tyiyn."""

    code: str
    allowed: bool
    min_override: int | None
    max_override: int | None
    default_min: int
    default_max: int

    @property
    def min_amount(self) -> int:
        return self.min_override or self.default_min

    @property
    def max_amount(self) -> int:
        return self.max_override or self.default_max

    @property
    def min_field(self) -> str:
        return "" if self.min_override is None else format_amount(self.min_override)

    @property
    def max_field(self) -> str:
        return "" if self.max_override is None else format_amount(self.max_override)


def service_lines(conn: Connection, agent_id: int) -> list[ServiceLine]:
    """Every service, in code order, as this agent has it."""
    own = {
        r.service: r
        for r in conn.execute(select(agent_services).where(agent_services.c.agent_id == agent_id))
    }
    lines = []
    for s in conn.execute(select(services).order_by(services.c.code)):
        mine = own.get(s.code)
        lines.append(
            ServiceLine(
                s.code,
                mine is not None,
                None if mine is None else mine.min_amount,
                None if mine is None else mine.max_amount,
                int(s.min_amount),
                int(s.max_amount),
            )
        )
    return lines


@dataclass(frozen=True, slots=True)
class SandboxAgent:
    """A sandbox agent as the simulator offers it: `speakable` when its secret is kept
    sealed (agents made or given a new secret since migration 0019)."""

    code: str
    name: str
    enabled: bool
    speakable: bool


def sandbox_agents(conn: Connection) -> list[SandboxAgent]:
    """The sandbox agents, by code: the only agents the simulator may speak as."""
    query = (
        select(agents.c.code, agents.c.name, agents.c.enabled, agents.c.secret_sealed)
        .where(agents.c.kind == GATEWAY, agents.c.sandbox.is_(True))
        .order_by(agents.c.code)
    )
    return [
        SandboxAgent(str(r.code), str(r.name), bool(r.enabled), bool(r.secret_sealed))
        for r in conn.execute(query)
    ]
