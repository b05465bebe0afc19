"""How fast are the agent gateways compared with what this PostgreSQL can do at all?

What it measures, in ONE run on one machine and against one PostgreSQL server:

1. `pgbench`'s built-in TPC-B-like script (`-b tpcb-like`: three UPDATEs, one SELECT and
   one INSERT in a transaction) with the same client count and duration as the gateway
   runs: the ceiling a write transaction of roughly a payment's shape has here. Its
   transaction log (`-l`) gives p50/p99 as well as the tps.
2. `tolom serve` as in production (several uvicorn worker processes, PostgreSQL, no access
   log, default pool), driven by `wrk` with bench/pay.lua: unique OSMP `pay` requests (a new
   txn_id every time, spread over many customers), HTTP Basic auth, and every answer checked
   for `<result>0</result>`. Printed: pay/s, p50 and p99 latency, and pay/s ÷ pgbench tps.
3. The same with bench/check.lua for OSMP `check` (a lookup plus the request-log INSERT).
4. REST pay: `POST /api/v1/agent/payments` with a JSON body and the Tolom-HMAC-SHA256
   signature (see src/tolom/gateway/signing.py). wrk's Lua has no HMAC, so this script
   signs the requests just before the run (each with its own txn_id) into a file that
   bench/rest_pay.lua sends in turn. Every answer is checked: 200 with "receipt"; a repeat
   of a line (only when wrk outruns the file) is an idempotent replay, counted apart.
5. Each of those three phases gets a server of its own: started, warmed up with the same
   request, measured, stopped. At shutdown every worker logs how its requests were grouped
   into transactions ("group commit: N requests in M transactions ...; sizes 1xA 2xB ...");
   those lines, summed over the workers, are the phase's batch sizes (warm-up included).
6. With --baseline-src DIR (the `src` of another checkout, e.g. a `git worktree` of an older
   commit), the same three phases also run against that version, interleaved with the
   current one, on a database of its own: `python -m tolom` with PYTHONPATH=DIR, checked
   to import from DIR. The report then has "pay (baseline)" next to "pay", and so on.
7. Correctness after the load: `tolom ledger verify` must pass on every database, and the
   number of payments must equal the successful pay answers (exactly once), for OSMP and
   for REST. wrk abandons the requests still in flight when its time is up; the server may
   commit those, so up to --connections payments more than wrk counted are expected and
   reported as such.

How: throwaway databases (tolom_bench, tolom_pgbench, and tolom_bench_base with a baseline)
are created on the server of --database-url-admin and dropped at the end, also on failure
or Ctrl-C; every process the script starts (pgbench, the servers and their workers, wrk) is
stopped by the end. A CHECKPOINT precedes each measured phase, so one phase's dirty pages
are not written during the next, and then the script waits (at most --quiet-wait s) until
the machine is idle: it may be shared. For every measured phase it also reports where the
CPU went (from /proc): cores and CPU milliseconds per operation for PostgreSQL, the tolom
server, the load generator, interrupts and everything else.
The servers get only TOLOM_DATABASE_URL and TOLOM_SECRET_KEY_FILE (a key file in the work
directory, required with PostgreSQL; other TOLOM_* variables, PYTHONPATH and any .env are
left out; the baseline gets PYTHONPATH=DIR), so they run with the shipped defaults.

Why --scale 16: in TPC-B every transaction updates one of `scale` branch rows, so with fewer
branches than clients pgbench measures waits on those row locks, not the server. Scale =
clients (16) is the pgbench documentation's advice and matches the gateway's own hot spot,
the agent's clearing account, whose balance is spread over 16 rows (HOT_ACCOUNT_SLOTS).
At 16 the data set (about 240 MB) still fits in the page cache, as the gateway's does.

This is a benchmark, not a test: it prints figures and how they were obtained and never
fails on timing. It exits 1 only if it cannot run, or if a ledger does not balance or a
payment count contradicts the answers (a correctness failure, not a slow one).

Usage:  .venv/bin/python bench/gateway_vs_pgbench.py [--duration 30] [--connections 16]
        [--workers 2] [--scale 16] [--baseline-src DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
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
BASELINE_DB = "tolom_bench_base"
PGBENCH_DB = "tolom_pgbench"
CUSTOMERS = 1000
AGENT = "bench"
AGENT_ZONE = "Asia/Bishkek"  # the default zone of `tolom agent create`
WRK_THREADS = 2
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
TARGET_CONNECTIONS = 16
OSMP_PATH = "/gateway/osmp/sochi"
REST_PATH = "/api/v1/agent/payments"
REST_SCHEME = "Tolom-HMAC-SHA256"
REST_MAX_DURATION = 240  # signatures are accepted within 300 s of the server's clock
REST_ASSUMED_RATE = 3000  # requests/s to sign for when nothing better is known
REST_MAX_LINES = 400_000  # about 100 MB of pre-signed requests
COMMANDS = ("pay", "check", "rest_pay")
LABELS = {"pay": "pay", "check": "check", "rest_pay": "REST pay"}


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
class GroupCommit:
    """The shutdown lines of one server's workers, summed: how requests shared transactions."""

    logged: bool  # False: no such line (a version without group commit, or no gateway call)
    lines: int  # worker processes that logged one
    requests: int = 0
    transactions: int = 0
    mean: float | None = None
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> transactions


