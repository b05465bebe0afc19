"""Reconciliation: registries imported, matched per agent and business day, discrepancies
resolved with a reason and an audit line, days closed and reopened (both databases)."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from tests.factories import Gateway, add_customer, postgres_only
from tolom import audit
from tolom.db.schema import (
    discrepancies,
    payments,
    reconciliation_days,
    registries,
    registry_lines,
)
from tolom.ledger.verify import verify_ledger
from tolom.reconciliation import days
from tolom.reconciliation import registries as imports
from tolom.reconciliation.days import ReconciliationError
from tolom.reconciliation.parsing import RegistryError
from tolom.reconciliation.registries import DayClosed

DAY = date(2026, 11, 21)
ACTOR = "user:buh"


def registry(*lines: tuple[str, str, str, str], total: str | None = None) -> bytes:
    """QIWI text: (txn_id, "DD.MM.YYYY HH:MM:SS", account, amount) per line."""
    text = ""
    cents = 0
    for txn, moment, account, amount in lines:
        day, at = moment.split(" ")
        text += f"{txn}\t{day}\t{at}\t{account}\t{amount}\n"
        som, _, tyiyn = amount.partition(".")
        cents += int(som) * 100 + int(tyiyn.ljust(2, "0") or "0")
    text += total or f"Total: {len(lines)} {cents // 100}.{cents % 100:02d}\n"
    return text.encode()


def balance_of(engine: Engine, inn: str) -> int:
    from tolom.billing import customers

    with engine.connect() as conn:
        found = customers.get(conn, inn)
        assert found is not None
        return customers.balance(conn, found)


def _import(engine: Engine, content: bytes, **options: Any) -> imports.Imported:
    return imports.import_registry(
        engine, options.pop("agent", "optima"), content, file_name="r.txt", actor=ACTOR, **options
    )


@pytest.fixture
def planted(gateway: Gateway, engine: Engine) -> dict[str, Any]:
    """Our side of 21.11.2026: five payments; the agent's registry differs in every way."""
    inn, other = add_customer(engine), add_customer(engine)
    for txn, amount, at in (
        ("101", "100.00", "20261121090000"),
        ("102", "200.00", "20261121100000"),
        ("103", "300.00", "20261121110000"),
        ("104", "400.00", "20261121120000"),
        ("105", "50.00", "20261121235959"),
    ):
        assert gateway.pay("sochi", inn, amount, txn_id=txn, txn_date=at)["result"] == 0
    content = registry(
        ("101", "21.11.2026 09:00:00", inn, "100.00"),  # matched
        ("0102", "21.11.2026 10:00:00", inn, "250.00"),  # amount mismatch ("0102" is 102)
        ("103", "21.11.2026 11:00:00", other, "300.00"),  # account mismatch
        ("106", "21.11.2026 13:00:00", inn, "70.00"),  # missing on our side
        ("101", "21.11.2026 09:00:00", inn, "100.00"),  # duplicate line
        ("105", "21.11.2026 23:59:59", inn, "50.00"),  # matched at the day's last second
    )  # 104 is missing on theirs
    return {"inn": inn, "other": other, "content": content}


def test_every_class_is_found_with_counts_sums_and_the_net_difference(
    engine: Engine, planted: dict[str, Any]
) -> None:
    done = _import(engine, planted["content"])
    assert (done.business_date, done.lines, done.replayed) == (DAY, 6, False)
    summary = done.summary
    assert (summary.their_count, summary.their_amount) == (6, 87000)
    assert (summary.our_count, summary.our_amount) == (5, 105000)
    assert (summary.matched_count, summary.matched_amount) == (2, 15000)
    counts = {kind: total.count for kind, total in summary.classes.items()}
    assert counts == {
        "missing_ours": 1,
        "missing_theirs": 1,
        "amount_mismatch": 1,
        "account_mismatch": 1,
        "duplicate": 1,
    }
    assert summary.classes["amount_mismatch"].their_amount == 25000
    assert summary.classes["amount_mismatch"].our_amount == 20000
    assert summary.classes["missing_theirs"].our_amount == 40000
    assert summary.difference == 87000 - 105000
    with engine.connect() as conn:
        found = {d.kind: d for d in days.discrepancies_of(conn, done.registry_id)}
        day = days.day(conn, "optima", DAY)
    assert found["missing_ours"].txn_id == "106" and found["missing_ours"].payment_id is None
    assert found["missing_theirs"].txn_id == "104" and found["missing_theirs"].line_no is None
    assert found["account_mismatch"].their_account == planted["other"]
    assert found["duplicate"].line_no == 5
    assert (day.state, day.unresolved, day.registry_id) == ("open", 5, done.registry_id)


