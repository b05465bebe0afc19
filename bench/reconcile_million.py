"""A million-line registry imported and matched against a million payments, on PostgreSQL
and on SQLite, while an agent keeps paying.

What it measures: `tolom.reconciliation.registries.import_registry` end to end, as
`tolom reconcile import` runs it — read the file, parse and validate every line (QIWI text,
the default format), store the registry and its lines, match them against our accepted
payments of that agent and day, count the summary and write the audit line. PostgreSQL does
it in one transaction (COPY, one full-join statement); SQLite stages and matches the lines
in TEMP tables and writes them in short transactions (see the registries module). The
figures are wall-clock seconds per stage.

Meanwhile a served instance (`tolom serve` in its own process, on the same database) gets
OSMP pays from another agent at a steady rate (--pay-rate per second, one at a time over
HTTP keep-alive), as a cash desk network would send them: the script reports how many were
answered during the import, their result codes (0 = accepted, 1 = "retry": the database
lock was not had in TOLOM_LOCK_TIMEOUT_MS) and their latency (p50, p99, max), beside the
same figures for a quiet period before the import.

The data: a throwaway database (PostgreSQL: tolom_bench_recon, dropped at the end; SQLite:
a file in a temporary folder) migrated like production, one agent, 1 000 000 accepted
payments on one business day spread over 20 000 customers, and a registry of the same day
with planted discrepancies (--planted of each class: missing on our side, missing on
theirs, amount and account mismatches, duplicate lines). Payments are inserted with
set-based SQL, not through the pay path: matching reads only the `payments` rows, and the
ledger is not what is measured here (the database is dropped afterwards). The script then
checks that the summary found exactly the planted discrepancies, so a fast wrong answer
cannot pass for a result.

Then it imports the same file again (nothing changes: the SHA-256 is the current
registry's) and a corrected one (supersedes: a second full import, pays running again).

This is a benchmark, not a test: it prints figures and never fails on timing; it exits 1
only if it cannot run, the matching is wrong or a pay was not answered at all.

Usage:  .venv/bin/python bench/reconcile_million.py [--payments 1000000] [--planted 100]
        [--databases sqlite,postgresql] [--pay-rate 20]
        [--database-url-admin postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from xml.etree import ElementTree

import httpx
import psycopg
from sqlalchemy import text

from tolom import installation, secretbox
from tolom.agents import service as agents
from tolom.billing import customers
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.reconciliation import registries
from tolom.settings import Settings, get_settings

DAY = date(2026, 11, 21)
DATABASE = "tolom_bench_recon"
KINDS = ("missing_ours", "missing_theirs", "amount_mismatch", "account_mismatch", "duplicate")


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


PAYER_INN = "01234567890123"

# The same payments in SQLite: a recursive counter instead of generate_series; timestamps
# written as SQLAlchemy writes them (UTC, "YYYY-MM-DD HH:MM:SS.ffffff").
_SQLITE_PAYMENTS = """
    WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter WHERE n < :n)
    INSERT INTO payments (agent_id, txn_id, service, account, amount, status,
                          txn_date_raw, txn_date, business_date)
    SELECT :agent, CAST(n AS TEXT), 'sochi', printf('%014d', n % 20000),
           ((n * 7919) % 500000) + 100, 'accepted',
           strftime('%Y%m%d%H%M%S', '2026-11-21', '+' || (n % 86400) || ' seconds'),
           strftime('%Y-%m-%d %H:%M:%S', '2026-11-21', '+' || (n % 86400) || ' seconds',
                    '-6 hours') || '.000000',
           '2026-11-21'
    FROM counter
