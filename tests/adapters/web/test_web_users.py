"""The back office's users pages: the list (no secrets in it), a new user with a typed or a
generated password (who then logs in), role and language, disable/enable, a new password,
unlock; the rules of the core (the last active admin stays one, nobody demotes or disables
themself, role changes and disabling end sessions); every role's permission, CSRF, hostile
input and unknown users."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import (
    NAME,
    PASSWORD,
    Web,
    add_user,
    audit_actions,
    count_sessions,
    csrf_in,
    log_in,
    page_of,
    session_cookie,
    text_of,
    user_row,
)
from tests.adapters.web.test_web import web as web
from tolom.backoffice import users
from tolom.backoffice.users import Overview, User
from tolom.db.schema import audit_log
from tolom.db.schema import users as users_table

TYPED = "пароль-для-нового-1"
ADMIN = "boss"


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for each users template, with every branch that shows text (used by
    tests/adapters/web/test_web.py's test of every template in every language)."""
    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    locked = Overview(User(2, "aida", NAME, "operator", "ky", False), moment_, moment_, moment_)
    fresh = Overview(User(3, "bob", "Bob", "auditor", "en", True), None, None, moment_)
    languages = ("ru", "ky", "en")
    roles = users.ROLES
    page = {"roles": roles, "languages_offered": languages}
    return {
        "web/users.html": {**common, "page": "users", "rows": [locked, fresh], "may_change": True},
        "web/user.html": {
            **common,
            **page,
            "page": "users-one",
            "o": locked,
            "target": locked.user,
            "may_change": True,
            "own": False,
            "done": "changed",
            "error": "ошибка",
        },
        "web/user_new.html": {
            **common,
            **page,
            "page": "users-new",
            "username": "bob",
            "display_name": "Bob",
            "role": "auditor",
            "language": "ru",
            "error": "ошибка",
            "min_length": 10,
        },
        "web/user_secret.html": {
            **common,
            "page": "users-secret",
            "target": fresh.user,
            "password": "abcd-efgh-jkmn-pqrs",
            "created": True,
        },
    }


# --- helpers ------------------------------------------------------------------------------


def _admin(web: Web) -> TestClient:
    add_user(web.engine, username=ADMIN, role="admin")
    return web.signed_in(ADMIN)


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _csrf(browser: TestClient, path: str = "/users") -> str:
    return csrf_in(browser.get(path).text)


def _user_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(users_table)).scalar_one())


def _audit_lines(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
            )
        )


def _snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    """Every user's stored state (hash included) and the audit log's length."""
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(users_table).order_by(users_table.c.id))]
        lines = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    return [*rows, (lines,)]


def _create(browser: TestClient, **fields: str) -> Any:
    data = {
        "csrf": _csrf(browser, "/users/new"),
        "username": "bob",
        "display_name": "Бакыт Осмонов",
        "role": "operator",
        "language": "ru",
        "password": "",
        "repeat_password": "",
        **fields,
    }
    return browser.post("/users/new", data=data)


def _signed_out(browser: TestClient) -> bool:
    answer = browser.get("/")
    return answer.status_code == 303 and answer.headers["location"].startswith("/login")


# --- the list --------------------------------------------------------------------------------


def test_the_list_shows_every_user_and_no_secrets(web: Web) -> None:
    aida = csrf_in(web.signed_in().get("/").text)  # another user's session token
    admin = _admin(web)
    add_user(web.engine, username="zarina", role="auditor", language="ky")
    for _ in range(web.settings.login_lockout_after):
        log_in(web.browser(), "zarina", "неверный-пароль")
    page = admin.get("/users")
    assert page.status_code == 200 and page_of(page) == "users"
    html = page.text
    assert re.findall(r'data-username="([^"]+)"', html) == ["aida", ADMIN, "zarina"]
    assert 'id="new-user" href="/users/new"' in html
    assert 'data-username="zarina" data-role="auditor" data-active="yes" data-locked="yes"' in html
    row = html[html.index('data-username="aida"') : html.index('data-username="boss"')]
    assert "оператор" in row and "Русский" in row and "работает" in row
    assert "нет сведений" not in row  # aida logged in: when is shown
    zarina = html[html.index('data-username="zarina"') :].split("</tr>")[0]
    assert "Кыргызча" in zarina and "нет сведений" in zarina  # never logged in
    stored = user_row(web.engine, "zarina")
    assert stored.password_hash not in html and "argon2" not in html
    assert stored.failed_logins == 0 and stored.locked_until is not None
    assert aida not in admin.get("/users").text and aida not in admin.get("/users/aida").text


