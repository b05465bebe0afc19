"""The integrator's examples in docs/examples work against a real server: sign, check,
pay, repeat, status, cancel, in Python and in shell (curl + openssl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import Engine, func, select

from tests.factories import REPO, add_agent, add_customer, new_txn_id
from tests.system.test_concurrency import live_server  # noqa: F401 - the fixture
from tolom.agents import service as agents
from tolom.db.schema import payments

EXAMPLES = REPO / "docs" / "examples"


def _env(base: str, engine: Engine) -> dict[str, str]:
    secret = add_agent(engine, "docs", networks=["127.0.0.0/8"])
    return {
        **os.environ,
        "TOLOM_URL": base,
        "TOLOM_AGENT": "docs",
        "TOLOM_SIGNING_KEY": agents.signing_key_for(secret),
    }


def _run(command: list[str], env: dict[str, str]) -> tuple[int, object]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.stderr == "", done.stderr
    status, _, body = done.stdout.partition("\n")
    return int(status), json.loads(body)


def test_python_example_client(live_server: str, engine: Engine) -> None:  # noqa: F811
    env = _env(live_server, engine)
    client = [sys.executable, str(EXAMPLES / "tolom_rest_client.py")]
    inn = add_customer(engine, name="ОсОО «Пример»")
    txn_id = new_txn_id()
    assert _run([*client, "check", "sochi", inn], env) == (
        200,
        {
            "service": "sochi",
            "account": inn,
            "name": "ОсОО «Пример»",
            "amount_due": None,
            "min_amount": "1.00",
            "max_amount": "500000.00",
        },
    )
    status, paid = _run([*client, "pay", "sochi", inn, "500.00", txn_id], env)
    assert status == 200 and paid["status"] == "accepted" and paid["amount"] == "500.00"
    assert _run([*client, "pay", "sochi", inn, "500.00", txn_id], env) == (200, paid)
    status, found = _run([*client, "status", txn_id], env)
    assert status == 200 and found["receipt"] == paid["receipt"]
    status, cancelled = _run([*client, "cancel", txn_id, "Клиент ошибся"], env)
    assert status == 200 and cancelled["status"] == "reversed"
    status, problem = _run([*client, "status", "1"], env)
    assert status == 404 and problem["code"] == "payment_not_found"


def test_shell_example(live_server: str, engine: Engine) -> None:  # noqa: F811
    env = _env(live_server, engine)
    script = [str(EXAMPLES / "tolom_rest.sh")]
    inn = add_customer(engine)
    txn_id = new_txn_id()
    status, checked = _run(
        [*script, "POST", "/api/v1/agent/check", json.dumps({"service": "sochi", "account": inn})],
        env,
    )
    assert status == 200 and checked["account"] == inn  # type: ignore[index]
    pay = {
        "txn_id": txn_id,
        "txn_date": "2026-11-23T10:00:00+06:00",
        "service": "sochi",
        "account": inn,
        "amount": "10.50",
    }
    status, paid = _run([*script, "POST", "/api/v1/agent/payments", json.dumps(pay)], env)
    assert status == 200 and paid["amount"] == "10.50"  # type: ignore[index]
    status, found = _run([*script, "GET", f"/api/v1/agent/payments/{txn_id}"], env)
    assert status == 200 and found["receipt"] == paid["receipt"]  # type: ignore[index]
    wrong = {**env, "TOLOM_SIGNING_KEY": "00" * 32}
    status, problem = _run([*script, "GET", f"/api/v1/agent/payments/{txn_id}"], wrong)
    assert status == 401 and problem["code"] == "bad_signature"  # type: ignore[index]


def test_python_example_client_against_the_sandbox(live_server: str, engine: Engine) -> None:  # noqa: F811
    """The same example, unchanged but for its credentials, against a sandbox agent and the
    guides' magic accounts; nothing reaches a real payment."""
    with engine.begin() as conn:
        secret = agents.create(
            conn,
            code="docsbox",
            name="Песочница",
            networks=["127.0.0.0/8"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )
    env = {
        **os.environ,
        "TOLOM_URL": live_server,
        "TOLOM_AGENT": "docsbox",
        "TOLOM_SIGNING_KEY": agents.signing_key_for(secret),
    }
    client = [sys.executable, str(EXAMPLES / "tolom_rest_client.py")]
    status, checked = _run([*client, "check", "sochi", "99999000000000"], env)
    assert status == 200 and checked["name"] == "Тестовый абонент"  # type: ignore[index]
    txn_id = new_txn_id()
    status, paid = _run([*client, "pay", "sochi", "99999000000000", "500.00", txn_id], env)
    assert status == 200 and paid["status"] == "accepted"  # type: ignore[index]
    assert _run([*client, "pay", "sochi", "99999000000000", "500.00", txn_id], env) == (200, paid)
    status, cancelled = _run([*client, "cancel", txn_id, "Проверка"], env)
    assert status == 200 and cancelled["status"] == "reversed"  # type: ignore[index]
    status, problem = _run([*client, "pay", "sochi", "99999000000242", "500.00", new_txn_id()], env)
    assert status == 422 and problem["code"] == "amount_too_large"  # type: ignore[index]
    status, problem = _run([*client, "check", "eds", "9999900000000070"], env)
    assert status == 409 and problem["code"] == "invoice_already_paid"  # type: ignore[index]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(payments)).scalar_one() == 0
