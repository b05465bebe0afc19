"""The reconciliation API's answers, bodies and parameters, spelled for the OpenAPI document.

The registry format is the core's own `formats.RegistryFormat` (no copy here); the answers
are filled from `reconciliation.shapes`, the one outward shape the CLI's `--json` shares.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, get_args

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import AMOUNT_DESCRIPTION, UtcTime
from tolom.fields import ReconciliationReason
from tolom.reconciliation import days, matching, shapes
from tolom.reconciliation.formats import RegistryFormat

__all__ = ["RegistryFormat"]  # the body and answer of the format routes, as the core has it

DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

AgentCode = Annotated[
    str, Path(max_length=32, description="The agent's code.", examples=["optima"])
]
DayText = Annotated[
    str,
    Path(
        pattern=DAY_PATTERN,
        description="The business day (agent-local), YYYY-MM-DD.",
        examples=["2026-11-21"],
        json_schema_extra={"format": "date"},
    ),
]
DiscrepancyId = Annotated[
    str, Path(alias="id", description="The discrepancy's number.", examples=["17"])
]

DayState = Literal["waiting", "open", "ready", "closed"]
CellState = Literal["none", "waiting", "open", "ready", "closed"]
DiscrepancyKind = Literal[
    "missing_ours", "missing_theirs", "amount_mismatch", "account_mismatch", "duplicate"
]
Resolution = Literal["accepted", "reversed", "explained"]
ActionName = Literal["accept", "reverse", "explain"]
# Spelled out for the OpenAPI document; the core's lists, checked once at import.
assert get_args(DiscrepancyKind) == matching.KINDS
assert get_args(ActionName) == tuple(a.value for a in days.Action)


class ClassTotal(BaseModel):
    count: int = Field(examples=[1])
    their_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["250.00"])
    our_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["200.00"])


class ClassTotals(BaseModel):
    """Count and sums of each class of discrepancy."""

    missing_ours: ClassTotal = Field(description="In the registry, not ours that day.")
    missing_theirs: ClassTotal = Field(description="Ours, not in the registry.")
    amount_mismatch: ClassTotal
    account_mismatch: ClassTotal
    duplicate: ClassTotal = Field(description="A registry line repeating a txn_id.")


class Summary(BaseModel):
    """Both sides' totals for the day, what matched, each class, and the net difference."""

    their_count: int = Field(examples=[6])
    their_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["870.00"])
    our_count: int = Field(examples=[5])
    our_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["1050.00"])
    matched_count: int = Field(examples=[2])
    matched_amount: str = Field(description=AMOUNT_DESCRIPTION, examples=["150.00"])
    difference: str = Field(description="Theirs − ours; may be negative.", examples=["-180.00"])
    discrepancy_count: int = Field(examples=[5])
    classes: ClassTotals


class RegistryImport(BaseModel):
    """A registry imported and matched (or, replayed, the one that already was)."""

    registry: int = Field(description="The registry's number.", examples=[12])
    agent: str = Field(examples=["optima"])
    day: date = Field(description="The business day it lists.")
    lines: int = Field(description="Payment lines in the file.", examples=[6])
    total: str = Field(description=AMOUNT_DESCRIPTION, examples=["870.00"])
    replayed: bool = Field(description="This very file was the day's registry already.")
    superseded: int | None = Field(
        description="The registry this one replaced as the day's current one.", examples=[None]
    )
    summary: Summary


class Registry(BaseModel):
    """The day's current registry."""

    id: int = Field(examples=[12])
    file_name: str = Field(examples=["optima-2026-11-21.txt"])
    imported_at: UtcTime
    imported_by: str = Field(examples=["apikey:buh"])


class Day(BaseModel):
    """An agent's business day in reconciliation."""

    agent: str = Field(examples=["optima"])
    day: date
    state: DayState = Field(
        description="waiting (no registry) | open (discrepancies to resolve) | ready (all "
        "resolved: may be closed) | closed",
        examples=["open"],
    )
    registry: Registry | None
    summary: Summary | None
    unresolved: int = Field(description="Discrepancies still to resolve.", examples=[5])
    closed_by: str | None = Field(examples=[None])
    closed_at: UtcTime | None


class Discrepancy(BaseModel):
    """A difference between the agent's registry and our payments."""

    id: int = Field(examples=[17])
    registry: int = Field(examples=[12])
    kind: DiscrepancyKind = Field(examples=["amount_mismatch"])
    txn_id: str = Field(examples=["102"])
    line: int | None = Field(description="The registry's line, if it has one.", examples=[2])
    payment_id: int | None = Field(description="Our payment, if we have one.", examples=[1002])
    their_account: str | None = Field(examples=["01904202310427"])
    their_amount: str | None = Field(description=AMOUNT_DESCRIPTION, examples=["250.00"])
    our_account: str | None = Field(examples=["01904202310427"])
    our_amount: str | None = Field(description=AMOUNT_DESCRIPTION, examples=["200.00"])
    other_day: date | None = Field(
        description="missing_ours: the day our payment with this txn_id is on, if another.",
        examples=[None],
    )
    other_status: str | None = Field(
        description="missing_ours: that payment's status (accepted | reversed).",
        examples=[None],
    )
    resolution: Resolution | None = Field(examples=[None])
    reason: str | None = Field(examples=[None])
    resolved_by: str | None = Field(examples=[None])
    resolved_at: UtcTime | None
    resolution_payment_id: int | None = Field(
        description="accept: the payment made; reverse: the payment reversed.", examples=[None]
    )
    actions: list[ActionName] = Field(
        description="What it may still be resolved with (empty once resolved).",
        examples=[["reverse", "explain"]],
    )


class DayDetail(Day):
    """The day with a page of its current registry's discrepancies."""

    discrepancy_count: int = Field(
        description="How many discrepancies match `unresolved_only` in all.", examples=[5]
    )
    discrepancies: list[Discrepancy]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.",
        examples=[None],
    )


class CalendarDay(BaseModel):
    agent: str = Field(examples=["optima"])
    day: date
    state: CellState = Field(
        description="none (no payments, no registry) | waiting | open | ready | closed",
        examples=["waiting"],
    )
    unresolved: int = Field(examples=[0])
    has_payments: bool = Field(description="We have payments of the agent that day.")


class Calendar(BaseModel):
    items: list[CalendarDay] = Field(description="Agent by agent (by code), day by day.")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ReconciliationReason = Field(
        description="Why, for the audit trail and the act.",
        examples=["Агент прислал исправленный реестр"],
    )


class ResolveIn(Reason):
    action: ActionName = Field(
        description="accept (pay the agent's line: missing_ours) | reverse (our payment: "
        "missing_theirs, amount_mismatch, account_mismatch) | explain (any; nothing moves)",
        examples=["explain"],
    )


# --- from the core's records, through the one outward shape -------------------------------


def day_out(found: days.Day) -> Day:
    return Day.model_validate(shapes.day_fields(found))


def discrepancy_out(found: days.Discrepancy) -> Discrepancy:
    return Discrepancy.model_validate(shapes.discrepancy_fields(found))


def calendar_out(cells: list[days.Cell]) -> Calendar:
    return Calendar(items=[CalendarDay.model_validate(shapes.calendar_fields(c)) for c in cells])
