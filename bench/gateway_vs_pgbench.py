"""How fast is the OSMP gateway compared with what this PostgreSQL can do at all?

What it measures, in ONE run on one machine and against one PostgreSQL server:

1. `pgbench`'s built-in TPC-B-like script (`-b tpcb-like`: three UPDATEs, one SELECT and
   one INSERT in a transaction) with the same client count and duration as the gateway
   runs: the ceiling a write transaction of roughly a payment's shape has here. Its
   transaction log (`-l`) gives p50/p99 as well as the tps.
2. `tolom serve` as in production (several uvicorn worker processes, PostgreSQL, no access
   log, default pool), driven by `wrk` with bench/pay.lua: unique `pay` requests (a new
   txn_id every time, spread over many customers), HTTP Basic auth, and every answer checked
   for `<result>0</result>`. Printed: pay/s, p50 and p99 latency, and pay/s ÷ pgbench tps.
3. The same with bench/check.lua for `check` (a lookup plus the request-log INSERT).
4. Correctness after the load: `tolom ledger verify` must pass, and the number of payments
   in the database must equal the successful pay answers (exactly once). wrk abandons the
   requests still in flight when its time is up; the server may commit those, so up to
   --connections payments more than wrk counted are expected and reported as such.

How: two throwaway databases (tolom_bench, tolom_pgbench) are created on the server of
--database-url-admin and dropped at the end, also on failure or Ctrl-C; every process the
script starts (pgbench, the server and its workers, wrk) is stopped by the end. A CHECKPOINT
precedes each measured phase, so one phase's dirty pages are not written during the next,
and then the script waits (at most --quiet-wait s) until the machine is idle: it may be
shared. For every measured phase it also reports where the CPU went (from /proc): cores
and CPU milliseconds per operation for PostgreSQL, the tolom server, the load generator,
interrupts and everything else.
The server gets only TOLOM_DATABASE_URL (other TOLOM_* variables and any .env are left out),
so it runs with the shipped defaults.

Why --scale 16: in TPC-B every transaction updates one of `scale` branch rows, so with fewer
branches than clients pgbench measures waits on those row locks, not the server. Scale =
clients (16) is the pgbench documentation's advice and matches the gateway's own hot spot,
the agent's clearing account, whose balance is spread over 16 rows (HOT_ACCOUNT_SLOTS).
At 16 the data set (about 240 MB) still fits in the page cache, as the gateway's does.

This is a benchmark, not a test: it prints figures and how they were obtained and never
fails on timing. It exits 1 only if it cannot run, or if the ledger does not balance or the
payment count contradicts the answers (a correctness failure, not a slow one).

Usage:  .venv/bin/python bench/gateway_vs_pgbench.py [--duration 30] [--connections 16]
        [--workers 2] [--scale 16] [--json results.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BENCH_DB = "tolom_bench"
PGBENCH_DB = "tolom_pgbench"
CUSTOMERS = 1000
AGENT = "bench"
AGENT_ZONE = "Asia/Bishkek"  # the default zone of `tolom agent create`
WRK_THREADS = 2
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
TARGET_CONNECTIONS = 16


# --- results -------------------------------------------------------------------------


@dataclass
class PgbenchResult:
    command: str
    tps: float
    latency_avg_ms: float
    p50_ms: float | None
    p99_ms: float | None
    transactions: int
    failed: int
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class WrkResult:
    command: str
    wrk_command: str
    nonce: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    responses: int
    ok: int
    not_ok: int
    non2xx: int
    socket_errors: dict[str, int]
    ratio_to_pgbench: float | None = None
    bad_answer_sample: str | None = None
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class Integrity:
    ledger_verify_ok: bool
    ledger_verify_output: str
    payments_in_db: int
    pay_ok_answers: int
    abandoned_in_flight_max: int
    logged_pay_ok: int
    consistent: bool
    note: str


@dataclass
class Report:
    started_at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    method: list[str]
    pgbench: PgbenchResult | None = None
    pay: WrkResult | None = None
    check: WrkResult | None = None
    integrity: Integrity | None = None
    target: dict[str, Any] = field(default_factory=dict)


# --- small helpers -------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM (or SIGHUP) arrived: unwind so every `finally` cleans up."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tool(name: str) -> str:
    """A project console script from this virtualenv, or a system program."""
    for candidate in (Path(sys.executable).parent / name, ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: {name} not found (install it: see bench/README.md)")
    return found


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run a command to completion; its stdout, or SystemExit with its output."""
    completed = subprocess.run(
        list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(argv[:3])} … exited {completed.returncode}\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return completed.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def to_ms(value: str, unit: str) -> float:
    """A wrk duration ("850.00us", "12.3ms", "1.02s", "1.5m") in milliseconds."""
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]
    return float(value) * factor


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in 0..100)."""
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


# --- where the CPU went ----------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far: the machine, and the processes of each side of a phase."""

    at: float
    busy: float  # all CPUs, everything but idle and iowait
    irq: float  # of which interrupts and softirqs (loopback TCP is mostly softirq)
    postgres: float  # every `postgres` process, with the exited backends (postmaster's cutime)
    tolom: float  # the `tolom serve` session: master and workers
    loadgen: float  # this script's finished children: the pgbench or wrk run just measured


