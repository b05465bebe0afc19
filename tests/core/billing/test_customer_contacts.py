"""Customer contacts (e-mail, phone, language of notifications): the core's rules, the
operator API (create, GET, PATCH, import), the CLI, and the deliveries the outbox makes
from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.adapters.cli.test_cli import ok, refused
from tests.factories import add_customer, new_inn
from tolom import apikeys, audit
from tolom.billing import customers
from tolom.db.schema import audit_log, deliveries
from tolom.db.schema import customers as customers_table
from tolom.events import outbox
from tolom.events.outbox import EventType

PEER = "203.0.113.9"

# --- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("+996555123456", "+996555123456"),
        ("+996 555 123456", "+996555123456"),
        ("+996 555 123 456", "+996555123456"),
        ("996555123456", "+996555123456"),
        ("0555 123 456", "+996555123456"),
        ("0555123456", "+996555123456"),
        ("0 (555) 12-34-56", "+996555123456"),
        ("+996 (700) 12.34.56", "+996700123456"),
        ("  0772 000 111  ", "+996772000111"),
        ("0312\u00a0900\u00a0100", "+996312900100"),  # no-break spaces, as copied from a page
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_phones_are_normalised_to_e164(written: str | None, stored: str | None) -> None:
    assert customers.normalise_phone(written) == stored


@pytest.mark.parametrize(
    "written",
    [
        "555 123 456",  # no country or trunk prefix: refused rather than guessed
        "+996 555 12345",  # eight digits
        "+996 555 1234567",  # ten digits
        "996 0555 123 456",  # a trunk zero after the country code
        "+7 701 123 45 67",  # Kazakhstan
        "+9965551234ab",
        "05551234567",
        "0055 5123 456",
        "+996 ٥٥٥ 123 456",  # Arabic-Indic digits
        "00996555123456",
        "+996+555123456",
        "телефон",
        "9" * 200,
    ],
)
def test_other_phones_are_refused_in_russian(written: str) -> None:
    with pytest.raises(customers.CustomerError) as refused:
        customers.normalise_phone(written)
    message = str(refused.value)
    assert message.startswith("phone: неверный номер телефона")
    assert len(message) < 200
    assert "+996 555 123 456" in message and "0555 123 456" in message


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("buh@romashka.kg", "buh@romashka.kg"),
        ("  Buh.Main+tolom@Romashka.KG ", "Buh.Main+tolom@romashka.kg"),
        ("a@b-c.example.com", "a@b-c.example.com"),
        ("info@xn--80aswg.xn--p1ai", "info@xn--80aswg.xn--p1ai"),  # a punycode domain
        ("", None),
        (None, None),
    ],
)
def test_emails_are_normalised(written: str | None, stored: str | None) -> None:
    assert customers.normalise_email(written) == stored


@pytest.mark.parametrize(
    "written",
    [
        "buh",
        "buh@",
        "@romashka.kg",
        "buh@romashka",
        "buh@@romashka.kg",
        "buh romashka@mail.kg",
        "бух@ромашка.кг",
        "buh@romashka.kg\nBcc: all@example.com",
        ".buh@romashka.kg",
        "buh..main@romashka.kg",
        "buh@-romashka.kg",
        "buh@romashka.k",
        "a" * 65 + "@romashka.kg",
        "a@" + "b" * 250 + ".kg",
    ],
)
def test_other_emails_are_refused_in_russian(written: str) -> None:
    with pytest.raises(customers.CustomerError) as refused:
        customers.normalise_email(written)
    assert str(refused.value).startswith("email: ")
    assert "адрес" in str(refused.value)


def test_languages() -> None:
    assert customers.normalise_language("ru") == "ru"
    assert customers.normalise_language(" KY ") == "ky"
    for bad in ("en", "kg", "", None, "русский"):
        with pytest.raises(customers.CustomerError, match=r"^language: неизвестный язык"):
            customers.normalise_language(bad)


def test_every_bad_contact_is_named_at_once() -> None:
    with pytest.raises(customers.ContactsError) as refused:
        customers.normalise_contacts(email="x", phone="1", language="en")
    assert [field for field, _ in refused.value.errors] == ["email", "phone", "language"]
    assert customers.normalise_contacts(phone="0555 123 456") == {"phone": "+996555123456"}
    assert customers.normalise_contacts() == {}


# --- the core use case --------------------------------------------------------------------


def test_add_with_contacts_and_set_contacts(engine: Engine) -> None:
    inn = new_inn()
    with engine.begin() as conn:
        added = customers.add(
            conn,
            inn=inn,
            name="ОсОО «Ромашка»",
            legal_form="ОсОО",
            email="Buh@Romashka.KG",
            phone="0555 123 456",
            language="ky",
        )
    assert (added.email, added.phone, added.language) == (
        "Buh@romashka.kg",
        "+996555123456",
        "ky",
    )
    with engine.begin() as conn:
        stored = customers.get(conn, inn)
        assert stored == added
        # Only what is given changes; None clears.
        before, after = customers.set_contacts(conn, inn, phone=None)
        assert before == added
        assert (after.email, after.phone, after.language) == ("Buh@romashka.kg", None, "ky")
        before, after = customers.set_contacts(conn, inn, email=None, language="ru")
        assert after.contacts() == {"email": None, "phone": None, "language": "ru"}
        assert customers.get(conn, inn) == after
        # Nothing to change: the same customer twice.
        before, after = customers.set_contacts(conn, inn, language="ru")
        assert before == after
        assert customers.search(conn, inn)[0].contacts() == after.contacts()


def test_set_contacts_refusals_change_nothing(engine: Engine) -> None:
    inn = add_customer(engine, email="a@b.kg")
    with engine.begin() as conn:
        with pytest.raises(customers.CustomerError, match=r"^inn: клиент с ИНН"):
            customers.set_contacts(conn, new_inn(), email="x@y.kg")
        with pytest.raises(customers.ContactsError):
            customers.set_contacts(conn, inn, email="new@b.kg", phone="12345")
        with pytest.raises(customers.ContactsError, match="language"):
            customers.set_contacts(conn, inn, language=None)
        customer = customers.get(conn, inn)
    assert customer is not None and customer.email == "a@b.kg"


def test_add_refuses_bad_contacts_and_creates_nothing(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(customers.ContactsError, match="phone"):
        customers.add(conn, inn=new_inn(), name="А", legal_form="ОсОО", phone="123")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(customers_table)).scalar_one() == 0


# --- the outbox makes deliveries from the contacts -----------------------------------------


def _deliveries(engine: Engine, event_id: int) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.destination, deliveries.c.recipient, deliveries.c.language)
            .where(deliveries.c.event_id == event_id)
            .order_by(deliveries.c.destination)
        )
        return [(r.destination, r.recipient, r.language) for r in rows]


def _customer_id(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
    assert customer is not None
    return customer.id


def test_emit_of_a_notified_event_creates_email_and_sms_deliveries(engine: Engine) -> None:
    inn = add_customer(engine, email="buh@romashka.kg", phone="0555 123 456", language="ky")
    customer_id = _customer_id(engine, inn)
    with engine.begin() as conn:
        event_id = outbox.emit(
            conn,
            EventType.PAYMENT_ACCEPTED,
            ordering_key=outbox.customer_key(customer_id),
            payload={"amount": 50000, "inn": inn, "balance": 50000},
            customer_id=customer_id,
        )
    assert _deliveries(engine, event_id) == [
        ("email", "buh@romashka.kg", "ky"),
        ("sms", "+996555123456", "ky"),
    ]


def test_only_the_contacts_a_customer_has_get_deliveries(engine: Engine) -> None:
    bare = _customer_id(engine, add_customer(engine))
    mail_only = _customer_id(engine, add_customer(engine, email="only@mail.kg"))
    with engine.begin() as conn:
        none = outbox.emit(
            conn,
            EventType.INVOICE_PAID,
            ordering_key=outbox.customer_key(bare),
            payload={"invoice_number": "1"},
            customer_id=bare,
        )
        mail = outbox.emit(
            conn,
            EventType.CHARGE_SETTLED,
            ordering_key=outbox.customer_key(mail_only),
            payload={"amount": 1},
            customer_id=mail_only,
        )
        # Not a type customers are told about: no e-mail even with an address.
        quiet = outbox.emit(
            conn,
            EventType.CHARGE_AWAITING,
            ordering_key=outbox.customer_key(mail_only),
            payload={"amount": 1},
            customer_id=mail_only,
        )
    assert _deliveries(engine, none) == []
    assert _deliveries(engine, mail) == [("email", "only@mail.kg", "ru")]
    assert _deliveries(engine, quiet) == []


def test_cleared_contacts_get_no_more_deliveries(engine: Engine) -> None:
    inn = add_customer(engine, email="buh@romashka.kg", phone="0555123456")
    customer_id = _customer_id(engine, inn)
    with engine.begin() as conn:
        customers.set_contacts(conn, inn, phone=None)
        event_id = outbox.emit(
            conn,
            EventType.SIGNATURE_EXPIRING,
            ordering_key=outbox.inn_key(inn, "4000000000000017"),
            payload={"valid_until": "2027-01-01"},
            customer_id=customer_id,
        )
    assert _deliveries(engine, event_id) == [("email", "buh@romashka.kg", "ru")]


# --- the operator API ---------------------------------------------------------------------


class Api:
    def __init__(self, app: Any, engine: Engine) -> None:
        self.client = TestClient(app, client=(PEER, 50000))
        with engine.begin() as conn:
            self.tokens = {
                "read": apikeys.create(conn, name="reader", scopes=["read"]),
                "write": apikeys.create(conn, name="writer", scopes=["write"]),
            }

    def request(self, method: str, path: str, body: Any = None, key: str = "write") -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[key]}"}
        if body is None:
            return self.client.request(method, path, headers=headers)
        return self.client.request(method, path, json=body, headers=headers)


@pytest.fixture
def api(app: Any, engine: Engine) -> Api:
    return Api(app, engine)


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def field_errors(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body.get("errors") or []}


def trail(engine: Engine, inn: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(reversed(audit.entries(conn, "customer", inn)))


def audit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def test_api_create_with_contacts_and_get_them(api: Api, engine: Engine) -> None:
    inn = new_inn()
    response = api.request(
        "POST",
        "/api/v1/customers",
        {"inn": inn, "name": "ИП Асанов", "email": "asanov@mail.kg", "phone": "0700 12 34 56"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["email"], created["phone"], created["language"]) == (
        "asanov@mail.kg",
        "+996700123456",
        "ru",
    )
    shown = api.request("GET", f"/api/v1/customers/{inn}", key="read").json()
    assert shown == created
    [line] = trail(engine, inn)
    assert line["after"]["phone"] == "+996700123456" and line["after"]["language"] == "ru"


def test_api_create_names_every_bad_contact(api: Api, engine: Engine) -> None:
    body = problem(
        api.request(
            "POST",
            "/api/v1/customers",
            {"inn": new_inn(), "name": "А", "email": "нет", "phone": "12", "language": "en"},
        ),
        422,
        "invalid_request",
    )
    assert set(field_errors(body)) == {"email", "phone", "language"}
    assert audit_count(engine) == 0


def test_api_patch_contacts(api: Api, engine: Engine) -> None:
    inn = add_customer(engine, email="old@romashka.kg")
    response = api.request(
        "PATCH",
        f"/api/v1/customers/{inn}",
        {"email": "Buh@Romashka.kg", "phone": "+996 555 123456", "language": "ky"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inn"] == inn and body["balance"] == "0.00"
    assert (body["email"], body["phone"], body["language"]) == (
        "Buh@romashka.kg",
        "+996555123456",
        "ky",
    )
    # Only what is sent changes; null clears.
    response = api.request("PATCH", f"/api/v1/customers/{inn}", {"phone": None})
    assert response.status_code == 200, response.text
    assert response.json()["phone"] is None
    assert response.json()["email"] == "Buh@romashka.kg"
    # Nothing changes: answered, not audited.
    response = api.request("PATCH", f"/api/v1/customers/{inn}", {"language": "ky"})
    assert response.status_code == 200
    assert api.request("PATCH", f"/api/v1/customers/{inn}", {}).json()["language"] == "ky"
    lines = trail(engine, inn)
    assert [(t["action"], t["actor"], t["address"]) for t in lines] == [
        ("customer.contacts", "apikey:writer", PEER),
        ("customer.contacts", "apikey:writer", PEER),
    ]
    assert (lines[0]["before"], lines[0]["after"]) == (
        {"email": "old@romashka.kg", "phone": None, "language": "ru"},
        {"email": "Buh@romashka.kg", "phone": "+996555123456", "language": "ky"},
    )
    assert (lines[1]["before"], lines[1]["after"]) == (
        {"phone": "+996555123456"},
        {"phone": None},
    )
    with engine.connect() as conn:
        stored = customers.get(conn, inn)
    assert stored is not None and stored.contacts() == {
        "email": "Buh@romashka.kg",
        "phone": None,
        "language": "ky",
    }


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "buh@"}, {"email"}),
        ({"phone": "555 123 456"}, {"phone"}),
        ({"language": "en"}, {"language"}),
        ({"language": None}, {"language"}),
        ({"email": "x", "phone": "1", "language": "kg"}, {"email", "phone", "language"}),
        ({"name": "Другое"}, {"name"}),  # only contacts change here
        ({"phone": 555123456}, {"phone"}),
        ({"email": "a" * 321}, {"email"}),
    ],
)
def test_api_patch_bad_contacts_is_422_naming_the_field(
    api: Api, engine: Engine, body: dict[str, Any], fields: set[str]
) -> None:
    inn = add_customer(engine, phone="0555123456")
    found = problem(api.request("PATCH", f"/api/v1/customers/{inn}", body), 422, "invalid_request")
    assert set(field_errors(found)) == fields
    assert all(message for message in field_errors(found).values())
    assert audit_count(engine) == 0
    with engine.connect() as conn:
        stored = customers.get(conn, inn)
    assert stored is not None and stored.phone == "+996555123456"


def test_api_patch_messages_are_russian(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    found = problem(
        api.request("PATCH", f"/api/v1/customers/{inn}", {"phone": "+7 701 1234567"}),
        422,
        "invalid_request",
    )
    assert "неверный номер телефона" in field_errors(found)["phone"]
    assert "+996 555 123 456" in found["detail"]


def test_api_patch_unknown_or_malformed_inn_and_scope(api: Api, engine: Engine) -> None:
    problem(
        api.request("PATCH", f"/api/v1/customers/{new_inn()}", {"language": "ky"}),
        404,
        "customer_not_found",
    )
    found = problem(
        api.request("PATCH", "/api/v1/customers/123", {"language": "ky"}), 422, "invalid_request"
    )
    assert set(field_errors(found)) == {"inn"}
    inn = add_customer(engine)
    problem(
        api.request("PATCH", f"/api/v1/customers/{inn}", {"language": "ky"}, key="read"),
        403,
        "insufficient_scope",
    )
    response = api.client.patch(f"/api/v1/customers/{inn}", json={"language": "ky"})
    problem(response, 401, "unauthenticated")
    assert audit_count(engine) == 0


def test_api_patch_is_documented(app: Any) -> None:
    operation = app.openapi()["paths"]["/api/v1/customers/{inn}"]["patch"]
    assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert examples["set"]["value"]["language"] == "ky"
    schemas = app.openapi()["components"]["schemas"]
    assert set(schemas["ContactsIn"]["properties"]) == {"email", "phone", "language"}
    assert {"email", "phone", "language"} <= set(schemas["Customer"]["properties"])


def test_api_import_takes_contacts(api: Api, engine: Engine) -> None:
    good, bad = new_inn(), new_inn()
    body = problem(
        api.request(
            "POST",
            "/api/v1/customers/import",
            [
                {"inn": good, "name": "Один", "phone": "0555123456", "language": "ky"},
                {"inn": bad, "name": "Два", "phone": "12", "email": "no"},
            ],
        ),
        422,
        "invalid_request",
    )
    assert set(field_errors(body)) == {"1.phone", "1.email"}
    response = api.request(
        "POST",
        "/api/v1/customers/import",
        [{"inn": good, "name": "Один", "phone": "0555123456", "language": "ky"}],
    )
    assert response.status_code == 201, response.text
    with engine.connect() as conn:
        stored = customers.get(conn, good)
    assert stored is not None and stored.contacts() == {
        "email": None,
        "phone": "+996555123456",
        "language": "ky",
    }
    [line] = trail(engine, good)
    assert line["after"]["phone"] == "+996555123456"


# --- the CLI ------------------------------------------------------------------------------


def test_cli_contacts(cli: Any, engine: Engine) -> None:
    inn = add_customer(engine)
    shown = ok(cli("customer", "contacts", inn))
    assert "E-mail: нет" in shown and "Телефон для SMS: нет" in shown
    changed = ok(
        cli(
            "customer",
            "contacts",
            inn,
            "--email",
            "buh@romashka.kg",
            "--phone",
            "0555 123 456",
            "--language",
            "ky",
        )
    )
    assert "изменены" in changed
    assert "+996555123456" in changed and "кыргызский" in changed
    data = json.loads(ok(cli("customer", "contacts", inn, "--clear-phone", "--json")))
    assert data == {
        "inn": inn,
        "email": "buh@romashka.kg",
        "phone": None,
        "language": "ky",
        "changed": ["phone"],
    }
    assert "не изменились" in ok(cli("customer", "contacts", inn, "--language", "ky"))
    human = ok(cli("customer", "show", inn))
    assert "E-mail: buh@romashka.kg" in human
    assert "Язык уведомлений: ky (кыргызский)" in human
    shown_json = json.loads(ok(cli("customer", "show", inn, "--json")))
    assert (shown_json["email"], shown_json["phone"], shown_json["language"]) == (
        "buh@romashka.kg",
        None,
        "ky",
    )
    lines = trail(engine, inn)
    assert [(t["action"], t["before"], t["after"]) for t in lines] == [
        (
            "customer.contacts",
            {"email": None, "phone": None, "language": "ru"},
            {"email": "buh@romashka.kg", "phone": "+996555123456", "language": "ky"},
        ),
        ("customer.contacts", {"phone": "+996555123456"}, {"phone": None}),
    ]
    assert all(t["actor"].startswith("cli:") for t in lines)


def test_cli_and_api_write_the_same_contacts_line(cli: Any, api: Api, engine: Engine) -> None:
    """One use case behind both: the same change, the same `customer.contacts` line; only
    who and from where differ."""
    inn = add_customer(engine)
    ok(cli("customer", "contacts", inn, "--email", "buh@romashka.kg", "--phone", "0555123456"))
    ok(cli("customer", "contacts", inn, "--clear-email", "--clear-phone"))
    body = {"email": "buh@romashka.kg", "phone": "0555123456"}
    assert api.request("PATCH", f"/api/v1/customers/{inn}", body).status_code == 200
    by_cli, _cleared, by_api = trail(engine, inn)
    fields = ("action", "object_type", "object_id", "before", "after")
    assert {k: by_cli[k] for k in fields} == {k: by_api[k] for k in fields}
    assert by_cli["after"] == {"email": "buh@romashka.kg", "phone": "+996555123456"}
    assert (by_cli["actor"].partition(":")[0], by_cli["address"]) == ("cli", None)
    assert (by_api["actor"], by_api["address"]) == ("apikey:writer", PEER)


def test_cli_contacts_refusals(cli: Any, engine: Engine) -> None:
    inn = add_customer(engine, email="a@b.kg")
    refused(cli("customer", "contacts", inn, "--phone", "555"), "Ошибка:", "phone:")
    refused(cli("customer", "contacts", inn, "--language", "en"), "language:")
    refused(cli("customer", "contacts", new_inn(), "--language", "ky"), "не найден")
    refused(cli("customer", "contacts", inn, "--email", "x@y.kg", "--clear-email"), "вместе")
    result = cli("customer", "contacts", inn, "--email", "bad", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"].startswith("email:")
    with engine.connect() as conn:
        stored = customers.get(conn, inn)
    assert stored is not None and stored.email == "a@b.kg"
    assert audit_count(engine) == 0


def test_cli_add_with_contacts(cli: Any, engine: Engine) -> None:
    inn = new_inn()
    data = json.loads(
        ok(
            cli(
                "customer",
                "add",
                inn,
                "ИП Асанов",
                "--legal-form",
                "ИП",
                "--phone",
                "996 700 123 456",
                "--language",
                "ky",
                "--json",
            )
        )
    )
    assert (data["email"], data["phone"], data["language"]) == (None, "+996700123456", "ky")
    refused(cli("customer", "add", new_inn(), "А", "--email", "no"), "email:")


def test_cli_import_with_contact_columns(cli: Any, engine: Engine, tmp_path: Path) -> None:
    first, second, third = new_inn(), new_inn(), new_inn()
    path = tmp_path / "customers.csv"
    path.write_text(
        "inn,name,legal_form,email,phone,language\n"
        f"{first},ОсОО «Один»,ОсОО,buh@one.kg,0555 123 456,ky\n"
        f"{second},ИП Два,ИП,,,\n"
        f"{third},ИП Три,ИП,,12345,ru\n",
        encoding="utf-8",
    )
    refused(cli("customer", "import", str(path)), "строка 4", "phone:")
    ok(cli("customer", "import", str(path), "--skip-bad"))
    with engine.connect() as conn:
        one, two = customers.get(conn, first), customers.get(conn, second)
        assert customers.get(conn, third) is None
    assert one is not None and one.contacts() == {
        "email": "buh@one.kg",
        "phone": "+996555123456",
        "language": "ky",
    }
    assert two is not None and two.contacts() == {"email": None, "phone": None, "language": "ru"}
