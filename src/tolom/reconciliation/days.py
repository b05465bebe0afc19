"""An agent's business day in reconciliation: its discrepancies resolved, then closed.

Each resolution needs a reason and is audited with the change it makes:
- `accept` (a line missing on our side): the agent's payment goes through the normal pay
  use case under the agent's own txn_id, so it is idempotent like any pay; then the
  discrepancy is marked. If marking fails after the payment, repeating `accept` replays
  the payment and marks it: never two payments.
- `reverse` (ours, not in the registry or differing from it): our payment is reversed with
  the audited reversal the back office uses, in the same transaction as the mark;
- `explain`: nothing moves, the reason says why the difference is right.

A day closes only when every discrepancy of its current registry is resolved; closed, it
refuses registries and resolutions until an admin reopens it (the adapters check who may).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, literal, select, union_all, update

from tolom import audit
from tolom.agents import service as agents
from tolom.db.schema import (
    agents as agents_table,
)
from tolom.db.schema import (
    discrepancies,
    payments,
    reconciliation_days,
    registries,
    registry_lines,
)
from tolom.identifiers import is_inn
from tolom.money import format_amount
from tolom.payments import reversal, service
from tolom.payments.model import CancelOutcome, Outcome, PayRequest, PayResult, Service
from tolom.payments.requestlog import Answer, Exchange
from tolom.payments.unit import run_logged
from tolom.reconciliation.matching import Summary
from tolom.texts import N_, Refusal

REASON_MAX = 500


class Action(StrEnum):
    ACCEPT = "accept"
    REVERSE = "reverse"
    EXPLAIN = "explain"


RESOLUTION = {Action.ACCEPT: "accepted", Action.REVERSE: "reversed", Action.EXPLAIN: "explained"}
# What each class of discrepancy may be resolved with.
ALLOWED: dict[str, tuple[Action, ...]] = {
    "missing_ours": (Action.ACCEPT, Action.EXPLAIN),
    "missing_theirs": (Action.REVERSE, Action.EXPLAIN),
    "amount_mismatch": (Action.REVERSE, Action.EXPLAIN),
    "account_mismatch": (Action.REVERSE, Action.EXPLAIN),
    "duplicate": (Action.EXPLAIN,),
}


class ReconciliationError(Refusal):
    """A reconciliation step refused, worded by key for the person who asked
    (`texts.Refusal`: `str()` in Russian, `said(language)` in theirs)."""


class NotFound(ReconciliationError):
    pass


@dataclass(frozen=True, slots=True)
class Discrepancy:
    id: int
    registry_id: int
    kind: str
    txn_id: str
    line_no: int | None
    payment_id: int | None
    their_account: str | None
    their_amount: int | None
    our_account: str | None
    our_amount: int | None
    resolution: str | None
    reason: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_payment_id: int | None
    # Our payment the line points at when it is on another day or reversed.
    other_day: date | None = None
    other_status: str | None = None

    @property
    def resolved(self) -> bool:
        return self.resolution is not None

    @property
    def actions(self) -> tuple[Action, ...]:
        return () if self.resolved else ALLOWED[self.kind]


@dataclass(frozen=True, slots=True)
class Day:
    agent: str
    agent_id: int
    business_date: date
    state: str  # waiting (no registry), open (discrepancies to resolve), ready, closed
    registry_id: int | None
    file_name: str | None
    imported_at: datetime | None
    imported_by: str | None
    summary: Summary | None
    unresolved: int
    closed_by: str | None
    closed_at: datetime | None


_DISCREPANCY_COLUMNS = (
    *discrepancies.c,
    payments.c.business_date.label("other_day"),
    payments.c.status.label("other_status"),
)


def _discrepancy(row: Any) -> Discrepancy:
    fields = {name: getattr(row, name) for name in Discrepancy.__dataclass_fields__}
    if row.kind != "missing_ours":
        fields["other_day"] = fields["other_status"] = None
    return Discrepancy(**fields)


def _agent_id(conn: Connection, code: str) -> int:
    found = conn.execute(
        select(agents_table.c.id).where(agents_table.c.code == code)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(N_("reconciliation.error.no_agent"), code=code[:32])
    return int(found)


def day(conn: Connection, agent_code: str, business_date: date) -> Day:
    """The agent's day with its current registry, summary and state."""
    agent_id = _agent_id(conn, agent_code)
    row = conn.execute(
        select(reconciliation_days).where(
            reconciliation_days.c.agent_id == agent_id,
            reconciliation_days.c.business_date == business_date,
        )
    ).one_or_none()
    registry = conn.execute(
        select(registries).where(
            registries.c.agent_id == agent_id,
            registries.c.business_date == business_date,
            registries.c.state == "current",
        )
    ).one_or_none()
    unresolved = 0
    if registry is not None:
        unresolved = int(
            conn.execute(
                select(func.count()).where(
                    discrepancies.c.registry_id == registry.id,
                    discrepancies.c.resolution.is_(None),
                )
            ).scalar_one()
        )
    closed = row is not None and row.state == "closed"
    if closed:
        state = "closed"
    elif registry is None:
        state = "waiting"
    else:
        state = "open" if unresolved else "ready"
    return Day(
        agent=agent_code,
        agent_id=agent_id,
        business_date=business_date,
        state=state,
        registry_id=None if registry is None else int(registry.id),
        file_name=None if registry is None else registry.file_name,
        imported_at=None if registry is None else registry.imported_at,
        imported_by=None if registry is None else registry.imported_by,
        summary=(
            None
            if registry is None or registry.summary is None
            else Summary.from_json(json.loads(registry.summary))
        ),
        unresolved=unresolved,
        closed_by=row.closed_by if row is not None and closed else None,
        closed_at=row.closed_at if row is not None and closed else None,
    )


