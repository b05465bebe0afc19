"""The back office's forms are pydantic models (`web.forms.PageForm`) declared with the
operator API's field types (`tolom.fields`): tampering is a 400, a typed mistake is said next
to its field with what was typed kept, and the two adapters refuse the same amounts and INNs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from tests.adapters.api.test_operator_api import Api, cash
from tests.adapters.api.test_operator_api import api as api
from tests.adapters.web.test_web import Web, csrf_in, page_of
from tests.adapters.web.test_web import web as web
from tests.adapters.web.test_web_cash import Desk
from tests.factories import add_customer
from tolom.web.cash import CashForm
from tolom.web.forms import BadFilter
from tolom.web.payments import ListForm

REFERENCE = "web-0123456789abcdef0123"


def test_the_base_tells_tampering_from_a_typed_mistake() -> None:
    with pytest.raises(BadFilter):
        CashForm.read({"reference": REFERENCE, "channel": "terminal"})
    with pytest.raises(BadFilter):
        CashForm.read({"reference": "PKO-1"})
    with pytest.raises(BadFilter):
        ListForm.read({"from": "2026-02-30"})
    form = CashForm.read({"reference": REFERENCE, "amount": " 12,345 ", "csrf": "x"})
    assert form.errors == {"amount": "cash.error.amount_format"}
    assert form.amount == "12,345"  # shown again as typed
    form = CashForm.read({"reference": REFERENCE, "amount": "1 510,50", "payer": "П" * 301})
    assert form.errors == {"payer": "cash.error.too_long"}
    assert form.amount == "1 510,50" and len(form.payer) == 301


def test_pages_answer_tampering_400_and_mistakes_next_to_the_field(web: Web) -> None:
    inn = add_customer(web.engine)
    browser = web.signed_in()
    assert browser.get("/payments?service=gas").status_code == 400
    assert browser.get("/audit?from=2026-13-01").status_code == 400
    desk = Desk(browser)
    answer = desk.send(account=inn, amount="12.345")
    assert answer.status_code == 422 and page_of(answer) == "cash"
    assert 'value="12.345"' in answer.text and 'aria-invalid="true"' in answer.text
    answer = desk.send(account=inn, amount="10", channel="terminal")
    assert answer.status_code == 400 and page_of(answer) == "bad-request"


AMOUNTS = ["-5", "1e3", "12.345", "٣٠٠", "abc", "+5", "5 0"]
INNS = ["123", "0190420231042", "019042023104271", "0190420231042a", "٠١٩٠٤٢٠٢٣١٠٤٢٧"]


def _field_errors(response: Any) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def test_web_and_api_refuse_the_same_amounts(web: Web, api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    desk = Desk(web.signed_in())
    for typed in AMOUNTS:
        page = desk.send(account=inn, amount=typed)
        assert page.status_code == 422, typed
        assert f'value="{typed}"' in page.text, typed
        answer = api.post("/api/v1/manual-payments", cash(inn, typed))
        assert answer.status_code == 422 and "amount" in _field_errors(answer), typed
    # and both take an amount as programs write it
    assert desk.send(account=inn, amount="10.50").status_code == 303
    assert api.post("/api/v1/manual-payments", cash(inn, "10.50")).is_success


def test_web_and_api_refuse_the_same_inns(web: Web, api: Api) -> None:
    browser = web.signed_in()
    csrf = csrf_in(browser.get("/customers/new").text)
    for typed in INNS:
        fields = {"csrf": csrf, "inn": typed, "name": "ОсОО «Тест»", "legal_form": "ОсОО"}
        page = browser.post("/customers/new", data=fields | {"language": "ru"})
        assert page.status_code == 422 and page_of(page) == "customers-new", typed
        assert f'value="{typed}"' in page.text, typed
        answer = api.post("/api/v1/customers", {"inn": typed, "name": "ОсОО «Тест»"})
        assert answer.status_code == 422 and "inn" in _field_errors(answer), typed


def test_the_other_pages_forms_read_the_same_way() -> None:
    from tolom.web import agents, events, invoices, reconciliation, users

    # A text longer than the input takes is tampering even where a mistake may be typed.
    with pytest.raises(BadFilter):
        invoices.ListForm.read({"q": "1" * 65})
    found = invoices.ListForm.read({"q": "4000 0000 0000 0002", "inn": "12"})
    assert found.q == "4000000000000002" and found.errors == {"inn": "invoices.bad_inn"}
    # Choices the core lists at run time: not offered is tampering, or the field's mistake.
    with pytest.raises(BadFilter):
        events.ListForm.read({"status": "lost"})
    with pytest.raises(BadFilter):
        users.ChangeForm.read({"role": "root", "language": "ru"})
    endpoint = events.EndpointForm.read({"name": "crm", "events": ("payment.lost",)})
    assert endpoint.errors == {"events": "webhooks.error.events"}
    assert endpoint.events == ("payment.lost",)  # shown again as ticked
    # A password keeps its spaces; other texts are stripped.
    user = users.NewForm.read({"username": " bob ", "role": "admin", "password": " pw "})
    assert (user.username, user.password) == ("bob", " pw ")
    # Limits are read only when the service is allowed.
    assert agents.LimitsForm.read({"min": "abc"}).errors == {}
    assert agents.LimitsForm.read({"allowed": "1", "min": "abc"}).errors == {
        "min": "agents.error.min.malformed"
    }
    # The reconciliation reason is the API's rule (`fields.ReconciliationReason`).
    assert reconciliation.ReasonForm.read({"reason": "   "}).errors == {
        "reason": "recon.reason_required"
    }
    assert reconciliation.ReasonForm.read({"reason": "я" * 501}).errors == {
        "reason": "recon.reason_too_long"
    }
    with pytest.raises(BadFilter):
        reconciliation.CalendarForm.read({"month": "1999-12"})
