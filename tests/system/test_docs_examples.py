"""The integrator's examples in docs/examples work against a real server: sign, check,
pay, repeat, status, cancel, in Python and in shell (curl + openssl); the guides' sandbox
tables (read from the four guides) agree with each other and with the sandbox, and every
row answers as documented over both protocols, played by the conformance kit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import Engine, func, select

from tests.factories import REPO, add_agent, add_customer, new_txn_id
from tests.system.test_concurrency import live_server  # noqa: F401 - the fixture
from tests.system.test_conformance_kit import (
    KIT,
    load_kit,
    sandbox_agent,
    sandbox_server,  # noqa: F401 - the fixture
)
from tolom.agents import service as agents
from tolom.db.schema import payments, sandbox_payments
from tolom.gateway.osmp import RESULT_CODES
from tolom.httpkit.problems import PAY_PROBLEMS, PROBLEMS
from tolom.money import format_amount
from tolom.payments import sandbox
from tolom.payments.model import Outcome, Service

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


# --- the guides' sandbox tables -------------------------------------------------------------


def _rest_answer(outcome: Outcome) -> tuple[int, str | None]:
    if outcome is Outcome.OK:
        return (200, None)
    code = PAY_PROBLEMS[outcome]
    return (PROBLEMS[code][0], code)


@pytest.mark.parametrize("protocol", ["osmp", "rest"])
def test_the_guides_sandbox_tables_agree_with_each_other_and_the_sandbox(protocol: str) -> None:
    """The English and Russian tables say the same, and each row is what MAGIC_ACCOUNTS
    answers (the kit reads these tables, so what they say is what it checks)."""
    kit = load_kit()
    english = kit.read_table(REPO / "docs" / f"agents-{protocol}.md", protocol)
    assert kit.read_table(REPO / "docs" / f"agents-{protocol}.ru.md", protocol) == english
    assert sorted((Service(r.service), r.account) for r in english) == sorted(sandbox.MAGIC)
    for row in english:
        magic = sandbox.MAGIC[(Service(row.service), row.account)]
        interim = getattr(magic, "interim", Outcome.RETRY)
        if protocol == "osmp":
            check = (RESULT_CODES[magic.check], None)
            pays = [(RESULT_CODES[o], None) for o in [interim] * magic.retries + [magic.pay]]
        else:
            check = _rest_answer(magic.check)
            pays = [_rest_answer(o) for o in [interim] * magic.retries + [magic.pay]]
        assert (row.check, list(row.pays)) == (check, pays), row
        assert (row.slow_seconds is not None) == magic.slow, row
        due = None if magic.amount_due is None else format_amount(magic.amount_due)
        assert row.amount_due == due, row
        if due is not None:  # an invoice: below and above its amount are refused
            small, large = (
                (RESULT_CODES[Outcome.TOO_SMALL], RESULT_CODES[Outcome.TOO_LARGE])
                if protocol == "osmp"
                else (PAY_PROBLEMS[Outcome.TOO_SMALL], PAY_PROBLEMS[Outcome.TOO_LARGE])
            )
            assert small in (row.below or ()) and large in (row.above or ()), row


@pytest.mark.parametrize("protocol", ["osmp", "rest"])
def test_every_row_of_the_guides_sandbox_table_answers_as_documented(
    sandbox_server: str,  # noqa: F811
    engine: Engine,
    protocol: str,
) -> None:
    """The conformance kit's scenarios, unchanged, against a real server: each magic
    account's check and pay (retries, the slow answer cut by a 1 s client timeout and
    resent), repeats, a changed repeat, a wrong format, wrong credentials."""
    env = sandbox_agent(engine, f"docs{protocol}")
    done = subprocess.run(
        [sys.executable, str(KIT), "scenarios", "--protocol", protocol, "--timeout", "1"],
        env={**os.environ, **env, "TOLOM_URL": sandbox_server},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    label = protocol.upper()
    for row in load_kit().guide_rows(protocol):
        for what in ("check", "pay"):
            assert f"PASS  {label} {what} {row.service} {row.account}:" in done.stdout
    assert "no answer within 1 s" in done.stdout  # the slow account, resent
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(payments)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one() > 0
