"""Back-office users: argon2 passwords, roles, lockout, sessions, and the `tolom user` CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from tests.factories import Cli
from tolom import audit
from tolom.backoffice import passwords, users
from tolom.backoffice.login_throttle import Policy
from tolom.db.schema import users as users_table
from tolom.db.schema import web_sessions

PASSWORD = "верный-пароль-123"
LOGIN: dict[str, Any] = {
    "address": "127.0.0.1",
    "session_hours": 12,
    "policy": Policy(lockout_after=3, lockout_minutes=15),
}


def make(engine: Engine, username: str = "aida", role: str = "operator") -> users.User:
    with engine.begin() as conn:
        return users.create(
            conn, username=username, display_name="Аида Токтогулова", role=role, password=PASSWORD
        )


def login(engine: Engine, password: str, now: datetime | None = None, **extra: Any) -> Any:
    return users.login(engine, extra.pop("username", "aida"), password, now=now, **LOGIN)


def test_the_password_is_stored_as_argon2id_never_as_given(engine: Engine) -> None:
    make(engine)
    with engine.connect() as conn:
        stored = conn.execute(select(users_table.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_login_opens_a_session_that_logout_closes(engine: Engine) -> None:
    user = make(engine)
    result = login(engine, PASSWORD)
    assert result.refusal is None and result.token and result.user == user
    with engine.connect() as conn:
        found = users.session(conn, result.token)
        # The cookie's token is stored only as its hash.
        stored = conn.execute(select(web_sessions.c.token_hash)).scalar_one()
    assert found is not None and found.user == user and found.csrf_matches(found.csrf_token)
    assert not found.csrf_matches("forged") and not found.csrf_matches(None)
    assert result.token not in stored
    with engine.begin() as conn:
        users.logout(conn, result.token)
    with engine.connect() as conn:
        assert users.session(conn, result.token) is None


def test_wrong_and_unknown_look_the_same(engine: Engine) -> None:
    make(engine)
    wrong = login(engine, "неверный-пароль")
    unknown = login(engine, PASSWORD, username="nobody")
    assert (wrong.token, wrong.refusal) == (None, "bad_credentials")
    assert (unknown.token, unknown.refusal) == (None, "bad_credentials")


def test_failures_slow_down_then_lock_even_the_right_password(engine: Engine) -> None:
    make(engine)
    now = datetime.now(UTC)
    delays = [login(engine, "нет", now=now).delay_seconds for _ in range(2)]
    assert delays == [0.5, 1.0]  # every failure is answered late, later the more there were
    third = login(engine, "нет", now=now)
    assert third.refusal == "locked"
    assert login(engine, PASSWORD, now=now + timedelta(minutes=14)).refusal == "locked"
    after = login(engine, PASSWORD, now=now + timedelta(minutes=16))
    assert after.token is not None


def test_a_success_resets_the_failure_count(engine: Engine) -> None:
    make(engine)
    login(engine, "нет")
    login(engine, "нет")
    assert login(engine, PASSWORD).token
    assert login(engine, "нет").refusal == "bad_credentials"  # counting from zero again


def test_sessions_expire_and_end_with_a_disabled_user_or_a_new_role(engine: Engine) -> None:
    make(engine)
    token = login(engine, PASSWORD).token
    with engine.connect() as conn:
        assert users.session(conn, token, now=datetime.now(UTC) + timedelta(hours=13)) is None
    with engine.begin() as conn:
        users.change(conn, "aida", role="accountant")
    with engine.connect() as conn:
        assert users.session(conn, token) is None
    token = login(engine, PASSWORD).token
    with engine.begin() as conn:
        users.change(conn, "aida", active=False)
    with engine.connect() as conn:
        assert users.session(conn, token) is None
    assert login(engine, PASSWORD).refusal == "bad_credentials"


def test_changing_the_password_ends_the_other_sessions(engine: Engine) -> None:
    user = make(engine)
    old = login(engine, PASSWORD).token
    with engine.connect() as conn:
        stale = users.password_hash_of(conn, user.id)
    fields: dict[str, Any] = {"new": "новый-пароль-456", "session_hours": 12}
    fields["new_hash"] = passwords.hash_password(fields["new"])
    with engine.begin() as conn, pytest.raises(users.UserError, match="old_password"):
        # The hash the current password was checked against changed meanwhile: refused.
        users.change_password(conn, user, verified_hash="$argon2id$other", **fields)
    with engine.begin() as conn:
        new = users.change_password(conn, user, verified_hash=stale, **fields)
    with engine.connect() as conn:
        assert users.session(conn, old) is None and users.session(conn, new) is not None
    assert login(engine, "новый-пароль-456").token


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"username": "Aida"}, "username"),
        ({"username": "a"}, "username"),
        ({"role": "root"}, "role"),
        ({"password": "short"}, "password"),
        ({"language": "de"}, "language"),
        ({"display_name": "  "}, "display_name"),
    ],
)
def test_bad_users_are_refused(engine: Engine, values: dict[str, str], field: str) -> None:
    fields = {
        "username": "aida",
        "display_name": "Аида",
        "role": "operator",
        "password": PASSWORD,
        "language": "ru",
        **values,
    }
    with engine.begin() as conn, pytest.raises(users.UserError, match=field):
        users.create(conn, **fields)


def test_what_each_role_may_change() -> None:
    def user(role: str) -> users.User:
        return users.User(1, "x", "X", role, "ru", True)

    assert user("admin").may("users") and not user("admin").may("reversals")
    assert user("operator").may("cash") and not user("operator").may("reversals")
    assert user("accountant").may("reversals") and not user("accountant").may("cash")
    # An auditor changes nothing; downloading the audit log is all it may do beyond reading.
    assert [a for a in sorted(users.ACTIONS) if user("auditor").may(a)] == ["audit_export"]
    assert not user("operator").may("audit_export")


# --- the CLI -------------------------------------------------------------------------------


def test_the_user_commands(cli: Cli, engine: Engine) -> None:
    created = cli(
        "user",
        "create",
        "admin",
        "--name",
        "Главный",
        "--role",
        "admin",
        "--password-stdin",
        "--json",
        input=f"{PASSWORD}\n",
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["role"] == "admin"
    assert users.login(engine, "admin", PASSWORD, **LOGIN).token
    assert "администратор" in cli("user", "list").output

    last = cli("user", "set-role", "admin", "auditor")  # the only active admin stays one
    assert last.exit_code == 1 and "последний активный администратор" in last.output
    make(engine, "boss", role="admin")
    assert cli("user", "set-role", "admin", "auditor").exit_code == 0
    assert cli("user", "disable", "admin").exit_code == 0
    assert users.login(engine, "admin", PASSWORD, **LOGIN).refusal == "bad_credentials"
    assert cli("user", "enable", "admin").exit_code == 0
    reset = cli("user", "reset-password", "admin", "--password-stdin", input="другой-пароль-9\n")
    assert reset.exit_code == 0, reset.output
    assert users.login(engine, "admin", "другой-пароль-9", **LOGIN).token

    refused = cli(
        "user",
        "create",
        "xenia",
        "--name",
        "X",
        "--role",
        "root",
        "--password-stdin",
        input=f"{PASSWORD}\n",
    )
    assert refused.exit_code == 1 and "неизвестная роль" in refused.output
    short = cli(
        "user",
        "create",
        "bob",
        "--name",
        "Bob",
        "--role",
        "operator",
        "--password-stdin",
        input="short\n",
    )
    assert short.exit_code == 1 and "короче" in short.output
    assert cli("user", "disable", "nobody").exit_code == 1
    with engine.connect() as conn:
        actions = [e["action"] for e in reversed(audit.entries(conn, "user", "admin"))]
        assert conn.execute(select(func.count()).select_from(users_table)).scalar_one() == 2
    assert actions == [
        "user.create",
        "user.role",
        "user.disable",
        "user.enable",
        "user.reset_password",
    ]
