"""An index on payments (entry_id): what the 10-million-payment bench found missing.

A customer's card names the payment behind each statement line (`backoffice.
statement_sources.of_entries`: payments WHERE entry_id IN (… up to 500 entries …)). Without
an index on entry_id that is a scan of the whole payments table: 0.9 s at 10 000 000
payments (bench/backoffice_pages.py, docs/performance.md "Back-office pages with
10 000 000 payments"); with it, one probe per line. Cost: one more index entry per payment.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_payments_entry", "payments", ["entry_id"])


def downgrade() -> None:
    op.drop_index("ix_payments_entry", table_name="payments")
