"""The simulated MegaPay «Автоплатеж» repeating by itself (`tolom.simulator.autopay`):
against a real `tolom serve` on 127.0.0.1 a due repeat is paid once through OSMP with a
txn_id derived from the favourite and its day, two passes at once pay it once, a lost
answer or a crash is retried with the same txn_id, and only sandbox agents are spoken for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, select

from tests.adapters.cli.test_cli_simulate import _free_port
from tests.adapters.cli.test_cli_simulate import server as server
from tests.adapters.web.test_web import Web
from tests.adapters.web.test_web import web as web
from tests.factories import Cli, add_agent
from tolom.agents import service as agents
from tolom.db.schema import agents as agents_table
from tolom.db.schema import audit_log, gateway_requests, payments, sandbox_payments
from tolom.db.schema import simulator_favourites as favourites_table
from tolom.settings import Settings
from tolom.simulator import autopay, favourites, journeys
from tolom.timestamps import HOME_ZONE

SOCHI_OK = "99999000000000"
SOCHI_242 = "99999000000242"  # the magic INN a pay of which is refused with 242


def _today() -> date:
    return datetime.now(HOME_ZONE).date()


def _sandbox(engine: Engine, code: str = "sandauto") -> None:
    with engine.begin() as conn:
        agents.create(
            conn,
            code=code,
            name="Песочница",
            networks=["127.0.0.1"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )


def _autopay(engine: Engine, due: date, account: str = SOCHI_OK, every: int = 7) -> int:
    with engine.begin() as conn:
        return favourites.add(
            conn,
            wallet_="megapay",
            agent="sandauto",
            service_="sochi",
            account=account,
            amount=25_000,
            autopay_days=every,
            today=due,
            actor="cli:test",
        )


def _favourite(engine: Engine, favourite_id: int) -> favourites.Favourite:
    with engine.connect() as conn:
        found = favourites.one(conn, favourite_id)
    assert found is not None
    return found


def _sandbox_txns(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(sandbox_payments.c.txn_id)).scalars())


def _actions(engine: Engine, favourite_id: int) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.actor)
            .where(audit_log.c.object_id == str(favourite_id), audit_log.c.action.like("%autopay%"))
            .order_by(audit_log.c.id)
        )
        return [(r.action, r.actor) for r in rows]


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_the_txn_id_is_derived_digits_within_osmp_length() -> None:
    found = autopay.txn_id_for(42, date(2026, 12, 5))
    assert found == "92026120500000000042" and len(found) == 20 and found.isdigit()
    assert autopay.txn_id_for(42, date(2026, 12, 12)) != found
    assert len(journeys.new_txn_id()) != len(found)  # never one a person's journey made
    # Missed days: the first day of the schedule after today, once.
    assert autopay.next_due_after(date(2026, 11, 1), 7, date(2026, 11, 22)) == date(2026, 11, 29)
    assert autopay.next_due_after(date(2026, 11, 22), 7, date(2026, 11, 22)) == date(2026, 11, 29)


def test_due_autopays_run_once_by_hand_through_a_running_server(
    cli: Cli, engine: Engine, server: str
) -> None:
    _sandbox(engine)
    today = _today()
    due = _autopay(engine, today)
    missed = _autopay(engine, today - timedelta(days=20))  # the worker was off for weeks
    refused = _autopay(engine, today, account=SOCHI_242, every=30)
    later = _autopay(engine, today + timedelta(days=1))

    ran = cli("simulate", "autopay", "--base-url", server, "--today", today.isoformat())
    assert ran.exit_code == 1, ran.output  # one was refused
    txn = autopay.txn_id_for(due, today)
    assert f"оплачен, txn_id {txn}" in ran.output
    assert "не выполнен, результат 242" in ran.output

    assert sorted(_sandbox_txns(engine)) == sorted(
        [txn, autopay.txn_id_for(missed, today - timedelta(days=20))]
    )
    paid = _favourite(engine, due)
    assert (paid.runs, paid.last_txn_id, paid.next_due) == (1, txn, today + timedelta(days=7))
    caught_up = _favourite(engine, missed)  # paid once, next due after today
    assert caught_up.runs == 1 and caught_up.next_due == today + timedelta(days=1)
    no = _favourite(engine, refused)
    assert no.runs == 0 and no.next_due == today + timedelta(days=30)  # that repeat is over
    untouched = _favourite(engine, later)
    assert (untouched.runs, untouched.last_txn_id) == (0, None)
    assert untouched.next_due == today + timedelta(days=1)
    assert [a for a, _ in _actions(engine, due)] == [autopay.CLAIM, autopay.RUN]
    assert _actions(engine, later) == []

    again = cli("simulate", "autopay", "--base-url", server, "--today", today.isoformat())
    assert again.exit_code == 0 and "нет" in again.output  # nothing due any more
    assert len(_sandbox_txns(engine)) == 2
    assert _count(engine, payments) == 0  # nothing real, ever

    bad = cli("simulate", "autopay", "--today", "5.12.2026")
    assert bad.exit_code == 1 and "ГГГГ-ММ-ДД" in bad.output


def test_two_passes_at_once_pay_a_repeat_once(
    settings: Settings, engine: Engine, server: str
) -> None:
    _sandbox(engine)
    today = _today()
    due = _autopay(engine, today)
    start = threading.Barrier(2)
    results: list[list[autopay.AutopayRun]] = []

    def one_pass() -> None:
        start.wait()
        results.append(autopay.run_due(settings, engine, today, base_url=server))

    passes = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join()
    runs = [run for found in results for run in found]
    assert [r.outcome for r in runs] == [autopay.PAID]
    assert _sandbox_txns(engine) == [autopay.txn_id_for(due, today)]
    assert _favourite(engine, due).runs == 1
    assert [a for a, _ in _actions(engine, due)] == [autopay.CLAIM, autopay.RUN]


class _LoseFirstPayAnswer(httpx.AsyncHTTPTransport):
    """Sends every request; the first pay's answer is lost on its way back."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.params.get("command") == "pay" and not self.lost:
            await response.aclose()
            self.lost += 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_a_lost_answer_or_a_crash_is_retried_with_the_same_txn_id(
    settings: Settings, engine: Engine, server: str
) -> None:
    _sandbox(engine)
    today = _today()
    due = _autopay(engine, today)
    txn = autopay.txn_id_for(due, today)

    # The server unreachable: nothing paid, the repeat stays due, the same txn_id next time.
    closed = f"http://127.0.0.1:{_free_port()}"
    (down,) = autopay.run_due(settings, engine, today, base_url=closed)
    assert (down.outcome, down.result, down.txn_id) == (autopay.RETRY, None, txn)
    assert _favourite(engine, due).next_due == today and _sandbox_txns(engine) == []

    # The pay arrives but its answer is lost: retried with the same txn_id, paid once.
    lossy = _LoseFirstPayAnswer()
    (lost,) = autopay.run_due(settings, engine, today, base_url=server, transport=lossy)
    assert lost.outcome == autopay.RETRY and lossy.lost == 1
    assert _sandbox_txns(engine) == [txn]  # it was made
    (paid,) = autopay.run_due(settings, engine, today, base_url=server)
    assert (paid.outcome, paid.txn_id) == (autopay.PAID, txn)
    assert _sandbox_txns(engine) == [txn]  # the sandbox answered the first one's receipt
    assert _favourite(engine, due).runs == 1

    # A crash between the claim and the record: the claim is taken over once it is stale.
    with engine.begin() as conn:  # next week's repeat, claimed and paid, never recorded
        conn.execute(
            favourites_table.update()
            .where(favourites_table.c.id == due)
            .values(next_due=today - timedelta(days=1))
        )
    crashed = _favourite(engine, due)
    assert crashed.next_due is not None
    crashed_txn = autopay.txn_id_for(due, crashed.next_due)
    moved = autopay.next_due_after(crashed.next_due, 7, today)
    assert autopay._claim(engine, crashed, datetime.now(UTC), autopay.WORKER)
    with engine.connect() as conn:
        who = journeys.speaker(conn, "sandauto", server)
    asyncio.run(journeys.play(who, journeys.MEGAPAY, "sochi", SOCHI_OK, 25_000, txn_id=crashed_txn))
    assert autopay.run_due(settings, engine, today, base_url=server) == []  # still in hand
    later = datetime.now(UTC) + autopay.STALE_CLAIM + timedelta(minutes=1)
    (resumed,) = autopay.run_due(settings, engine, today, base_url=server, now=later)
    assert (resumed.outcome, resumed.txn_id) == (autopay.PAID, crashed_txn)
    assert sorted(_sandbox_txns(engine)) == sorted([txn, crashed_txn])  # still one each
    resumed_row = _favourite(engine, due)
    assert (resumed_row.runs, resumed_row.next_due, resumed_row.claimed_at) == (2, moved, None)
    assert [a for a, _ in _actions(engine, due)][-3:] == [autopay.CLAIM, autopay.CLAIM, autopay.RUN]


