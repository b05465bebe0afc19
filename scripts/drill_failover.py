"""The failover drill's driver (`scripts/drill failover` runs it; docs/deployment.md#failover).

Pays through the OSMP gateway from a few threads, runs the kill command in the middle,
keeps paying until pays succeed again on the new primary and a while longer, then proves
on the new primary what every answer promised. Like a real agent, each thread repeats a
txn_id answered "retry" (result 1), a non-200 or no answer at all, until it gets a final
answer; every tenth pay names a customer that does not exist, so that a final refusal is
also checked. Prints the figures; exits 1 if a check fails.

Stdlib, httpx and psycopg only (the project's venv).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import psycopg

RESULT = re.compile(r"<result>(\d+)</result>")
AMOUNT_TYIYN = 10_000  # sum=100.00
UNKNOWN_EVERY = 10  # every tenth pay names a customer that does not exist


@dataclass
class Attempt:
    """One request and its answer: `kind` is ok, retry, refusal, http (non-200), transport."""

    txn_id: str
    sent: float
    answered: float
    kind: str
    detail: str


@dataclass
class Txn:
    txn_id: str
    expect_ok: bool
    final: str | None = None  # "ok" or "refusal <code>", None while unanswered
    attempts: int = 0


@dataclass
class Drill:
    base: str
    auth: tuple[str, str]
    inns: list[str]
    unknown_inn: str
    txn_date: str
    nonce: int
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: list[Attempt] = field(default_factory=list)
    txns: list[Txn] = field(default_factory=list)
    counter: int = 0

    def next_txn(self) -> Txn:
        with self.lock:
            self.counter += 1
            n = self.counter
            txn = Txn(f"{self.nonce}{n:09d}", expect_ok=n % UNKNOWN_EVERY != 0)
            self.txns.append(txn)
            return txn

    def pay_once(self, client: httpx.Client, txn: Txn, n: int) -> Attempt:
        account = self.inns[n % len(self.inns)] if txn.expect_ok else self.unknown_inn
        params = {
            "command": "pay",
            "txn_id": txn.txn_id,
            "txn_date": self.txn_date,
            "account": account,
            "sum": "100.00",
        }
        sent = time.monotonic()
        try:
            answer = client.get(f"{self.base}/gateway/osmp/sochi", params=params)
        except httpx.HTTPError as error:
            return Attempt(txn.txn_id, sent, time.monotonic(), "transport", type(error).__name__)
        answered = time.monotonic()
        if answer.status_code != 200:
            return Attempt(txn.txn_id, sent, answered, "http", str(answer.status_code))
        found = RESULT.search(answer.text)
        code = int(found.group(1)) if found else -1
        kind = "ok" if code == 0 else "retry" if code == 1 else "refusal"
        return Attempt(txn.txn_id, sent, answered, kind, str(code))

    def agent(self, finish_by: list[float]) -> None:
        """One agent thread: a txn at a time, repeated until its answer is final."""
        with httpx.Client(auth=self.auth, timeout=20.0) as client:
            while not self.stop.is_set():
                txn = self.next_txn()
                n = int(txn.txn_id[-9:])
                while txn.final is None:
                    if self.stop.is_set() and time.monotonic() > finish_by[0]:
                        return  # left unanswered: reported
                    attempt = self.pay_once(client, txn, n)
                    txn.attempts += 1
                    with self.lock:
                        self.attempts.append(attempt)
                    if attempt.kind == "ok":
                        txn.final = "ok"
                    elif attempt.kind == "refusal":
                        txn.final = f"refusal {attempt.detail}"
                    else:
                        time.sleep(0.2)  # an agent's pause before repeating


def wait_refused(address: str, limit: float = 10.0) -> float:
    """The moment `address` stops accepting TCP connections (polled every 10 ms)."""
    host, port = address.rsplit(":", 1)
    until = time.monotonic() + limit
    while time.monotonic() < until:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            return time.monotonic()
        time.sleep(0.01)
    raise SystemExit(f"drill: {address} still accepts connections {limit:.0f} s after the kill")


def first_ok_after(attempts: list[Attempt], moment: float) -> Attempt | None:
    """The first result 0 to a request sent after `moment`."""
    after = [a for a in attempts if a.kind == "ok" and a.sent >= moment]
    return min(after, key=lambda a: a.answered, default=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="Tolom's base URL")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--inns", required=True, help="comma-separated INNs of customers")
    parser.add_argument("--unknown-inn", required=True, help="a well-formed INN nobody has")
    parser.add_argument("--conninfo", required=True, help="libpq URL of the database (multi-host)")
    parser.add_argument("--kill", required=True, help="shell command that kills the primary")
    parser.add_argument("--primary", required=True, help="HOST:PORT of the primary it kills")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--before", type=float, default=5.0, help="seconds of pays before")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of pays after")
    parser.add_argument("--max-outage", type=float, default=180.0)
    parser.add_argument("--report", help="write the figures as JSON to this file")
    args = parser.parse_args()

    zone = ZoneInfo("Asia/Bishkek")
    drill = Drill(
        base=args.base.rstrip("/"),
        auth=(args.agent, args.secret),
        inns=args.inns.split(","),
        unknown_inn=args.unknown_inn,
        txn_date=datetime.now(zone).strftime("%Y%m%d%H%M%S"),
        nonce=int(time.time()) % 9_000_000 + 1_000_000,
    )
    finish_by = [float("inf")]
    threads = [
        threading.Thread(target=drill.agent, args=(finish_by,), daemon=True)
        for _ in range(args.threads)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    print(f"drill: {args.threads} agents paying; the kill in {args.before:.0f} s", flush=True)
    time.sleep(args.before)

    killed = time.monotonic()
    print(f"drill: killing the primary: {args.kill}", flush=True)
    subprocess.run(["/bin/bash", "-c", args.kill], check=True)  # noqa: S603 (our own command)
    # SIGKILL lands when the kernel next schedules each process: a backend may still commit
    # a pay for a moment. Recovery counts only pays sent once the port refuses connections.
    dead = wait_refused(args.primary)
    print(f"drill: the primary refuses connections {dead - killed:.2f} s after the kill")
    recovered: Attempt | None = None
    while recovered is None and time.monotonic() - killed < args.max_outage:
        time.sleep(0.2)
        with drill.lock:
            recovered = first_ok_after(drill.attempts, dead)
    if recovered is None:
        print(f"drill: no pay succeeded within {args.max_outage:.0f} s of the kill", flush=True)
    else:
        print(f"drill: pays succeed again {recovered.answered - killed:.1f} s after the kill")
        time.sleep(args.after)
    drill.stop.set()
    finish_by[0] = time.monotonic() + 60.0  # a txn in flight gets a minute to turn final
    for thread in threads:
        thread.join(timeout=90.0)
    ended = time.monotonic()

    return verify(args, drill, started, killed, recovered, ended)


def verify(
    args: argparse.Namespace,
    drill: Drill,
    started: float,
    killed: float,
    recovered: Attempt | None,
    ended: float,
) -> int:
    """Compare every answer with the new primary's rows; print the figures."""
    with drill.lock:
        attempts = list(drill.attempts)
        txns = list(drill.txns)
    by_phase: dict[str, Counter[str]] = {
        "before": Counter(),
        "outage": Counter(),
        "after": Counter(),
    }
    back = recovered.answered if recovered else float("inf")
    for a in attempts:
        phase = "before" if a.sent < killed else "outage" if a.answered < back else "after"
        by_phase[phase][a.kind if a.kind != "refusal" else f"refusal {a.detail}"] += 1
    ok = {t.txn_id for t in txns if t.final == "ok"}
    refused = {t.txn_id for t in txns if t.final and t.final.startswith("refusal")}
    unanswered = {t.txn_id for t in txns if t.final is None}
    ok_before_kill = {a.txn_id for a in attempts if a.kind == "ok" and a.answered < killed}
    wrong = [t for t in txns if t.final is not None and (t.final == "ok") != t.expect_ok]

    with psycopg.connect(args.conninfo, connect_timeout=5) as conn:
        port, in_recovery = conn.execute(
            "SELECT inet_server_port(), pg_is_in_recovery()"
        ).fetchone() or (None, None)
        rows = conn.execute(
            "SELECT p.txn_id, count(*), sum(p.amount) FROM payments p"
            " JOIN agents a ON a.id = p.agent_id WHERE a.code = %s GROUP BY p.txn_id",
            (args.agent,),
        ).fetchall()
    stored = {str(txn_id): (int(count), int(total)) for txn_id, count, total in rows}

    missing = sorted(ok - stored.keys())
    doubled = sorted(t for t, (count, _) in stored.items() if count != 1)
    refused_written = sorted(refused & stored.keys())
    unexplained = sorted(stored.keys() - ok - unanswered)
    lost_acknowledged = sorted(ok_before_kill - stored.keys())
    bad_amount = sorted(t for t, (_, total) in stored.items() if total != AMOUNT_TYIYN)

    def line(label: str, value: object) -> None:
        print(f"  {label:<46} {value}")

    print("drill: figures")
    line("new primary (port, in recovery)", f"{port}, {in_recovery}")
    line("pays (txn_ids) / requests", f"{len(txns)} / {len(attempts)}")
    line(
        "answered 0 / refused / left unanswered", f"{len(ok)} / {len(refused)} / {len(unanswered)}"
    )
    for phase, counts in by_phase.items():
        line(f"answers {phase}", dict(sorted(counts.items())) or "-")
    line("answered 0 before the kill (acknowledged)", len(ok_before_kill))
    if recovered:
        line("time to recovery (kill -> first result 0)", f"{recovered.answered - killed:.1f} s")
    else:
        line("time to recovery", "NONE")
    line("drill duration", f"{ended - started:.1f} s")

    checks = {
        "pays succeed again after the kill": recovered is not None,
        "every txn answered 0 is on the new primary": not missing,
        "each exactly once, 100.00 som": not doubled and not bad_amount,
        "every pay acknowledged before the kill survived": not lost_acknowledged,
        "no txn answered with a final refusal was written": not refused_written,
        "no row without a result 0 (but unanswered txns)": not unexplained,
        "no wrong final answer (0 for unknown, refusal for known)": not wrong,
        "the new primary is read-write": in_recovery is False,
    }
    print("drill: checks")
    for name, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}")
    for label, items in (
        ("missing", missing),
        ("doubled", doubled),
        ("lost acknowledged", lost_acknowledged),
        ("refused but written", refused_written),
        ("unexplained rows", unexplained),
        ("wrong answers", [f"{t.txn_id}: {t.final}" for t in wrong]),
    ):
        if items:
            print(f"  {label}: {items[:10]}{' ...' if len(items) > 10 else ''}")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as report:
            json.dump(
                {
                    "recovery_s": round(recovered.answered - killed, 2) if recovered else None,
                    "txns": len(txns),
                    "requests": len(attempts),
                    "ok": len(ok),
                    "refused": len(refused),
                    "unanswered": len(unanswered),
                    "ok_before_kill": len(ok_before_kill),
                    "answers": {p: dict(c) for p, c in by_phase.items()},
                    "checks": checks,
                    "new_primary_port": port,
                },
                report,
                indent=2,
            )
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
