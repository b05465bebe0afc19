"""The core of online applications: which open invoice a repeated application gets
(`invoices.open_invoice_for`), every bad field named at once (`application_errors`), the
back office's decisions (verify, reject with a reason: audited, told, the unpaid invoice
cancelled), the queue's reads, and the gate that keeps an unverified applicant's paid
orders out of production."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tests.core.billing.test_orders import Api, invoice_for, orders_of, pay, problem
from tests.core.billing.test_orders import api as api
from tests.factories import Gateway, new_inn
from tolom import audit
from tolom.billing import applications, invoices, orders
from tolom.db.schema import deliveries, events

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
    found = applications.application_errors(
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
        applications.application_errors(
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


# --- the back office's decisions ------------------------------------------------------------

ACTOR = "user:aida"
EMAIL = "applicant@example.kg"
PHONE = "+996555123456"


def _apply(
    engine: Engine,
    inn: str | None = None,
    *,
    office: str = "Бишкек",
    items: list[tuple[str, int]] | None = None,
) -> tuple[int, invoices.Invoice]:
    """An online application as `/apply` makes it: its id and its invoice."""
    with engine.begin() as conn:
        made = applications.apply_audited(
            conn,
            inn=inn or new_inn(),
            name="ОсОО «Заявитель»",
            legal_form="ОсОО",
            email=EMAIL,
            phone="0555 123 456",
            language="ru",
            office=office,
            offices=OFFICES,
            items=items or [("eds-head", 1)],
            validity_days=30,
            per_hour=1000,
            actor="site:apply",
            address=None,
        )
        found = applications.of_invoice(conn, made.invoice.number)
    assert found is not None and found[1] == "new"
    return found[0], made.invoice


def _application(engine: Engine, application_id: int) -> applications.ApplicationRecord:
    with engine.connect() as conn:
        found = applications.get(conn, application_id)
    assert found is not None
    return found


def _audit(engine: Engine, action: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [e for e in audit.entries(conn, limit=1000) if e["action"] == action]


def _told(engine: Engine, type_: str) -> list[tuple[dict[str, Any], set[tuple[str, str]]]]:
    """Each event of this type: its payload and its (destination, recipient) deliveries."""
    with engine.connect() as conn:
        found = []
        for event in conn.execute(select(events).where(events.c.type == type_)):
            sent = {
                (d.destination, d.recipient)
                for d in conn.execute(select(deliveries).where(deliveries.c.event_id == event.id))
            }
            found.append((json.loads(event.payload), sent))
    return found


def _verify(engine: Engine, application_id: int) -> applications.Decision:
    with engine.begin() as conn:
        return applications.verify_audited(conn, application_id, actor=ACTOR, address="10.0.0.1")


def _reject(engine: Engine, application_id: int, reason: str) -> applications.Decision:
    with engine.begin() as conn:
        return applications.reject_audited(
            conn, application_id, reason=reason, actor=ACTOR, address="10.0.0.1"
        )


def test_verifying_is_audited_told_and_repeats_as_a_no_op(engine: Engine) -> None:
    application_id, invoice = _apply(engine)
    moment = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        done = applications.verify_audited(
            conn, application_id, actor=ACTOR, address="10.0.0.1", now=moment
        )
    assert done.changed and not done.invoice_cancelled
    verified = done.application
    assert (verified.status, verified.decided_by, verified.decided_at) == (
        "verified",
        ACTOR,
        moment,
    )
    assert verified.reason is None and verified == _application(engine, application_id)
    [line] = _audit(engine, "application.verify")
    assert (line["actor"], line["address"], line["object_id"]) == (
        ACTOR,
        "10.0.0.1",
        str(application_id),
    )
    assert line["before"] == {"status": "new"}
    assert line["after"] == {"status": "verified", "invoice_number": invoice.number}
    [(payload, sent)] = _told(engine, "application.verified")
    assert payload["application_id"] == application_id and payload["inn"] == invoice.inn
    assert payload["invoice_number"] == invoice.number and payload["invoice_paid"] is False
    assert sent == {("email", EMAIL), ("sms", PHONE)}

    again = _verify(engine, application_id)
    assert not again.changed and again.application == verified
    assert len(_audit(engine, "application.verify")) == 1
    assert len(_told(engine, "application.verified")) == 1

    with pytest.raises(applications.AlreadyDecided) as refused:
        _reject(engine, application_id, "Паспорт не совпадает")
    assert str(application_id) in str(refused.value) and refused.value.code == "decided"
    assert _application(engine, application_id).status == "verified"
    assert _audit(engine, "application.reject") == []
    with engine.connect() as conn:
        still = invoices.get(conn, invoice.number)
    assert still is not None and still.status == "open"


def test_rejecting_cancels_the_unpaid_invoice_and_tells_the_reason(engine: Engine) -> None:
    application_id, invoice = _apply(engine)
    done = _reject(engine, application_id, "  Паспорт не совпадает с данными заявки  ")
    assert done.changed and done.invoice_cancelled
    rejected = done.application
    assert (rejected.status, rejected.reason) == (
        "rejected",
        "Паспорт не совпадает с данными заявки",
    )
    assert rejected.decided_by == ACTOR and rejected.decided_at is not None
    assert rejected.invoice_status == "cancelled" and not rejected.paid
    with engine.connect() as conn:
        cancelled = invoices.get(conn, invoice.number)
    assert cancelled is not None and cancelled.status == "cancelled"
    [invoice_line] = _audit(engine, "invoice.cancel")
    assert invoice_line["actor"] == ACTOR and invoice_line["object_id"] == invoice.number
    assert invoice_line["after"] == {
        "status": "cancelled",
        "reason": "Паспорт не совпадает с данными заявки",
    }
    [line] = _audit(engine, "application.reject")
    assert line["before"] == {"status": "new"}
    assert line["after"] == {
        "status": "rejected",
        "reason": "Паспорт не совпадает с данными заявки",
        "invoice_number": invoice.number,
        "invoice_status": "cancelled",
    }
    [(payload, sent)] = _told(engine, "application.rejected")
    assert payload["reason"] == "Паспорт не совпадает с данными заявки"
    assert payload["invoice_cancelled"] is True and payload["invoice_paid"] is False
    assert sent == {("email", EMAIL), ("sms", PHONE)}

    again = _reject(engine, application_id, "Другая причина")
    assert not again.changed and again.application.reason == rejected.reason
    assert len(_audit(engine, "application.reject")) == 1
    with pytest.raises(applications.AlreadyDecided):
        _verify(engine, application_id)
    assert _application(engine, application_id).status == "rejected"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "a\x00b"])
def test_a_rejection_needs_a_reason_and_a_bad_one_changes_nothing(
    engine: Engine, reason: str
) -> None:
    application_id, _invoice = _apply(engine)
    with pytest.raises(applications.ApplicationError) as refused:
        _reject(engine, application_id, reason)
    assert refused.value.code == "reason" and "500" in str(refused.value)
    found = _application(engine, application_id)
    assert (found.status, found.invoice_status, found.decided_at) == ("new", "open", None)
    assert _audit(engine, "application.reject") == [] and _audit(engine, "invoice.cancel") == []
    assert _told(engine, "application.rejected") == []
    longest = _reject(engine, application_id, "я" * 500)
    assert longest.changed and longest.application.reason == "я" * 500


def test_unknown_applications_are_refused(engine: Engine) -> None:
    with pytest.raises(applications.ApplicationNotFound):
        _verify(engine, 999_999)
    with pytest.raises(applications.ApplicationNotFound):
        _reject(engine, 999_999, "нет")
    with engine.connect() as conn:
        assert applications.get(conn, 999_999) is None
        assert applications.of_invoice(conn, "0000000000000000") is None


def test_the_paid_orders_of_an_unverified_application_wait_for_verification(
    engine: Engine, gateway: Gateway
) -> None:
    application_id, invoice = _apply(engine, items=[("eds-head", 2)])
    pay(gateway, invoice)
    first, _second = orders_of(engine, invoice)
    with engine.begin() as conn, pytest.raises(orders.IdentityNotVerified) as refused:
        orders.start(conn, first.id)
    error = refused.value
    assert isinstance(error, orders.OrderStateError)
    assert (error.application, error.status) == (application_id, "new")
    assert f"№{application_id}" in str(error) and "не подтверждена" in str(error)
    assert "awaits verification" in error.said("en")
    assert [o.status for o in orders_of(engine, invoice)] == ["paid", "paid"]

    done = _verify(engine, application_id)
    assert done.application.paid
    [(payload, _sent)] = _told(engine, "application.verified")
    assert payload["invoice_paid"] is True
    with engine.begin() as conn:
        started = orders.start(conn, first.id)
    assert started.changed and started.order.status == "in_production"


def test_rejecting_a_paid_application_keeps_the_invoice_paid_and_production_stopped(
    engine: Engine, gateway: Gateway
) -> None:
    application_id, invoice = _apply(engine)
    pay(gateway, invoice)
    done = _reject(engine, application_id, "Документы не представлены")
    assert done.changed and not done.invoice_cancelled and done.application.paid
    assert _audit(engine, "invoice.cancel") == []
    [(payload, _sent)] = _told(engine, "application.rejected")
    assert payload["invoice_cancelled"] is False and payload["invoice_paid"] is True
    [order] = orders_of(engine, invoice)
    with engine.begin() as conn, pytest.raises(orders.IdentityNotVerified) as refused:
        orders.start(conn, order.id)
    assert refused.value.status == "rejected" and "отклонена" in str(refused.value)
    # The money goes back through the order's cancel, which the gate does not hold.
    with engine.begin() as conn:
        cancelled = orders.cancel(
            conn, order.id, "Заявка отклонена", refund_percent_in_production=50
        )
    assert cancelled.order.status == "cancelled" and cancelled.order.refund_amount == order.price


def test_orders_of_invoices_an_operator_issued_are_not_held(
    engine: Engine, gateway: Gateway
) -> None:
    invoice = invoice_for(engine, new_inn())
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    with engine.begin() as conn:
        assert orders.identity_hold(conn, order) is None
        assert orders.start(conn, order.id).changed


def test_the_api_answers_an_unverified_start_409(
    engine: Engine, gateway: Gateway, api: Api
) -> None:
    application_id, invoice = _apply(engine)
    pay(gateway, invoice)
    [order] = orders_of(engine, invoice)
    body = problem(api.post(f"/api/v1/orders/{order.id}/start"), 409, "order_state_conflict")
    assert f"№{application_id}" in body["detail"]
    _verify(engine, application_id)
    started = api.post(f"/api/v1/orders/{order.id}/start")
    assert started.status_code == 200 and started.json()["status"] == "in_production"


def test_the_queue_reads_filters_pages_and_counts(engine: Engine, gateway: Gateway) -> None:
    inn = new_inn()
    first, _ = _apply(engine, inn, office="Ош")
    second, paid = _apply(engine, office="Бишкек")
    third, _ = _apply(engine, inn, office="Бишкек", items=[("eds-rutoken", 1)])
    pay(gateway, paid)
    _verify(engine, second)
    with engine.connect() as conn:
        counts = applications.counts(conn)
        assert counts["new"] >= 2 and counts["verified"] >= 1
        assert set(counts) == set(applications.APPLICATION_STATUSES)
        assert applications.count_new(conn) == counts["new"]

        def ids(**filters: Any) -> list[int]:
            return [a.id for a in applications.search(conn, **filters)]

        assert ids(inn=inn) == [third, first]  # newest first
        assert ids(inn=inn, office="Ош") == [first]
        assert ids(inn=inn, status="verified") == []
        assert second in ids(status="verified") and second not in ids(status="new")
        assert ids(inn=inn, limit=1) == [third]
        assert ids(inn=inn, cursor=third) == [first]
        record = applications.search(conn, inn=paid.inn)[0]
    assert record.id == second and record.paid and record.payer_name == "ОсОО «Заявитель»"
    assert record.total == paid.total and record.invoice_state(datetime.now(UTC)) == "paid"
    later = datetime.now(UTC) + timedelta(days=31)
    assert _application(engine, first).invoice_state(later) == "expired"