def test_reimport_changes_nothing_and_a_correction_supersedes(
    engine: Engine, planted: dict[str, Any]
) -> None:
    first = _import(engine, planted["content"])
    again = _import(engine, planted["content"])
    assert again.replayed and again.registry_id == first.registry_id
    assert again.summary == first.summary
    inn = planted["inn"]
    corrected = registry(
        ("101", "21.11.2026 09:00:00", inn, "100.00"),
        ("102", "21.11.2026 10:00:00", inn, "200.00"),
        ("103", "21.11.2026 11:00:00", inn, "300.00"),
        ("104", "21.11.2026 12:00:00", inn, "400.00"),
        ("105", "21.11.2026 23:59:59", inn, "50.00"),
    )
    fixed = _import(engine, corrected)
    assert fixed.superseded == first.registry_id and fixed.summary.discrepancy_count == 0
    with engine.connect() as conn:
        states = dict(conn.execute(select(registries.c.id, registries.c.state)).all())
        old_lines = conn.execute(
            select(func.count()).where(registry_lines.c.registry_id == first.registry_id)
        ).scalar_one()
        assert days.day(conn, "optima", DAY).state == "ready"
        lines_of = {r.id: r.superseded_by for r in conn.execute(select(registries))}
    assert states == {first.registry_id: "superseded", fixed.registry_id: "current"}
    assert old_lines == 6 and lines_of[first.registry_id] == fixed.registry_id  # history kept
    # The first file again: it becomes the day's registry once more, as a new registry.
    back = _import(engine, planted["content"])
    assert not back.replayed and back.superseded == fixed.registry_id
    assert back.summary.discrepancy_count == 5
    actions = [line["action"] for line in _audit(engine)]
    assert actions.count("registry.import") == 3


