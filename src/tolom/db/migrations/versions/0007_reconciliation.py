"""Reconciliation with agents: registry formats, registries and their lines, agent-days,
discrepancies with their resolutions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Moment = sa.DateTime(timezone=True)
NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    op.create_table(
        "registry_formats",
        sa.Column("agent_id", Id, nullable=False),
        sa.Column("settings", sa.Text(), nullable=False, comment="JSON of reconciliation.formats"),
        sa.Column("updated_at", Moment, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_registry_formats_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_registry_formats")),
    )
    op.create_table(
        "registries",
        sa.Column("id", Id, nullable=False),
        sa.Column("agent_id", Id, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False, comment="the agent's day it lists"),
        sa.Column("sha256", sa.String(64), nullable=False, comment="of the file's bytes"),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False, comment="qiwi | csv | xlsx"),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, comment="current | superseded"),
        sa.Column(
            "superseded_by",
            Id,
            nullable=True,
            comment="the corrected registry that replaced this one",
        ),
        sa.Column("summary", sa.Text(), nullable=True, comment="JSON: counts and sums per class"),
        sa.Column("imported_by", sa.String(80), nullable=False),
        sa.Column("imported_at", Moment, server_default=NOW, nullable=False),
        sa.CheckConstraint("state IN ('current', 'superseded')", name=op.f("ck_registries_state")),
        sa.CheckConstraint(
            "line_count >= 0 AND total_amount >= 0", name=op.f("ck_registries_totals")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_registries_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by"],
            ["registries.id"],
            name=op.f("fk_registries_superseded_by_registries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
    )
    op.create_index(
        "uq_registries_current",
        "registries",
        ["agent_id", "business_date"],
        unique=True,
        postgresql_where=sa.text("state = 'current'"),
        sqlite_where=sa.text("state = 'current'"),
    )
    op.create_table(
        "registry_lines",
        sa.Column("registry_id", Id, nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False, comment="the line's number in the file"),
        sa.Column("txn_id", sa.String(64), nullable=False, comment="as payments.txn_id is keyed"),
        sa.Column("occurred_at", Moment, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("account", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("registry_id", "line_no", name=op.f("pk_registry_lines")),
    )
    op.create_table(
        "reconciliation_days",
        sa.Column("agent_id", Id, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column(
            "state", sa.String(16), server_default="open", nullable=False, comment="open | closed"
        ),
        sa.Column("closed_by", sa.String(80), nullable=True),
        sa.Column("closed_at", Moment, nullable=True),
        sa.CheckConstraint(
            "state IN ('open', 'closed')", name=op.f("ck_reconciliation_days_state")
        ),
        sa.CheckConstraint(
            "state = 'open' OR closed_at IS NOT NULL", name=op.f("ck_reconciliation_days_closed")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_reconciliation_days_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("agent_id", "business_date", name=op.f("pk_reconciliation_days")),
    )
    op.create_table(
        "discrepancies",
        sa.Column("id", Id, nullable=False),
        sa.Column("registry_id", Id, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("txn_id", sa.String(64), nullable=False),
        sa.Column(
            "line_no", sa.Integer(), nullable=True, comment="the registry's line; NULL: ours only"
        ),
        sa.Column("payment_id", Id, nullable=True),
        sa.Column("their_account", sa.String(32), nullable=True),
        sa.Column("their_amount", sa.BigInteger(), nullable=True),
        sa.Column("our_account", sa.String(32), nullable=True),
        sa.Column("our_amount", sa.BigInteger(), nullable=True),
        sa.Column(
            "resolution", sa.String(16), nullable=True, comment="accepted | reversed | explained"
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(80), nullable=True),
        sa.Column("resolved_at", Moment, nullable=True),
        sa.Column("resolution_payment_id", Id, nullable=True),
        sa.CheckConstraint(
            "kind IN ('missing_ours', 'missing_theirs', 'amount_mismatch', 'account_mismatch', "
            "'duplicate')",
            name=op.f("ck_discrepancies_kind"),
        ),
        sa.CheckConstraint(
            "resolution IS NULL OR resolution IN ('accepted', 'reversed', 'explained')",
            name=op.f("ck_discrepancies_resolution"),
        ),
        sa.CheckConstraint(
            "(resolution IS NULL) = (reason IS NULL) "
            "AND (resolution IS NULL) = (resolved_at IS NULL)",
            name=op.f("ck_discrepancies_resolved"),
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_discrepancies_registry_id_registries")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_discrepancies_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["resolution_payment_id"],
            ["payments.id"],
            name=op.f("fk_discrepancies_resolution_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancies")),
    )
    op.create_index(
        "ix_discrepancies_registry", "discrepancies", ["registry_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_discrepancies_registry", table_name="discrepancies")
    op.drop_table("discrepancies")
    op.drop_table("reconciliation_days")
    op.drop_table("registry_lines")
    op.drop_index("uq_registries_current", table_name="registries")
    op.drop_table("registries")
    op.drop_table("registry_formats")
