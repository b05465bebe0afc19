"""The simulated MegaPay wallet's «Избранное» (templates) and «Автоплатеж» (repeats).

A favourite is a template: a sandbox agent, a service, an account and a sum. An autopay is
a favourite with a repeat interval and the Bishkek day the next repeat is due. The worker
runs due repeats by itself when TOLOM_SIMULATOR_AUTOPAY_SECONDS is set (`autopay`, each
with a txn_id derived from the favourite and the day); an operator may also run one now,
with a new txn_id through the real protocol (`journeys.play`), after which `ran` moves the
next due day on. Each change is audited (`simulator.favourite.*`, `simulator.autopay.*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update

from tolom import audit
from tolom.db.schema import agents, simulator_favourites
from tolom.identifiers import is_inn, is_invoice_number_shape
from tolom.money import format_amount
from tolom.simulator.journeys import SimulatorError, service, wallet
from tolom.texts import N_

AUTOPAY_DAYS = (1, 7, 30)  # the intervals the simulator offers: daily, weekly, monthly
OBJECT_TYPE = "simulator_favourite"


@dataclass(frozen=True, slots=True)
class Favourite:
    id: int
    wallet: str
    agent: str
    service: str
    account: str
    amount: int
    autopay_days: int | None
    next_due: date | None
    runs: int
    last_txn_id: str | None
    created_by: str
    claimed_at: datetime | None  # an automatic repeat in progress (`autopay`)

    def due(self, today: date) -> bool:
        return self.next_due is not None and self.next_due <= today


def _shaped(service_: str, account: str) -> bool:
    return is_inn(account) if service_ == "sochi" else is_invoice_number_shape(account)


def add(
    conn: Connection,
    *,
    wallet_: str,
    agent: str,
    service_: str,
    account: str,
    amount: int,
    autopay_days: int | None,
    today: date,
    actor: str,
) -> int:
    """Save a template (with `autopay_days`, an autopay first due `today`). Only for a
    sandbox agent, an account of the service's shape and a positive sum."""
    wallet(wallet_)
    service(service_)
    agent_id = conn.execute(
        select(agents.c.id).where(agents.c.code == agent, agents.c.sandbox.is_(True))
    ).scalar()
    if agent_id is None:
        raise SimulatorError(N_("agent.error.speaker_real"), agent=agent)
    if not _shaped(service_, account):
        raise SimulatorError(N_("simulator.error.account"), account=account)
    if amount <= 0:
        raise SimulatorError(N_("simulator.error.amount"), text=format_amount(amount))
    if autopay_days is not None and autopay_days not in AUTOPAY_DAYS:
        raise SimulatorError(N_("simulator.error.autopay_days"))
    values = {
        "wallet": wallet_,
        "agent_id": agent_id,
        "service": service_,
        "account": account,
        "amount": amount,
        "autopay_days": autopay_days,
        "next_due": today if autopay_days is not None else None,
        "created_by": actor,
    }
    found = int(
        conn.execute(
            insert(simulator_favourites).values(values).returning(simulator_favourites.c.id)
        ).scalar_one()
    )
    shown = {**values, "agent": agent, "amount": format_amount(amount)}
    shown.pop("agent_id")
    shown["next_due"] = None if shown["next_due"] is None else today.isoformat()
    audit.record(
        conn,
        actor=actor,
        action="simulator.favourite.add",
        object_type=OBJECT_TYPE,
        object_id=found,
        after=shown,
    )
    return found


_LISTED = select(
    simulator_favourites.c.id,
    simulator_favourites.c.wallet,
    agents.c.code.label("agent"),
    simulator_favourites.c.service,
    simulator_favourites.c.account,
    simulator_favourites.c.amount,
    simulator_favourites.c.autopay_days,
    simulator_favourites.c.next_due,
    simulator_favourites.c.runs,
    simulator_favourites.c.last_txn_id,
    simulator_favourites.c.created_by,
    simulator_favourites.c.claimed_at,
).join(agents, agents.c.id == simulator_favourites.c.agent_id)


def listing(conn: Connection, wallet_: str) -> list[Favourite]:
    """The wallet's favourites and autopays, oldest first."""
    query = _LISTED.where(simulator_favourites.c.wallet == wallet_).order_by(
        simulator_favourites.c.id
    )
    return [Favourite(**row._mapping) for row in conn.execute(query)]


def due_autopays(conn: Connection, today: date, claimed_before: datetime) -> list[Favourite]:
    """The autopays due by `today` that no worker has in hand (no claim, or one made
    before `claimed_before`)."""
    row = simulator_favourites.c
    query = _LISTED.where(
        row.autopay_days.is_not(None),
        row.next_due <= today,
        or_(row.claimed_at.is_(None), row.claimed_at < claimed_before),
    ).order_by(row.id)
    return [Favourite(**found._mapping) for found in conn.execute(query)]


def one(conn: Connection, favourite_id: int) -> Favourite | None:
    row = conn.execute(_LISTED.where(simulator_favourites.c.id == favourite_id)).first()
    return None if row is None else Favourite(**row._mapping)


def remove(conn: Connection, favourite_id: int, *, actor: str) -> bool:
    """Delete a favourite (or autopay); False if there was none."""
    found = one(conn, favourite_id)
    if found is None:
        return False
    conn.execute(delete(simulator_favourites).where(simulator_favourites.c.id == favourite_id))
    audit.record(
        conn,
        actor=actor,
        action="simulator.favourite.remove",
        object_type=OBJECT_TYPE,
        object_id=favourite_id,
        before={"agent": found.agent, "service": found.service, "account": found.account},
    )
    return True


def ran(conn: Connection, favourite_id: int, txn_id: str, *, today: date, actor: str) -> None:
    """Record a run of an autopay (or a favourite paid again): one more run, its txn_id,
    and the next due day one interval after today."""
    found = one(conn, favourite_id)
    if found is None:
        return
    next_due = None if found.autopay_days is None else today + timedelta(days=found.autopay_days)
    conn.execute(
        update(simulator_favourites)
        .where(simulator_favourites.c.id == favourite_id)
        .values(runs=simulator_favourites.c.runs + 1, last_txn_id=txn_id, next_due=next_due)
    )
    audit.record(
        conn,
        actor=actor,
        action="simulator.favourite.run",
        object_type=OBJECT_TYPE,
        object_id=favourite_id,
        after={"txn_id": txn_id, "next_due": None if next_due is None else next_due.isoformat()},
    )