def test_a_stale_claim_is_taken_over_by_one_worker_only(settings: Settings, engine: Engine) -> None:
    """The takeover is the claim's own conditional UPDATE: of two workers that both read
    the stale claim, one gets it."""
    _sandbox(engine)
    today = _today()
    due = _autopay(engine, today)
    assert autopay._claim(engine, _favourite(engine, due), datetime.now(UTC), autopay.WORKER)
    stale = _favourite(engine, due)  # read by both, claim and all
    later = datetime.now(UTC) + autopay.STALE_CLAIM + timedelta(minutes=1)
    with engine.connect() as conn:
        assert [
            f.id for f in favourites.due_autopays(conn, today, later - autopay.STALE_CLAIM)
        ] == [due]
    start = threading.Barrier(2)
    won: list[bool] = []

    def take() -> None:
        start.wait()
        won.append(autopay._claim(engine, stale, later, autopay.WORKER))

    takers = [threading.Thread(target=take) for _ in range(2)]
    for thread in takers:
        thread.start()
    for thread in takers:
        thread.join()
    assert sorted(won) == [False, True]
    assert [a for a, _ in _actions(engine, due)] == [autopay.CLAIM, autopay.CLAIM]


def test_a_real_agent_is_never_spoken_for(settings: Settings, engine: Engine) -> None:
    add_agent(engine, "realauto")
    with engine.begin() as conn:
        try:
            favourites.add(
                conn,
                wallet_="megapay",
                agent="realauto",
                service_="sochi",
                account=SOCHI_OK,
                amount=100,
                autopay_days=1,
                today=_today(),
                actor="cli:test",
            )
        except journeys.SimulatorError:
            pass
        else:
            raise AssertionError("a real agent's autopay was saved")
        agent_id = conn.execute(
            select(agents_table.c.id).where(agents_table.c.code == "realauto")
        ).scalar_one()
        forced = conn.execute(  # written past `favourites.add`, as a broken row would be
            insert(favourites_table)
            .values(
                wallet="megapay",
                agent_id=agent_id,
                service="sochi",
                account=SOCHI_OK,
                amount=100,
                autopay_days=1,
                next_due=_today(),
                created_by="test",
            )
            .returning(favourites_table.c.id)
        ).scalar_one()
    (skipped,) = autopay.run_due(settings, engine, _today(), base_url="http://127.0.0.1:9")
    assert skipped.outcome == autopay.SKIPPED and "realauto" in skipped.comment
    assert _favourite(engine, forced).next_due == _today()  # nothing claimed
    assert _count(engine, gateway_requests) == 0 and _actions(engine, forced) == []


