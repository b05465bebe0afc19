"""Faults under load: a worker killed with SIGKILL and PostgreSQL restarted lose no money.

A private PostgreSQL 15 cluster (tests/pgcluster.py, never the machine's shared server), the
real `tolom serve --workers 2` on it, and eight agent threads sending OSMP pays with fresh
txn_ids for ~20 s. At ~5 s one worker is killed with SIGKILL, at ~10 s PostgreSQL is
restarted (`pg_ctl restart -m fast`). Then, as an agent would, every txn_id that did not get
result 0 is sent again with the same parameters until it does. Every acknowledged pay must
be in the ledger exactly once, every txn_id sent must be paid exactly once, `tolom ledger
verify` must pass, and every answered request must be in `gateway_requests` once the spool
of the outage has drained. Figures (answers lost, recovery times) are printed, not asserted.
Loopback only; every process started here is stopped in a `finally`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import pgcluster
from tests.factories import parse_answer

AGENT = "bench"
CUSTOMERS = 5
AMOUNT = "100.00"
AMOUNT_TYIYN = 10_000
TXN_DATE = "20261121143005"
THREADS = 8
LOAD_SECONDS = 20.0
KILL_AT = 5.0
RESTART_AT = 10.0
REQUEST_TIMEOUT = 10.0
RECOVERY_SECONDS = 20.0  # after the load: the server answers /ready and a pay with 0
RETRY_ATTEMPTS = 20  # per txn_id, half a second apart
DRAIN_SECONDS = 30.0


# --- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session…"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError):
                yield int(entry.name), _stat(int(entry.name))


def _workers(supervisor: int) -> set[int]:
    """uvicorn's live workers: multiprocessing spawn children of the supervisor."""
    found = set()
    for pid, fields in _processes():
        if int(fields[1]) != supervisor or fields[0] == "Z":
            continue
        with suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found


def _session(sid: int) -> set[int]:
    """Live processes of a session (a server started with start_new_session=True)."""
    return {pid for pid, fields in _processes() if int(fields[3]) == sid and fields[0] != "Z"}


def _tolom(env: dict[str, str], cwd: Path, *args: str) -> str:
    """`tolom ARGS` as an operator runs it; its stdout. Fails the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "tolom", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"tolom {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done.stdout


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path}: no log)"


# --- the fixtures ----------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[pgcluster.Cluster]:
    """A private PostgreSQL 15, started; stopped at once and removed after the test."""
    missing = pgcluster.missing()
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the fault test: {missing}")
        pytest.skip(missing)
    unusable = pgcluster.unusable()
    if unusable is not None:
        pytest.fail(f"cannot run the private PostgreSQL: {unusable}")
    db = pgcluster.Cluster.create()
    try:
        db.start()
        yield db
    finally:
        db.stop()
        db.remove()


@dataclass
class Tolom:
    """A prepared database: the environment to run tolom with, the agent, the customers."""

    env: dict[str, str]
    workdir: Path
    spool: Path
    secret: str
    inns: list[str]


@pytest.fixture
def tolom(cluster: pgcluster.Cluster, tmp_path: Path) -> Tolom:
    """`tolom db upgrade`, an agent and a few customers, with the real CLI."""
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLOM_")}
    env |= {
        "TOLOM_DATABASE_URL": cluster.url,
        "TOLOM_REQUEST_SPOOL_DIR": str(spool),
        "TOLOM_LOCK_TIMEOUT_MS": "2000",
        "TOLOM_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "PYTHONUNBUFFERED": "1",
    }
    _tolom(env, tmp_path, "secrets", "init")  # required with PostgreSQL, as in production
    _tolom(env, tmp_path, "db", "upgrade")
    inns = [f"{10_000_000_000_000 + i * 7:014d}" for i in range(1, CUSTOMERS + 1)]
    csv_path = tmp_path / "customers.csv"
    lines = ["inn,name,legal_form", *(f"{inn},Отказ {i},ОсОО" for i, inn in enumerate(inns))]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with ThreadPoolExecutor(2) as pool:  # two independent commands: save a start-up
        created = pool.submit(
            _tolom, env, tmp_path, "agent", "create", AGENT, "--name", "Bench", "--allow-any-ip",
            "--json",
        )  # fmt: skip
        imported = pool.submit(_tolom, env, tmp_path, "customer", "import", str(csv_path), "--json")
        secret = str(json.loads(created.result())["secret"])
        assert json.loads(imported.result())["imported"] == CUSTOMERS
    return Tolom(env, tmp_path, spool, secret, inns)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def _wait(condition: Callable[[], object], seconds: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"timed out after {seconds} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def server(tolom: Tolom, cluster: pgcluster.Cluster) -> Iterator[Server]:
    """`tolom serve --workers 2`, its log in a file; the whole session stopped after."""
    port = pgcluster.free_port()
    log = tolom.workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tolom", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2"],
            env=tolom.env,
            cwd=tolom.workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    running = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait(
            lambda: process.poll() is not None or _healthy(running.base),
            60,
            "tolom serve answering /health",
        )
        assert process.poll() is None, f"tolom serve exited:\n{_tail(log)}"
        _wait(lambda: len(_workers(process.pid)) == 2, 30, "both workers running")
        yield running
    except BaseException:
        _print_logs(running, cluster)
        raise
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
            _wait(lambda: not _session(process.pid), 20, "the workers stopping")
        except (subprocess.TimeoutExpired, AssertionError):
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        left = _session(process.pid)
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of tolom serve left running: {left}\n{_tail(log)}"


# --- the agent -------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One pay request and what came of it (status None: no answer, the outcome unknown)."""

    phase: str
    txn_id: str
    account: str
    started: float
    ended: float = 0.0
    status: int | None = None
    result: int | None = None
    prv_txn: int | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        return self.result == 0


