"""Online applications for a signature (`/apply`, issue 15).

One row per application: the applicant's INN, the invoice it was given (unique: a repeated
application gets the same invoice and no new row), the office where identity will be
verified, and its state (new | verified | rejected, with the reason). `address` is the
applicant's network address: the per-address rate limit counts rows by it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", Id, nullable=False),
        sa.Column("inn", sa.String(14), nullable=False),
        sa.Column("invoice_number", sa.String(16), nullable=False),
        sa.Column("office", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), server_default="new", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True, comment="why it was rejected"),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "address", sa.String(64), nullable=True, comment="the applicant's network address"
        ),
        sa.CheckConstraint(
            "status IN ('new', 'verified', 'rejected')", name=op.f("ck_applications_status")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_number"],
            ["invoices.number"],
            name=op.f("fk_applications_invoice_number_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
        sa.UniqueConstraint("invoice_number", name=op.f("uq_applications_invoice_number")),
    )
    op.create_index("ix_applications_address_created_at", "applications", ["address", "created_at"])
    op.create_index("ix_applications_inn", "applications", ["inn"])


def downgrade() -> None:
    op.drop_index("ix_applications_inn", table_name="applications")
    op.drop_index("ix_applications_address_created_at", table_name="applications")
    op.drop_table("applications")
