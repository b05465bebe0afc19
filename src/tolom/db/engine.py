"""Creating the database engine, with the per-dialect settings payments need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tolom import secretbox
from tolom.settings import Settings

# SQLSTATEs that mean "try again later": serialization failure, deadlock, lock timeout,
# statement timeout, too many connections, server shutting down, cannot connect now, and
# a write on a node that is read-only for now (a failover under way: 25006).
_TEMPORARY_SQLSTATES = {
    "40001",
    "40P01",
    "55P03",
    "57014",
    "53300",
    "57P01",
    "57P02",
    "57P03",
    "25006",
}


def make_engine(
    settings: Settings, *, pool_size: int | None = None, read_only: bool = False
) -> Engine:
    """An engine for `settings.database_url`: WAL SQLite or PostgreSQL with timeouts.

    `read_only`: the engine of `settings.database_read_url` (a replica) instead. Its
    sessions refuse every write (`default_transaction_read_only`, SQLite `query_only`), so
    a page wrongly moved onto it fails loudly rather than writing around the primary, and a
    hot standby's connections are kept rather than dropped as a demoted primary's are."""
    url = make_url(settings.database_read_url if read_only else settings.database_url)
    if url.get_backend_name() == "sqlite":
        return secretbox.attach(_sqlite_engine(settings, url, read_only=read_only), settings)
    size = pool_size or settings.db_pool_size
    pgbouncer = settings.database_pgbouncer
    engine = create_engine(
        url,
        pool_size=size,
        max_overflow=0,
        pool_timeout=10,
        pool_pre_ping=False,
        # A server restart leaves dead connections in the pool; a temporary error for the
        # request that meets one is correct, and the pool replaces it.
        pool_recycle=3600,
        # Behind PgBouncer in transaction mode (1.18 in Debian 12 keeps no prepared
        # statements) each transaction may run on another server connection, where a
        # statement psycopg prepared on the last one does not exist: never prepare (this
        # also turns off `prepare=True` on the gateway's batch road, pgbatch).
        connect_args={"prepare_threshold": None} if pgbouncer else {},
    )
    lock_ms, statement_ms = settings.lock_timeout_ms, settings.statement_timeout_ms

    def _drop_read_only(dbapi_connection: Any, record: Any) -> None:
        # After a failover a pooled connection may reach a node that turned read-only (a
        # primary being demoted, or one pg_auto_failover holds read-only while it promotes):
        # its writes fail with 25006 ("retry") for as long as the pool keeps it. The
        # server reports both settings to the client, so checking costs no round trip;
        # the next checkout connects afresh and `target_session_attrs=read-write` finds
        # the primary (docs/deployment.md#failover).
        if _read_only(dbapi_connection):
            record.invalidate()

    if not read_only:
        event.listen(engine, "checkin", _drop_read_only)
    if pgbouncer:
        # A session's SET would stay on whichever server connection ran it: set the
        # timeouts for each transaction instead (one round trip more per transaction).
        timeouts = (
            f"SELECT set_config('lock_timeout', '{int(lock_ms)}', true),"
            f" set_config('statement_timeout', '{int(statement_ms)}', true),"
            " set_config('idle_in_transaction_session_timeout', '60000', true)"
            + (", set_config('transaction_read_only', 'on', true)" if read_only else "")
        )

        @event.listens_for(engine, "begin")
        def _local_timeouts(connection: Any) -> None:
            connection.exec_driver_sql(timeouts)

        return secretbox.attach(engine, settings)

    @event.listens_for(engine, "connect")
    def _timeouts(dbapi_connection: Any, _record: Any) -> None:
        # Once per connection rather than per transaction: no extra round trip on the hot path.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(lock_ms)}")
            cursor.execute(f"SET statement_timeout = {int(statement_ms)}")
            cursor.execute("SET idle_in_transaction_session_timeout = 60000")
            if read_only:
                cursor.execute("SET default_transaction_read_only = on")
        dbapi_connection.autocommit = autocommit

    return secretbox.attach(engine, settings)


def _read_only(dbapi_connection: Any) -> bool:
    """A psycopg connection whose server reported it read-only (a hot standby, or
    default_transaction_read_only on): reported parameters, no round trip."""
    if dbapi_connection is None or getattr(dbapi_connection, "closed", True):
        return False
    status = dbapi_connection.info.parameter_status
    return "on" in (status("default_transaction_read_only"), status("in_hot_standby"))


def _sqlite_engine(settings: Settings, url: URL, *, read_only: bool = False) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # sqlite3's `timeout` is SQLite's busy timeout, the counterpart of PostgreSQL's
    # lock_timeout: how long a writer queues for the write lock before "retry".
    engine = create_engine(
        url,
        connect_args={"timeout": settings.lock_timeout_ms / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE below
        # is the only BEGIN: writers then queue on busy_timeout instead of failing with
        # "database is locked" when a read transaction tries to upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        if read_only:
            cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    # A query_only connection may not take the write lock: its reads begin deferred.
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def driver_error(error: BaseException) -> BaseException | None:
    """The driver's own exception behind `error` (SQLAlchemy wraps it; raw psycopg on the
    gateway's fast road does not), or None when it is no database error at all."""
    original = error.orig if isinstance(error, DBAPIError) else error
    if original is None or not type(original).__module__.startswith(("psycopg", "sqlite3")):
        return None
    return original


def is_temporary(error: BaseException) -> bool:
    """True when a database error means "retry later" rather than "this will never work"."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, PoolTimeout):  # every connection of the pool is busy
        return True
    original = driver_error(error)
    if original is None:
        return False
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _TEMPORARY_SQLSTATES or sqlstate.startswith("08")
    name = type(original).__name__
    if name == "OperationalError":
        # psycopg raises OperationalError without SQLSTATE when it cannot connect at all;
        # sqlite3 raises it for "database is locked" and disk I/O trouble.
        return True
    return False


def is_outage(error: BaseException) -> bool:
    """The database itself is away (no connection, shutting down), not one statement's
    trouble: trying again at once, or with fewer rows, would not help."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    original = driver_error(error)
    if original is None or not is_temporary(error):
        return False
    sqlstate = getattr(original, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P", "25006"))