def test_every_role_reads_the_list_and_only_admins_see_forms(web: Web) -> None:
    add_user(web.engine, username=ADMIN, role="admin")
    for role in ("operator", "accountant", "auditor"):
        browser = web.signed_in() if role == "operator" else _staff(web, role)
        page = browser.get("/users")
        assert page.status_code == 200 and 'id="new-user"' not in page.text
        one = browser.get(f"/users/{ADMIN}")
        assert one.status_code == 200 and page_of(one) == "users-one"
        assert 'method="post" action="/users/' not in one.text
        assert browser.get("/users/new").status_code == 403


# --- a new user ----------------------------------------------------------------------------


def test_an_admin_creates_a_user_with_a_typed_password_who_then_logs_in(web: Web) -> None:
    admin = _admin(web)
    form = admin.get("/users/new")
    assert form.status_code == 200 and page_of(form) == "users-new"
    assert '<label for="password">' in form.text and '<label for="role">' in form.text
    created = _create(admin, password=TYPED, repeat_password=TYPED, role="accountant")
    assert created.status_code == 303 and created.headers["location"] == "/users/bob?done=created"
    shown = admin.get(created.headers["location"])
    assert text_of(shown.text, "user-done") == "Пользователь создан."
    assert text_of(shown.text, "f-role") == "бухгалтер"
    assert TYPED not in shown.text

    [line] = _audit_lines(web.engine, "user.create")
    assert line.actor == f"user:{ADMIN}" and line.object_type == "user" and line.object_id == "bob"
    assert json.loads(line.after) == {
        "username": "bob",
        "display_name": "Бакыт Осмонов",
        "role": "accountant",
        "language": "ru",
        "active": True,
    }
    assert line.address == "testclient" and line.before is None
    bob = web.signed_in("bob", TYPED)
    assert text_of(bob.get("/").text, "current-role") == "бухгалтер"


def test_a_generated_password_is_shown_once_and_works(web: Web) -> None:
    admin = _admin(web)
    answer = _create(admin, role="auditor", language="en")
    assert answer.status_code == 200 and page_of(answer) == "users-secret"
    assert answer.headers["cache-control"] == "no-store"
    password = text_of(answer.text, "secret-password")
    assert re.fullmatch(r"[a-zA-Z2-9]{4}(-[a-zA-Z2-9]{4}){3}", password)
    assert "один раз" in text_of(answer.text, "secret-warning")
    # Only its hash is kept; no later page shows it.
    assert password not in admin.get("/users/bob").text
    assert password not in admin.get("/users").text
    assert password not in json.dumps([tuple(map(str, r)) for r in _snapshot(web.engine)])
    bob = web.signed_in("bob", password)
    assert text_of(bob.get("/").text, "current-role") == "auditor"  # English page
    assert audit_actions(web.engine).count("user.create") == 1


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"password": TYPED, "repeat_password": TYPED + "x"}, 422, "Пароли не совпадают."),
        ({"password": "short", "repeat_password": "short"}, 422, "не короче 10 символов"),
        ({"password": "x" * 300, "repeat_password": "x" * 300}, 422, "не длиннее 256"),
        ({"username": "Bob Smith"}, 422, "строчные латинские буквы"),
        ({"username": "x" * 70}, 422, "строчные латинские буквы"),
        ({"username": "aida"}, 409, "уже есть"),
        ({"display_name": "   "}, 422, "Укажите имя."),
        ({"display_name": "Я" * 129}, 422, "не длиннее 128 знаков"),
    ],
)
def test_a_new_user_form_with_mistakes_is_shown_again(
    web: Web, fields: dict[str, str], status: int, message: str
) -> None:
    admin = _admin(web)
    before = _snapshot(web.engine)
    answer = _create(admin, **fields)
    assert answer.status_code == status and page_of(answer) == "users-new"
    assert message in text_of(answer.text, "user-error")
    assert "\x00" not in answer.text
    assert _snapshot(web.engine) == before


@pytest.mark.parametrize("fields", [{"role": "root"}, {"role": ""}, {"language": "de"}])
def test_a_value_no_form_offers_is_a_bad_request(web: Web, fields: dict[str, str]) -> None:
    admin = _admin(web)
    before = _snapshot(web.engine)
    answer = _create(admin, **fields)
    assert answer.status_code == 400 and page_of(answer) == "bad-request"
    assert _snapshot(web.engine) == before