def cpu_snapshot(server_group: int | None) -> CpuSnapshot:
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    jiffies = [int(x) for x in fields[:8]]
    busy = sum(jiffies) - jiffies[3] - jiffies[4]  # minus idle and iowait
    irq = jiffies[5] + jiffies[6]
    postgres = tolom = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process has gone
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        rest = text[text.rindex(")") + 2 :].split()
        used = sum(int(x) for x in rest[11:15])  # utime, stime, cutime, cstime
        if comm == "postgres":
            postgres += used
        elif server_group is not None and int(rest[2]) == server_group:
            tolom += used
    children = os.times()
    return CpuSnapshot(
        at=time.monotonic(),
        busy=busy / tick,
        irq=irq / tick,
        postgres=postgres / tick,
        tolom=tolom / tick,
        loadgen=children.children_user + children.children_system,
    )


def wait_for_quiet(limit_s: float, threshold: float = 0.3) -> float:
    """Wait (at most `limit_s`) until the machine has used < `threshold` cores for 3 s.

    The machine may be shared (other people's test runs): a phase measured while something
    else burns a core says little. Returns the busy cores seen last; never fails.
    """
    deadline = time.monotonic() + limit_s
    quiet_since: float | None = None
    warned = False
    while True:
        before = cpu_snapshot(None)
        time.sleep(1)
        busy = (cpu_snapshot(None).busy - before.busy) / (time.monotonic() - before.at)
        now = time.monotonic()
        if busy < threshold:
            quiet_since = quiet_since or now
            if now - quiet_since >= 2:
                return busy
        else:
            quiet_since = None
            if not warned:
                log(f"machine busy ({busy:.2f} cores): waiting up to {limit_s:g} s for quiet")
                warned = True
        if now > deadline:
            log(f"still busy ({busy:.2f} cores) after {limit_s:g} s: measuring anyway")
            return busy


def cpu_between(before: CpuSnapshot, after: CpuSnapshot, operations: int) -> dict[str, float]:
    """Cores used by each side during a phase, and CPU milliseconds per operation."""
    wall = after.at - before.at
    used = {
        "postgres": after.postgres - before.postgres,
        "tolom": after.tolom - before.tolom,
        "loadgen": after.loadgen - before.loadgen,
    }
    used["irq"] = after.irq - before.irq
    used["other"] = max(0.0, (after.busy - before.busy) - sum(used.values()))
    result = {"wall_s": round(wall, 2), "cores_busy": round((after.busy - before.busy) / wall, 2)}
    for side, seconds in used.items():
        result[f"cores_{side}"] = round(seconds / wall, 2)
        result[f"ms_per_op_{side}"] = round(1000 * seconds / max(1, operations), 3)
    return result


# --- PostgreSQL ----------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> Server:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise SystemExit("bench: --database-url-admin must be postgresql://user@host:port/db")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password else None,
        )

    def conninfo(self, dbname: str) -> str:
        info = f"host={self.host} port={self.port} user={self.user} dbname={dbname}"
        return info + (f" password={self.password}" if self.password else "")

    def sqlalchemy_url(self, dbname: str) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{dbname}"

    def libpq_env(self) -> dict[str, str]:
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def admin_sql(admin_url: str, *statements: str) -> list[Any]:
    """Run statements in autocommit (CREATE/DROP DATABASE, CHECKPOINT); first column of each."""
    values: list[Any] = []
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            row = cursor.fetchone() if cursor.description else None
            values.append(row[0] if row else None)
    return values


