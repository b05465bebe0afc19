"""Our payments against an agent's registry for one business day, in SQL.

One statement finds every discrepancy (a full join on txn_id of the registry's lines with
our accepted payments of that agent and day), so a million lines against a million
payments is a hash join in the database, not a loop in Python. Only the discrepancies are
stored; what matched is counted. The classes:

- `missing_ours`: in the registry, not among our accepted payments of the day (pointing at
  our payment when we have it on another day, or reversed);
- `missing_theirs`: ours, not in the registry;
- `amount_mismatch`, `account_mismatch`: both have the txn_id, they differ (amount first);
- `duplicate`: a second (third ...) registry line with a txn_id already listed.

PostgreSQL runs the full join as a hash join inside the import's transaction (MVCC: pays
are not held up). SQLite has neither a hash join nor row locks: its full join of two
subqueries is a nested loop, and any write transaction locks the whole database. On SQLite
the registry is therefore matched from indexed TEMP tables of the import's own connection
(`run_staged`): every line probes `uq_payments_agent_txn`, every payment of the day probes
the staged lines' txn_id index, in a read transaction that takes no write lock at all.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text

from tolom.db.schema import discrepancies, payments

KINDS = ("missing_ours", "missing_theirs", "amount_mismatch", "account_mismatch", "duplicate")

_FIND_SQL = """
    INSERT INTO discrepancies
        (registry_id, kind, txn_id, line_no, payment_id,
         their_account, their_amount, our_account, our_amount)
    SELECT :registry_id,
           CASE
               WHEN t.line_no IS NULL THEN 'missing_theirs'
               WHEN t.n > 1 THEN 'duplicate'
               WHEN o.id IS NULL THEN 'missing_ours'
               WHEN o.amount <> t.amount THEN 'amount_mismatch'
               ELSE 'account_mismatch'
           END,
           COALESCE(t.txn_id, o.txn_id), t.line_no, o.id,
           t.account, t.amount, o.account, o.amount
    FROM (
        SELECT line_no, txn_id, account, amount,
               row_number() OVER (PARTITION BY txn_id COLLATE "C" ORDER BY line_no) AS n
        FROM registry_lines
        WHERE registry_id = :registry_id
    ) AS t
    FULL OUTER JOIN (
        SELECT id, txn_id, account, amount
        FROM payments
        WHERE agent_id = :agent_id AND business_date = :day AND status = 'accepted'
    ) AS o ON o.txn_id = t.txn_id AND t.n = 1
    WHERE t.line_no IS NULL OR o.id IS NULL OR o.amount <> t.amount OR o.account <> t.account
    ORDER BY t.line_no, o.id
