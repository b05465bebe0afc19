"""`tolom apikey create | list | revoke`, and the keys it makes at work on the API."""

from __future__ import annotations

import json
import re

from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.adapters.cli.test_cli import ALL_COMMANDS, as_json, json_error, ok, refused
from tests.factories import Cli, add_customer
from tolom import apikeys, audit
from tolom.apikeys import KeyDirectory

TOKEN = re.compile(r"tolom_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def stored(engine: Engine) -> dict[str, apikeys.ApiKey]:
    with engine.connect() as conn:
        return {k.name: k for k in apikeys.list_keys(conn)}


def authenticates(engine: Engine, token: str) -> apikeys.ApiKey | None:
    return KeyDirectory(engine, ttl=0).authenticate(token)


def test_the_apikey_commands_are_there() -> None:
    names = {" ".join(p) for p in ALL_COMMANDS}
    assert {"apikey create", "apikey list", "apikey revoke"} <= names


def test_create_prints_the_token_once(cli: Cli, engine: Engine) -> None:
    output = ok(cli("apikey", "create", "buh", "--scope", "write"))
    [token] = TOKEN.findall(output)
    assert "Сохраните" in output and "write" in output
    assert "Authorization: Bearer <ключ>" in output
    key = authenticates(engine, token)
    assert key is not None and key.name == "buh" and key.scopes == frozenset({"write"})
    assert key.grants("read") and key.grants("write") and not key.grants("admin")
    assert token not in ok(cli("apikey", "list"))
    assert token not in ok(cli("apikey", "list", "--json"))
    with engine.connect() as conn:
        [line] = audit.entries(conn, "api_key", "buh")
    assert line["action"] == "apikey.create" and line["actor"].startswith("cli:")
    assert line["after"] == {"name": "buh", "scopes": ["write"]}
    assert token not in json.dumps(line, default=str)


def test_create_takes_repeated_and_comma_separated_scopes(cli: Cli, engine: Engine) -> None:
    data = as_json(cli("apikey", "create", "sochi-backend", "--scope", "read,write", "--json"))
    assert data["name"] == "sochi-backend"
    assert data["scopes"] == ["read", "write"]
    assert TOKEN.fullmatch(data["token"])
    data = as_json(cli("apikey", "create", "ops", "--scope", "read", "--scope", "admin", "--json"))
    assert data["scopes"] == ["admin", "read"]
    assert stored(engine)["ops"].scopes == frozenset({"admin", "read"})


def test_create_refusals(cli: Cli, engine: Engine) -> None:
    refused(
        cli("apikey", "create", "buh", "--scope", "root"), "scope", "read, write, charges, admin"
    )
    refused(cli("apikey", "create", "Buh Key", "--scope", "read"), "name")
    refused(cli("apikey", "create", "buh", "--scope", ","), "scope")
    assert "--scope" in cli("apikey", "create", "buh").output  # the option is required
    ok(cli("apikey", "create", "buh", "--scope", "read"))
    assert "уже есть" in json_error(cli("apikey", "create", "buh", "--scope", "read", "--json"))
    assert list(stored(engine)) == ["buh"]


def test_list(cli: Cli, engine: Engine) -> None:
    assert "Ключей API нет" in ok(cli("apikey", "list"))
    assert as_json(cli("apikey", "list", "--json")) == []
    ok(cli("apikey", "create", "zeta", "--scope", "read"))
    ok(cli("apikey", "create", "alpha", "--scope", "admin"))
    ok(cli("apikey", "revoke", "zeta"))
    rows = as_json(cli("apikey", "list", "--json"))
    assert [r["name"] for r in rows] == ["alpha", "zeta"]
    assert set(rows[0]) == {"name", "prefix", "scopes", "created_at", "revoked_at"}
    assert rows[0]["scopes"] == ["admin"] and rows[0]["revoked_at"] is None
    assert rows[1]["revoked_at"] is not None
    keys = stored(engine)
    assert rows[0]["prefix"] == keys["alpha"].prefix
    human = ok(cli("apikey", "list"))
    assert "alpha" in human and "ОТОЗВАН" in human.splitlines()[1]
    assert keys["alpha"].secret_hash not in human


def test_revoke(cli: Cli, engine: Engine) -> None:
    token = as_json(cli("apikey", "create", "buh", "--scope", "read", "--json"))["token"]
    assert authenticates(engine, token) is not None
    assert "отозван" in ok(cli("apikey", "revoke", "buh"))
    assert authenticates(engine, token) is None
    refused(cli("apikey", "revoke", "buh"), "buh")  # already revoked
    assert "nobody" in json_error(cli("apikey", "revoke", "nobody", "--json"))
    with engine.connect() as conn:
        actions = [e["action"] for e in reversed(audit.entries(conn, "api_key", "buh"))]
    assert actions == ["apikey.create", "apikey.revoke"]


def test_keys_made_by_the_cli_at_work_on_the_api(cli: Cli, app, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    reader = as_json(cli("apikey", "create", "viewer", "--scope", "read", "--json"))["token"]
    writer = as_json(cli("apikey", "create", "buh", "--scope", "write", "--json"))["token"]
    client = TestClient(app)
    inn = add_customer(engine)
    path = f"/api/v1/customers/{inn}/block"
    assert (
        client.get(
            f"/api/v1/customers/{inn}", headers={"Authorization": f"Bearer {reader}"}
        ).status_code
        == 200
    )
    refused_ = client.post(path, headers={"Authorization": f"Bearer {reader}"})
    assert refused_.status_code == 403 and refused_.json()["code"] == "insufficient_scope"
    assert client.post(path, headers={"Authorization": f"Bearer {writer}"}).status_code == 200
    ok(cli("apikey", "revoke", "buh"))
    revoked = client.post(path, headers={"Authorization": f"Bearer {writer}"})
    assert revoked.status_code == 401 and revoked.json()["code"] == "invalid_api_key"
