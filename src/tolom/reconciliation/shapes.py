"""The one outward shape of reconciliation: a registry's import and summary, an agent's
day (its registry as an object), a discrepancy, a calendar cell. Amounts as som strings
("250.00"), the API's field names. The operator API and `tolom reconcile --json` both
answer in it, so a script reads either the same way.

Values stay Python values (dates, datetimes); each adapter writes them out as it does.
"""

from __future__ import annotations

from typing import Any

from tolom.money import format_amount
from tolom.reconciliation.days import Cell, Day, Discrepancy
from tolom.reconciliation.matching import KINDS, ClassTotal, Summary
from tolom.reconciliation.registries import Imported


def amount(tyiyn: int | None) -> str | None:
    """An amount as som text, or None when that side has none."""
    return None if tyiyn is None else format_amount(tyiyn)


def summary_fields(summary: Summary) -> dict[str, Any]:
    """Both sides' totals, what matched, the difference and every class (zero ones too)."""
    return {
        "their_count": summary.their_count,
        "their_amount": format_amount(summary.their_amount),
        "our_count": summary.our_count,
        "our_amount": format_amount(summary.our_amount),
        "matched_count": summary.matched_count,
        "matched_amount": format_amount(summary.matched_amount),
        "difference": format_amount(summary.difference),
        "discrepancy_count": summary.discrepancy_count,
        "classes": {
            kind: {
                "count": total.count,
                "their_amount": format_amount(total.their_amount),
                "our_amount": format_amount(total.our_amount),
            }
            for kind, total in ((kind, summary.classes.get(kind, ClassTotal())) for kind in KINDS)
        },
    }


def discrepancy_fields(found: Discrepancy) -> dict[str, Any]:
    """A discrepancy with what it may still be resolved with."""
    return {
        "id": found.id,
        "registry": found.registry_id,
        "kind": found.kind,
        "txn_id": found.txn_id,
        "line": found.line_no,
        "payment_id": found.payment_id,
        "their_account": found.their_account,
        "their_amount": amount(found.their_amount),
        "our_account": found.our_account,
        "our_amount": amount(found.our_amount),
        "other_day": found.other_day,
        "other_status": found.other_status,
        "resolution": found.resolution,
        "reason": found.reason,
        "resolved_by": found.resolved_by,
        "resolved_at": found.resolved_at,
        "resolution_payment_id": found.resolution_payment_id,
        "actions": [action.value for action in found.actions],
    }


def imported_fields(done: Imported) -> dict[str, Any]:
    """A registry imported and matched (or, replayed, the one that already was)."""
    return {
        "registry": done.registry_id,
        "agent": done.agent,
        "day": done.business_date,
        "lines": done.lines,
        "total": format_amount(done.total),
        "replayed": done.replayed,
        "superseded": done.superseded,
        "summary": summary_fields(done.summary),
    }


def day_fields(found: Day) -> dict[str, Any]:
    """An agent's day: its state, its current registry (an object, or None while waiting)
    with the summary, and who closed it."""
    registry = None
    if found.registry_id is not None:
        registry = {
            "id": found.registry_id,
            "file_name": found.file_name or "",
            "imported_at": found.imported_at,
            "imported_by": found.imported_by or "",
        }
    return {
        "agent": found.agent,
        "day": found.business_date,
        "state": found.state,
        "registry": registry,
        "summary": None if found.summary is None else summary_fields(found.summary),
        "unresolved": found.unresolved,
        "closed_by": found.closed_by,
        "closed_at": found.closed_at,
    }


def calendar_fields(cell: Cell) -> dict[str, Any]:
    """One agent-day of the calendar."""
    return {
        "agent": cell.agent,
        "day": cell.business_date,
        "state": cell.state,
        "unresolved": cell.unresolved,
        "has_payments": cell.has_payments,
    }
