"""The agent sandbox's core (`tolom.payments.sandbox`): every magic account's answer, the
exactly-once rule, retry then success, cancel and status, reset (on command and nightly),
and that nothing a sandbox agent does reaches a real table, figure or reconciliation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from tests.factories import REPO, add_agent, add_customer, new_txn_id
from tolom.agents import service as agents
from tolom.agents.service import Agent
from tolom.backoffice import agent_figures, dashboard
from tolom.db.schema import (
    account_balances,
    audit_log,
    events,
    journal_entries,
    payments,
    postings,
    sandbox_attempts,
    sandbox_payments,
    sandbox_state,
)
from tolom.ledger.verify import verify_ledger
from tolom.payments import sandbox, service
from tolom.payments.model import CancelOutcome, Outcome, PayRequest, Service
from tolom.reconciliation import days, registries
from tolom.reconciliation.parsing import RegistryError
from tolom.settings import Settings

WHEN = datetime(2026, 11, 21, 14, 30, 5, tzinfo=UTC)


def _sandbox_agent(engine: Engine, code: str = "sandy") -> Agent:
    with engine.begin() as conn:
        agents.create(
            conn,
            code=code,
            name=f"Песочница {code}",
            networks=["*"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )
        found = agents.load(conn, code)
    assert found is not None and found.sandbox
    return found


def _request(kind: Service, account: str, amount: int, txn_id: str | None = None) -> PayRequest:
    return PayRequest(kind, txn_id or new_txn_id(), account, amount, WHEN, "20261121203005")


def _good_amount(entry: sandbox.MagicAccount) -> int:
    return entry.amount_due if entry.amount_due is not None else 50_000


def _pay(engine: Engine, agent: Agent, request: PayRequest) -> Any:
    with engine.begin() as conn:
        return sandbox.pay(conn, agent, request)


def _real_state(engine: Engine) -> dict[str, Any]:
    """What a sandbox pay must never change (its events are marked: tests/core/events)."""
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (payments, journal_entries, postings)
        }
        counts["events"] = conn.execute(
            select(func.count()).select_from(events).where(events.c.sandbox.is_(False))
        ).scalar_one()
        balances = conn.execute(
            select(
                account_balances.c.account_id, account_balances.c.slot, account_balances.c.balance
            ).order_by(account_balances.c.account_id, account_balances.c.slot)
        ).all()
    return {**counts, "balances": [tuple(b) for b in balances]}


# --- the table -----------------------------------------------------------------------------


def test_the_magic_table_is_well_formed_and_covers_every_documented_answer() -> None:
    for entry in sandbox.MAGIC_ACCOUNTS:
        assert service.account_format_ok(entry.service, entry.account), entry
    assert len(sandbox.MAGIC) == len(sandbox.MAGIC_ACCOUNTS)  # no account listed twice
    pays = {(e.service, e.pay) for e in sandbox.MAGIC_ACCOUNTS}
    for outcome in (Outcome.NOT_FOUND, Outcome.FORBIDDEN, Outcome.INACTIVE, Outcome.TOO_SMALL):
        assert (Service.SOCHI, outcome) in pays
    assert (Service.SOCHI, Outcome.TOO_LARGE) in pays and (Service.SOCHI, Outcome.CONFLICT) in pays
    assert (Service.EDS, Outcome.ALREADY_PAID) in pays
    assert sum(e.slow for e in sandbox.MAGIC_ACCOUNTS) == 1
    interims = [(e.retries, e.interim) for e in sandbox.MAGIC_ACCOUNTS if e.retries]
    assert interims == [
        (sandbox.RETRY_ATTEMPTS, Outcome.RETRY),
        (sandbox.PENDING_ATTEMPTS, Outcome.PENDING),
    ]
    assert sandbox.RETRY_ATTEMPTS == sandbox.PENDING_ATTEMPTS == 2
    assert not Outcome.PENDING.fatal and Outcome.PENDING not in {
        e.pay for e in sandbox.MAGIC_ACCOUNTS
    }
    assert sandbox.MAGIC[(Service.SOCHI, "99999000000090")].interim is Outcome.PENDING
    # A few literals, so the table and the guides cannot drift apart silently.
    assert sandbox.MAGIC[(Service.SOCHI, "99999000000079")].pay is Outcome.INACTIVE
    assert sandbox.MAGIC[(Service.SOCHI, "99999000000241")].pay is Outcome.TOO_SMALL
    assert sandbox.MAGIC[(Service.EDS, "9999900000000005")].amount_due == 150_000
    assert sandbox.MAGIC[(Service.EDS, "9999900000000070")].check is Outcome.ALREADY_PAID


@pytest.mark.parametrize("entry", sandbox.MAGIC_ACCOUNTS, ids=lambda e: e.account)
def test_every_magic_account_answers_as_its_entry_says(
    engine: Engine, entry: sandbox.MagicAccount
) -> None:
    agent = _sandbox_agent(engine)
    before = _real_state(engine)
    with engine.begin() as conn:
        checked = sandbox.check(conn, agent, entry.service, entry.account)
    assert checked.outcome is entry.check
    if entry.check is Outcome.OK:
        assert checked.display_name == sandbox.DISPLAY_NAME
        assert checked.amount_due == entry.amount_due
    request = _request(entry.service, entry.account, _good_amount(entry))
    paid = _pay(engine, agent, request)
    for _ in range(entry.retries):
        assert paid.outcome is entry.interim
        paid = _pay(engine, agent, request)
    assert paid.outcome is entry.pay, paid
    if paid.outcome is Outcome.OK:
        assert paid.payment_id is not None and paid.amount == request.amount
    assert _real_state(engine) == before


def test_any_other_account_is_not_found_and_a_bad_format_is_still_four(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    inn = add_customer(engine)  # a real customer: a sandbox agent never sees it
    with engine.begin() as conn:
        assert sandbox.check(conn, agent, Service.SOCHI, inn).outcome is Outcome.NOT_FOUND
        assert sandbox.check(conn, agent, Service.SOCHI, "1234").outcome is Outcome.BAD_ACCOUNT
        mistyped = sandbox.check(conn, agent, Service.EDS, "9999900000000006")
    assert mistyped.outcome is Outcome.BAD_ACCOUNT
    assert _pay(engine, agent, _request(Service.SOCHI, inn, 50_000)).outcome is Outcome.NOT_FOUND


def test_the_open_invoice_takes_exactly_its_amount(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    invoice = "9999900000000005"
    assert _pay(engine, agent, _request(Service.EDS, invoice, 149_999)).outcome is Outcome.TOO_SMALL
    assert _pay(engine, agent, _request(Service.EDS, invoice, 150_001)).outcome is Outcome.TOO_LARGE
    assert _pay(engine, agent, _request(Service.EDS, invoice, 150_000)).outcome is Outcome.OK


def test_a_real_agent_gets_the_normal_answer_for_a_magic_account(engine: Engine) -> None:
    add_agent(engine, "real")
    with engine.begin() as conn:
        real = agents.load(conn, "real")
        assert real is not None and not real.sandbox
        assert service.check(conn, real, Service.SOCHI, "99999000000000").outcome is (
            Outcome.NOT_FOUND
        )
        paid = service.pay(conn, real, _request(Service.SOCHI, "99999000000000", 50_000))
    assert paid.outcome is Outcome.NOT_FOUND


# --- exactly once, retries, cancel, status ----------------------------------------------


def test_a_repeat_answers_the_same_receipt_and_a_changed_repeat_is_a_conflict(
    engine: Engine,
) -> None:
    agent = _sandbox_agent(engine)
    request = _request(Service.SOCHI, "99999000000000", 50_000)
    first = _pay(engine, agent, request)
    again = _pay(engine, agent, request)
    assert first.outcome is again.outcome is Outcome.OK
    assert again.payment_id == first.payment_id and again.replayed and not first.replayed
    padded = _pay(engine, agent, PayRequest(**{**_fields(request), "txn_id": "0" + request.txn_id}))
    assert padded.payment_id == first.payment_id  # "0090" is "90", as for real payments
    changed = _pay(engine, agent, PayRequest(**{**_fields(request), "amount": 60_000}))
    assert changed.outcome is Outcome.CONFLICT
    other = _sandbox_agent(engine, "sandy2")  # txn_ids are per agent
    theirs = _pay(engine, other, request)
    assert theirs.outcome is Outcome.OK and theirs.payment_id != first.payment_id
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one() == 2


def _fields(request: PayRequest) -> dict[str, Any]:
    return {
        "service": request.service,
        "txn_id": request.txn_id,
        "account": request.account,
        "amount": request.amount,
        "txn_date": request.txn_date,
        "txn_date_raw": request.txn_date_raw,
    }


def test_retry_then_success_counts_per_txn_id(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    one = _request(Service.SOCHI, "99999000000001", 50_000)
    two = _request(Service.SOCHI, "99999000000001", 50_000)
    outcomes = [_pay(engine, agent, one).outcome for _ in range(3)]
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.OK]
    assert _pay(engine, agent, two).outcome is Outcome.RETRY  # another txn_id starts over
    assert _pay(engine, agent, one).replayed  # once accepted, a repeat is a repeat


def test_only_the_sandbox_decides_a_pending_pay() -> None:
    """Real pays are final when they answer: besides the sandbox, `Outcome.PENDING` is
    only named where it is defined, worded and mapped to the protocols' answers."""
    naming = {
        str(path.relative_to(REPO / "src" / "tolom"))
        for path in (REPO / "src" / "tolom").rglob("*.py")
        if "Outcome.PENDING" in path.read_text(encoding="utf-8")
    }
    assert naming == {
        "payments/sandbox.py",
        "payments/model.py",  # defined
        "payments/service.py",  # worded (_MESSAGES)
        "gateway/osmp.py",  # 90
        "httpkit/problems.py",  # payment_pending
        "web/cash.py",  # a status for completeness
    }


