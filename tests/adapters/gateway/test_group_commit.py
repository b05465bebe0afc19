"""Group commit: concurrent gateway requests share a transaction, each with its own answer.

The requests go through the real ASGI app on one event loop (httpx's ASGI transport), so
they meet in the gateway step's queue. The step is told to wait 200 ms before starting a
transaction, with one transaction at a time: every request sent together lands in one
batch, and the tests check that it did (`GroupCommit.sizes`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from tests.conftest import PG_URL
from tests.factories import add_agent, add_customer, new_txn_id, parse_answer
from tolom.app import create_app
from tolom.billing import customers
from tolom.db.engine import make_engine
from tolom.db.groupcommit import GroupCommit
from tolom.db.schema import gateway_requests, payments
from tolom.gateway import step
from tolom.ledger.accounts import account_balance
from tolom.runtime import Runtime
from tolom.settings import Settings


def _settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        agent_cache_seconds=60,
        lock_timeout_ms=1000,
        gateway_batch_wait_ms=200,
        gateway_batch_concurrency=1,
        gateway_batch_max=64,
    )


class Agent:
    """An OSMP agent's client over one event loop, and the runtime it talks to."""

    def __init__(self, database_url: str, engine: Engine, code: str = "optima") -> None:
        self.runtime = Runtime.on(_settings(database_url), engine)
        self.app = create_app(runtime=self.runtime)
        self.secret = add_agent(engine, code) if code else ""
        self.code = code

    def pays(self, requests: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Send every request at once; their answers, in order."""
        return asyncio.run(self._send(requests))

    async def _send(self, requests: list[dict[str, str]]) -> list[dict[str, Any]]:
        token = base64.b64encode(f"{self.code}:{self.secret}".encode()).decode()
        transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tolom") as client:
            responses = await asyncio.gather(
                *(
                    client.get(
                        f"/gateway/osmp/{params.pop('service', 'sochi')}",
                        params=params,
                        headers={"Authorization": f"Basic {token}"},
                    )
                    for params in [dict(r) for r in requests]
                )
            )
        for response in responses:
            assert response.status_code == 200, response.text
        return [parse_answer(response.text) for response in responses]

    def batch_sizes(self) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for lanes in self.runtime.group_commits.values():
            assert isinstance(lanes, GroupCommit)
            for size, count in lanes.sizes.items():
                sizes[size] = sizes.get(size, 0) + count
        return sizes


@pytest.fixture
def agent(database_url: str, engine: Engine) -> Agent:
    return Agent(database_url, engine)


def pay(account: str, sum_: str, txn_id: str | None = None) -> dict[str, str]:
    return {
        "command": "pay",
        "txn_id": txn_id or new_txn_id(),
        "txn_date": "20261121143005",
        "account": account,
        "sum": sum_,
    }


def check(account: str) -> dict[str, str]:
    return {"command": "check", "txn_id": new_txn_id(), "account": account, "sum": "0.00"}


def balance(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return account_balance(conn, customer.account_id)


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_one_batch_answers_each_request_on_its_own(agent: Agent, engine: Engine) -> None:
    """Duplicates, refusals and good pays in one transaction: each gets its own answer."""
    inn, other = add_customer(engine), add_customer(engine)
    blocked = add_customer(engine, status="blocked")
    twin = new_txn_id()
    requests = [
        pay(inn, "100.00", twin),
        pay(inn, "100.00", twin),  # the same pay twice in one batch: paid once
        pay(other, "250.50"),
        pay("00000000000000", "10.00"),  # no such INN: 5
        pay(blocked, "10.00"),  # blocked: 79
        pay("123", "10.00"),  # malformed INN: 4
        pay(inn, "0.50"),  # below the limit: 241
        pay(inn, "100.00", twin),
        check(other),
        {**pay(inn, "1.00"), "service": "eds"},  # an invoice number that is an INN: 4
    ]
    answers = agent.pays(requests)
    results = [a["result"] for a in answers]
    assert results == [0, 0, 0, 5, 79, 4, 241, 0, 0, 4]
    assert answers[0]["prv_txn"] == answers[1]["prv_txn"] == answers[7]["prv_txn"]
    assert answers[8]["fields"]["name"] == "ОсОО «Тест»"
    sizes = agent.batch_sizes()
    assert sum(size * n for size, n in sizes.items()) == len(requests) and max(sizes) > 1
    assert balance(engine, inn) == 10000
    assert balance(engine, other) == 25050
    assert count(engine, payments) == 2
    assert count(engine, gateway_requests) == len(requests)  # every request recorded


def test_a_conflicting_repeat_in_a_batch_is_refused_alone(agent: Agent, engine: Engine) -> None:
    inn = add_customer(engine)
    txn_id = new_txn_id()
    assert agent.pays([pay(inn, "100.00", txn_id)])[0]["result"] == 0
    answers = agent.pays([pay(inn, "200.00", txn_id), pay(inn, "100.00", txn_id), pay(inn, "5")])
    assert [a["result"] for a in answers] == [300, 0, 0]
    assert balance(engine, inn) == 10500


def test_a_failing_item_does_not_sink_its_neighbours(
    agent: Agent, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails is run again call by call: the bad one says 'retry', the others
    are paid, and nothing of the bad one is written."""
    good, poisoned = add_customer(engine), add_customer(engine)
    real_results = step._results

    def failing(conn: Any, calls: Any, postgresql: bool) -> list[Any]:
        if any(
            isinstance(c.command, step.Pay) and c.command.request.account == poisoned for c in calls
        ):
            raise RuntimeError("a bug in one item")
        return real_results(conn, calls, postgresql)

    monkeypatch.setattr(step, "_results", failing)
    answers = agent.pays([pay(good, "10"), pay(poisoned, "20"), pay(good, "30")])
    assert [a["result"] for a in answers] == [0, 1, 0]
    assert max(agent.batch_sizes()) > 1
    assert balance(engine, good) == 4000
    assert balance(engine, poisoned) == 0
    assert count(engine, gateway_requests) == 3  # the refused one recorded apart


postgres_only = pytest.mark.skipif(PG_URL is None, reason="needs TOLOM_TEST_DATABASE_URL")


@postgres_only
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lock_timeout_of_one_item_leaves_the_rest_paid(agent: Agent, engine: Engine) -> None:
    """A real database failure: one customer's balance row is held by another transaction
    past the lock timeout. That pay says 'retry'; its neighbours are paid."""
    free, held = add_customer(engine), add_customer(engine)
    with engine.connect() as conn:
        held_account = customers.get(conn, held)
    assert held_account is not None
    blocker = engine.connect()
    transaction = blocker.begin()
    try:
        blocker.execute(
            text("SELECT 1 FROM account_balances WHERE account_id = :a FOR UPDATE"),
            {"a": held_account.account_id},
        )
        answers = agent.pays([pay(free, "10"), pay(held, "20"), pay(free, "30")])
    finally:
        transaction.rollback()
        blocker.close()
    assert [a["result"] for a in answers] == [0, 1, 0]
    assert balance(engine, free) == 4000 and balance(engine, held) == 0
    retried = agent.pays([pay(held, "20")])  # the agent's retry, once the lock is gone
    assert retried[0]["result"] == 0


@pytest.fixture
def second_server(database_url: str, settings: Settings) -> Iterator[Runtime]:
    """Another server process's runtime on the same database (its own engine and pool)."""
    engine = make_engine(settings, pool_size=4)
    yield Runtime.on(_settings(database_url), engine)
    engine.dispose()


@postgres_only
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_twins_in_batches_of_two_servers_pay_once(
    agent: Agent, engine: Engine, second_server: Runtime
) -> None:
    """The same pays, each batched in two server processes at once: every txn_id is paid
    once, every answer is result 0 with the same receipt on both sides."""
    other = Agent.__new__(Agent)
    other.runtime, other.code, other.secret = second_server, agent.code, agent.secret
    other.app = create_app(runtime=second_server)
    inns = [add_customer(engine) for _ in range(8)]
    requests = [pay(inn, "100.00") for inn in inns]

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        first, second = await asyncio.gather(agent._send(requests), other._send(requests))
        return first, second

    first, second = asyncio.run(both())
    assert [a["result"] for a in first + second] == [0] * 16
    assert [a["prv_txn"] for a in first] == [a["prv_txn"] for a in second]
    assert count(engine, payments) == 8
    assert all(balance(engine, inn) == 10000 for inn in inns)
