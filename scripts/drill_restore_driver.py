"""The Tolom side of the point-in-time restore drill (scripts/drill_restore.sh).

The shell script owns the PostgreSQL clusters and pgBackRest; this driver seeds Tolom,
sends OSMP pays to a running `tolom serve`, reads the moment T and the archive lag from
the database, and proves what a restore to T must hold. It keeps what it learns in one
JSON state file, so each step is a separate, re-runnable command:

    drill_restore_driver.py seed      --state S           customers and an agent (CLI)
    drill_restore_driver.py pays      --state S --batch B --count N --port P
    drill_restore_driver.py switch    --state S --dsn D --name NAME   switch WAL, time archiving
    drill_restore_driver.py mark      --state S --dsn D   T = now() after a WAL switch
    drill_restore_driver.py open-wal  --state S --dsn D   WAL bytes not yet archived
    drill_restore_driver.py prove     --state S --dsn D --port P      the restore's checks
    drill_restore_driver.py time      --state S --name N --seconds X  note a part of RTO
    drill_restore_driver.py report    --state S           RPO and RTO as measured

Tolom commands run with the environment they are given (TOLOM_DATABASE_URL,
TOLOM_SECRET_KEY_FILE). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

TOLOM = Path(sys.executable).parent / "tolom"
AGENT = "drill"
CUSTOMERS = 3
BISHKEK = ZoneInfo("Asia/Bishkek")

State = dict[str, Any]


def load(path: Path) -> State:
    return json.loads(path.read_text()) if path.exists() else {}


def save(path: Path, state: State) -> None:
    path.write_text(json.dumps(state, indent=2, ensure_ascii=False))


def tolom(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `tolom` CLI; its output is shown when it fails."""
    command = [str(TOLOM), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 (our CLI)
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"tolom {' '.join(args)}: exit {done.returncode}")
    return done


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    raise SystemExit(1)


# --- steps ---------------------------------------------------------------------------------


def seed(state: State) -> None:
    """Customers to top up and the agent that pays them, as an operator would add them."""
    inns = []
    for n in range(CUSTOMERS):
        inn = "2" + "".join(str(secrets.randbelow(10)) for _ in range(13))
        done = tolom("customer", "add", inn, f"Учения {n + 1}", "--json")
        if done.returncode:
            fail(f"customer add: {done.stdout}{done.stderr}")
        inns.append(inn)
    done = tolom(
        "agent",
        "create",
        AGENT,
        "--name",
        "Учения",
        "--allow-ip",
        "127.0.0.1/32",
        "--services",
        "sochi",
        "--json",
    )
    if done.returncode:
        fail(f"agent create: {done.stdout}{done.stderr}")
    state.update(inns=inns, secret=json.loads(done.stdout)["secret"], next_txn=1000, batches={})


def osmp_pay(port: int, secret: str, txn_id: int, account: str, amount: str) -> dict[str, Any]:
    """One OSMP pay to /gateway/osmp/sochi; the answer as the agent reads it."""
    query = urllib.parse.urlencode(
        {
            "command": "pay",
            "txn_id": str(txn_id),
            "account": account,
            "sum": amount,
            "txn_date": datetime.now(BISHKEK).strftime("%Y%m%d%H%M%S"),
        }
    )
    request = urllib.request.Request(f"http://127.0.0.1:{port}/gateway/osmp/sochi?{query}")
    token = base64.b64encode(f"{AGENT}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    # Our own server on loopback (http only): its XML, not a stranger's.
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        root = ElementTree.fromstring(response.read())  # noqa: S314
    return {
        "txn_id": str(txn_id),
        "account": account,
        "sum": amount,
        "result": int(root.findtext("result", "-1")),
        "prv_txn": root.findtext("prv_txn"),
    }


def pays(state: State, batch: str, count: int, port: int) -> None:
    """`count` pays in turn, each answered before the next is sent (as a terminal does)."""
    answers = state["batches"].setdefault(batch, [])
    for n in range(count):
        txn_id = state["next_txn"]
        state["next_txn"] += 1
        amount = f"{100 + 7 * n + secrets.randbelow(100)}.{secrets.randbelow(100):02d}"
        answers.append(
            osmp_pay(port, state["secret"], txn_id, state["inns"][n % CUSTOMERS], amount)
        )
    refused = [a for a in answers if a["result"] != 0]
    print(f"batch {batch}: {len(answers) - len(refused)} pays answered 0, {len(refused)} not")


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def switch(state: State, dsn: str, name: str) -> None:
    """Close the open WAL segment and time how long pgBackRest takes to archive it."""
    with connect(dsn) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = row[0]
        start = time.monotonic()
        while True:
            row = conn.execute(
                "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
            ).fetchone()
            assert row is not None
            if row[0] is not None and row[0] >= segment:
                break
            if time.monotonic() - start > 120:
                fail(f"segment {segment} not archived in 120 s (archiver: {row})")
            time.sleep(0.05)
    lag = time.monotonic() - start
    state.setdefault("archive_lag", {})[name] = {"segment": segment, "seconds": round(lag, 3)}
    print(f"WAL segment {segment} archived {lag:.2f} s after the switch ({name})")


def mark(state: State, dsn: str) -> None:
    """T: the database's clock after batch 1 was answered and its WAL switched out."""
    switch(state, dsn, "batch 1")
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
        ).fetchone()
    assert row is not None
    state["target"] = row[0]
    print(f"T = {state['target']}")


