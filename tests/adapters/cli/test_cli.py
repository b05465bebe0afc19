"""The `tolom` command line, driven through Typer's CliRunner against each test database."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, select, text
from typer.testing import Result

from tests.factories import Cli, Gateway, new_inn, run_cli
from tolom import apikeys
from tolom.agents import service as agents
from tolom.backoffice import users
from tolom.billing import customers, invoices
from tolom.cli import app
from tolom.db import migrate
from tolom.db.schema import accounts, audit_log, products, services
from tolom.db.schema import invoices as invoices_table
from tolom.formatting import som
from tolom.identifiers import is_invoice_number
from tolom.ledger.accounts import SYSTEM_ACCOUNTS

PUBLIC_PRICES = {
    "eds-head": "1510.00",
    "eds-accountant": "1420.00",
    "eds-head-accountant": "1420.00",
    "eds-complex-5": "1800.00",
    "eds-complex-10": "2000.00",
    "eds-complex-unlimited": "2350.00",
    "eds-rutoken": "1200.00",
}


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def refused(result: Result, *fragments: str) -> str:
    """Exit code 1 and a message naming what is wrong."""
    assert result.exit_code == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    return result.output


def json_error(result: Result) -> str:
    """The message of a refused `--json` command: `{"error": ...}` on stdout, exit code 1."""
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["error"]
    return str(data["error"])


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def stored_agent(engine: Engine, code: str) -> agents.Agent:
    with engine.connect() as conn:
        agent = agents.load(conn, code)
    assert agent is not None
    return agent


def write_csv(path: Path, lines: list[str], *, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- help ----------------------------------------------------------------------------------


def _typer_paths(typer_app: typer.Typer, prefix: tuple[str, ...] = ()) -> Iterator[tuple]:
    """Walk the Typer app's registered commands and groups."""
    yield prefix
    for info in typer_app.registered_commands:
        assert info.callback is not None
        yield (*prefix, info.name or info.callback.__name__.replace("_", "-"))
    for group in typer_app.registered_groups:
        assert group.name and group.typer_instance is not None
        yield from _typer_paths(group.typer_instance, (*prefix, group.name))


def _click_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple]:
    """The same tree as Typer builds it for the command line."""
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _click_paths(sub, (*prefix, name))


ALL_COMMANDS = sorted(_typer_paths(app))


def test_the_command_tree_is_what_operators_are_told() -> None:
    names = {" ".join(p) for p in ALL_COMMANDS}
    assert set(ALL_COMMANDS) == set(_click_paths(typer.main.get_command(app)))
    assert {
        "db upgrade",
        "serve",
        "demo",
        "agent create",
        "agent list",
        "agent disable",
        "agent enable",
        "agent rotate-secret",
        "agent set-limits",
        "agent configure",
        "customer add",
        "customer import",
        "customer block",
        "customer unblock",
        "customer show",
        "catalog list",
        "catalog set-price",
        "service list",
        "service set-limits",
        "invoice create",
        "invoice show",
        "invoice cancel",
        "ledger verify",
    } <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "tolom")
