"""The back office's audited use cases: each change writes its audit line in the same
transaction (what the pages and the `tolom user` commands call)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from tolom import audit
from tolom.backoffice import audit_log, users
from tolom.db.schema import users as users_table

PASSWORD = "верный-пароль-123"
ADDRESS = "192.0.2.7"


def lines(engine: Engine, username: str) -> list[dict[str, Any]]:
    """The user's audit lines, oldest first."""
    with engine.connect() as conn:
        return list(reversed(audit.entries(conn, "user", username)))


def make(engine: Engine, username: str = "aida", role: str = "operator") -> users.User:
    with engine.begin() as conn:
        return users.create_audited(
            conn,
            username=username,
            display_name="Аида",
            role=role,
            password=PASSWORD,
            actor="user:boss",
            address=ADDRESS,
        )


def test_create_writes_user_create_with_the_new_user(engine: Engine) -> None:
    user = make(engine)
    [line] = lines(engine, "aida")
    assert line["action"] == "user.create" and line["actor"] == "user:boss"
    assert line["address"] == ADDRESS and line["after"] == users.as_dict(user)


def test_a_refused_create_writes_nothing(engine: Engine) -> None:
    make(engine)
    with pytest.raises(users.UserError), engine.begin() as conn:
        users.create_audited(
            conn, username="aida", display_name="Ещё", role="admin", password=PASSWORD, actor="x"
        )
    assert [x["action"] for x in lines(engine, "aida")] == ["user.create"]


def test_each_changed_field_has_its_own_line_in_order(engine: Engine) -> None:
    make(engine)
    with engine.begin() as conn:
        before, after = users.change_audited(
            conn, "aida", actor="user:boss", address=ADDRESS, role="accountant", language="ky"
        )
    assert (before.role, before.language) == ("operator", "ru")
    assert (after.role, after.language) == ("accountant", "ky")
    role, language = lines(engine, "aida")[1:]
    assert role["action"] == "user.role" and role["after"]["role"] == "accountant"
    assert role["after"]["language"] == "ru"  # the whole user after this field's change
    assert language["action"] == "user.language" and language["before"]["language"] == "ru"


def test_a_change_that_changes_nothing_writes_nothing(engine: Engine) -> None:
    make(engine)
    with engine.begin() as conn:
        before, after = users.change_audited(
            conn, "aida", actor="user:boss", role="operator", language="ru"
        )
    assert before == after
    assert [x["action"] for x in lines(engine, "aida")] == ["user.create"]


def test_disable_and_enable_are_named_by_their_direction(engine: Engine) -> None:
    make(engine)
    with engine.begin() as conn:
        users.change_audited(conn, "aida", actor="cli:root", active=False)
        users.change_audited(conn, "aida", actor="cli:root", active=True)
    assert [x["action"] for x in lines(engine, "aida")][1:] == ["user.disable", "user.enable"]


def test_a_refused_change_writes_nothing(engine: Engine) -> None:
    boss = make(engine, "boss", role="admin")
    with pytest.raises(users.OwnAccountError), engine.begin() as conn:
        users.change_audited(conn, "boss", by=boss, actor="user:boss", role="operator")
    assert [x["action"] for x in lines(engine, "boss")] == ["user.create"]


def test_password_resets_are_audited_without_the_password(engine: Engine) -> None:
    make(engine)
    with engine.begin() as conn:
        user, password = users.reset_password_audited(conn, "aida", actor="user:boss")
        users.set_password_audited(conn, "aida", "другой-пароль-456", actor="cli:root")
    assert user.username == "aida" and password
    resets = lines(engine, "aida")[1:]
    assert [x["action"] for x in resets] == ["user.reset_password"] * 2
    assert all(x["before"] is None and x["after"] is None for x in resets)
    with pytest.raises(users.UserError), engine.begin() as conn:
        users.set_password_audited(conn, "nobody", "другой-пароль-456", actor="cli:root")


def test_unlock_is_audited_only_when_a_lock_was_lifted(engine: Engine) -> None:
    make(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        assert users.unlock_audited(conn, "aida", now, actor="user:boss") is False
        until = now + timedelta(minutes=10)
        conn.execute(update(users_table).values(locked_until=until, failed_logins=5))
        assert users.unlock_audited(conn, "aida", now, actor="user:boss", address=ADDRESS)
    unlock = lines(engine, "aida")[-1]
    assert unlock["action"] == "user.unlock" and unlock["after"] == {"locked_until": None}
    assert unlock["before"]["locked_until"] is not None
    assert [x["action"] for x in lines(engine, "aida")].count("user.unlock") == 1


def test_own_language_logout_and_password_change_are_audited(engine: Engine) -> None:
    user = make(engine)
    with engine.begin() as conn:
        assert users.set_own_language_audited(conn, user, "en", actor="user:aida")
        assert not users.set_own_language_audited(conn, user, "en", actor="user:aida")
        stored = users.password_hash_of(conn, user.id)
        token = users.change_password_audited(
            conn,
            user,
            verified_hash=stored,
            new="новый-пароль-789",
            new_hash=users.new_password()[1],
            session_hours=1,
            actor="user:aida",
        )
        users.logout_audited(conn, token, user, actor="user:aida")
    actions = [x["action"] for x in lines(engine, "aida")]
    assert actions == ["user.create", "user.language", "user.change_password", "user.logout"]
    assert lines(engine, "aida")[1]["after"] == {"language": "en"}


def test_an_export_records_itself_unless_too_large(engine: Engine) -> None:
    boss = make(engine, "boss", role="admin")
    where = audit_log.AuditFilter()
    with engine.begin() as conn:
        assert audit_log.start_export(conn, where, user=boss, limit=0) is None
        started = audit_log.start_export(conn, where, user=boss, address=ADDRESS)
    assert started is not None and started.lines == 1
    with engine.connect() as conn:
        [line] = audit.entries(conn, "audit_log", "csv")
    assert line["action"] == "audit.export" and line["actor"] == "user:boss"
    assert line["after"]["lines"] == 1 and line["after"]["up_to_id"] == started.up_to_id
