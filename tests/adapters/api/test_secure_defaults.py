"""Defaults that hold without configuration: no-store on API answers, Secure cookies and
HSTS over https, a CSP on /docs, and no plain-http server on a public address."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer
from tolom.app import create_app
from tolom.runtime import Runtime


@pytest.fixture
def https_app(runtime: Runtime):  # type: ignore[no-untyped-def]
    runtime.settings = runtime.settings.model_copy(
        update={"public_base_url": "https://pay.example.kg"}
    )
    return create_app(runtime=runtime)


def test_json_api_answers_are_not_stored(app, engine) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(app)
    assert client.get("/api/v1/customers").headers["cache-control"] == "no-store"
    assert client.get("/api/v1/no-such-thing").headers["cache-control"] == "no-store"
    gateway = Gateway.create(app, engine, code="optima")
    inn = add_customer(engine)
    osmp = gateway.raw("sochi", {"command": "check", "txn_id": "1", "account": inn})
    assert osmp.status_code == 200 and "cache-control" not in osmp.headers  # not under /api/
    unsigned = client.post("/api/v1/agent/check", json={"service": "sochi", "account": inn})
    assert unsigned.headers["cache-control"] == "no-store"


def test_over_http_no_hsts_and_cookies_are_not_secure(app) -> None:  # type: ignore[no-untyped-def]
    login = TestClient(app).get("/login")
    assert "strict-transport-security" not in login.headers
    assert "secure" not in login.headers["set-cookie"].lower()


def test_over_https_cookies_are_secure_and_hsts_is_sent(https_app, engine) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(https_app, base_url="https://testserver")
    login = client.get("/login")
    assert login.headers["strict-transport-security"].startswith("max-age=")
    assert "; secure" in login.headers["set-cookie"].lower()
    assert client.get("/health").headers["strict-transport-security"].startswith("max-age=")
    gateway = Gateway.create(https_app, engine, code="optima")
    answer = gateway.raw("sochi", {"command": "check", "txn_id": "1", "account": "1"})
    assert "strict-transport-security" in answer.headers


def test_docs_page_runs_only_our_scripts(app) -> None:  # type: ignore[no-untyped-def]
    page = TestClient(app).get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy)
    assert script_src is not None and "unsafe-inline" not in script_src.group(1)
    for script in re.findall(r"<script>(.*?)</script>", page.text, flags=re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src.group(1)
    assert "frame-ancestors 'none'" in policy


def test_serve_refuses_a_public_address_over_plain_http(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    refused = cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert refused.exit_code == 2
    assert "TOLOM_PUBLIC_BASE_URL" in refused.output


def test_loopback_check() -> None:
    from tolom.cli.serve import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert not _loopback("0.0.0.0") and not _loopback("10.0.0.1") and not _loopback("example")
