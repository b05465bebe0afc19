"""The operator and service API (/api/v1/...) end to end over HTTP: every endpoint, every
scope, every problem it answers, and what each leaves in the database."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer, add_invoice, new_inn, new_txn_id
from tolom import apikeys, audit
from tolom.agents import service as agents
from tolom.backoffice import exports
from tolom.billing import customers, invoices
from tolom.db.schema import (
    account_balances,
    accounts,
    audit_log,
    gateway_requests,
    manual_payments,
    payment_reversals,
    payments,
)
from tolom.db.schema import customers as customers_table
from tolom.db.schema import invoices as invoices_table
from tolom.ledger.accounts import LedgerAccount, account_balance, system_account
from tolom.ledger.posting import Transfer, post_entry
from tolom.payments import records
from tolom.payments import service as payment_service

BISHKEK = ZoneInfo("Asia/Bishkek")
PEER = "203.0.113.7"


@dataclass
class Api:
    """An operator's view of /api/v1 with three keys: reader, writer and admin."""

    client: TestClient
    engine: Engine
    tokens: dict[str, str]

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def get(self, path: str, key: str = "read", **params: Any) -> Any:
        return self.client.get(path, params=params or None, headers=self.auth(key))

    def post(self, path: str, body: Any = None, key: str = "write") -> Any:
        if body is None:
            return self.client.post(path, headers=self.auth(key))
        return self.client.post(path, json=body, headers=self.auth(key))


@pytest.fixture
def api(app, engine: Engine) -> Api:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        tokens = {
            "read": apikeys.create(conn, name="reader", scopes=["read"]),
            "write": apikeys.create(conn, name="writer", scopes=["write"]),
            "admin": apikeys.create(conn, name="boss", scopes=["admin"]),
        }
    return Api(TestClient(app, client=(PEER, 50000)), engine, tokens)


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the problem `code` with `status`, in RFC 9457 form."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == f"urn:tolom:problem:{code}"
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors") or []}


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(table)
        if where:
            query = query.where(*where)
        return int(conn.execute(query).scalar_one())


def balance(engine: Engine, inn: str) -> int:
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        return customers.balance(conn, customer)


def ledger_balance(engine: Engine, code: str) -> int:
    with engine.connect() as conn:
        account_id = conn.execute(select(accounts.c.id).where(accounts.c.code == code)).scalar_one()
        return account_balance(conn, account_id)


