"""Builders of test data and a small OSMP client that parses the XML answers."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from tolom.agents import service as agents
from tolom.billing import customers, invoices
from tolom.cli import app as cli_app
from tolom.gateway import signing
from tolom.settings import get_settings

Cli = Callable[..., Result]

_inns = itertools.count(1)
_txn_ids = itertools.count(1_000_000)


def new_inn() -> str:
    """A fresh, well-formed INN."""
    return f"0{next(_inns):013d}"


def new_txn_id() -> str:
    return str(next(_txn_ids))


def add_customer(
    engine: Engine,
    *,
    name: str = "ОсОО «Тест»",
    status: str = "active",
    email: str | None = None,
    phone: str | None = None,
    language: str = "ru",
) -> str:
    inn = new_inn()
    with engine.begin() as conn:
        customers.add(
            conn,
            inn=inn,
            name=name,
            legal_form="ОсОО",
            email=email,
            phone=phone,
            language=language,
        )
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


@dataclass
class RestAgent:
    """An agent's view of the REST gateway: signs every request as documented."""

    client: TestClient
    engine: Engine
    code: str
    secret: str

    @classmethod
    def create(cls, app: Any, engine: Engine, code: str, **agent_options: Any) -> RestAgent:
        secret = add_agent(engine, code, **agent_options)
        return cls(TestClient(app, client=("127.0.0.1", 50000)), engine, code, secret)

    @property
    def key(self) -> bytes:
        return bytes.fromhex(agents.signing_key_for(self.secret))

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        timestamp: int | None = None,
        key: bytes | None = None,
        sign_path: str | None = None,
        sign_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One signed request; the keyword arguments let tests break the signature."""
        content = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        moment = int(time.time()) if timestamp is None else timestamp
        authorization = signing.authorization(
            self.code,
            key or self.key,
            method,
            sign_path or path,
            moment,
            content if sign_body is None else sign_body,
        )
        all_headers = {"Authorization": authorization}
        if content:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        return self.client.request(method, path, content=content, headers=all_headers)

    def check(self, service: str, account: str) -> Any:
        return self.send("POST", "/api/v1/agent/check", {"service": service, "account": account})

    def pay(
        self,
        service: str,
        account: str,
        amount: str,
        txn_id: str | None = None,
        txn_date: str | None = None,
    ) -> Any:
        """A pay; txn_date defaults to now, so the cancel window is open."""
        txn_date = txn_date or datetime.now(UTC).isoformat(timespec="seconds")
        return self.send(
            "POST",
            "/api/v1/agent/payments",
            {
                "txn_id": txn_id or new_txn_id(),
                "txn_date": txn_date,
                "service": service,
                "account": account,
                "amount": amount,
            },
        )

    def status(self, txn_id: str) -> Any:
        return self.send("GET", f"/api/v1/agent/payments/{txn_id}")

    def cancel(self, txn_id: str, reason: str = "Клиент ошибся") -> Any:
        return self.send("POST", f"/api/v1/agent/payments/{txn_id}/cancel", {"reason": reason})


@contextmanager
def _logging_as_it_was() -> Iterator[None]:
    """Undo what a command does to logging (`tolom worker` configures it, with handlers on
    the runner's stderr, which is closed once the command ends): later tests would log into
    a closed stream."""
    manager = logging.Logger.manager
    loggers = [
        logging.getLogger(),
        *(v for v in manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for lg, handlers, level, propagate, disabled in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        known = {id(lg) for lg, *_ in saved}
        for logger in list(manager.loggerDict.values()):
            if isinstance(logger, logging.Logger) and id(logger) not in known:
                logger.handlers.clear()  # made by the command: nothing of it outlives it


def run_cli(
    url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], input: str | None = None
) -> Result:
    """Run `tolom ARGS` on the database at `url`, as an operator would (`input`: stdin)."""
    monkeypatch.setenv("TOLOM_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with _logging_as_it_was():
            result = CliRunner().invoke(cli_app, args, input=input)
    finally:
        get_settings.cache_clear()
    # Whatever happens, an operator sees a message and an exit code, never our traceback.
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: uncaught {result.exception!r}"
    )
    return result


REPO = Path(__file__).resolve().parent.parent
"""The repository's root, for tests that read its docs, examples and benchmarks."""


def postgres_only(test: Callable[..., None]) -> Callable[..., None]:
    """Only the PostgreSQL instance of the `database_url` fixture: a multi-process server
    on SQLite would measure SQLite's single writer, not our locking."""
    on_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    needs_url = pytest.mark.skipif(
        "TOLOM_TEST_DATABASE_URL" not in os.environ, reason="needs TOLOM_TEST_DATABASE_URL"
    )
    return needs_url(on_postgres(test))
