"""Secrets at rest: agents' REST signing keys and webhook secrets are stored sealed.

`agents.signing_key` and `webhook_endpoints.secret` held the HMAC keys in plain text, so a
copy of the database could sign an agent's payments and forge webhooks. They become
`signing_key_sealed` and `secret_sealed`, sealed with the key file outside the database
(`tolom.secretbox`, `TOLOM_SECRET_KEY_FILE`); existing rows are sealed here and the plain
columns dropped. The downgrade opens them back into plain columns.

SQLite keeps `secret_sealed` nullable (its ALTER TABLE cannot add a NOT NULL column, and
rebuilding a referenced table is not worth it); the code always writes it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from tolom import secretbox

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (table, plain column, sealed column, whether NULL is allowed)
_COLUMNS = (
    ("agents", "signing_key", "signing_key_sealed", True),
    ("webhook_endpoints", "secret", "secret_sealed", False),
)
_COMMENTS = {
    "signing_key_sealed": "the REST gateway's hex HMAC key (derived from the secret), sealed "
    "with the key file (tolom.secretbox); NULL: none yet",
    "secret_sealed": "base64 HMAC key (Standard Webhooks), sealed with the key file "
    "(tolom.secretbox)",
    "signing_key": "hex HMAC key for the REST gateway, derived from the secret; NULL: none yet",
    "secret": "base64 HMAC key (Standard Webhooks)",
}


def _move(table: str, source: str, target: str, change: Callable[[str], str]) -> None:
    """Copy every non-NULL `source` into `target` through `change` (seal or open)."""
    bind = op.get_bind()
    t = sa.table(table, sa.column("id"), sa.column(source), sa.column(target))
    rows = bind.execute(sa.select(t.c.id, t.c[source]).where(t.c[source].is_not(None))).all()
    for row_id, value in rows:
        bind.execute(sa.update(t).where(t.c.id == row_id).values({target: change(value)}))


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, plain, sealed, nullable in _COLUMNS:
        op.add_column(table, sa.Column(sealed, sa.Text(), nullable=True, comment=_COMMENTS[sealed]))
        # The key is needed only when there is something to seal: a new database has none.
        _move(table, plain, sealed, lambda v: secretbox.for_connection(op.get_bind()).seal(v))
        op.drop_column(table, plain)
        if postgresql and not nullable:
            op.alter_column(table, sealed, nullable=False)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, plain, sealed, nullable in _COLUMNS:
        op.add_column(
            table, sa.Column(plain, sa.String(64), nullable=True, comment=_COMMENTS[plain])
        )
        _move(table, sealed, plain, lambda v: secretbox.for_connection(op.get_bind()).open(v))
        op.drop_column(table, sealed)
        if postgresql and not nullable:
            op.alter_column(table, plain, nullable=False)