def audit_trail(engine: Engine, object_type: str, object_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(reversed(audit.entries(conn, object_type, object_id)))


def spend(engine: Engine, inn: str, amount: int) -> None:
    """Take money off a customer's balance, as a report charge would (issue 4)."""
    with engine.begin() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        post_entry(
            conn,
            kind="charge",
            description="test charge",
            transfers=[
                Transfer(
                    debit=LedgerAccount(customer.account_id),
                    credit=system_account(conn, "revenue:eds"),
                    amount=amount,
                )
            ],
        )


def cash(inn: str, amount: str = "500.00", reference: str | None = None, **extra: Any) -> dict:
    return {
        "channel": "cash_desk",
        "reference": reference or f"PKO-{new_txn_id()}",
        "service": "sochi",
        "account": inn,
        "amount": amount,
        **extra,
    }


def bank(account: str, amount: str, service: str = "sochi", **extra: Any) -> dict:
    return {
        "channel": "bank",
        "reference": f"PP/{new_txn_id()}",
        "service": service,
        "account": account,
        "amount": amount,
        "payment_code": "42151410",
        "bank_reference": "000123",
        **extra,
    }


# --- authentication and scopes ---------------------------------------------------------

INN_EXAMPLE = "01904202310427"
NUMBER_EXAMPLE = "4000000000000002"

READ_ROUTES = [
    ("GET", "/api/v1/customers"),
    ("GET", f"/api/v1/customers/{INN_EXAMPLE}"),
    ("GET", f"/api/v1/customers/{INN_EXAMPLE}/statement"),
    ("GET", "/api/v1/invoices"),
    ("GET", f"/api/v1/invoices/{NUMBER_EXAMPLE}"),
    ("GET", "/api/v1/payments"),
    ("GET", "/api/v1/payments/1"),
    ("GET", "/api/v1/accounts"),
    ("GET", "/api/v1/accounts/cash_desk"),
]
WRITE_ROUTES = [
    ("POST", "/api/v1/customers", {"inn": "01904202310427", "name": "ОсОО «А»"}),
    ("POST", f"/api/v1/customers/{INN_EXAMPLE}/block", None),
    ("POST", f"/api/v1/customers/{INN_EXAMPLE}/unblock", None),
    ("POST", "/api/v1/customers/import", [{"inn": "01904202310427", "name": "ОсОО «А»"}]),
    ("POST", "/api/v1/invoices", {"payer_name": "А", "items": [{"product": "eds-head"}]}),
    ("POST", f"/api/v1/invoices/{NUMBER_EXAMPLE}/cancel", None),
    ("POST", "/api/v1/payments/1/reverse", {"reason": "ошибка"}),
    ("POST", "/api/v1/manual-payments", cash(INN_EXAMPLE)),
]
ALL_ROUTES = [(m, p, None) for m, p in READ_ROUTES] + [
    *WRITE_ROUTES,
    ("GET", "/api/v1/ledger/verify", None),
]


def _send(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    if method == "GET":
        return api.client.get(path, headers=headers)
    return api.client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=lambda x: str(x)[:40])
def test_every_route_needs_a_key(api: Api, method: str, path: str, body: Any) -> None:
    body_ = problem(_send(api, method, path, body, {}), 401, "unauthenticated")
    assert "Bearer" in body_["detail"]
    basic = {"Authorization": "Basic b3B0aW1hOnNlY3JldA=="}
    problem(_send(api, method, path, body, basic), 401, "unauthenticated")
    for token in ("nonsense", "tolom_" + "0" * 12 + "_" + "A" * 43, api.tokens["admin"] + "x"):
        bearer = {"Authorization": f"Bearer {token}"}
        problem(_send(api, method, path, body, bearer), 401, "invalid_api_key")


def test_a_right_prefix_with_a_wrong_secret_is_refused(api: Api) -> None:
    token = api.tokens["admin"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = api.client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {forged}"})
    problem(response, 401, "invalid_api_key")


@pytest.mark.parametrize(("method", "path", "body"), WRITE_ROUTES, ids=lambda x: str(x)[:40])
def test_a_read_key_cannot_write(
    api: Api, engine: Engine, method: str, path: str, body: Any
) -> None:
    inn = add_customer(engine)
    before = (count(engine, customers_table), count(engine, payments), count(engine, audit_log))
    body_ = problem(
        _send(api, method, path.replace(INN_EXAMPLE, inn), body, api.auth("read")),
        403,
        "insufficient_scope",
    )
    assert "write" in body_["detail"]
    assert (count(engine, customers_table), count(engine, payments), count(engine, audit_log)) == (
        before
    )
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
    assert customer is not None and customer.status == "active"


@pytest.mark.parametrize(("method", "path"), READ_ROUTES, ids=lambda x: str(x)[:40])
def test_every_scope_can_read(api: Api, method: str, path: str) -> None:
    for key in ("read", "write", "admin"):
        response = api.client.get(path, headers=api.auth(key))
        assert response.status_code in (200, 404), response.text


def test_ledger_verify_needs_admin(api: Api) -> None:
    for key in ("read", "write"):
        problem(api.get("/api/v1/ledger/verify", key=key), 403, "insufficient_scope")
    response = api.get("/api/v1/ledger/verify", key="admin")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "discrepancies": []}


def test_a_revoked_key_is_refused(api: Api, engine: Engine) -> None:
    assert api.get("/api/v1/accounts", key="write").status_code == 200
    with engine.begin() as conn:
        apikeys.revoke(conn, "writer")
    problem(api.get("/api/v1/accounts", key="write"), 401, "invalid_api_key")
    problem(api.post("/api/v1/manual-payments", cash(add_customer(engine))), 401, "invalid_api_key")
    assert count(engine, payments) == 0


def test_an_unknown_api_path_is_a_problem(api: Api) -> None:
    problem(api.get("/api/v1/nothing-here"), 404, "not_found")


def test_the_openapi_document_describes_every_operation(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    operations = [
        (path, method, op)
        for path, methods in document["paths"].items()
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/agent/")
        for method, op in methods.items()
    ]
    assert len(operations) >= 18  # every one is checked below
    for path, method, op in operations:
        where = f"{method} {path}"
        assert op.get("summary") and op.get("tags"), where
        assert op.get("security") == [{"ApiKey": []}], where
        responses = op["responses"]
        success = next(s for s in ("200", "201") if s in responses)
        answers = set(responses[success]["content"])
        # JSON, or a file to download (an export, a PDF, a registry) described as such
        downloads = {"text/csv", "text/plain", "application/pdf", exports.XLSX_MEDIA_TYPE}
        assert "application/json" in answers or answers <= downloads, where
        for status in ("401", "403", "503"):
            content = responses[status]["content"]["application/problem+json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, where
        if op.get("parameters") or op.get("requestBody"):
            assert "application/problem+json" in responses["422"]["content"], where
    schemas = document["components"]["schemas"]
    assert schemas["ManualPaymentIn"]["examples"]
    assert schemas["Payment"]["properties"]["amount"]["examples"] == ["500.00"]
    assert schemas["ManualPaymentIn"]["additionalProperties"] is False


# --- customers -------------------------------------------------------------------------


def test_create_a_customer(api: Api, engine: Engine) -> None:
    inn = new_inn()
    response = api.post(
        "/api/v1/customers", {"inn": inn, "name": "  ОсОО «Ромашка» ", "legal_form": "ОсОО"}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {
        "inn": inn,
        "name": "ОсОО «Ромашка»",
        "legal_form": "ОсОО",
        "status": "active",
        "account": f"customer:{inn}",
        "balance": "0.00",
        "email": None,
        "phone": None,
        "language": "ru",
    }
    assert balance(engine, inn) == 0
    [line] = audit_trail(engine, "customer", inn)
    assert line["actor"] == "apikey:writer"
    assert line["address"] == PEER
    assert line["action"] == "customer.create"
    assert line["after"] == {
        "inn": inn,
        "name": "ОсОО «Ромашка»",
        "legal_form": "ОсОО",
        "status": "active",
        "email": None,
        "phone": None,
        "language": "ru",
    }


def test_create_a_customer_defaults_the_legal_form(api: Api) -> None:
    response = api.post("/api/v1/customers", {"inn": new_inn(), "name": "Асанов А."})
    assert response.status_code == 201
    assert response.json()["legal_form"] == "ОсОО"


def test_create_a_customer_twice_is_409(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    body = problem(
        api.post("/api/v1/customers", {"inn": inn, "name": "Другое"}), 409, "customer_exists"
    )
    assert inn in body["detail"]
    assert count(engine, customers_table) == 1
    assert count(engine, audit_log) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inn": "123", "name": "А"}, "inn"),
        ({"inn": "0190420231042a", "name": "А"}, "inn"),
        ({"inn": "01904202310427", "name": "   "}, "name"),
        ({"inn": "01904202310427", "name": "А", "legal_form": "LLC"}, "legal_form"),
        ({"inn": "01904202310427"}, "name"),
        ({"inn": "01904202310427", "name": "А", "balance": "100"}, "balance"),
        ({"inn": 1904202310427, "name": "А"}, "inn"),
        ({"inn": "01904202310427", "name": "А" * 301}, "name"),
    ],
)
def test_create_a_customer_bad_input_is_422(
    api: Api, engine: Engine, body: dict[str, Any], field: str
) -> None:
    found = problem(api.post("/api/v1/customers", body), 422, "invalid_request")
    assert field in fields(found)
    assert count(engine, customers_table) == 0
    assert count(engine, accounts, accounts.c.kind == "customer") == 0


def test_a_body_that_is_not_json_is_422(api: Api, engine: Engine) -> None:
    response = api.client.post(
        "/api/v1/customers",
        content=b"{not json",
        headers={**api.auth("write"), "Content-Type": "application/json"},
    )
    problem(response, 422, "invalid_request")
    assert count(engine, customers_table) == 0


def test_get_a_customer_with_the_balance(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine, name="ОсОО «Ромашка»")
    assert gateway.pay("sochi", inn, "1234.56")["result"] == 0
    response = api.get(f"/api/v1/customers/{inn}")
    assert response.status_code == 200
    assert response.json() == {
        "inn": inn,
        "name": "ОсОО «Ромашка»",
        "legal_form": "ОсОО",
        "status": "active",
        "account": f"customer:{inn}",
        "balance": "1234.56",
        "email": None,
        "phone": None,
        "language": "ru",
    }


def test_get_an_unknown_or_malformed_customer(api: Api) -> None:
    problem(api.get(f"/api/v1/customers/{new_inn()}"), 404, "customer_not_found")
    assert fields(problem(api.get("/api/v1/customers/12345"), 422, "invalid_request")) == {"inn"}


def test_search_customers(api: Api, engine: Engine, gateway: Gateway) -> None:
    romashka = add_customer(engine, name="ОсОО «Ромашка»")
    add_customer(engine, name="ОсОО «Василёк»")
    add_customer(engine, name="ИП Ромашкин")
    gateway.pay("sochi", romashka, "10.00")
    found = api.get("/api/v1/customers", q="Ромаш").json()["items"]
    assert [c["name"] for c in found] == ["ИП Ромашкин", "ОсОО «Ромашка»"]
    assert found[1]["balance"] == "10.00" and found[0]["balance"] == "0.00"
    by_inn = api.get("/api/v1/customers", q=romashka[:13]).json()["items"]
    assert romashka in [c["inn"] for c in by_inn]
    assert len(api.get("/api/v1/customers", limit=2).json()["items"]) == 2
    assert api.get("/api/v1/customers", q="Нет такого").json() == {"items": []}
    problem(api.get("/api/v1/customers", limit=0), 422, "invalid_request")
    assert fields(problem(api.get("/api/v1/customers", limit=501), 422, "invalid_request")) == {
        "limit"
    }


def test_block_and_unblock_a_customer(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    response = api.post(f"/api/v1/customers/{inn}/block")
    assert response.status_code == 200 and response.json()["status"] == "blocked"
    assert gateway.check("sochi", inn)["result"] == 79
    assert api.post(f"/api/v1/customers/{inn}/block").json()["status"] == "blocked"  # no change
    assert api.post(f"/api/v1/customers/{inn}/unblock").json()["status"] == "active"
    assert gateway.check("sochi", inn)["result"] == 0
    trail = audit_trail(engine, "customer", inn)
    assert [(t["action"], t["before"], t["after"]) for t in trail] == [
        ("customer.block", {"status": "active"}, {"status": "blocked"}),
        ("customer.unblock", {"status": "blocked"}, {"status": "active"}),
    ]
    problem(api.post(f"/api/v1/customers/{new_inn()}/block"), 404, "customer_not_found")
    problem(api.post("/api/v1/customers/x/unblock"), 422, "invalid_request")


def test_import_customers(api: Api, engine: Engine) -> None:
    rows = [
        {"inn": new_inn(), "name": "ОсОО «Один»"},
        {"inn": new_inn(), "name": "ИП Два", "legal_form": "ИП"},
        {"inn": new_inn(), "name": "ОАО «Три»", "legal_form": "ОАО"},
    ]
    response = api.post("/api/v1/customers/import", rows)
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 3}
    with engine.connect() as conn:
        stored = {c.inn: (c.name, c.legal_form) for c in customers.search(conn, "", 10)}
    assert stored == {
        rows[0]["inn"]: ("ОсОО «Один»", "ОсОО"),
        rows[1]["inn"]: ("ИП Два", "ИП"),
        rows[2]["inn"]: ("ОАО «Три»", "ОАО"),
    }
    assert [t["action"] for t in audit_trail(engine, "customer", rows[1]["inn"])] == [
        "customer.import"
    ]
    assert count(engine, audit_log) == 3


def test_import_is_all_or_nothing_with_every_bad_row_named(api: Api, engine: Engine) -> None:
    known = add_customer(engine)
    fresh = new_inn()
    rows = [
        {"inn": new_inn(), "name": "ОсОО «Хороший»"},
        {"inn": "123", "name": "ОсОО «Плохой ИНН»"},
        {"inn": new_inn(), "name": "ОсОО «Плохая форма»", "legal_form": "LLC"},
        {"inn": fresh, "name": "Первый"},
        {"inn": fresh, "name": "Повтор в списке"},
        {"inn": known, "name": "Уже есть"},
    ]
    body = problem(api.post("/api/v1/customers/import", rows), 422, "invalid_request")
    errors = {e["field"]: e["message"] for e in body["errors"]}
    assert set(errors) == {"1.inn", "2.legal_form", "4.inn", "5.inn"}
    assert "строке 3" in errors["4.inn"]
    assert "уже есть" in errors["5.inn"]
    assert "4" in body["detail"]
    assert count(engine, customers_table) == 1
    assert count(engine, audit_log) == 0


def test_import_limits(api: Api, engine: Engine) -> None:
    problem(api.post("/api/v1/customers/import", []), 422, "invalid_request")
    too_many = [{"inn": f"{i:014d}", "name": "А"} for i in range(10_001)]
    problem(api.post("/api/v1/customers/import", too_many), 422, "invalid_request")
    body = problem(
        api.post("/api/v1/customers/import", [{"inn": new_inn(), "name": "А", "x": 1}]),
        422,
        "invalid_request",
    )
    assert fields(body) == {"0.x"}
    problem(api.post("/api/v1/customers/import", {"inn": new_inn()}), 422, "invalid_request")
    assert count(engine, customers_table) == 0


# --- invoices --------------------------------------------------------------------------


def test_create_an_invoice(api: Api, engine: Engine) -> None:
    inn = new_inn()
    response = api.post(
        "/api/v1/invoices",
        {
            "inn": inn,
            "payer_name": "ОсОО «Новый клиент»",
            "items": [{"product": "eds-head"}, {"product": "eds-accountant", "quantity": 2}],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["total"] == "4350.00"
    assert body["status"] == "open" and body["inn"] == inn and body["payment_id"] is None
    assert [(x["product"], x["quantity"], x["unit_price"], x["amount"]) for x in body["lines"]] == [
        ("eds-head", 1, "1510.00", "1510.00"),
        ("eds-accountant", 2, "1420.00", "2840.00"),
    ]
    expires = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["created_at"]
    )
    assert expires == timedelta(days=30)
    with engine.connect() as conn:
        stored = invoices.get(conn, body["number"])
    assert stored is not None and stored.total == 435000 and len(stored.lines) == 2
    [line] = audit_trail(engine, "invoice", body["number"])
    assert line["action"] == "invoice.create" and line["after"]["total"] == "4350.00"


def test_an_invoice_for_a_registered_inn_needs_no_payer_name(api: Api, engine: Engine) -> None:
    inn = add_customer(engine, name="ОсОО «Ромашка»")
    response = api.post("/api/v1/invoices", {"inn": inn, "items": [{"product": "eds-head"}]})
    assert response.status_code == 201, response.text
    assert response.json()["payer_name"] == "ОсОО «Ромашка»"
    # a payer name given wins over the customer's
    named = api.post(
        "/api/v1/invoices",
        {"inn": inn, "payer_name": "ИП Ромашкин", "items": [{"product": "eds-head"}]},
    )
    assert named.json()["payer_name"] == "ИП Ромашкин"
    # an INN nobody registered does not name the payer
    unknown = api.post("/api/v1/invoices", {"inn": new_inn(), "items": [{"product": "eds-head"}]})
    assert "payer_name" in fields(problem(unknown, 422, "invalid_request"))
    assert count(engine, invoices_table) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payer_name": "А", "items": []}, "items"),
        ({"payer_name": "А", "items": [{"product": "nope"}]}, "items"),
        ({"payer_name": "А", "items": [{"product": "rutoken-device"}]}, "items"),
        (
            {"payer_name": "А", "items": [{"product": "eds-head", "quantity": 0}]},
            "items.0.quantity",
        ),
        (
            {"payer_name": "А", "items": [{"product": "eds-head", "quantity": 1001}]},
            "items.0.quantity",
        ),
        ({"payer_name": "  ", "items": [{"product": "eds-head"}]}, "payer_name"),
        ({"inn": "12", "payer_name": "А", "items": [{"product": "eds-head"}]}, "inn"),
        ({"items": [{"product": "eds-head"}]}, "payer_name"),
        ({"payer_name": "А", "items": [{"product": "eds-head", "price": "1"}]}, "items.0.price"),
    ],
)
def test_create_an_invoice_bad_input_is_422(
    api: Api, engine: Engine, body: dict[str, Any], field: str
) -> None:
    found = problem(api.post("/api/v1/invoices", body), 422, "invalid_request")
    assert field in fields(found)
    assert count(engine, invoices_table) == 0
    assert count(engine, audit_log) == 0


def test_get_an_invoice(api: Api, engine: Engine) -> None:
    invoice = add_invoice(engine, [("eds-rutoken", 1)])
    body = api.get(f"/api/v1/invoices/{invoice.number}").json()
    assert body["number"] == invoice.number
    assert body["total"] == "1200.00"
    assert body["lines"][0]["name"].startswith("Электронная подпись на носителе")
    problem(api.get("/api/v1/invoices/4000000000000002"), 404, "invoice_not_found")
    problem(api.get("/api/v1/invoices/4000000000000003"), 422, "invalid_request")  # Luhn


def test_list_invoices_with_filters_and_pages(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = new_inn()
    with engine.begin() as conn:
        mine = [
            invoices.create(
                conn, items=[("eds-head", 1)], payer_name="Я", inn=inn, validity_days=30
            )
            for _ in range(3)
        ]
    paid = add_invoice(engine)
    gateway.pay("eds", paid.number, "1510.00")
    cancelled = add_invoice(engine)
    api.post(f"/api/v1/invoices/{cancelled.number}/cancel")
    expired = add_invoice(engine, validity_days=1, now=datetime.now(UTC) - timedelta(days=2))

    def numbers(**params: Any) -> list[str]:
        response = api.get("/api/v1/invoices", **params)
        assert response.status_code == 200, response.text
        return [i["number"] for i in response.json()["items"]]

    assert numbers(inn=inn) == [i.number for i in reversed(mine)]
    assert numbers(status="paid") == [paid.number]
    assert numbers(status="cancelled") == [cancelled.number]
    assert numbers(status="expired") == [expired.number]
    assert set(numbers(status="open")) == {i.number for i in mine}
    listed = api.get("/api/v1/invoices", status="expired").json()["items"][0]
    assert listed["status"] == "expired" and "lines" not in listed

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/invoices", **params).json()
        seen += [i["number"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 6
    problem(api.get("/api/v1/invoices", status="lost"), 422, "invalid_request")
    problem(api.get("/api/v1/invoices", cursor="abc"), 422, "invalid_request")


def test_cancel_an_invoice(api: Api, engine: Engine, gateway: Gateway) -> None:
    invoice = add_invoice(engine)
    response = api.post(f"/api/v1/invoices/{invoice.number}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/invoices/{invoice.number}/cancel").json()["status"] == "cancelled"
    assert gateway.check("eds", invoice.number)["result"] == 79
    trail = audit_trail(engine, "invoice", invoice.number)
    assert [(t["action"], t["before"], t["after"]) for t in trail] == [
        ("invoice.cancel", {"status": "open"}, {"status": "cancelled"})
    ]


def test_a_paid_invoice_cannot_be_cancelled(api: Api, engine: Engine, gateway: Gateway) -> None:
    invoice = add_invoice(engine)
    assert gateway.pay("eds", invoice.number, "1510.00")["result"] == 0
    body = problem(
        api.post(f"/api/v1/invoices/{invoice.number}/cancel"), 409, "invoice_not_cancellable"
    )
    assert "оплачен" in body["detail"]
    with engine.connect() as conn:
        stored = invoices.get(conn, invoice.number)
    assert stored is not None and stored.status == "paid"
    problem(api.post("/api/v1/invoices/4000000000000002/cancel"), 404, "invoice_not_found")


# --- payments: list and detail ---------------------------------------------------------


def test_list_payments_pages_through_everything_once(
    api: Api, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    for i in range(7):
        assert gateway.pay("sochi", inn, f"{i + 1}.00")["result"] == 0
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/payments", **params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)  # newest first
    first = api.get("/api/v1/payments", limit=3).json()
    assert len(first["items"]) == 3 and first["next_cursor"] == str(first["items"][-1]["id"])
    exact = api.get("/api/v1/payments", limit=7).json()
    assert len(exact["items"]) == 7 and exact["next_cursor"] is None


def test_list_payments_filters(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn, other = add_customer(engine), add_customer(engine)
    invoice = add_invoice(engine)
    gateway.pay("sochi", inn, "100.00", txn_id="11", txn_date="20261120120000")
    gateway.pay("sochi", other, "250.50", txn_id="12", txn_date="20261121120000")
    gateway.pay("eds", invoice.number, "1510.00", txn_id="13", txn_date="20261122120000")
    assert api.post("/api/v1/manual-payments", cash(inn, "40.00", reference="PKO-1")).is_success
    with engine.connect() as conn:
        first = records.by_txn(conn, _agent_id(engine, "optima"), "11")
    assert first is not None
    api.post(f"/api/v1/payments/{first.id}/reverse", {"reason": "ошибка"})

    def txn_ids(**params: Any) -> list[str]:
        response = api.get("/api/v1/payments", **params)
        assert response.status_code == 200, response.text
        return [p["txn_id"] for p in response.json()["items"]]

    assert txn_ids(agent="optima") == ["13", "12", "11"]
    assert txn_ids(agent="cash_desk") == ["PKO-1"]
    assert txn_ids(service="eds") == ["13"]
    assert txn_ids(status="reversed") == ["11"]
    assert txn_ids(account=inn) == ["PKO-1", "11"]
    assert txn_ids(date_from="2026-11-21", date_to="2026-11-22") == ["13", "12"]
    assert txn_ids(date_to="2026-11-20") == ["11"]
    assert txn_ids(amount_min="100", amount_max="250.50") == ["12", "11"]
    assert txn_ids(amount_min="250.51") == ["13"]
    assert txn_ids(txn_id="12") == ["12"]
    assert txn_ids(agent="optima", service="sochi", status="accepted") == ["12"]
    assert txn_ids(agent="nobody") == []


def _agent_id(engine: Engine, code: str) -> int:
    with engine.connect() as conn:
        agent = agents.load(conn, code)
    assert agent is not None
    return agent.id


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"amount_min": "1,00"}, "amount_min"),
        ({"amount_max": "-5"}, "amount_max"),
        ({"amount_min": "10", "amount_max": "5"}, "amount_min"),
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"date_from": "2026-02-30"}, "date_from"),
        ({"date_to": "0"}, "date_to"),
        ({"date_to": "2026-11-21T00:00:00"}, "date_to"),
        ({"date_from": "2026-11-22", "date_to": "2026-11-21"}, "date_from"),
        ({"service": "gas"}, "service"),
        ({"status": "lost"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "9" * 19}, "cursor"),
    ],
)
def test_list_payments_bad_filters_are_422(api: Api, params: dict[str, str], field: str) -> None:
    body = problem(api.get("/api/v1/payments", **params), 422, "invalid_request")
    assert fields(body) == {field}


def test_get_a_payment_with_postings_and_logged_requests(
    api: Api, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    answer = gateway.pay("sochi", inn, "500.00", txn_id="0042", txn_date="20261121143005")
    gateway.pay("sochi", inn, "500.00", txn_id="42")  # a repeat, logged too
    payment_id = int(answer["prv_txn"])
    body = api.get(f"/api/v1/payments/{payment_id}").json()
    assert {k: body[k] for k in ("id", "agent", "agent_kind", "txn_id", "service", "account")} == {
        "id": payment_id,
        "agent": "optima",
        "agent_kind": "gateway",
        "txn_id": "42",
        "service": "sochi",
        "account": inn,
    }
    assert body["amount"] == "500.00" and body["status"] == "accepted"
    assert body["txn_date_raw"] == "20261121143005"
    assert body["business_date"] == "2026-11-21"
    assert datetime.fromisoformat(body["txn_date"]) == datetime(2026, 11, 21, 8, 30, 5, tzinfo=UTC)
    assert body["reversal"] is None and body["manual"] is None
    [posting] = body["postings"]
    assert posting["debit"] == "agent:optima:clearing"
    assert posting["credit"] == f"customer:{inn}"
    assert posting["amount"] == "500.00" and posting["entry_kind"] == "payment"
    assert [r["protocol"] for r in body["requests"]] == ["osmp", "osmp"]
    first = body["requests"][0]
    assert ["txn_id", "0042"] in first["params"]
    assert "<result>0</result>" in first["response"]
    assert first["http_status"] == 200 and first["command"] == "pay"


def test_get_an_unknown_or_malformed_payment(api: Api) -> None:
    problem(api.get("/api/v1/payments/999999"), 404, "payment_not_found")
    assert fields(problem(api.get("/api/v1/payments/abc"), 422, "invalid_request")) == {"id"}
    problem(api.get("/api/v1/payments/" + "9" * 19), 422, "invalid_request")


# --- payments: reversal ----------------------------------------------------------------


def test_reverse_a_payment_then_the_balance(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    payment_id = int(gateway.pay("sochi", inn, "500.00")["prv_txn"])
    assert balance(engine, inn) == 50000
    response = api.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "Ошибочный ИНН"})
    assert response.status_code == 200, response.text
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert body["status"] == "reversed"
    assert body["reversal"]["reason"] == "Ошибочный ИНН"
    assert body["reversal"]["requested_by"] == "apikey:writer"
    assert balance(engine, inn) == 0
    assert ledger_balance(engine, "agent:optima:clearing") == 0
    assert api.get(f"/api/v1/customers/{inn}").json()["balance"] == "0.00"

    again = api.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "ещё раз"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert count(engine, payment_reversals) == 1
    assert balance(engine, inn) == 0

    [line] = audit_trail(engine, "payment", str(payment_id))
    assert line["action"] == "payment.reverse" and line["actor"] == "apikey:writer"
    assert line["after"] == {"status": "reversed", "reason": "Ошибочный ИНН"}
    detail = api.get(f"/api/v1/payments/{payment_id}").json()
    assert [(p["entry_kind"], p["debit"], p["credit"]) for p in detail["postings"]] == [
        ("payment", "agent:optima:clearing", f"customer:{inn}"),
        ("reversal", f"customer:{inn}", "agent:optima:clearing"),
    ]


def test_reverse_an_invoice_payment_reopens_the_invoice(
    api: Api, engine: Engine, gateway: Gateway
) -> None:
    invoice = add_invoice(engine)
    payment_id = int(gateway.pay("eds", invoice.number, "1510.00")["prv_txn"])
    response = api.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "возврат"})
    assert response.status_code == 200
    assert response.json()["invoice_number"] == invoice.number
    assert api.get(f"/api/v1/invoices/{invoice.number}").json()["status"] == "open"
    assert ledger_balance(engine, "revenue:eds") == 0