def test_not_finished_then_success_counts_per_txn_id(engine: Engine) -> None:
    """The 90 account: PENDING for the first pays of a txn_id, then accepted, once."""
    agent = _sandbox_agent(engine)
    one = _request(Service.SOCHI, "99999000000090", 50_000)
    outcomes = [_pay(engine, agent, one) for _ in range(3)]
    assert [p.outcome for p in outcomes] == [Outcome.PENDING, Outcome.PENDING, Outcome.OK]
    assert outcomes[0].payment_id is None and outcomes[0].message == service.t("agent.pending")
    assert outcomes[2].payment_id is not None and not outcomes[2].replayed
    again = _pay(engine, agent, one)
    assert again.replayed and again.payment_id == outcomes[2].payment_id
    with engine.connect() as conn:
        row = conn.execute(select(sandbox_payments.c.outcome)).one()
    assert row.outcome == "pending_then_ok"


def test_cancel_and_status(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    request = _request(Service.SOCHI, "99999000000000", 50_000)
    # Accepted today, so the same-day cancel window is open.
    now = datetime.now(UTC)
    request = PayRequest(**{**_fields(request), "txn_date": now})
    paid = _pay(engine, agent, request)
    with engine.begin() as conn:
        found = sandbox.find(conn, agent, request.txn_id)
        assert found is not None and found.id == paid.payment_id and found.status == "accepted"
        assert sandbox.find(conn, agent, new_txn_id()) is None
        assert sandbox.cancel(conn, agent, new_txn_id(), "ошибка").outcome is (
            CancelOutcome.NOT_FOUND
        )
        assert sandbox.cancel(conn, agent, request.txn_id, "  ").outcome is CancelOutcome.MALFORMED
        cancelled = sandbox.cancel(conn, agent, request.txn_id, "Клиент ошибся")
    assert cancelled.outcome is CancelOutcome.OK and not cancelled.replayed
    assert cancelled.record is not None and cancelled.record.status == "reversed"
    assert cancelled.record.reversal is not None
    assert cancelled.record.reversal.reason == "Клиент ошибся"
    with engine.begin() as conn:
        repeated = sandbox.cancel(conn, agent, request.txn_id, "ещё раз")
        found = sandbox.find(conn, agent, request.txn_id)
    assert repeated.outcome is CancelOutcome.OK and repeated.replayed
    assert found is not None and found.status == "reversed"
    replay = _pay(engine, agent, request)
    assert replay.replayed and replay.status == "reversed"


def test_the_cancel_window_applies(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    request = _request(Service.SOCHI, "99999000000000", 50_000)
    _pay(engine, agent, request)
    with engine.begin() as conn:
        conn.execute(sandbox_payments.update().values(created_at=datetime(2026, 1, 1, tzinfo=UTC)))
        refused = sandbox.cancel(conn, agent, request.txn_id, "поздно")
    assert refused.outcome is CancelOutcome.WINDOW_CLOSED


# --- apart from real figures ---------------------------------------------------------------


def test_sandbox_pays_reach_no_real_table_figure_or_reconciliation(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    before = _real_state(engine)
    for entry in sandbox.MAGIC_ACCOUNTS:
        request = _request(entry.service, entry.account, _good_amount(entry))
        for _ in range(entry.retries + 1):
            _pay(engine, agent, request)
    assert _real_state(engine) == before
    today = datetime.now(agent.timezone).date()
    with engine.connect() as conn:
        assert verify_ledger(conn) == []
        board = dashboard.load(conn, today=WHEN.date(), expiry_days=30)
        assert board.today.count == 0 and board.today.total == 0
        figures = agent_figures.of_agents(conn, [(agent.id, agent.timezone.key)], WHEN)
        assert figures[agent.id].on_today.count == 0
        listed = agent_figures.gateway_agents(conn, after=None, limit=10, code=agent.code)
        assert listed[0].sandbox
        assert [c.agent for c in days.calendar(conn, today, today)] == []
        with pytest.raises(RegistryError):
            registries.agent_for_registry(conn, agent.code)
        assert conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one() > 0


# --- reset ------------------------------------------------------------------------------


def test_reset_empties_all_or_one_agent_and_is_audited(engine: Engine) -> None:
    one, two = _sandbox_agent(engine, "sandy1"), _sandbox_agent(engine, "sandy2")
    for agent in (one, two):
        _pay(engine, agent, _request(Service.SOCHI, "99999000000000", 50_000))
        _pay(engine, agent, _request(Service.SOCHI, "99999000000001", 50_000))  # a counter
    with engine.begin() as conn:
        assert sandbox.reset(conn, agent_id=one.id, actor="cli:test") == 1
        left = conn.execute(select(sandbox_payments.c.agent_id)).scalars().all()
        assert left == [two.id]
        assert conn.execute(select(sandbox_attempts.c.agent_id)).scalars().all() == [two.id]
        assert sandbox.reset(conn, actor="cli:test") == 1
        assert conn.execute(select(func.count()).select_from(sandbox_attempts)).scalar_one() == 0
        actions = conn.execute(
            select(audit_log.c.action).where(audit_log.c.action == "sandbox.reset")
        ).all()
    assert len(actions) == 2


def test_the_nightly_reset_runs_once_a_day(engine: Engine) -> None:
    agent = _sandbox_agent(engine)
    _pay(engine, agent, _request(Service.SOCHI, "99999000000000", 50_000))
    with engine.begin() as conn:
        conn.execute(sandbox_state.delete())  # a missing state row is made afresh
        assert sandbox.reset_nightly(conn, date(2026, 12, 3)) == 1
    _pay(engine, agent, _request(Service.SOCHI, "99999000000000", 50_000))
    with engine.begin() as conn:
        assert sandbox.reset_nightly(conn, date(2026, 12, 3)) is None  # that day is done
        assert conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one() == 1
        assert sandbox.reset_nightly(conn, date(2026, 12, 4)) == 1
        assert conn.execute(select(sandbox_state.c.reset_on)).scalar_one() == date(2026, 12, 4)


def test_the_workers_job_resets_on_the_days_first_run_only(
    engine: Engine, settings: Settings
) -> None:
    agent = _sandbox_agent(engine)
    _pay(engine, agent, _request(Service.SOCHI, "99999000000000", 50_000))
    sandbox.nightly_job(engine, settings)
    _pay(engine, agent, _request(Service.SOCHI, "99999000000000", 50_000))
    sandbox.nightly_job(engine, settings)  # the same Bishkek day: nothing more
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sandbox_payments)).scalar_one() == 1
