"""The engine after a failover: a node that turned read-only means "retry", and the pool
lets go of connections to it (docs/deployment.md#failover)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from tests.conftest import PG_URL
from tolom.db.engine import driver_error, is_outage, is_temporary, make_engine
from tolom.settings import Settings

pytestmark = pytest.mark.skipif(PG_URL is None, reason="needs TOLOM_TEST_DATABASE_URL")


@pytest.fixture
def engine() -> Iterator[Engine]:
    assert PG_URL is not None
    engine = make_engine(Settings(database_url=PG_URL), pool_size=1)
    yield engine
    engine.dispose()


def test_a_write_on_a_read_only_node_is_temporary(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        with pytest.raises(DBAPIError) as caught:
            conn.exec_driver_sql("CREATE TEMP TABLE drill (x int)")
    assert getattr(driver_error(caught.value), "sqlstate", None) == "25006"
    assert is_temporary(caught.value)
    # Every call of a batch would meet the same node: no point running them one by one.
    assert is_outage(caught.value)


def test_the_pool_drops_a_connection_whose_node_turned_read_only(engine: Engine) -> None:
    pid = "SELECT pg_backend_pid()"
    with engine.connect() as conn:
        first = conn.exec_driver_sql(pid).scalar_one()
    with engine.connect() as conn:  # a writable connection stays in the pool
        assert conn.exec_driver_sql(pid).scalar_one() == first
        # What a demoted primary, or pg_auto_failover's stop_replication, does to a session.
        conn.exec_driver_sql("SET default_transaction_read_only = on")
        conn.commit()
        with pytest.raises(DBAPIError) as caught:
            conn.exec_driver_sql("CREATE TEMP TABLE drill (x int)")
        assert is_temporary(caught.value)
    with engine.begin() as conn:  # the next checkout connected afresh, and may write
        assert conn.exec_driver_sql(pid).scalar_one() != first
        assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar_one() == "off"
        conn.exec_driver_sql("CREATE TEMP TABLE drill (x int)")
        conn.exec_driver_sql("INSERT INTO drill VALUES (1)")