def test_reverse_refused_when_the_balance_was_spent(
    api: Api, engine: Engine, gateway: Gateway
) -> None:
    inn = add_customer(engine)
    payment_id = int(gateway.pay("sochi", inn, "100.00")["prv_txn"])
    spend(engine, inn, 6000)
    body = problem(
        api.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "ошибка"}),
        409,
        "balance_spent",
    )
    assert "балансе" in body["detail"]
    assert balance(engine, inn) == 4000
    assert count(engine, payment_reversals) == 0
    assert count(engine, audit_log) == 0
    assert api.get(f"/api/v1/payments/{payment_id}").json()["status"] == "accepted"


def test_reverse_refused_when_already_served(api: Api, engine: Engine, gateway: Gateway) -> None:
    invoice = add_invoice(engine)
    payment_id = int(gateway.pay("eds", invoice.number, "1510.00")["prv_txn"])
    with engine.begin() as conn:  # the invoice is no longer tied to this payment
        conn.execute(
            update(invoices_table)
            .where(invoices_table.c.id == invoice.id)
            .values(status="cancelled", payment_id=None)
        )
    problem(
        api.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "ошибка"}),
        409,
        "already_served",
    )
    assert count(engine, payment_reversals) == 0
    assert ledger_balance(engine, "revenue:eds") == 151000