def discrepancies_of(
    conn: Connection,
    registry_id: int,
    *,
    unresolved_only: bool = False,
    limit: int = 1000,
    after: int | None = None,
) -> list[Discrepancy]:
    """The registry's discrepancies in id order, at most `limit`; `after`: those with a
    greater id (the next page)."""
    query = (
        select(*_DISCREPANCY_COLUMNS)
        .outerjoin(payments, payments.c.id == discrepancies.c.payment_id)
        .where(discrepancies.c.registry_id == registry_id)
        .order_by(discrepancies.c.id)
        .limit(limit)
    )
    if unresolved_only:
        query = query.where(discrepancies.c.resolution.is_(None))
    if after is not None:
        query = query.where(discrepancies.c.id > after)
    return [_discrepancy(row) for row in conn.execute(query)]


def get_discrepancy(conn: Connection, discrepancy_id: int, *, lock: bool = False) -> Discrepancy:
    query = (
        select(*_DISCREPANCY_COLUMNS)
        .outerjoin(payments, payments.c.id == discrepancies.c.payment_id)
        .where(discrepancies.c.id == discrepancy_id)
    )
    if lock:
        query = query.with_for_update(of=discrepancies)
    row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(N_("reconciliation.error.no_discrepancy"), id=discrepancy_id)
    return _discrepancy(row)


def _registry_day(conn: Connection, registry_id: int) -> tuple[int, date, str]:
    row = conn.execute(
        select(registries.c.agent_id, registries.c.business_date, registries.c.state).where(
            registries.c.id == registry_id
        )
    ).one()
    return int(row.agent_id), row.business_date, str(row.state)


def _check_open(conn: Connection, registry_id: int, *, lock: bool = False) -> None:
    """Refuse unless the registry is its day's current one and the day is open; `lock`
    holds the day's row (closing waits for this resolution, and this for a closing)."""
    agent_id, business_date, registry_state = _registry_day(conn, registry_id)
    query = select(reconciliation_days.c.state).where(
        reconciliation_days.c.agent_id == agent_id,
        reconciliation_days.c.business_date == business_date,
    )
    if conn.execute(query.with_for_update() if lock else query).scalar_one() == "closed":
        raise ReconciliationError(N_("reconciliation.error.day_closed"))
    if registry_state != "current":
        raise ReconciliationError(N_("reconciliation.error.superseded"))


