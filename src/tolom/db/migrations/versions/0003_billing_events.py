"""Billing behind the balance: tariffs, charges, signature orders; the event outbox with its
deliveries (webhooks, e-mail, SMS); customers get contacts and a language.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:45:27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tolom.db.ddl import append_only, drop_append_only

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="receivers deduplicate by it",
        ),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column(
            "ordering_key",
            sa.String(length=64),
            nullable=False,
            comment="events of one key are delivered in id order: customer:ID or inn:INN",
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("payload", sa.Text(), nullable=False, comment="JSON"),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_table(
        "tariffs",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column(
            "state_body",
            sa.String(length=16),
            nullable=False,
            comment="who receives the report: sti, sf, nsc",
        ),
        sa.Column("form", sa.String(length=64), nullable=False, comment="the report's form"),
        sa.Column(
            "period",
            sa.String(length=8),
            nullable=False,
            comment="how often it is due: month | quarter | year",
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False, comment="tyiyn per report sent"),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.CheckConstraint(
            "period IN ('month', 'quarter', 'year')", name=op.f("ck_tariffs_period")
        ),
        sa.CheckConstraint("price > 0", name=op.f("ck_tariffs_price")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_tariffs")),
        sa.UniqueConstraint("state_body", "form", "period", name="uq_tariffs_report"),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "secret",
            sa.String(length=64),
            nullable=False,
            comment="base64 HMAC key (Standard Webhooks)",
        ),
        sa.Column("event_types", sa.Text(), nullable=False, comment="space-separated; * = all"),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
        sa.UniqueConstraint("name", name=op.f("uq_webhook_endpoints_name")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "destination",
            sa.String(length=40),
            nullable=False,
            comment="webhook:ENDPOINT_ID | email | sms: one ordered line per destination and key",
        ),
        sa.Column(
            "endpoint_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "recipient", sa.String(length=254), nullable=True, comment="e-mail address or phone"
        ),
        sa.Column("language", sa.String(length=2), nullable=True),
        sa.Column("ordering_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "lease_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="a worker is delivering it",
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name=op.f("ck_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_deliveries_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("event_id", "destination", name="uq_deliveries_event_destination"),
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_deliveries_line",
        "deliveries",
        ["destination", "ordering_key", "event_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status", "id"], unique=False)
    op.create_table(
        "charges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("client", sa.String(length=80), nullable=False, comment="who asked: apikey:NAME"),
        sa.Column(
            "idempotency_key", sa.String(length=64), nullable=False, comment="the client's own key"
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False, comment="tyiyn"),
        sa.Column("tariff_code", sa.String(length=32), nullable=True),
        sa.Column("report_id", sa.String(length=64), nullable=True),
        sa.Column("state_body", sa.String(length=16), nullable=True),
        sa.Column("form", sa.String(length=64), nullable=True),
        sa.Column(
            "period",
            sa.String(length=16),
            nullable=True,
            comment="the reporting period, e.g. 2026-10",
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "settled_by_payment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
            comment="the top-up that released it from awaiting payment",
        ),
        sa.Column(
            "refund_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("refund_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "closed_at", sa.DateTime(timezone=True), nullable=True, comment="cancelled or refunded"
        ),
        sa.CheckConstraint(
            "(status = 'refunded') = (refund_entry_id IS NOT NULL)",
            name=op.f("ck_charges_refunded_has_entry"),
        ),
        sa.CheckConstraint(
            "(status IN ('charged', 'refunded')) = (entry_id IS NOT NULL)",
            name=op.f("ck_charges_charged_has_entry"),
        ),
        sa.CheckConstraint(
            "status IN ('awaiting_payment', 'charged', 'cancelled', 'refunded')",
            name=op.f("ck_charges_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_charges_amount")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_charges_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_charges_entry_id_journal_entries")
        ),
        sa.ForeignKeyConstraint(
            ["refund_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_charges_refund_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["settled_by_payment_id"],
            ["payments.id"],
            name=op.f("fk_charges_settled_by_payment_id_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["tariff_code"], ["tariffs.code"], name=op.f("fk_charges_tariff_code_tariffs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charges")),
        sa.UniqueConstraint("client", "idempotency_key", name="uq_charges_client_key"),
        sa.UniqueConstraint("entry_id", name=op.f("uq_charges_entry_id")),
        sa.UniqueConstraint("refund_entry_id", name=op.f("uq_charges_refund_entry_id")),
    )
    op.create_index(
        "ix_charges_awaiting",
        "charges",
        ["customer_id", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'awaiting_payment'"),
        sqlite_where=sa.text("status = 'awaiting_payment'"),
    )
    op.create_index("ix_charges_customer", "charges", ["customer_id", "id"], unique=False)
    op.create_table(
        "signature_orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "invoice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "invoice_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("unit", sa.Integer(), nullable=False, comment="1..quantity of its line"),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("product_code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="signature | carrier"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False, comment="tyiyn: the line's unit price"),
        sa.Column("inn", sa.String(length=14), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="paid", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("production_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "valid_until", sa.Date(), nullable=True, comment="signatures: issued + 12 months"
        ),
        sa.Column("expiry_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column(
            "refund_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("refund_amount", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(status = 'issued') = (issued_at IS NOT NULL)",
            name=op.f("ck_signature_orders_issued_at"),
        ),
        sa.CheckConstraint(
            "status IN ('paid', 'in_production', 'issued', 'cancelled')",
            name=op.f("ck_signature_orders_status"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_signature_orders_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_signature_orders_invoice_line_id_invoice_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_signature_orders_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["product_code"],
            ["products.code"],
            name=op.f("fk_signature_orders_product_code_products"),
        ),
        sa.ForeignKeyConstraint(
            ["refund_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_signature_orders_refund_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_orders")),
        sa.UniqueConstraint("invoice_line_id", "unit", name="uq_signature_orders_line_unit"),
        sa.UniqueConstraint("refund_entry_id", name=op.f("uq_signature_orders_refund_entry_id")),
    )
    op.create_index("ix_signature_orders_invoice", "signature_orders", ["invoice_id"], unique=False)
    op.create_index(
        "ix_signature_orders_status", "signature_orders", ["status", "id"], unique=False
    )
    op.create_index(
        "ix_signature_orders_valid_until", "signature_orders", ["valid_until"], unique=False
    )
    append_only("events")
    op.add_column(
        "customers",
        sa.Column(
            "email", sa.String(length=254), nullable=True, comment="for notifications; NULL: none"
        ),
    )
    op.add_column(
        "customers",
        sa.Column(
            "phone", sa.String(length=16), nullable=True, comment="E.164, +996…; NULL: no SMS"
        ),
    )
    op.add_column(
        "customers",
        sa.Column(
            "language",
            sa.String(length=2),
            sa.CheckConstraint("language IN ('ru', 'ky')", name=op.f("ck_customers_language")),
            server_default="ru",
            nullable=False,
            comment="of notifications: ru | ky",
        ),
    )


def downgrade() -> None:
    drop_append_only("events")
    with op.batch_alter_table("customers") as batch_op:
        batch_op.drop_constraint(op.f("ck_customers_language"), type_="check")
        batch_op.drop_column("language")
        batch_op.drop_column("phone")
        batch_op.drop_column("email")
    op.drop_index("ix_signature_orders_valid_until", table_name="signature_orders")
    op.drop_index("ix_signature_orders_status", table_name="signature_orders")
    op.drop_index("ix_signature_orders_invoice", table_name="signature_orders")
    op.drop_table("signature_orders")
    op.drop_index("ix_charges_customer", table_name="charges")
    op.drop_index(
        "ix_charges_awaiting",
        table_name="charges",
        postgresql_where=sa.text("status = 'awaiting_payment'"),
        sqlite_where=sa.text("status = 'awaiting_payment'"),
    )
    op.drop_table("charges")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_index(
        "ix_deliveries_line",
        table_name="deliveries",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_deliveries_due",
        table_name="deliveries",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.drop_table("deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("tariffs")
    op.drop_table("events")
