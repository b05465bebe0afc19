"""What the adapters read of reconciliation besides a day (`days`): the agent a route
names, with its registry format; a registry's own totals and its agent-day. Typed records; a code we do not know is `days.NotFound`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, select

from tolom.agents import service as agents
from tolom.agents.service import Agent
from tolom.db.schema import agents as agents_table
from tolom.db.schema import registries
from tolom.reconciliation import formats
from tolom.reconciliation.days import NotFound
from tolom.reconciliation.formats import RegistryFormat
from tolom.texts import N_


@dataclass(frozen=True, slots=True)
class AgentFormat:
    """An agent and how it writes its registry."""

    agent: Agent
    format: RegistryFormat


def agent(conn: Connection, code: str) -> Agent:
    """The agent with this code; NotFound when there is none."""
    found = agents.load(conn, code)
    if found is None:
        raise NotFound(N_("reconciliation.error.no_agent"), code=code[:32])
    return found


def agent_format(conn: Connection, code: str) -> AgentFormat:
    """The agent with this code and its registry format (the default when never set)."""
    found = agent(conn, code)
    return AgentFormat(found, formats.load(conn, found.id))


@dataclass(frozen=True, slots=True)
class RegistryTotals:
    """What the agent's registry file itself declared: its line count and total (tyiyn)."""

    line_count: int
    total_amount: int


@dataclass(frozen=True, slots=True)
class RegistryDay:
    """The agent-day a registry is for."""

    agent: str
    business_date: date


def registry_totals(conn: Connection, registry_id: int) -> RegistryTotals | None:
    """A registry's line count and total; None for an unknown id."""
    row = conn.execute(
        select(registries.c.line_count, registries.c.total_amount).where(
            registries.c.id == registry_id
        )
    ).first()
    return None if row is None else RegistryTotals(int(row.line_count), int(row.total_amount))


def registry_day(conn: Connection, registry_id: int) -> RegistryDay | None:
    """The agent code and business day of a registry (any version); None for an unknown id."""
    row = conn.execute(
        select(agents_table.c.code, registries.c.business_date)
        .join(agents_table, agents_table.c.id == registries.c.agent_id)
        .where(registries.c.id == registry_id)
    ).first()
    return None if row is None else RegistryDay(str(row.code), row.business_date)
