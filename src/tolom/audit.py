"""The audit trail: who changed what, when, from where, before and after. Append-only.

Written in the same transaction as the change it describes, so neither exists without
the other.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert, select

from tolom.db.schema import audit_log


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int,
    before: Any = None,
    after: Any = None,
    address: str | None = None,
) -> None:
    """Add one line to the audit log, in the caller's transaction."""
    conn.execute(
        insert(audit_log).values(
            actor=actor[:80],
            address=address[:64] if address else None,
            action=action,
            object_type=object_type,
            object_id=str(object_id)[:64],
            before=_json(before),
            after=_json(after),
        )
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def entries(
    conn: Connection, object_type: str | None = None, object_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest audit lines, newest first, optionally for one object."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if object_type is not None:
        query = query.where(audit_log.c.object_type == object_type)
    if object_id is not None:
        query = query.where(audit_log.c.object_id == object_id)
    return [
        {
            "id": r.id,
            "at": r.at,
            "actor": r.actor,
            "address": r.address,
            "action": r.action,
            "object_type": r.object_type,
            "object_id": r.object_id,
            "before": json.loads(r.before) if r.before else None,
            "after": json.loads(r.after) if r.after else None,
        }
        for r in conn.execute(query)
    ]