def test_reverse_bad_requests(api: Api, engine: Engine, gateway: Gateway) -> None:
    problem(api.post("/api/v1/payments/999999/reverse", {"reason": "x"}), 404, "payment_not_found")
    payment_id = int(gateway.pay("sochi", add_customer(engine), "1.00")["prv_txn"])
    path = f"/api/v1/payments/{payment_id}/reverse"
    assert fields(problem(api.post(path, {"reason": "   "}), 422, "invalid_request")) == {"reason"}
    assert fields(problem(api.post(path, {}), 422, "invalid_request")) == {"reason"}
    problem(api.post(path, {"reason": "x", "force": True}), 422, "invalid_request")
    problem(api.post("/api/v1/payments/x/reverse", {"reason": "x"}), 422, "invalid_request")
    assert count(engine, payment_reversals) == 0


# --- manual payments -------------------------------------------------------------------


def test_a_cash_payment_credits_the_customer_through_the_cash_desk(
    api: Api, engine: Engine
) -> None:
    inn = add_customer(engine)
    response = api.post(
        "/api/v1/manual-payments",
        cash(inn, "1500.00", reference="PKO-2026/001", payer="Асанов А.", note="  касса 1 "),
    )
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert {k: body[k] for k in ("agent", "agent_kind", "txn_id", "service", "account")} == {
        "agent": "cash_desk",
        "agent_kind": "cash_desk",
        "txn_id": "PKO-2026/001",
        "service": "sochi",
        "account": inn,
    }
    assert body["amount"] == "1500.00" and body["status"] == "accepted"
    assert body["manual"] == {
        "channel": "cash_desk",
        "recorded_by": "apikey:writer",
        "payment_code": None,
        "bank_reference": None,
        "payer": "Асанов А.",
        "note": "касса 1",
    }
    assert balance(engine, inn) == 150000
    assert ledger_balance(engine, "cash_desk") == -150000
    assert api.get("/api/v1/accounts/cash_desk").json()["balance"] == "-1500.00"
    assert api.get(f"/api/v1/customers/{inn}").json()["balance"] == "1500.00"
    today = datetime.now(BISHKEK).date()
    assert body["business_date"] == today.isoformat()

    [line] = audit_trail(engine, "payment", str(body["id"]))
    assert line["action"] == "payment.manual"
    assert line["actor"] == "apikey:writer" and line["address"] == PEER
    assert line["after"]["reference"] == "PKO-2026/001"
    assert line["after"]["amount"] == "1500.00"

    with engine.connect() as conn:
        [logged] = conn.execute(
            select(gateway_requests).where(gateway_requests.c.payment_id == body["id"])
        ).all()
    assert logged.protocol == "api" and logged.peer == PEER and logged.method == "POST"
    assert logged.agent_id == _agent_id(engine, "cash_desk")
    assert logged.txn_id == "PKO-2026/001" and logged.http_status == 201
    assert ["amount", "1500.00"] in json.loads(logged.params)
    assert json.loads(logged.response)["id"] == body["id"]
    detail = api.get(f"/api/v1/payments/{body['id']}").json()
    assert [r["protocol"] for r in detail["requests"]] == ["api"]
    assert [(p["debit"], p["credit"]) for p in detail["postings"]] == [
        ("cash_desk", f"customer:{inn}")
    ]


