"""Builders of test data and a small OSMP client that parses the XML answers."""

from __future__ import annotations

import base64
import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.testclient import TestClient

from tolom.agents import service as agents
from tolom.billing import customers, invoices

_inns = itertools.count(1)
_txn_ids = itertools.count(1_000_000)


def new_inn() -> str:
    """A fresh, well-formed INN."""
    return f"0{next(_inns):013d}"


def new_txn_id() -> str:
    return str(next(_txn_ids))


def add_customer(engine: Engine, *, name: str = "ОсОО «Тест»", status: str = "active") -> str:
    inn = new_inn()
    with engine.begin() as conn:
        customers.add(conn, inn=inn, name=name, legal_form="ОсОО")
        if status != "active":
            customers.set_status(conn, inn, status)
    return inn


def add_invoice(
    engine: Engine,
    items: list[tuple[str, int]] | None = None,
    *,
    validity_days: int = 30,
    now: datetime | None = None,
) -> invoices.Invoice:
    with engine.begin() as conn:
        return invoices.create(
            conn,
            items=items or [("eds-head", 1)],
            payer_name="ОсОО «Новый клиент»",
            inn=None,
            validity_days=validity_days,
            now=now,
        )


def add_agent(
    engine: Engine,
    code: str,
    *,
    networks: list[str] | None = None,
    services: list[str] | None = None,
    timezone: str = "Asia/Bishkek",
) -> str:
    with engine.begin() as conn:
        return agents.create(
            conn,
            code=code,
            name=f"Агент {code}",
            networks=networks or ["*"],
            service_codes=services or ["sochi", "eds"],
            timezone=timezone,
        )


def parse_answer(body: str) -> dict[str, Any]:
    """The OSMP XML answer as a dict: tags to text, fields to {name: value}."""
    root = ET.fromstring(body.encode("utf-8"))
    assert root.tag == "response"
    answer: dict[str, Any] = {}
    for child in root:
        if child.tag == "fields":
            answer["fields"] = {f.attrib["name"]: f.text for f in child}
        else:
            answer[child.tag] = child.text
    answer["result"] = int(answer["result"])
    return answer


@dataclass
class Gateway:
    """An agent's view of the OSMP gateway, over the ASGI test client."""

    client: TestClient
    engine: Engine
    code: str
    secret: str

    @classmethod
    def create(cls, app: Any, engine: Engine, code: str, **agent_options: Any) -> Gateway:
        secret = add_agent(engine, code, **agent_options)
        return cls(TestClient(app, client=("127.0.0.1", 50000)), engine, code, secret)

    @property
    def auth_header(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.code}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def raw(
        self,
        service: str,
        params: dict[str, str] | str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = f"/gateway/osmp/{service}"
        all_headers = {**self.auth_header, **(headers or {})}
        if method == "GET":
            if isinstance(params, str):
                return self.client.get(f"{url}?{params}", headers=all_headers)
            return self.client.get(url, params=params, headers=all_headers)
        if isinstance(params, str):
            all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            return self.client.post(url, content=params, headers=all_headers)
        return self.client.post(url, data=params, headers=all_headers)

    def call(
        self, service: str, params: dict[str, str] | str, method: str = "GET"
    ) -> dict[str, Any]:
        response = self.raw(service, params, method)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        return parse_answer(response.text)

    def check(
        self, service: str, account: str, txn_id: str | None = None, sum_: str = "0.00"
    ) -> dict[str, Any]:
        return self.call(
            service,
            {"command": "check", "txn_id": txn_id or new_txn_id(), "account": account, "sum": sum_},
        )

    def pay(
        self,
        service: str,
        account: str,
        sum_: str,
        txn_id: str | None = None,
        txn_date: str = "20261121143005",
        method: str = "GET",
    ) -> dict[str, Any]:
        return self.call(
            service,
            {
                "command": "pay",
                "txn_id": txn_id or new_txn_id(),
                "txn_date": txn_date,
                "account": account,
                "sum": sum_,
            },
            method,
        )