@dataclass
class Agent:
    base: str
    secret: str
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> httpx.Client:
        return httpx.Client(auth=(AGENT, self.secret), timeout=REQUEST_TIMEOUT)

    def pay(self, client: httpx.Client, phase: str, txn_id: str, account: str) -> Attempt:
        params = {
            "command": "pay",
            "txn_id": txn_id,
            "txn_date": TXN_DATE,
            "account": account,
            "sum": AMOUNT,
        }
        attempt = Attempt(phase, txn_id, account, time.monotonic())
        try:
            response = client.get(f"{self.base}/gateway/osmp/sochi", params=params)
            attempt.status = response.status_code
            try:
                answer = parse_answer(response.text)
                attempt.result = answer["result"]
                if answer.get("prv_txn") is not None:
                    attempt.prv_txn = int(answer["prv_txn"])
            except (ET.ParseError, AssertionError, KeyError, ValueError) as error:
                attempt.error = f"not an OSMP answer ({type(error).__name__}): {response.text!r}"
        except httpx.HTTPError as error:
            attempt.error = type(error).__name__
        attempt.ended = time.monotonic()
        with self.lock:
            self.attempts.append(attempt)
        return attempt


def _recovery(attempts: list[Attempt], fault_at: float, until: float) -> tuple[int, int, float]:
    """Answers 1 and failed requests ended in [fault_at, until), and the seconds from the
    fault to the first pay answered 0 after the last failure (the service back)."""
    window = [a for a in attempts if fault_at <= a.ended < until]
    retries = sum(a.result == 1 for a in window)
    failures = sum(not a.answered or a.error is not None for a in window)
    bad = [a.ended for a in window if not a.ok]
    if not bad:
        return retries, failures, 0.0
    last_bad = max(bad)
    back = [a.ended for a in attempts if a.ok and a.started >= last_bad]
    return retries, failures, (min(back) - fault_at) if back else float("nan")


# --- the test --------------------------------------------------------------------------------


def test_acknowledged_pays_survive_a_killed_worker_and_a_database_restart(
    cluster: pgcluster.Cluster, tolom: Tolom, server: Server
) -> None:
    try:
        _faults_under_load(cluster, tolom, server)
    except BaseException:
        _print_logs(server, cluster)
        raise


def _print_logs(server: Server, cluster: pgcluster.Cluster) -> None:
    print(f"\n--- tolom serve log (tail) ---\n{_tail(server.log)}")
    print(f"--- PostgreSQL log (tail) ---\n{cluster.log_tail()}")


