"""A million-line registry imported and matched against a million payments, in PostgreSQL.

What it measures: `tolom.reconciliation.registries.import_registry` end to end, as
`tolom reconcile import` runs it — read the file, parse and validate every line (QIWI text,
the default format), store the registry and its lines (COPY), match them against our
accepted payments of that agent and day (one SQL statement), count the summary and write
the audit line, all in one transaction. The figures are wall-clock seconds per stage.

The data: a throwaway database (tolom_bench_recon, dropped at the end) migrated like
production, one agent, 1 000 000 accepted payments on one business day spread over 20 000
customers, and a registry of the same day with planted discrepancies (--planted of each
class: missing on our side, missing on theirs, amount and account mismatches, duplicate
lines). Payments are inserted with set-based SQL (generate_series), not through the pay
path: matching reads only the `payments` rows, and the ledger is not what is measured here
(the database is dropped afterwards). The script then checks that the summary found
exactly the planted discrepancies, so a fast wrong answer cannot pass for a result.

Then it imports the same file again (nothing changes: the SHA-256 is the current
registry's) and a corrected one (supersedes: a second full import).

This is a benchmark, not a test: it prints figures and never fails on timing; it exits 1
only if it cannot run or the matching is wrong.

Usage:  .venv/bin/python bench/reconcile_million.py [--payments 1000000] [--planted 100]
        [--database-url-admin postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg
from sqlalchemy import text

from tolom import installation
from tolom.agents import service as agents
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.reconciliation import registries
from tolom.settings import Settings

DAY = date(2026, 11, 21)
DATABASE = "tolom_bench_recon"
KINDS = ("missing_ours", "missing_theirs", "amount_mismatch", "account_mismatch", "duplicate")


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _generate(engine_url: str, payments: int) -> None:
    engine = make_engine(Settings(database_url=engine_url))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        installation.prepare(conn)
        agents.create(
            conn, code="qiwi", name="QIWI", networks=["*"], service_codes=["sochi", "eds"]
        )
        agent_id = conn.execute(text("SELECT id FROM agents WHERE code = 'qiwi'")).scalar_one()
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
    last = ["read", started]

    def progress(stage: str, _lines: int) -> None:
        if stage != last[0]:
            now = time.perf_counter()
            stages[str(last[0])] = stages.get(str(last[0]), 0.0) + now - float(last[1])
            last[0], last[1] = stage, now

    content = path.read_bytes()
    done = registries.import_registry(
        engine, "qiwi", content, file_name=path.name, actor="bench", progress=progress
    )
    now = time.perf_counter()
    stages[str(last[0])] = stages.get(str(last[0]), 0.0) + now - float(last[1])
    stages["total"] = now - started
    engine.dispose()
    return done, stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--planted", type=int, default=100, help="discrepancies of each class")
    parser.add_argument(
        "--database-url-admin",
        default=os.environ.get(
            "TOLOM_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a kept database (its registries deleted)"
    )
    args = parser.parse_args()
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
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        print(
            f"PostgreSQL {version[0] if version else '?'}; database {DATABASE} (dropped at the end)"
        )
        started = time.perf_counter()
        if args.reuse:
            _forget_registries(f"{base}/{DATABASE}")
        else:
            _generate(url, args.payments)
            print(f"generated {args.payments:,} payments in {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "qiwi-2026-11-21.txt"
            started = time.perf_counter()
            _registry(args.payments, args.planted, path)
            size = path.stat().st_size / 1e6
            print(f"wrote the registry ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")

            done, stages = _import(url, path)
            print(
                f"\nimport + match of {done.lines:,} lines against {done.summary.our_count:,} "
                f"payments: {stages['total']:.1f} s"
            )
            for stage in ("read", "parse", "store", "match"):
                if stage in stages:
                    print(f"  {stage:<6} {stages[stage]:6.1f} s")
            counts = {kind: done.summary.classes[kind].count for kind in KINDS}
            print(f"  found: {counts}")
            expected = {kind: args.planted for kind in KINDS}
            if counts != expected:
                print(f"WRONG: expected {expected}", file=sys.stderr)
                return 1
            again, again_stages = _import(url, path)
            print(f"same file again: replayed={again.replayed} in {again_stages['total']:.1f} s")
            if not again.replayed:
                return 1
            with path.open("rb+") as file:  # a corrected registry: one amount less
                content = file.read().replace(
                    b"\t00000000000001\t10.00\n", b"\t00000000000001\t9.00\n", 1
                )
            lines = content.split(b"\n")
            total_line = lines[-2].split()
            cents = int(total_line[2].replace(b".", b"")) - 100
            lines[-2] = f"Total: {int(total_line[1])} {cents // 100}.{cents % 100:02d}".encode()
            path.write_bytes(b"\n".join(lines))
            corrected, corrected_stages = _import(url, path)
            print(
                f"corrected registry (supersedes #{corrected.superseded}): "
                f"{corrected_stages['total']:.1f} s"
            )
    finally:
        if not args.keep:
            _admin(admin, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
