"""The core's refusals (billing, agents, users, webhooks, API keys) are worded by catalogue
keys: `str()` stays the Russian text the API, the CLI and the logs show, and each refusal
can be said in Kyrgyz and English."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tolom import apikeys
from tolom.agents.service import AgentError, parse_networks
from tolom.backoffice import users
from tolom.billing import customers, invoices, orders
from tolom.events import endpoints, targets
from tolom.texts import Refusal, texts


def test_a_customer_refusal_reads_russian_and_is_said_in_every_language() -> None:
    with pytest.raises(customers.CustomerError) as refused:
        customers.validate("123", "ОсОО Ромашка", "ОсОО")
    error = refused.value
    assert isinstance(error, Refusal) and error.code == "inn"
    assert str(error) == "inn: ИНН должен состоять ровно из 14 цифр, получено '123'"
    assert error.said("ru") == str(error)
    assert error.said("en") == "inn: an INN is exactly 14 digits, got '123'"
    assert error.said("ky").startswith("inn: ИНН так 14 цифрадан")


def test_contacts_are_refused_all_at_once_in_every_language() -> None:
    with pytest.raises(customers.ContactsError) as refused:
        customers.normalise_contacts(email="x", language="")
    error = refused.value
    assert [field for field, _ in error.errors] == ["email", "language"]
    assert error.errors[1][1].startswith("неизвестный язык уведомлений (пусто)")
    assert str(error) == "; ".join(f"{field}: {text}" for field, text in error.errors)
    english = error.said("en")
    assert english.startswith("email: invalid e-mail address 'x'")
    assert "; language: no language of notifications given" in english


def test_an_import_problem_keeps_its_refusal(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("inn\n01904202310427\n", encoding="utf-8")
    rows, problems = customers.read_import_file(path)
    assert rows == [] and [p.line for p in problems] == [1]
    assert problems[0].message == "в заголовке нет столбцов: name"
    assert problems[0].said("en") == "the header lacks the columns: name"


def test_every_order_refusal_has_its_text() -> None:
    for key in [*orders._REFUSALS.values(), *orders._REFUND_CHANGED.values()]:
        for language in ("ru", "ky", "en"):
            assert texts(language).has(key), (language, key)
    refusal = orders.OrderStateError(orders._REFUSALS["cancel", "issued"], order=7)
    assert str(refusal) == "Заказ №7 уже выдан: отменить нельзя"
    assert refusal.said("en") == "Order No. 7 is already issued: it cannot be cancelled"


def test_invoice_agent_user_and_key_refusals_keep_their_codes() -> None:
    with pytest.raises(invoices.InvoiceError) as invoice:
        invoices.parse_item("eds-head:0")
    assert str(invoice.value) == "item: количество в 'eds-head:0' должно быть целым от 1 до 1000"
    with pytest.raises(AgentError) as agent:
        parse_networks([])
    assert agent.value.code == "networks.empty" and agent.value.key == "agent.error.networks_empty"
    with pytest.raises(users.UserError) as user:
        users.check_password("short")
    assert user.value.code == "password.short" and str(user.value).startswith("password: ")
    assert "shorter than" in user.value.said("en")
    with pytest.raises(apikeys.ApiKeyError) as key:
        apikeys.parse_scopes(["nope"])
    assert str(key.value).startswith("scope: допустимы ")


def test_a_refused_webhook_target_is_said_by_the_endpoint_refusal() -> None:
    with pytest.raises(targets.TargetRefused) as target:
        targets.check_address(ipaddress.ip_address("127.0.0.1"), ())
    assert str(target.value).startswith(targets.REFUSED)
    with pytest.raises(endpoints.EndpointError) as endpoint:
        endpoints.parse_event_types("nope")
    assert endpoint.value.code == "events"
    assert endpoint.value.said("en").startswith("unknown event types: nope; allowed: ")
