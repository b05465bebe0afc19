"""Closed days' stored sums (`tolom.payments.day_totals`, migration 0018) equal the live
sums of `payments` at every step: after the first read stores them, after a reversal of a
stored day's payment, after a pay that arrives late into a stored day; and the dashboard and
the agents' figures built on them equal the figures grouped live."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, func, select, text

from tests.factories import add_agent, add_customer, add_invoice, new_txn_id, postgres_only
from tolom.agents import service as agents
from tolom.agents.service import Agent
from tolom.backoffice import agent_figures, dashboard
from tolom.db.schema import payment_day_totals, payment_days_summed, payments
from tolom.payments import day_totals, service
from tolom.payments.model import CancelOutcome, Outcome, PayRequest, Service
from tolom.timestamps import HOME_ZONE

# Today as the database's clock sees it: the trigger that forgets a stored day uses it.
TODAY = datetime.now(HOME_ZONE).date()
FIRST = TODAY - timedelta(days=dashboard.CHART_DAYS - 1)


def _agent(engine: Engine, code: str) -> Agent:
    add_agent(engine, code)
    with engine.connect() as conn:
        found = agents.load(conn, code)
    assert found is not None
    return found


def _pay(
    engine: Engine, agent: Agent, account: str, amount: int, day: date, **kind: Service
) -> int:
    """A pay whose txn_date is noon of `day` in Bishkek (its business day, for these agents),
    or now if that noon is still ahead (Tolom refuses a txn_date ahead of its clock)."""
    moment = min(datetime.combine(day, time(12), tzinfo=HOME_ZONE), datetime.now(HOME_ZONE))
    request = PayRequest(
        kind.get("service", Service.SOCHI),
        new_txn_id(),
        account,
        amount,
        moment,
        moment.strftime("%Y%m%d%H%M%S"),
    )
    with engine.begin() as conn:
        result = service.pay(conn, agent, request)
    assert result.outcome is Outcome.OK, result
    assert result.business_date == day and result.payment_id is not None
    return result.payment_id


def _sorted(rows: list[day_totals.DayTotal]) -> list[day_totals.DayTotal]:
    return sorted(rows, key=lambda s: (s.day, s.agent_id, s.service))


def _same_as_live(engine: Engine) -> list[day_totals.DayTotal]:
    with engine.connect() as conn:
        stored = day_totals.totals(conn, FIRST, TODAY, today=TODAY)
    with engine.connect() as conn:
        live = day_totals.live(conn, (FIRST, TODAY), None)
    assert _sorted(stored) == _sorted(live)
    return live


def _summed_days(engine: Engine) -> set[date]:
    with engine.connect() as conn:
        days = conn.execute(select(payment_days_summed.c.business_date)).scalars().all()
    return {d if isinstance(d, date) else date.fromisoformat(d) for d in days}


def _data(engine: Engine) -> tuple[Agent, Agent, str, dict[date, int]]:
    """Two agents paying over 35 days (some days twice, one day nothing), an invoice paid."""
    one, two = _agent(engine, "sum_one"), _agent(engine, "sum_two")
    inn = add_customer(engine)
    first_of_day: dict[date, int] = {}
    for back in range(35):
        day = TODAY - timedelta(days=back)
        if back == 7:
            continue  # a day without payments is stored too (as empty)
        first_of_day[day] = _pay(engine, one, inn, 10_000 + back * 100, day)
        if back % 3 == 0:
            _pay(engine, two, inn, 55_000, day)
    invoice = add_invoice(engine)
    _pay(engine, two, invoice.number, invoice.total, TODAY - timedelta(days=4), service=Service.EDS)
    return one, two, inn, first_of_day


def test_stored_days_equal_the_live_sums_through_reversals_and_late_pays(engine: Engine) -> None:
    one, _two, inn, first_of_day = _data(engine)
    assert _summed_days(engine) == set()

    before = _same_as_live(engine)
    closed = {FIRST + timedelta(days=i) for i in range(dashboard.CHART_DAYS - 2)}
    assert _summed_days(engine) == closed  # stored once: every closed day, the empty one too
    _same_as_live(engine)  # and read back the same

    # A reversal of a stored day's payment: the day is forgotten, the sums follow it.
    reversed_day = TODAY - timedelta(days=10)
    with engine.begin() as conn:
        done = service.reverse(conn, first_of_day[reversed_day], "ошибка оператора", "test")
    assert done.outcome is CancelOutcome.OK
    assert reversed_day not in _summed_days(engine)
    after = _same_as_live(engine)
    assert reversed_day in _summed_days(engine)  # summed again by that read
    lost = Counter((s.day, s.agent_id) for s in before) - Counter(
        (s.day, s.agent_id) for s in after
    )
    was = {(s.day, s.agent_id): s for s in before}[(reversed_day, one.id)]
    now = {(s.day, s.agent_id): s for s in after}.get((reversed_day, one.id))
    assert now is None and was.count == 1 and lost == Counter({(reversed_day, one.id): 1})

    # A pay arriving late (its txn_date five days back) into a stored day.
    late_day = TODAY - timedelta(days=5)
    _pay(engine, one, inn, 77_700, late_day)
    assert late_day not in _summed_days(engine)
    later = _same_as_live(engine)
    assert {(s.day, s.agent_id): s.count for s in later}[(late_day, one.id)] == 2

    # Today's and yesterday's pays touch no stored day.
    kept = _summed_days(engine)
    _pay(engine, one, inn, 1_000, TODAY)
    _pay(engine, one, inn, 1_000, TODAY - timedelta(days=1))
    assert _summed_days(engine) == kept
    _same_as_live(engine)


def test_the_dashboard_and_agents_figures_equal_the_live_sums(engine: Engine) -> None:
    one, two, _inn, first_of_day = _data(engine)
    with engine.begin() as conn:
        service.reverse(conn, first_of_day[TODAY - timedelta(days=12)], "ошибка", "test")
    for _ in range(2):  # the first read stores the closed days, the second reads them
        with engine.connect() as conn:
            board = dashboard.load(conn, today=TODAY, expiry_days=30)
        with engine.connect() as conn:
            live = day_totals.live(conn, (FIRST, TODAY), None)
        assert board.chart is not None
        for chart_day in board.chart.days:
            mine = [s for s in live if s.day == chart_day.day]
            assert chart_day.count == sum(s.count for s in mine)
            assert chart_day.total == sum(s.total for s in mine)
            for code in board.chart.services:
                tally = chart_day.by_service[code]
                assert tally.total == sum(s.total for s in mine if s.service == code)
        yesterday = TODAY - timedelta(days=1)
        assert board.yesterday.total == sum(s.total for s in live if s.day == yesterday)
        assert board.today.count == sum(s.count for s in live if s.day == TODAY)

        now = datetime.combine(TODAY, time(15), tzinfo=HOME_ZONE).astimezone(UTC)
        with engine.connect() as conn:
            figures = agent_figures.of_agents(
                conn, [(one.id, "Asia/Bishkek"), (two.id, "Asia/Bishkek")], now
            )
        for agent in (one, two):
            month = [s for s in live if s.agent_id == agent.id]
            assert figures[agent.id].last_30_days.count == sum(s.count for s in month)
            assert figures[agent.id].last_30_days.total == sum(s.total for s in month)
    assert len(_summed_days(engine)) == dashboard.CHART_DAYS - 2


def test_a_day_not_closed_by_the_database_clock_is_not_stored(engine: Engine) -> None:
    """A caller's clock ahead of the database's (a test clock, a wrong one) makes no open
    day stored: storing asks the database's own today."""
    one, _two, _inn, _days = _data(engine)
    ahead = TODAY + timedelta(days=5)
    with engine.connect() as conn:
        found = day_totals.totals(conn, FIRST, ahead, today=ahead)
    with engine.connect() as conn:
        live = day_totals.live(conn, (FIRST, ahead), None)
    assert _sorted(found) == _sorted(live)
    # The database's today now, not TODAY: the module may have been imported before
    # Bishkek's midnight (18:00 UTC) and this test run after it.
    assert max(_summed_days(engine)) == day_totals.last_closed(datetime.now(HOME_ZONE).date())
    with engine.connect() as conn:
        stored_rows = conn.execute(select(func.count()).select_from(payment_day_totals))
        assert stored_rows.scalar_one() > 0
        agent_ids = conn.execute(select(payments.c.agent_id).distinct()).scalars().all()
    assert one.id in agent_ids