def test_a_repeated_manual_payment_is_the_same_payment(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    request = cash(inn, "500.00", reference="PKO-7", received_at="2026-11-21T09:00:00+06:00")
    first = api.post("/api/v1/manual-payments", request)
    assert first.status_code == 201
    for _ in range(2):
        again = api.post("/api/v1/manual-payments", {**request, "amount": "500"})
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
    assert count(engine, payments) == 1
    assert count(engine, manual_payments) == 1
    assert balance(engine, inn) == 50000
    assert len(audit_trail(engine, "payment", str(first.json()["id"]))) == 1
    assert count(engine, gateway_requests, gateway_requests.c.txn_id == "PKO-7") == 3
    assert first.json()["business_date"] == "2026-11-21"
    assert first.json()["txn_date_raw"] == "2026-11-21T09:00:00+06:00"
    # Without received_at, a repeat still finds the payment.
    request.pop("received_at")
    assert api.post("/api/v1/manual-payments", request).status_code == 200


def test_a_repeat_of_a_reversed_manual_payment_is_not_paid_again(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    request = cash(inn, "500.00", reference="PKO-9")
    first = api.post("/api/v1/manual-payments", request).json()
    api.post(f"/api/v1/payments/{first['id']}/reverse", {"reason": "касса ошиблась"})
    again = api.post("/api/v1/manual-payments", request)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"] and again.json()["status"] == "reversed"
    assert balance(engine, inn) == 0
    assert ledger_balance(engine, "cash_desk") == 0
    assert count(engine, payments) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "500.01"},
        {"account": "other"},
        {"service": "eds"},
        {"payer": "Кто-то другой"},
        {"note": "другое"},
    ],
)
def test_the_same_reference_with_other_data_is_409(
    api: Api, engine: Engine, change: dict[str, str]
) -> None:
    inn = add_customer(engine)
    request = cash(inn, "500.00", reference="PKO-8", received_at="2026-11-21T09:00:00+06:00")
    assert api.post("/api/v1/manual-payments", request).status_code == 201
    if change.get("account") == "other":
        change = {"account": add_customer(engine)}
    if change.get("service") == "eds":
        change = {"service": "eds", "account": add_invoice(engine).number, "amount": "1510.00"}
    body = problem(
        api.post("/api/v1/manual-payments", {**request, **change}), 409, "reference_conflict"
    )
    assert "PKO-8" in body["detail"] and fields(body) == {"reference"}
    assert count(engine, payments) == 1
    assert balance(engine, inn) == 50000
    with engine.connect() as conn:
        [refused] = conn.execute(
            select(gateway_requests).where(gateway_requests.c.http_status == 409)
        ).all()
    assert (
        refused.protocol == "api" and json.loads(refused.response)["code"] == "reference_conflict"
    )


