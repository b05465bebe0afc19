"""How fast is every back-office page with millions of payments in PostgreSQL?

Targets: every page answers in under 300 ms of server time with 1 000 000 payments
(issue 5), and every list page with 10 000 000 (issue 16: `--payments 10000000
--customers 200000 --schema bench_pages_10m`, about 30 minutes to generate on 2 vCPUs).
Each size lives in a schema of its own (--schema), so both can be kept and re-timed with
--reuse. This bench shows whether the targets are met, on generated data:

1. Generation (skipped with --reuse when the schema already holds data of the same size):
   a PostgreSQL schema of its own (default `bench_pages` in the `test` database) is
   dropped, created and migrated (`tolom.db.migrate`), seeded like `tolom db upgrade`
   (`tolom.installation.prepare`), and given its agents and back-office users through the
   application's own code. Everything else is written by a few set-based statements
   (`INSERT … SELECT … FROM generate_series`), not row by row, shaped as the application
   writes it: customers with their ledger accounts and balance rows, payments spread over
   --days business days (Asia/Bishkek) with their journal entries and postings, cash-desk
   and bank payments with their details, reversals, invoices with lines and signature
   orders, report charges, events with their e-mail/SMS/webhook deliveries, the request log
   of the last 60 days (both in monthly partitions, migration 0013), receipts, online
   applications and about a million audit lines. Ids follow time as the
   application's would (a later payment, entry, posting, event or audit line has a larger
   id), so statements, keyset pages and "newest first" lists see what production would.
   Every account's balance rows hold exactly the sum of its postings, and no customer's
   running balance ever goes below zero (a charge only follows a payment that covers it; a
   reversed payment is never charged against). `tolom.ledger.verify.verify_ledger` is run
   after generation (--no-verify skips it). The pseudo-random choices come from
   `hashint8`, so a given size always generates the same data.
2. Timing: the real application (`tolom.app.create_app`, production settings but the
   bench's database) runs in this process and is called through `httpx.ASGITransport`.
   The clock runs around the ASGI call only (request in, last body byte out: routing,
   session check, queries, template, streaming), so it is server time without the network
   or the client. A user of each role is logged in through the real login form. Every GET
   route of the back-office router must have at least one sample URL here (ids picked from
   the generated data, realistic filters); a route without one stops the bench with its
   name. Each sample is requested once to warm up, then --repeat times; p50, p95 and max
   are printed per sample, with the status and the size of the answer.
3. --explain prints EXPLAIN (ANALYZE, BUFFERS) of the statements a slow sample ran
   (captured with a SQLAlchemy event during one extra request), so the slow query can be
   named.

This is a benchmark, not a test: it prints figures and how they were obtained. It exits 1
if it cannot run, if the ledger does not verify, if a sample does not answer with its
expected status, or if a GET route has no sample; never because of speed (the
"over 300 ms" column says which pages miss the target).

Usage:  .venv/bin/python bench/backoffice_pages.py [--reuse] [--payments 1000000]
        [--customers 20000] [--schema bench_pages] [--repeat 20] [--only /payments]
        [--explain] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from sqlalchemy import Engine, event, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tolom import installation, secretbox  # noqa: E402
from tolom.agents import service as agent_service  # noqa: E402
from tolom.backoffice import users  # noqa: E402
from tolom.db import migrate, partitions  # noqa: E402
from tolom.db.engine import make_engine  # noqa: E402
from tolom.db.schema import accounts, agents  # noqa: E402
from tolom.ledger.verify import verify_ledger  # noqa: E402
from tolom.settings import Settings  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_SCHEMA = "bench_pages"
ZONE = ZoneInfo("Asia/Bishkek")
TARGET_MS = 300.0
PASSWORD = "bench-password-123"
ROLES = ("admin", "operator", "accountant", "auditor")
# The gateway agents: (code, name, protocol their requests are logged under).
GATEWAYS = (
    ("optima", "Оптима Банк", "osmp"),
    ("mbank", "МБанк", "rest"),
    ("megapay", "MegaPay", "osmp"),
    ("elsom", "Элсом", "osmp"),
    ("balance", "Balance.kg", "rest"),
)
COMPANY_WORDS = (
    "Ала-Тоо",
    "Ак-Жол",
    "Бакай",
    "Берекет",
    "Нур",
    "Манас",
    "Тенир",
    "Сапат",
    "Кут",
    "Ысык-Көл",
    "Эмгек",
    "Достук",
    "Жаштык",
    "Ордо",
    "Сайма",
    "Тулпар",
)
SURNAMES = ("Асанов", "Токтогулова", "Исаков", "Мамбетова", "Жумабеков", "Осмонова", "Султанов")


# --- generation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    payments: int = 1_000_000
    customers: int = 20_000
    days: int = 400

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def scoped_url(database_url: str, schema: str) -> str:
    """The SQLAlchemy URL whose connections use `schema` (as the test fixtures do)."""
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def plain_url(database_url: str) -> str:
    """The same server and database as a libpq URL for psycopg."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def _schema_name(schema: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise SystemExit(f"--schema: {schema!r} is not a plain lower-case identifier")
    return schema


def stored_size(database_url: str, schema: str) -> dict[str, Any] | None:
    """The size recorded by the last complete generation in `schema` (its comment)."""
    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
    if row is None or not row[0]:
        return None
    try:
        found: dict[str, Any] = json.loads(row[0])
    except ValueError:
        return None
    return found


def _sql_list(values: Sequence[str]) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"ARRAY[{quoted}]"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _prepare_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")


def _app_setup(engine: Engine, started: datetime) -> None:
    """What the application itself makes: seed data, agents, the back-office users."""
    migrate.upgrade(engine)
    with engine.begin() as conn:
        installation.prepare(conn)
        for code, name, _protocol in GATEWAYS:
            agent_service.create(
                conn,
                code=code,
                name=name,
                networks=["*"],
                service_codes=["sochi", "eds"],
            )
        for role in ROLES:
            users.create(
                conn,
                username=f"bench-{role}",
                display_name=f"Бенч {role}",
                role=role,
                password=PASSWORD,
            )
        # Everything "existed" before the first generated day.
        long_ago = started - timedelta(days=800)
        for table in ("agents", "accounts", "users"):
            conn.execute(text(f"UPDATE {table} SET created_at = :at"), {"at": long_ago})
        conn.execute(text("UPDATE users SET password_changed_at = :at"), {"at": long_ago})
        # The monthly partitions of the request log and the outbox (migration 0013) for
        # every generated month, as `tolom` would have made them month by month.
        month = partitions.Month.of(started)
        while month <= partitions.Month.of(datetime.now(UTC)):
            partitions.ensure(conn, now=month.start(), ahead=0)
            month = month.plus(1)


def u(expression: str, salt: int) -> str:
    """SQL for a pseudo-random number in [0, 1) drawn from an integer expression and a salt:
    the same every time (`hashint8`), and inline (no function call per row)."""
    return f"((hashint8(({expression})::bigint * 64 + {salt})::bigint + 2147483648) / 4294967296.0)"


