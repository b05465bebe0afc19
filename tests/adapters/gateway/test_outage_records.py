"""Every request is recorded, even when the database is down (PRODUCT invariant 5).

A server whose database is unreachable still answers agents ("retry"); the record of each
such answer goes to the local spool and reaches `gateway_requests` once the database is
back. Here the outage is real: the runtime's engine points at a database that cannot be
opened, while the agent is already in the process's cache (as it is for a running server).
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.factories import add_agent, add_customer, parse_answer
from tolom.app import create_app
from tolom.db.engine import make_engine
from tolom.db.schema import gateway_requests
from tolom.runtime import Runtime
from tolom.settings import Settings


def test_answers_given_during_an_outage_are_recorded_when_it_ends(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    secret = add_agent(engine, "optima")
    inn = add_customer(engine)
    spool = tmp_path / "outage-spool"
    # Nothing listens on port 9 of the loopback: every connection is refused at once.
    down = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:9/tolom",
        request_spool_dir=str(spool),
        agent_cache_seconds=3600,
    )
    broken = make_engine(down, pool_size=1)
    runtime = Runtime.on(down, broken)
    agent = Runtime.on(settings, engine).agents.get("optima")
    assert agent is not None
    runtime.agents._cache["optima"] = (time.monotonic(), agent)  # warm, as in a running server
    try:
        client = TestClient(create_app(runtime=runtime), client=("127.0.0.1", 50000))
        answers = [
            client.get(
                "/gateway/osmp/sochi",
                params={
                    "command": "pay",
                    "txn_id": str(7000 + n),
                    "txn_date": "20261121143005",
                    "account": inn,
                    "sum": "10.00",
                },
                auth=("optima", secret),
            )
            for n in range(3)
        ]
        unknown = client.get("/gateway/osmp/sochi", auth=("stranger", "x"))  # a cache miss
    finally:
        broken.dispose()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [parse_answer(a.text)["result"] for a in answers] == [1, 1, 1]
    assert parse_answer(unknown.text)["result"] == 1  # cannot tell who it is: "retry"
    assert list(spool.iterdir()), "the records were spooled"

    moved = runtime.spool.drain(engine)  # the database is back
    assert moved == 4
    with engine.connect() as conn:
        rows = conn.execute(select(gateway_requests.c.txn_id, gateway_requests.c.result)).all()
    assert sorted((r.txn_id or "", r.result) for r in rows) == [
        ("", 1),
        ("7000", 1),
        ("7001", 1),
        ("7002", 1),
    ]