"""


def _generate(engine_url: str, payments: int) -> str:
    """The database with its million payments; the paying agent's secret."""
    engine = make_engine(Settings(database_url=engine_url))
    migrate.upgrade(engine)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.execute(text("SET LOCAL statement_timeout = 0"))
        installation.prepare(conn)
        agents.create(
            conn, code="qiwi", name="QIWI", networks=["*"], service_codes=["sochi", "eds"]
        )
        secret = agents.create(
            conn, code="kassa", name="Касса", networks=["*"], service_codes=["sochi"]
        )
        customers.add(conn, inn=PAYER_INN, name="Плательщик", legal_form="ОсОО")
        agent_id = conn.execute(text("SELECT id FROM agents WHERE code = 'qiwi'")).scalar_one()
    if not postgres:
        with engine.begin() as conn:
            conn.execute(text(_SQLITE_PAYMENTS), {"agent": agent_id, "n": payments})
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        engine.dispose()
        return secret
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        # txn_id n, at second n % 86400 of the day, account one of 20 000 INNs, amount
        # 1.00 … 5 000.00 som: all deterministic, so the registry can be written to match.
        conn.execute(
            text(
                """
                INSERT INTO payments (agent_id, txn_id, service, account, amount, status,
                                      txn_date_raw, txn_date, business_date)
                SELECT :agent, n::text, 'sochi', lpad((n % 20000)::text, 14, '0'),
                       ((n * 7919) % 500000) + 100, 'accepted',
                       to_char(timestamp '2026-11-21' + (n % 86400) * interval '1 second',
                               'YYYYMMDDHH24MISS'),
                       (timestamp '2026-11-21' + (n % 86400) * interval '1 second')
                           AT TIME ZONE 'Asia/Bishkek',
                       date '2026-11-21'
                FROM generate_series(1::bigint, :n) AS n
                """
            ),
            {"agent": agent_id, "n": payments},
        )
    with engine.connect() as conn:
        conn.execute(text("ANALYZE payments"))
        conn.commit()
    engine.dispose()
    return secret


def _forget_registries(url: str) -> None:
    """A kept database back to its payments alone (the benchmark's earlier imports gone)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "TRUNCATE discrepancies, registry_lines, registries, reconciliation_days, audit_log"
        )


def _amount(n: int) -> int:
    return ((n * 7919) % 500000) + 100


def _registry(payments: int, planted: int, path: Path) -> None:
    """The agent's registry of the day: every payment, with `planted` of each class."""
    rng = random.Random(2026)
    chosen = rng.sample(range(1, payments + 1), 4 * planted)
    missing_theirs = set(chosen[:planted])
    amount_off = set(chosen[planted : 2 * planted])
    account_off = set(chosen[2 * planted : 3 * planted])
    duplicated = set(chosen[3 * planted :])
    total, count = 0, 0
    with path.open("w", encoding="utf-8", newline="\n") as out:

        def line(txn: int, second: int, account: str, amount: int) -> None:
            nonlocal total, count
            hh, rest = divmod(second, 3600)
            out.write(
                f"{txn}\t21.11.2026\t{hh:02d}:{rest // 60:02d}:{rest % 60:02d}\t{account}\t"
                f"{amount // 100}.{amount % 100:02d}\n"
            )
            total += amount
            count += 1

        for n in range(1, payments + 1):
            if n in missing_theirs:
                continue
            account = f"{n % 20000:014d}"
            amount = _amount(n) + (100 if n in amount_off else 0)
            if n in account_off:
                account = f"{(n + 1) % 20000:014d}"
            line(n, n % 86400, account, amount)
            if n in duplicated:
                line(n, n % 86400, account, amount)
        for k in range(planted):  # ours are 1 … payments: these are unknown to us
            line(payments + 1 + k, 43200, "00000000000001", 1000)
        out.write(f"Total: {count} {total // 100}.{total % 100:02d}\n")


def _import(url: str, path: Path) -> tuple[registries.Imported, dict[str, float]]:
    engine = make_engine(Settings(database_url=url))
    stages: dict[str, float] = {}
    started = time.perf_counter()
    last_stage, last_at = ["read"], [started]

    def progress(stage: str, _lines: int) -> None:
        if stage != last_stage[0]:
            now = time.perf_counter()
            stages[last_stage[0]] = stages.get(last_stage[0], 0.0) + now - last_at[0]
            last_stage[0], last_at[0] = stage, now

    content = path.read_bytes()
    done = registries.import_registry(
        engine, "qiwi", content, file_name=path.name, actor="bench", progress=progress
    )
    now = time.perf_counter()
    stages[last_stage[0]] = stages.get(last_stage[0], 0.0) + now - last_at[0]
    stages["total"] = now - started
    engine.dispose()
    return done, stages


