"""TOLOM_DATABASE_READ_URL: the read-only back-office lists and the payment exports read
the replica; the pages that decide money, and those showing what their user just changed,
read and write the primary. The "replica" here is a second database that differs from the
primary (its own rows), so each page shows which one it read."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.adapters.web.test_web import Web, add_user, csrf_in
from tests.adapters.web.test_web import web as web
from tests.adapters.web.test_web_cash import reference_in
from tests.conftest import PG_SCHEMA, _prepare, _reset_postgres, sqlite_url_for
from tests.factories import Gateway, add_agent, add_customer, new_txn_id
from tolom import audit
from tolom.db.engine import make_engine
from tolom.db.schema import audit_log, customers
from tolom.db.schema import payments as payments_table
from tolom.runtime import Runtime
from tolom.settings import Settings

REPLICA_ONLY = "ОсОО «Только на реплике»"


@pytest.fixture(scope="session")
def postgres_replica_url(postgres_url: str) -> str:
    """A second migrated schema beside the primary's, standing in for the replica."""
    schema = f"{PG_SCHEMA}_replica"
    url = make_url(postgres_url)
    plain = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = scoped.render_as_string(hide_password=False)
    engine = make_engine(Settings(database_url=rendered))
    _prepare(engine)
    engine.dispose()
    return rendered


@pytest.fixture
def replica_url(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated, seeded database of the primary's backend."""
    if database_url.startswith("sqlite"):
        path = tmp_path / "replica.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield sqlite_url_for(path)
        return
    url: str = request.getfixturevalue("postgres_replica_url")
    _reset_postgres(url)
    yield url


@pytest.fixture
def replica(settings: Settings, replica_url: str) -> Iterator[Engine]:
    """A writable engine on the replica, for the test to plant rows only it holds."""
    engine = make_engine(settings.model_copy(update={"database_url": replica_url}), pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def runtime(settings: Settings, engine: Engine, replica_url: str) -> Iterator[Runtime]:
    """The app's runtime with TOLOM_DATABASE_READ_URL pointing at the replica."""
    found = Runtime.on(settings.model_copy(update={"database_read_url": replica_url}), engine)
    assert found.reads is not engine
    yield found
    found.reads.dispose()


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _pay(gateway: Gateway, account: str, amount: str) -> int:
    answer = gateway.pay("sochi", account, amount, txn_id=new_txn_id())
    assert answer["result"] == 0, answer
    return int(answer["prv_txn"])


def test_the_read_engine_falls_back_to_the_primary(settings: Settings, engine: Engine) -> None:
    assert settings.database_read_url == ""
    assert Runtime.on(settings, engine).reads is engine


def test_the_read_engine_refuses_writes(runtime: Runtime) -> None:
    with pytest.raises(DBAPIError), runtime.reads.begin() as conn:
        conn.execute(insert(customers).values(inn="01234567890123", name="x", account_id=1))


def test_lists_and_exports_read_the_replica(web: Web, gateway: Gateway, replica: Engine) -> None:
    on_primary = add_customer(web.engine, name="ОсОО «Только на основной»")
    payment = _pay(gateway, on_primary, "150.00")
    on_replica = add_customer(replica, name=REPLICA_ONLY)
    add_agent(replica, "replonly")
    with replica.begin() as conn:
        audit.record(
            conn, actor="user:replica", action="replica.marker", object_type="x", object_id=1
        )
    add_user(web.engine, username="boss", role="admin")
    browser = web.signed_in("boss")

    found = browser.get("/customers", params={"q": "ОсОО"})
    assert found.status_code == 200
    assert on_replica in found.text and on_primary not in found.text
    # The card shows what its user may have just changed: the primary's.
    assert browser.get(f"/customers/{on_primary}").status_code == 200
    assert browser.get(f"/customers/{on_replica}").status_code == 404

    listed = browser.get("/payments")
    assert listed.status_code == 200 and f'href="/payments/{payment}"' not in listed.text
    assert browser.get(f"/payments/{payment}").status_code == 200  # the payment's page: primary
    add_user(web.engine, username="acc", role="accountant")
    exported = web.signed_in("acc").get("/payments/export.csv", params={"q": on_primary})
    assert exported.status_code == 200 and on_primary not in exported.text

    logged = browser.get("/audit")
    assert logged.status_code == 200
    assert "replica.marker" in logged.text and "user:boss" not in logged.text

    calendar = browser.get("/reconciliation")
    assert calendar.status_code == 200
    assert "Агент replonly" in calendar.text and "Агент optima" not in calendar.text


def test_money_is_decided_on_the_primary(web: Web, gateway: Gateway, replica: Engine) -> None:
    """A reversal and a cash-desk payment find what only the primary holds, and write there."""
    inn = add_customer(web.engine)
    payment = _pay(gateway, inn, "200.00")
    add_user(web.engine, username="acc", role="accountant")
    accountant = web.signed_in("acc")
    page = accountant.get(f"/payments/{payment}")
    done = accountant.post(
        f"/payments/{payment}/reverse", data={"csrf": csrf_in(page.text), "reason": "ошибка"}
    )
    assert done.status_code == 303, done.text
    with web.engine.connect() as conn:
        status = conn.execute(
            select(payments_table.c.status).where(payments_table.c.id == payment)
        ).scalar_one()
    assert status == "reversed"

    operator = web.signed_in()
    form = operator.get("/cash")
    fields = {
        "csrf": csrf_in(form.text),
        "reference": reference_in(form.text),
        "channel": "cash_desk",
        "service": "sochi",
        "account": inn,
        "amount": "300",
        "payer": "Асанов А.",
        "note": "",
        "payment_code": "",
        "bank_reference": "",
        "received_at": "",
        "step": "pay",
    }
    paid = operator.post("/cash", data=fields)
    assert paid.status_code == 303, paid.text
    assert _count(web.engine, payments_table) == 2
    assert _count(replica, payments_table) == 0
    assert _count(replica, audit_log) == 0  # nothing was audited on the replica either
