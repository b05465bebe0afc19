"""Reversals, manual payments, API keys, the audit log; agents get a kind, a signing key and
a cancel window.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tolom.db.ddl import append_only, drop_append_only

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    # SQLite's ADD COLUMN takes CHECK constraints inline; batch mode would rebuild the table.
    op.add_column(
        "agents",
        sa.Column(
            "kind",
            sa.String(16),
            sa.CheckConstraint("kind IN ('gateway', 'cash_desk', 'bank')", name="ck_agents_kind"),
            nullable=False,
            server_default="gateway",
        ),
    )
    op.add_column("agents", sa.Column("signing_key", sa.String(64), nullable=True))
    op.add_column(
        "agents",
        sa.Column(
            "cancel_window_days",
            sa.Integer(),
            sa.CheckConstraint(
                "cancel_window_days BETWEEN 0 AND 366", name="ck_agents_cancel_window"
            ),
            nullable=False,
            server_default="0",
        ),
    )
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce lengths
        op.alter_column("payments", "txn_id", type_=sa.String(64))
        op.alter_column("payments", "txn_date_raw", type_=sa.String(40))
        op.alter_column("gateway_requests", "txn_id", type_=sa.String(64))
    op.create_index("ix_payments_business_date", "payments", ["business_date", "id"])
    op.create_index("ix_payments_account", "payments", ["account", "id"])

    op.create_table(
        "payment_reversals",
        sa.Column("id", Id, nullable=False),
        sa.Column("payment_id", Id, nullable=False),
        sa.Column("entry_id", Id, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("length(reason) > 0", name=op.f("ck_payment_reversals_reason")),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_payment_reversals_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_reversals_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_reversals")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_payment_reversals_entry_id")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_payment_reversals_payment_id")),
    )
    op.create_table(
        "manual_payments",
        sa.Column("payment_id", Id, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("payment_code", sa.String(8), nullable=True),
        sa.Column("bank_reference", sa.String(64), nullable=True),
        sa.Column("payer", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(80), nullable=False),
        sa.CheckConstraint(
            "channel IN ('cash_desk', 'bank')", name=op.f("ck_manual_payments_channel")
        ),
        sa.CheckConstraint(
            "channel = 'cash_desk' OR (payment_code IS NOT NULL AND bank_reference IS NOT NULL)",
            name=op.f("ck_manual_payments_bank_details"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_manual_payments_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_manual_payments")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", Id, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", Id, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id", "id"])
    append_only("audit_log")


def downgrade() -> None:
    drop_append_only("audit_log")
    op.drop_index("ix_audit_log_object", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
    op.drop_table("manual_payments")
    op.drop_table("payment_reversals")
    op.drop_index("ix_payments_account", table_name="payments")
    op.drop_index("ix_payments_business_date", table_name="payments")
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_column("cancel_window_days")
        batch_op.drop_column("signing_key")
        batch_op.drop_column("kind")