# --- an agent paying meanwhile, through a served instance -----------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`tolom serve` on the bench's database, in its own process (as in production)."""

    def __init__(self, url: str, spool: Path) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "TOLOM_DATABASE_URL": url,
            "TOLOM_REQUEST_SPOOL_DIR": str(spool),
            "TOLOM_AGENT_CACHE_SECONDS": "60",
        }
        tolom = Path(sys.executable).with_name("tolom")
        self.process = subprocess.Popen(
            [str(tolom), "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/gateway/osmp/sochi", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("tolom serve did not start")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Pays:
    """OSMP pays of 10.00 som, one at a time, every 1/rate s, until stopped."""

    base: str
    secret: str
    rate: float
    first_txn: int
    latencies: list[float] = field(default_factory=list)
    results: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Pays:
        self._thread.start()
        return self

    def stop(self) -> Pays:
        self._stop.set()
        self._thread.join()
        return self

    def _run(self) -> None:
        token = base64.b64encode(f"kassa:{self.secret}".encode()).decode()
        txn = self.first_txn
        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Basic {token}"}, timeout=60
        ) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                txn += 1
                try:
                    answer = client.get(
                        "/gateway/osmp/sochi",
                        params={
                            "command": "pay",
                            "txn_id": str(txn),
                            "txn_date": "20261122120000",
                            "account": PAYER_INN,
                            "sum": "10.00",
                        },
                    )
                    result = ElementTree.fromstring(answer.content).findtext("result") or "?"
                except (httpx.HTTPError, ElementTree.ParseError) as error:
                    result = type(error).__name__
                took = time.perf_counter() - began
                self.latencies.append(took)
                self.results[result] += 1
                self._stop.wait(max(0.0, 1 / self.rate - took))

    def report(self, label: str) -> str:
        if not self.latencies:
            return f"  pays {label}: none sent"
        ordered = sorted(self.latencies)

        def at(share: float) -> float:
            return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]

        codes = ", ".join(f"result {code}: {n}" for code, n in sorted(self.results.items()))
        return (
            f"  pays {label}: {len(ordered)} answered ({codes}); "
            f"p50 {at(0.50):.0f} ms, p99 {at(0.99):.0f} ms, max {1000 * ordered[-1]:.0f} ms"
        )


def _import_while_paying(
    url: str, path: Path, server: Server, secret: str, rate: float, first_txn: int
) -> tuple[registries.Imported, dict[str, float], Pays | None]:
    if rate <= 0:
        done, stages = _import(url, path)
        return done, stages, None
    pays = Pays(server.base, secret, rate, first_txn).start()
    try:
        done, stages = _import(url, path)
    finally:
        pays.stop()
    return done, stages, pays


def _corrected(path: Path) -> None:
    """The registry corrected: one amount less (and the Total line to match)."""
    content = path.read_bytes().replace(
        b"\t00000000000001\t10.00\n", b"\t00000000000001\t9.00\n", 1
    )
    lines = content.split(b"\n")
    total_line = lines[-2].split()
    cents = int(total_line[2].replace(b".", b"")) - 100
    lines[-2] = f"Total: {int(total_line[1])} {cents // 100}.{cents % 100:02d}".encode()
    path.write_bytes(b"\n".join(lines))