def test_hostile_names_are_shown_as_text(web: Web) -> None:
    admin = _admin(web)
    hostile = '<script>alert("x")</script>'
    assert _create(admin, display_name=hostile, password=TYPED, repeat_password=TYPED).is_redirect
    for path in ("/users", "/users/bob"):
        html = admin.get(path).text
        assert "<script>" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


# --- changes to a user -----------------------------------------------------------------------


def test_a_role_change_ends_the_users_sessions(web: Web) -> None:
    aida = web.signed_in()
    other = web.signed_in()
    admin = _admin(web)
    page = admin.get("/users/aida")
    assert 'id="change-user"' in page.text and '<label for="role">' in page.text
    answer = admin.post(
        "/users/aida/change",
        data={"csrf": csrf_in(page.text), "role": "accountant", "language": "ru"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/users/aida?done=changed"
    assert _signed_out(aida) and _signed_out(other)
    assert not _signed_out(admin)
    [line] = _audit_lines(web.engine, "user.role")
    assert json.loads(line.before)["role"] == "operator"
    assert json.loads(line.after)["role"] == "accountant"
    assert line.actor == f"user:{ADMIN}" and line.object_id == "aida"
    assert "user.language" not in audit_actions(web.engine)
    again = web.signed_in()
    assert text_of(again.get("/").text, "current-role") == "бухгалтер"

    # The language alone: audited as such, the sessions stay.
    same = admin.post(
        "/users/aida/change",
        data={"csrf": csrf_in(page.text), "role": "accountant", "language": "ky"},
    )
    assert same.headers["location"] == "/users/aida?done=changed"
    assert not _signed_out(again)
    [language] = _audit_lines(web.engine, "user.language")
    assert json.loads(language.after)["language"] == "ky"
    unchanged = admin.post(
        "/users/aida/change",
        data={"csrf": csrf_in(page.text), "role": "accountant", "language": "ky"},
    )
    assert unchanged.headers["location"] == "/users/aida?done=unchanged"
    assert audit_actions(web.engine).count("user.role") == 1


def test_disabling_blocks_login_and_enabling_lets_in_again(web: Web) -> None:
    aida = web.signed_in()
    admin = _admin(web)
    csrf = _csrf(admin, "/users/aida")
    answer = admin.post("/users/aida/disable", data={"csrf": csrf})
    assert answer.headers["location"] == "/users/aida?done=disabled"
    assert _signed_out(aida)
    assert user_row(web.engine).active is False
    refused = log_in(web.browser(), "aida", PASSWORD)
    assert session_cookie(refused) is None and "Неверное имя" in refused.text
    page = admin.get("/users/aida")
    assert text_of(page.text, "f-state") == "отключён" and 'id="enable-user"' in page.text
    assert 'id="disable-user"' not in page.text

    again = admin.post("/users/aida/enable", data={"csrf": csrf})
    assert again.headers["location"] == "/users/aida?done=enabled"
    assert log_in(web.browser(), "aida", PASSWORD).status_code == 303
    disable, enable = _audit_lines(web.engine, "user.disable") + _audit_lines(
        web.engine, "user.enable"
    )
    assert json.loads(disable.before)["active"] is True
    assert json.loads(disable.after)["active"] is False
    assert json.loads(enable.after)["active"] is True
    twice = admin.post("/users/aida/enable", data={"csrf": csrf})
    assert twice.headers["location"] == "/users/aida?done=unchanged"
    assert audit_actions(web.engine).count("user.enable") == 1


def test_a_new_password_is_generated_shown_once_and_ends_sessions(web: Web) -> None:
    aida = web.signed_in()
    admin = _admin(web)
    page = admin.get("/users/aida")
    answer = admin.post("/users/aida/reset-password", data={"csrf": csrf_in(page.text)})
    assert answer.status_code == 200 and page_of(answer) == "users-secret"
    assert "прежние входы" in text_of(answer.text, "secret-done")
    password = text_of(answer.text, "secret-password")
    assert _signed_out(aida)
    assert session_cookie(log_in(web.browser(), "aida", PASSWORD)) is None
    assert log_in(web.browser(), "aida", password).status_code == 303
    [line] = _audit_lines(web.engine, "user.reset_password")
    assert line.actor == f"user:{ADMIN}" and line.before is None and line.after is None
    assert password not in admin.get("/users/aida").text


def test_unlock_lifts_a_lockout(web: Web) -> None:
    admin = _admin(web)
    for attempt in range(web.settings.login_lockout_after):
        log_in(web.browser(), "aida", f"неверно-{attempt}")
    page = admin.get("/users/aida")
    assert text_of(page.text, "f-locked-until") != "нет"
    assert 'id="unlock-user"' in page.text
    locked = log_in(web.browser(), "aida", PASSWORD)
    assert session_cookie(locked) is None and "заблокирован" in locked.text

    answer = admin.post("/users/aida/unlock", data={"csrf": csrf_in(page.text)})
    assert answer.headers["location"] == "/users/aida?done=unlocked"
    shown = admin.get(answer.headers["location"]).text
    assert text_of(shown, "f-locked-until") == "нет" and 'id="unlock-user"' not in shown
    assert user_row(web.engine).failed_logins == 0
    assert log_in(web.browser(), "aida", PASSWORD).status_code == 303
    [line] = _audit_lines(web.engine, "user.unlock")
    assert json.loads(line.before)["locked_until"] and json.loads(line.after) == {
        "locked_until": None
    }
    # Not locked: nothing to do, nothing written.
    nothing = admin.post("/users/aida/unlock", data={"csrf": csrf_in(page.text)})
    assert nothing.headers["location"] == "/users/aida?done=unchanged"
    assert audit_actions(web.engine).count("user.unlock") == 1


def test_a_lock_that_ended_is_not_shown(web: Web) -> None:
    admin = _admin(web)
    for attempt in range(web.settings.login_lockout_after):
        log_in(web.browser(), "aida", f"неверно-{attempt}")
    web.clock.now += timedelta(minutes=web.settings.login_lockout_minutes + 1)
    page = admin.get("/users/aida").text
    assert text_of(page, "f-locked-until") == "нет" and 'id="unlock-user"' not in page


# --- the rules of the core -----------------------------------------------------------------


def test_the_last_active_admin_stays_one(engine: Engine) -> None:
    add_user(engine, username="root", role="admin")
    add_user(engine, username="aida")
    with engine.begin() as conn:
        for values in ({"role": "operator"}, {"active": False}):
            with pytest.raises(users.LastAdminError):
                users.change(conn, "root", **values)
        # Another admin who is disabled does not count.
        users.create(conn, username="second", display_name="B", role="admin", password=PASSWORD)
        users.change(conn, "second", active=False)
        with pytest.raises(users.LastAdminError) as refused:
            users.change(conn, "root", role="auditor")
        assert refused.value.code == "last_admin"
        # With a second active admin, either may step down, but not both.
        users.change(conn, "second", active=True)
        users.change(conn, "root", role="auditor")
        with pytest.raises(users.LastAdminError):
            users.change(conn, "second", active=False)
        # A disabled admin or other changes are not held back.
        users.change(conn, "root", role="admin", active=False)
        users.change(conn, "root", role="operator")
        users.change(conn, "second", language="ky")
    with engine.connect() as conn:
        assert users.get(conn, "second") == User(3, "second", "B", "admin", "ky", True)


def test_nobody_changes_their_own_role_or_disables_themself(engine: Engine) -> None:
    root = add_user(engine, username="root", role="admin")
    add_user(engine, username="other", role="admin")
    with engine.begin() as conn:
        for values in ({"role": "operator"}, {"active": False}):
            with pytest.raises(users.OwnAccountError):
                users.change(conn, "root", by=root, **values)
        with pytest.raises(users.OwnAccountError):
            users.reset_password(conn, "root", by=root)
        users.change(conn, "root", by=root, language="en", role="admin")  # their own language
        users.change(conn, "other", by=root, role="auditor")


def test_an_admin_cannot_demote_disable_or_reset_themself_in_the_pages(web: Web) -> None:
    admin = _admin(web)
    add_user(web.engine, username="second", role="admin")
    page = admin.get(f"/users/{ADMIN}")
    assert text_of(page.text, "own-account").startswith("Это ваша учётная запись")
    assert 'id="disable-user"' not in page.text and 'id="reset-password"' not in page.text
    assert '<select id="role"' not in page.text and 'id="change-user"' in page.text
    csrf = csrf_in(page.text)
    before = _snapshot(web.engine)
    for path, data in (
        ("change", {"role": "operator", "language": "ru"}),
        ("disable", {}),
        ("reset-password", {}),
    ):
        refused = admin.post(f"/users/{ADMIN}/{path}", data={"csrf": csrf, **data})
        assert refused.status_code == 409, path
        assert "Ничего не изменено" in text_of(refused.text, "user-error")
    assert _snapshot(web.engine) == before
    # Their own language they may change here.
    own = admin.post(
        f"/users/{ADMIN}/change", data={"csrf": csrf, "role": "admin", "language": "en"}
    )
    assert own.status_code == 303 and not _signed_out(admin)


# --- permissions, CSRF, unknown users ----------------------------------------------------------

_POSTS = (
    ("/users/new", {"username": "eve", "display_name": "Eve", "role": "admin", "language": "ru"}),
    ("/users/aida/change", {"role": "admin", "language": "en"}),
    ("/users/aida/disable", {}),
    ("/users/aida/enable", {}),
    ("/users/aida/reset-password", {}),
    ("/users/aida/unlock", {}),
)


@pytest.mark.parametrize("role", ["operator", "accountant", "auditor"])
def test_other_roles_may_not_change_users(web: Web, role: str) -> None:
    browser = web.signed_in() if role == "operator" else _staff(web, role)
    for _ in range(web.settings.login_lockout_after):
        log_in(web.browser(), "aida", "неверный-пароль")  # something for unlock to change
    csrf = _csrf(browser)
    before = _snapshot(web.engine)
    for path, data in _POSTS:
        refused = browser.post(path, data={"csrf": csrf, **data})
        assert refused.status_code == 403 and page_of(refused) == "forbidden", path
    assert _snapshot(web.engine) == before


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_posts_without_the_sessions_token_change_nothing(web: Web, token: str | None) -> None:
    admin = _admin(web)
    for _ in range(web.settings.login_lockout_after):
        log_in(web.browser(), "aida", "неверный-пароль")
    sessions = count_sessions(web.engine)
    before = _snapshot(web.engine)
    for path, data in _POSTS:
        form = dict(data) if token is None else {"csrf": token, **data}
        refused = admin.post(path, data=form)
        assert refused.status_code == 403 and page_of(refused) == "csrf", path
    assert _snapshot(web.engine) == before and count_sessions(web.engine) == sessions


def test_without_a_session_the_pages_send_to_login(web: Web) -> None:
    browser = web.browser()
    assert browser.get("/users").headers["location"] == "/login?next=%2Fusers"
    assert browser.post("/users/aida/disable", data={}).headers["location"] == "/login"
    assert user_row(web.engine).active is True


@pytest.mark.parametrize(
    "path", ["/users/nobody", "/users/AIDA", "/users/a%00b", "/users/" + "x" * 300, "/users/_x"]
)
def test_unknown_users_are_not_found(web: Web, path: str) -> None:
    admin = _admin(web)
    answer = admin.get(path)
    assert answer.status_code == 404 and page_of(answer) == "not-found"
    assert "Пользователя с таким именем нет." in answer.text


def test_changes_to_unknown_users_are_not_found(web: Web) -> None:
    admin = _admin(web)
    csrf = _csrf(admin)
    before = _snapshot(web.engine)
    for path, data in _POSTS[1:]:
        for name in ("nobody", "a%00b", "BAD"):
            answer = admin.post(path.replace("aida", name), data={"csrf": csrf, **data})
            assert answer.status_code == 404, (path, name)
    assert _snapshot(web.engine) == before


def test_a_bad_role_or_language_in_a_change_is_a_bad_request(web: Web) -> None:
    admin = _admin(web)
    csrf = _csrf(admin)
    before = _snapshot(web.engine)
    for data in ({"role": "root", "language": "ru"}, {"role": "admin", "language": "xx"}, {}):
        answer = admin.post("/users/aida/change", data={"csrf": csrf, **data})
        assert answer.status_code == 400 and page_of(answer) == "bad-request"
    assert _snapshot(web.engine) == before


def test_the_user_page_links_its_audit_lines(web: Web) -> None:
    admin = _admin(web)
    page = admin.get("/users/aida").text
    assert 'id="user-audit" href="/audit?type=user&amp;object=aida"' in page


def test_a_refusal_without_its_own_text_says_so_plainly() -> None:
    from tolom.web.i18n import translator
    from tolom.web.users import _error_text

    t = translator("ru")
    assert _error_text(t, users.UserError("x", "old_password.wrong")) == "Изменение не выполнено."
    assert _error_text(t, users.UserError("x")) == "Изменение не выполнено."
    assert "не короче 10" in _error_text(t, users.UserError("x", "password.short"))
