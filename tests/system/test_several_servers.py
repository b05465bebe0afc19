"""Several app servers and workers on one PostgreSQL database, started for real.

Two `tolom serve` processes (separate hosts in production, two loopback ports here) and two
`tolom worker` processes share one schema of their own, with a webhook receiver registered
as an endpoint. The tests prove what docs/operations.md ("Several servers and workers")
promises: exactly-once pays whichever server answers, one delivery per event and endpoint,
in order per key, the workers' scheduled job run once, and agent caches that do not outlive
a disabled agent or a rotated secret beyond `agent_cache_seconds`. Every process started
here is killed (its whole session) in a `finally`, and the schema is dropped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import make_url

from tests.conftest import PG_SCHEMA, PG_URL
from tests.core.events.test_webhooks import LOCAL, Hit, Receiver, receiving
from tests.factories import add_agent, add_customer, add_invoice, parse_answer
from tolom.billing import orders
from tolom.db.engine import make_engine
from tolom.db.schema import deliveries, events, payments, signature_orders
from tolom.db.schema import registries as registries_table
from tolom.events import endpoints
from tolom.ledger import accounts as ledger_accounts
from tolom.ledger.verify import verify_ledger
from tolom.money import format_amount
from tolom.settings import Settings

pytestmark = pytest.mark.skipif(PG_URL is None, reason="needs TOLOM_TEST_DATABASE_URL")

HOST = "127.0.0.1"
TOLOM = [sys.executable, "-m", "tolom"]
SCHEMA = f"{PG_SCHEMA}_servers"
CACHE_SECONDS = 1.0  # TOLOM_AGENT_CACHE_SECONDS of every process started here
SLACK = 4.0  # on top of the documented bound: process scheduling on a busy 2-core machine
WAIT = 60.0  # deadline for deliveries: never a timing assertion, only "it happens"


def _slowly(_n: int, _hit: Hit) -> int:
    time.sleep(0.05)
    return 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll until `condition` is true, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s: {what}"
        time.sleep(0.1)


def _bishkek_now() -> str:
    """A txn_date the gateway accepts: now, as OSMP writes it (the agent's zone)."""
    return datetime.now(orders.ZONE).strftime("%Y%m%d%H%M%S")


@dataclass
class Cluster:
    """The running processes, the receiver and the test's own engine on the schema."""

    url: str
    env: dict[str, str]
    directory: Path
    engine: Engine
    servers: list[str]  # base URLs
    receiver: Receiver
    endpoint_id: int
    secrets: dict[str, str]  # agent code → secret
    expiring_order: int  # the signature order both workers see expiring
    logs: dict[str, Path]

    def output(self) -> str:
        return "\n".join(
            f"--- {name}\n{path.read_text()[-3000:]}" for name, path in self.logs.items()
        )

    def cli(self, *args: str) -> str:
        """`tolom ARGS` as an operator runs it on some host: a process of its own."""
        done = subprocess.run(
            [*TOLOM, *args],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _schema_url() -> str:
    """A fresh, empty schema of this module's own (`<TOLOM_TEST_SCHEMA>_servers`): other
    test runs on the same database are left alone."""
    assert PG_URL is not None
    url = make_url(PG_URL)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    scoped = url.update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return scoped.render_as_string(hide_password=False)


def _drop_schema() -> None:
    assert PG_URL is not None
    plain = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _start(
    stack: ExitStack, args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """A process in a session of its own, killed with its children when `stack` closes.
    Its output goes to a file: a worker logs every delivery, which would fill a pipe."""
    out = stack.enter_context(log.open("wb"))
    process = subprocess.Popen(
        [*TOLOM, *args],
        env=env,
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with suppress(ProcessLookupError):  # anything it left behind in its session
            os.killpg(process.pid, signal.SIGKILL)

    stack.callback(stop)
    return process


def _says(log: Path, text: str) -> bool:
    return text in log.read_text()


def _serving(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _issue_expiring_signature(engine: Engine, base: str, code: str, secret: str) -> int:
    """An invoice paid through a server, its order produced and issued, expiring in 5 days."""
    invoice = add_invoice(engine)
    answer = _osmp(
        base, code, secret, "eds", invoice.number, format_amount(invoice.total), "777001"
    )
    assert answer["result"] == 0, answer
    with engine.begin() as conn:
        [order] = orders.list_orders(conn, invoice_number=invoice.number, limit=10)
        orders.start(conn, order.id)
        orders.issue(conn, order.id, validity_months=12)
        today = orders.local_date(datetime.now(UTC))
        conn.execute(
            update(signature_orders)
            .where(signature_orders.c.id == order.id)
            .values(valid_until=today + timedelta(days=5))
        )
    return order.id


def _osmp(
    base: str, code: str, secret: str, service: str, account: str, amount: str, txn_id: str
) -> dict[str, Any]:
    params = {
        "command": "pay",
        "txn_id": txn_id,
        "txn_date": _bishkek_now(),
        "account": account,
        "sum": amount,
    }
    response = httpx.post(
        f"{base}/gateway/osmp/{service}", data=params, auth=(code, secret), timeout=60
    )
    assert response.status_code == 200, response.text
    return parse_answer(response.text)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Migrate a schema, start two servers, register the receiver, prepare a signature that
    expires soon, then start two workers (each runs the scheduled jobs as it starts)."""
    directory = tmp_path_factory.mktemp("servers")  # no .env file here
    ledger_accounts._system_cache.clear()  # ids of another database
    url = _schema_url()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLOM_")}
    env |= {
        "TOLOM_DATABASE_URL": url,
        "TOLOM_SECRET_KEY_FILE": os.environ["TOLOM_SECRET_KEY_FILE"],  # the session's key
        "TOLOM_AGENT_CACHE_SECONDS": str(CACHE_SECONDS),
        "TOLOM_WORKER_POLL_SECONDS": "0.2",
        "TOLOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "PYTHONUNBUFFERED": "1",
    }
    engine = make_engine(Settings(database_url=url), pool_size=4)
    logs: dict[str, Path] = {}
    try:
        with ExitStack() as stack:
            subprocess.run(
                [*TOLOM, "db", "upgrade"], env=env, cwd=directory, check=True, capture_output=True
            )  # migrates and seeds, as on a new installation
            # A receiver that takes a moment per request, so neither worker can take every
            # line's head by itself.
            receiver = stack.enter_context(receiving(Receiver(respond=_slowly)))
            with engine.begin() as conn:
                endpoint_id, receiver.secret = endpoints.add(
                    conn,
                    name="crm",
                    url=receiver.url,
                    event_types="*",
                    actor="test",
                    allowed_networks=LOCAL,
                )
            secrets = {code: add_agent(engine, code) for code in ("alpha", "beta", "gamma")}
            servers = []
            for n in (1, 2):
                port = _free_port()
                logs[f"serve {n}"] = directory / f"serve{n}.log"
                _start(
                    stack,
                    ["serve", "--host", HOST, "--port", str(port), "--workers", "1"],
                    env,
                    directory,
                    logs[f"serve {n}"],
                )
                servers.append(f"http://{HOST}:{port}")
            for base in servers:
                _wait(partial(_serving, base), 60, f"{base} answering /health")
            expiring = _issue_expiring_signature(engine, servers[0], "alpha", secrets["alpha"])
            for n in (1, 2):
                logs[f"worker {n}"] = directory / f"worker{n}.log"
                _start(stack, ["worker", "--batch", "2"], env, directory, logs[f"worker {n}"])
            for n in (1, 2):  # a worker runs its scheduled jobs before it delivers anything
                _wait(partial(_says, logs[f"worker {n}"], "scheduled jobs run"), 60, f"worker {n}")
            yield Cluster(
                url,
                env,
                directory,
                engine,
                servers,
                receiver,
                endpoint_id,
                secrets,
                expiring,
                logs,
            )
    finally:
        engine.dispose()
        ledger_accounts._system_cache.clear()
        _drop_schema()


def _together(count: int, action: Callable[[int], Any]) -> list[Any]:
    """`action(i)` in `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _delivered_everything(cluster: Cluster) -> bool:
    with cluster.engine.connect() as conn:
        waiting = conn.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.status != "delivered")
        ).scalar_one()
    return waiting == 0


# --- exactly-once pays, and their deliveries ---------------------------------------------


def test_pays_at_both_servers_count_once_and_each_event_arrives_once_in_order(
    cluster: Cluster,
) -> None:
    engine = cluster.engine
    code, secret = "beta", cluster.secrets["beta"]
    inns = [add_customer(engine) for _ in range(6)]

    # The same txn_id at both servers at the same instant: 6 txn_ids, 4 requests each.
    def same(i: int) -> tuple[str, dict[str, Any]]:
        txn = str(60_000 + i % 6)
        base = cluster.servers[i // 6 % 2]  # each txn_id: twice at each server
        return txn, _osmp(base, code, secret, "sochi", inns[i % 6], "25.00", txn)

    raced = _together(24, same)
    # Distinct pays, alternating servers, several at a time: the customers' lines fill up.
    distinct = _together(
        18,
        lambda i: _osmp(
            cluster.servers[i % 2], code, secret, "sochi", inns[i % 6], "10.00", str(70_000 + i)
        ),
    )

    assert {a["result"] for _, a in raced} == {0}, raced
    by_txn: dict[str, set[str]] = defaultdict(set)
    for txn, answer in raced:
        by_txn[txn].add(answer["osmp_txn_id"] + "/" + answer["prv_txn"])
    assert all(len(numbers) == 1 for numbers in by_txn.values()), by_txn
    assert {a["result"] for a in distinct} == {0}, distinct
    with engine.connect() as conn:
        counted = Counter(
            conn.execute(
                select(payments.c.txn_id).where(
                    payments.c.txn_id.in_(
                        [str(n) for n in (*range(60_000, 60_006), *range(70_000, 70_018))]
                    )
                )
            ).scalars()
        )
        assert sorted(counted.values()) == [1] * 24, counted
        assert verify_ledger(conn) == []

    # Both workers deliver; the receiver saw each event once, each line in event id order.
    _wait(lambda: _delivered_everything(cluster), WAIT, "every delivery delivered")
    with engine.connect() as conn:
        keys = dict(conn.execute(select(events.c.id, events.c.ordering_key)).all())
        to_endpoint = set(
            conn.execute(
                select(deliveries.c.event_id).where(deliveries.c.endpoint_id == cluster.endpoint_id)
            ).scalars()
        )
    arrived = [int(x) for x in cluster.receiver.ids()]
    assert set(keys) == to_endpoint, "every event has a delivery to the endpoint"
    assert sorted(arrived) == sorted(keys), "each event arrived exactly once"
    lines: dict[str, list[int]] = defaultdict(list)
    for event_id in arrived:
        lines[keys[event_id]].append(event_id)
    assert all(ids == sorted(ids) for ids in lines.values()), lines
    assert max(len(ids) for ids in lines.values()) >= 4  # the order was really at stake
    assert cluster.receiver.max_in_flight_per_id == 1
    shares = {
        name: path.read_text().count(": delivered (")
        for name, path in cluster.logs.items()
        if name.startswith("worker")
    }
    assert sum(shares.values()) == len(arrived), cluster.output()
    assert all(shares.values()), f"one worker delivered nothing: {shares}"
    print(f"\n{len(arrived)} events delivered: {shares}")


# --- the workers' scheduled job ------------------------------------------------------------


def test_two_workers_announce_an_expiring_signature_once(cluster: Cluster) -> None:
    """Both workers ran the scheduled jobs as they started (the fixture started them
    together, after the signature was issued): one `signature.expiring`, delivered once."""

    def announced() -> list[int]:
        with cluster.engine.connect() as conn:
            return [
                json.loads(p)["order_id"]
                for p in conn.execute(
                    select(events.c.payload).where(events.c.type == "signature.expiring")
                ).scalars()
            ]

    _wait(
        lambda: all(
            "scheduled jobs run" in path.read_text()
            for name, path in cluster.logs.items()
            if name.startswith("worker")
        ),
        WAIT,
        "both workers past their scheduled jobs",
    )
    assert announced() == [cluster.expiring_order]
    _wait(lambda: _delivered_everything(cluster), WAIT, "every delivery delivered")
    with cluster.engine.connect() as conn:
        [event_id] = conn.execute(
            select(events.c.id).where(events.c.type == "signature.expiring")
        ).scalars()
    assert cluster.receiver.ids().count(str(event_id)) == 1


# --- caches ------------------------------------------------------------------------------------


def _status(base: str, code: str, secret: str) -> int:
    params = {"command": "check", "txn_id": "1", "account": "1", "sum": "1.00"}
    return httpx.post(
        f"{base}/gateway/osmp/sochi", data=params, auth=(code, secret), timeout=30
    ).status_code


def test_a_disabled_agent_and_a_rotated_secret_reach_both_servers_in_time(
    cluster: Cluster,
) -> None:
    gamma, alpha = cluster.secrets["gamma"], cluster.secrets["alpha"]
    for base in cluster.servers:  # both servers have both agents cached
        assert _status(base, "gamma", gamma) == 200
        assert _status(base, "alpha", alpha) == 200

    cluster.cli("agent", "disable", "gamma")
    rotated = json.loads(cluster.cli("agent", "rotate-secret", "alpha", "--json"))
    changed = time.monotonic()

    def refused_everywhere() -> bool:
        return all(
            _status(base, "gamma", gamma) == 403
            and _status(base, "alpha", alpha) in (401, 429)  # 429: too many strangers
            for base in cluster.servers
        )

    _wait(refused_everywhere, CACHE_SECONDS + SLACK, "both servers refusing")
    took = time.monotonic() - changed
    # Past the bound, every request is refused (no process still holds the old agent).
    time.sleep(max(0.0, CACHE_SECONDS - took))
    for base in cluster.servers:
        assert {_status(base, "gamma", gamma) for _ in range(5)} == {403}
        assert {_status(base, "alpha", alpha) for _ in range(5)} <= {401, 429}
        assert _status(base, "alpha", rotated["secret"]) == 200
    print(f"\ndisable and rotate-secret refused by both servers {took:.2f} s after the CLI")


# --- the watched folder ------------------------------------------------------------------------


def test_two_watchers_of_one_folder_import_each_registry_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    """`tolom reconcile watch` on two hosts sharing the folder, passes at the same instant:
    one pass imports and moves every file, the other comes after it and finds nothing."""
    folder = tmp_path / "registries"
    drop = folder / "alpha"
    drop.mkdir(parents=True)
    account = add_customer(cluster.engine)
    files = []
    for back in range(1, 13):  # enough files that a pass takes a while
        day = datetime.now(orders.ZONE).date() - timedelta(days=back)
        file = drop / f"reestr-{day:%Y-%m-%d}.txt"
        line = f"{99_000 + back}\t{day:%d.%m.%Y}\t10:00:00\t{account}\t70.00\n"
        file.write_bytes(f"{line}Total: 1 70.00\n".encode())
        files.append(file)
    for _ in range(2):  # the second round: the same files dropped again (replays)
        for file in files:
            os.utime(file, (1, 1))  # settled long ago
        watchers = [
            subprocess.Popen(
                [*TOLOM, "reconcile", "watch", str(folder), "--once"],
                env=cluster.env,
                cwd=cluster.directory,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for _ in range(2)
        ]
        try:
            done = [w.communicate(timeout=120) for w in watchers]
        finally:
            for w in watchers:
                with suppress(ProcessLookupError):
                    os.killpg(w.pid, signal.SIGKILL)
        assert [w.returncode for w in watchers] == [0, 0], done
        assert not any(err.strip() for _, err in done), done  # no traceback, no failure
        assert sorted(len(out.splitlines()) for out, _ in done) == [0, len(files)], done
        assert not (drop / "failed").exists()
        assert len(list((drop / "done").glob("*.result.json"))) == len(files)
        for file in files:  # each moved once, under its own name: put it back
            (drop / "done" / f"{file.name}.result.json").unlink()
            (drop / "done" / file.name).replace(file)
    with cluster.engine.connect() as conn:
        imported = Counter(
            conn.execute(
                select(registries_table.c.file_name).where(
                    registries_table.c.file_name.in_([f.name for f in files])
                )
            ).scalars()
        )
    assert imported == Counter(f.name for f in files)
