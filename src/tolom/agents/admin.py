"""Changing agents as people do it (the back office, the command line), audited.

Each use case checks and changes through `tolom.agents.service` and writes one line to the
audit log in the same transaction: `agent.create`, `agent.enable` / `agent.disable`,
`agent.rotate_secret`, `agent.configure`, `agent.set_limits`, object `agent` / CODE, with
the fields it changed before and after. Secrets, their hashes and signing keys never enter
the audit log (a rotation is recorded without before/after, as a webhook's is).

A change reaches a running gateway through `AgentDirectory`: the process that made it
calls `forget(code)`, the others reload the agent within `TOLOM_AGENT_CACHE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from typing import Any

from sqlalchemy import Connection, select

from tolom import audit
from tolom.agents import service
from tolom.agents.service import AgentError
from tolom.db.schema import agent_services, agents
from tolom.texts import N_
from tolom.timestamps import HOME_ZONE_NAME

OBJECT_TYPE = "agent"
NAME_MAX = 200


def check_name(name: str) -> str:
    """An agent's display name as stored: trimmed, 1 to 200 characters, no control
    characters (U+0000 cannot even be stored by PostgreSQL)."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > NAME_MAX:
        raise AgentError(N_("agent.error.name_length"), code="name.length", max=NAME_MAX)
    if any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise AgentError(N_("agent.error.name_control"), code="name.control")
    return cleaned


def snapshot(conn: Connection, code: str) -> dict[str, Any] | None:
    """What the audit log says about an agent: everything but its credentials."""
    row = conn.execute(
        select(
            agents.c.id,
            agents.c.name,
            agents.c.enabled,
            agents.c.allowed_networks,
            agents.c.timezone,
            agents.c.cancel_window_days,
            agents.c.sandbox,
        ).where(agents.c.code == code)
    ).first()
    if row is None:
        return None
    limits = conn.execute(
        select(agent_services.c.service, agent_services.c.min_amount, agent_services.c.max_amount)
        .where(agent_services.c.agent_id == row.id)
        .order_by(agent_services.c.service)
    )
    return {
        "name": row.name,
        "enabled": bool(row.enabled),
        "allowed_networks": row.allowed_networks,
        "timezone": row.timezone,
        "cancel_window_days": int(row.cancel_window_days),
        "sandbox": bool(row.sandbox),
        "services": {s.service: {"min": s.min_amount, "max": s.max_amount} for s in limits},
    }


def _record(
    conn: Connection,
    code: str,
    action: str,
    *,
    actor: str,
    address: str | None,
    before: Any = None,
    after: Any = None,
) -> None:
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=code,
        before=before,
        after=after,
        address=address,
    )


def create(
    conn: Connection,
    *,
    code: str,
    name: str,
    networks: list[str],
    service_codes: list[str],
    timezone: str = HOME_ZONE_NAME,
    cancel_window_days: int = 0,
    sandbox: bool = False,
    actor: str,
    address: str | None = None,
) -> str:
    """Register an agent (see `service.create`); returns the secret, shown only once."""
    secret = service.create(
        conn,
        code=code,
        name=check_name(name),
        networks=networks,
        service_codes=service_codes,
        timezone=timezone,
        sandbox=sandbox,
    )
    if cancel_window_days:
        service.configure(conn, code, cancel_window_days=cancel_window_days)
    _record(conn, code, "agent.create", actor=actor, address=address, after=snapshot(conn, code))
    return secret


def set_enabled(
    conn: Connection, code: str, enabled: bool, *, actor: str, address: str | None = None
) -> None:
    """Enable or disable a gateway agent (a disabled one is answered HTTP 403)."""
    before = snapshot(conn, code)
    service.set_enabled(conn, code, enabled)
    assert before is not None  # set_enabled refuses an unknown code
    _record(
        conn,
        code,
        "agent.enable" if enabled else "agent.disable",
        actor=actor,
        address=address,
        before={"enabled": before["enabled"]},
        after={"enabled": enabled},
    )


