"""Login throttling kept in the database, so that every server process sees it.

One row per thing being counted: an address (`scope` 'address'), a username ('username'),
or a username from one address ('pair'); the unused part of the key is ''. A row counts
the failed logins since `window_start` and holds further attempts back until
`blocked_until`. Old rows are pruned by `last_failure`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("username", sa.String(64), server_default="", nullable=False),
        sa.Column("address", sa.String(64), server_default="", nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "blocked_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="refuse attempts until then",
        ),
        sa.CheckConstraint(
            "scope IN ('address', 'username', 'pair')", name=op.f("ck_login_throttle_scope")
        ),
        sa.PrimaryKeyConstraint("scope", "username", "address", name=op.f("pk_login_throttle")),
    )
    op.create_index("ix_login_throttle_last_failure", "login_throttle", ["last_failure"])


def downgrade() -> None:
    op.drop_index("ix_login_throttle_last_failure", table_name="login_throttle")
    op.drop_table("login_throttle")