def _audit(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return audit.entries(conn, limit=1000)


def test_resolving_every_class_then_closing_the_day(
    engine: Engine, planted: dict[str, Any]
) -> None:
    done = _import(engine, planted["content"])
    inn = planted["inn"]
    with engine.connect() as conn:
        found = {d.kind: d for d in days.discrepancies_of(conn, done.registry_id)}
    before = balance_of(engine, inn)

    with pytest.raises(ReconciliationError, match="нельзя закрыть"):
        days.close(engine, "optima", DAY, actor=ACTOR)
    with pytest.raises(ReconciliationError, match="причину"):
        days.resolve(engine, found["missing_ours"].id, "accept", "  ", actor=ACTOR)
    with pytest.raises(ReconciliationError, match="не подходит"):
        days.resolve(engine, found["duplicate"].id, "accept", "дубль", actor=ACTOR)

    # Accept the agent's payment: it goes through pay, on the registry's day; twice is once.
    accepted = days.resolve(
        engine, found["missing_ours"].id, "accept", "Агент подтвердил чек", actor=ACTOR
    )
    assert accepted.resolution == "accepted" and accepted.resolution_payment_id is not None
    again = days.resolve(engine, found["missing_ours"].id, "accept", "повтор", actor=ACTOR)
    assert again.resolution_payment_id == accepted.resolution_payment_id
    assert balance_of(engine, inn) == before + 7000
    with engine.connect() as conn:
        paid = conn.execute(
            select(payments.c.txn_id, payments.c.business_date, payments.c.amount).where(
                payments.c.id == accepted.resolution_payment_id
            )
        ).one()
    assert tuple(paid) == ("106", DAY, 7000)

    # Reverse ours that the agent does not list.
    reversed_ = days.resolve(
        engine, found["missing_theirs"].id, "reverse", "Агент не проводил", actor=ACTOR
    )
    assert reversed_.resolution == "reversed"
    assert balance_of(engine, inn) == before + 7000 - 40000
    with pytest.raises(ReconciliationError, match="другим действием"):
        days.resolve(engine, found["missing_theirs"].id, "explain", "x", actor=ACTOR)

    for kind in ("amount_mismatch", "account_mismatch", "duplicate"):
        days.resolve(engine, found[kind].id, "explain", f"Разобрано: {kind}", actor=ACTOR)
    closed = days.close(engine, "optima", DAY, actor=ACTOR)
    assert (closed.state, closed.closed_by) == ("closed", ACTOR)

    # Closed: no registry, no resolution until an admin reopens it.
    with pytest.raises(DayClosed):
        _import(engine, registry(("101", "21.11.2026 09:00:00", inn, "100.00")))
    reopened = days.reopen(engine, "optima", DAY, "Агент прислал исправление", actor="user:admin")
    assert reopened.state == "ready"
    actions = [line["action"] for line in _audit(engine)]
    for action in (
        "discrepancy.accept",
        "discrepancy.reverse",
        "discrepancy.explain",
        "payment.reverse",
        "reconciliation.close",
        "reconciliation.reopen",
    ):
        assert action in actions
    with engine.connect() as conn:
        verify_ledger(conn)


def test_a_refused_reversal_changes_nothing(
    engine: Engine, gateway: Gateway, planted: dict[str, Any]
) -> None:
    done = _import(engine, planted["content"])
    with engine.connect() as conn:
        [missing] = [
            d for d in days.discrepancies_of(conn, done.registry_id) if d.kind == "missing_theirs"
        ]
    # The customer spends the balance first (a charge would; here a reversal of the rest).
    from tolom.billing import charges

    balance = balance_of(engine, planted["inn"])
    with engine.begin() as conn:
        charges.create(
            conn,
            charges.ChargeRequest(
                client="test",
                idempotency_key="spend",
                inn=planted["inn"],
                amount=balance,
                description="всё",
            ),
        )
    with pytest.raises(ReconciliationError, match="не отменён"):
        days.resolve(engine, missing.id, "reverse", "Агент не проводил", actor=ACTOR)
    with engine.connect() as conn:
        assert days.get_discrepancy(conn, missing.id).resolution is None
        status = conn.execute(
            select(payments.c.status).where(payments.c.id == missing.payment_id)
        ).scalar_one()
    assert status == "accepted"


def test_bad_files_import_nothing(engine: Engine, planted: dict[str, Any]) -> None:
    inn = planted["inn"]
    bad = registry(("101", "21.11.2026 09:00:00", inn, "100.00"), total="Total: 1 99.00\n")
    with pytest.raises(RegistryError, match="сумма"):
        _import(engine, bad)
    with pytest.raises(RegistryError) as caught:
        _import(
            engine,
            registry(
                ("101", "21.11.2026 09:00:00", inn, "100.00"),
                ("107", "22.11.2026 00:00:01", inn, "1.00"),
            ),
            day=DAY,
        )
    assert caught.value.line == 2 and "22.11.2026" in str(caught.value)
    with pytest.raises(RegistryError, match="разные дни"):
        _import(
            engine,
            registry(
                ("101", "21.11.2026 09:00:00", inn, "100.00"),
                ("107", "22.11.2026 00:00:01", inn, "1.00"),
            ),
        )
    with pytest.raises(RegistryError, match="нет агента"):
        _import(engine, planted["content"], agent="nobody")
    with engine.connect() as conn:
        for table in (registries, registry_lines, discrepancies, reconciliation_days):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_the_midnight_boundary_in_two_agent_zones(app: Any, engine: Engine) -> None:
    """A payment at 23:59:59 and one at 00:00:01 local time, for an agent in Bishkek and
    one in Moscow: each lands on its own agent-local day on both sides, even when the
    Moscow agent writes its registry in UTC."""
    inn = add_customer(engine)
    bishkek = Gateway.create(app, engine, "optima")
    moscow = Gateway.create(app, engine, "mosagent", timezone="Europe/Moscow")
    for agent in (bishkek, moscow):
        assert (
            agent.pay("sochi", inn, "10.00", txn_id="1", txn_date="20261121235959")["result"] == 0
        )
        assert (
            agent.pay("sochi", inn, "20.00", txn_id="2", txn_date="20261122000001")["result"] == 0
        )
    from tolom.reconciliation import formats

    with engine.begin() as conn:
        agent_id = conn.execute(
            select(payments.c.agent_id).where(payments.c.txn_id == "1").limit(1)
        ).scalar_one()
        moscow_id = days._agent_id(conn, "mosagent")
        formats.save(conn, moscow_id, formats.RegistryFormat(timezone="UTC"))
    assert agent_id
    # Bishkek (UTC+6) writes local times.
    first = _import(engine, registry(("1", "21.11.2026 23:59:59", inn, "10.00")))
    second = _import(engine, registry(("2", "22.11.2026 00:00:01", inn, "20.00")))
    assert first.business_date == DAY and first.summary.discrepancy_count == 0
    assert second.business_date == date(2026, 11, 22) and second.summary.discrepancy_count == 0
    # Moscow (UTC+3) in UTC: 23:59:59 MSK is 20:59:59 UTC, 00:00:01 MSK is 21:00:01 UTC
    # of the 21st: both written on the 21st, the second belongs to the agent's 22nd.
    m_first = _import(
        engine, registry(("1", "21.11.2026 20:59:59", inn, "10.00")), agent="mosagent"
    )
    m_second = _import(
        engine, registry(("2", "21.11.2026 21:00:01", inn, "20.00")), agent="mosagent"
    )
    assert (m_first.business_date, m_first.summary.discrepancy_count) == (DAY, 0)
    assert (m_second.business_date, m_second.summary.discrepancy_count) == (date(2026, 11, 22), 0)


def test_a_line_we_have_on_another_day_points_at_our_payment(
    engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "10.00", txn_id="9", txn_date="20261120120000")["result"] == 0
    done = _import(engine, registry(("9", "21.11.2026 12:00:00", inn, "10.00")))
    with engine.connect() as conn:
        [found] = days.discrepancies_of(conn, done.registry_id)
    assert found.kind == "missing_ours" and found.payment_id is not None
    assert found.other_day == date(2026, 11, 20) and found.other_status == "accepted"
    # Accepting it replays our payment of the 20th: nothing is paid twice.
    resolved = days.resolve(engine, found.id, "accept", "уже есть", actor=ACTOR)
    assert resolved.resolution_payment_id == found.payment_id


@postgres_only
def test_identical_imports_at_the_same_instant_store_one_registry(
    engine: Engine, planted: dict[str, Any]
) -> None:
    results: list[imports.Imported] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        barrier.wait()
        results.append(_import(engine, planted["content"]))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len({r.registry_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(registries)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(discrepancies)).scalar_one() == 5


@postgres_only
def test_concurrent_accepts_of_one_discrepancy_pay_once(
    engine: Engine, planted: dict[str, Any]
) -> None:
    done = _import(engine, planted["content"])
    with engine.connect() as conn:
        [missing] = [
            d for d in days.discrepancies_of(conn, done.registry_id) if d.kind == "missing_ours"
        ]
    before = balance_of(engine, planted["inn"])
    barrier = threading.Barrier(8)
    outcomes: list[int | None] = []

    def run() -> None:
        barrier.wait()
        outcomes.append(
            days.resolve(
                engine, missing.id, "accept", "подтверждено", actor=ACTOR
            ).resolution_payment_id
        )

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 8 and len(set(outcomes)) == 1
    assert balance_of(engine, planted["inn"]) == before + 7000


@pytest.mark.parametrize(
    "fmt",
    [
        {},
        {"timezone": "UTC", "date_format": "%Y-%m-%d"},
        {
            "kind": "csv",
            "encoding": "cp1251",
            "header": True,
            "total_line": False,
            "columns": {
                "txn_id": "Номер",
                "datetime": "Время",
                "account": "Счёт",
                "amount": "Сумма",
            },
        },
        {"kind": "csv", "delimiter": ",", "amount_unit": "tyiyn", "total_line": True},
        {
            "kind": "xlsx",
            "header": True,
            "total_line": True,
            "columns": {
                "txn_id": "ID",
                "date": "Дата",
                "time": "Время",
                "account": "ИНН",
                "amount": "Сумма",
            },
        },
    ],
    ids=["qiwi", "qiwi-utc", "csv-cp1251", "csv-tyiyn", "xlsx"],
)
def test_our_registry_in_the_agents_format_reads_back_as_our_payments(
    engine: Engine, planted: dict[str, Any], fmt: dict[str, Any]
) -> None:
    import io

    from tolom.agents import service as agent_service
    from tolom.reconciliation import formats, outbound

    with engine.begin() as conn:
        agent = agent_service.load(conn, "optima")
        assert agent is not None
        chosen = formats.save(conn, agent.id, formats.from_mapping(fmt))
    out = io.BytesIO()
    assert outbound.write(engine, agent, DAY, chosen, out) == 5
    done = _import(engine, out.getvalue())
    assert done.business_date == DAY
    assert done.summary.discrepancy_count == 0 and done.summary.matched_count == 5
    assert done.summary.their_amount == done.summary.our_amount == 105000


def test_the_act_as_pdf_and_xlsx(engine: Engine, planted: dict[str, Any], settings: Any) -> None:
    import io

    from openpyxl import load_workbook
    from pypdf import PdfReader

    from tolom.reconciliation import act

    done = _import(engine, planted["content"])
    with engine.connect() as conn:
        draft = act.load(conn, "optima", DAY)
        listed = days.discrepancies_of(conn, done.registry_id)
    text = "\n".join(
        p.extract_text() for p in PdfReader(io.BytesIO(act.pdf(draft, settings))).pages
    )
    assert "АКТ СВЕРКИ" in text and "21.11.2026" in text and "ЧЕРНОВИК" in text
    assert "Нет у агента" in text and "-180,00" in text.replace("\u00a0", " ")
    for d in listed:
        days.resolve(
            engine,
            d.id,
            "accept" if d.kind == "missing_ours" else "explain",
            f"Сверено с агентом {d.txn_id}",
            actor=ACTOR,
        )
    days.close(engine, "optima", DAY, actor=ACTOR)
    with engine.connect() as conn:
        final = act.load(conn, "optima", DAY)
    text = "\n".join(
        p.extract_text() for p in PdfReader(io.BytesIO(act.pdf(final, settings))).pages
    )
    assert "ЧЕРНОВИК" not in text and "закрыт" in text
    assert "Сверено с агентом 104" in text and "платёж агента принят" in text
    book = load_workbook(io.BytesIO(act.xlsx(final, settings)))
    sheet = book["Расхождения"]
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == 1 + 5 and {r[9] for r in rows[1:]} == {"платёж агента принят", "объяснено"}
    summary = {r[0]: r for r in book["Акт"].iter_rows(values_only=True) if r}
    assert summary["Разница (агент − мы)"][2] == -180
    with engine.connect() as conn, pytest.raises(ReconciliationError, match="нет реестра"):
        act.load(conn, "optima", date(2026, 11, 20))