"""
# Duplicates are found by sorting the lines by txn_id: bytewise ("C"), which is several
# times faster than the database's language collation and just as exact.
_FIND = text(_FIND_SQL)

# A registry line we miss on this day may be a payment of ours on another day, or reversed:
# the discrepancy points at it (`payment_id`), and the pages say which.
_ELSEWHERE = (
    discrepancies.update()
    .where(
        discrepancies.c.registry_id == bindparam("b_registry_id"),
        discrepancies.c.kind == "missing_ours",
        payments.c.agent_id == bindparam("b_agent_id"),
        payments.c.txn_id == discrepancies.c.txn_id,
    )
    .values(payment_id=payments.c.id)
)


@dataclass(frozen=True, slots=True)
class ClassTotal:
    count: int = 0
    their_amount: int = 0
    our_amount: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts and sums per class, both sides' totals and the net difference (theirs − ours)."""

    their_count: int
    their_amount: int
    our_count: int
    our_amount: int
    matched_count: int
    matched_amount: int
    classes: dict[str, ClassTotal] = field(default_factory=dict)

    @property
    def difference(self) -> int:
        return self.their_amount - self.our_amount

    @property
    def discrepancy_count(self) -> int:
        return sum(total.count for total in self.classes.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["difference"] = self.difference
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        classes = {kind: ClassTotal(**value) for kind, value in data["classes"].items()}
        fields = {k: v for k, v in data.items() if k not in ("classes", "difference")}
        return cls(**fields, classes=classes)


def run(
    conn: Connection,
    *,
    registry_id: int,
    agent_id: int,
    day: date,
    their_count: int,
    their_amount: int,
) -> Summary:
    """Find and store the discrepancies of a freshly stored registry; its summary
    (PostgreSQL: SQLite matches staged lines with `run_staged`)."""
    assert conn.dialect.name == "postgresql", "SQLite matches with run_staged"
    conn.execute(_FIND, {"registry_id": registry_id, "agent_id": agent_id, "day": day})
    conn.execute(_ELSEWHERE, {"b_agent_id": agent_id, "b_registry_id": registry_id})
    ours = conn.execute(
        select(func.count(), func.coalesce(func.sum(payments.c.amount), 0)).where(
            payments.c.agent_id == agent_id,
            payments.c.business_date == day,
            payments.c.status == "accepted",
        )
    ).one()
    classes = {
        row.kind: ClassTotal(int(row.found), int(row.theirs or 0), int(row.ours or 0))
        for row in conn.execute(
            select(
                discrepancies.c.kind,
                func.count().label("found"),
                func.sum(discrepancies.c.their_amount).label("theirs"),
                func.sum(discrepancies.c.our_amount).label("ours"),
            )
            .where(discrepancies.c.registry_id == registry_id)
            .group_by(discrepancies.c.kind)
        )
    }
    # Every registry line is matched or a discrepancy of a class that has a line.
    unmatched_lines = sum(c.count for k, c in classes.items() if k != "missing_theirs")
    unmatched_amount = sum(c.their_amount for k, c in classes.items() if k != "missing_theirs")
    return Summary(
        their_count=their_count,
        their_amount=their_amount,
        our_count=int(ours[0]),
        our_amount=int(ours[1]),
        matched_count=their_count - unmatched_lines,
        matched_amount=their_amount - unmatched_amount,
        classes={kind: classes.get(kind, ClassTotal()) for kind in KINDS},
    )


# --- SQLite: matching staged lines (TEMP tables of one connection) ------------------------

# `repeated`: 1 for a second (third ...) line of a txn_id, worked out while staging. No
# business_date: every line of a registry is on its day (checked before staging).
STAGE_TABLES = (
    """CREATE TEMP TABLE registry_stage (
        seq INTEGER PRIMARY KEY, line_no INTEGER NOT NULL, txn_id TEXT NOT NULL,
        occurred_at TEXT NOT NULL, account TEXT NOT NULL, amount INTEGER NOT NULL,
        repeated INTEGER NOT NULL)""",
    """CREATE TEMP TABLE registry_found (
        seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, txn_id TEXT NOT NULL, line_no INTEGER,
        payment_id INTEGER, their_account TEXT, their_amount INTEGER, our_account TEXT,
        our_amount INTEGER)""",
)
STAGE_INDEX = "CREATE INDEX temp.ix_registry_stage_txn ON registry_stage (txn_id)"
DROP_STAGE = (
    "DROP TABLE IF EXISTS temp.registry_stage",
    "DROP TABLE IF EXISTS temp.registry_found",
)

# Each line looks its txn_id up in uq_payments_agent_txn (one payment at most): a line
# without an accepted payment of the day is missing on our side (pointing at our payment
# of another day, or reversed, when there is one); duplicates carry nothing of ours.
FIND_LINES_SQLITE = """
    INSERT INTO temp.registry_found
        (kind, txn_id, line_no, payment_id, their_account, their_amount, our_account, our_amount)
    SELECT kind, txn_id, line_no,
           CASE WHEN kind = 'duplicate' THEN NULL ELSE payment_id END,
           account, amount,
           CASE WHEN kind IN ('amount_mismatch', 'account_mismatch') THEN our_account END,
           CASE WHEN kind IN ('amount_mismatch', 'account_mismatch') THEN our_amount END
    FROM (
        SELECT CASE
                   WHEN t.repeated THEN 'duplicate'
                   WHEN p.id IS NULL OR p.business_date <> :day OR p.status <> 'accepted'
                       THEN 'missing_ours'
                   WHEN p.amount <> t.amount THEN 'amount_mismatch'
                   WHEN p.account <> t.account THEN 'account_mismatch'
               END AS kind,
               t.seq, t.txn_id, t.line_no, t.account, t.amount,
               p.id AS payment_id, p.account AS our_account, p.amount AS our_amount
        FROM temp.registry_stage AS t
        LEFT JOIN main.payments AS p ON p.agent_id = :agent_id AND p.txn_id = t.txn_id
    )
    WHERE kind IS NOT NULL
    ORDER BY seq
"""
# Each accepted payment of the day (ix_payments_agent_day) looks for a line with its txn_id.
FIND_THEIRS_SQLITE = """
    INSERT INTO temp.registry_found
        (kind, txn_id, line_no, payment_id, their_account, their_amount, our_account, our_amount)
    SELECT 'missing_theirs', p.txn_id, NULL, p.id, NULL, NULL, p.account, p.amount
    FROM main.payments AS p
    WHERE p.agent_id = :agent_id AND p.business_date = :day AND p.status = 'accepted'
      AND NOT EXISTS (SELECT 1 FROM temp.registry_stage AS t WHERE t.txn_id = p.txn_id)
    ORDER BY p.id
"""
_OURS_SQLITE = """
    SELECT count(*), coalesce(sum(amount), 0) FROM main.payments
    WHERE agent_id = :agent_id AND business_date = :day AND status = 'accepted'
"""
_CLASSES_SQLITE = """
    SELECT kind, count(*), coalesce(sum(their_amount), 0), coalesce(sum(our_amount), 0)
    FROM temp.registry_found GROUP BY kind
"""


def run_staged(
    db: sqlite3.Connection,
    *,
    agent_id: int,
    day: date,
    their_count: int,
    their_amount: int,
) -> Summary:
    """Match the lines staged in `temp.registry_stage` (SQLite, the import's own
    connection): the discrepancies go to `temp.registry_found`, in the order PostgreSQL
    stores them (lines by number, then ours by id); the summary.

    One read transaction: our side is one snapshot, and no write lock is taken (the
    INSERTs write only the connection's TEMP database)."""
    params = {"agent_id": agent_id, "day": day.isoformat()}
    db.execute("BEGIN")
    try:
        db.execute("DELETE FROM temp.registry_found")
        db.execute(FIND_LINES_SQLITE, params)
        db.execute(FIND_THEIRS_SQLITE, params)
        our_count, our_amount = db.execute(_OURS_SQLITE, params).fetchone()
        found = {
            str(kind): ClassTotal(int(count), int(theirs), int(ours))
            for kind, count, theirs, ours in db.execute(_CLASSES_SQLITE)
        }
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    unmatched_lines = sum(c.count for k, c in found.items() if k != "missing_theirs")
    unmatched_amount = sum(c.their_amount for k, c in found.items() if k != "missing_theirs")
    return Summary(
        their_count=their_count,
        their_amount=their_amount,
        our_count=int(our_count),
        our_amount=int(our_amount),
        matched_count=their_count - unmatched_lines,
        matched_amount=their_amount - unmatched_amount,
        classes={kind: found.get(kind, ClassTotal()) for kind in KINDS},
    )
