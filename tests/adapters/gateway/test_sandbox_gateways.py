"""A sandbox agent over both gateways: every magic account answers as the guides say (OSMP
result codes and REST problems), retry then success, the slow answer, repeats, cancel and
status; the request log keeps its requests; the commands `tolom agent create --sandbox` and
`tolom sandbox reset`; the back office marks a sandbox agent and creates one."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.factories import Cli, Gateway, RestAgent, add_customer, new_txn_id
from tolom.agents import service as agents
from tolom.db.schema import events, gateway_requests, payments, sandbox_payments
from tolom.gateway.osmp import RESULT_CODES
from tolom.httpkit.problems import PAY_PROBLEMS
from tolom.money import format_amount
from tolom.payments import sandbox
from tolom.payments.model import Outcome
from tolom.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The slow magic account answers after 1 s here, not 35."""
    return settings.model_copy(update={"sandbox_slow_seconds": 1})


def _secret(engine: Engine, code: str) -> str:
    with engine.begin() as conn:
        return agents.create(
            conn,
            code=code,
            name=f"Песочница {code}",
            networks=["*"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )


@pytest.fixture
def osmp(app: Any, engine: Engine) -> Gateway:
    secret = _secret(engine, "sandosmp")
    return Gateway(TestClient(app, client=("127.0.0.1", 50000)), engine, "sandosmp", secret)


@pytest.fixture
def rest(app: Any, engine: Engine) -> RestAgent:
    secret = _secret(engine, "sandrest")
    return RestAgent(TestClient(app, client=("127.0.0.1", 50000)), engine, "sandrest", secret)


def _amount(entry: sandbox.MagicAccount) -> str:
    return format_amount(entry.amount_due if entry.amount_due is not None else 50_000)


FAST = [e for e in sandbox.MAGIC_ACCOUNTS if not e.slow]

# The guides' table, as literals: (service, account, OSMP check, OSMP pay, REST pay problem).
DOCUMENTED = [
    ("sochi", "99999000000000", 0, 0, None),
    ("sochi", "99999000000005", 5, 5, "account_not_found"),
    ("sochi", "99999000000007", 7, 7, "service_not_allowed"),
    ("sochi", "99999000000079", 79, 79, "account_inactive"),
    ("sochi", "99999000000241", 0, 241, "amount_too_small"),
    ("sochi", "99999000000242", 0, 242, "amount_too_large"),
    ("sochi", "99999000000300", 0, 300, "txn_id_conflict"),
    ("eds", "9999900000000005", 0, 0, None),
    ("eds", "9999900000000054", 5, 5, "account_not_found"),
    ("eds", "9999900000000070", 7, 7, "invoice_already_paid"),
    ("eds", "9999900000007919", 79, 79, "account_inactive"),
    ("eds", "9999900000007927", 79, 79, "account_inactive"),
]


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(payments)).scalar_one(),
            conn.execute(
                select(func.count()).select_from(events).where(events.c.sandbox.is_(False))
            ).scalar_one(),
            conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one(),
        )


# --- OSMP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", FAST, ids=lambda e: e.account)
def test_osmp_answers_each_magic_account_as_its_entry_says(
    osmp: Gateway, entry: sandbox.MagicAccount
) -> None:
    kind = entry.service.value
    checked = osmp.check(kind, entry.account)
    assert checked["result"] == RESULT_CODES[entry.check], checked
    if entry.check is Outcome.OK:
        assert checked["fields"]["name"] == "Тестовый абонент"
    txn_id = new_txn_id()
    for _ in range(entry.retries):
        interim = osmp.pay(kind, entry.account, _amount(entry), txn_id=txn_id)
        assert interim["result"] == RESULT_CODES[entry.interim], interim
    paid = osmp.pay(kind, entry.account, _amount(entry), txn_id=txn_id)
    assert paid["result"] == RESULT_CODES[entry.pay], paid


