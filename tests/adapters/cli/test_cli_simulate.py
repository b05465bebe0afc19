"""`tolom simulate` against a real `tolom serve` on 127.0.0.1: both wallets' journeys end in
a receipt from the sandbox, a refused one exits 1, a real agent is refused before any
request, and no real payment is made."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, func, select

from tests.factories import Cli, add_agent
from tolom.agents import service as agents
from tolom.db.schema import gateway_requests, payments, sandbox_payments, simulator_favourites


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(database_url: str, engine: Engine) -> Iterator[str]:
    """`tolom serve` on the test database (the key file is the run's); stopped after."""
    port = _free_port()
    env = {**os.environ, "TOLOM_DATABASE_URL": database_url, "TOLOM_AGENT_CACHE_SECONDS": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tolom", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield base
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_simulate_plays_both_wallets_against_a_running_server(
    cli: Cli, engine: Engine, server: str
) -> None:
    with engine.begin() as conn:
        secret = agents.create(
            conn,
            code="sandcli",
            name="Песочница",
            networks=["127.0.0.1"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )
    add_agent(engine, "realone")
    common = ["--agent", "sandcli", "--base-url", server]
    optima = cli(
        "simulate",
        "optima",
        *common,
        "--service",
        "sochi",
        "--account",
        "99999000000000",
        "--amount",
        "100.00",
    )
    assert optima.exit_code == 0, optima.output
    assert "Оптима 24: Платежи → Платежи от дилеров/агентов → Dos Tek Group" in optima.output
    assert "<result>0</result>" in optima.output and "Чек об оплате:" in optima.output
    assert "Authorization: Basic sandcli:••••••••" in optima.output
    assert secret not in optima.output

    megapay = cli(
        "simulate",
        "megapay",
        *common,
        "--service",
        "eds",
        "--account",
        "9999900000000005",
        "--amount",
        "1500",
        "--favourite",
        "--json",
    )
    assert megapay.exit_code == 0, megapay.output
    journey = json.loads(megapay.output)
    assert journey["screens"] == ["Оплата", "Другие", "Оплата ЭЦП (Дос Тэк ...)"]
    assert [e["command"] for e in journey["exchanges"]] == ["check", "pay"]
    with engine.connect() as conn:
        prv = conn.execute(
            select(sandbox_payments.c.id).where(sandbox_payments.c.account == "9999900000000005")
        ).scalar_one()
    assert journey["receipt"]["prv_txn"] == str(prv) and journey["receipt"]["sum"] == "1500.00"
    assert _count(engine, simulator_favourites) == 1

    refused = cli(
        "simulate",
        "optima",
        *common,
        "--service",
        "sochi",
        "--account",
        "99999000000242",
        "--amount",
        "100",
    )
    assert refused.exit_code == 1 and "242" in refused.output

    logged = _count(engine, gateway_requests)
    real = cli(
        "simulate",
        "optima",
        "--agent",
        "realone",
        "--base-url",
        server,
        "--service",
        "sochi",
        "--account",
        "99999000000000",
        "--amount",
        "100",
    )
    assert real.exit_code == 1 and "не тестовый" in real.output
    assert _count(engine, gateway_requests) == logged  # nothing was sent
    assert _count(engine, payments) == 0
    assert _count(engine, sandbox_payments) == 2