def _checked_reason(reason: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise ReconciliationError(N_("reconciliation.error.reason_required"))
    if len(text) > REASON_MAX or "\x00" in text:
        raise ReconciliationError(N_("reconciliation.error.reason_too_long"), max=REASON_MAX)
    return text


def _json_answer(result: PayResult) -> Answer:
    body = json.dumps(
        {"outcome": result.outcome.value, "message": result.message, "payment": result.payment_id},
        ensure_ascii=False,
    )
    return Answer(200 if result.outcome is Outcome.OK else 409, None, body, "application/json")


def _accept(engine: Engine, found: Discrepancy, *, actor: str, address: str | None) -> int:
    """Pay the registry's line through the pay use case; our payment's id."""
    with engine.connect() as conn:
        agent_id, _, _ = _registry_day(conn, found.registry_id)
        code = conn.execute(
            select(agents_table.c.code).where(agents_table.c.id == agent_id)
        ).scalar_one()
        agent = agents.load(conn, code)
        line = conn.execute(
            select(registry_lines).where(
                registry_lines.c.registry_id == found.registry_id,
                registry_lines.c.line_no == found.line_no,
            )
        ).one()
    assert agent is not None
    account = str(line.account)
    occurred = line.occurred_at if line.occurred_at.tzinfo else line.occurred_at.replace(tzinfo=UTC)
    request = PayRequest(
        service=Service.SOCHI if is_inn(account) else Service.EDS,
        txn_id=str(line.txn_id),
        account=account,
        amount=int(line.amount),
        txn_date=occurred,
        txn_date_raw=occurred.astimezone(agent.timezone).strftime("%Y%m%d%H%M%S"),
    )
    exchange = Exchange(
        protocol="reconciliation",
        peer=address or "",
        method="RESOLVE",
        params=[
            ("discrepancy", str(found.id)),
            ("txn_id", request.txn_id),
            ("account", account),
            ("sum", format_amount(request.amount)),
            ("by", actor),
        ],
        service=request.service.value,
        agent_id=agent.id,
        command="pay",
    )
    exchange.txn_id = service.payment_key(agent, request.txn_id)
    result, _answer = run_logged(
        engine,
        exchange,
        lambda conn: service.pay(conn, agent, request),
        _json_answer,
        retry=PayResult(Outcome.RETRY, service.TEMPORARY_MESSAGE),
        payment_of=lambda result: result.payment_id,
    )
    if result.outcome is not Outcome.OK or result.payment_id is None:
        raise ReconciliationError(N_("reconciliation.error.not_accepted"), why=result.message)
    return result.payment_id


class _Rollback(Exception):
    """Undo the transaction, then refuse with `refusal`."""

    def __init__(self, refusal: ReconciliationError) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


def resolve(
    engine: Engine,
    discrepancy_id: int,
    action: str,
    reason: str,
    *,
    actor: str,
    address: str | None = None,
) -> Discrepancy:
    """Resolve one discrepancy of a current registry; the discrepancy as it now stands.

    Resolving it again the same way answers as the first time; another way is refused.
    """
    text = _checked_reason(reason)
    try:
        chosen = Action(action)
    except ValueError:
        raise ReconciliationError(
            N_("reconciliation.error.unknown_action"), action=action[:20]
        ) from None
    with engine.connect() as conn:
        found = get_discrepancy(conn, discrepancy_id)
        _check_open(conn, found.registry_id)  # before anything is paid
    if found.resolved:
        if found.resolution == RESOLUTION[chosen]:
            return found
        raise ReconciliationError(N_("reconciliation.error.resolved_otherwise"))
    if chosen not in ALLOWED[found.kind]:
        raise ReconciliationError(N_("reconciliation.error.action_not_allowed"))
    paid = _accept(engine, found, actor=actor, address=address) if chosen is Action.ACCEPT else None
    try:
        with engine.begin() as conn:
            _check_open(conn, found.registry_id, lock=True)
            locked = get_discrepancy(conn, discrepancy_id, lock=True)
            if locked.resolved:  # someone resolved it meanwhile
                if locked.resolution == RESOLUTION[chosen]:
                    return locked
                raise ReconciliationError(N_("reconciliation.error.resolved_otherwise"))
            if chosen is Action.REVERSE:
                if locked.payment_id is None:
                    raise ReconciliationError(N_("reconciliation.error.no_our_payment"))
                result = reversal.reverse_audited(
                    conn, locked.payment_id, text, actor=actor, address=address
                )
                if result.outcome is not CancelOutcome.OK:
                    raise _Rollback(
                        ReconciliationError(
                            N_("reconciliation.error.not_reversed"), why=result.message
                        )
                    )
                paid = locked.payment_id
            now = datetime.now(UTC)
            conn.execute(
                update(discrepancies)
                .where(discrepancies.c.id == discrepancy_id)
                .values(
                    resolution=RESOLUTION[chosen],
                    reason=text,
                    resolved_by=actor[:80],
                    resolved_at=now,
                    resolution_payment_id=paid,
                )
            )
            audit.record(
                conn,
                actor=actor,
                action=f"discrepancy.{chosen.value}",
                object_type="discrepancy",
                object_id=discrepancy_id,
                before={"kind": locked.kind, "txn_id": locked.txn_id, "resolution": None},
                after={"resolution": RESOLUTION[chosen], "reason": text, "payment": paid},
                address=address,
            )
            return get_discrepancy(conn, discrepancy_id)
    except _Rollback as refused:
        raise refused.refusal from None


def close(
    engine: Engine,
    agent_code: str,
    business_date: date,
    *,
    actor: str,
    address: str | None = None,
) -> Day:
    """Close the day: refused while a discrepancy of its current registry is open."""
    with engine.begin() as conn:
        agent_id = _agent_id(conn, agent_code)
        state = conn.execute(
            select(reconciliation_days.c.state)
            .where(
                reconciliation_days.c.agent_id == agent_id,
                reconciliation_days.c.business_date == business_date,
            )
            .with_for_update()
        ).scalar_one_or_none()
        if state is None:
            raise ReconciliationError(N_("reconciliation.error.no_registry"))
        found = day(conn, agent_code, business_date)
        if found.state == "closed":
            return found
        if found.unresolved:
            raise ReconciliationError(
                N_("reconciliation.error.unresolved"), unresolved=found.unresolved
            )
        now = datetime.now(UTC)
        conn.execute(
            update(reconciliation_days)
            .where(
                reconciliation_days.c.agent_id == agent_id,
                reconciliation_days.c.business_date == business_date,
            )
            .values(state="closed", closed_by=actor[:80], closed_at=now)
        )
        audit.record(
            conn,
            actor=actor,
            action="reconciliation.close",
            object_type="reconciliation_day",
            object_id=f"{agent_code}:{business_date.isoformat()}",
            before={"state": "open"},
            after={"state": "closed", "registry": found.registry_id},
            address=address,
        )
        return day(conn, agent_code, business_date)


def reopen(
    engine: Engine,
    agent_code: str,
    business_date: date,
    reason: str,
    *,
    actor: str,
    address: str | None = None,
) -> Day:
    """Reopen a closed day (an admin's decision; the adapters check the role)."""
    text = _checked_reason(reason)
    with engine.begin() as conn:
        agent_id = _agent_id(conn, agent_code)
        row = conn.execute(
            select(reconciliation_days)
            .where(
                reconciliation_days.c.agent_id == agent_id,
                reconciliation_days.c.business_date == business_date,
            )
            .with_for_update()
        ).one_or_none()
        if row is None or row.state != "closed":
            raise ReconciliationError(N_("reconciliation.error.not_closed"))
        conn.execute(
            update(reconciliation_days)
            .where(
                reconciliation_days.c.agent_id == agent_id,
                reconciliation_days.c.business_date == business_date,
            )
            .values(state="open", closed_by=None, closed_at=None)
        )
        audit.record(
            conn,
            actor=actor,
            action="reconciliation.reopen",
            object_type="reconciliation_day",
            object_id=f"{agent_code}:{business_date.isoformat()}",
            before={"state": "closed", "closed_by": row.closed_by},
            after={"state": "open", "reason": text},
            address=address,
        )
        return day(conn, agent_code, business_date)


@dataclass(frozen=True, slots=True)
class Cell:
    """One agent-day of the calendar."""

    agent: str
    business_date: date
    state: str  # none (no payments, no registry), waiting, open, ready, closed
    unresolved: int
    has_payments: bool


def calendar(
    conn: Connection, start: date, end: date, agent_codes: list[str] | None = None
) -> list[Cell]:
    """Every gateway agent's days from `start` to `end`: whether we have payments (one
    index probe per agent-day, never a scan of the day's payments), the current
    registry's unresolved discrepancies, and the closing."""
    if (end - start).days > 92 or end < start:
        raise ReconciliationError(N_("reconciliation.error.calendar_period"))
    query = select(agents_table.c.id, agents_table.c.code).where(
        agents_table.c.kind == "gateway",
        agents_table.c.sandbox.is_(False),  # a sandbox agent has nothing to reconcile
    )
    if agent_codes:
        query = query.where(agents_table.c.code.in_(agent_codes))
    known = conn.execute(query.order_by(agents_table.c.code)).all()
    every_day = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    cells: list[Cell] = []
    for agent in known:
        probes = [
            select(
                literal(n).label("n"),
                exists()
                .where(payments.c.agent_id == agent.id, payments.c.business_date == d)
                .label("paid"),
            )
            for n, d in enumerate(every_day)
        ]
        paid = {row.n: bool(row.paid) for row in conn.execute(union_all(*probes))}
        closed = {
            row.business_date: row.state
            for row in conn.execute(
                select(reconciliation_days.c.business_date, reconciliation_days.c.state).where(
                    reconciliation_days.c.agent_id == agent.id,
                    reconciliation_days.c.business_date.between(start, end),
                )
            )
        }
        open_counts = {
            row.business_date: int(row.unresolved)
            for row in conn.execute(
                select(
                    registries.c.business_date,
                    func.count(discrepancies.c.id).label("unresolved"),
                )
                .outerjoin(
                    discrepancies,
                    (discrepancies.c.registry_id == registries.c.id)
                    & discrepancies.c.resolution.is_(None),
                )
                .where(
                    registries.c.agent_id == agent.id,
                    registries.c.state == "current",
                    registries.c.business_date.between(start, end),
                )
                .group_by(registries.c.business_date)
            )
        }
        for n, d in enumerate(every_day):
            unresolved = open_counts.get(d, 0)
            if closed.get(d) == "closed":
                state = "closed"
            elif d in open_counts:
                state = "open" if unresolved else "ready"
            else:
                state = "waiting" if paid.get(n) else "none"
            cells.append(Cell(agent.code, d, state, unresolved, paid.get(n, False)))
    return cells