def run(name: str, url: str, secret: str, args: argparse.Namespace, folder: Path) -> int:
    """Import, again, corrected, on one database; 0, or 1 when something is wrong."""
    path = folder / "qiwi-2026-11-21.txt"
    started = time.perf_counter()
    _registry(args.payments, args.planted, path)
    size = path.stat().st_size / 1e6
    print(f"wrote the registry ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    server = Server(url, folder / "spool")
    try:
        quiet = None
        if args.pay_rate > 0:
            quiet = Pays(server.base, secret, args.pay_rate, 10_000_000).start()
            time.sleep(args.quiet_seconds)
            quiet.stop()
        done, stages, pays = _import_while_paying(
            url, path, server, secret, args.pay_rate, 20_000_000
        )
        print(
            f"\n[{name}] import + match of {done.lines:,} lines against "
            f"{done.summary.our_count:,} payments: {stages['total']:.1f} s"
        )
        for stage in ("read", "parse", "store", "match"):
            if stage in stages:
                print(f"  {stage:<6} {stages[stage]:6.1f} s")
        if quiet is not None:
            print(quiet.report(f"before the import ({args.quiet_seconds:.0f} s)"))
        if pays is not None:
            print(pays.report("during the import"))
        counts = {kind: done.summary.classes[kind].count for kind in KINDS}
        print(f"  found: {counts}")
        expected = {kind: args.planted for kind in KINDS}
        if counts != expected:
            print(f"WRONG: expected {expected}", file=sys.stderr)
            return 1
        again, again_stages = _import(url, path)
        print(f"  same file again: replayed={again.replayed} in {again_stages['total']:.1f} s")
        if not again.replayed:
            return 1
        _corrected(path)
        corrected, corrected_stages, pays_again = _import_while_paying(
            url, path, server, secret, args.pay_rate, 30_000_000
        )
        print(
            f"  corrected registry (supersedes #{corrected.superseded}): "
            f"{corrected_stages['total']:.1f} s"
        )
        if pays_again is not None:
            print(pays_again.report("during the corrected import"))
        unanswered = [
            p for p in (quiet, pays, pays_again) if p is not None and set(p.results) - {"0", "1"}
        ]
        if unanswered:
            print("WRONG: a pay was not answered with a result code", file=sys.stderr)
            return 1
    finally:
        server.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--planted", type=int, default=100, help="discrepancies of each class")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    parser.add_argument(
        "--pay-rate", type=float, default=20.0, help="OSMP pays per second meanwhile (0: none)"
    )
    parser.add_argument(
        "--quiet-seconds", type=float, default=5.0, help="pays measured before the import"
    )
    parser.add_argument(
        "--database-url-admin",
        default=os.environ.get(
            "TOLOM_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="PostgreSQL: keep the database")
    parser.add_argument(
        "--reuse", action="store_true", help="PostgreSQL: reuse a kept database (registries gone)"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.databases.split(",") if name.strip()]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average "
        + " ".join(f"{value:.1f}" for value in os.getloadavg())
    )
    failed = 0
    for name in chosen:
        with tempfile.TemporaryDirectory() as folder_name:
            folder = Path(folder_name)
            if name == "sqlite":
                failed |= _run_sqlite(args, folder)
            elif name == "postgresql":
                failed |= _run_postgres(args, folder)
            else:
                parser.error(f"unknown database {name}")
    return failed


def _run_sqlite(args: argparse.Namespace, folder: Path) -> int:
    import sqlite3

    url = f"sqlite:///{folder / 'tolom.sqlite3'}"
    print(f"\nSQLite {sqlite3.sqlite_version}; database {folder / 'tolom.sqlite3'} (temporary)")
    started = time.perf_counter()
    secret = _generate(url, args.payments)
    print(f"generated {args.payments:,} payments in {time.perf_counter() - started:.1f} s")
    return run("SQLite", url, secret, args, folder)


def _run_postgres(args: argparse.Namespace, folder: Path) -> int:
    if not os.environ.get("TOLOM_SECRET_KEY_FILE"):  # required with PostgreSQL
        key_file = folder / "secret.key"
        secretbox.create_key_file(key_file)
        os.environ["TOLOM_SECRET_KEY_FILE"] = str(key_file)  # here and in the served instance
        get_settings.cache_clear()
    admin = args.database_url_admin
    base = admin.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{DATABASE}"
    if not args.reuse:
        _admin(admin, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        _admin(admin, f"CREATE DATABASE {DATABASE}")
    try:
        with psycopg.connect(f"{base}/{DATABASE}") as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(
            f"\nPostgreSQL {version[0] if version else '?'}; database {DATABASE} "
            "(dropped at the end)"
        )
        started = time.perf_counter()
        if args.reuse:
            _forget_registries(f"{base}/{DATABASE}")
            engine = make_engine(Settings(database_url=url))
            with engine.begin() as conn:
                secret = agents.rotate_secret(conn, "kassa")
            engine.dispose()
        else:
            secret = _generate(url, args.payments)
            print(f"generated {args.payments:,} payments in {time.perf_counter() - started:.1f} s")
        return run("PostgreSQL", url, secret, args, folder)
    finally:
        if not args.keep:
            _admin(admin, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
