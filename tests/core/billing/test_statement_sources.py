"""What a customer's statement lines record, read back by the areas that wrote them and
gathered by `backoffice.statement_sources`; and the audited billing changes the adapters
call (charges, tariffs, a customer import)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine

from tests.factories import Gateway, add_customer, new_inn
from tolom import audit
from tolom.api.operator.charges import _out
from tolom.backoffice import statement_sources
from tolom.billing import charges, customers, tariffs
from tolom.formatting import ZONE
from tolom.ledger.accounts import create_account
from tolom.payments import records


def test_a_statement_names_the_payment_and_the_charge_behind_its_lines(
    engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    assert gateway.pay("sochi", inn, "500.00", txn_id="7001")["result"] == 0
    request = charges.ChargeRequest("sochi", "k-1", inn, "НДС за октябрь", amount=10_000)
    with engine.begin() as conn:
        charge = charges.create_audited(conn, request, actor="api:sochi", address="192.0.2.1")
        customer = customers.get(conn, inn)
        assert customer is not None
        today = datetime.now(ZONE).date()  # statement days are Bishkek's
        lines = customers.statement(conn, customer, today.replace(day=1), today).lines
        ids = [x.entry_id for x in lines]
        found = statement_sources.of_entries(conn, ids)
        assert statement_sources.of_entries(conn, []) == {}
        own = records.statement_sources(conn, ids)
        billed = charges.statement_sources(conn, ids)
        [line] = audit.entries(conn, "charge", str(charge.id))
    assert sorted(s.kind for s in found.values()) == ["charge", "payment"]
    [payment] = own.values()
    assert payment.kind == "payment" and payment.reference == "7001" and payment.agent
    [taken] = billed.values()
    assert taken.kind == "charge" and taken.number == charge.id
    assert taken.text == "НДС за октябрь"
    # The audit line shows the charge as the operator API shows it.
    assert line["action"] == "charge.create" and line["address"] == "192.0.2.1"
    assert line["after"] == _out(charge).model_dump(mode="json") == charges.snapshot(charge)


def test_a_repeated_charge_writes_no_second_line(engine: Engine) -> None:
    inn = add_customer(engine)
    request = charges.ChargeRequest("sochi", "k-2", inn, "Отчёт", amount=10_000)
    with engine.begin() as conn:
        first = charges.create_audited(conn, request, actor="api:sochi")
        again = charges.create_audited(conn, request, actor="api:sochi")
        found = audit.entries(conn, "charge", str(first.id))
    assert again.replayed and again.id == first.id and len(found) == 1


def test_tariff_changes_are_audited_before_and_after(engine: Engine) -> None:
    with engine.begin() as conn:
        code = tariffs.list_tariffs(conn)[0].code
        priced = tariffs.set_price_audited(conn, code, 12_345, actor="cli:root")
        off = tariffs.set_active_audited(conn, code, False, actor="cli:root")
        found = list(reversed(audit.entries(conn, "tariff", code)))
    assert priced.price == 12_345 and not off.active
    assert [x["action"] for x in found] == ["tariff.set_price", "tariff.disable"]
    assert found[0]["after"] == tariffs.snapshot(priced) and found[0]["after"]["price"] == "123.45"
    assert found[1]["before"]["active"] is True and found[1]["after"]["active"] is False


def test_an_import_audits_each_customer_added(engine: Engine) -> None:
    known = add_customer(engine)
    fresh = new_inn()
    rows = [
        customers.ImportRow(2, fresh, "ОсОО «Новый»", "ОсОО"),
        customers.ImportRow(3, known, "ОсОО «Старый»", "ОсОО"),
    ]
    with engine.begin() as conn:
        added, problems = customers.import_rows_audited(conn, rows, actor="api:buh")
        fresh_lines = audit.entries(conn, "customer", fresh)
        known_lines = audit.entries(conn, "customer", known)
    assert added == 1 and [p.line for p in problems] == [3]
    [line] = fresh_lines
    assert line["action"] == "customer.import" and line["after"]["inn"] == fresh
    assert known_lines == []


def test_an_inn_taken_meanwhile_is_refused_as_registered_concurrently(engine: Engine) -> None:
    """The database's unique key, not the check before it, refused the registration (as
    when a concurrent transaction registered the INN a moment ago): CustomerExists, so the
    adapters answer "exists" without knowing the database's errors; an import stops."""
    inn = new_inn()
    with engine.begin() as conn:  # what the concurrent registration left behind
        create_account(
            conn, code=f"customer:{inn}", kind="customer", name="x", may_go_negative=False
        )
    with pytest.raises(customers.RegisteredConcurrently), engine.begin() as conn:
        customers.create_audited(conn, inn=inn, name="ОсОО «Тест»", legal_form="ОсОО", actor="x")
    rows = [customers.ImportRow(2, inn, "ОсОО «Тест»", "ОсОО")]
    with pytest.raises(customers.RegisteredConcurrently), engine.begin() as conn:
        customers.import_rows_audited(conn, rows, actor="x")
