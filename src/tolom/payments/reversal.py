"""A person reverses a payment: `service.reverse` and its audit line, once for every adapter.

The API and the back office both reverse through here, so the audit line
(`payment.reverse`, before/after status and the reason) is written the same way by both.
"""

from __future__ import annotations

from sqlalchemy import Connection

from tolom import audit
from tolom.payments import service
from tolom.payments.model import CancelOutcome, CancelResult


def reverse_audited(
    conn: Connection, payment_id: int, reason: str, *, actor: str, address: str | None
) -> CancelResult:
    """Reverse in the caller's transaction and, when it happened now, audit it.

    Like `service.reverse`, a refusal is a result, not an exception: the caller must roll
    back unless it is OK. A repeat (already reversed) writes nothing.
    """
    result = service.reverse(conn, payment_id, reason, actor)
    if result.outcome is CancelOutcome.OK and not result.replayed:
        audit.record(
            conn,
            actor=actor,
            action="payment.reverse",
            object_type="payment",
            object_id=payment_id,
            before={"status": "accepted"},
            after={"status": "reversed", "reason": reason.strip()},
            address=address,
        )
    return result