def _statements(size: Size, now: datetime, ids: dict[str, Any]) -> list[tuple[str, str]]:
    """The generation as (what, SQL) steps; each runs in one transaction with the others."""
    today = now.astimezone(ZONE).date()
    first_day = today - timedelta(days=size.days - 1)
    n, c, days = size.payments, size.customers, size.days
    paying = max(1, c * 95 // 100)  # the newest 5% of customers have not paid yet
    now_sql = f"{_literal(now.isoformat())}::timestamptz"
    agents_values = ",\n".join(
        f"({idx}, {a['id']}, {_literal(a['code'])}, {_literal(a['name'])}, "
        f"{_literal(a['kind'])}, {a['account']}, {a['slots']}, {_literal(a['protocol'])})"
        for idx, a in enumerate(ids["agents"], start=1)
    )
    webhook_at = f"({now_sql} - interval '30 days')"
    return [
        (
            "helpers",
            f"""
            CREATE FUNCTION pg_temp.luhn(body text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
              SELECT ((10 - sum(CASE WHEN j % 2 = 1
                                     THEN CASE WHEN d * 2 > 9 THEN d * 2 - 9 ELSE d * 2 END
                                     ELSE d END) % 10) % 10)::text
              FROM (SELECT j, substr(body, j, 1)::int AS d
                    FROM generate_series(1, 15) AS j) AS digits
            $$;
            CREATE TEMP TABLE g_agent (idx int, id bigint, code text, name text, kind text,
                                       account bigint, slots int, protocol text);
            INSERT INTO g_agent VALUES {agents_values};
            CREATE TEMP TABLE g_product AS
              SELECT row_number() OVER (ORDER BY code)::int AS idx, code, name, kind, price
              FROM products WHERE price IS NOT NULL AND active AND kind = 'signature';
            CREATE TEMP TABLE g_tariff AS
              SELECT row_number() OVER (ORDER BY code)::int AS idx, *
              FROM tariffs WHERE active;
            """,
        ),
        (
            "customers",
            f"""
            CREATE TEMP TABLE g_customer AS
            SELECT k AS id, {ids["account_base"]} + k AS account_id,
                   CASE WHEN k % 5 = 0 THEN 'ИП' WHEN k % 17 = 0 THEN 'ОАО' ELSE 'ОсОО' END
                     AS legal_form,
                   (CASE WHEN k % 5 = 0 THEN '1' ELSE '2' END)
                     || lpad(((k::bigint * 48271) % 10000000000000)::text, 13, '0') AS inn,
                   CASE WHEN k % 5 = 0
                        THEN 'ИП ' || ({_sql_list(SURNAMES)})[1 + k % {len(SURNAMES)}]
                             || ' ' || chr(1040 + (k % 28)) || '.'
                        ELSE CASE WHEN k % 17 = 0 THEN 'ОАО' ELSE 'ОсОО' END || ' «'
                             || ({_sql_list(COMPANY_WORDS)})[1 + k % {len(COMPANY_WORDS)}]
                             || ' ' || ({_sql_list(COMPANY_WORDS)})[1 + (k / 16) % 16]
                             || ' ' || k || '»'
                   END AS name,
                   CASE WHEN k % 10 = 0 THEN 'buh' || k || '@example.kg' END AS email,
                   CASE WHEN k % 20 = 0 THEN '+996555' || lpad((k % 1000000)::text, 6, '0')
                   END AS phone,
                   CASE WHEN k % 3 = 0 THEN 'ky' ELSE 'ru' END AS language,
                   CASE WHEN k > {paying} AND k % 97 = 0 THEN 'blocked' ELSE 'active' END
                     AS status,
                   CASE WHEN k <= {paying}
                        THEN {_literal(first_day.isoformat())}::timestamp AT TIME ZONE
                             'Asia/Bishkek' - make_interval(days => 1 + (k * 7) % 700)
                        ELSE {now_sql} - make_interval(mins => 30 + ((k * 7919) % 43000))
                   END AS created_at
            FROM generate_series(1, {c}) AS k;
            INSERT INTO accounts (id, code, kind, name, slots, may_go_negative, created_at)
              SELECT account_id, 'customer:' || inn, 'customer', name, 1, false, created_at
              FROM g_customer ORDER BY id;
            INSERT INTO account_balances (account_id, slot, balance, may_go_negative)
              SELECT account_id, 0, 0, false FROM g_customer ORDER BY id;
            INSERT INTO customers (id, inn, name, legal_form, status, account_id, created_at,
                                   email, phone, language)
              SELECT id, inn, name, legal_form, status, account_id, created_at, email, phone,
                     language
              FROM g_customer ORDER BY id;
            """,
        ),
        (
            "payments (drawn)",
            f"""
            CREATE TEMP TABLE g_draw AS
            WITH base AS (
              SELECT i,
                     least({days - 1}, floor({days} * power({u("i", 1)}, 0.75)))::int
                       AS day_no,
                     {u("i", 2)} AS u_time, {u("i", 3)} AS u_agent,
                     {u("i", 4)} AS u_service, {u("i", 5)} AS u_customer,
                     {u("i", 6)} AS u_amount, {u("i", 7)} AS u_reverse,
                     {u("i", 8)} AS u_charge, {u("i", 9)} AS u_x,
                     {u("i", 10)} AS u_receipt
              FROM generate_series(1, {n}) AS i
            ), timed AS (
              SELECT *,
                     (({_literal(first_day.isoformat())}::date + day_no)::timestamp
                       + make_interval(secs => 28800 + u_time * 43200))
                       AT TIME ZONE 'Asia/Bishkek' AS planned
              FROM base
            )
            SELECT i, u_time, u_agent, u_service, u_customer, u_amount, u_reverse, u_charge,
                   u_x, u_receipt,
                   CASE WHEN planned < {now_sql} - interval '1 minute' THEN planned
                        ELSE ({_literal(today.isoformat())}::timestamp AT TIME ZONE
                              'Asia/Bishkek')
                             + (({now_sql} - interval '1 minute')
                                - ({_literal(today.isoformat())}::timestamp AT TIME ZONE
                                   'Asia/Bishkek')) * u_time
                   END AS ts
            FROM timed;
            """,
        ),
        (
            "payments (shaped)",
            f"""
            CREATE TEMP TABLE g_draft AS
            WITH shaped AS (
              SELECT d.*,
                     CASE WHEN u_agent < 0.30 THEN 1 WHEN u_agent < 0.52 THEN 2
                          WHEN u_agent < 0.70 THEN 3 WHEN u_agent < 0.82 THEN 4
                          WHEN u_agent < 0.90 THEN 5 WHEN u_agent < 0.97 THEN 6 ELSE 7
                     END AS agent_idx,
                     u_service < 0.08 AS eds,
                     1 + least({paying - 1}, floor({paying} * u_customer * u_customer))::int
                       AS customer_idx,
                     1 + least((SELECT count(*) - 1 FROM g_product),
                               floor(u_x * (SELECT count(*) FROM g_product)))::int
                       AS product_idx,
                     1 + (u_amount < 0.1)::int + (u_amount < 0.02)::int AS quantity
              FROM g_draw d
            )
            SELECT row_number() OVER (ORDER BY s.ts, s.i) AS id, s.*,
                   NOT s.eds AND s.u_reverse < 0.003 AND s.ts < {now_sql} - interval '1 day'
                     AS reversed,
                   a.id AS agent_id, a.code AS agent_code, a.name AS agent_name,
                   a.kind AS agent_kind, a.account AS clearing_id, a.slots AS clearing_slots,
                   a.protocol, c.inn, c.account_id AS customer_account,
                   CASE WHEN s.eds THEN pr.price * s.quantity
                        ELSE (ARRAY[10000, 20000, 30000, 50000, 100000, 150000, 200000,
                                    300000, 500000, 1000000])[1 + floor(s.u_amount * 10)::int]
                             * CASE WHEN a.kind = 'bank' THEN 10 ELSE 1 END
                   END AS amount
            FROM shaped s
            JOIN g_agent a ON a.idx = s.agent_idx
            JOIN g_customer c ON c.id = s.customer_idx
            JOIN g_product pr ON pr.idx = s.product_idx;
            ANALYZE g_draft;
            """,
        ),
        (
            "invoices",
            f"""
            CREATE TEMP TABLE g_invoice_src AS
              SELECT 'paid' AS state, p.id AS payment_id, p.ts AS paid_at,
                     p.ts - make_interval(secs => p.u_x * 259200) AS created_at,
                     p.product_idx, p.quantity, p.customer_idx, p.u_amount AS u_who
              FROM g_draft p WHERE p.eds
              UNION ALL
              SELECT CASE WHEN j % 4 = 0 THEN 'cancelled' ELSE 'open' END, NULL, NULL,
                     {now_sql} - make_interval(secs => {u("j", 20)} * {days} * 86400.0),
                     1 + (j % (SELECT count(*) FROM g_product))::int, 1 + (j % 7 = 0)::int,
                     1 + ((j * 7919) % {paying}), {u("j", 21)}
              FROM generate_series(1, greatest(1, {n} / 80)) AS j;
            CREATE TEMP TABLE g_invoice AS
              SELECT row_number() OVER (ORDER BY s.created_at, s.payment_id) AS id, s.*,
                     pr.code AS product_code, pr.name AS product_name,
                     pr.price AS unit_price,
                     CASE WHEN s.u_who < 0.8 THEN c.inn END AS inn,
                     CASE WHEN s.u_who < 0.8 THEN c.name
                          ELSE ({_sql_list(SURNAMES)})[1 + (s.customer_idx % 7)] || ' '
                               || chr(1040 + (s.customer_idx % 28)) || '.' END AS payer_name
              FROM g_invoice_src s
              JOIN g_product pr ON pr.idx = s.product_idx
              JOIN g_customer c ON c.id = s.customer_idx;
            ALTER TABLE g_invoice ADD COLUMN number text;
            UPDATE g_invoice SET number = b || pg_temp.luhn(b)
              FROM (SELECT id AS bid, (1 + id % 9)::text
                           || lpad(((id * 48271) % 100000000000000)::text, 14, '0') AS b
                    FROM g_invoice) AS bodies
              WHERE bodies.bid = g_invoice.id;
            CREATE INDEX ON g_invoice (payment_id);
            ANALYZE g_invoice;
            INSERT INTO invoices (id, number, inn, payer_name, total, status, expires_at,
                                  created_at, paid_at, cancelled_at, payment_id)
              SELECT id, number, inn, payer_name, unit_price * quantity, state,
                     created_at + interval '{30} days', created_at, paid_at,
                     CASE WHEN state = 'cancelled'
                          THEN created_at + make_interval(secs => 3600 + u_who * 86400) END,
                     payment_id
              FROM g_invoice ORDER BY id;
            INSERT INTO invoice_lines (id, invoice_id, product_code, name, quantity,
                                       unit_price, amount)
              SELECT id, id, product_code, product_name, quantity, unit_price,
                     unit_price * quantity
              FROM g_invoice ORDER BY id;
            """,
        ),
        (
            "charges",
            f"""
            CREATE TEMP TABLE g_charge_src AS
              SELECT p.id AS payment_id, c.id AS customer_id, c.account_id, c.inn,
                     c.name AS customer_name,
                     p.ts + interval '1 day' + make_interval(secs => p.u_x * 21600)
                       AS created_at,
                     'charged' AS status,
                     1 + least((SELECT count(*) - 1 FROM g_tariff),
                               floor(p.u_x * (SELECT count(*) FROM g_tariff)))::int
                       AS tariff_idx
              FROM g_draft p JOIN g_customer c ON c.id = p.customer_idx
              WHERE NOT p.eds AND NOT p.reversed AND p.u_charge < 0.05 AND p.amount >= 30000
                AND p.ts < {now_sql} - interval '2 days'
              UNION ALL
              SELECT NULL, c.id, c.account_id, c.inn, c.name,
                     c.created_at + interval '10 minutes',
                     CASE WHEN c.id % 80 = 0 THEN 'cancelled' ELSE 'awaiting_payment' END,
                     1 + (c.id % (SELECT count(*) FROM g_tariff))::int
              FROM g_customer c WHERE c.id > {paying} AND c.id % 40 = 0;
            CREATE TEMP TABLE g_charge_draft AS
              SELECT row_number() OVER (ORDER BY s.created_at, s.customer_id) AS id, s.*,
                     t.code AS tariff_code, t.state_body, t.form, t.price AS amount,
                     CASE WHEN t.period = 'month'
                          THEN to_char(s.created_at AT TIME ZONE 'Asia/Bishkek'
                                       - interval '1 month', 'YYYY-MM')
                          ELSE to_char(s.created_at AT TIME ZONE 'Asia/Bishkek', 'YYYY')
                     END AS period
              FROM g_charge_src s JOIN g_tariff t ON t.idx = s.tariff_idx;
            ANALYZE g_charge_draft;
            """,
        ),
        (
            "journal entries and postings",
            f"""
            CREATE TEMP TABLE g_op AS
              SELECT p.ts AS at, 0 AS ord, p.id AS ref, 'payment' AS kind,
                     p.clearing_id AS debit,
                     CASE WHEN p.eds THEN {ids["revenue_eds"]} ELSE p.customer_account END
                       AS credit,
                     p.amount, p.id AS slot_key
              FROM g_draft p
              UNION ALL
              SELECT p.ts + interval '2 hours', 1, p.id, 'reversal', p.customer_account,
                     p.clearing_id, p.amount, p.id
              FROM g_draft p WHERE p.reversed
              UNION ALL
              SELECT ch.created_at, 2, ch.id, 'charge', ch.account_id, {ids["revenue_sochi"]},
                     ch.amount, ch.id
              FROM g_charge_draft ch WHERE ch.status = 'charged';
            CREATE TEMP TABLE g_entry AS
              SELECT row_number() OVER (ORDER BY at, ord, ref) AS id, * FROM g_op;
            ANALYZE g_entry;
            CREATE TEMP TABLE g_pay AS
              SELECT p.*, e.id AS entry_id, r.id AS reversal_entry_id, i.id AS invoice_id,
                     i.number,
                     CASE WHEN p.eds THEN i.number ELSE p.inn END AS account,
                     CASE p.agent_kind
                       WHEN 'gateway' THEN (10000000000 + p.id)::text
                       WHEN 'cash_desk' THEN 'PKO-' || p.id
                       ELSE 'PP-' || p.id END AS txn_id,
                     ch.id IS NOT NULL AS charged
              FROM g_draft p
              JOIN g_entry e ON e.kind = 'payment' AND e.ref = p.id
              LEFT JOIN g_entry r ON r.kind = 'reversal' AND r.ref = p.id
              LEFT JOIN g_invoice i ON i.payment_id = p.id
              LEFT JOIN g_charge_draft ch ON ch.payment_id = p.id;
            ALTER TABLE g_pay ADD PRIMARY KEY (id);
            ANALYZE g_pay;
            CREATE TEMP TABLE g_charge AS
              SELECT ch.*, e.id AS entry_id FROM g_charge_draft ch
              LEFT JOIN g_entry e ON e.kind = 'charge' AND e.ref = ch.id;
            ANALYZE g_charge;
            INSERT INTO journal_entries (id, kind, description, created_at)
              SELECT e.id, e.kind,
                     CASE e.kind
                       WHEN 'payment' THEN
                         CASE WHEN p.eds THEN 'Оплата счёта ' ELSE 'Пополнение баланса СОЧИ, ИНН '
                         END || p.account || CASE WHEN p.agent_kind = 'gateway'
                           THEN '; агент ' || p.agent_code || ', txn_id ' || p.txn_id
                           ELSE '; ' || p.agent_name || ', документ ' || p.txn_id END
                       WHEN 'reversal' THEN
                         'Отмена платежа №' || p.id || ' (' || p.account || '): '
                         || 'ошибка оператора агента'
                       ELSE 'Списание №' || e.ref || ': отчёт СОЧИ'
                     END,
                     e.at
              FROM g_entry e LEFT JOIN g_pay p ON p.id = e.ref AND e.kind <> 'charge'
              ORDER BY e.id;
            INSERT INTO postings (id, entry_id, debit_account_id, credit_account_id, amount)
              SELECT id, id, debit, credit, amount FROM g_entry ORDER BY id;
            """,
        ),
        (
            "payments",
            """
            INSERT INTO payments (id, agent_id, txn_id, service, account, amount, status,
                                  customer_id, invoice_id, entry_id, txn_date_raw, txn_date,
                                  business_date, created_at)
              SELECT p.id, p.agent_id, p.txn_id, CASE WHEN p.eds THEN 'eds' ELSE 'sochi' END,
                     p.account, p.amount,
                     CASE WHEN p.reversed THEN 'reversed' ELSE 'accepted' END,
                     CASE WHEN p.eds THEN NULL ELSE p.customer_idx END, p.invoice_id,
                     p.entry_id,
                     CASE WHEN p.agent_kind = 'gateway'
                          THEN to_char((p.ts - interval '2 seconds') AT TIME ZONE
                                       'Asia/Bishkek', 'YYYYMMDDHH24MISS')
                          ELSE to_char((p.ts - interval '20 minutes') AT TIME ZONE
                                       'Asia/Bishkek', 'YYYY-MM-DD"T"HH24:MI:SS"+06:00"')
                     END,
                     p.ts - CASE WHEN p.agent_kind = 'gateway' THEN interval '2 seconds'
                                 ELSE interval '20 minutes' END,
                     ((p.ts - CASE WHEN p.agent_kind = 'gateway' THEN interval '2 seconds'
                                   ELSE interval '20 minutes' END)
                       AT TIME ZONE 'Asia/Bishkek')::date,
                     p.ts
              FROM g_pay p ORDER BY p.id;
            INSERT INTO manual_payments (payment_id, channel, payment_code, bank_reference,
                                         payer, note, recorded_by)
              SELECT p.id, p.agent_kind,
                     CASE WHEN p.agent_kind = 'bank'
                          THEN CASE WHEN p.eds THEN '42122900' ELSE '42151410' END END,
                     CASE WHEN p.agent_kind = 'bank' THEN 'ПП-' || (p.id % 100000) END,
                     c.name, NULL, 'user:bench-operator'
              FROM g_pay p JOIN g_customer c ON c.id = p.customer_idx
              WHERE p.agent_kind <> 'gateway' ORDER BY p.id;
            INSERT INTO payment_reversals (id, payment_id, entry_id, reason, requested_by,
                                           created_at)
              SELECT row_number() OVER (ORDER BY p.reversal_entry_id), p.id,
                     p.reversal_entry_id, 'ошибка оператора агента',
                     CASE WHEN p.agent_kind = 'gateway' AND p.u_x < 0.5
                          THEN 'agent:' || p.agent_code ELSE 'user:bench-accountant' END,
                     p.ts + interval '2 hours'
              FROM g_pay p WHERE p.reversed ORDER BY p.reversal_entry_id;
            """,
        ),
        (
            "orders",
            f"""
            INSERT INTO signature_orders (id, invoice_id, invoice_line_id, unit, payment_id,
                                          product_code, kind, name, price, inn, status,
                                          created_at, production_started_at, issued_at,
                                          valid_until)
              SELECT row_number() OVER (ORDER BY p.id, unit), i.id, i.id, unit, p.id,
                     i.product_code, 'signature', i.product_name, i.unit_price, i.inn,
                     CASE WHEN p.ts < {now_sql} - interval '10 days' THEN 'issued'
                          WHEN p.ts < {now_sql} - interval '3 days' THEN 'in_production'
                          ELSE 'paid' END,
                     p.ts,
                     CASE WHEN p.ts < {now_sql} - interval '3 days'
                          THEN p.ts + interval '1 day' END,
                     CASE WHEN p.ts < {now_sql} - interval '10 days'
                          THEN p.ts + interval '2 days' END,
                     CASE WHEN p.ts < {now_sql} - interval '10 days'
                          THEN ((p.ts + interval '2 days') AT TIME ZONE 'Asia/Bishkek'
                                + interval '12 months')::date END
              FROM g_pay p JOIN g_invoice i ON i.payment_id = p.id
              CROSS JOIN LATERAL generate_series(1, i.quantity) AS unit
              WHERE p.eds
              ORDER BY 1;
            """,
        ),
        (
            "charges and balances",
            """
            INSERT INTO charges (id, customer_id, client, idempotency_key, amount, tariff_code,
                                 report_id, state_body, form, period, description, status,
                                 entry_id, settled_by_payment_id, created_at, settled_at,
                                 closed_at)
              SELECT id, customer_id, 'apikey:sochi', 'report-' || id, amount, tariff_code,
                     'R-' || id, state_body, form, period,
                     'Отчёт ' || form || ' за ' || period, status, entry_id, NULL, created_at,
                     CASE WHEN status = 'charged' THEN created_at END,
                     CASE WHEN status = 'cancelled' THEN created_at + interval '3 days' END
              FROM g_charge ORDER BY id;
            WITH legs AS (
              SELECT e.credit AS account_id, e.slot_key, e.amount FROM g_entry e
              UNION ALL
              SELECT e.debit, e.slot_key, -e.amount FROM g_entry e
            ), sums AS (
              SELECT l.account_id,
                     CASE WHEN a.slots > 1 THEN (l.slot_key % a.slots)::int ELSE 0 END AS slot,
                     sum(l.amount) AS total
              FROM legs l JOIN accounts a ON a.id = l.account_id
              GROUP BY 1, 2
            )
            UPDATE account_balances b SET balance = b.balance + s.total
              FROM sums s WHERE b.account_id = s.account_id AND b.slot = s.slot;
            """,
        ),
        (
            "events",
            f"""
            CREATE TEMP TABLE g_balance AS
              SELECT entry_id, account_id,
                     sum(delta) OVER (PARTITION BY account_id ORDER BY entry_id) AS balance
              FROM (SELECT id AS entry_id, credit AS account_id, amount AS delta FROM g_entry
                    UNION ALL
                    SELECT id, debit, -amount FROM g_entry) AS legs
              WHERE account_id > {ids["account_base"]};  -- customer accounts
            CREATE INDEX ON g_balance (entry_id, account_id);
            ANALYZE g_balance;
            CREATE TEMP TABLE g_event AS
              SELECT p.ts AS at, 0 AS ord, p.id AS ref, 'payment.accepted' AS type,
                     CASE WHEN p.eds THEN coalesce('inn:' || i.inn, 'invoice:' || p.number)
                          ELSE 'customer:' || p.customer_idx END AS ordering_key,
                     CASE WHEN p.eds THEN NULL ELSE p.customer_idx END AS customer_id,
                     json_build_object(
                       'payment_id', p.id, 'service', CASE WHEN p.eds THEN 'eds' ELSE 'sochi'
                       END, 'account', p.account, 'amount', p.amount, 'agent', p.agent_code,
                       'txn_id', p.txn_id,
                       'business_date', ((p.ts - interval '2 seconds') AT TIME ZONE
                                         'Asia/Bishkek')::date,
                       'created_at', p.ts, 'inn', CASE WHEN p.eds THEN i.inn ELSE c.inn END,
                       'customer_name', CASE WHEN p.eds THEN NULL ELSE c.name END,
                       'invoice_number', p.number,
                       'balance', b.balance)::text AS payload
              FROM g_pay p JOIN g_customer c ON c.id = p.customer_idx
              LEFT JOIN g_invoice i ON i.payment_id = p.id
              LEFT JOIN g_balance b ON b.entry_id = p.entry_id AND b.account_id = c.account_id
                                   AND NOT p.eds
              UNION ALL
              SELECT p.ts, 1, p.id, 'invoice.paid', coalesce('inn:' || i.inn,
                     'invoice:' || i.number), c.id,
                     json_build_object('invoice_number', i.number, 'inn', i.inn,
                       'payer_name', i.payer_name, 'total', p.amount, 'payment_id', p.id,
                       'lines', json_build_array(json_build_object(
                         'product_code', i.product_code, 'name', i.product_name,
                         'quantity', i.quantity, 'unit_price', i.unit_price,
                         'amount', p.amount)))::text
              FROM g_pay p JOIN g_invoice i ON i.payment_id = p.id
              LEFT JOIN customers c ON c.inn = i.inn
              WHERE p.eds
              UNION ALL
              SELECT p.ts + interval '2 hours', 0, p.id, 'payment.reversed',
                     'customer:' || p.customer_idx, p.customer_idx,
                     json_build_object('payment_id', p.id, 'service', 'sochi',
                       'account', p.account, 'amount', p.amount,
                       'reason', 'ошибка оператора агента',
                       'requested_by', 'user:bench-accountant')::text
              FROM g_pay p WHERE p.reversed
              UNION ALL
              SELECT ch.created_at, 0, ch.id,
                     CASE ch.status WHEN 'charged' THEN 'charge.charged'
                          ELSE 'charge.awaiting_payment' END,
                     'customer:' || ch.customer_id, ch.customer_id,
                     json_build_object('charge_id', ch.id, 'inn', ch.inn,
                       'customer_name', ch.customer_name, 'amount', ch.amount,
                       'status', ch.status, 'report_id', 'R-' || ch.id,
                       'state_body', ch.state_body, 'form', ch.form, 'period', ch.period,
                       'created_at', ch.created_at,
                       'balance', coalesce(b.balance, 0))::text
              FROM g_charge ch
              LEFT JOIN g_balance b ON b.entry_id = ch.entry_id
                                   AND b.account_id = ch.account_id;
            CREATE TEMP TABLE g_evt AS
              SELECT row_number() OVER (ORDER BY at, ord, type, ref) AS id, * FROM g_event;
            INSERT INTO events (id, type, ordering_key, customer_id, payload, created_at)
              SELECT id, type, ordering_key, customer_id, payload, at FROM g_evt ORDER BY id;
            """,
        ),
        (
            "deliveries",
            f"""
            INSERT INTO webhook_endpoints (id, name, url, secret_sealed, event_types, enabled,
                                           created_at)
              VALUES (1, 'crm', 'https://crm.example.kg/hooks/tolom',
                      {_literal(ids["webhook_secret"])}, '*', true, {webhook_at});
            CREATE TEMP TABLE g_delivery AS
              SELECT e.id AS event_id, 'webhook:1' AS destination, 1 AS endpoint_id,
                     NULL::text AS recipient, NULL::text AS language, e.ordering_key, e.at
              FROM g_evt e WHERE e.at >= {webhook_at}
              UNION ALL
              SELECT e.id, 'email', NULL, c.email, c.language, e.ordering_key, e.at
              FROM g_evt e JOIN customers c ON c.id = e.customer_id
              WHERE c.email IS NOT NULL
                AND e.type IN ('payment.accepted', 'charge.settled', 'invoice.paid',
                               'order.issued', 'signature.expiring')
              UNION ALL
              SELECT e.id, 'sms', NULL, c.phone, c.language, e.ordering_key, e.at
              FROM g_evt e JOIN customers c ON c.id = e.customer_id
              WHERE c.phone IS NOT NULL
                AND e.type IN ('payment.accepted', 'charge.settled', 'invoice.paid',
                               'order.issued', 'signature.expiring');
            INSERT INTO deliveries (id, event_id, event_created_at, destination, endpoint_id,
                                    recipient, language, ordering_key, status, attempts,
                                    next_attempt_at, last_error, delivered_at, created_at)
              SELECT row_number() OVER (ORDER BY event_id, destination), event_id, at,
                     destination, endpoint_id, recipient, language, ordering_key,
                     CASE WHEN at > {now_sql} - interval '2 minutes' THEN 'pending'
                          WHEN event_id % 997 = 0 THEN 'dead' ELSE 'delivered' END,
                     CASE WHEN at > {now_sql} - interval '2 minutes' THEN 0
                          WHEN event_id % 997 = 0 THEN 8 ELSE 1 END,
                     at,
                     CASE WHEN at <= {now_sql} - interval '2 minutes' AND event_id % 997 = 0
                          THEN 'HTTP 502 Bad Gateway' END,
                     CASE WHEN at <= {now_sql} - interval '2 minutes' AND event_id % 997 <> 0
                          THEN at + interval '2 seconds' END,
                     at
              FROM g_delivery ORDER BY 1;
            """,
        ),
        (
            "request log (last 60 days)",
            f"""
            CREATE TEMP TABLE g_request AS
              SELECT p.ts - interval '5 seconds' AS at, 0 AS ord, p.*
              FROM g_pay p
              WHERE p.ts >= {now_sql} - interval '60 days'
              UNION ALL
              SELECT p.ts - interval '1 second', 1, p.*
              FROM g_pay p
              WHERE p.ts >= {now_sql} - interval '60 days';
            INSERT INTO gateway_requests (id, received_at, duration_us, protocol, service,
                                          agent_id, peer, method, command, txn_id, params,
                                          http_status, result, response, payment_id)
              SELECT row_number() OVER (ORDER BY r.at, r.ord, r.id), r.at,
                     2000 + (r.id % 9000)::int,
                     CASE WHEN r.agent_kind = 'gateway' THEN r.protocol
                          WHEN r.agent_kind = 'cash_desk' THEN 'web' ELSE 'api' END,
                     CASE WHEN r.eds THEN 'eds' ELSE 'sochi' END, r.agent_id,
                     '10.20.' || (r.agent_idx) || '.' || (1 + r.id % 200),
                     CASE WHEN r.protocol = 'osmp' AND r.agent_kind = 'gateway' THEN 'GET'
                          ELSE 'POST' END,
                     CASE WHEN r.ord = 0 THEN 'check' ELSE 'pay' END, r.txn_id,
                     json_build_array(json_build_array('command',
                         CASE WHEN r.ord = 0 THEN 'check' ELSE 'pay' END),
                       json_build_array('txn_id', r.txn_id),
                       json_build_array('txn_date', to_char(r.ts AT TIME ZONE
                         'Asia/Bishkek', 'YYYYMMDDHH24MISS')),
                       json_build_array('account', r.account),
                       json_build_array('sum', to_char(r.amount / 100.0, 'FM9999999990.00'))
                     )::text,
                     200, 0,
                     CASE WHEN r.protocol = 'osmp' AND r.agent_kind = 'gateway' THEN
                       '<?xml version="1.0" encoding="UTF-8"?><response><osmp_txn_id>'
                       || r.txn_id || '</osmp_txn_id>'
                       || CASE WHEN r.ord = 1 THEN '<prv_txn>' || r.id || '</prv_txn>' ELSE ''
                          END
                       || '<sum>' || to_char(r.amount / 100.0, 'FM9999999990.00')
                       || '</sum><result>0</result><comment>OK</comment></response>'
                     ELSE json_build_object('result', 0, 'message', 'OK',
                       'txn_id', r.txn_id,
                       'payment_id', CASE WHEN r.ord = 1 THEN r.id END,
                       'amount', to_char(r.amount / 100.0, 'FM9999999990.00'))::text
                     END,
                     CASE WHEN r.ord = 1 THEN r.id END
              FROM g_request r ORDER BY 1;
            """,
        ),
        (
            "receipts",
            f"""
            INSERT INTO receipts (payment_id, token, created_at)
              SELECT p.id,
                     translate(substr(encode(sha256(('bench-receipt-' || p.id)::bytea),
                                             'base64'), 1, 32), '+/', '-_'),
                     least(p.ts + make_interval(secs => 60 + p.u_receipt * 7200),
                           {now_sql})
              FROM g_pay p WHERE p.u_receipt < 0.6 ORDER BY p.id;
            """,
        ),
        (
            "audit log",
            f"""
            CREATE TEMP TABLE g_audit AS
              SELECT c.created_at AS at, 'apikey:crm' AS actor, NULL::text AS address,
                     'customer.create' AS action, 'customer' AS object_type,
                     c.inn AS object_id, NULL::text AS before,
                     json_build_object('inn', c.inn, 'name', c.name,
                       'legal_form', c.legal_form, 'status', 'active', 'email', c.email,
                       'phone', c.phone, 'language', c.language)::text AS after
              FROM g_customer c
              UNION ALL
              SELECT i.created_at, CASE WHEN i.id % 3 = 0 THEN 'user:bench-operator'
                                        ELSE 'apikey:eds-shop' END,
                     CASE WHEN i.id % 3 = 0 THEN '10.0.0.15' END,
                     'invoice.create', 'invoice', i.number, NULL,
                     json_build_object('number', i.number, 'inn', i.inn,
                       'payer_name', i.payer_name,
                       'total', to_char(i.unit_price * i.quantity / 100.0, 'FM9999999990.00'),
                       'status', 'open')::text
              FROM g_invoice i
              UNION ALL
              SELECT i.created_at + make_interval(secs => 3600 + i.u_who * 86400),
                     'user:bench-operator', '10.0.0.15', 'invoice.cancel', 'invoice', i.number,
                     '{{"status": "open"}}', '{{"status": "cancelled"}}'
              FROM g_invoice i WHERE i.state = 'cancelled'
              UNION ALL
              SELECT p.ts, 'user:bench-operator', '10.0.0.15', 'payment.manual', 'payment',
                     p.id::text, NULL,
                     json_build_object('channel', p.agent_kind, 'reference', p.txn_id,
                       'service', CASE WHEN p.eds THEN 'eds' ELSE 'sochi' END,
                       'account', p.account,
                       'amount', to_char(p.amount / 100.0, 'FM9999999990.00'))::text
              FROM g_pay p WHERE p.agent_kind <> 'gateway'
              UNION ALL
              SELECT p.ts + interval '2 hours', 'user:bench-accountant', '10.0.0.21',
                     'payment.reverse', 'payment', p.id::text, '{{"status": "accepted"}}',
                     '{{"status": "reversed", "reason": "ошибка оператора агента"}}'
              FROM g_pay p WHERE p.reversed
              UNION ALL
              SELECT r.created_at,
                     (ARRAY['user:bench-operator', 'user:bench-accountant',
                            'user:bench-admin'])[1 + r.payment_id % 3],
                     '10.0.0.' || (15 + r.payment_id % 3), 'receipt.create', 'payment',
                     r.payment_id::text, NULL, '{{"receipt": "created"}}'
              FROM receipts r
              UNION ALL
              SELECT ch.created_at, 'apikey:sochi', '10.0.1.5', 'charge.create', 'charge',
                     ch.id::text, NULL,
                     json_build_object('inn', ch.inn, 'amount', ch.amount,
                       'status', ch.status, 'tariff', ch.tariff_code)::text
              FROM g_charge ch
              UNION ALL
              SELECT ({_literal(first_day.isoformat())}::timestamp AT TIME ZONE 'Asia/Bishkek')
                       + make_interval(days => d, hours => 8 + s * 9, mins => (u::int * 7) % 50),
                     'user:' || u_name, '10.0.0.' || (15 + u),
                     CASE WHEN s = 0 THEN 'user.login' ELSE 'user.logout' END, 'user', u_name,
                     NULL, NULL
              FROM generate_series(0, {days - 2}) AS d,
                   generate_series(0, 1) AS s,
                   unnest(ARRAY['bench-admin', 'bench-operator', 'bench-accountant',
                                'bench-auditor']) WITH ORDINALITY AS names(u_name, u)
              UNION ALL
              SELECT {webhook_at}, 'user:bench-admin', '10.0.0.15', 'webhook.add',
                     'webhook_endpoint', 'crm', NULL,
                     '{{"url": "https://crm.example.kg/hooks/tolom", "event_types": "*"}}';
            INSERT INTO audit_log (id, at, actor, address, action, object_type, object_id,
                                   before, after)
              SELECT row_number() OVER (ORDER BY at, action, object_id), at, actor, address,
                     action, object_type, object_id, before, after
              FROM g_audit WHERE at <= {now_sql} ORDER BY 1;
            """,
        ),
        ("applications", applications_sql()),
        (
            "sequences",
            """
            DO $$
            DECLARE t text;
            BEGIN
              FOREACH t IN ARRAY ARRAY['accounts', 'customers', 'invoices', 'invoice_lines',
                                       'applications',
                                       'payments', 'payment_reversals', 'journal_entries',
                                       'postings', 'charges', 'signature_orders', 'events',
                                       'deliveries', 'audit_log', 'gateway_requests',
                                       'webhook_endpoints']
              LOOP
                EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''), '
                               'greatest(1, (SELECT max(id) FROM %I)))', t, t);
              END LOOP;
            END $$;
            """,
        ),
    ]


def applications_sql() -> str:
    """Online applications (`/apply`) for one in eight invoices written to an INN: an open
    invoice's awaits verification, a cancelled one's was rejected, a paid one's verified.
    Reads the `invoices` table itself, so it also completes a set generated before
    applications existed."""
    return """
        INSERT INTO applications (id, inn, invoice_number, office, status, reason, created_at,
                                  address, decided_at, decided_by)
          SELECT row_number() OVER (ORDER BY i.id), i.inn, i.number,
                 (ARRAY['Бишкек', 'Ош', 'Жалал-Абад'])[1 + i.id % 3],
                 CASE i.status WHEN 'open' THEN 'new' WHEN 'cancelled' THEN 'rejected'
                      ELSE 'verified' END,
                 CASE WHEN i.status = 'cancelled' THEN 'паспорт не совпадает с заявкой' END,
                 i.created_at, '10.30.' || (i.id % 200) || '.' || (1 + i.id % 250),
                 CASE WHEN i.status <> 'open' THEN i.created_at + interval '3 hours' END,
                 CASE WHEN i.status <> 'open' THEN 'user:bench-operator' END
          FROM invoices i
          WHERE i.inn IS NOT NULL AND i.id % 8 = 0
          ORDER BY i.id;
    """


# The tables the generator fills in bulk: their plain indexes and foreign keys are dropped
# for the load and made again after it (one sort per index and one join per key instead
# of a million index insertions and key lookups). Primary keys and unique constraints stay.
BULK_TABLES = (
    "accounts",
    "account_balances",
    "customers",
    "invoices",
    "invoice_lines",
    "journal_entries",
    "postings",
    "payments",
    "manual_payments",
    "payment_reversals",
    "signature_orders",
    "charges",
    "events",
    "deliveries",
    "gateway_requests",
    "receipts",
    "audit_log",
)


def _drop_for_loading(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop the bulk tables' plain indexes and foreign keys; returns the DDL that makes
    them again, exactly as the migrations made them (same names, same definitions)."""
    keys = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace "
        "AND conparentid = 0 AND conrelid::regclass::text = ANY(%s)",
        (list(BULK_TABLES),),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = ANY(%s) AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)",
        (list(BULK_TABLES),),
    ).fetchall()
    for table, name, _definition in keys:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    # A partitioned table's index reads "ON ONLY": made so, it would stay invalid, without
    # its partitions' indexes; made plainly, it is built on every partition.
    return [definition.replace(" ON ONLY ", " ON ", 1) for _name, definition in indexes] + [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, definition in keys
    ]


def generate(database_url: str, schema: str, size: Size, *, log: Callable[[str], None]) -> float:
    """Drop, create, migrate and fill `schema`; returns the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    _prepare_schema(database_url, schema)
    url = scoped_url(database_url, schema)
    engine = make_engine(Settings(database_url=url, statement_timeout_ms=3_600_000), pool_size=1)
    try:
        _app_setup(engine, now - timedelta(days=size.days))
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    agents.c.id,
                    agents.c.code,
                    agents.c.name,
                    agents.c.kind,
                    accounts.c.id,
                    accounts.c.slots,
                ).join(accounts, accounts.c.id == agents.c.clearing_account_id)
            ).all()
            by_code = {r[1]: r for r in rows}
            order = [code for code, _n, _p in GATEWAYS] + ["cash_desk", "bank"]
            protocols = {code: protocol for code, _n, protocol in GATEWAYS}
            ids: dict[str, Any] = {
                "agents": [
                    {
                        "id": by_code[code][0],
                        "code": code,
                        "name": by_code[code][2],
                        "kind": by_code[code][3],
                        "account": by_code[code][4],
                        "slots": by_code[code][5],
                        "protocol": protocols.get(code, "web"),
                    }
                    for code in order
                ],
                "account_base": conn.execute(text("SELECT max(id) FROM accounts")).scalar_one(),
                "revenue_eds": conn.execute(
                    select(accounts.c.id).where(accounts.c.code == "revenue:eds")
                ).scalar_one(),
                "revenue_sochi": conn.execute(
                    select(accounts.c.id).where(accounts.c.code == "revenue:sochi")
                ).scalar_one(),
                "webhook_secret": secretbox.for_connection(conn).seal(
                    "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhISE="
                ),
            }
    finally:
        engine.dispose()
    with psycopg.connect(plain_url(database_url)) as conn:
        conn.execute(f"SET search_path = {schema}")
        conn.execute("SET temp_buffers = '3GB'")  # before the first temporary table
        conn.execute("SET statement_timeout = 0")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        restore = _drop_for_loading(conn)
        # The day totals' triggers on payments (migration 0018) have nothing to forget yet.
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'payments'::regclass "
            "AND NOT tgisinternal"
        ).fetchall()
        for (name,) in triggers:
            conn.execute(f'ALTER TABLE payments DISABLE TRIGGER "{name}"')
        for what, sql in _statements(size, now, ids):
            step = time.perf_counter()
            conn.execute(sql)
            log(f"  {what}: {time.perf_counter() - step:.1f} s")
        for (name,) in triggers:
            conn.execute(f'ALTER TABLE payments ENABLE TRIGGER "{name}"')
        step = time.perf_counter()
        for ddl in restore:
            conn.execute(ddl)
        log(f"  indexes and foreign keys back ({len(restore)}): {time.perf_counter() - step:.1f} s")
        conn.commit()
    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        step = time.perf_counter()
        tables = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' "
            "AND relnamespace = current_schema()::regnamespace ORDER BY relname"
        ).fetchall()
        for (table,) in tables:  # only this schema's tables, not the whole database's
            conn.execute(f"VACUUM (ANALYZE) {table}")
        log(f"  VACUUM ANALYZE: {time.perf_counter() - step:.1f} s")
        marker = {**size.as_dict(), "generated_at": now.isoformat()}
        conn.execute(f"COMMENT ON SCHEMA {schema} IS {_literal(json.dumps(marker))}")
    return time.perf_counter() - started