@pytest.mark.parametrize(("kind", "account", "check", "pay", "_problem"), DOCUMENTED)
def test_osmp_gives_the_documented_codes(
    osmp: Gateway, kind: str, account: str, check: int, pay: int, _problem: str | None
) -> None:
    amount = "1500.00" if kind == "eds" else "500.00"
    assert osmp.check(kind, account)["result"] == check
    assert osmp.pay(kind, account, amount)["result"] == pay


def test_osmp_repeats_retries_and_records_apart(osmp: Gateway, engine: Engine) -> None:
    real_payments, real_events, _ = _counts(engine)
    txn_id = new_txn_id()
    first = osmp.pay("sochi", "99999000000000", "500.00", txn_id=txn_id)
    again = osmp.pay("sochi", "99999000000000", "500.00", txn_id=txn_id)
    assert first["result"] == again["result"] == 0 and first["prv_txn"] == again["prv_txn"]
    assert osmp.pay("sochi", "99999000000000", "600.00", txn_id=txn_id)["result"] == 300
    retried = new_txn_id()
    answers = [
        osmp.pay("sochi", "99999000000001", "500.00", txn_id=retried)["result"] for _ in range(3)
    ]
    assert answers == [1, 1, 0]
    assert osmp.pay("sochi", "1234", "500.00")["result"] == 4  # the real format rule
    assert osmp.pay("sochi", add_customer(engine), "500.00")["result"] == 5  # not magic
    assert _counts(engine)[:2] == (real_payments, real_events)
    assert _counts(engine)[2] == 2
    with engine.connect() as conn:
        logged = conn.execute(
            select(gateway_requests.c.result, gateway_requests.c.payment_id)
            .where(gateway_requests.c.txn_id == txn_id)
            .order_by(gateway_requests.c.id)
        ).all()
    # The request log keeps sandbox requests like any other, with no (real) payment id.
    assert [tuple(row) for row in logged] == [(0, None), (0, None), (300, None)]


