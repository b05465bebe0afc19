"""Monthly partitions for the request log and the outbox (issue 16, growth).

PostgreSQL: `gateway_requests` is partitioned by `received_at`, `events` by `created_at`
and `deliveries` by its event's month: `deliveries` gains `event_created_at` and a
composite foreign key (event_id, event_created_at) → events (id, created_at), so an event
and its deliveries live in the same month and leave together. A partitioned table's
unique keys hold the partition key: the primary keys become (id, <key>) and the
deliveries' one line per event and destination becomes (event_id, destination,
event_created_at). Existing rows are copied into month partitions (from the oldest month
present to three months ahead) plus a DEFAULT partition each; sequences, indexes, the
events' append-only trigger and the column comments carry over. `tolom_emit` passes the
event's created_at to its deliveries.

SQLite: nothing is partitioned; `deliveries` only gains `event_created_at`.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op
from sqlalchemy import text

from tolom.db.partitions import MONTHS_AHEAD, Month, create_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# table → (partition key, primary key, the rest of its keys and indexes)
KEYS = {
    "gateway_requests": (
        "received_at",
        "id, received_at",
        [
            "CREATE INDEX ix_gateway_requests_agent_txn ON gateway_requests (agent_id, txn_id)",
            "CREATE INDEX ix_gateway_requests_received ON gateway_requests (received_at)",
        ],
    ),
    "events": (
        "created_at",
        "id, created_at",
        [
            "CREATE INDEX ix_events_customer ON events (customer_id, id) INCLUDE (type)",
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events"
            " FOR EACH ROW EXECUTE FUNCTION tolom_ledger_append_only()",
        ],
    ),
    "deliveries": (
        "event_created_at",
        "id, event_created_at",
        [
            "ALTER TABLE deliveries ADD CONSTRAINT uq_deliveries_event_destination"
            " UNIQUE (event_id, destination, event_created_at)",
            "ALTER TABLE deliveries ADD CONSTRAINT fk_deliveries_event_id_events"
            " FOREIGN KEY (event_id, event_created_at) REFERENCES events (id, created_at)",
            "ALTER TABLE deliveries ADD CONSTRAINT fk_deliveries_endpoint_id_webhook_endpoints"
            " FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id)",
            "CREATE INDEX ix_deliveries_due ON deliveries (next_attempt_at, id)"
            " WHERE status = 'pending'",
            "CREATE INDEX ix_deliveries_line ON deliveries (destination, ordering_key, event_id)"
            " WHERE status = 'pending'",
            "CREATE INDEX ix_deliveries_status ON deliveries (status, id)",
        ],
    ),
}

# The same keys and indexes on plain tables (the downgrade).
PLAIN = {
    "gateway_requests": KEYS["gateway_requests"][2],
    "events": KEYS["events"][2],
    "deliveries": [
        "ALTER TABLE deliveries ADD CONSTRAINT uq_deliveries_event_destination"
        " UNIQUE (event_id, destination)",
        "ALTER TABLE deliveries ADD CONSTRAINT fk_deliveries_event_id_events"
        " FOREIGN KEY (event_id) REFERENCES events (id)",
        *KEYS["deliveries"][2][2:],
    ],
}

EMIT = """
CREATE OR REPLACE FUNCTION tolom_emit(
    p_type text, p_key text, p_customer bigint, p_payload text, p_notify boolean
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_event bigint;
    v_created timestamptz;
BEGIN
    INSERT INTO events (type, ordering_key, customer_id, payload)
    VALUES (p_type, p_key, p_customer, p_payload)
    RETURNING id, created_at INTO v_event, v_created;
    INSERT INTO deliveries (event_id, event_created_at, ordering_key, destination, endpoint_id,
                            recipient, language)
    SELECT v_event, v_created, p_key, 'webhook:' || w.id, w.id, NULL, NULL
      FROM webhook_endpoints w
     WHERE w.enabled
       AND (w.event_types = '*' OR (' ' || w.event_types || ' ') LIKE ('% ' || p_type || ' %'))
    UNION ALL
    SELECT v_event, v_created, p_key, 'email', NULL, c.email, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.email IS NOT NULL
    UNION ALL
    SELECT v_event, v_created, p_key, 'sms', NULL, c.phone, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.phone IS NOT NULL;
    RETURN v_event;
END $$
"""

EMIT_0008 = """
CREATE OR REPLACE FUNCTION tolom_emit(
    p_type text, p_key text, p_customer bigint, p_payload text, p_notify boolean
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_event bigint;
BEGIN
    INSERT INTO events (type, ordering_key, customer_id, payload)
    VALUES (p_type, p_key, p_customer, p_payload)
    RETURNING id INTO v_event;
    INSERT INTO deliveries (event_id, ordering_key, destination, endpoint_id, recipient, language)
    SELECT v_event, p_key, 'webhook:' || w.id, w.id, NULL, NULL
      FROM webhook_endpoints w
     WHERE w.enabled
       AND (w.event_types = '*' OR (' ' || w.event_types || ' ') LIKE ('% ' || p_type || ' %'))
    UNION ALL
    SELECT v_event, p_key, 'email', NULL, c.email, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.email IS NOT NULL
    UNION ALL
    SELECT v_event, p_key, 'sms', NULL, c.phone, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.phone IS NOT NULL;
    RETURN v_event;
END $$
"""


def _set_aside(table: str) -> str:
    """Rename `table` and its indexes out of the way; the new name."""
    old = f"{table}_before_0013"
    bind = op.get_bind()
    indexes = bind.execute(
        text(
            "SELECT indexname FROM pg_indexes WHERE tablename = :t AND schemaname = current_schema()"
        ),
        {"t": table},
    ).scalars()
    for index in list(indexes):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_before_0013")
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    return old


def _months(old: str, key: str) -> list[Month]:
    oldest = op.get_bind().execute(text(f"SELECT min({key}) FROM {old}")).scalar()  # noqa: S608
    now = Month.of(datetime.now(UTC))
    month = min(Month.of(oldest), now) if oldest is not None else now
    months = []
    while month <= now.plus(MONTHS_AHEAD):
        months.append(month)
        month = month.plus(1)
    return months


def _postgres_upgrade() -> None:
    op.execute("ALTER TABLE deliveries ADD COLUMN event_created_at timestamptz")
    op.execute(
        "UPDATE deliveries d SET event_created_at = e.created_at FROM events e WHERE e.id = d.event_id"
    )
    op.execute("ALTER TABLE deliveries ALTER COLUMN event_created_at SET NOT NULL")
    old = {table: _set_aside(table) for table in KEYS}
    for table, (key, primary, rest) in KEYS.items():
        op.execute(
            f"CREATE TABLE {table} (LIKE {old[table]} INCLUDING DEFAULTS INCLUDING COMMENTS"
            f" INCLUDING CONSTRAINTS) PARTITION BY RANGE ({key})"
        )
        op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({primary})")
        for month in _months(old[table], key) if table != "deliveries" else []:
            op.execute(create_sql(table, month))
        if table == "deliveries":  # its event's months
            for month in _months(old["events"], "created_at"):
                op.execute(create_sql(table, month))
        op.execute(create_sql(table, None))
        for statement in rest:
            op.execute(statement)
    op.execute(
        "COMMENT ON COLUMN deliveries.event_created_at IS"
        " 'its event''s created_at: the partition key, with event_id the foreign key'"
    )
    for table in KEYS:
        op.execute(f"INSERT INTO {table} SELECT * FROM {old[table]}")  # noqa: S608
    for table in reversed(KEYS):  # deliveries, events, gateway_requests
        op.execute(f"DROP TABLE {old[table]}")
    op.execute(EMIT)


def _postgres_downgrade() -> None:
    op.execute(EMIT_0008)
    old = {table: _set_aside(table) for table in KEYS}
    for table in KEYS:
        op.execute(
            f"CREATE TABLE {table} (LIKE {old[table]} INCLUDING DEFAULTS INCLUDING COMMENTS"
            " INCLUDING CONSTRAINTS)"
        )
        op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id)")
        op.execute(f"INSERT INTO {table} SELECT * FROM {old[table]}")  # noqa: S608
    for table in KEYS:
        for statement in PLAIN[table]:
            op.execute(statement)
    for table in reversed(KEYS):
        op.execute(f"DROP TABLE {old[table]}")
    op.execute("ALTER TABLE deliveries DROP COLUMN event_created_at")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_upgrade()
        return
    # SQLite: the column only (NOT NULL needs a default to be added; the code always sets it).
    op.execute(
        "ALTER TABLE deliveries ADD COLUMN event_created_at DATETIME NOT NULL"
        " DEFAULT '1970-01-01 00:00:00'"
    )
    op.execute(
        "UPDATE deliveries SET event_created_at ="
        " (SELECT created_at FROM events WHERE events.id = deliveries.event_id)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_downgrade()
        return
    op.execute("ALTER TABLE deliveries DROP COLUMN event_created_at")
