"""Real concurrency: many agents' requests at the same instant against a real server.

The HTTP tests start `tolom serve` with several worker processes on PostgreSQL, fire
identical requests from many threads released together by a barrier, and count the money.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.factories import (
    Gateway,
    add_agent,
    add_customer,
    add_invoice,
    parse_answer,
    postgres_only,
)
from tolom.billing import customers
from tolom.db.schema import payments
from tolom.money import format_amount


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(database_url: str) -> Iterator[str]:
    """`tolom serve --workers 2` on the test database; stopped after the test."""
    port = _free_port()
    env = {**os.environ, "TOLOM_DATABASE_URL": database_url, "TOLOM_AGENT_CACHE_SECONDS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tolom",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start: {process.stderr.read().decode() if process.stderr else ''}"
                )
            time.sleep(0.1)
        yield base
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _together(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` in `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _balance(engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


@postgres_only
def test_fifty_identical_pays_at_once_credit_exactly_once(live_server: str, engine) -> None:
    secret = add_agent(engine, "racer")
    inn = add_customer(engine)
    params = {
        "command": "pay",
        "txn_id": "88005553535",
        "txn_date": "20261121143005",
        "account": inn,
        "sum": "250.00",
    }
    with httpx.Client(
        auth=("racer", secret), timeout=60, limits=httpx.Limits(max_connections=60)
    ) as client:
        responses = _together(
            50, lambda _i: client.get(f"{live_server}/gateway/osmp/sochi", params=params)
        )
    answers = [parse_answer(r.text) for r in responses]
    assert {r.status_code for r in responses} == {200}
    assert {a["result"] for a in answers} == {0}
    assert len({a["prv_txn"] for a in answers}) == 1
    assert {a["sum"] for a in answers} == {"250.00"}
    assert _balance(engine, inn) == 25000
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(payments)).scalar_one() == 1


@postgres_only
def test_concurrent_distinct_pays_and_conflicting_repeats(live_server: str, engine) -> None:
    secret = add_agent(engine, "racer")
    inns = [add_customer(engine) for _ in range(3)]

    def pay(i: int) -> dict[str, Any]:
        txn = 500 + i % 10  # ten txn_ids, five requests each
        # Every fifth request reuses a txn_id with another amount: it must get 300.
        amount = "10.00" if i < 40 else "11.00"
        params = {
            "command": "pay",
            "txn_id": str(txn),
            "txn_date": "20261121143005",
            "account": inns[txn % 3],
            "sum": amount,
        }
        with httpx.Client(auth=("racer", secret), timeout=60) as client:
            answer = parse_answer(
                client.post(f"{live_server}/gateway/osmp/sochi", data=params).text
            )
        answer["amount"] = amount
        return answer

    answers = _together(50, pay)
    with engine.connect() as conn:
        stored = {
            r.txn_id: r.amount for r in conn.execute(select(payments.c.txn_id, payments.c.amount))
        }
    assert len(stored) == 10
    for answer in answers:
        # Whichever amount reached the database first is the payment; every request that
        # agrees with it gets 0 with that payment's number, every one that differs gets 300.
        paid = stored[answer["osmp_txn_id"]]
        if answer["amount"] == format_amount(paid):
            assert answer["result"] == 0
            assert answer["sum"] == answer["amount"]
        else:
            assert answer["result"] == 300
    total = sum(_balance(engine, inn) for inn in inns)
    assert total == sum(stored.values())


@postgres_only
def test_many_agents_paying_one_invoice_at_once(live_server: str, engine) -> None:
    invoice = add_invoice(engine)
    secrets_ = {f"agent{i}": add_agent(engine, f"agent{i}") for i in range(10)}

    def pay(i: int) -> int:
        code = f"agent{i % 10}"
        params = {
            "command": "pay",
            "txn_id": str(9000 + i),
            "txn_date": "20261121143005",
            "account": invoice.number,
            "sum": "1510.00",
        }
        response = httpx.get(
            f"{live_server}/gateway/osmp/eds",
            params=params,
            auth=(code, secrets_[code]),
            timeout=60,
        )
        return parse_answer(response.text)["result"]

    results = _together(20, pay)
    assert sorted(results) == [0] + [7] * 19
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(payments)).scalar_one() == 1


def test_identical_pays_from_threads_in_process(gateway: Gateway, engine) -> None:
    """The same race without a server, so it runs on SQLite as well."""
    inn = add_customer(engine)
    answers = _together(20, lambda _i: gateway.pay("sochi", inn, "5.00", txn_id="123"))
    assert {a["result"] for a in answers} == {0}
    assert len({a["prv_txn"] for a in answers}) == 1
    assert _balance(engine, inn) == 500
