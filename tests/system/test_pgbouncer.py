"""Tolom through a real PgBouncer in transaction mode (deploy/pgbouncer/pgbouncer.ini, with
addresses, auth and paths changed for the test) in front of the test PostgreSQL: a few
hundred OSMP check/pay pairs and concurrent identical pays are all answered correctly,
the PostgreSQL timeouts hold in every transaction, and the ledger verifies.

PgBouncer gets a database of its own (`<TOLOM_TEST_SCHEMA>_pgbouncer`, dropped after):
transaction pooling passes no `options`, so the suite's `search_path` schema cannot be used.
"""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from tests.conftest import PG_SCHEMA, PG_URL
from tests.factories import Gateway, add_customer, new_txn_id, parse_answer
from tolom import installation
from tolom.app import create_app
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.ledger import accounts as ledger_accounts
from tolom.ledger.verify import verify_ledger
from tolom.runtime import Runtime
from tolom.settings import Settings

INI = Path(__file__).parents[2] / "deploy" / "pgbouncer" / "pgbouncer.ini"
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
DATABASE = f"{PG_SCHEMA}_pgbouncer"
INSTALL_HINT = (
    "pgbouncer is missing: `apt-get install -y pgbouncer` (as root; `scripts/dev test` "
    "does it when it can)"
)

pytestmark = pytest.mark.skipif(PG_URL is None, reason="needs TOLOM_TEST_DATABASE_URL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _admin(statement: str) -> None:
    assert PG_URL is not None
    plain = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def _config(folder: Path, port: int) -> Path:
    """The shipped file, pointing at the test PostgreSQL, with trust auth and paths here."""
    assert PG_URL is not None
    server = make_url(PG_URL)
    config = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"), strict=True)
    config.read(INI)
    assert config["pgbouncer"]["pool_mode"] == "transaction"
    config["databases"] = {
        DATABASE: f"host={server.host or '127.0.0.1'} port={server.port or 5432} "
        f"dbname={DATABASE} user={server.username or 'postgres'}"
    }
    deployed = config["pgbouncer"]
    deployed.update(
        listen_addr="127.0.0.1",
        listen_port=str(port),
        unix_socket_dir="",
        auth_type="trust",
        auth_file=str(folder / "userlist.txt"),
        logfile=str(folder / "pgbouncer.log"),
        pidfile=str(folder / "pgbouncer.pid"),
        # Few server connections for many clients: every transaction may land on another.
        default_pool_size="3",
        min_pool_size="0",
        max_db_connections="6",
    )
    (folder / "userlist.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    path = folder / "pgbouncer.ini"
    with path.open("w") as out:
        config.write(out)
    return path


@pytest.fixture
def pgbouncer_url() -> Iterator[str]:
    """A migrated database behind a running PgBouncer; both gone after the test."""
    if not Path(PGBOUNCER).exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    assert PG_URL is not None
    _admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DATABASE}")
    direct = make_url(PG_URL).set(database=DATABASE).render_as_string(hide_password=False)
    ledger_accounts._system_cache.clear()
    engine = make_engine(Settings(database_url=direct), pool_size=1)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        installation.prepare(conn)
    engine.dispose()

    folder = Path(tempfile.mkdtemp(prefix="tolom-pgbouncer-"))
    os.chmod(folder, 0o777)  # pgbouncer refuses root: it runs as `postgres` then
    port = _free_port()
    command = [PGBOUNCER, str(_config(folder, port))]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                log_file = folder / "pgbouncer.log"
                said = process.stdout.read().decode() if process.stdout else ""
                said += log_file.read_text() if log_file.exists() else ""
                pytest.fail(f"pgbouncer did not start: {said}")
            time.sleep(0.05)
        yield (
            make_url(direct).set(port=port, host="127.0.0.1").render_as_string(hide_password=False)
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
        _admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def test_tolom_works_through_pgbouncer_in_transaction_mode(
    pgbouncer_url: str, secret_key_file: Path, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=pgbouncer_url,
        database_pgbouncer=True,
        secret_key_file=str(secret_key_file),
        agent_cache_seconds=0,
        lock_timeout_ms=2000,
        statement_timeout_ms=7000,
        request_spool_dir=str(tmp_path / "spool"),
    )
    engine = make_engine(settings, pool_size=8)
    try:
        # The timeouts hold in every transaction, whichever server connection it runs on.
        for _ in range(10):
            with engine.begin() as conn:
                assert conn.execute(text("SHOW lock_timeout")).scalar() == "2s"
                assert conn.execute(text("SHOW statement_timeout")).scalar() == "7s"

        app = create_app(runtime=Runtime.on(settings, engine))
        gateway = Gateway.create(app, engine, code="optima")
        inns = [add_customer(engine) for _ in range(5)]
        for n in range(300):
            inn = inns[n % len(inns)]
            assert gateway.check("sochi", inn)["result"] == 0
            assert gateway.pay("sochi", inn, "10.00")["result"] == 0

        # The same pay, sent at once by 12 threads: one payment, the same receipt for all.
        txn_id = new_txn_id()
        params = {
            "command": "pay",
            "txn_id": txn_id,
            "txn_date": "20261121143005",
            "account": inns[0],
            "sum": "25.00",
        }

        def pay_once(_: int) -> tuple[int, str]:
            client = TestClient(app, client=("127.0.0.1", 50001))
            response = client.get("/gateway/osmp/sochi", params=params, headers=gateway.auth_header)
            answer = parse_answer(response.text)
            return answer["result"], answer["prv_txn"]

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(pay_once, range(12)))
        assert {result for result, _ in answers} == {0}
        assert len({receipt for _, receipt in answers}) == 1

        with engine.connect() as conn:
            paid = conn.execute(
                text("SELECT count(*), sum(amount) FROM payments WHERE status = 'accepted'")
            ).one()
            assert tuple(paid) == (301, 300 * 1000 + 2500)
            assert verify_ledger(conn) == []
    finally:
        engine.dispose()
