"""Worker heartbeats and probe results (issues 16 and 17): what a scrape of any server
reports about `tolom worker` processes, which share no metrics directory with it.

- `worker_heartbeats`: one row per running delivery worker (host:pid), its latest loop.
- `probe_results`: the latest synthetic check (`tolom.probe`) per gateway.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker", sa.String(200), nullable=False, comment="host:pid"),
        sa.Column("host", sa.String(190), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("last_loop_at", Timestamp, nullable=True, comment="NULL: not looped yet"),
        sa.Column("beat_at", Timestamp, nullable=False, comment="when this row was written"),
        sa.PrimaryKeyConstraint("worker", name=op.f("pk_worker_heartbeats")),
    )
    op.create_table(
        "probe_results",
        sa.Column("gateway", sa.String(16), nullable=False, comment="osmp | rest"),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False, comment="the whole path"),
        sa.Column("failed_step", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_at", Timestamp, nullable=False),
        sa.Column("worker", sa.String(200), nullable=False, comment="host:pid that ran it"),
        sa.PrimaryKeyConstraint("gateway", name=op.f("pk_probe_results")),
    )


def downgrade() -> None:
    op.drop_table("probe_results")
    op.drop_table("worker_heartbeats")
