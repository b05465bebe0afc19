"""Sandbox webhooks (issue 17): a sandbox agent's events reach only sandbox endpoints.

- `webhook_endpoints.sandbox`: the endpoint receives the sandbox's events, and only them.
- `events.sandbox`: emitted by a sandbox agent's pay or cancel (`payments.sandbox`); kept,
  archived and shown like any event, marked.
- PostgreSQL: `tolom_emit` (the real pays' road, `events.outbox` and `tolom_pay_sochi`)
  no longer queues real events for sandbox endpoints. Sandbox events are written by
  `events.outbox.emit`'s two statements, which choose the endpoints by the mark.

On PostgreSQL `events` is partitioned (0013): the column is added to the parent and every
partition at once, without a rewrite (a constant default).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_EMIT = """
CREATE OR REPLACE FUNCTION tolom_emit(
    p_type text, p_key text, p_customer bigint, p_payload text, p_notify boolean
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_event bigint;
    v_created timestamptz;
BEGIN
    INSERT INTO events (type, ordering_key, customer_id, payload)
    VALUES (p_type, p_key, p_customer, p_payload)
    RETURNING id, created_at INTO v_event, v_created;
    INSERT INTO deliveries (event_id, event_created_at, ordering_key, destination, endpoint_id,
                            recipient, language)
    SELECT v_event, v_created, p_key, 'webhook:' || w.id, w.id, NULL, NULL
      FROM webhook_endpoints w
     WHERE w.enabled%s
       AND (w.event_types = '*' OR (' ' || w.event_types || ' ') LIKE ('%% ' || p_type || ' %%'))
    UNION ALL
    SELECT v_event, v_created, p_key, 'email', NULL, c.email, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.email IS NOT NULL
    UNION ALL
    SELECT v_event, v_created, p_key, 'sms', NULL, c.phone, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.phone IS NOT NULL;
    RETURN v_event;
END $$
"""
EMIT = _EMIT % " AND NOT w.sandbox"  # real events only: never to a sandbox endpoint
EMIT_0013 = _EMIT % ""
AGENT_SANDBOX = (
    "a test agent: answered from the magic accounts (payments.sandbox), never "
    "touching customers, invoices, payments or the ledger; its events are marked sandbox"
)
AGENT_SANDBOX_0015 = (
    "a test agent: answered from the magic accounts (payments.sandbox), "
    "never touching customers, invoices, payments, the ledger or events"
)


def _comment_agents_sandbox(text: str) -> None:
    op.execute(sa.text(f"COMMENT ON COLUMN agents.sandbox IS '{text}'"))


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "sandbox",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
            comment="receives the sandbox's events, and only them (0016)",
        ),
    )
    op.add_column(
        "events",
        sa.Column(
            "sandbox",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
            comment="emitted by a sandbox agent: delivered only to sandbox endpoints (0016)",
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(EMIT)
        _comment_agents_sandbox(AGENT_SANDBOX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(EMIT_0013)
        _comment_agents_sandbox(AGENT_SANDBOX_0015)
    # Not batch mode (see 0015): SQLite ≥ 3.35 drops a plain column in place.
    op.drop_column("events", "sandbox")
    op.drop_column("webhook_endpoints", "sandbox")