@postgres_only
def test_storing_waits_for_a_late_pay_in_flight(engine: Engine) -> None:
    """A late pay whose transaction is still open when a reader sums its day: the reader's
    storing waits for it (the trigger's lock) and then stores the sum with it, rather than
    storing a sum that the pay's commit would leave stale."""
    one, _two, inn, _days = _data(engine)
    late_day = TODAY - timedelta(days=6)
    moment = datetime.combine(late_day, time(12), tzinfo=HOME_ZONE)
    request = PayRequest(
        Service.SOCHI, new_txn_id(), inn, 12_300, moment, moment.strftime("%Y%m%d%H%M%S")
    )
    summed: list[list[day_totals.DayTotal]] = []
    with engine.connect() as writer:
        writer.begin()
        assert service.pay(writer, one, request).outcome is Outcome.OK  # not committed yet

        def read() -> None:
            with engine.connect() as conn:
                summed.append(day_totals.totals(conn, FIRST, TODAY, today=TODAY))

        reader = threading.Thread(target=read)
        reader.start()
        waiting = False
        for _ in range(300):  # until the reader waits for the lock (or, wrongly, is done)
            with engine.connect() as conn:
                waiting = bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted "
                            "AND relation = 'payment_days_summed'::regclass"
                        )
                    ).scalar_one()
                )
            if waiting or not reader.is_alive():
                break
            threading.Event().wait(0.05)
        assert waiting, "the reader stored without waiting for the pay in flight"
        writer.commit()
    reader.join(timeout=60)
    assert not reader.is_alive()
    with engine.connect() as conn:
        live = day_totals.live(conn, (FIRST, TODAY), None)
    assert _sorted(summed[0]) == _sorted(live)
    assert late_day in _summed_days(engine)
    _same_as_live(engine)
