"""The agent sandbox (issue 17): sandbox agents and their pays, apart from real ones.

- `agents.sandbox`: a test agent, answered from the magic accounts (`payments.sandbox`).
- `sandbox_payments`: a sandbox agent's accepted pays, one per (agent, txn_id) as real
  payments are; `cancelled_at` / `cancel_reason` once cancelled.
- `sandbox_attempts`: pays sent to the "retry, then OK" magic account, per (agent, txn_id).
- `sandbox_state`: one row, the Bishkek day of the last nightly reset.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column(
            "sandbox",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
            comment="a test agent: answered from the magic accounts (payments.sandbox), "
            "never touching customers, invoices, payments, the ledger or events",
        ),
    )
    op.create_table(
        "sandbox_payments",
        sa.Column("id", Id, nullable=False, comment="the receipt number (prv_txn) answered"),
        sa.Column("agent_id", Id, nullable=False),
        sa.Column("txn_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column(
            "account", sa.String(32), nullable=False, comment="the magic INN or invoice number"
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("txn_date_raw", sa.String(40), nullable=False),
        sa.Column("txn_date", Timestamp, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column(
            "outcome", sa.String(24), nullable=False, comment="the magic account's behaviour"
        ),
        sa.Column("created_at", Timestamp, server_default=NOW, nullable=False),
        sa.Column("cancelled_at", Timestamp, nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_payments_amount")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_sandbox_payments_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_payments")),
        sa.UniqueConstraint("agent_id", "txn_id", name="uq_sandbox_payments_agent_txn"),
    )
    op.create_table(
        "sandbox_attempts",
        sa.Column("agent_id", Id, nullable=False),
        sa.Column("txn_id", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_sandbox_attempts_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("agent_id", "txn_id", name=op.f("pk_sandbox_attempts")),
    )
    op.create_table(
        "sandbox_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reset_on", sa.Date(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_sandbox_state_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_state")),
    )
    op.execute("INSERT INTO sandbox_state (id, reset_on) VALUES (1, NULL)")


def downgrade() -> None:
    op.drop_table("sandbox_state")
    op.drop_table("sandbox_attempts")
    op.drop_table("sandbox_payments")
    # Not batch mode: on SQLite that copies `agents` and drops the original, which the
    # foreign keys pointing at it refuse; SQLite ≥ 3.35 drops a plain column in place.
    op.drop_column("agents", "sandbox")