def open_wal(state: State, dsn: str) -> None:
    """WAL written into the segment not yet closed: what a lost disk would lose now."""
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT file_name, file_offset FROM pg_walfile_name_offset(pg_current_wal_lsn())"
        ).fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('archive_timeout', 'wal_segment_size')"
            ).fetchall()
        )
    assert row is not None
    state["open_wal"] = {"segment": row[0], "bytes": int(row[1])}
    state["archive_timeout"] = int(settings["archive_timeout"])
    print(f"not yet archived: {row[1]} bytes in the open segment {row[0]}")


def balances(state: State) -> dict[str, int]:
    """Each drill customer's balance in tyiyn, as `tolom customer show` reads it."""
    found = {}
    for inn in state["inns"]:
        done = tolom("customer", "show", inn, "--json")
        if done.returncode:
            fail(f"customer show {inn}: {done.stdout}{done.stderr}")
        som = json.loads(done.stdout)["balance"]
        found[inn] = to_tyiyn(som)
    return found


def to_tyiyn(amount: str) -> int:
    whole, _, part = amount.partition(".")
    return int(whole) * 100 + int((part + "00")[:2])


def prove(state: State, dsn: str, port: int) -> None:
    """Batch 1 is there exactly once, nothing after T is, balances and the ledger agree,
    and Tolom on the restored database takes a new pay and repeats an old one."""
    before = [a for a in state["batches"]["before T"] if a["result"] == 0]
    after = [a for a in state["batches"]["after T"] if a["result"] == 0]
    if not before or not after:
        fail("a batch has no pay answered 0: nothing to prove")
    with connect(dsn) as conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone() != (False,):
            fail("the restored cluster is still in recovery")
        rows = conn.execute(
            "SELECT p.txn_id, p.id, p.amount FROM payments p JOIN agents a ON a.id = p.agent_id "
            "WHERE a.code = %s",
            (AGENT,),
        ).fetchall()
    found: dict[str, list[tuple[str, int]]] = {}
    for txn_id, payment_id, amount in rows:
        found.setdefault(txn_id, []).append((str(payment_id), amount))
    for answer in before:
        got = found.get(answer["txn_id"], [])
        expected = [(answer["prv_txn"], to_tyiyn(answer["sum"]))]
        if got != expected:
            fail(f"pay {answer['txn_id']} before T: expected {expected}, restored {got}")
    late = [a["txn_id"] for a in after if a["txn_id"] in found]
    if late:
        fail(f"pays answered after T are in the restored database: {late}")
    if len(rows) != len(before):
        fail(f"{len(rows)} payments of the agent restored, {len(before)} answered before T")
    print(f"{len(before)} pays before T restored exactly once; none of {len(after)} after T")

    expected_balance = dict.fromkeys(state["inns"], 0)
    for answer in before:
        expected_balance[answer["account"]] += to_tyiyn(answer["sum"])
    if (got_balance := balances(state)) != expected_balance:
        fail(f"balances {got_balance}, expected from batch 1 {expected_balance}")
    print("customers' balances equal the sums of the pays before T")

    verify = tolom("ledger", "verify")
    if verify.returncode:
        fail(f"tolom ledger verify: {verify.stdout}{verify.stderr}")
    print(f"tolom ledger verify: {verify.stdout.strip()}")

    repeat = osmp_pay(
        port, state["secret"], int(before[0]["txn_id"]), before[0]["account"], before[0]["sum"]
    )
    if (repeat["result"], repeat["prv_txn"]) != (0, before[0]["prv_txn"]):
        fail(f"repeated pay {before[0]['txn_id']}: {repeat}, expected its prv_txn again")
    fresh = osmp_pay(port, state["secret"], state["next_txn"] + 1000, state["inns"][0], "50.00")
    if fresh["result"] != 0:
        fail(f"a new pay on the restored database: {fresh}")
    verify = tolom("ledger", "verify")
    if verify.returncode:
        fail(f"tolom ledger verify after a new pay: {verify.stdout}{verify.stderr}")
    print(f"restored Tolom answers: repeat of {repeat['txn_id']} same prv_txn, new pay accepted")


def report(state: State) -> None:
    """RPO and RTO as this run measured them."""
    lags = state.get("archive_lag", {})
    worst = max((lag["seconds"] for lag in lags.values()), default=0.0)
    timeout = state.get("archive_timeout", 0)
    open_bytes = state.get("open_wal", {}).get("bytes", 0)
    print("--- measured -------------------------------------------------------------")
    print(f"target T                 {state.get('target')}")
    for name, lag in lags.items():
        print(
            f"archive lag ({name}){' ' * max(1, 12 - len(name))}{lag['seconds']:.2f} s "
            f"(segment {lag['segment']})"
        )
    print(f"unarchived at the end    {open_bytes} bytes of WAL in the open segment")
    print(
        f"RPO                      up to archive_timeout ({timeout} s) + archive lag "
        f"({worst:.2f} s) = {timeout + worst:.1f} s of acknowledged pays"
    )
    for name in ("restore", "start", "serve", "verify", "total"):
        if name in state.get("rto", {}):
            print(f"RTO {name:<20} {state['rto'][name]:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "step", choices=["seed", "pays", "switch", "mark", "open-wal", "prove", "report", "time"]
    )
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--dsn", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--batch", default="")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--name", default="")
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    state = load(args.state)
    try:
        if args.step == "seed":
            seed(state)
        elif args.step == "pays":
            pays(state, args.batch, args.count, args.port)
        elif args.step == "switch":
            switch(state, args.dsn, args.name)
        elif args.step == "mark":
            mark(state, args.dsn)
        elif args.step == "open-wal":
            open_wal(state, args.dsn)
        elif args.step == "prove":
            prove(state, args.dsn, args.port)
        elif args.step == "time":
            state.setdefault("rto", {})[args.name] = args.seconds
        else:
            report(state)
    finally:
        if args.step != "report":
            save(args.state, state)


if __name__ == "__main__":
    main()
