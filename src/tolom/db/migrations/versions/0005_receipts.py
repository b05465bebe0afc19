"""Receipts: the unguessable token of each payment's public confirmation page (/r/{token}).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column(
            "payment_id",
            Id,
            nullable=False,
            comment="one receipt per payment, made when it is first asked for",
        ),
        sa.Column(
            "token",
            sa.String(64),
            nullable=False,
            comment="secrets.token_urlsafe(24): 192 random bits, the public page's address",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_receipts_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_receipts")),
        sa.UniqueConstraint("token", name=op.f("uq_receipts_token")),
    )


def downgrade() -> None:
    op.drop_table("receipts")
