"""The tables, as SQLAlchemy Core metadata: one source for queries and for Alembic.

Invariants the database enforces itself, so a bug in Python cannot break them:
- a posting moves a positive amount between two different accounts, so every journal
  entry (a set of postings) sums to zero by construction;
- a balance that must not go negative cannot (CHECK on `account_balances`);
- one payment per agent and `txn_id` (UNIQUE), one payment per invoice;
- a payment is reversed at most once (UNIQUE on `payment_reversals.payment_id`);
- postings, journal entries and the audit log are append-only (triggers in the migrations).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming_convention)

# SQLite only auto-increments INTEGER PRIMARY KEY; BIGINT elsewhere.
IdType = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)
NOW = text("CURRENT_TIMESTAMP")

services = Table(
    "services",
    metadata,
    Column("code", String(16), primary_key=True, comment="sochi | eds"),
    Column("name", Text, nullable=False),
    Column("min_amount", BigInteger, nullable=False, comment="tyiyn"),
    Column("max_amount", BigInteger, nullable=False, comment="tyiyn"),
    CheckConstraint("min_amount > 0 AND max_amount >= min_amount", name="limits"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("name", Text, nullable=False),
    Column(
        "slots",
        Integer,
        nullable=False,
        server_default="1",
        comment="balance rows; >1 spreads a hot account's row locks",
    ),
    Column("may_go_negative", Boolean, nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    CheckConstraint("slots BETWEEN 1 AND 64", name="slots"),
    CheckConstraint(
        "kind IN ('customer', 'agent_clearing', 'revenue', 'cash_desk', 'bank')", name="kind"
    ),
)

account_balances = Table(
    "account_balances",
    metadata,
    Column("account_id", IdType, ForeignKey("accounts.id"), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("balance", BigInteger, nullable=False, server_default="0", comment="credits - debits"),
    Column("may_go_negative", Boolean, nullable=False),
    CheckConstraint("may_go_negative OR balance >= 0", name="not_negative"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("kind", String(24), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    # What a statement asks of each of an account's entries (when), without the row.
    Index("ix_journal_entries_moment", "id", "created_at"),
)

postings = Table(
    "postings",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("entry_id", IdType, ForeignKey("journal_entries.id"), nullable=False, index=True),
    Column("debit_account_id", IdType, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", IdType, ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False, comment="tyiyn, always > 0"),
    CheckConstraint("amount > 0", name="positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
    # A statement reads an account's postings from these alone (PostgreSQL INCLUDE).
    Index("ix_postings_debit", "debit_account_id", "id", postgresql_include=["entry_id", "amount"]),
    Index(
        "ix_postings_credit", "credit_account_id", "id", postgresql_include=["entry_id", "amount"]
    ),
)

customers = Table(
    "customers",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("inn", String(14), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("legal_form", String(32), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("account_id", IdType, ForeignKey("accounts.id"), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("email", String(254), nullable=True, comment="for notifications; NULL: none"),
    Column("phone", String(16), nullable=True, comment="E.164, +996…; NULL: no SMS"),
    Column(
        "language",
        String(2),
        nullable=False,
        server_default="ru",
        comment="of notifications: ru | ky",
    ),
    CheckConstraint("length(inn) = 14", name="inn"),
    CheckConstraint("status IN ('active', 'blocked')", name="status"),
    CheckConstraint("language IN ('ru', 'ky')", name="language"),
)

products = Table(
    "products",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("price", BigInteger, nullable=True, comment="tyiyn; NULL: not priced yet"),
    Column("kind", String(16), nullable=False, comment="signature | carrier"),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    CheckConstraint("price IS NULL OR price > 0", name="price"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("number", String(16), nullable=False, unique=True),
    Column("inn", String(14), nullable=True),
    Column("payer_name", Text, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("expires_at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("paid_at", Timestamp, nullable=True),
    Column("cancelled_at", Timestamp, nullable=True),
    Column("payment_id", IdType, nullable=True, unique=True),
    CheckConstraint("length(number) = 16", name="number"),
    CheckConstraint("total > 0", name="total"),
    CheckConstraint("status IN ('open', 'paid', 'cancelled')", name="status"),
    CheckConstraint("(status = 'paid') = (payment_id IS NOT NULL)", name="paid_has_payment"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("invoice_id", IdType, ForeignKey("invoices.id"), nullable=False, index=True),
    Column("product_code", String(32), ForeignKey("products.code"), nullable=False),
    Column("name", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("quantity > 0 AND unit_price > 0", name="positive"),
    CheckConstraint("amount = quantity * unit_price", name="amount"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("secret_hash", String(64), nullable=False, comment="sha256 hex of the secret"),
    Column("allowed_networks", Text, nullable=False, comment="CIDRs, comma-separated; * = any"),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("clearing_account_id", IdType, ForeignKey("accounts.id"), nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column(
        "kind",
        String(16),
        nullable=False,
        server_default="gateway",
        comment="gateway: an agent's software; cash_desk | bank: payments an operator records",
    ),
    Column(
        "signing_key_sealed",
        Text,
        nullable=True,
        comment="the REST gateway's hex HMAC key (derived from the secret), sealed with "
        "the key file (tolom.secretbox); NULL: none yet",
    ),
    Column(
        "cancel_window_days",
        Integer,
        nullable=False,
        server_default="0",
        comment="business days after the payment's own in which the agent may cancel it",
    ),
    Column(
        "sandbox",
        Boolean,
        nullable=False,
        server_default=text("false"),
        comment="a test agent: answered from the magic accounts (payments.sandbox), never "
        "touching customers, invoices, payments or the ledger; its events are marked sandbox",
    ),
    Column(
        "secret_sealed",
        Text,
        nullable=True,
        comment="a sandbox agent's secret, sealed (tolom.secretbox), for the simulator; "
        "NULL for every real agent",
    ),
    CheckConstraint("kind IN ('gateway', 'cash_desk', 'bank')", name="kind"),
    CheckConstraint("cancel_window_days BETWEEN 0 AND 366", name="cancel_window"),
)

agent_services = Table(
    "agent_services",
    metadata,
    Column("agent_id", IdType, ForeignKey("agents.id"), primary_key=True),
    Column("service", String(16), ForeignKey("services.code"), primary_key=True),
    Column("min_amount", BigInteger, nullable=True, comment="overrides the service's"),
    Column("max_amount", BigInteger, nullable=True, comment="overrides the service's"),
)

# The sandbox (`tolom.payments.sandbox`, migration 0015): sandbox agents' pays live here,
# apart from every real table; emptied nightly and by `tolom sandbox reset`.
sandbox_payments = Table(
    "sandbox_payments",
    metadata,
    Column("id", IdType, primary_key=True, comment="the receipt number (prv_txn) answered"),
    Column("agent_id", IdType, ForeignKey("agents.id"), nullable=False),
    Column("txn_id", String(64), nullable=False),
    Column("service", String(16), nullable=False),
    Column("account", String(32), nullable=False, comment="the magic INN or invoice number"),
    Column("amount", BigInteger, nullable=False),
    Column("txn_date_raw", String(40), nullable=False),
    Column("txn_date", Timestamp, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("outcome", String(24), nullable=False, comment="the magic account's behaviour"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("cancelled_at", Timestamp, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    UniqueConstraint("agent_id", "txn_id", name="uq_sandbox_payments_agent_txn"),
    CheckConstraint("amount > 0", name="amount"),
)

sandbox_attempts = Table(
    "sandbox_attempts",
    metadata,
    # How often a sandbox agent has sent a pay to the "retry, then OK" magic account.
    Column("agent_id", IdType, ForeignKey("agents.id"), primary_key=True),
    Column("txn_id", String(64), primary_key=True),
    Column("attempts", Integer, nullable=False),
)

# The wallet simulator (`tolom.simulator`, migration 0019): «Избранное» templates and
# «Автоплатеж» schedules of the simulated MegaPay wallet, always for a sandbox agent.
simulator_favourites = Table(
    "simulator_favourites",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("wallet", String(16), nullable=False),
    Column("agent_id", IdType, ForeignKey("agents.id"), nullable=False),
    Column("service", String(16), nullable=False),
    Column("account", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column(
        "autopay_days",
        Integer,
        nullable=True,
        comment="«Автоплатеж»: repeat every N days; NULL: a template only",
    ),
    Column("next_due", Date, nullable=True, comment="the next repeat's Bishkek day"),
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("last_txn_id", String(64), nullable=True),
    Column("created_by", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column(
        "claimed_at",
        Timestamp,
        nullable=True,
        comment="an automatic repeat in progress since then; NULL: none",
    ),
    Column("last_run_at", Timestamp, nullable=True, comment="the last automatic repeat's end"),
    Column("last_run_txn_id", String(64), nullable=True),
    Column("last_outcome", String(8), nullable=True, comment="paid | refused | retry"),
    Column("last_result", Integer, nullable=True, comment="its OSMP result; NULL: no answer"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("autopay_days IS NULL OR autopay_days BETWEEN 1 AND 366", name="autopay_days"),
)

sandbox_state = Table(
    "sandbox_state",
    metadata,
    # One row (id 1): the Bishkek day of the last nightly reset, so that several workers
    # reset once a day (a conditional UPDATE decides which).
    Column("id", Integer, primary_key=True),
    Column("reset_on", Date, nullable=True),
    CheckConstraint("id = 1", name="one_row"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", IdType, primary_key=True, comment="prv_txn: also the receipt number"),
    Column("agent_id", IdType, ForeignKey("agents.id"), nullable=False),
    Column(
        "txn_id",
        String(64),
        nullable=False,
        comment="agent's txn_id, or a manual payment's reference",
    ),
    Column("service", String(16), ForeignKey("services.code"), nullable=False),
    Column("account", String(32), nullable=False, comment="INN or invoice number as sent"),
    Column("amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="accepted"),
    Column("customer_id", IdType, ForeignKey("customers.id"), nullable=True),
    Column("invoice_id", IdType, ForeignKey("invoices.id"), nullable=True),
    Column("entry_id", IdType, ForeignKey("journal_entries.id"), nullable=True),
    Column("txn_date_raw", String(40), nullable=False, comment="as the agent sent it"),
    Column("txn_date", Timestamp, nullable=False, comment="txn_date_raw read in agent's zone"),
    Column("business_date", Date, nullable=False, comment="agent-local date of txn_date"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    UniqueConstraint("agent_id", "txn_id", name="uq_payments_agent_txn"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("status IN ('accepted', 'reversed')", name="status"),
    Index("ix_payments_agent_day", "agent_id", "business_date"),
    Index("ix_payments_customer", "customer_id", "id"),
    Index("ix_payments_business_date", "business_date", "id"),
    Index("ix_payments_account", "account", "id"),
    Index("ix_payments_txn_id", "txn_id", "id"),  # the list's search box: INN, txn_id or №
    Index("ix_payments_entry", "entry_id"),  # a statement line's payment (migration 0014)
    Index(
        "ix_payments_accepted_day",  # the dashboard's and agents' day totals, index-only
        "business_date",
        "agent_id",
        "service",
        "amount",
        postgresql_where=text("status = 'accepted'"),
        sqlite_where=text("status = 'accepted'"),
    ),
    Index(
        "ix_payments_reversed",
        "id",
        postgresql_where=text("status = 'reversed'"),
        sqlite_where=text("status = 'reversed'"),
    ),
)

# Closed business days' accepted payments, summed once (payments.day_totals, migration 0018).
# A trigger on payments deletes a day's rows when one of its payments is inserted late,
# reversed or changed; the next reader sums the day again.
payment_days_summed = Table(
    "payment_days_summed",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("summed_at", Timestamp, nullable=False, server_default=NOW),
    comment="closed business days whose payment_day_totals are stored and current",
)

payment_day_totals = Table(
    "payment_day_totals",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("agent_id", IdType, primary_key=True),
    Column("service", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False, comment="tyiyn"),
    comment="accepted payments per closed business day, agent and service",
)

payment_reversals = Table(
    "payment_reversals",
    metadata,
    Column("id", IdType, primary_key=True),
    Column(
        "payment_id",
        IdType,
        ForeignKey("payments.id"),
        nullable=False,
        unique=True,
        comment="a payment is reversed at most once",
    ),
    Column("entry_id", IdType, ForeignKey("journal_entries.id"), nullable=False, unique=True),
    Column("reason", Text, nullable=False),
    Column("requested_by", String(80), nullable=False, comment="agent:CODE or apikey:NAME"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    CheckConstraint("length(reason) > 0", name="reason"),
)

manual_payments = Table(
    "manual_payments",
    metadata,
    Column("payment_id", IdType, ForeignKey("payments.id"), primary_key=True),
    Column("channel", String(16), nullable=False, comment="cash_desk | bank"),
    Column("payment_code", String(8), nullable=True, comment="bank: 42151410 | 42122900"),
    Column("bank_reference", String(64), nullable=True, comment="bank: the transfer's number"),
    Column("payer", Text, nullable=True, comment="who brought the cash or sent the transfer"),
    Column("note", Text, nullable=True),
    Column("recorded_by", String(80), nullable=False),
    CheckConstraint("channel IN ('cash_desk', 'bank')", name="channel"),
    CheckConstraint(
        "channel = 'cash_desk' OR (payment_code IS NOT NULL AND bank_reference IS NOT NULL)",
        name="bank_details",
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False, unique=True, comment="public part of the key"),
    Column("secret_hash", String(64), nullable=False, comment="sha256 hex of the whole key"),
    Column("scopes", Text, nullable=False, comment="space-separated"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("revoked_at", Timestamp, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("at", Timestamp, nullable=False, server_default=NOW),
    Column("actor", String(80), nullable=False, comment="apikey:NAME, agent:CODE, cli:USER ..."),
    Column("address", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("before", Text, nullable=True, comment="JSON"),
    Column("after", Text, nullable=True, comment="JSON"),
    Index("ix_audit_log_object", "object_type", "object_id", "id"),
    # The audit page's filters, newest first (exact or prefix).
    Index("ix_audit_log_actor", "actor", "id", postgresql_ops={"actor": "varchar_pattern_ops"}),
    Index("ix_audit_log_action", "action", "id", postgresql_ops={"action": "varchar_pattern_ops"}),
    Index(
        "ix_audit_log_address", "address", "id", postgresql_ops={"address": "varchar_pattern_ops"}
    ),
    Index("ix_audit_log_at", "at", "id"),
)

tariffs = Table(
    "tariffs",
    metadata,
    Column("code", String(32), primary_key=True),
    Column(
        "state_body", String(16), nullable=False, comment="who receives the report: sti, sf, nsc"
    ),
    Column("form", String(64), nullable=False, comment="the report's form"),
    Column(
        "period", String(8), nullable=False, comment="how often it is due: month | quarter | year"
    ),
    Column("name", Text, nullable=False),
    Column("price", BigInteger, nullable=False, comment="tyiyn per report sent"),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    UniqueConstraint("state_body", "form", "period", name="uq_tariffs_report"),
    CheckConstraint("price > 0", name="price"),
    CheckConstraint("period IN ('month', 'quarter', 'year')", name="period"),
)

charges = Table(
    "charges",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("customer_id", IdType, ForeignKey("customers.id"), nullable=False),
    Column("client", String(80), nullable=False, comment="who asked: apikey:NAME"),
    Column("idempotency_key", String(64), nullable=False, comment="the client's own key"),
    Column("amount", BigInteger, nullable=False, comment="tyiyn"),
    Column("tariff_code", String(32), ForeignKey("tariffs.code"), nullable=True),
    Column("report_id", String(64), nullable=True),
    Column("state_body", String(16), nullable=True),
    Column("form", String(64), nullable=True),
    Column("period", String(16), nullable=True, comment="the reporting period, e.g. 2026-10"),
    Column("description", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("entry_id", IdType, ForeignKey("journal_entries.id"), nullable=True, unique=True),
    Column(
        "settled_by_payment_id",
        IdType,
        ForeignKey("payments.id"),
        nullable=True,
        comment="the top-up that released it from awaiting payment",
    ),
    Column("refund_entry_id", IdType, ForeignKey("journal_entries.id"), nullable=True, unique=True),
    Column("refund_reason", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("settled_at", Timestamp, nullable=True),
    Column("closed_at", Timestamp, nullable=True, comment="cancelled or refunded"),
    UniqueConstraint("client", "idempotency_key", name="uq_charges_client_key"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint(
        "status IN ('awaiting_payment', 'charged', 'cancelled', 'refunded')", name="status"
    ),
    CheckConstraint(
        "(status IN ('charged', 'refunded')) = (entry_id IS NOT NULL)", name="charged_has_entry"
    ),
    CheckConstraint(
        "(status = 'refunded') = (refund_entry_id IS NOT NULL)", name="refunded_has_entry"
    ),
    Index("ix_charges_customer", "customer_id", "id"),
    Index(
        "ix_charges_awaiting",
        "customer_id",
        "id",
        postgresql_where=text("status = 'awaiting_payment'"),
        sqlite_where=text("status = 'awaiting_payment'"),
    ),
)

signature_orders = Table(
    "signature_orders",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("invoice_id", IdType, ForeignKey("invoices.id"), nullable=False),
    Column("invoice_line_id", IdType, ForeignKey("invoice_lines.id"), nullable=False),
    Column("unit", Integer, nullable=False, comment="1..quantity of its line"),
    Column("payment_id", IdType, ForeignKey("payments.id"), nullable=False),
    Column("product_code", String(32), ForeignKey("products.code"), nullable=False),
    Column("kind", String(16), nullable=False, comment="signature | carrier"),
    Column("name", Text, nullable=False),
    Column("price", BigInteger, nullable=False, comment="tyiyn: the line's unit price"),
    Column("inn", String(14), nullable=True),
    Column("status", String(16), nullable=False, server_default="paid"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("production_started_at", Timestamp, nullable=True),
    Column("issued_at", Timestamp, nullable=True),
    Column("valid_until", Date, nullable=True, comment="signatures: issued + 12 months"),
    Column("expiry_notified_at", Timestamp, nullable=True),
    Column("cancelled_at", Timestamp, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("refund_entry_id", IdType, ForeignKey("journal_entries.id"), nullable=True, unique=True),
    Column("refund_amount", BigInteger, nullable=True),
    UniqueConstraint("invoice_line_id", "unit", name="uq_signature_orders_line_unit"),
    CheckConstraint("status IN ('paid', 'in_production', 'issued', 'cancelled')", name="status"),
    CheckConstraint("(status = 'issued') = (issued_at IS NOT NULL)", name="issued_at"),
    Index("ix_signature_orders_invoice", "invoice_id"),
    Index("ix_signature_orders_status", "status", "id"),
    Index("ix_signature_orders_valid_until", "valid_until"),
)

# PostgreSQL: partitioned by month of created_at, primary key (id, created_at) (0013).
events = Table(
    "events",
    metadata,
    Column("id", IdType, primary_key=True, comment="receivers deduplicate by it"),
    Column("type", String(40), nullable=False),
    Column(
        "ordering_key",
        String(64),
        nullable=False,
        comment="events of one key are delivered in id order: customer:ID or inn:INN",
    ),
    Column("customer_id", IdType, nullable=True),
    Column("payload", Text, nullable=False, comment="JSON"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column(
        "sandbox",
        Boolean,
        nullable=False,
        server_default=text("false"),
        comment="emitted by a sandbox agent: delivered only to sandbox endpoints (0016)",
    ),
    # A customer's notifications (the customer's card), from the index alone.
    Index("ix_events_customer", "customer_id", "id", postgresql_include=["type"]),
    # The outbox list filtered to a type (`/events?type=`; migration 0018).
    Index("ix_events_type", "type", "id", postgresql_include=["created_at"]),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column(
        "secret_sealed",
        Text,
        nullable=False,
        comment="base64 HMAC key (Standard Webhooks), sealed with the key file (tolom.secretbox)",
    ),
    Column("event_types", Text, nullable=False, comment="space-separated; * = all"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column(
        "sandbox",
        Boolean,
        nullable=False,
        server_default=text("false"),
        comment="receives the sandbox's events, and only them (0016)",
    ),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", IdType, primary_key=True),
    # PostgreSQL: partitioned by event_created_at (its event's month; migration 0013), the
    # primary key (id, event_created_at), the unique key (event_id, destination,
    # event_created_at) and the foreign key (event_id, event_created_at) → events.
    Column("event_id", IdType, ForeignKey("events.id"), nullable=False),
    Column(
        "event_created_at",
        Timestamp,
        nullable=False,
        comment="its event's created_at: the partition key, with event_id the foreign key",
    ),
    Column(
        "destination",
        String(40),
        nullable=False,
        comment="webhook:ENDPOINT_ID | email | sms: one ordered line per destination and key",
    ),
    Column("endpoint_id", IdType, ForeignKey("webhook_endpoints.id"), nullable=True),
    Column("recipient", String(254), nullable=True, comment="e-mail address or phone"),
    Column("language", String(2), nullable=True),
    Column("ordering_key", String(64), nullable=False),
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp, nullable=False, server_default=NOW),
    Column("lease_until", Timestamp, nullable=True, comment="a worker is delivering it"),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    UniqueConstraint("event_id", "destination", name="uq_deliveries_event_destination"),
    CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
    Index(
        "ix_deliveries_due",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index(
        "ix_deliveries_line",
        "destination",
        "ordering_key",
        "event_id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index("ix_deliveries_status", "status", "id"),
)

users = Table(
    "users",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False, comment="argon2id, encoded"),
    Column("role", String(16), nullable=False),
    Column("language", String(2), nullable=False, server_default="ru"),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", Timestamp, nullable=True, comment="refuse logins until then"),
    Column("password_changed_at", Timestamp, nullable=False, server_default=NOW),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    CheckConstraint("role IN ('admin', 'operator', 'accountant', 'auditor')", name="role"),
    CheckConstraint("language IN ('ru', 'ky', 'en')", name="language"),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True, comment="sha256 hex of the cookie"),
    Column("user_id", IdType, ForeignKey("users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("address", String(64), nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("expires_at", Timestamp, nullable=False),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("scope", String(8), primary_key=True),  # address | username | pair
    Column("username", String(64), primary_key=True, server_default=""),
    Column("address", String(64), primary_key=True, server_default=""),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("window_start", Timestamp, nullable=False),
    Column("last_failure", Timestamp, nullable=False),
    Column("blocked_until", Timestamp, nullable=True, comment="refuse attempts until then"),
    CheckConstraint("scope IN ('address', 'username', 'pair')", name="scope"),
    Index("ix_login_throttle_last_failure", "last_failure"),
)

# PostgreSQL: partitioned by month of received_at, primary key (id, received_at) (0013).
gateway_requests = Table(
    "gateway_requests",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("received_at", Timestamp, nullable=False),
    Column("duration_us", Integer, nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("service", String(16), nullable=True),
    Column("agent_id", IdType, nullable=True),
    Column("peer", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("command", String(16), nullable=True),
    Column("txn_id", String(64), nullable=True),
    Column("params", Text, nullable=False, comment="JSON, secrets removed, values truncated"),
    Column("http_status", Integer, nullable=False),
    Column("result", Integer, nullable=True),
    Column("response", Text, nullable=False),
    Column("payment_id", IdType, nullable=True),
    Index("ix_gateway_requests_agent_txn", "agent_id", "txn_id"),
    Index("ix_gateway_requests_received", "received_at"),
)

receipts = Table(
    "receipts",
    metadata,
    Column(
        "payment_id",
        IdType,
        ForeignKey("payments.id"),
        primary_key=True,
        comment="one receipt per payment, made when it is first asked for",
    ),
    Column(
        "token",
        String(64),
        nullable=False,
        unique=True,
        comment="secrets.token_urlsafe(24): 192 random bits, the public page's address",
    ),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
)

# --- reconciliation with agents (сверка) ----------------------------------------------------

registry_formats = Table(
    "registry_formats",
    metadata,
    Column("agent_id", IdType, ForeignKey("agents.id"), primary_key=True),
    Column("settings", Text, nullable=False, comment="JSON of reconciliation.formats"),
    Column("updated_at", Timestamp, nullable=False, server_default=NOW),
)

registries = Table(
    "registries",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("agent_id", IdType, ForeignKey("agents.id"), nullable=False),
    Column("business_date", Date, nullable=False, comment="the agent's day it lists"),
    Column("sha256", String(64), nullable=False, comment="of the file's bytes"),
    Column("file_name", Text, nullable=False),
    Column("kind", String(8), nullable=False, comment="qiwi | csv | xlsx"),
    Column("line_count", Integer, nullable=False),
    Column("total_amount", BigInteger, nullable=False),
    Column("state", String(16), nullable=False, comment="current | superseded"),
    Column(
        "superseded_by",
        IdType,
        ForeignKey("registries.id"),
        nullable=True,
        comment="the corrected registry that replaced this one",
    ),
    Column("summary", Text, nullable=True, comment="JSON: counts and sums per class"),
    Column("imported_by", String(80), nullable=False),
    Column("imported_at", Timestamp, nullable=False, server_default=NOW),
    CheckConstraint("state IN ('current', 'superseded')", name="state"),
    CheckConstraint("line_count >= 0 AND total_amount >= 0", name="totals"),
    Index(
        "uq_registries_current",
        "agent_id",
        "business_date",
        unique=True,
        postgresql_where=text("state = 'current'"),
        sqlite_where=text("state = 'current'"),
    ),
)

registry_lines = Table(
    "registry_lines",
    metadata,
    # No foreign key: lines are written only by the import, with their registry, in one
    # transaction; a per-row FK check would cost a third of a million-line import.
    Column("registry_id", IdType, primary_key=True),
    Column("line_no", Integer, primary_key=True, comment="the line's number in the file"),
    Column("txn_id", String(64), nullable=False, comment="as payments.txn_id is keyed"),
    Column("occurred_at", Timestamp, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("account", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
)

reconciliation_days = Table(
    "reconciliation_days",
    metadata,
    Column("agent_id", IdType, ForeignKey("agents.id"), primary_key=True),
    Column("business_date", Date, primary_key=True),
    Column("state", String(16), nullable=False, server_default="open", comment="open | closed"),
    Column("closed_by", String(80), nullable=True),
    Column("closed_at", Timestamp, nullable=True),
    CheckConstraint("state IN ('open', 'closed')", name="state"),
    CheckConstraint("state = 'open' OR closed_at IS NOT NULL", name="closed"),
)

discrepancies = Table(
    "discrepancies",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("registry_id", IdType, ForeignKey("registries.id"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("txn_id", String(64), nullable=False),
    Column("line_no", Integer, nullable=True, comment="the registry's line; NULL: ours only"),
    Column("payment_id", IdType, ForeignKey("payments.id"), nullable=True),
    Column("their_account", String(32), nullable=True),
    Column("their_amount", BigInteger, nullable=True),
    Column("our_account", String(32), nullable=True),
    Column("our_amount", BigInteger, nullable=True),
    Column("resolution", String(16), nullable=True, comment="accepted | reversed | explained"),
    Column("reason", Text, nullable=True),
    Column("resolved_by", String(80), nullable=True),
    Column("resolved_at", Timestamp, nullable=True),
    Column("resolution_payment_id", IdType, ForeignKey("payments.id"), nullable=True),
    CheckConstraint(
        "kind IN ('missing_ours', 'missing_theirs', 'amount_mismatch', 'account_mismatch', "
        "'duplicate')",
        name="kind",
    ),
    CheckConstraint(
        "resolution IS NULL OR resolution IN ('accepted', 'reversed', 'explained')",
        name="resolution",
    ),
    CheckConstraint(
        "(resolution IS NULL) = (reason IS NULL) AND (resolution IS NULL) = (resolved_at IS NULL)",
        name="resolved",
    ),
    Index("ix_discrepancies_registry", "registry_id", "id"),
)

applications = Table(
    "applications",
    metadata,
    # An online application for a signature (`/apply`): the customer and the invoice it made,
    # and the office where the applicant's identity is to be verified (the back office's
    # queue reads it). One per invoice: a repeated application gets the same invoice.
    Column("id", IdType, primary_key=True),
    Column("inn", String(14), nullable=False),
    Column(
        "invoice_number", String(16), ForeignKey("invoices.number"), nullable=False, unique=True
    ),
    Column("office", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="new"),
    Column("reason", Text, nullable=True, comment="why it was rejected"),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("address", String(64), nullable=True, comment="the applicant's network address"),
    Column("decided_at", Timestamp, nullable=True, comment="when it was verified or rejected"),
    Column("decided_by", String(80), nullable=True, comment="user:NAME"),
    CheckConstraint("status IN ('new', 'verified', 'rejected')", name="status"),
    Index("ix_applications_address_created_at", "address", "created_at"),
    Index("ix_applications_inn", "inn"),
    Index("ix_applications_status", "status", "id"),
)

cabinet_codes = Table(
    "cabinet_codes",
    metadata,
    # One-time sign-in codes of the customer's cabinet (`tolom.cabinet.access`): a row per
    # request for a code. The browser holds the challenge's token in a cookie; the code is
    # kept only as an HMAC under the installation key, NULL when nothing was sent.
    Column("id", IdType, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("inn", String(14), nullable=False),
    Column("customer_id", IdType, ForeignKey("customers.id"), nullable=True),
    Column("channel", String(8), nullable=False),
    Column("code_hash", String(64), nullable=True, comment="NULL: nothing was sent"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("address", String(64), nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp, nullable=True),
    CheckConstraint("channel IN ('email', 'sms')", name="channel"),
    CheckConstraint("attempts >= 0", name="attempts"),
    Index("ix_cabinet_codes_inn_created_at", "inn", "created_at"),
    Index("ix_cabinet_codes_address_created_at", "address", "created_at"),
)

cabinet_sessions = Table(
    "cabinet_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True, comment="sha256 hex of the cookie"),
    Column("customer_id", IdType, ForeignKey("customers.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("address", String(64), nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("expires_at", Timestamp, nullable=False),
)

# Worker heartbeats and probe results (`tolom.metrics.heartbeats`, migration 0017): what a
# scrape of any server reports about workers that share no metrics directory with it.
worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker", String(200), primary_key=True, comment="host:pid"),
    Column("host", String(190), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("last_loop_at", Timestamp, nullable=True, comment="NULL: not looped yet"),
    Column("beat_at", Timestamp, nullable=False, comment="when this row was written"),
)

probe_results = Table(
    "probe_results",
    metadata,
    Column("gateway", String(16), primary_key=True, comment="osmp | rest"),
    Column("ok", Boolean, nullable=False),
    Column("seconds", Float, nullable=False, comment="the whole path"),
    Column("failed_step", String(32), nullable=True),
    Column("reason", Text, nullable=True),
    Column("run_at", Timestamp, nullable=False),
    Column("worker", String(200), nullable=False, comment="host:pid that ran it"),
)