def test_every_command_has_help(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_cli("sqlite:///unused-by-help.sqlite3", monkeypatch, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "--help" in result.output
    assert not Path("unused-by-help.sqlite3").exists()


# --- db ------------------------------------------------------------------------------------


def test_db_upgrade_is_idempotent(cli: Cli, engine: Engine) -> None:
    before = (count(engine, products), count(engine, services), count(engine, accounts))
    first = ok(cli("db", "upgrade"))
    ok(cli("db", "upgrade"))
    assert "Схема базы данных уже актуальна" in first
    assert (count(engine, products), count(engine, services), count(engine, accounts)) == before
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    head = ScriptDirectory.from_config(migrate.alembic_config(engine)).get_current_head()
    assert versions == [head]
    assert head is not None and head.isdigit()  # revisions are numbered, not hashes


def test_db_upgrade_creates_a_database_from_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'tolom.sqlite3'}"
    ok(run_cli(url, monkeypatch, ["db", "upgrade"]))
    ok(run_cli(url, monkeypatch, ["db", "upgrade"]))
    listed = json.loads(ok(run_cli(url, monkeypatch, ["catalog", "list", "--json"])))
    assert len(listed) == 8
    assert "сходится" in ok(run_cli(url, monkeypatch, ["ledger", "verify"]))


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", "Схема базы данных создана"),
        ("en", "Database schema created"),
        ("xx", "Схема базы данных создана"),  # a language we do not speak reads Russian
    ],
)
def test_the_command_speaks_tolom_language(
    language: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLOM_LANGUAGE", language)
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert expected in ok(run_cli(fresh, monkeypatch, ["db", "upgrade"]))


def test_db_upgrade_says_whether_it_created_migrated_or_found_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run must not read as if the schema had been there already."""
    head = ScriptDirectory.from_config(migrate.alembic_config(create_engine("sqlite://")))
    latest = head.get_current_head()
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    created = ok(run_cli(fresh, monkeypatch, ["db", "upgrade"]))
    assert f"Схема базы данных создана (версия {latest})" in created
    assert "актуальна" not in created
    again = ok(run_cli(fresh, monkeypatch, ["db", "upgrade"]))
    assert f"Схема базы данных уже актуальна (версия {latest})" in again
    older = f"sqlite:///{tmp_path / 'older.sqlite3'}"
    engine = create_engine(older)
    migrate.upgrade(engine, "0009")
    engine.dispose()
    migrated = ok(run_cli(older, monkeypatch, ["db", "upgrade"]))
    assert f"Схема базы данных обновлена с версии 0009 до {latest}" in migrated


def test_db_upgrade_does_not_overwrite_prices_operators_set(cli: Cli) -> None:
    ok(cli("catalog", "set-price", "eds-head", "1600.00"))
    ok(cli("db", "upgrade"))
    prices = {p["code"]: p["price"] for p in as_json(cli("catalog", "list", "--json"))}
    assert prices["eds-head"] == "1600.00"


# --- demo ----------------------------------------------------------------------------------


def test_demo_fills_an_empty_database_once(cli: Cli, engine: Engine) -> None:
    output = ok(cli("demo", "--port", "8123"))
    with engine.connect() as conn:
        assert customers.count(conn) == 20
    assert count(engine, invoices_table) == 4
    listed = as_json(cli("agent", "list", "--json"))
    assert sorted(a["code"] for a in listed) == ["megapay", "optima"]

    secrets_shown = dict(
        re.findall(r"^  (optima|megapay)\s+секрет (\S+)", output, flags=re.MULTILINE)
    )
    assert set(secrets_shown) == {"optima", "megapay"}
    for code, secret in secrets_shown.items():
        assert agents.secret_matches(secret, stored_agent(engine, code).secret_hash)
    curls = [line.strip() for line in output.splitlines() if line.strip().startswith("curl -u")]
    assert len(curls) == 4
    for curl in curls:
        assert f"curl -u optima:{secrets_shown['optima']} 'http://127.0.0.1:8123/gateway/osmp/" in (
            curl
        )
    assert any("command=pay" in c and "/eds?" in c for c in curls)

    again = refused(cli("demo"), "пуст")
    assert secrets_shown["optima"] not in again
    skipped = ok(cli("demo", "--if-empty"))
    assert secrets_shown["optima"] not in skipped
    with engine.connect() as conn:
        assert customers.count(conn) == 20
    assert count(engine, invoices_table) == 4


def test_demo_json_and_if_empty_on_an_empty_database(cli: Cli, engine: Engine) -> None:
    data = as_json(cli("demo", "--if-empty", "--json"))
    assert data["customers"] == 20
    assert [a["code"] for a in data["agents"]] == ["optima", "megapay"]
    for agent in data["agents"]:
        assert agents.secret_matches(
            agent["secret"], stored_agent(engine, agent["code"]).secret_hash
        )
    assert len(data["invoices"]) == 4
    assert all(is_invoice_number(i["number"]) for i in data["invoices"])
    assert all(data["agents"][0]["secret"] in c for c in data["curl"])
    optima = data["agents"][0]
    assert optima["signing_key"] == agents.signing_key_for(optima["secret"])
    assert optima["signing_key"] in data["rest"][0]
    with engine.connect() as conn:
        (key,) = apikeys.list_keys(conn)
    assert key.name == "demo-admin" and key.grants("admin")
    assert data["api_key"] in data["api"][0]
    # One back-office user per role, each able to log in with the password shown once.
    assert set(data["users"]) == {"admin", "operator", "accountant", "auditor"}
    for name, password in data["users"].items():
        result = users.login(engine, name, password, address=None, session_hours=1)
        assert result.user is not None and result.user.role == name
    assert data["webhook"]["name"] == "demo-inbox" and len(data["waiting_charges"]) == 2
    refused(cli("demo", "--json"))


def test_demo_refuses_a_database_with_only_an_agent(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "solo", "--name", "Solo", "--allow-any-ip"))
    refused(cli("demo"))
    with engine.connect() as conn:
        assert customers.count(conn) == 0


# --- agents ----------------------------------------------------------------------------------


def printed(output: str, label: str) -> str:
    """The value on the output line that starts with `label` (secrets are printed so)."""
    line = next(line for line in output.splitlines() if line.strip().startswith(label))
    return line.split()[-1]


def test_agent_create_prints_the_secret_once(cli: Cli, engine: Engine) -> None:
    output = ok(
        cli("agent", "create", "optima", "--name", "Оптима Банк", "--allow-ip", "10.1.2.0/24")
    )
    secret = printed(output, "секрет")
    signing_key = printed(output, "ключ подписи")
    assert len(secret) >= 40
    assert output.count(secret) == 1
    agent = stored_agent(engine, "optima")
    assert agents.secret_matches(secret, agent.secret_hash)
    assert agent.secret_hash != secret
    assert (
        agent.signing_key
        == bytes.fromhex(signing_key)
        == bytes.fromhex(agents.signing_key_for(secret))
    )
    assert signing_key not in ok(cli("agent", "list", "--json"))
    assert agent.allows_address("10.1.2.77")
    assert not agent.allows_address("10.1.3.1")
    assert secret not in ok(cli("agent", "list"))
    assert secret not in ok(cli("agent", "list", "--json"))


def test_agent_create_json(cli: Cli, engine: Engine) -> None:
    data = as_json(
        cli(
            "agent",
            "create",
            "megapay",
            "--name",
            "MegaPay",
            "--allow-ip",
            "192.168.0.10/16",
            "--allow-ip",
            "::1/128",
            "--services",
            "sochi",
            "--timezone",
            "Asia/Almaty",
            "--json",
        )
    )
    assert data["code"] == "megapay"
    agent = stored_agent(engine, "megapay")
    assert agents.secret_matches(data["secret"], agent.secret_hash)
    assert agent.signing_key == bytes.fromhex(data["signing_key"])
    assert agent.timezone.key == "Asia/Almaty"
    assert set(agent.services) == {"sochi"}
    assert [str(n) for n in agent.networks or ()] == ["192.168.0.0/16", "::1/128"]


def test_agent_create_with_any_ip(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "tester", "--name", "Tester", "--allow-any-ip"))
    assert stored_agent(engine, "tester").networks is None


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ([], "allow-ip"),
        (["--allow-ip", "10.0.0.0/33"], "allow-ip"),
        (["--allow-ip", "not-a-network"], "allow-ip"),
        (["--allow-ip", "10.0.0.0/8,192.168.0.0/16"], "allow-ip"),
        (["--allow-any-ip", "--timezone", "Mars/Olympus"], "timezone"),
        (["--allow-any-ip", "--timezone", "asia/bishkek"], "timezone"),
        (["--allow-any-ip", "--timezone", "../../etc/passwd"], "timezone"),
        (["--allow-any-ip", "--services", "sochi,lottery"], "services"),
        (["--allow-any-ip", "--services", ""], "services"),
    ],
)
def test_agent_create_refusals(cli: Cli, engine: Engine, args: list[str], field: str) -> None:
    output = refused(cli("agent", "create", "optima", "--name", "Оптима", *args), f"{field}:")
    assert "Ошибка" in output
    assert count(engine, accounts) == len(SYSTEM_ACCOUNTS)  # nothing half-created


def test_agent_create_refuses_a_bad_code_or_a_duplicate(cli: Cli, engine: Engine) -> None:
    refused(cli("agent", "create", "Optima", "--name", "O", "--allow-any-ip"), "code:")
    refused(cli("agent", "create", "o", "--name", "O", "--allow-any-ip"), "code:")
    first = ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    secret = printed(first, "секрет")
    refused(cli("agent", "create", "optima", "--name", "O2", "--allow-any-ip"), "уже есть")
    agent = stored_agent(engine, "optima")
    assert agent.name == "O"
    assert agents.secret_matches(secret, agent.secret_hash)
    error = json_error(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip", "--json"))
    assert "уже есть" in error


def test_agent_create_refuses_a_timezone_that_is_a_directory(cli: Cli) -> None:
    refused(
        cli("agent", "create", "optima", "--name", "O", "--allow-any-ip", "--timezone", "Asia"),
        "timezone:",
    )


def test_agent_list_json(cli: Cli) -> None:
    assert ok(cli("agent", "list")).strip() == "Агентов нет."
    assert as_json(cli("agent", "list", "--json")) == []
    ok(cli("agent", "create", "zeta", "--name", "Зета", "--allow-ip", "10.0.0.1/32"))
    ok(cli("agent", "create", "alpha", "--name", "Альфа", "--allow-any-ip", "--services", "eds"))
    listed = as_json(cli("agent", "list", "--json"))
    assert listed == [
        {
            "code": "alpha",
            "name": "Альфа",
            "kind": "gateway",
            "enabled": True,
            "timezone": "Asia/Bishkek",
            "cancel_window_days": 0,
            "sandbox": False,
            "allowed_networks": "*",
            "services": {"eds": {"min": "1.00", "max": "1000000.00"}},
        },
        {
            "code": "zeta",
            "name": "Зета",
            "kind": "gateway",
            "enabled": True,
            "timezone": "Asia/Bishkek",
            "cancel_window_days": 0,
            "sandbox": False,
            "allowed_networks": ["10.0.0.1/32"],
            "services": {
                "eds": {"min": "1.00", "max": "1000000.00"},
                "sochi": {"min": "1.00", "max": "500000.00"},
            },
        },
    ]
    human = ok(cli("agent", "list"))
    assert "alpha" in human and "zeta" in human


def test_agent_disable_and_enable(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    assert "отключён" in ok(cli("agent", "disable", "optima"))
    assert stored_agent(engine, "optima").enabled is False
    assert as_json(cli("agent", "list", "--json"))[0]["enabled"] is False
    assert "включён" in ok(cli("agent", "enable", "optima"))
    assert stored_agent(engine, "optima").enabled is True
    refused(cli("agent", "disable", "nobody"), "nobody")
    refused(cli("agent", "enable", "nobody"), "nobody")


def test_agent_rotate_secret(cli: Cli, engine: Engine) -> None:
    old = as_json(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip", "--json"))[
        "secret"
    ]
    output = ok(cli("agent", "rotate-secret", "optima"))
    new = printed(output, "секрет")
    assert new != old
    stored = stored_agent(engine, "optima").secret_hash
    assert agents.secret_matches(new, stored)
    assert not agents.secret_matches(old, stored)
    newer = as_json(cli("agent", "rotate-secret", "optima", "--json"))
    assert newer["code"] == "optima"
    assert agents.secret_matches(newer["secret"], stored_agent(engine, "optima").secret_hash)
    assert not agents.secret_matches(new, stored_agent(engine, "optima").secret_hash)
    refused(cli("agent", "rotate-secret", "nobody"), "nobody")


def test_agent_configure(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-ip", "10.0.0.0/8"))
    ok(cli("agent", "configure", "optima", "--allow-ip", "192.0.2.0/24", "--allow-ip", "::1"))
    agent = stored_agent(engine, "optima")
    assert agent.allows_address("192.0.2.9") and not agent.allows_address("10.1.1.1")
    ok(
        cli(
            "agent", "configure", "optima", "--timezone", "Asia/Almaty", "--cancel-window-days", "3"
        )
    )
    agent = stored_agent(engine, "optima")
    assert (agent.timezone.key, agent.cancel_window_days) == ("Asia/Almaty", 3)
    assert agent.allows_address("192.0.2.9")  # what was not given stays
    ok(cli("agent", "configure", "optima", "--allow-any-ip"))
    assert stored_agent(engine, "optima").networks is None
    refused(cli("agent", "configure", "optima", "--timezone", "Mars/Base"), "timezone")
    refused(cli("agent", "configure", "optima", "--cancel-window-days", "400"), "366")
    refused(cli("agent", "configure", "optima", "--allow-ip", "10.0.0.300/8"), "allow-ip")
    refused(cli("agent", "configure", "nobody", "--timezone", "Asia/Bishkek"), "nobody")
    assert stored_agent(engine, "optima").cancel_window_days == 3


def test_channels_are_built_in_and_never_gateway_agents(cli: Cli, engine: Engine) -> None:
    assert as_json(cli("agent", "list", "--json")) == []
    channels = {a["code"]: a for a in as_json(cli("agent", "list", "--json", "--channels"))}
    assert set(channels) == {"cash_desk", "bank"}
    assert {a["kind"] for a in channels.values()} == {"cash_desk", "bank"}
    assert not any(a["enabled"] for a in channels.values())
    refused(cli("agent", "enable", "cash_desk"), "канал")
    refused(cli("agent", "rotate-secret", "bank"), "канал")
    refused(cli("agent", "configure", "bank", "--allow-any-ip"), "канал")
    refused(cli("agent", "create", "bank", "--name", "B", "--allow-any-ip"), "уже есть")
    cash = stored_agent(engine, "cash_desk")
    assert cash.signing_key is None and not cash.allows_address("127.0.0.1")


def test_agent_set_limits(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    assert "Сохранено" in ok(
        cli("agent", "set-limits", "optima", "sochi", "--min", "10", "--max", "60000.50")
    )
    limits = stored_agent(engine, "optima").services["sochi"]
    assert (limits.min_amount, limits.max_amount) == (1000, 6000050)
    listed = as_json(cli("agent", "list", "--json"))[0]["services"]
    assert listed["sochi"] == {"min": "10.00", "max": "60000.50"}

    ok(cli("agent", "set-limits", "optima", "sochi"))  # back to the service's defaults
    limits = stored_agent(engine, "optima").services["sochi"]
    assert (limits.min_amount, limits.max_amount) == (100, 50000000)

    ok(cli("agent", "set-limits", "optima", "eds", "--forbid"))
    assert set(stored_agent(engine, "optima").services) == {"sochi"}
    ok(cli("agent", "set-limits", "optima", "eds"))
    assert set(stored_agent(engine, "optima").services) == {"sochi", "eds"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["nobody", "sochi", "--min", "5"], "nobody"),
        (["optima", "lottery"], "lottery"),
        (["optima", "sochi", "--min", "10,00"], "неверная сумма"),
        (["optima", "sochi", "--max", "1e6"], "неверная сумма"),
        (["optima", "sochi", "--min", "-5"], "неверная сумма"),
        (["optima", "sochi", "--min", "0"], "min:"),
        (["optima", "sochi", "--min", "100", "--max", "99.99"], "max:"),
    ],
)
def test_agent_set_limits_refusals(
    cli: Cli, engine: Engine, args: list[str], fragment: str
) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    refused(cli("agent", "set-limits", *args), fragment)
    limits = stored_agent(engine, "optima").services
    assert limits["sochi"] == agents.Limits(100, 50000000)
    assert set(limits) == {"sochi", "eds"}


def test_agent_set_limits_refuses_a_min_above_the_effective_max(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    refused(cli("agent", "set-limits", "optima", "eds", "--min", "2000000"))
    limits = stored_agent(engine, "optima").services["eds"]
    assert limits.min_amount <= limits.max_amount


def test_agent_set_limits_refuses_a_zero_max(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    refused(cli("agent", "set-limits", "optima", "sochi", "--max", "0"), "max")


# --- customers -------------------------------------------------------------------------------


def test_customer_add_and_show(cli: Cli) -> None:
    inn = new_inn()
    assert f"Клиент {inn}" in ok(cli("customer", "add", inn, "ОсОО «Ромашка»"))
    shown = as_json(cli("customer", "show", inn, "--json"))
    assert shown == {
        "inn": inn,
        "name": "ОсОО «Ромашка»",
        "legal_form": "ОсОО",
        "status": "active",
        "balance": "0.00",
        "email": None,
        "phone": None,
        "language": "ru",
        "entries": [],
    }
    human = ok(cli("customer", "show", inn))
    assert f"Баланс: {som(0)}" in human  # written for people: "0,00 сом"
    assert "Проводок нет." in human


def test_customer_add_json_and_legal_form(cli: Cli) -> None:
    inn = new_inn()
    data = as_json(cli("customer", "add", inn, "ИП Асанов Бакыт", "--legal-form", "ИП", "--json"))
    assert data == {
        "inn": inn,
        "name": "ИП Асанов Бакыт",
        "legal_form": "ИП",
        "status": "active",
        "balance": "0.00",
        "email": None,
        "phone": None,
        "language": "ru",
    }


@pytest.mark.parametrize(
    ("inn", "name", "extra", "field"),
    [
        ("0123456789012", "A", [], "inn:"),
        ("012345678901234", "A", [], "inn:"),
        ("0123456789012a", "A", [], "inn:"),
        ("\u0660" * 14, "A", [], "inn:"),
        (None, "   ", [], "name:"),
        (None, "A", ["--legal-form", "LLC"], "legal_form:"),
    ],
)
def test_customer_add_refusals(
    cli: Cli, engine: Engine, inn: str | None, name: str, extra: list[str], field: str
) -> None:
    refused(cli("customer", "add", inn or new_inn(), name, *extra), field)
    with engine.connect() as conn:
        assert customers.count(conn) == 0


def test_customer_add_refuses_a_duplicate(cli: Cli, engine: Engine) -> None:
    inn = new_inn()
    ok(cli("customer", "add", inn, "Первый"))
    refused(cli("customer", "add", inn, "Второй"), "inn:", "уже есть")
    with engine.connect() as conn:
        assert customers.count(conn) == 1
        assert customers.get(conn, inn).name == "Первый"


def test_customer_show_unknown(cli: Cli) -> None:
    refused(cli("customer", "show", "01234567890123"), "не найден")
    error = json_error(cli("customer", "show", "01234567890123", "--json"))
    assert "не найден" in error


def test_customer_show_entries_after_a_payment(cli: Cli, gateway: Gateway, engine: Engine) -> None:
    inn = new_inn()
    ok(cli("customer", "add", inn, "ОсОО «Баланс»"))
    assert gateway.pay("sochi", inn, "500.5", txn_id="7001")["result"] == 0
    assert gateway.pay("sochi", inn, "1000", txn_id="7002")["result"] == 0
    shown = as_json(cli("customer", "show", inn, "--json"))
    assert shown["balance"] == "1500.50"
    assert [e["amount"] for e in shown["entries"]] == ["1000.00", "500.50"]  # newest first
    assert "txn_id 7002" in shown["entries"][0]["description"]
    assert all(isinstance(e["entry_id"], int) for e in shown["entries"])
    limited = as_json(cli("customer", "show", inn, "--json", "--entries", "1"))
    assert [e["amount"] for e in limited["entries"]] == ["1000.00"]
    assert f"Баланс: {som(150_050)}" in ok(cli("customer", "show", inn))


def test_customer_show_refuses_negative_entries(cli: Cli) -> None:
    inn = new_inn()
    ok(cli("customer", "add", inn, "A"))
    result = cli("customer", "show", inn, "--entries", "-1")
    assert result.exit_code != 0


def test_customer_block_and_unblock(cli: Cli, gateway: Gateway) -> None:
    inn = new_inn()
    ok(cli("customer", "add", inn, "A"))
    assert "заблокирован" in ok(cli("customer", "block", inn))
    assert as_json(cli("customer", "show", inn, "--json"))["status"] == "blocked"
    assert "заблокирован" in ok(cli("customer", "show", inn))
    assert gateway.check("sochi", inn)["result"] == 79
    assert "разблокирован" in ok(cli("customer", "unblock", inn))
    assert as_json(cli("customer", "show", inn, "--json"))["status"] == "active"
    assert gateway.check("sochi", inn)["result"] == 0
    refused(cli("customer", "block", "01234567890123"), "не найден")
    refused(cli("customer", "unblock", "01234567890123"), "не найден")


# --- customer import -------------------------------------------------------------------------


def test_customer_import_a_bad_line_imports_nothing(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    good1, good2 = new_inn(), new_inn()
    path = write_csv(
        tmp_path / "c.csv",
        [
            "inn,name,legal_form",
            f"{good1},ОсОО «Один»,ОсОО",
            "0123,ОсОО «Короткий ИНН»,ОсОО",
            f"{good2},ИП Два,ИП",
        ],
    )
    output = refused(cli("customer", "import", str(path)), "строка 3", "inn:")
    assert "ничего не импортировано" in output
    with engine.connect() as conn:
        assert customers.count(conn) == 0

    imported = ok(cli("customer", "import", str(path), "--skip-bad"))
    assert "Импортировано клиентов: 2" in imported
    assert "строка 3" in imported
    with engine.connect() as conn:
        assert customers.count(conn) == 2
        assert customers.get(conn, good2).legal_form == "ИП"
        assert customers.get(conn, good1).name == "ОсОО «Один»"


def test_customer_import_names_the_field(cli: Cli, engine: Engine, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "c.csv",
        [
            "inn,name,legal_form",
            f"{new_inn()},ОсОО «Хорошее»,ОсОО",
            f"{new_inn()},,ОсОО",
            f"{new_inn()},ОсОО «Плохая форма»,LLC",
        ],
    )
    output = refused(cli("customer", "import", str(path)), "строка 3", "name:", "строка 4")
    assert "legal_form:" in output
    with engine.connect() as conn:
        assert customers.count(conn) == 0


def test_customer_import_json_report(cli: Cli, engine: Engine, tmp_path: Path) -> None:
    inn = new_inn()
    ok(cli("customer", "add", inn, "Уже есть"))
    fresh = new_inn()
    path = write_csv(
        tmp_path / "c.csv",
        ["inn,name", f"{inn},Уже есть", f"{fresh},Новый", f"{fresh},Новый ещё раз"],
    )
    error = json_error(cli("customer", "import", str(path), "--json"))
    assert "ничего не импортировано" in error
    result = cli("customer", "import", str(path), "--json", "--skip-bad")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["imported"] == 1
    assert [s["line"] for s in report["skipped"]] == [2, 4]
    assert "уже есть" in report["skipped"][0]["error"]
    assert "строке 3" in report["skipped"][1]["error"]
    with engine.connect() as conn:
        assert customers.count(conn) == 2


def test_customer_import_utf8_with_bom(cli: Cli, engine: Engine, tmp_path: Path) -> None:
    inn = new_inn()
    path = write_csv(
        tmp_path / "bom.csv", ["inn,name,legal_form", f"{inn},ОсОО «Бом»,ОсОО"], bom=True
    )
    assert "Импортировано клиентов: 1" in ok(cli("customer", "import", str(path)))
    with engine.connect() as conn:
        assert customers.get(conn, inn).name == "ОсОО «Бом»"


def test_customer_import_crlf_and_default_legal_form(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    inn = new_inn()
    path = tmp_path / "crlf.csv"
    path.write_bytes(f'inn,name\r\n{inn},"ОсОО «Кавычки, запятая»"\r\n'.encode())
    ok(cli("customer", "import", str(path)))
    with engine.connect() as conn:
        customer = customers.get(conn, inn)
    assert customer.name == "ОсОО «Кавычки, запятая»"
    assert customer.legal_form == "ОсОО"


def test_customer_import_refuses_other_encodings_and_headers(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    cp1251 = tmp_path / "cp1251.csv"
    cp1251.write_bytes(f"inn,name\n{new_inn()},ОсОО «Ромашка»\n".encode("cp1251"))
    refused(cli("customer", "import", str(cp1251)), "UTF-8")
    headless = write_csv(tmp_path / "h.csv", ["ИНН,Наименование", f"{new_inn()},A"])
    refused(cli("customer", "import", str(headless)), "строка 1", "inn", "name")
    assert cli("customer", "import", str(tmp_path / "missing.csv")).exit_code == 2
    with engine.connect() as conn:
        assert customers.count(conn) == 0


def test_customer_import_line_numbers_count_blank_lines(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["inn,name", f"{new_inn()},A", "", "0123,B"])
    refused(cli("customer", "import", str(path)), "строка 4")


def test_customer_import_refuses_a_huge_field_cleanly(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["inn,name", f"{new_inn()},{'x' * 200_000}"])
    refused(cli("customer", "import", str(path)), "строка 2")


# --- catalogue and services ------------------------------------------------------------------


def test_catalog_list_has_the_public_prices(cli: Cli) -> None:
    listed = as_json(cli("catalog", "list", "--json"))
    prices = {p["code"]: p["price"] for p in listed}
    assert prices == {**PUBLIC_PRICES, "rutoken-device": None}
    kinds = {p["code"]: p["kind"] for p in listed}
    assert kinds["rutoken-device"] == "carrier"
    assert kinds["eds-head"] == "signature"
    assert all(p["name"] for p in listed)
    human = ok(cli("catalog", "list"))
    assert "1510.00" in human
    assert re.search(r"rutoken-device\s+цена не задана", human)


def test_catalog_set_price(cli: Cli) -> None:
    assert "Цена сохранена" in ok(cli("catalog", "set-price", "rutoken-device", "2500.5"))
    prices = {p["code"]: p["price"] for p in as_json(cli("catalog", "list", "--json"))}
    assert prices["rutoken-device"] == "2500.50"
    assert prices["eds-head"] == "1510.00"
    invoice = as_json(
        cli("invoice", "create", "--name", "A", "--item", "rutoken-device:2", "--json")
    )
    assert invoice["total"] == "5001.00"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["no-such-thing", "100.00"], "no-such-thing"),
        (["eds-head", "1 510.00"], "неверная сумма"),
        (["eds-head", "1510,00"], "неверная сумма"),
        (["eds-head", "15.105"], "неверная сумма"),
    ],
)
def test_catalog_set_price_refusals(cli: Cli, args: list[str], fragment: str) -> None:
    refused(cli("catalog", "set-price", *args), fragment)
    prices = {p["code"]: p["price"] for p in as_json(cli("catalog", "list", "--json"))}
    assert prices == {**PUBLIC_PRICES, "rutoken-device": None}


def test_catalog_set_price_refuses_zero_cleanly(cli: Cli) -> None:
    refused(cli("catalog", "set-price", "rutoken-device", "0.00"))


def test_service_list(cli: Cli) -> None:
    assert as_json(cli("service", "list", "--json")) == [
        {
            "code": "eds",
            "name": "Оплата ЭЦП и носителя Рутокен ЭЦП по счёту",
            "min": "1.00",
            "max": "1000000.00",
        },
        {
            "code": "sochi",
            "name": "Пополнение баланса в системе СОЧИ",
            "min": "1.00",
            "max": "500000.00",
        },
    ]
    human = ok(cli("service", "list"))
    assert "sochi" in human and "500000.00" in human


def test_service_set_limits(cli: Cli, engine: Engine) -> None:
    ok(cli("agent", "create", "optima", "--name", "O", "--allow-any-ip"))
    assert "Сохранено" in ok(cli("service", "set-limits", "sochi", "--min", "5", "--max", "750.25"))
    listed = {s["code"]: s for s in as_json(cli("service", "list", "--json"))}
    assert (listed["sochi"]["min"], listed["sochi"]["max"]) == ("5.00", "750.25")
    assert (listed["eds"]["min"], listed["eds"]["max"]) == ("1.00", "1000000.00")
    # an agent without its own limits follows the service's
    assert stored_agent(engine, "optima").services["sochi"] == agents.Limits(500, 75025)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["lottery", "--min", "1", "--max", "2"], "lottery"),
        (["sochi", "--min", "10", "--max", "9.99"], "min"),
        (["sochi", "--min", "0", "--max", "10"], "min"),
        (["sochi", "--min", "1", "--max", "ten"], "неверная сумма"),
    ],
)
def test_service_set_limits_refusals(cli: Cli, args: list[str], fragment: str) -> None:
    refused(cli("service", "set-limits", *args), fragment)
    listed = {s["code"]: s for s in as_json(cli("service", "list", "--json"))}
    assert (listed["sochi"]["min"], listed["sochi"]["max"]) == ("1.00", "500000.00")


def test_service_set_limits_needs_both_bounds(cli: Cli) -> None:
    result = cli("service", "set-limits", "sochi", "--min", "5")
    assert result.exit_code == 2
    assert "--max" in result.output


# --- invoices --------------------------------------------------------------------------------


def test_invoice_create_for_a_customer(cli: Cli, engine: Engine) -> None:
    inn = new_inn()
    ok(cli("customer", "add", inn, "ОсОО «Плательщик»"))
    output = ok(
        cli("invoice", "create", "--inn", inn, "--item", "eds-head", "--item", "eds-accountant:2")
    )
    numbers = re.findall(r"(?<![0-9])[0-9]{16}(?![0-9])", output)
    assert len(numbers) == 1
    number = numbers[0]
    assert is_invoice_number(number)
    assert f"Сумма: {som(435_000)}" in output
    assert "ОсОО «Плательщик»" in output
    with engine.connect() as conn:
        invoice = invoices.get(conn, number)
    assert invoice is not None
    assert invoice.total == 435000
    assert invoice.inn == inn
    assert [(x.product_code, x.quantity, x.amount) for x in invoice.lines] == [
        ("eds-head", 1, 151000),
        ("eds-accountant", 2, 284000),
    ]
    with engine.connect() as conn:  # audited as the operator API audits it
        line = conn.execute(select(audit_log).where(audit_log.c.action == "invoice.create")).one()
    assert line.object_id == number and line.actor.startswith("cli:")


def test_invoice_create_json(cli: Cli) -> None:
    data = as_json(
        cli(
            "invoice",
            "create",
            "--name",
            "ИП Сыдыков",
            "--item",
            "eds-head",
            "--item",
            "eds-accountant:2",
            "--json",
        )
    )
    assert is_invoice_number(data["number"])
    assert data["total"] == "4350.00"
    assert data["status"] == "open"
    assert data["inn"] is None
    assert data["payer_name"] == "ИП Сыдыков"
    assert data["payment_id"] is None
    assert [(x["product"], x["quantity"], x["unit_price"], x["amount"]) for x in data["lines"]] == [
        ("eds-head", 1, "1510.00", "1510.00"),
        ("eds-accountant", 2, "1420.00", "2840.00"),
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--name", "A", "--item", "eds-platinum"], "eds-platinum"),
        (["--name", "A", "--item", "rutoken-device"], "set-price"),
        (["--name", "A", "--item", "eds-head", "--item", "rutoken-device:1"], "set-price"),
        (["--name", "A", "--item", "eds-head:0"], "количество"),
        (["--name", "A", "--item", "eds-head:1001"], "количество"),
        (["--name", "A", "--item", "eds-head:two"], "количество"),
        (["--name", "A", "--item", "eds-head:-1"], "количество"),
        (["--name", "A", "--item", ":2"], "item:"),
        (["--name", "   ", "--item", "eds-head"], "name:"),
        (["--name", "A", "--inn", "123", "--item", "eds-head"], "inn:"),
        (["--inn", "01234567890123", "--item", "eds-head"], "--name"),
        (["--item", "eds-head"], "--name"),
    ],
)
def test_invoice_create_refusals(cli: Cli, engine: Engine, args: list[str], fragment: str) -> None:
    refused(cli("invoice", "create", *args), fragment)
    assert count(engine, invoices_table) == 0


def test_invoice_create_needs_an_item(cli: Cli, engine: Engine) -> None:
    assert cli("invoice", "create", "--name", "A").exit_code == 2
    assert count(engine, invoices_table) == 0


def test_invoice_show(cli: Cli) -> None:
    number = as_json(cli("invoice", "create", "--name", "A", "--item", "eds-complex-5", "--json"))[
        "number"
    ]
    human = ok(cli("invoice", "show", number))
    assert number in human and "1800.00" in human and "open" in human
    data = as_json(cli("invoice", "show", number, "--json"))
    assert (data["number"], data["total"], data["status"]) == (number, "1800.00", "open")
    refused(cli("invoice", "show", "4111111111111111"), "не найден")
    error = json_error(cli("invoice", "show", "4111111111111111", "--json"))
    assert "не найден" in error


def test_invoice_cancel(cli: Cli, gateway: Gateway) -> None:
    number = as_json(cli("invoice", "create", "--name", "A", "--item", "eds-head", "--json"))[
        "number"
    ]
    assert "аннулирован" in ok(cli("invoice", "cancel", number))
    assert as_json(cli("invoice", "show", number, "--json"))["status"] == "cancelled"
    assert gateway.check("eds", number)["result"] == 79
    assert gateway.pay("eds", number, "1510.00")["result"] == 79
    data = as_json(cli("invoice", "cancel", number, "--json"))
    assert data["status"] == "cancelled"
    refused(cli("invoice", "cancel", "4111111111111111"), "не найден")


def test_a_paid_invoice_cannot_be_cancelled(cli: Cli, gateway: Gateway, engine: Engine) -> None:
    number = as_json(
        cli(
            "invoice",
            "create",
            "--name",
            "A",
            "--item",
            "eds-head",
            "--item",
            "eds-rutoken",
            "--json",
        )
    )["number"]
    paid = gateway.pay("eds", number, "2710.00")
    assert paid["result"] == 0
    refused(cli("invoice", "cancel", number), "оплачен")
    error = json_error(cli("invoice", "cancel", number, "--json"))
    assert "оплачен" in error
    data = as_json(cli("invoice", "show", number, "--json"))
    assert data["status"] == "paid"
    assert data["payment_id"] == int(paid["prv_txn"])


# --- ledger ------------------------------------------------------------------------------------


def test_ledger_verify_on_a_clean_ledger(cli: Cli, gateway: Gateway) -> None:
    assert "сходится" in ok(cli("ledger", "verify"))
    inn = new_inn()
    ok(cli("customer", "add", inn, "A"))
    assert gateway.pay("sochi", inn, "100.00")["result"] == 0
    assert "сходится" in ok(cli("ledger", "verify"))
    assert as_json(cli("ledger", "verify", "--json")) == {"ok": True, "problems": []}


# --- what the help says ----------------------------------------------------------------------


def test_apikey_create_help_names_every_scope(cli: Cli) -> None:
    shown = ok(cli("apikey", "create", "--help"))
    for scope in apikeys.SCOPES:
        assert scope in shown, scope


def test_reconcile_reopen_help_says_the_command_line_reopens(cli: Cli) -> None:
    """The help must not claim only the back office and the API may reopen a day."""
    shown = " ".join(ok(cli("reconcile", "reopen", "--help")).split())
    assert "administrators only" not in shown
    assert "whoever runs this command" in shown


# --- addresses: the server's public URL, the demo's webhook listener -------------------------

TOLOM = Path(sys.executable).parent / "tolom"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _environment(database_url: str, **extra: str) -> dict[str, str]:
    """A process's environment without the developer's own TOLOM_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLOM_")}
    return env | {
        "TOLOM_DATABASE_URL": database_url,
        "TOLOM_SECRET_KEY_FILE": os.environ["TOLOM_SECRET_KEY_FILE"],
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return 0, ""


@pytest.mark.parametrize("configured", [None, "http://pay.example.test:9443"])
def test_serve_derives_the_public_base_url_from_its_address_unless_configured(
    cli: Cli,
    gateway: Gateway,
    database_url: str,
    tmp_path: Path,
    configured: str | None,
) -> None:
    """`tolom serve --port 8111`: receipt links and QR codes point at :8111, not :8000."""
    inn = new_inn()
    ok(cli("customer", "add", inn, "ОсОО «Квитанция»"))
    paid = gateway.pay("sochi", inn, "100.00")
    assert paid["result"] == 0
    key = as_json(cli("apikey", "create", "reader", "--scope", "read", "--json"))["token"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/v1/payments/{paid['prv_txn']}/receipt"
    extra = {} if configured is None else {"TOLOM_PUBLIC_BASE_URL": configured}
    process = subprocess.Popen(
        [str(TOLOM), "serve", "--port", str(port)],
        env=_environment(database_url, **extra),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        status, body = _get(url, key)
        while status != 200 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            status, body = _get(url, key)
        assert status == 200, f"tolom serve exited with {process.poll()}"
    finally:
        process.terminate()
        process.wait(timeout=30)
    link = json.loads(body)
    expected = configured or f"http://127.0.0.1:{port}"
    assert link["url"] == f"{expected}/r/{link['token']}"


def test_public_base_url_of_a_serve_address() -> None:
    from tolom.cli.serve import public_base_url

    assert public_base_url("127.0.0.1", 8111) == "http://127.0.0.1:8111"
    assert public_base_url("localhost", 80) == "http://localhost:80"
    assert public_base_url("::1", 8111) == "http://[::1]:8111"
    # Every address: a browser on this machine reaches it through loopback.
    assert public_base_url("0.0.0.0", 8111) == "http://127.0.0.1:8111"
    assert public_base_url("::", 8111) == "http://[::1]:8111"


def test_demo_webhook_port_moves_the_demo_listener(cli: Cli) -> None:
    data = as_json(cli("demo", "--webhook-port", "8911", "--json"))
    assert data["webhook"]["url"] == "http://127.0.0.1:8911/tolom-webhooks"
    (endpoint,) = as_json(cli("webhook", "list", "--json"))
    assert endpoint["url"] == "http://127.0.0.1:8911/tolom-webhooks"


def test_demo_webhook_port_is_in_its_instructions(cli: Cli) -> None:
    shown = ok(cli("demo", "--webhook-port", "8912"))
    assert "http://127.0.0.1:8912/tolom-webhooks" in shown


def test_webhook_listen_on_another_port(
    cli: Cli, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint says :8900, the port is taken: `--port` listens elsewhere, same path."""
    monkeypatch.setenv("TOLOM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
    ok(cli("webhook", "add", "inbox", "http://127.0.0.1:8900/hooks"))
    port = _free_port()
    process = subprocess.Popen(
        [str(TOLOM), "webhook", "listen", "inbox", "--host", "127.0.0.1", "--port", str(port)],
        env=_environment(database_url),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"на http://127.0.0.1:{port}/hooks" in first, first
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/hooks", data=b"{}", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(request, timeout=10)
        assert answered.value.code == 401  # unsigned: refused by the listener itself
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert "подпись не сходится" in out