def credentials_version(secret_hash: str) -> str:
    """A tag of the agent's current secret for a rotation form: a rotation posted with an
    older tag (the same form sent again, say by reloading the page that showed the new
    secret) is refused instead of silently replacing the secret just handed out. It reveals
    nothing about the secret: a keyed hash of its hash."""
    tag = hmac.new(b"tolom-rotation", secret_hash.encode("ascii"), hashlib.sha256)
    return tag.hexdigest()[:16]


def current_version(conn: Connection, code: str) -> str | None:
    """`credentials_version` of the agent's secret now, or None for an unknown code."""
    stored = conn.execute(select(agents.c.secret_hash).where(agents.c.code == code)).scalar()
    return None if stored is None else credentials_version(stored)


def rotate_secret(
    conn: Connection,
    code: str,
    *,
    actor: str,
    address: str | None = None,
    expected_version: str | None = None,
) -> str:
    """A new secret and signing key; the old ones stop working. Returns the new secret.

    With `expected_version`, refused (AgentError "secret.changed") unless the secret is
    still the one the form was shown with."""
    if expected_version is not None:
        stored = conn.execute(
            select(agents.c.secret_hash).where(agents.c.code == code).with_for_update()
        ).scalar()
        if stored is not None and not hmac.compare_digest(
            credentials_version(stored), expected_version
        ):
            raise AgentError(
                N_("agent.error.secret_changed"),
                code="secret.changed",
                value=code,
                agent=repr(code),
            )
    secret = service.rotate_secret(conn, code)
    _record(conn, code, "agent.rotate_secret", actor=actor, address=address)
    return secret


def configure(
    conn: Connection,
    code: str,
    *,
    networks: list[str] | None = None,
    timezone: str | None = None,
    cancel_window_days: int | None = None,
    actor: str,
    address: str | None = None,
) -> bool:
    """Change the allow-list, time zone or cancel window (None: stays); audited with the
    fields given, before and after. Returns whether anything changed."""
    before = snapshot(conn, code)
    service.configure(
        conn, code, networks=networks, timezone=timezone, cancel_window_days=cancel_window_days
    )
    after = snapshot(conn, code)
    assert before is not None and after is not None  # configure refuses an unknown code
    given = [
        field
        for field, value in (
            ("allowed_networks", networks),
            ("timezone", timezone),
            ("cancel_window_days", cancel_window_days),
        )
        if value is not None
    ]
    changed = [field for field in given if before[field] != after[field]]
    if changed:
        _record(
            conn,
            code,
            "agent.configure",
            actor=actor,
            address=address,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )
    return bool(changed)


def set_service(
    conn: Connection,
    code: str,
    service_code: str,
    *,
    allowed: bool,
    min_amount: int | None = None,
    max_amount: int | None = None,
    replace: bool = False,
    actor: str,
    address: str | None = None,
) -> bool:
    """Allow (with limits in tyiyn, None: the service's default) or forbid a service for an
    agent (see `service.set_service`); audited as `agent.set_limits`. Returns whether
    anything changed."""
    before = snapshot(conn, code)
    service.set_service(
        conn,
        code,
        service_code,
        allowed=allowed,
        min_amount=min_amount,
        max_amount=max_amount,
        replace=replace,
    )
    after = snapshot(conn, code)
    assert before is not None and after is not None  # set_service refuses an unknown code

    def state(snap: dict[str, Any]) -> dict[str, Any]:
        limits = snap["services"].get(service_code)
        if limits is None:
            return {"service": service_code, "allowed": False}
        return {"service": service_code, "allowed": True, **limits}

    if state(before) == state(after):
        return False
    _record(
        conn,
        code,
        "agent.set_limits",
        actor=actor,
        address=address,
        before=state(before),
        after=state(after),
    )
    return True