def _faults_under_load(cluster: pgcluster.Cluster, tolom: Tolom, server: Server) -> None:
    agent = Agent(server.base, tolom.secret)
    txn_ids = itertools.count(10_001)
    sent: dict[str, str] = {}  # txn_id → account, every txn_id ever sent
    sent_lock = threading.Lock()

    def fresh_pay(client: httpx.Client, phase: str) -> Attempt:
        with sent_lock:
            txn_id = str(next(txn_ids))
            account = tolom.inns[len(sent) % len(tolom.inns)]
            sent[txn_id] = account
        return agent.pay(client, phase, txn_id, account)

    # --- the load, and the two faults in the middle of it -----------------------------------
    stop = threading.Event()

    def load() -> None:
        with agent.client() as client:
            while not stop.is_set():
                fresh_pay(client, "load")

    threads = [threading.Thread(target=load, daemon=True) for _ in range(THREADS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(max(0.0, began + KILL_AT - time.monotonic()))
        workers = _workers(server.pid)
        assert len(workers) == 2, workers
        victim = min(workers)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(_workers(server.pid) - {victim}) == 2, 30, "a replacement worker")
        replaced_after = time.monotonic() - killed_at

        time.sleep(max(0.0, began + RESTART_AT - time.monotonic()))
        restarted_at = time.monotonic()
        cluster.restart()
        restart_took = time.monotonic() - restarted_at

        time.sleep(max(0.0, began + LOAD_SECONDS - time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
    load_ended = time.monotonic()
    assert not any(thread.is_alive() for thread in threads), "a load thread hangs"
    load_attempts = list(agent.attempts)

    # --- the server serves again ----------------------------------------------------------
    with agent.client() as client:
        _wait(lambda: _healthy(server.base), RECOVERY_SECONDS, "/ready after the faults")
        _wait(lambda: fresh_pay(client, "probe").ok, RECOVERY_SECONDS, "a pay answered 0 again")
    serving_again = time.monotonic() - load_ended

    # --- the agent repeats every txn_id without result 0, same parameters -----------------
    paid = {a.txn_id for a in agent.attempts if a.ok}
    unsettled = sorted(set(sent) - paid, key=int)

    def settle(txn_id: str) -> Attempt:
        with agent.client() as client:
            for _ in range(RETRY_ATTEMPTS):
                attempt = agent.pay(client, "retry", txn_id, sent[txn_id])
                if attempt.ok:
                    break
                time.sleep(0.5)
        return attempt

    with ThreadPoolExecutor(THREADS) as pool:
        settled = list(pool.map(settle, unsettled))
    not_settled = [a for a in settled if not a.ok]
    assert not not_settled, f"txn_ids never answered 0 after {RETRY_ATTEMPTS} tries: {not_settled}"

    # --- the spool of the outage drains (a pay now and then: the drain follows a commit) ---
    def spooled() -> list[str]:
        names = [p.name for p in tolom.spool.glob("requests-*")] if tolom.spool.exists() else []
        return sorted(name for name in names if ".rejected-" not in name)

    spooled_after_load = spooled()
    with agent.client() as client:

        def drained() -> bool:
            if not spooled():
                return True
            fresh_pay(client, "drain")
            time.sleep(1.0)
            return not spooled()

        _wait(drained, DRAIN_SECONDS, f"the request spool drained: {spooled()}")

    # --- the answers ----------------------------------------------------------------------
    attempts = list(agent.attempts)
    answered = [a for a in attempts if a.answered]
    statuses = Counter(a.status for a in answered)
    results = Counter(a.result for a in answered)
    unparsed = [a for a in answered if a.error is not None]
    assert set(statuses) == {200}, f"HTTP statuses of valid pays: {statuses}"
    assert not unparsed, unparsed[:5]
    assert set(results) <= {0, 1}, f"results of valid pays: {results}"

    # --- the money ------------------------------------------------------------------------
    with psycopg.connect(cluster.dsn) as conn:
        rows = conn.execute(
            "SELECT p.txn_id, p.id, p.account, p.amount, p.status FROM payments p"
            " JOIN agents a ON a.id = p.agent_id WHERE a.code = %s",
            (AGENT,),
        ).fetchall()
        all_payments = conn.execute("SELECT count(*) FROM payments").fetchone()
        customer_balances = conn.execute(
            "SELECT coalesce(sum(b.balance), 0) FROM customers c"
            " JOIN account_balances b ON b.account_id = c.account_id"
        ).fetchone()
        recorded: dict[str, int] = dict(
            conn.execute(
                "SELECT coalesce(command, '<none>'), count(*) FROM gateway_requests GROUP BY 1"
            ).fetchall()
        )
        recorded_by_txn: Counter[str] = Counter(
            dict(
                conn.execute(
                    "SELECT txn_id, count(*) FROM gateway_requests"
                    " WHERE txn_id IS NOT NULL GROUP BY txn_id"
                ).fetchall()
            )
        )
        other_rows = conn.execute(
            "SELECT txn_id, command, agent_id, http_status, result, params FROM gateway_requests"
            " WHERE command IS DISTINCT FROM 'pay' LIMIT 10"
        ).fetchall()

    per_txn = Counter(row[0] for row in rows)
    doubled = {txn: n for txn, n in per_txn.items() if n > 1}
    assert not doubled, f"payments doubled: {doubled}"
    payment_of = {row[0]: row for row in rows}
    acknowledged = {a.txn_id for a in attempts if a.ok}
    missing = sorted(acknowledged - set(payment_of), key=int)
    assert not missing, f"acknowledged (result 0) but not in the ledger: {missing}"
    wrong_number = [
        (a.txn_id, a.prv_txn, payment_of[a.txn_id][1])
        for a in attempts
        if a.ok and a.prv_txn != payment_of[a.txn_id][1]
    ]
    assert not wrong_number, f"prv_txn differs from the payment's number: {wrong_number[:10]}"
    assert set(payment_of) == set(sent), (
        f"sent {len(sent)} txn_ids, paid {len(payment_of)}; "
        f"unpaid {sorted(set(sent) - set(payment_of), key=int)[:10]}, "
        f"unknown {sorted(set(payment_of) - set(sent), key=int)[:10]}"
    )
    assert all_payments is not None and all_payments[0] == len(sent)
    assert all(
        (account, amount, status) == (sent[txn], AMOUNT_TYIYN, "accepted")
        for txn, _id, account, amount, status in rows
    )
    assert customer_balances is not None
    assert customer_balances[0] == AMOUNT_TYIYN * len(sent), "customers' balances ≠ payments"
    verified = subprocess.run(
        [sys.executable, "-m", "tolom", "ledger", "verify", "--json"],
        env=tolom.env,
        cwd=tolom.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, f"tolom ledger verify:\n{verified.stdout}{verified.stderr}"
    assert json.loads(verified.stdout)["ok"] is True

    # --- the figures (printed, never asserted) --------------------------------------------
    kill_window = _recovery(load_attempts, killed_at, restarted_at)
    restart_window = _recovery(load_attempts, restarted_at, load_ended)
    load_answered = [a for a in load_attempts if a.answered]
    print(
        f"\nfault test: {len(load_attempts)} pays in {load_ended - began:.1f} s "
        f"({len(load_answered) / (load_ended - began):.0f}/s answered) by {THREADS} threads; "
        f"{len(sent)} txn_ids in all, {len(unsettled)} repeated by the agent "
        f"({sum(a.phase == 'retry' for a in attempts)} repeats)\n"
        f"  kill -9 worker {victim}: {kill_window[0]} answers 1, {kill_window[1]} without "
        f"an answer; replacement running after {replaced_after:.2f} s; pays answered 0 again "
        f"{kill_window[2]:.2f} s after the kill\n"
        f"  pg_ctl restart -m fast ({restart_took:.2f} s): {restart_window[0]} answers 1, "
        f"{restart_window[1]} without an answer; pays answered 0 again "
        f"{restart_window[2]:.2f} s after the restart began\n"
        f"  serving again {serving_again:.2f} s after the load; spool after the load: "
        f"{spooled_after_load or 'empty'}\n"
        f"  results {dict(results)}; gateway_requests by command {recorded}"
    )

    # --- every answered request is on record ------------------------------------------------
    assert not list(tolom.spool.glob("*rejected*")), "the database refused spooled records"
    assert "record lost" not in server.log.read_text(errors="replace"), _tail(server.log)
    answered_by_txn = Counter(a.txn_id for a in answered)
    short = {
        txn: (n, recorded_by_txn[txn])
        for txn, n in answered_by_txn.items()
        if recorded_by_txn[txn] < n
    }
    assert not short, f"txn_ids with fewer records than answers (answers, records): {short}"
    assert recorded.get("pay", 0) >= len(answered), (
        f"{len(answered)} pays answered, {recorded.get('pay', 0)} recorded as command 'pay'; "
        f"records by command {recorded}; some of the others (txn_id, command, agent_id, "
        f"http_status, result, params): {other_rows}"
    )
