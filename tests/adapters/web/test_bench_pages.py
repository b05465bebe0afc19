"""The back-office page benchmark (bench/backoffice_pages.py) at a tiny scale: its generated
data is what the application would write (the ledger verifies, balances never dip below
zero, ids follow time), every GET route of the back office has a sample URL, and every
sample answers as expected. PostgreSQL only: the generator is PostgreSQL SQL."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from tests.conftest import PG_SCHEMA, PG_URL
from tests.factories import REPO
from tolom.app import create_app
from tolom.db.engine import make_engine
from tolom.ledger.verify import verify_ledger
from tolom.runtime import Runtime
from tolom.settings import Settings

BENCH = REPO / "bench" / "backoffice_pages.py"
SCHEMA = f"{PG_SCHEMA}_bench"

pytestmark = pytest.mark.skipif(PG_URL is None, reason="needs TOLOM_TEST_DATABASE_URL")


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backoffice_pages", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


@pytest.fixture(scope="module")
def generated(bench: ModuleType) -> Iterator[Engine]:
    assert PG_URL is not None
    size = bench.Size(payments=2_000, customers=200, days=60)
    bench.generate(PG_URL, SCHEMA, size, log=lambda _line: None)
    settings = Settings(database_url=bench.scoped_url(PG_URL, SCHEMA), worker_in_server=False)
    engine = make_engine(settings, pool_size=4)
    yield engine
    engine.dispose()
    with psycopg.connect(bench.plain_url(PG_URL), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_every_index_is_back_and_valid(generated: Engine) -> None:
    """The load drops indexes and makes them again: a partitioned table's (migration 0013)
    must come back built on every partition, not as an invalid "ON ONLY" shell."""
    invalid = _scalar(
        generated,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND NOT i.indisvalid",
    )
    assert invalid == 0
    assert _scalar(generated, "SELECT to_regclass('ix_events_customer') IS NOT NULL")


def test_the_generated_ledger_verifies(generated: Engine) -> None:
    with generated.connect() as conn:
        assert verify_ledger(conn) == []
    assert _scalar(generated, "SELECT count(*) FROM payments") == 2_000
    # Each customer's balance is the sum of its postings (verify_ledger), and its running
    # balance, in ledger order, never went below zero.
    lowest = _scalar(
        generated,
        """
        SELECT min(balance) FROM (
          SELECT sum(delta) OVER (PARTITION BY account_id ORDER BY posting_id) AS balance
          FROM (SELECT id AS posting_id, credit_account_id AS account_id, amount AS delta
                FROM postings
                UNION ALL
                SELECT id, debit_account_id, -amount FROM postings) AS legs
          JOIN accounts ON accounts.id = legs.account_id AND accounts.kind = 'customer'
        ) AS running
        """,
    )
    assert lowest is not None and lowest >= 0
    # Something of every kind was generated.
    for table in (
        "payment_reversals",
        "manual_payments",
        "charges",
        "invoices",
        "signature_orders",
        "events",
        "deliveries",
        "gateway_requests",
        "receipts",
        "audit_log",
    ):
        assert _scalar(generated, f"SELECT count(*) FROM {table}") > 0, table


def test_ids_follow_time(generated: Engine) -> None:
    for table, moment in (
        ("payments", "created_at"),
        ("journal_entries", "created_at"),
        ("events", "created_at"),
        ("audit_log", "at"),
        ("gateway_requests", "received_at"),
    ):
        backwards = _scalar(
            generated,
            f"SELECT count(*) FROM (SELECT {moment} < lag({moment}) OVER (ORDER BY id) AS back "
            f"FROM {table}) AS t WHERE back",
        )
        assert backwards == 0, table
    # The application can go on from here: sequences are past the generated ids.
    with generated.begin() as conn:
        new_id = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('payments', 'id'))")
        ).scalar_one()
    assert new_id > 2_000


def test_every_back_office_page_has_a_sample_and_answers(
    bench: ModuleType, generated: Engine
) -> None:
    known = bench.samples(bench.pick_ids(generated, datetime.now(UTC)))
    routes = bench.get_routes()
    assert {"/", "/login", "/payments", "/payments/{payment_id}", "/audit"} <= set(routes)
    assert bench.check_coverage(routes, known) == []
    chosen = [(route, sample) for route in routes for sample in known[route]]
    url = generated.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, worker_in_server=False)
    app = create_app(runtime=Runtime.on(settings, generated))
    results = asyncio.run(
        bench.time_pages(app, generated, chosen, repeat=1, explain_slow=False, log=lambda _: None)
    )
    # time_pages stops on any answer other than the sample's expected status.
    assert len(results) == len(chosen)
    assert {r.route for r in results} == set(routes)
    assert all(r.status == 200 and r.bytes > 0 for r in results)


def test_a_route_without_a_sample_is_named(bench: ModuleType) -> None:
    assert bench.check_coverage(["/", "/new-page"], {"/": [bench.Sample("x", "/")]}) == [
        "/new-page"
    ]
