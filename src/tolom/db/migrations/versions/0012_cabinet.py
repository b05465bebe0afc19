"""The customer's cabinet and the verification of online applications (issue 15).

- `applications` gains who decided (verified or rejected) and when: the back office's
  queue shows it and the audit log keeps the whole change.
- `cabinet_codes`: one-time sign-in codes. A row per request for a code: the challenge's
  token (its SHA-256: the browser holds the token in a cookie), the INN asked for, the code
  as an HMAC under the installation key (NULL when nothing was sent: an INN nobody has, or
  no contact on that channel), when it expires, how many wrong codes were tried, when it
  was used. Requests are counted per INN and per address for the resend throttle.
- `cabinet_sessions`: a signed-in customer's session, stored like the back office's: the
  cookie's SHA-256 and the CSRF token beside it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.add_column(
        "applications",
        sa.Column(
            "decided_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when it was verified or rejected",
        ),
    )
    op.add_column(
        "applications",
        sa.Column("decided_by", sa.String(80), nullable=True, comment="user:NAME"),
    )
    op.create_index("ix_applications_status", "applications", ["status", "id"])
    op.create_table(
        "cabinet_codes",
        sa.Column("id", Id, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("inn", sa.String(14), nullable=False),
        sa.Column("customer_id", Id, nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True, comment="NULL: nothing was sent"),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('email', 'sms')", name=op.f("ck_cabinet_codes_channel")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_cabinet_codes_attempts")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_cabinet_codes_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cabinet_codes")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_cabinet_codes_token_hash")),
    )
    op.create_index("ix_cabinet_codes_inn_created_at", "cabinet_codes", ["inn", "created_at"])
    op.create_index(
        "ix_cabinet_codes_address_created_at", "cabinet_codes", ["address", "created_at"]
    )
    op.create_table(
        "cabinet_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("customer_id", Id, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_cabinet_sessions_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_cabinet_sessions")),
    )
    op.create_index("ix_cabinet_sessions_customer_id", "cabinet_sessions", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_cabinet_sessions_customer_id", table_name="cabinet_sessions")
    op.drop_table("cabinet_sessions")
    op.drop_index("ix_cabinet_codes_address_created_at", table_name="cabinet_codes")
    op.drop_index("ix_cabinet_codes_inn_created_at", table_name="cabinet_codes")
    op.drop_table("cabinet_codes")
    op.drop_index("ix_applications_status", table_name="applications")
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("decided_by")
        batch.drop_column("decided_at")