def counts(engine: Engine) -> dict[str, int]:
    """Rows per table (estimates from the statistics: counting would take a while)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, reltuples::bigint FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace "
                "ORDER BY relname"
            )
        ).all()
    return {name: int(n) for name, n in rows}


def table_sizes(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace "
                "ORDER BY pg_total_relation_size(oid) DESC"
            )
        ).all()
    return {name: size for name, size in rows}


# --- the sample pages ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One request of one page: what it shows, the URL, who asks, what must come back."""

    label: str
    url: str
    role: str | None = "operator"  # None: not signed in
    status: int = 200
    download: bool = False  # a file (export, PDF): reported, but not a page


def pick_ids(engine: Engine, now: datetime) -> dict[str, Any]:
    """Ids and values the sample URLs use, each found by one indexed query."""
    today = now.astimezone(ZONE).date()

    def one(sql: str, **params: Any) -> Any:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    busy = one(
        "SELECT customer_id FROM payments WHERE customer_id IS NOT NULL ORDER BY id DESC LIMIT 1"
    )
    # The customer with the most payments is customer 1 by construction (skewed draw).
    busiest_inn = one("SELECT inn FROM customers WHERE id = 1")
    quiet_inn = one(
        "SELECT inn FROM customers WHERE id = (SELECT max(customer_id) "
        "FROM payments WHERE customer_id IS NOT NULL AND id < 5000)"
    )
    ids: dict[str, Any] = {
        "today": today,
        "busy_customer": busy,
        "busiest_inn": busiest_inn,
        "quiet_inn": quiet_inn,
        "blocked_inn": one(
            "SELECT inn FROM customers WHERE status = 'blocked' ORDER BY id LIMIT 1"
        ),
        "payment": one("SELECT max(id) FROM payments WHERE customer_id = 1"),
        "payment_txn": one(
            "SELECT txn_id FROM payments WHERE id = (SELECT max(id) - max(id) / 200 FROM payments)"
        ),
        "middle_payment": one("SELECT max(id) / 2 FROM payments"),
        "reversed_payment": one("SELECT max(payment_id) FROM payment_reversals"),
        "eds_payment": one(
            "SELECT max(id) FROM payments WHERE invoice_id IS NOT NULL "
            "AND status = 'accepted' AND id < (SELECT max(id) FROM payments)"
        ),
        "cash_payment": one(
            "SELECT max(payment_id) FROM manual_payments WHERE channel = 'cash_desk'"
        ),
        "paid_invoice": one(
            "SELECT number FROM invoices WHERE status = 'paid' ORDER BY id DESC LIMIT 1"
        ),
        "open_invoice": one(
            "SELECT number FROM invoices WHERE status = 'open' ORDER BY id DESC LIMIT 1"
        ),
        "invoice_inn": one(
            "SELECT inn FROM invoices WHERE inn IS NOT NULL ORDER BY id DESC LIMIT 1"
        ),
        "audit_line": one("SELECT max(id) - 10 FROM audit_log"),
        "old_audit_line": one("SELECT max(id) / 10 FROM audit_log"),
        "order": one("SELECT max(id) FROM signature_orders"),
        "issued_order": one("SELECT max(id) FROM signature_orders WHERE status = 'issued'"),
        "event": one("SELECT max(id) - 3 FROM events"),
        "delivery": one("SELECT max(id) FROM deliveries WHERE status = 'dead'"),
        "receipt_token": one("SELECT token FROM receipts ORDER BY payment_id DESC LIMIT 1"),
        "charge": one("SELECT max(id) FROM charges"),
        "application": one(
            "SELECT coalesce(max(id) FILTER (WHERE status = 'new'), max(id)) FROM applications"
        ),
        "application_inn": one("SELECT inn FROM applications ORDER BY id DESC LIMIT 1"),
    }
    ids["reconciled_day"] = _reconciled_day(engine, today - timedelta(days=1))
    missing = [k for k, v in ids.items() if v is None]
    if missing:
        raise SystemExit(f"the data has no {', '.join(missing)}: generate a larger set")
    return ids