def test_a_reference_is_unique_per_channel(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    at_desk = api.post("/api/v1/manual-payments", cash(inn, "10.00", reference="DOC-1")).json()
    by_bank = api.post("/api/v1/manual-payments", bank(inn, "10.00", reference="DOC-1")).json()
    assert at_desk["id"] != by_bank["id"]
    assert (at_desk["agent"], by_bank["agent"]) == ("cash_desk", "bank")
    assert balance(engine, inn) == 2000


def test_a_bank_transfer_pays_an_invoice(api: Api, engine: Engine) -> None:
    invoice = add_invoice(engine, [("eds-head", 2)])
    response = api.post(
        "/api/v1/manual-payments",
        bank(invoice.number, "3020.00", service="eds", payment_code="42122900", payer="ОсОО «Н»"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["invoice_number"] == invoice.number
    assert body["manual"]["payment_code"] == "42122900"
    assert body["manual"]["bank_reference"] == "000123"
    assert api.get(f"/api/v1/invoices/{invoice.number}").json()["payment_id"] == body["id"]
    assert ledger_balance(engine, "bank") == -302000
    assert ledger_balance(engine, "revenue:eds") == 302000


def test_a_bank_transfer_needs_its_payment_code_and_reference(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    request = bank(inn, "10.00")
    del request["payment_code"], request["bank_reference"]
    body = problem(api.post("/api/v1/manual-payments", request), 422, "invalid_request")
    assert fields(body) == {"payment_code", "bank_reference"}
    body = problem(
        api.post(
            "/api/v1/manual-payments",
            {**request, "payment_code": "42151410", "bank_reference": " "},
        ),
        422,
        "invalid_request",
    )
    assert fields(body) == {"bank_reference"}
    body = problem(
        api.post(
            "/api/v1/manual-payments",
            {**request, "payment_code": "12345678", "bank_reference": "1"},
        ),
        422,
        "invalid_request",
    )
    assert fields(body) == {"payment_code"}
    body = problem(
        api.post("/api/v1/manual-payments", cash(inn, payment_code="42151410", bank_reference="1")),
        422,
        "invalid_request",
    )
    assert fields(body) == {"payment_code", "bank_reference"}
    assert count(engine, payments) == 0
    assert count(engine, gateway_requests) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "5,00"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": 500}, "amount"),
        ({"reference": ""}, "reference"),
        ({"reference": "a b"}, "reference"),
        ({"reference": "Ы"}, "reference"),
        ({"reference": "x" * 65}, "reference"),
        ({"channel": "terminal"}, "channel"),
        ({"service": "gas"}, "service"),
        ({"received_at": "2026-11-21T09:00:00"}, "received_at"),
        ({"received_at": "вчера"}, "received_at"),
        ({"received_at": "1999-12-31T23:00:00+06:00"}, "received_at"),
        ({"received_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "received_at"),
        ({"extra": "x"}, "extra"),
    ],
)
def test_manual_payment_bad_input_is_422_and_changes_nothing(
    api: Api, engine: Engine, change: dict[str, Any], field: str
) -> None:
    inn = add_customer(engine)
    body = problem(
        api.post("/api/v1/manual-payments", {**cash(inn), **change}), 422, "invalid_request"
    )
    assert field in fields(body)
    assert count(engine, payments) == 0
    assert balance(engine, inn) == 0


def test_manual_payment_refusals_by_the_core(api: Api, engine: Engine, gateway: Gateway) -> None:
    blocked = add_customer(engine, status="blocked")
    inn = add_customer(engine)
    paid = add_invoice(engine)
    gateway.pay("eds", paid.number, "1510.00")
    cancelled = add_invoice(engine)
    with engine.begin() as conn:
        invoices.cancel(conn, cancelled.number)
    open_invoice = add_invoice(engine)
    cases = [
        (cash("12345"), 422, "invalid_account", "account"),
        (cash(new_inn()), 404, "account_not_found", "account"),
        (cash(blocked), 409, "account_inactive", "account"),
        (
            {**cash(paid.number, "1510.00"), "service": "eds"},
            409,
            "invoice_already_paid",
            "account",
        ),
        (
            {**cash(cancelled.number, "1510.00"), "service": "eds"},
            409,
            "account_inactive",
            "account",
        ),
        (
            {**cash(open_invoice.number, "1500.00"), "service": "eds"},
            422,
            "amount_too_small",
            "amount",
        ),
        (
            {**cash(open_invoice.number, "1510.01"), "service": "eds"},
            422,
            "amount_too_large",
            "amount",
        ),
        (cash(inn, "0.00"), 422, "amount_too_small", "amount"),
        (cash(inn, "500000.01"), 422, "amount_too_large", "amount"),
    ]
    before = count(engine, payments)
    for request, status, code, field in cases:
        body = problem(api.post("/api/v1/manual-payments", request), status, code)
        assert fields(body) == {field}, code
    assert count(engine, payments) == before
    assert balance(engine, inn) == 0
    refused = count(engine, gateway_requests, gateway_requests.c.protocol == "api")
    assert refused == len(cases)  # every refused request is logged


def test_manual_payment_service_not_allowed(api: Api, engine: Engine) -> None:
    with engine.begin() as conn:
        agents.set_service(conn, "cash_desk", "sochi", allowed=False)
    problem(
        api.post("/api/v1/manual-payments", cash(add_customer(engine))), 403, "service_not_allowed"
    )
    assert count(engine, payments) == 0


def test_manual_payment_temporary_failure_is_503_and_changes_nothing(
    api: Api, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(engine)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(payment_service, "post", broken)
    response = api.post("/api/v1/manual-payments", cash(inn, reference="PKO-503"))
    problem(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert count(engine, payments) == 0
    assert count(engine, audit_log) == 0
    monkeypatch.undo()
    assert api.post("/api/v1/manual-payments", cash(inn, reference="PKO-503")).status_code == 201


def test_the_audit_line_commits_with_the_manual_payment_or_not_at_all(
    api: Api, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    inn = add_customer(engine)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(audit, "record", broken)
    problem(api.post("/api/v1/manual-payments", cash(inn)), 503, "temporarily_unavailable")
    assert count(engine, payments) == 0
    assert balance(engine, inn) == 0


def test_a_read_failure_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(records, "search", broken)
    problem(api.get("/api/v1/payments"), 503, "temporarily_unavailable")


# --- statements and accounts -----------------------------------------------------------


def test_statement_running_balance(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine, name="ОсОО «Ромашка»")
    api.post("/api/v1/manual-payments", cash(inn, "500.00"))
    reversed_id = int(gateway.pay("sochi", inn, "300.00")["prv_txn"])
    assert gateway.pay("sochi", inn, "1.50")["result"] == 0
    api.post(f"/api/v1/payments/{reversed_id}/reverse", {"reason": "ошибка"})
    today = datetime.now(BISHKEK).date()

    body = api.get(f"/api/v1/customers/{inn}/statement", date_from=today, date_to=today).json()
    assert body["inn"] == inn and body["name"] == "ОсОО «Ромашка»"
    assert body["timezone"] == "Asia/Bishkek"
    assert (body["date_from"], body["date_to"]) == (today.isoformat(), today.isoformat())
    assert body["opening_balance"] == "0.00"
    assert [(x["kind"], x["amount"], x["balance"]) for x in body["lines"]] == [
        ("payment", "500.00", "500.00"),
        ("payment", "300.00", "800.00"),
        ("payment", "1.50", "801.50"),
        ("reversal", "-300.00", "501.50"),
    ]
    assert body["total_credit"] == "801.50" and body["total_debit"] == "300.00"
    assert body["closing_balance"] == "501.50"
    assert balance(engine, inn) == 50150

    tomorrow = today + timedelta(days=1)
    later = api.get(
        f"/api/v1/customers/{inn}/statement", date_from=tomorrow, date_to=tomorrow
    ).json()
    assert later["opening_balance"] == later["closing_balance"] == "501.50"
    assert later["lines"] == []
    earlier = api.get(
        f"/api/v1/customers/{inn}/statement",
        date_from=today - timedelta(days=10),
        date_to=today - timedelta(days=1),
    ).json()
    assert earlier["opening_balance"] == earlier["closing_balance"] == "0.00"
    default = api.get(f"/api/v1/customers/{inn}/statement").json()
    assert default["date_from"] == today.replace(day=1).isoformat()
    assert default["closing_balance"] == "501.50"


def test_statement_bad_requests(api: Api, engine: Engine) -> None:
    inn = add_customer(engine)
    path = f"/api/v1/customers/{inn}/statement"
    problem(api.get(path, date_from="2026-11-02", date_to="2026-11-01"), 422, "invalid_request")
    problem(api.get(path, date_from="2025-01-01", date_to="2026-11-01"), 422, "invalid_request")
    assert fields(problem(api.get(path, date_to="01.11.2026"), 422, "invalid_request")) == {
        "date_to"
    }
    problem(api.get(f"/api/v1/customers/{new_inn()}/statement"), 404, "customer_not_found")


def test_accounts_and_their_balances(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    gateway.pay("sochi", inn, "700.00")
    clearing = api.get("/api/v1/accounts/agent:optima:clearing").json()
    assert clearing == {
        "code": "agent:optima:clearing",
        "kind": "agent_clearing",
        "name": "Расчёты с агентом Агент optima",
        "balance": "-700.00",
        "may_go_negative": True,
    }
    assert api.get(f"/api/v1/accounts/customer:{inn}").json()["balance"] == "700.00"
    system = api.get("/api/v1/accounts", kind="revenue").json()
    assert [a["code"] for a in system["items"]] == ["revenue:eds", "revenue:sochi"]
    problem(api.get("/api/v1/accounts/nothing"), 404, "account_code_not_found")
    problem(api.get("/api/v1/accounts", kind="asset"), 422, "invalid_request")

    every: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/accounts", **params).json()
        every += [a["code"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(every) == len(set(every)) == count(engine, accounts)
    assert {"revenue:eds", "cash_desk", "bank", "agent:optima:clearing", f"customer:{inn}"} <= set(
        every
    )


@pytest.mark.corrupts_ledger
def test_ledger_verify_names_a_discrepancy(api: Api, engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine)
    gateway.pay("sochi", inn, "100.00")
    with engine.begin() as conn:
        customer = customers.get(conn, inn)
        assert customer is not None
        conn.execute(
            update(account_balances)
            .where(account_balances.c.account_id == customer.account_id)
            .values(balance=1)
        )
    body = api.get("/api/v1/ledger/verify", key="admin").json()
    assert body["ok"] is False
    assert {
        "kind": "balance_mismatch",
        "subject": f"customer:{inn}",
        "detail": "stored 1, postings sum to 10000",
    } in body["discrepancies"]


def test_dates_in_the_future_of_the_payments_list_are_fine(api: Api) -> None:
    future = (date.today() + timedelta(days=400)).isoformat()
    assert api.get("/api/v1/payments", date_from=future).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_answers_give_moments_in_utc_whatever_the_session_zone() -> None:
    from tolom.api.operator.payments import ReversalOut

    local = datetime(2026, 11, 21, 14, 30, 5, tzinfo=BISHKEK)  # a session in Asia/Bishkek
    out = ReversalOut(reason="x", requested_by="apikey:x", created_at=local, entry_id=1)
    assert json.loads(out.model_dump_json())["created_at"] == "2026-11-21T08:30:05Z"
    naive = datetime(2026, 11, 21, 8, 30, 5)  # SQLite hands back naive UTC
    out = ReversalOut(reason="x", requested_by="apikey:x", created_at=naive, entry_id=1)
    assert json.loads(out.model_dump_json())["created_at"] == "2026-11-21T08:30:05Z"


# --- U+0000 ------------------------------------------------------------------------------

NUL_CASES = [
    (
        "POST",
        "/api/v1/charges",
        {"idempotency_key": "k", "inn": "INN", "amount": "1", "description": "a\u0000"},
    ),
    (
        "POST",
        "/api/v1/charges",
        {
            "idempotency_key": "k",
            "inn": "INN",
            "amount": "1",
            "description": "x",
            "report": {"form": "\u0000"},
        },
    ),
    ("GET", "/api/v1/charges?inn=a%00b", None),
    ("POST", "/api/v1/customers", {"inn": "01234567890123", "name": "a\u0000b"}),
    ("PATCH", "/api/v1/customers/INN", {"email": "a\u0000@b.kg"}),
    (
        "POST",
        "/api/v1/manual-payments",
        {
            "channel": "cash_desk",
            "reference": "R1",
            "service": "sochi",
            "account": "INN",
            "amount": "1.00",
            "payer": "a\u0000b",
        },
    ),
    ("GET", "/api/v1/customers?q=a%00b", None),
    ("GET", "/api/v1/payments?txn_id=a%00b", None),
    ("POST", "/api/v1/invoices", {"payer_name": "a\u0000b", "items": [{"product": "eds-head"}]}),
    ("POST", "/api/v1/tariffs/quote", {"items": [{"tariff": "a\u0000"}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_CASES)
def test_text_with_a_nul_is_refused_the_same_on_every_database(
    api: Api, engine: Engine, method: str, path: str, body: Any
) -> None:
    """PostgreSQL text cannot hold U+0000 and SQLite can: refused up front, on both, as
    bad input, never a 500 nor a "retry" that would never succeed."""
    inn = add_customer(engine)
    path = path.replace("INN", inn)
    if body is not None:
        body = json.loads(json.dumps(body).replace("INN", inn))
    anonymous = api.client.request(method, path, json=body)
    problem(anonymous, 401, "unauthenticated")  # who is asking comes first
    response = api.client.request(method, path, json=body, headers=api.auth("admin"))
    problem(response, 422, "invalid_request")
    assert count(engine, payments) == 0
    assert count(engine, customers_table) == 1
    assert count(engine, invoices_table) == 0