@dataclass
class WrkResult:
    command: str  # pay, check, rest_pay
    side: str  # "current" or "baseline"
    label: str  # the report's row: "pay", "REST pay (baseline)", ...
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
    replayed: int = 0  # REST: idempotent replays (a pre-signed line sent again)
    sent_again: int = 0  # REST: requests sent from a line already sent once
    signed_requests: int | None = None  # REST: lines in the pre-signed file
    ratio_to_pgbench: float | None = None
    ratio_to_baseline: float | None = None
    bad_answer_sample: str | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    group_commit: GroupCommit | None = None
    server_log: str | None = None


@dataclass
class Integrity:
    side: str
    command: str  # pay or rest_pay
    payments_in_db: int
    ok_answers: int
    abandoned_in_flight_max: int
    logged_ok: int
    consistent: bool
    note: str


@dataclass
class ServerSide:
    """One version of tolom under test."""

    name: str  # "current" or "baseline"
    database: str
    src: str  # the src directory it imports
    tolom_file: str  # tolom.__file__ as its python sees it
    git: str  # commit (and whether the tree has changes)
    command: str  # how it is started
    ledger_verify_ok: bool | None = None
    ledger_verify_output: str = ""


@dataclass
class Report:
    started_at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    method: list[str]
    servers: list[ServerSide] = field(default_factory=list)
    pgbench: PgbenchResult | None = None
    runs: list[WrkResult] = field(default_factory=list)  # measured runs, in report order
    integrity: list[Integrity] = field(default_factory=list)
    target: dict[str, Any] = field(default_factory=dict)

    def run_of(self, command: str, side: str = "current") -> WrkResult | None:
        for result in self.runs:
            if result.command == command and result.side == side:
                return result
        return None


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


def drop_databases(admin_url: str, names: Sequence[str]) -> None:
    admin_sql(admin_url, *(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in names))


@contextmanager
def throwaway_databases(admin_url: str, names: Sequence[str]) -> Iterator[None]:
    # Left over from a run that was killed with SIGKILL (the baseline's too, used or not).
    drop_databases(admin_url, (BENCH_DB, BASELINE_DB, PGBENCH_DB))
    admin_sql(admin_url, *(f"CREATE DATABASE {name}" for name in names))
    try:
        yield
    finally:
        log(f"dropping databases {', '.join(names)}")
        try:
            drop_databases(admin_url, names)
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


@dataclass
class Tolom:
    """How to run one version of tolom (not reported: the environment holds the URL)."""

    side: ServerSide
    argv: list[str]  # the `tolom` command: console script or `python -m tolom`
    env: dict[str, str]
    secret: str = ""
    signing_key: str = ""
    inns: list[str] = field(default_factory=list)


def tolom_env(
    server: Server, dbname: str, pythonpath: Path | None, workdir: Path
) -> dict[str, str]:
    """The environment without any TOLOM_* but the database and the key file PostgreSQL
    requires (TOLOM_SECRET_KEY_FILE, in `workdir`): production defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLOM_") and k != "PYTHONPATH"}
    env["TOLOM_DATABASE_URL"] = server.sqlalchemy_url(dbname)
    key_file = workdir / "secret.key"
    if not key_file.exists():
        key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode("ascii") + "\n")
        key_file.chmod(0o600)
    env["TOLOM_SECRET_KEY_FILE"] = str(key_file)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def imported_from(env: dict[str, str], workdir: Path) -> str:
    """tolom.__file__ as this venv's python sees it with `env` (PYTHONPATH), from `workdir`."""
    return run(
        [tool("python"), "-c", "import tolom; print(tolom.__file__)"], env=env, cwd=workdir
    ).strip()


