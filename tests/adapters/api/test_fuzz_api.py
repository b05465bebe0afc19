"""Schemathesis against the running application: every operation in the OpenAPI document
gets generated requests, valid and invalid, signed or with an admin key as the operation
asks. No answer may be a 5xx or break the document's own description of it.

Runs on SQLite and PostgreSQL like every database test; the ledger is verified after each.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.factories import add_agent, add_customer, add_invoice
from tolom import apikeys
from tolom.agents import service as agents
from tolom.app import create_app
from tolom.gateway import signing
from tolom.settings import Settings

AGENT = "fuzz"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))  # per operation, mode and backend


@pytest.fixture
def fuzz_setup(app, engine: Engine) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """An agent and an admin key for the fuzzer's requests, and something to find."""
    secret = add_agent(engine, AGENT)
    with engine.begin() as conn:
        token = apikeys.create(conn, name="fuzzer", scopes=["admin"])
    add_customer(engine)
    add_invoice(engine)
    return {
        "client": TestClient(app, client=("127.0.0.1", 50000), raise_server_exceptions=False),
        "signing_key": bytes.fromhex(agents.signing_key_for(secret)),
        "token": token,
    }


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every documented operation; the document needs no database.

    Negative data needs something to break: operations without parameters or a body get
    positive requests only.
    """
    document = create_app(Settings(database_url="sqlite://")).openapi()
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            found.append((method.upper(), path, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                found.append((method.upper(), path, GenerationMode.NEGATIVE))
    return found


HEADER = ParameterLocation.HEADER


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_every_operation_survives_the_fuzzer(
    app,  # type: ignore[no-untyped-def]
    fuzz_setup: dict[str, Any],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        _send_and_validate(case, fuzz_setup)

    fuzz()


def _send_and_validate(case: Any, setup: dict[str, Any]) -> None:
    client: TestClient = setup["client"]
    sent = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in (sent.get("headers") or {}).items() if k.lower() != "authorization"}
    if "json" in sent:
        content = json.dumps(sent["json"]).encode()
        headers["Content-Type"] = "application/json"
    elif sent.get("data") is not None:
        data = sent["data"]
        content = data if isinstance(data, bytes) else str(data).encode()
    else:
        content = b""
    request = client.build_request(
        sent["method"], sent["url"], params=sent.get("params"), content=content, headers=headers
    )
    # The fuzzer leaves the Authorization header out when it tests the refusal of a
    # request without credentials; otherwise our real credentials replace its value.
    asked_for_auth = any(k.lower() == "authorization" for k in sent.get("headers") or {})
    if asked_for_auth and request.url.path.startswith("/api/v1/agent/"):
        request.headers["Authorization"] = signing.authorization(
            AGENT,
            setup["signing_key"],
            request.method,
            request.url.raw_path.decode("ascii"),
            int(time.time()),
            content,
        )
    elif asked_for_auth:
        request.headers["Authorization"] = f"Bearer {setup['token']}"
    response = client.send(request)
    assert response.status_code < 500, f"{request.method} {request.url}: {response.text}"
    # Schema-valid data may still be refused with 422: the account's format depends on the
    # service, and limits, existence and state are business rules no schema can carry.
    # Every other check runs, status_code_conformance among them (the status is documented).
    excluded = [positive_data_acceptance]
    if asked_for_auth and case.meta is not None and case.meta.is_negative_at(HEADER):
        # The fuzzer's invalid Authorization header was replaced by our valid credentials
        # above, so it cannot expect the request to be refused for it any more (it did,
        # and then blamed whatever else it had mutated, valid or not: ST201 at random).
        excluded.append(negative_data_rejection)
    case.validate_response(response, headers=dict(request.headers), excluded_checks=excluded)
