"""The core of online applications: which open invoice a repeated application gets
(`invoices.open_invoice_for`) and every bad field named at once (`application_errors`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from tests.factories import new_inn
from tolom.billing import customers, invoices

OFFICES = ("Бишкек", "Ош")


def _invoice(
    engine: Engine,
    inn: str,
    items: list[tuple[str, int]],
    *,
    payer: str = "ОсОО «А»",
    now: datetime | None = None,
) -> str:
    with engine.begin() as conn:
        invoice = invoices.create(
            conn, items=items, payer_name=payer, inn=inn, validity_days=30, now=now
        )
    return invoice.number


def test_the_open_invoice_for_the_same_items(engine: Engine) -> None:
    inn = new_inn()
    number = _invoice(engine, inn, [("eds-head", 1), ("eds-rutoken", 2)])
    with engine.connect() as conn:
        found = invoices.open_invoice_for(
            conn, inn, [("eds-rutoken", 1), ("eds-head", 1), ("eds-rutoken", 1)]
        )
        assert found is not None and found.number == number
        assert invoices.open_invoice_for(conn, inn, [("eds-head", 1)]) is None
        assert (
            invoices.open_invoice_for(conn, new_inn(), [("eds-head", 1), ("eds-rutoken", 2)])
            is None
        )
        same = [("eds-head", 1), ("eds-rutoken", 2)]
        assert invoices.open_invoice_for(conn, inn, same, payer_name=" осоо «а» ") is not None
        assert invoices.open_invoice_for(conn, inn, same, payer_name="ИП Другой") is None
        assert invoices.open_invoice_for(conn, inn, []) is None


def test_expired_or_cancelled_invoices_are_not_given_again(engine: Engine) -> None:
    inn = new_inn()
    old = datetime.now(UTC) - timedelta(days=40)
    _invoice(engine, inn, [("eds-head", 1)], now=old)
    cancelled = _invoice(engine, inn, [("eds-head", 1)])
    with engine.begin() as conn:
        invoices.cancel(conn, cancelled)
        assert invoices.open_invoice_for(conn, inn, [("eds-head", 1)]) is None


def test_every_bad_field_is_named() -> None:
    found = customers.application_errors(
        inn="123",
        name="",
        legal_form="?",
        email="",
        phone="12",
        office="Москва",
        offices=OFFICES,
    )
    assert [field for field, _ in found] == [
        "inn",
        "name",
        "legal_form",
        "email",
        "phone",
        "office",
    ]
    assert (
        customers.application_errors(
            inn=new_inn(),
            name="ОсОО «А»",
            legal_form="ОсОО",
            email="a@example.kg",
            phone="0555123456",
            office="Ош",
            offices=OFFICES,
        )
        == []
    )
