"""Test fixtures: every database test runs on SQLite and, when TOLOM_TEST_DATABASE_URL is
set, on PostgreSQL too; the ledger is verified after every test that used the database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from typer.testing import Result

from tests.factories import Cli, Gateway, run_cli
from tests.mailserver import MailServer
from tolom import installation, secretbox
from tolom.app import create_app
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.ledger import accounts as ledger_accounts
from tolom.ledger.verify import verify_ledger
from tolom.runtime import Runtime
from tolom.settings import Settings, get_settings

PG_URL = os.environ.get("TOLOM_TEST_DATABASE_URL")
PG_SCHEMA = os.environ.get("TOLOM_TEST_SCHEMA", "tolom_test")  # parallel runs: differ
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(scope="session", autouse=True)
def secret_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The key file sealing agents' and webhooks' secrets, in TOLOM_SECRET_KEY_FILE for the
    whole run: the CLI and the server processes tests start find the same key."""
    path = tmp_path_factory.mktemp("keys") / secretbox.KEY_FILE_NAME
    secretbox.create_key_file(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOLOM_SECRET_KEY_FILE", str(path))
        yield path


def _prepare(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        installation.prepare(conn)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded SQLite file; each test gets a copy (faster than migrating)."""
    path = tmp_path_factory.mktemp("template") / "tolom.sqlite3"
    engine = make_engine(Settings(database_url=f"sqlite:///{path}"))
    _prepare(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A fresh schema in the test database. Unreachable PostgreSQL fails the run: never skip."""
    assert PG_URL is not None
    url = make_url(PG_URL)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
    except psycopg.OperationalError as error:
        pytest.fail(f"TOLOM_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {error}")
    scoped = url.update_query_dict({"options": f"-csearch_path={PG_SCHEMA}"})
    rendered = scoped.render_as_string(hide_password=False)
    engine = make_engine(Settings(database_url=rendered))
    _prepare(engine)
    engine.dispose()
    return rendered


def _reset_postgres(url: str) -> None:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            installation.prepare(conn)
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated, seeded database of each backend."""
    ledger_accounts._system_cache.clear()  # ids restart in every fresh database
    if request.param == "sqlite":
        path = tmp_path / "tolom.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path, secret_key_file: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key_file=str(secret_key_file),
        agent_cache_seconds=0,
        lock_timeout_ms=2000,
        request_spool_dir=str(tmp_path / "spool"),
    )


@pytest.fixture
def engine(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The database engine; after the test, the ledger must still balance."""
    engine = make_engine(settings, pool_size=4)
    yield engine
    if request.node.get_closest_marker("corrupts_ledger") is None:
        with engine.connect() as conn:
            problems = verify_ledger(conn)
        assert problems == [], f"ledger broken after the test: {problems}"
    engine.dispose()


@pytest.fixture
def runtime(settings: Settings, engine: Engine) -> Runtime:
    return Runtime.on(settings, engine)


@pytest.fixture
def app(runtime: Runtime):  # type: ignore[no-untyped-def]
    return create_app(runtime=runtime)


@pytest.fixture
def gateway(app, engine: Engine) -> Gateway:  # type: ignore[no-untyped-def]
    """An agent `optima` allowed from anywhere, with both services, and a client for it."""
    return Gateway.create(app, engine, code="optima")


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """`cli("agent", "list")` runs `tolom agent list` on the test database."""

    def run(*args: str, input: str | None = None) -> Result:
        return run_cli(database_url, monkeypatch, list(args), input=input)

    yield run
    get_settings.cache_clear()


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    """A real SMTP server on 127.0.0.1 for the test; stopped after it."""
    server = MailServer().start()
    yield server
    server.stop()


def sqlite_url_for(path: Path) -> str:
    return f"sqlite:///{quote(str(path))}"