def git_state(directory: Path) -> str:
    """The checkout's commit, and whether `directory` differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    if not head:
        return "not a git checkout"
    return head + (" + uncommitted changes" if changes else "")


def make_sides(args: argparse.Namespace, server: Server, workdir: Path) -> list[Tolom]:
    """The current tolom (this venv's install) and, with --baseline-src, the baseline."""
    env = tolom_env(server, BENCH_DB, None, workdir)
    current_file = imported_from(env, workdir)
    current_src = Path(current_file).resolve().parent.parent
    sides = [
        Tolom(
            side=ServerSide(
                name="current",
                database=BENCH_DB,
                src=str(current_src),
                tolom_file=current_file,
                git=git_state(current_src),
                command="tolom serve (the venv's console script)",
            ),
            argv=[tool("tolom")],
            env=env,
        )
    ]
    if args.baseline_src is not None:
        src = args.baseline_src
        env = tolom_env(server, BASELINE_DB, src, workdir)
        baseline_file = imported_from(env, workdir)
        if not Path(baseline_file).resolve().is_relative_to(src):
            raise SystemExit(
                f"bench: with PYTHONPATH={src}, python imports tolom from {baseline_file}, "
                "not from the baseline"
            )
        sides.append(
            Tolom(
                side=ServerSide(
                    name="baseline",
                    database=BASELINE_DB,
                    src=str(src),
                    tolom_file=baseline_file,
                    git=git_state(src),
                    command=f"PYTHONPATH={src} python -m tolom serve",
                ),
                argv=[tool("python"), "-m", "tolom"],
                env=env,
            )
        )
    for t in sides:
        log(f"{t.side.name}: tolom from {t.side.tolom_file} ({t.side.git})")
    return sides


def prepare_tolom(t: Tolom, workdir: Path) -> None:
    """Schema, the agent and the customers: sets the agent's secret and signing key, INNs."""
    log(f"{t.side.name}: tolom db upgrade ({t.side.database})")
    run([*t.argv, "db", "upgrade"], env=t.env, cwd=workdir)
    created = json.loads(
        run(
            [*t.argv, "agent", "create", AGENT, "--name", "Bench", "--allow-any-ip", "--json"],
            env=t.env,
            cwd=workdir,
        )
    )
    t.secret = str(created["secret"])
    t.signing_key = str(created["signing_key"])
    t.inns = [f"{10_000_000_000_000 + i * 7:014d}" for i in range(1, CUSTOMERS + 1)]
    csv_path = workdir / "customers.csv"
    lines = ["inn,name,legal_form", *(f"{inn},Бенчмарк {i},ОсОО" for i, inn in enumerate(t.inns))]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"{t.side.name}: tolom customer import ({CUSTOMERS} customers)")
    imported = json.loads(
        run([*t.argv, "customer", "import", str(csv_path), "--json"], env=t.env, cwd=workdir)
    )
    if imported.get("imported") != CUSTOMERS:
        raise SystemExit(f"bench: customer import: {imported}")