def _reconciled_day(engine: Engine, day: date) -> date:
    """A day of agent `optima` with its registry imported (ours, sent back as theirs), so
    the reconciliation day page, the act and our registry have something to show."""
    import io

    from tolom.agents import service as agent_service
    from tolom.reconciliation import formats, outbound, registries

    with engine.connect() as conn:
        agent = agent_service.load(conn, "optima")
        assert agent is not None, "the generated data has no agent optima"
        fmt = formats.load(conn, agent.id)
    content = io.BytesIO()
    outbound.write(engine, agent, day, fmt, content)
    registries.import_registry(
        engine, "optima", content.getvalue(), file_name="bench.txt", actor="bench", day=day
    )
    return day


def samples(ids: dict[str, Any]) -> dict[str, list[Sample]]:
    """Sample requests for every GET route of the back office, by route path."""
    today: date = ids["today"]
    month_ago, year_ago = today - timedelta(days=29), today - timedelta(days=364)
    week_ago = today - timedelta(days=6)
    old_month = (today - timedelta(days=200), today - timedelta(days=170))
    pay, inn = ids["payment"], ids["busiest_inn"]
    day_done = ids["reconciled_day"]
    return {
        "/login": [Sample("login form", "/login", role=None)],
        "/password": [Sample("password form", "/password")],
        "/": [Sample("dashboard", "/")],
        "/payments": [
            Sample("newest", "/payments"),
            Sample("search: busiest INN", f"/payments?q={inn}"),
            Sample("search: INN with few payments", f"/payments?q={ids['quiet_inn']}"),
            Sample("search: unknown INN", "/payments?q=29999999999999"),
            Sample("search: txn_id", f"/payments?q={ids['payment_txn']}"),
            Sample("search: receipt number", f"/payments?q={ids['middle_payment']}"),
            Sample("last 30 days", f"/payments?from={month_ago}&to={today}"),
            Sample("a month 200 days ago", f"/payments?from={old_month[0]}&to={old_month[1]}"),
            Sample("agent + 7 days", f"/payments?agent=optima&from={week_ago}&to={today}"),
            Sample("bank, eds", "/payments?agent=bank&service=eds"),
            Sample("reversed", "/payments?status=reversed"),
            Sample("reversed eds (none)", "/payments?service=eds&status=reversed"),
            Sample("deep page", f"/payments?before={ids['middle_payment']}"),
            Sample("busiest INN + year", f"/payments?q={inn}&from={year_ago}&to={today}"),
        ],
        "/payments/export.csv": [
            Sample(
                "one day, CSV",
                f"/payments/export.csv?from={today - timedelta(days=1)}"
                f"&to={today - timedelta(days=1)}",
                role="accountant",
                download=True,
            ),
        ],
        "/payments/export.xlsx": [
            Sample(
                "one day, XLSX",
                f"/payments/export.xlsx?from={today - timedelta(days=1)}"
                f"&to={today - timedelta(days=1)}",
                role="accountant",
                download=True,
            ),
        ],
        "/payments/{payment_id}": [
            Sample("busiest customer's newest", f"/payments/{pay}"),
            Sample("reversed", f"/payments/{ids['reversed_payment']}"),
            Sample("eds", f"/payments/{ids['eds_payment']}"),
            Sample("cash desk", f"/payments/{ids['cash_payment']}"),
        ],
        "/payments/{payment_id}/receipt.pdf": [
            Sample("receipt PDF", f"/payments/{pay}/receipt.pdf", download=True),
        ],
        "/payments/{payment_id}/receipt": [
            Sample("cash receipt to print", f"/payments/{ids['cash_payment']}/receipt"),
        ],
        "/agents": [Sample("list with 30-day figures", "/agents")],
        "/applications": [
            Sample("awaiting verification", "/applications"),
            Sample("rejected, one office", "/applications?status=rejected&office=Ош"),
            Sample("one INN", f"/applications?status=all&inn={ids['application_inn']}"),
        ],
        "/applications/{application_id}": [
            Sample("one application", f"/applications/{ids['application']}")
        ],
        "/agents/new": [Sample("new agent form", "/agents/new", role="admin")],
        "/agents/{code}": [Sample("one agent", "/agents/optima")],
        "/cash": [Sample("cash desk form", "/cash")],
        "/invoices": [
            Sample("newest", "/invoices"),
            Sample("by number", f"/invoices?q={ids['paid_invoice']}"),
            Sample("by INN", f"/invoices?inn={ids['invoice_inn']}"),
            Sample("open", "/invoices?status=open"),
            Sample("cancelled", "/invoices?status=cancelled"),
        ],
        "/invoices/new": [Sample("new invoice form", "/invoices/new")],
        "/invoices/{number}.pdf": [
            Sample("invoice PDF", f"/invoices/{ids['paid_invoice']}.pdf", download=True),
        ],
        "/invoices/{number}": [
            Sample("paid", f"/invoices/{ids['paid_invoice']}"),
            Sample("open", f"/invoices/{ids['open_invoice']}"),
        ],
        "/invoices/{number}/cancel": [
            Sample("cancel confirmation", f"/invoices/{ids['open_invoice']}/cancel"),
        ],
        "/users": [Sample("list", "/users", role="admin")],
        "/users/new": [Sample("new user form", "/users/new", role="admin")],
        "/users/{username}": [Sample("one user", "/users/bench-operator", role="admin")],
        "/audit": [
            Sample("newest", "/audit", role="auditor"),
            Sample("actor", "/audit?actor=user:bench-accountant", role="auditor"),
            Sample("actor prefix", "/audit?actor=apikey:", role="auditor"),
            Sample("action", "/audit?action=payment.reverse", role="auditor"),
            Sample("one payment", f"/audit?type=payment&object={pay}", role="auditor"),
            Sample(
                "a month 200 days ago",
                f"/audit?from={old_month[0]}&to={old_month[1]}",
                role="auditor",
            ),
            Sample("address", "/audit?address=10.0.0.21", role="auditor"),
            Sample("nothing matches", "/audit?actor=user:nobody", role="auditor"),
            Sample("deep page", f"/audit?before={ids['old_audit_line']}", role="auditor"),
        ],
        "/audit/export.csv": [
            Sample(
                "one payment, CSV",
                f"/audit/export.csv?type=payment&object={pay}",
                role="auditor",
                download=True,
            ),
        ],
        "/audit/{line_id}": [Sample("one line", f"/audit/{ids['audit_line']}", role="auditor")],
        "/customers": [
            Sample("first page", "/customers"),
            Sample("INN prefix", f"/customers?q={inn[:6]}"),
            Sample("whole INN", f"/customers?q={inn}"),
            Sample("name", "/customers?q=Манас"),
            Sample("nothing matches", "/customers?q=Нетакого"),
        ],
        "/customers/new": [Sample("new customer form", "/customers/new")],
        "/customers/{inn}": [
            Sample("busiest customer, this month", f"/customers/{inn}"),
            Sample(
                "busiest customer, a year's statement",
                f"/customers/{inn}?from={year_ago}&to={today}",
            ),
            Sample("a quiet customer, a year", f"/customers/{ids['quiet_inn']}?from={year_ago}"),
            Sample("blocked, never paid", f"/customers/{ids['blocked_inn']}"),
        ],
        "/events": [
            Sample("newest, dead first", "/events"),
            Sample("dead", "/events?status=dead"),
            Sample("pending", "/events?status=pending"),
            Sample("e-mail", "/events?destination=email"),
            Sample("webhook, reversals", "/events?destination=webhook:1&type=payment.reversed"),
            Sample("deep page", f"/events?before={ids['event'] // 2}"),
        ],
        "/events/{event_id}": [Sample("one event", f"/events/{ids['event']}")],
        "/simulator": [Sample("wallet simulator, first screen", "/simulator")],
        "/webhooks": [Sample("endpoints and backlog", "/webhooks", role="admin")],
        "/orders": [
            Sample("to produce (paid)", "/orders"),
            Sample("in production", "/orders?status=in_production"),
            Sample("issued", "/orders?status=issued"),
            Sample("all of an INN", f"/orders?status=all&inn={ids['invoice_inn']}"),
            Sample("by invoice", f"/orders?status=all&invoice={ids['paid_invoice']}"),
        ],
        "/orders/expiring": [
            Sample("30 days", "/orders/expiring"),
            Sample("7 days", "/orders/expiring?days=7"),
        ],
        "/orders/{order_id}": [Sample("one order", f"/orders/{ids['issued_order']}")],
        "/reconciliation": [
            Sample("this month's calendar", "/reconciliation", role="accountant"),
        ],
        "/reconciliation/{agent}/{day_text}": [
            Sample("a reconciled day", f"/reconciliation/optima/{day_done}", role="accountant"),
        ],
        "/reconciliation/{agent}/{day_text}/act.pdf": [
            Sample("act PDF", f"/reconciliation/optima/{day_done}/act.pdf", download=True),
        ],
        "/reconciliation/{agent}/{day_text}/act.xlsx": [
            Sample("act XLSX", f"/reconciliation/optima/{day_done}/act.xlsx", download=True),
        ],
        "/reconciliation/{agent}/{day_text}/our-registry": [
            Sample(
                "our registry", f"/reconciliation/optima/{day_done}/our-registry", download=True
            ),
        ],
    }