def drop_databases(admin_url: str) -> None:
    admin_sql(
        admin_url,
        f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)",
        f"DROP DATABASE IF EXISTS {PGBENCH_DB} WITH (FORCE)",
    )


@contextmanager
def throwaway_databases(admin_url: str) -> Iterator[None]:
    drop_databases(admin_url)  # left over from a run that was killed with SIGKILL
    admin_sql(admin_url, f"CREATE DATABASE {BENCH_DB}", f"CREATE DATABASE {PGBENCH_DB}")
    try:
        yield
    finally:
        log(f"dropping databases {BENCH_DB}, {PGBENCH_DB}")
        try:
            drop_databases(admin_url)
        except psycopg.Error as error:
            log(f"could not drop the databases: {error}")


def checkpoint(admin_url: str) -> None:
    admin_sql(admin_url, "CHECKPOINT")


# --- the machine ---------------------------------------------------------------------


def machine_info(admin_url: str) -> dict[str, Any]:
    cpu_model = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem_gib = round(kib / 1024 / 1024, 1)
    names = ["server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections"]
    values = admin_sql(admin_url, *(f"SHOW {n}" for n in names))
    wrk_version = subprocess.run(
        [tool("wrk"), "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": dict(zip(names, values, strict=True)),
        "pgbench": run([tool("pgbench"), "--version"]).strip(),
        "wrk": wrk_version[0].split(" Copyright")[0].strip() if wrk_version else "unknown",
        "load_average_at_start": list(os.getloadavg()),
    }


# --- pgbench -------------------------------------------------------------------------


def run_pgbench(server: Server, args: argparse.Namespace, workdir: Path) -> PgbenchResult:
    env = {**os.environ, **server.libpq_env()}
    log(f"pgbench -i -s {args.scale} {PGBENCH_DB}")
    run([tool("pgbench"), "-i", "-q", "-s", str(args.scale), PGBENCH_DB], env=env)
    checkpoint(args.database_url_admin)
    quiet = wait_for_quiet(args.quiet_wait)
    threads = min(2, args.connections)
    argv = [
        tool("pgbench"),
        "-c",
        str(args.connections),
        "-j",
        str(threads),
        "-T",
        str(args.duration),
        "-b",
        "tpcb-like",
        "-l",
        "--log-prefix",
        str(workdir / "pgbench_log"),
        PGBENCH_DB,
    ]
    c, t = args.connections, args.duration
    command = f"pgbench -c {c} -j {threads} -T {t} -b tpcb-like -l {PGBENCH_DB}"
    log(command)
    before = cpu_snapshot(None)
    out = run(argv, env=env, timeout=args.duration + 120)
    time.sleep(0.3)  # let the postmaster reap the backends (their CPU moves to its cutime)
    after = cpu_snapshot(None)
    (workdir / "pgbench.out").write_text(out)
    tps = re.search(r"^tps = ([0-9.]+) \((?:without initial connection time|excluding)", out, re.M)
    avg = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
    done = re.search(r"^number of transactions actually processed: ([0-9]+)", out, re.M)
    failed = re.search(r"^number of failed transactions: ([0-9]+)", out, re.M)
    if not (tps and avg and done):
        raise SystemExit(f"bench: cannot read pgbench's output:\n{out}")
    latencies: list[float] = []
    for path in workdir.glob("pgbench_log.*"):
        for line in path.read_text().splitlines():
            columns = line.split()
            if len(columns) >= 3 and columns[2].isdigit():
                latencies.append(int(columns[2]) / 1000)
    latencies.sort()
    return PgbenchResult(
        command=command,
        tps=float(tps.group(1)),
        latency_avg_ms=float(avg.group(1)),
        p50_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        transactions=int(done.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        cpu={**cpu_between(before, after, int(done.group(1))), "busy_cores_before": quiet},
    )


# --- tolom ---------------------------------------------------------------------------


def tolom_env(server: Server) -> dict[str, str]:
    """The environment without any TOLOM_* but the database: production defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLOM_")}
    env["TOLOM_DATABASE_URL"] = server.sqlalchemy_url(BENCH_DB)
    return env


def prepare_tolom(env: dict[str, str], workdir: Path) -> tuple[str, list[str]]:
    """Schema, the agent and the customers; returns (agent secret, customers' INNs)."""
    tolom = tool("tolom")
    log(f"tolom db upgrade ({BENCH_DB})")
    run([tolom, "db", "upgrade"], env=env, cwd=workdir)
    created = json.loads(
        run(
            [tolom, "agent", "create", AGENT, "--name", "Bench", "--allow-any-ip", "--json"],
            env=env,
            cwd=workdir,
        )
    )
    secret = str(created["secret"])
    inns = [f"{10_000_000_000_000 + i * 7:014d}" for i in range(1, CUSTOMERS + 1)]
    csv_path = workdir / "customers.csv"
    lines = ["inn,name,legal_form", *(f"{inn},Бенчмарк {i},ОсОО" for i, inn in enumerate(inns))]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"tolom customer import ({CUSTOMERS} customers)")
    imported = json.loads(
        run([tolom, "customer", "import", str(csv_path), "--json"], env=env, cwd=workdir)
    )
    if imported.get("imported") != CUSTOMERS:
        raise SystemExit(f"bench: customer import: {imported}")
    return secret, inns


@contextmanager
def tolom_server(env: dict[str, str], workers: int, workdir: Path) -> Iterator[tuple[str, int]]:
    """`tolom serve` with its workers in a session of its own; yields (base URL, group id)."""
    port = free_port()
    argv = [
        tool("tolom"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log(f"tolom serve --host 127.0.0.1 --port {port} --workers {workers}")
    server_log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=workdir,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"bench: tolom serve exited {process.returncode}; see server.log")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("bench: tolom serve did not answer /health with 200 in 60 s")
            time.sleep(0.2)
        yield base, process.pid  # start_new_session: group id == pid
    finally:
        stop_process_group(process, "tolom serve")
        server_log.close()


def stop_process_group(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM the process (uvicorn stops its workers), then SIGKILL its session if needed."""
    group = process.pid  # start_new_session: the group id is the leader's pid
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log(f"{name} did not stop in 15 s: SIGKILL")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, 0)  # anyone left in the group (a worker)?
        except ProcessLookupError:
            break
        with suppress(ProcessLookupError):
            os.killpg(group, sig)
        time.sleep(2)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    log(f"{name} stopped")


# --- wrk -----------------------------------------------------------------------------


_nonces: set[str] = set()


def new_nonce() -> str:
    """7 digits from the clock (tenths of a second), never 0-led, never twice in a process."""
    while True:
        nonce = str(1_000_000 + int(time.time() * 10) % 9_000_000)
        if nonce not in _nonces:
            _nonces.add(nonce)
            return nonce
        time.sleep(0.1)


def run_wrk(
    command: str,
    url: str,
    *,
    connections: int,
    duration: int,
    secret: str,
    inns: list[str],
    workdir: Path,
    label: str,
    server_group: int,
) -> WrkResult:
    threads = min(WRK_THREADS, connections)
    script = BENCH_DIR / f"{command}.lua"
    nonce = new_nonce()
    env = {
        **os.environ,
        "TOLOM_BENCH_BASIC": base64.b64encode(f"{AGENT}:{secret}".encode()).decode("ascii"),
        "TOLOM_BENCH_INNS": ",".join(inns),
        "TOLOM_BENCH_NONCE": nonce,
        "TOLOM_BENCH_THREADS": str(threads),
        "TOLOM_BENCH_TXN_DATE": datetime.now(ZoneInfo(AGENT_ZONE)).strftime("%Y%m%d%H%M%S"),
    }
    argv = [
        tool("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    shown = f"wrk -t{threads} -c{connections} -d{duration}s --latency -s bench/{command}.lua {url}"
    log(f"{label}: {shown}")
    before = cpu_snapshot(server_group)
    out = run(argv, env=env, timeout=duration + 60)
    after = cpu_snapshot(server_group)
    (workdir / f"wrk-{label}.out").write_text(out)
    result = parse_wrk(command, shown, nonce, out)
    result.cpu = cpu_between(before, after, result.responses)
    return result


def parse_wrk(command: str, shown: str, nonce: str, out: str) -> WrkResult:
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+([0-9.]+)(us|ms|s|m|h)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s|m|h)\s*$", out, re.M)
    ours = re.search(
        r"^TOLOM_BENCH command=\w+ ok=(\d+) not_ok=(\d+) non2xx=(\d+) responses=(\d+)", out, re.M
    )
    if not (rate and p50 and p99 and ours):
        raise SystemExit(f"bench: cannot read wrk's output:\n{out}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sockets:
        socket_errors = dict(zip(socket_errors, map(int, sockets.groups()), strict=True))
    sample = re.search(r"^TOLOM_BENCH_SAMPLE (.*)$", out, re.M)
    ok, not_ok, non2xx, responses = (int(g) for g in ours.groups())
    return WrkResult(
        command=command,
        wrk_command=shown,
        nonce=nonce,
        requests_per_s=float(rate.group(1)),
        p50_ms=to_ms(*p50.groups()),
        p99_ms=to_ms(*p99.groups()),
        responses=responses,
        ok=ok,
        not_ok=not_ok,
        non2xx=non2xx,
        socket_errors=socket_errors,
        bad_answer_sample=sample.group(1)[:600] if sample else None,
    )


# --- after the load ------------------------------------------------------------------


def count_payments(server: Server, nonce: str) -> tuple[int, int]:
    """(payments, logged pay requests answered 0) with txn_ids of one wrk run."""
    prefix = nonce + "%"
    with psycopg.connect(server.conninfo(BENCH_DB)) as conn:
        payments = conn.execute(
            "SELECT count(*) FROM payments WHERE txn_id LIKE %s", (prefix,)
        ).fetchone()
        logged = conn.execute(
            "SELECT count(*) FROM gateway_requests"
            " WHERE command = 'pay' AND result = 0 AND txn_id LIKE %s",
            (prefix,),
        ).fetchone()
    return int(payments[0] if payments else 0), int(logged[0] if logged else 0)


def settled_payment_count(server: Server, nonce: str) -> tuple[int, int]:
    """Counts once the requests wrk abandoned in flight have committed (they stop moving)."""
    last = count_payments(server, nonce)
    for _ in range(40):
        time.sleep(0.5)
        now = count_payments(server, nonce)
        if now == last:
            return now
        last = now
    return last


def verify(
    server: Server, env: dict[str, str], workdir: Path, pay: WrkResult, connections: int
) -> Integrity:
    """Exactly once: the measured run's payments against its answers; the ledger balances."""
    payments, logged_ok = settled_payment_count(server, pay.nonce)
    verify_run = subprocess.run(
        [tool("tolom"), "ledger", "verify", "--json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    output = (verify_run.stdout + verify_run.stderr).strip()
    extra = payments - pay.ok
    # wrk stops reading when its time is up (or a 2 s timeout fires): the server still
    # commits those requests, at most one per connection plus the timed-out ones.
    allowance = connections + pay.socket_errors.get("timeout", 0)
    consistent = payments == logged_ok and 0 <= extra <= allowance
    if extra == 0 and consistent:
        note = "payments in the database == successful pay answers"
    elif consistent:
        note = (
            f"{extra} payment(s) more than wrk counted: requests in flight when wrk stopped, "
            f"committed after it stopped reading (allowed: up to {allowance})"
        )
    else:
        note = "INCONSISTENT: payments do not match the answers"
    return Integrity(
        ledger_verify_ok=verify_run.returncode == 0,
        ledger_verify_output=output[-2000:],
        payments_in_db=payments,
        pay_ok_answers=pay.ok,
        abandoned_in_flight_max=allowance,
        logged_pay_ok=logged_ok,
        consistent=consistent,
        note=note,
    )


# --- the report ----------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render(report: Report) -> str:
    m, pg = report.machine, report.machine["postgresql"]
    lines = [
        "",
        "=== tolom OSMP gateway vs pgbench (one run, same PostgreSQL) ===",
        f"started          {report.started_at}",
        f"machine          {m['nproc']} CPU(s), {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}",
        f"PostgreSQL       {pg['server_version']}, synchronous_commit={pg['synchronous_commit']}, "
        f"fsync={pg['fsync']}, shared_buffers={pg['shared_buffers']}",
        f"tools            {m['pgbench']}; {m['wrk']}; Python {m['python']}",
        "load at start    " + ", ".join(f"{x:.2f}" for x in m["load_average_at_start"]),
        "settings         " + ", ".join(f"{k}={v}" for k, v in report.settings.items()),
        "",
        "method:",
        *(f"  {step}" for step in report.method),
        "",
        f"{'':18}{'per second':>12}{'p50 ms':>10}{'p99 ms':>10}{'÷ pgbench':>11}",
    ]
    if report.pgbench:
        p = report.pgbench
        lines.append(
            f"{'pgbench tpcb-like':18}{p.tps:>12.1f}{_fmt(p.p50_ms):>10}{_fmt(p.p99_ms):>10}"
            f"{'1.00':>11}"
        )
    for result in (report.pay, report.check):
        if result:
            lines.append(
                f"{result.command:18}{result.requests_per_s:>12.1f}{result.p50_ms:>10.2f}"
                f"{result.p99_ms:>10.2f}{_fmt(result.ratio_to_pgbench):>11}"
            )
    lines += [
        "",
        "CPU during each measured run, in cores (from /proc; irq = interrupts and softirqs,",
        "other = everything else on the machine; before = busy cores just before the run),",
        "and CPU ms per operation:",
        f"{'':18}{'before':>7}{'busy':>6}{'postgres':>10}{'tolom':>7}"
        f"{'loadgen':>9}{'irq':>6}{'other':>7}"
        "   ms/op: postgres / tolom / loadgen",
    ]
    for name, cpu in (
        ("pgbench tpcb-like", report.pgbench.cpu if report.pgbench else {}),
        ("pay", report.pay.cpu if report.pay else {}),
        ("check", report.check.cpu if report.check else {}),
    ):
        if cpu:
            lines.append(
                f"{name:18}{_fmt(cpu.get('busy_cores_before')):>7}{cpu['cores_busy']:>6.2f}"
                f"{cpu['cores_postgres']:>10.2f}"
                f"{cpu['cores_tolom']:>7.2f}{cpu['cores_loadgen']:>9.2f}{cpu['cores_irq']:>6.2f}"
                f"{cpu['cores_other']:>7.2f}   {cpu['ms_per_op_postgres']:.2f} / "
                f"{cpu['ms_per_op_tolom']:.2f} / {cpu['ms_per_op_loadgen']:.2f}"
            )
    lines.append("")
    if report.pgbench:
        p = report.pgbench
        lines.append(
            f"pgbench: {p.transactions} transactions, {p.failed} failed, "
            f"latency average {p.latency_avg_ms:.2f} ms"
        )
    for result in (report.pay, report.check):
        if result:
            errors = sum(result.socket_errors.values())
            lines.append(
                f"{result.command}: {result.responses} answers: {result.ok} result 0, "
                f"{result.not_ok} other result, {result.non2xx} non-2xx, "
                f"{errors} socket errors {result.socket_errors}"
            )
            if result.bad_answer_sample:
                lines.append(f"  first bad answer: {result.bad_answer_sample}")
    if report.integrity:
        i = report.integrity
        lines += [
            f"ledger verify: {'OK' if i.ledger_verify_ok else 'FAILED'}"
            + ("" if i.ledger_verify_ok else f"\n{i.ledger_verify_output}"),
            f"payments in db {i.payments_in_db}, pay answers with result 0 {i.pay_ok_answers}, "
            f"request log says {i.logged_pay_ok}: {i.note}",
        ]
    if report.target:
        t = report.target
        lines += [
            "",
            f"target (at {TARGET_CONNECTIONS} connections): pay ratio ≥ {TARGET_RATIO} and "
            f"pay p99 ≤ {TARGET_P99_MS:g} ms: "
            f"ratio {_fmt(t.get('pay_ratio'))} {'met' if t.get('ratio_met') else 'NOT met'}, "
            f"p99 {_fmt(t.get('pay_p99_ms'))} ms {'met' if t.get('p99_met') else 'NOT met'}"
            + ("" if t.get("applies") else " (run was not at 16 connections: indicative only)"),
        ]
    return "\n".join(lines)


def method_lines(args: argparse.Namespace, workers: int) -> list[str]:
    c, d = args.connections, args.duration
    return [
        f"1. CREATE DATABASE {BENCH_DB}, {PGBENCH_DB}; pgbench -i -s {args.scale} {PGBENCH_DB}",
        f"2. pgbench -c {c} -j {min(2, c)} -T {d} -b tpcb-like -l {PGBENCH_DB} "
        "(tps without connection time; p50/p99 from the -l log)",
        f"3. tolom db upgrade; agent create {AGENT} --allow-any-ip; customer import "
        f"({CUSTOMERS} customers)",
        f"4. tolom serve --workers {workers} (uvicorn, no access log, pool 16 per worker); "
        "wait for /health 200",
        f"5. warm-up: wrk pay then check, {args.warmup} s each (not measured)",
        f"6. wrk -t{min(WRK_THREADS, c)} -c{c} -d{d}s --latency -s bench/pay.lua: "
        "unique txn_id per request, 100.00 som, INNs in turn, Basic auth",
        f"7. wrk -t{min(WRK_THREADS, c)} -c{c} -d{d}s --latency -s bench/check.lua",
        "8. payments counted in the database; tolom ledger verify",
        "before each measured run: CHECKPOINT, then wait (≤ --quiet-wait s) for < 0.3 busy cores",
        "CPU: /proc/stat and /proc/PID/stat before and after each measured run",
        "ratio = requests/s ÷ pgbench tps; latencies are wrk's (client side, incl. HTTP)",
    ]


# --- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=30, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16, help="pgbench -c and wrk -c")
    parser.add_argument("--workers", type=int, default=2, help="tolom serve worker processes")
    parser.add_argument(
        "--scale", type=int, default=16, help="pgbench scale (branches): ≥ clients, see docstring"
    )
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="before each measured run, wait up to this long for the machine to be idle",
    )
    parser.add_argument(
        "--database-url-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a superuser connection to the PostgreSQL server to use",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory (logs, wrk output)"
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.workers < 1 or args.scale < 1:
        parser.error("--duration, --connections, --workers and --scale must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    server = Server.from_url(args.database_url_admin)
    workdir = Path(tempfile.mkdtemp(prefix="tolom-bench-"))
    report = Report(
        started_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(args.database_url_admin),
        settings={
            "duration_s": args.duration,
            "connections": args.connections,
            "workers": args.workers,
            "scale": args.scale,
            "customers": CUSTOMERS,
            "warmup_s": args.warmup,
            "quiet_wait_s": args.quiet_wait,
        },
        method=method_lines(args, args.workers),
    )
    failed = True
    try:
        with throwaway_databases(args.database_url_admin):
            report.pgbench = run_pgbench(server, args, workdir)
            env = tolom_env(server)
            secret, inns = prepare_tolom(env, workdir)
            with tolom_server(env, args.workers, workdir) as (base, group):
                url = f"{base}/gateway/osmp/sochi"

                def load(command: str, duration: int, label: str) -> WrkResult:
                    return run_wrk(
                        command,
                        url,
                        connections=args.connections,
                        duration=duration,
                        secret=secret,
                        inns=inns,
                        workdir=workdir,
                        label=label,
                        server_group=group,
                    )

                for command in ("pay", "check"):
                    load(command, args.warmup, f"warmup-{command}")
                checkpoint(args.database_url_admin)
                quiet = wait_for_quiet(args.quiet_wait)
                report.pay = load("pay", args.duration, "pay")
                report.pay.cpu["busy_cores_before"] = quiet
                checkpoint(args.database_url_admin)
                quiet = wait_for_quiet(args.quiet_wait)
                report.check = load("check", args.duration, "check")
                report.check.cpu["busy_cores_before"] = quiet
                report.integrity = verify(server, env, workdir, report.pay, args.connections)
        tps = report.pgbench.tps
        for result in (report.pay, report.check):
            result.ratio_to_pgbench = result.requests_per_s / tps if tps else None
        ratio = report.pay.ratio_to_pgbench
        report.target = {
            "applies": args.connections == TARGET_CONNECTIONS,
            "pay_ratio": ratio,
            "pay_p99_ms": report.pay.p99_ms,
            "ratio_met": ratio is not None and ratio >= TARGET_RATIO,
            "p99_met": report.pay.p99_ms <= TARGET_P99_MS,
        }
        failed = False
    except (KeyboardInterrupt, Interrupted) as stop:
        log(f"interrupted ({stop.__class__.__name__}); cleaned up")
        return 130
    finally:
        if failed or args.keep_logs:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False) + "\n")
        log(f"results written to {args.json}")
    i = report.integrity
    return 0 if i.ledger_verify_ok and i.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