def test_the_worker_runs_due_autopays_by_itself(
    engine: Engine, database_url: str, server: str
) -> None:
    _sandbox(engine)
    due = _autopay(engine, _today())
    env = {
        **os.environ,
        "TOLOM_DATABASE_URL": database_url,
        "TOLOM_SIMULATOR_AUTOPAY_SECONDS": "1",
        "TOLOM_PROBE_BASE_URL": server,
        "TOLOM_LOG_FORMAT": "json",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tolom", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _favourite(engine, due).runs == 0:
            assert worker.poll() is None and time.monotonic() < deadline, "no autopay ran"
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert _sandbox_txns(engine) == [autopay.txn_id_for(due, _today())]
    assert _actions(engine, due) == [(autopay.CLAIM, autopay.WORKER), (autopay.RUN, autopay.WORKER)]
    assert '"message": "autopay paid"' in errors


def test_the_page_shows_the_last_automatic_run(web: Web, server: str) -> None:
    _sandbox(web.engine)
    today = _today()
    due = _autopay(web.engine, today)
    autopay.run_due(web.settings, web.engine, today, base_url=server)
    page = web.signed_in().get("/simulator", params={"wallet": "megapay", "screen": "payments"})
    txn = autopay.txn_id_for(due, today)
    assert f'data-outcome="paid" data-txn-id="{txn}"' in page.text
    assert f"оплачен, txn_id {txn}" in page.text
