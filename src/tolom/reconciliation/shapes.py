"""The one outward shape of a registry's summary and of a discrepancy: amounts as som
strings ("250.00"), the API's field names. The operator API and `tolom reconcile --json`
both answer in it, so a script reads either the same way.

Values stay Python values (dates, datetimes); each adapter writes them out as it does.
"""

from __future__ import annotations

from typing import Any

from tolom.money import format_amount
from tolom.reconciliation.days import Discrepancy
from tolom.reconciliation.matching import KINDS, ClassTotal, Summary


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