@contextmanager
def tolom_server(
    t: Tolom, workers: int, workdir: Path, log_path: Path
) -> Iterator[tuple[str, int]]:
    """`tolom serve` with its workers in a session of its own; yields (base URL, group id).

    Its stdout and stderr (the log, including the workers' shutdown lines) go to `log_path`.
    """
    port = free_port()
    argv = [*t.argv, "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    log(f"{t.side.name}: tolom serve --host 127.0.0.1 --port {port} --workers {workers}")
    server_log = log_path.open("wb")
    process = subprocess.Popen(
        argv,
        env=t.env,
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
                server_log.flush()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(
                    f"bench: {t.side.name} tolom serve exited {process.returncode}; "
                    f"{log_path.name}:\n{tail}"
                )
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
        stop_process_group(process, f"{t.side.name} tolom serve")
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


_GROUP_COMMIT = re.compile(
    r"group commit: (\d+) requests in (\d+) transactions \(mean [0-9.]+\); "
    r"sizes ((?:\d+x\d+ ?)*)"
)


def parse_group_commit(server_log: str) -> GroupCommit:
    """Sum the workers' shutdown lines (text or JSON log format: the message is the same)."""
    found = GroupCommit(logged=False, lines=0)
    sizes: dict[int, int] = {}
    for match in _GROUP_COMMIT.finditer(server_log):
        found.lines += 1
        found.requests += int(match.group(1))
        found.transactions += int(match.group(2))
        for size, count in re.findall(r"(\d+)x(\d+)", match.group(3)):
            sizes[int(size)] = sizes.get(int(size), 0) + int(count)
    if found.lines:
        found.logged = True
        found.mean = round(found.requests / found.transactions, 3) if found.transactions else None
        found.sizes = dict(sorted(sizes.items()))
    return found


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


def rest_authorization(agent: str, key: bytes, timestamp: int, body: bytes) -> str:
    """The Authorization header of a REST pay (src/tolom/gateway/signing.py, written out)."""
    message = f"POST\n{REST_PATH}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    signature = hmac.new(key, message, hashlib.sha256).hexdigest()
    return f"{REST_SCHEME} agent={agent},timestamp={timestamp},signature={signature}"


def presign_rest_pays(path: Path, t: Tolom, nonce: str, count: int) -> None:
    """`count` signed REST pays, one a line ("<Authorization>\\t<body>"), unique txn_ids.

    txn_id = nonce (7 digits) + n (13 digits), as in bench/osmp_wrk.lua; the customers'
    INNs in turn. Signed now: the server accepts a timestamp within 5 minutes of its clock.
    """
    key = bytes.fromhex(t.signing_key)
    timestamp = int(time.time())
    txn_date = datetime.now(ZoneInfo(AGENT_ZONE)).isoformat(timespec="seconds")
    inns = t.inns
    with path.open("w", encoding="ascii") as out:
        for n in range(count):
            body = json.dumps(
                {
                    "txn_id": f"{nonce}{n:013d}",
                    "txn_date": txn_date,
                    "service": "sochi",
                    "account": inns[(n * 7919) % len(inns)],
                    "amount": "100.00",
                },
                separators=(",", ":"),
            ).encode()
            out.write(f"{rest_authorization(AGENT, key, timestamp, body)}\t{body.decode()}\n")


def rest_lines(rate_hint: float | None, duration: int) -> int:
    """How many requests to sign for a run: generous, so that none is sent twice."""
    rate = max(rate_hint or REST_ASSUMED_RATE, 200.0)
    return int(min(REST_MAX_LINES, max(2000, 1.5 * rate * duration + 1000)))


def run_wrk(
    t: Tolom,
    command: str,
    base: str,
    *,
    connections: int,
    duration: int,
    workdir: Path,
    tag: str,
    server_group: int,
    rate_hint: float | None = None,
) -> WrkResult:
    threads = min(WRK_THREADS, connections)
    nonce = new_nonce()
    env = {**os.environ, "TOLOM_BENCH_THREADS": str(threads)}
    signed: int | None = None
    requests_file: Path | None = None
    if command == "rest_pay":
        url = base
        signed = rest_lines(rate_hint, duration)
        requests_file = workdir / f"rest-requests-{tag}.txt"
        started = time.monotonic()
        presign_rest_pays(requests_file, t, nonce, signed)
        log(f"{tag}: signed {signed} REST pays in {time.monotonic() - started:.1f} s")
        env["TOLOM_BENCH_REQUESTS"] = str(requests_file)
    else:
        url = base + OSMP_PATH
        basic = base64.b64encode(f"{AGENT}:{t.secret}".encode()).decode("ascii")
        env |= {
            "TOLOM_BENCH_BASIC": basic,
            "TOLOM_BENCH_INNS": ",".join(t.inns),
            "TOLOM_BENCH_NONCE": nonce,
            "TOLOM_BENCH_TXN_DATE": datetime.now(ZoneInfo(AGENT_ZONE)).strftime("%Y%m%d%H%M%S"),
        }
    script = f"{command}.lua"
    argv = [tool("wrk"), f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    argv += ["-s", str(BENCH_DIR / script), url]
    shown = f"wrk -t{threads} -c{connections} -d{duration}s --latency -s bench/{script} {url}"
    log(f"{tag}: {shown}")
    try:
        before = cpu_snapshot(server_group)
        out = run(argv, env=env, timeout=duration + 60)
        after = cpu_snapshot(server_group)
    finally:
        if requests_file is not None:
            requests_file.unlink(missing_ok=True)  # up to 100 MB, and no use afterwards
    (workdir / f"wrk-{tag}.out").write_text(out)
    result = parse_wrk(command, t.side.name, shown, nonce, out)
    result.signed_requests = signed
    result.cpu = cpu_between(before, after, result.responses)
    return result


def parse_wrk(command: str, side: str, shown: str, nonce: str, out: str) -> WrkResult:
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
    replays = re.search(r"^TOLOM_BENCH .* replayed=(\d+) sent_again=(\d+)", out, re.M)
    ok, not_ok, non2xx, responses = (int(g) for g in ours.groups())
    label = LABELS[command] + ("" if side == "current" else f" ({side})")
    return WrkResult(
        command=command,
        side=side,
        label=label,
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
        replayed=int(replays.group(1)) if replays else 0,
        sent_again=int(replays.group(2)) if replays else 0,
        bad_answer_sample=sample.group(1)[:600] if sample else None,
    )


def measure(
    t: Tolom,
    command: str,
    args: argparse.Namespace,
    workdir: Path,
    rate_hint: float | None,
) -> WrkResult:
    """One phase: a fresh server, warm-up, CHECKPOINT, quiet, the measured run, stop."""
    tag = f"{t.side.name}-{command}"
    log_path = workdir / f"server-{tag}.log"
    with tolom_server(t, args.workers, workdir, log_path) as (base, group):
        if args.warmup > 0:
            run_wrk(
                t,
                command,
                base,
                connections=args.connections,
                duration=args.warmup,
                workdir=workdir,
                tag=f"warmup-{tag}",
                server_group=group,
            )
        checkpoint(args.database_url_admin)
        quiet = wait_for_quiet(args.quiet_wait)
        result = run_wrk(
            t,
            command,
            base,
            connections=args.connections,
            duration=args.duration,
            workdir=workdir,
            tag=tag,
            server_group=group,
            rate_hint=rate_hint,
        )
        result.cpu["busy_cores_before"] = quiet
    result.group_commit = parse_group_commit(log_path.read_text(errors="replace"))
    result.server_log = log_path.name
    return result


# --- after the load ------------------------------------------------------------------


def count_payments(server: Server, dbname: str, nonce: str, rest: bool) -> tuple[int, int]:
    """(payments, txn_ids the request log answered OK) with txn_ids of one wrk run."""
    prefix = nonce + "%"
    logged_ok = (
        "SELECT count(DISTINCT txn_id) FROM gateway_requests"
        " WHERE command = 'pay' AND http_status = 200 AND txn_id LIKE %s"
        if rest
        else "SELECT count(*) FROM gateway_requests"
        " WHERE command = 'pay' AND result = 0 AND txn_id LIKE %s"
    )
    with psycopg.connect(server.conninfo(dbname)) as conn:
        payments = conn.execute(
            "SELECT count(*) FROM payments WHERE txn_id LIKE %s", (prefix,)
        ).fetchone()
        logged = conn.execute(logged_ok, (prefix,)).fetchone()
    return int(payments[0] if payments else 0), int(logged[0] if logged else 0)


def settled_payment_count(server: Server, dbname: str, nonce: str, rest: bool) -> tuple[int, int]:
    """Counts once the requests wrk abandoned in flight have committed (they stop moving)."""
    last = count_payments(server, dbname, nonce, rest)
    for _ in range(40):
        time.sleep(0.5)
        now = count_payments(server, dbname, nonce, rest)
        if now == last:
            return now
        last = now
    return last


def check_payments(server: Server, t: Tolom, result: WrkResult, connections: int) -> Integrity:
    """Exactly once: the measured run's payments against its answers (server stopped)."""
    rest = result.command == "rest_pay"
    payments, logged_ok = settled_payment_count(server, t.side.database, result.nonce, rest)
    extra = payments - result.ok
    # wrk stops reading when its time is up (or a 2 s timeout fires): the server still
    # commits those requests, at most one per connection plus the timed-out ones.
    allowance = connections + result.socket_errors.get("timeout", 0)
    consistent = payments == logged_ok and 0 <= extra <= allowance
    answers = "successful REST pay answers (replays apart)" if rest else "pay answers result 0"
    if extra == 0 and consistent:
        note = f"payments in the database == {answers}"
    elif consistent:
        note = (
            f"{extra} payment(s) more than wrk counted: requests in flight when wrk stopped, "
            f"committed after it stopped reading (allowed: up to {allowance})"
        )
    else:
        note = "INCONSISTENT: payments do not match the answers"
    return Integrity(
        side=t.side.name,
        command=result.command,
        payments_in_db=payments,
        ok_answers=result.ok,
        abandoned_in_flight_max=allowance,
        logged_ok=logged_ok,
        consistent=consistent,
        note=note,
    )


def ledger_verify(t: Tolom, workdir: Path) -> None:
    log(f"{t.side.name}: tolom ledger verify ({t.side.database})")
    verify_run = subprocess.run(
        [*t.argv, "ledger", "verify", "--json"],
        env=t.env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    t.side.ledger_verify_ok = verify_run.returncode == 0
    t.side.ledger_verify_output = (verify_run.stdout + verify_run.stderr).strip()[-2000:]


# --- the report ----------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _sizes(sizes: dict[int, int], limit: int = 40) -> str:
    items = [f"{size}x{count}" for size, count in sizes.items()]
    more = len(items) - limit
    return " ".join(items[:limit]) + (f" … (+{more} sizes)" if more > 0 else "")


def render(report: Report) -> str:
    m, pg = report.machine, report.machine["postgresql"]
    baseline = any(s.name == "baseline" for s in report.servers)
    lines = [
        "",
        "=== tolom agent gateways (OSMP, REST) vs pgbench (one run, same PostgreSQL) ===",
        f"started          {report.started_at}",
        f"machine          {m['nproc']} CPU(s), {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}",
        f"PostgreSQL       {pg['server_version']}, synchronous_commit={pg['synchronous_commit']}, "
        f"fsync={pg['fsync']}, shared_buffers={pg['shared_buffers']}",
        f"tools            {m['pgbench']}; {m['wrk']}; Python {m['python']}",
        "load at start    " + ", ".join(f"{x:.2f}" for x in m["load_average_at_start"]),
        "settings         " + ", ".join(f"{k}={v}" for k, v in report.settings.items()),
    ]
    for s in report.servers:
        lines.append(
            f"{s.name + ' tolom':17}{s.tolom_file} (git {s.git}); {s.command}; "
            f"database {s.database}"
        )
    lines += [
        "",
        "method:",
        *(f"  {step}" for step in report.method),
        "",
        f"{'':22}{'per second':>12}{'p50 ms':>10}{'p99 ms':>10}{'÷ pgbench':>11}"
        + (f"{'÷ baseline':>12}" if baseline else ""),
    ]
    if report.pgbench:
        p = report.pgbench
        lines.append(
            f"{'pgbench tpcb-like':22}{p.tps:>12.1f}{_fmt(p.p50_ms):>10}{_fmt(p.p99_ms):>10}"
            f"{'1.00':>11}"
        )
    for r in report.runs:
        lines.append(
            f"{r.label:22}{r.requests_per_s:>12.1f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}"
            f"{_fmt(r.ratio_to_pgbench):>11}"
            + (f"{_fmt(r.ratio_to_baseline):>12}" if baseline and r.side == "current" else "")
        )
    lines += [
        "",
        "CPU during each measured run, in cores (from /proc; irq = interrupts and softirqs,",
        "other = everything else on the machine; before = busy cores just before the run),",
        "and CPU ms per operation:",
        f"{'':22}{'before':>7}{'busy':>6}{'postgres':>10}{'tolom':>7}"
        f"{'loadgen':>9}{'irq':>6}{'other':>7}"
        "   ms/op: postgres / tolom / loadgen",
    ]
    cpu_rows = [("pgbench tpcb-like", report.pgbench.cpu if report.pgbench else {})]
    cpu_rows += [(r.label, r.cpu) for r in report.runs]
    for name, cpu in cpu_rows:
        if cpu:
            lines.append(
                f"{name:22}{_fmt(cpu.get('busy_cores_before')):>7}{cpu['cores_busy']:>6.2f}"
                f"{cpu['cores_postgres']:>10.2f}"
                f"{cpu['cores_tolom']:>7.2f}{cpu['cores_loadgen']:>9.2f}{cpu['cores_irq']:>6.2f}"
                f"{cpu['cores_other']:>7.2f}   {cpu['ms_per_op_postgres']:.2f} / "
                f"{cpu['ms_per_op_tolom']:.2f} / {cpu['ms_per_op_loadgen']:.2f}"
            )
    lines += [
        "",
        "batch sizes (group commit): each phase had a server of its own, whose workers log at",
        "shutdown how their requests shared transactions; summed over the workers, warm-up",
        "included; sizes are size x transactions:",
        f"{'':22}{'requests':>10}{'transactions':>14}{'mean':>7}  sizes",
    ]
    for r in report.runs:
        g = r.group_commit
        if g is None or not g.logged:
            lines.append(f"{r.label:22}  not logged (no 'group commit:' line in {r.server_log})")
        else:
            lines.append(
                f"{r.label:22}{g.requests:>10}{g.transactions:>14}{_fmt(g.mean):>7}  "
                f"{_sizes(g.sizes)}  ({g.lines} worker line(s))"
            )
    lines.append("")
    if report.pgbench:
        p = report.pgbench
        lines.append(
            f"pgbench: {p.transactions} transactions, {p.failed} failed, "
            f"latency average {p.latency_avg_ms:.2f} ms"
        )
    for r in report.runs:
        errors = sum(r.socket_errors.values())
        good = "200 with receipt (new payment)" if r.command == "rest_pay" else "result 0"
        bad = "2xx without receipt" if r.command == "rest_pay" else "other result"
        lines.append(
            f"{r.label}: {r.responses} answers: {r.ok} {good}, {r.not_ok} {bad}, "
            f"{r.non2xx} non-2xx, {errors} socket errors {r.socket_errors}"
        )
        if r.command == "rest_pay":
            lines.append(
                f"  {r.signed_requests} requests signed for the run; {r.sent_again} sent a "
                f"second time, {r.replayed} answered as idempotent replays "
                "(Idempotent-Replayed: true; not new payments, but in the per-second figure)"
            )
        if r.bad_answer_sample:
            lines.append(f"  first bad answer: {r.bad_answer_sample}")
    for s in report.servers:
        lines.append(
            f"ledger verify ({s.name}, {s.database}): "
            + ("OK" if s.ledger_verify_ok else f"FAILED\n{s.ledger_verify_output}")
        )
    for i in report.integrity:
        lines.append(
            f"{LABELS[i.command]} ({i.side}): payments in db {i.payments_in_db}, OK answers "
            f"{i.ok_answers}, request log says {i.logged_ok}: {i.note}"
        )
    if baseline:
        lines += ["", "baseline → current:"]
        for command in COMMANDS:
            new, old = report.run_of(command), report.run_of(command, "baseline")
            if not (new and old):
                continue
            lines.append(
                f"  {LABELS[command]:9} {old.requests_per_s:.1f} → {new.requests_per_s:.1f}/s "
                f"(×{_fmt(new.ratio_to_baseline)}), p50 {old.p50_ms:.2f} → {new.p50_ms:.2f} ms, "
                f"p99 {old.p99_ms:.2f} → {new.p99_ms:.2f} ms, CPU ms per request: tolom "
                f"{old.cpu['ms_per_op_tolom']:.2f} → {new.cpu['ms_per_op_tolom']:.2f}, "
                f"postgres {old.cpu['ms_per_op_postgres']:.2f} → "
                f"{new.cpu['ms_per_op_postgres']:.2f}"
            )
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


def method_lines(args: argparse.Namespace) -> list[str]:
    c, d, w = args.connections, args.duration, args.workers
    t = min(WRK_THREADS, c)
    databases = f"{BENCH_DB}, {PGBENCH_DB}" + (f", {BASELINE_DB}" if args.baseline_src else "")
    lines = [
        f"1. CREATE DATABASE {databases}; pgbench -i -s {args.scale} {PGBENCH_DB}",
        f"2. pgbench -c {c} -j {min(2, c)} -T {d} -b tpcb-like -l {PGBENCH_DB} "
        "(tps without connection time; p50/p99 from the -l log)",
        f"3. tolom db upgrade; agent create {AGENT} --allow-any-ip --json (secret, signing "
        f"key); customer import ({CUSTOMERS} customers)",
        f"4. per phase a fresh tolom serve --workers {w} (uvicorn, no access log, default pool),"
        f" /health 200; warm-up wrk {args.warmup} s with the phase's request (not measured);"
        " CHECKPOINT; quiet wait; the measured wrk run; SIGTERM (workers log group commit)",
        f"5. pay: wrk -t{t} -c{c} -d{d}s --latency -s bench/pay.lua {OSMP_PATH}: "
        "unique txn_id per request, 100.00 som, INNs in turn, Basic auth, <result>0</result>",
        "6. check: the same with bench/check.lua",
        f"7. REST pay: requests signed just before the run (HMAC-SHA256, one timestamp), "
        f"wrk -t{t} -c{c} -d{d}s --latency -s bench/rest_pay.lua: POST {REST_PATH}, "
        "JSON, unique txn_id per line; OK = 200 with receipt, replays counted apart",
        "8. payments counted in the database (OSMP and REST runs, after the server stopped); "
        "tolom ledger verify",
    ]
    if args.baseline_src:
        lines.append(
            f"9. baseline: the same phases with PYTHONPATH={args.baseline_src} python -m tolom "
            f"on {BASELINE_DB}, each right after the current version's (pay, pay (baseline), …)"
        )
    return [
        *lines,
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
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure the tolom in this src directory (PYTHONPATH), e.g. "
        "`git worktree add /tmp/tolom-baseline COMMIT` → /tmp/tolom-baseline/src",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory (logs, wrk output)"
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.workers < 1 or args.scale < 1:
        parser.error("--duration, --connections, --workers and --scale must be positive")
    if args.duration > REST_MAX_DURATION or args.warmup > REST_MAX_DURATION:
        parser.error(
            f"--duration and --warmup at most {REST_MAX_DURATION} s: the REST requests are "
            "signed before the run and the server accepts a signature for 5 minutes"
        )
    if args.baseline_src is not None:
        args.baseline_src = args.baseline_src.resolve()
        if not (args.baseline_src / "tolom" / "__init__.py").is_file():
            parser.error(f"--baseline-src {args.baseline_src} has no tolom/__init__.py")
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
            "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        },
        method=method_lines(args),
    )
    failed = True
    try:
        sides = make_sides(args, server, workdir)
        report.servers = [t.side for t in sides]
        databases = [BENCH_DB, PGBENCH_DB] + ([BASELINE_DB] if args.baseline_src else [])
        with throwaway_databases(args.database_url_admin, databases):
            report.pgbench = run_pgbench(server, args, workdir)
            for t in sides:
                prepare_tolom(t, workdir)
            for command in COMMANDS:
                for t in sides:
                    hint = None
                    if command == "rest_pay":  # sign for the faster of this side's OSMP runs
                        rates = [
                            r.requests_per_s
                            for r in report.runs
                            if r.side == t.side.name and r.command in ("pay", "check")
                        ]
                        hint = max(rates) if rates else None
                    result = measure(t, command, args, workdir, hint)
                    report.runs.append(result)
                    if command != "check":
                        report.integrity.append(check_payments(server, t, result, args.connections))
            for t in sides:
                ledger_verify(t, workdir)
        tps = report.pgbench.tps
        for result in report.runs:
            result.ratio_to_pgbench = result.requests_per_s / tps if tps else None
            old = report.run_of(result.command, "baseline")
            if result.side == "current" and old is not None and old.requests_per_s:
                result.ratio_to_baseline = result.requests_per_s / old.requests_per_s
        pay = report.run_of("pay")
        if pay is not None:
            ratio = pay.ratio_to_pgbench
            report.target = {
                "applies": args.connections == TARGET_CONNECTIONS,
                "pay_ratio": ratio,
                "pay_p99_ms": pay.p99_ms,
                "ratio_met": ratio is not None and ratio >= TARGET_RATIO,
                "p99_met": pay.p99_ms <= TARGET_P99_MS,
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
    sound = all(s.ledger_verify_ok for s in report.servers)
    return 0 if sound and all(i.consistent for i in report.integrity) else 1


if __name__ == "__main__":
    sys.exit(main())