def test_osmp_result_90_then_0_for_the_same_txn_id(osmp: Gateway, engine: Engine) -> None:
    """The only way to see 90: the magic account, twice per txn_id, then the receipt."""
    txn_id = new_txn_id()
    answers = [osmp.pay("sochi", "99999000000090", "500.00", txn_id=txn_id) for _ in range(3)]
    assert [a["result"] for a in answers] == [90, 90, 0]
    assert answers[0]["comment"] == "Платёж ещё не завершён, повторите запрос с тем же txn_id позже"
    assert answers[0].get("prv_txn") in (None, "") and answers[2]["prv_txn"]
    assert osmp.pay("sochi", "99999000000090", "500.00", txn_id=txn_id) == answers[2]
    assert osmp.check("sochi", "99999000000090")["result"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one() == 1


def test_the_slow_account_answers_after_the_delay(osmp: Gateway) -> None:
    started = time.monotonic()
    answer = osmp.pay("sochi", "99999000000999", "500.00")
    assert answer["result"] == 0
    assert time.monotonic() - started >= 1.0


# --- REST ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "account", "check", "pay", "problem"), DOCUMENTED)
def test_rest_gives_the_documented_problems(
    rest: RestAgent, kind: str, account: str, check: int, pay: int, problem: str | None
) -> None:
    amount = "1500.00" if kind == "eds" else "500.00"
    checked = rest.check(kind, account)
    if check == 0:
        assert checked.status_code == 200 and checked.json()["name"] == "Тестовый абонент"
    else:
        assert checked.json()["code"] == problem
    paid = rest.pay(kind, account, amount)
    if problem is None:
        assert paid.status_code == 200 and paid.json()["status"] == "accepted"
    else:
        assert paid.json()["code"] == problem, paid.json()


@pytest.mark.parametrize("entry", FAST, ids=lambda e: e.account)
def test_rest_answers_each_magic_account_as_its_entry_says(
    rest: RestAgent, entry: sandbox.MagicAccount
) -> None:
    txn_id = new_txn_id()
    for _ in range(entry.retries):
        retry = rest.pay(entry.service.value, entry.account, _amount(entry), txn_id=txn_id)
        assert retry.json()["code"] == PAY_PROBLEMS[entry.interim]
    paid = rest.pay(entry.service.value, entry.account, _amount(entry), txn_id=txn_id)
    if entry.pay is Outcome.OK:
        assert paid.status_code == 200, paid.json()
    else:
        assert paid.json()["code"] == PAY_PROBLEMS[entry.pay]


def test_rest_payment_pending_then_the_receipt(rest: RestAgent) -> None:
    """REST's 90: 202 with a payment_pending problem and Retry-After, no receipt; the same
    pay later gets 200 and the receipt."""
    txn_id = new_txn_id()
    for _ in range(2):
        pending = rest.pay("sochi", "99999000000090", "500.00", txn_id=txn_id)
        assert pending.status_code == 202
        assert pending.headers["content-type"].startswith("application/problem+json")
        assert pending.headers["Retry-After"] == "5"
        body = pending.json()
        assert body["code"] == "payment_pending" and body["txn_id"] == txn_id
        assert "receipt" not in body
        assert rest.status(txn_id).json()["code"] == "payment_not_found"
    paid = rest.pay("sochi", "99999000000090", "500.00", txn_id=txn_id)
    assert paid.status_code == 200 and paid.json()["status"] == "accepted"
    assert rest.status(txn_id).json()["receipt"] == paid.json()["receipt"]


def test_rest_status_cancel_and_repeat(rest: RestAgent, engine: Engine) -> None:
    real = _counts(engine)[:2]
    txn_id = new_txn_id()
    paid = rest.pay("sochi", "99999000000000", "500.00", txn_id=txn_id)
    assert paid.status_code == 200
    receipt = paid.json()["receipt"]
    repeat = rest.pay("sochi", "99999000000000", "500.00", txn_id=txn_id)
    assert repeat.json()["receipt"] == receipt
    assert repeat.headers.get("Idempotent-Replayed") == "true"
    status = rest.status(txn_id)
    assert status.status_code == 200 and status.json()["receipt"] == receipt
    assert rest.status(new_txn_id()).json()["code"] == "payment_not_found"
    cancelled = rest.cancel(txn_id)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "reversed"
    assert cancelled.json()["cancel_reason"] == "Клиент ошибся"
    assert rest.status(txn_id).json()["status"] == "reversed"
    assert rest.cancel(new_txn_id()).json()["code"] == "payment_not_found"
    assert _counts(engine)[:2] == real


# --- commands and pages -----------------------------------------------------------------


def test_cli_creates_a_sandbox_agent_and_resets(cli: Cli, app: Any, engine: Engine) -> None:
    created = cli("agent", "create", "sandcli", "--name", "Тест", "--allow-any-ip", "--sandbox")
    assert created.exit_code == 0, created.output
    assert created.output.startswith("Тестовый агент sandcli создан (песочница).")
    listed = json.loads(cli("agent", "list", "--json").output)
    assert [(a["code"], a["sandbox"]) for a in listed] == [("sandcli", True)]
    assert "[песочница]" in cli("agent", "list").output
    made = cli(
        "agent", "create", "sandjson", "--name", "Т", "--allow-any-ip", "--sandbox", "--json"
    )
    secret = json.loads(made.output)["secret"]
    gateway = Gateway(TestClient(app, client=("127.0.0.1", 50000)), engine, "sandjson", secret)
    assert gateway.pay("sochi", "99999000000000", "500.00")["result"] == 0
    assert _counts(engine)[2] == 1
    refused = cli("sandbox", "reset", "--agent", "nobody")
    assert refused.exit_code == 1 and "Нет тестового агента nobody." in refused.output
    assert cli("sandbox", "reset", "--agent", "sandcli").output.endswith("платежей: 0.\n")
    done = cli("sandbox", "reset", "--agent", "sandjson")
    assert done.exit_code == 0 and "удалено платежей: 1" in done.output
    assert _counts(engine)[2] == 0
    assert json.loads(cli("sandbox", "reset", "--json").output) == {"removed": 0}