def get_routes() -> list[str]:
    """Every GET route of the back-office router, as its path template.

    Recent FastAPI keeps an included router as one entry (`original_router`, with the
    prefix in `include_context`) instead of copying its routes: both shapes are walked."""
    from tolom.web import router

    found: set[str] = set()

    def walk(routes: Sequence[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                context = getattr(route, "include_context", None)
                walk(included.routes, prefix + str(getattr(context, "prefix", "") or ""))
            elif "GET" in (getattr(route, "methods", None) or set()):
                found.add(prefix + str(route.path))

    walk(router.routes, "")
    return sorted(found)


def check_coverage(routes: Sequence[str], known: dict[str, list[Sample]]) -> list[str]:
    """Routes without a sample (an empty list means every route is covered)."""
    return [r for r in routes if not known.get(r)]


# --- timing ----------------------------------------------------------------------------


@dataclass
class Timing:
    route: str
    label: str
    url: str
    role: str | None
    status: int
    bytes: int
    download: bool
    first_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    runs: int
    statements: int = 0
    explained: list[dict[str, Any]] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        return self.p95_ms > TARGET_MS


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with `share` of values at or below."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil
    return ordered[int(rank) - 1]


class Timed:
    """The app, with the time of each ASGI call kept (request in, last body byte out)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.last = time.perf_counter() - started


@contextmanager
def captured_statements(engine: Engine) -> Iterator[list[tuple[str, Any, float]]]:
    """The statements the engine runs meanwhile, with their parameters and seconds."""
    found: list[tuple[str, Any, float]] = []
    starts: dict[int, float] = {}

    def before(_conn: Any, cursor: Any, _statement: str, _params: Any, *_: Any) -> None:
        starts[id(cursor)] = time.perf_counter()

    def after(_conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        found.append((statement, params, time.perf_counter() - starts.pop(id(cursor), 0.0)))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def explain(engine: Engine, statement: str, params: Any) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a read, in a transaction that is rolled back."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
        conn.rollback()
    return "\n".join(r[0] for r in rows)


async def _log_in(client: httpx.AsyncClient, username: str) -> None:
    form = await client.get("/login")
    token = re.search(r'name="csrf" value="([^"]*)"', form.text)
    if form.status_code != 200 or token is None:
        raise SystemExit(f"cannot open the login form: {form.status_code}")
    answer = await client.post(
        "/login",
        data={"csrf": token.group(1), "username": username, "password": PASSWORD, "next": "/"},
    )
    if answer.status_code != 303:
        raise SystemExit(f"cannot log in as {username}: {answer.status_code}")


async def time_pages(
    app: Any,
    engine: Engine,
    chosen: list[tuple[str, Sample]],
    *,
    repeat: int,
    explain_slow: bool,
    log: Callable[[str], None],
) -> list[Timing]:
    timed = Timed(app)
    transport = httpx.ASGITransport(app=timed, client=("10.0.0.15", 40000))
    clients: dict[str | None, httpx.AsyncClient] = {}
    try:
        for role in (None, *ROLES):
            clients[role] = httpx.AsyncClient(
                transport=transport, base_url="http://bench.local", follow_redirects=False
            )
            if role is not None:
                await _log_in(clients[role], f"bench-{role}")
        results = []
        for route, sample in chosen:
            client = clients[sample.role]
            answer = await client.get(sample.url)  # warm-up: caches, templates, receipts
            first = timed.last
            if answer.status_code != sample.status:
                raise SystemExit(
                    f"{sample.url} answered {answer.status_code}, expected {sample.status}: "
                    f"{answer.text[:300]}"
                )
            seconds = []
            for _ in range(repeat):
                answer = await client.get(sample.url)
                seconds.append(timed.last)
            ms = [s * 1000 for s in seconds]
            timing = Timing(
                route=route,
                label=sample.label,
                url=sample.url,
                role=sample.role,
                status=answer.status_code,
                bytes=len(answer.content),
                download=sample.download,
                first_ms=first * 1000,
                p50_ms=statistics.median(ms),
                p95_ms=percentile(ms, 0.95),
                max_ms=max(ms),
                runs=len(ms),
            )
            with captured_statements(engine) as statements:
                await client.get(sample.url)
            timing.statements = len(statements)
            if explain_slow and timing.slow:
                slowest = sorted(statements, key=lambda s: -s[2])[:3]
                for statement, params, took in slowest:
                    plan = ""
                    if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                        plan = explain(engine, statement, params)
                    timing.explained.append(
                        {"ms": took * 1000, "sql": statement, "params": repr(params), "plan": plan}
                    )
            log(
                f"  {timing.p50_ms:8.1f} {timing.p95_ms:8.1f} {timing.max_ms:8.1f}  "
                f"{'SLOW ' if timing.slow and not sample.download else ''}"
                f"{route}  [{sample.label}]"
            )
            results.append(timing)
        return results
    finally:
        for client in clients.values():
            await client.aclose()


# --- the report ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load": os.getloadavg(),
    }


def print_report(results: list[Timing], *, out: Callable[[str], None]) -> None:
    width = max(len(f"{r.route} [{r.label}]") for r in results)
    out(
        f"{'page [sample]':<{width}}  {'role':<10} {'status':>6} {'KiB':>7} {'SQL':>4} "
        f"{'first':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}"
    )
    for r in results:
        name = f"{r.route} [{r.label}]"
        flag = ""
        if r.slow:
            flag = "  (download)" if r.download else "  OVER 300 ms"
        out(
            f"{name:<{width}}  {r.role or '-':<10} {r.status:>6} {r.bytes / 1024:>7.1f} "
            f"{r.statements:>4} {r.first_ms:>7.1f} {r.p50_ms:>7.1f} {r.p95_ms:>7.1f} "
            f"{r.max_ms:>7.1f}{flag}"
        )
    pages = [r for r in results if not r.download]
    slow = [r for r in pages if r.slow]
    out("")
    out(
        f"{len(pages)} page samples over {len({r.route for r in pages})} routes: "
        f"{len(pages) - len(slow)} with p95 under {TARGET_MS:.0f} ms, {len(slow)} over; "
        f"slowest p95 {max(r.p95_ms for r in pages):.1f} ms "
        f"({max(pages, key=lambda r: r.p95_ms).url})."
    )
    for r in results:
        for found in r.explained:
            out("")
            out(f"--- {r.url}: {found['ms']:.1f} ms")
            out(found["sql"])
            out(found["params"])
            out(found["plan"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="SQLAlchemy URL")
    parser.add_argument("--schema", default=DEFAULT_SCHEMA)
    parser.add_argument("--payments", type=int, default=Size.payments)
    parser.add_argument("--customers", type=int, default=Size.customers)
    parser.add_argument("--days", type=int, default=Size.days)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data if the schema holds a complete set of this size",
    )
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--no-verify", action="store_true", help="skip the ledger check")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per sample")
    parser.add_argument("--only", default="", help="only samples whose route contains this")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="EXPLAIN ANALYZE the slowest statements of pages over 300 ms",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    schema = _schema_name(args.schema)
    size = Size(args.payments, args.customers, args.days)
    out = print
    if not os.environ.get("TOLOM_SECRET_KEY_FILE"):  # required with PostgreSQL
        key_file = ROOT / "var" / "bench-secret.key"  # kept: a reused data set needs it
        secretbox.create_key_file(key_file)
        os.environ["TOLOM_SECRET_KEY_FILE"] = str(key_file)

    out(
        f"Back-office pages with {size.payments:,} payments "
        f"({size.customers:,} customers, {size.days} days), schema {schema}"
    )
    stored = stored_size(args.database_url, schema)
    generated_seconds: float | None = None
    if (
        args.reuse
        and stored is not None
        and all(stored.get(k) == v for k, v in size.as_dict().items())
    ):
        out(f"Reusing the data generated at {stored['generated_at']}.")
    else:
        out("Generating:")
        generated_seconds = generate(args.database_url, schema, size, log=out)
        out(f"Generated in {generated_seconds:.1f} s.")
    url = scoped_url(args.database_url, schema)
    settings = Settings(database_url=url, agent_cache_seconds=5.0, worker_in_server=False)
    engine = make_engine(settings)
    migrate.upgrade(engine)  # a reused set gets migrations added since (new indexes)
    rows = counts(engine)
    out("Rows (estimated): " + ", ".join(f"{k} {v:,}" for k, v in rows.items() if v))
    if not args.no_verify:
        checker = make_engine(settings.model_copy(update={"statement_timeout_ms": 600_000}))
        started = time.perf_counter()
        with checker.connect() as conn:
            problems = verify_ledger(conn)
        checker.dispose()
        out(
            f"Ledger verified in {time.perf_counter() - started:.1f} s: "
            f"{'OK' if not problems else f'{len(problems)} problems, e.g. {problems[:3]}'}"
        )
        if problems:
            return 1
    if args.generate_only:
        return 0

    now = datetime.now(UTC)
    known = samples(pick_ids(engine, now))
    routes = get_routes()
    missing = check_coverage(routes, known)
    if missing:
        out("Routes without a sample URL (add them to samples()): " + ", ".join(missing))
        return 1
    stale = sorted(set(known) - set(routes))
    if stale:
        out("Samples for routes that no longer exist (ignored): " + ", ".join(stale))
    chosen = [(route, sample) for route in routes for sample in known[route] if args.only in route]
    from tolom.app import create_app
    from tolom.runtime import Runtime

    runtime = Runtime.on(settings, engine)
    app = create_app(runtime=runtime)
    out(
        f"Timing {len(chosen)} samples of {len(routes)} GET routes, {args.repeat} requests "
        "each after one warm-up (p50 / p95 / max, ms of server time):"
    )
    results = asyncio.run(
        time_pages(app, engine, chosen, repeat=args.repeat, explain_slow=args.explain, log=out)
    )
    out("")
    print_report(results, out=out)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": size.as_dict(),
                    "generated_seconds": generated_seconds,
                    "machine": machine(),
                    "rows": rows,
                    "sizes": table_sizes(engine),
                    "results": [asdict(r) for r in results],
                },
                ensure_ascii=False,
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
