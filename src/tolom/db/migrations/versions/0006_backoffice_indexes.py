"""Indexes the back-office pages need to stay fast with millions of rows (bench/backoffice_pages.py
found each one; docs/performance.md has the figures before and after).

- payments (business_date, agent_id, service, amount) WHERE status = 'accepted': the
  dashboard's 30 days and the agents' 30-day figures read only this index;
- payments (txn_id, id): the payments list's one search box matches an INN, a txn_id or a
  receipt number (OR); with every branch indexed it is a bitmap OR, not a scan of the table;
- payments (id) WHERE status = 'reversed': the rare reversed payments, newest first;
- audit_log (actor, id), (action, id), (address, id): the audit page's filters, exact or
  prefix (varchar_pattern_ops, so LIKE 'x%' uses them whatever the database's collation);
- audit_log (at, id): a date range read newest first by (at, id) instead of by id alone;
- events (customer_id, id), carrying type: a customer's notifications on the customer's card;
- postings (credit_account_id, id) and (debit_account_id, id) now carry entry_id and amount
  (PostgreSQL INCLUDE), and journal_entries (id, created_at) holds what a statement asks of
  an entry, so an account's statement over a period reads indexes only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACCEPTED = sa.text("status = 'accepted'")
REVERSED = sa.text("status = 'reversed'")


def upgrade() -> None:
    op.create_index(
        "ix_payments_accepted_day",
        "payments",
        ["business_date", "agent_id", "service", "amount"],
        postgresql_where=ACCEPTED,
        sqlite_where=ACCEPTED,
    )
    op.create_index("ix_payments_txn_id", "payments", ["txn_id", "id"])
    op.create_index(
        "ix_payments_reversed",
        "payments",
        ["id"],
        postgresql_where=REVERSED,
        sqlite_where=REVERSED,
    )
    op.create_index(
        "ix_audit_log_actor",
        "audit_log",
        ["actor", "id"],
        postgresql_ops={"actor": "varchar_pattern_ops"},  # serves LIKE 'prefix%' and =
    )
    op.create_index(
        "ix_audit_log_action",
        "audit_log",
        ["action", "id"],
        postgresql_ops={"action": "varchar_pattern_ops"},  # serves LIKE 'prefix%' and =
    )
    op.create_index(
        "ix_audit_log_address",
        "audit_log",
        ["address", "id"],
        postgresql_ops={"address": "varchar_pattern_ops"},  # serves LIKE 'prefix%' and =
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at", "id"])
    op.create_index(
        "ix_events_customer", "events", ["customer_id", "id"], postgresql_include=["type"]
    )
    op.create_index("ix_journal_entries_moment", "journal_entries", ["id", "created_at"])
    for side in ("credit", "debit"):
        op.drop_index(f"ix_postings_{side}", table_name="postings")
        op.create_index(
            f"ix_postings_{side}",
            "postings",
            [f"{side}_account_id", "id"],
            postgresql_include=["entry_id", "amount"],
        )


def downgrade() -> None:
    for side in ("credit", "debit"):
        op.drop_index(f"ix_postings_{side}", table_name="postings")
        op.create_index(f"ix_postings_{side}", "postings", [f"{side}_account_id", "id"])
    op.drop_index("ix_journal_entries_moment", table_name="journal_entries")
    op.drop_index("ix_events_customer", table_name="events")
    for name in ("at", "address", "action", "actor"):
        op.drop_index(f"ix_audit_log_{name}", table_name="audit_log")
    for name in ("reversed", "txn_id", "accepted_day"):
        op.drop_index(f"ix_payments_{name}", table_name="payments")
