"""The wallet simulator (issue 17): sandbox agents' secrets kept sealed, and favourites.

- `agents.secret_sealed`: a sandbox agent's secret, sealed with the key file
  (`tolom.secretbox`), so that the back office's simulator and `tolom simulate` can speak
  OSMP as that agent. Never set for a real agent (their secrets are kept only as hashes).
- `simulator_favourites`: the wallet simulator's «Избранное» templates and «Автоплатеж»
  schedules (a template with a repeat interval and its next due day), with the automatic
  repeat's state: the claim in progress (`claimed_at`) and the last run's outcome.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column(
            "secret_sealed",
            sa.Text(),
            nullable=True,
            comment="a sandbox agent's secret, sealed (tolom.secretbox), for the simulator; "
            "NULL for every real agent",
        ),
    )
    op.create_table(
        "simulator_favourites",
        sa.Column("id", Id, nullable=False),
        sa.Column("wallet", sa.String(16), nullable=False),
        sa.Column("agent_id", Id, nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("account", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "autopay_days",
            sa.Integer(),
            nullable=True,
            comment="«Автоплатеж»: repeat every N days; NULL: a template only",
        ),
        sa.Column("next_due", sa.Date(), nullable=True, comment="the next repeat's Bishkek day"),
        sa.Column("runs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_txn_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, server_default=NOW, nullable=False),
        sa.Column(
            "claimed_at",
            Timestamp,
            nullable=True,
            comment="an automatic repeat in progress since then; NULL: none",
        ),
        sa.Column(
            "last_run_at", Timestamp, nullable=True, comment="the last automatic repeat's end"
        ),
        sa.Column("last_run_txn_id", sa.String(64), nullable=True),
        sa.Column("last_outcome", sa.String(8), nullable=True, comment="paid | refused | retry"),
        sa.Column(
            "last_result", sa.Integer(), nullable=True, comment="its OSMP result; NULL: no answer"
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_simulator_favourites_amount")),
        sa.CheckConstraint(
            "autopay_days IS NULL OR autopay_days BETWEEN 1 AND 366",
            name=op.f("ck_simulator_favourites_autopay_days"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_simulator_favourites_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulator_favourites")),
    )


def downgrade() -> None:
    op.drop_table("simulator_favourites")
    # Not batch mode (see 0015): SQLite ≥ 3.35 drops a plain column in place.
    op.drop_column("agents", "secret_sealed")
