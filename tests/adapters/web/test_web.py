"""The back office in the browser, server side: log in and out, lockout, CSRF, safe
redirects, password and language, role guards, the dashboard, the catalogue, headers.

Each test client is one person's browser (its own cookies). Failed logins ask for a delay;
the app's `web_options.sleep` records it instead of waiting, and `web_options.clock`
moves time on for lockouts and session expiry.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Annotated, Any
from urllib.parse import quote

import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import Engine, func, select
from starlette.responses import PlainTextResponse, Response
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer, add_invoice
from tolom import apikeys, audit
from tolom.agents import queries
from tolom.app import create_app
from tolom.backoffice import users
from tolom.backoffice.dashboard import Dashboard, DayTotals, Line
from tolom.backoffice.users import Session
from tolom.billing import charges, orders
from tolom.db.schema import audit_log, signature_orders, web_sessions
from tolom.db.schema import users as users_table
from tolom.events import endpoints
from tolom.events.worker import Worker
from tolom.money import format_amount
from tolom.payments import service as payment_service
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.simulator import autopay, favourites, journeys
from tolom.web import WebOptions, may, pages
from tolom.web import simulator as simulator_pages
from tolom.web.auth import PageRoute, safe_next
from tolom.web.i18n import day, moment, money, translator

PASSWORD = "верный-пароль-123"
NEW_PASSWORD = "новый-пароль-4567"
NAME = "Аида Токтогулова"
NBSP = "\u00a0"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Web:
    """The app with its delays recorded instead of slept and a clock the test moves."""

    app: FastAPI
    engine: Engine
    settings: Settings
    clock: Clock
    sleeps: list[float]

    def browser(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)

    def signed_in(self, username: str = "aida", password: str = PASSWORD) -> TestClient:
        browser = self.browser()
        answer = log_in(browser, username, password)
        assert answer.status_code == 303, answer.text
        return browser


def _options(app: FastAPI) -> tuple[Clock, list[float]]:
    clock, sleeps = Clock(), []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    app.state.web_options = WebOptions(sleep=sleep, clock=clock)
    return clock, sleeps


@pytest.fixture
def web(app: FastAPI, engine: Engine, settings: Settings) -> Web:
    clock, sleeps = _options(app)
    add_user(engine)
    return Web(app, engine, settings, clock, sleeps)


def add_user(
    engine: Engine,
    username: str = "aida",
    role: str = "operator",
    language: str = "ru",
    password: str = PASSWORD,
) -> users.User:
    with engine.begin() as conn:
        return users.create(
            conn,
            username=username,
            display_name=NAME,
            role=role,
            password=password,
            language=language,
        )


def csrf_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def log_in(
    browser: TestClient,
    username: str = "aida",
    password: str = PASSWORD,
    next_path: str = "/",
    lang: str = "ru",
) -> Any:
    form = browser.get("/login", params={"lang": lang})
    assert form.status_code == 200, form.text
    return browser.post(
        "/login",
        data={
            "csrf": csrf_in(form.text),
            "username": username,
            "password": password,
            "next": next_path,
            "lang": lang,
        },
    )


def session_cookie(response: Any) -> str | None:
    """The Set-Cookie line that sets a session, if any."""
    for line in response.headers.get_list("set-cookie"):
        if line.startswith("tolom_session=") and not line.startswith('tolom_session="";'):
            return str(line)
    return None


def page_of(response: Any) -> str | None:
    found = re.search(r'<main id="main" data-page="([^"]+)"', response.text)
    return found.group(1) if found else None


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert found is not None, f"no #{element_id}"
    return found.group(1).strip()


def table_rows(html: str, table_id: str) -> dict[str, tuple[str, str, str]]:
    """{data-code: (name, count, amount)} of a totals table, and "total" for its footer."""
    start = html.index(f'id="{table_id}"')
    table = html[start : html.index("</table>", start)]
    cells = r'<th scope="row">\s*(.*?)\s*</th>\s*<td class="num">(.*?)</td>\s*<td class="num">(.*?)</td>'
    rows = {
        code: (" ".join(re.sub(r"<[^>]+>", " ", name).split()), count, amount)
        for code, name, count, amount in re.findall(
            r'<tr data-code="([^"]+)">\s*' + cells, table, re.S
        )
    }
    [(name, count, amount)] = re.findall(r"<tfoot>\s*<tr>\s*" + cells, table, re.S)
    rows["total"] = (name, count, amount)
    return rows


def user_row(engine: Engine, username: str = "aida") -> Any:
    with engine.connect() as conn:
        return conn.execute(select(users_table).where(users_table.c.username == username)).one()


def count_sessions(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(web_sessions)).scalar_one())


def audit_actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())


# --- logging in -------------------------------------------------------------------------


def test_login_sets_a_protected_cookie_and_opens_the_dashboard(web: Web) -> None:
    browser = web.browser()
    form = browser.get("/login")
    assert page_of(form) == "login"
    html = form.text
    assert '<form id="login" method="post" action="/login">' in html
    assert '<label for="username">' in html and 'id="username" name="username"' in html
    assert '<label for="password">' in html and 'id="password" name="password"' in html
    assert '<button type="submit">' in html
    login_cookie = next(
        c for c in form.headers.get_list("set-cookie") if c.startswith("tolom_login_csrf=")
    )
    assert f"tolom_login_csrf={csrf_in(html)};" in login_cookie and "HttpOnly" in login_cookie

    answer = browser.post(
        "/login", data={"csrf": csrf_in(html), "username": "aida", "password": PASSWORD}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = session_cookie(answer)
    assert cookie is not None
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # session_cookie_secure is off by default
    assert web.sleeps == [], "a successful login is not held back"

    home = browser.get("/")
    assert home.status_code == 200 and page_of(home) == "dashboard"
    assert f'<span id="current-user">{NAME}</span>' in home.text
    assert text_of(home.text, "current-role") == "оператор"
    assert '<form id="logout" method="post" action="/logout">' in home.text
    assert '<form id="language" method="post" action="/language">' in home.text
    assert '<main id="main" data-page="dashboard">' in home.text
    for code in ("ru", "ky", "en"):
        assert f'name="language" value="{code}"' in home.text
    # Signed in, the login page sends one on.
    assert browser.get("/login").headers["location"] == "/"
    assert "user.login" in audit_actions(web.engine)


def test_the_cookie_is_secure_when_configured(
    app: FastAPI, engine: Engine, settings: Settings
) -> None:
    secure = Runtime.on(settings.model_copy(update={"session_cookie_secure": True}), engine)
    secure_app = create_app(runtime=secure)
    _options(secure_app)
    add_user(engine)
    # Secure cookies come back only over HTTPS, as behind the production proxy.
    answer = log_in(TestClient(secure_app, base_url="https://testserver", follow_redirects=False))
    cookie = session_cookie(answer)
    assert cookie is not None
    assert "secure" in [a.strip().lower() for a in cookie.split(";")]


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(web: Web) -> None:
    answers = [
        log_in(web.browser(), "aida", "неверный-пароль"),
        log_in(web.browser(), "nobody", PASSWORD),
        log_in(web.browser(), "", ""),
    ]
    for answer in answers:
        assert answer.status_code == 200 and page_of(answer) == "login"
        assert session_cookie(answer) is None
        assert (
            '<p role="alert" id="login-error">'
            "Неверное имя пользователя или пароль.</p>" in answer.text
        )
    # Each refusal asked to be held back (recorded, not slept), alike for a known and an
    # unknown username: the delay grows only with failures in a row of one name from one
    # address. (A name with U+0000 is no login at all: tests.adapters.web.test_web_bad_characters.)
    assert web.sleeps == [0.5, 0.5, 0.5]
    assert count_sessions(web.engine) == 0


def test_lockout_after_repeated_failures_even_for_the_right_password(web: Web) -> None:
    limit = web.settings.login_lockout_after
    answers = [log_in(web.browser(), "aida", f"неверно-{i}") for i in range(limit)]
    assert all("Неверное имя" in a.text for a in answers[:-1])
    locked = text_of(answers[-1].text, "login-error")
    minutes = int(web.settings.login_lockout_minutes)
    assert minutes == 15 and "заблокирован на 15 минут;" in locked  # CLDR "many": минут
    assert web.sleeps == [min(8.0, 0.5 * 2**i) for i in range(limit)]  # doubling, capped

    web.clock.now += timedelta(minutes=minutes - 1)
    right = log_in(web.browser(), "aida", PASSWORD)
    assert session_cookie(right) is None and "на 15 минут;" in right.text
    assert count_sessions(web.engine) == 0

    web.clock.now += timedelta(minutes=2)  # the lockout is over
    assert log_in(web.browser(), "aida", PASSWORD).headers["location"] == "/"


# --- CSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_login_without_its_double_submit_token_is_refused(web: Web, token: str | None) -> None:
    browser = web.browser()
    browser.get("/login")  # sets the cookie
    data = {"username": "aida", "password": PASSWORD}
    if token is not None:
        data["csrf"] = token
    answer = browser.post("/login", data=data)
    assert answer.status_code == 403 and page_of(answer) == "csrf"
    assert "Ничего не изменено" in answer.text
    # The token alone, without the cookie it was issued with, is refused as well.
    stolen = csrf_in(web.browser().get("/login").text)
    bare = web.browser().post("/login", data={**data, "csrf": stolen})
    assert bare.status_code == 403 and page_of(bare) == "csrf"
    assert session_cookie(answer) is None and session_cookie(bare) is None
    assert count_sessions(web.engine) == 0 and user_row(web.engine).failed_logins == 0


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_posts_without_the_sessions_token_change_nothing(web: Web, token: str | None) -> None:
    browser = web.signed_in()
    extra = {} if token is None else {"csrf": token}
    before = user_row(web.engine)
    actions = audit_actions(web.engine)
    forms: dict[str, dict[str, str]] = {
        "/logout": {},
        "/password": {
            "old_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "repeat_password": NEW_PASSWORD,
        },
        "/language": {"language": "en", "next": "/"},
    }
    for path, data in forms.items():
        answer = browser.post(path, data={**data, **extra})
        assert answer.status_code == 403 and page_of(answer) == "csrf", path
        assert session_cookie(answer) is None
        assert answer.headers["cache-control"] == "no-store"
    after = user_row(web.engine)
    assert (after.password_hash, after.language) == (before.password_hash, before.language)
    assert audit_actions(web.engine) == actions
    assert browser.get("/").status_code == 200, "the session still works"
    # A token of another session is as wrong as a forged one.
    other = csrf_in(web.signed_in().get("/").text)
    refused = browser.post("/language", data={"language": "en", "csrf": other})
    assert refused.status_code == 403 and user_row(web.engine).language == "ru"


# --- sessions and redirects ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/", "/login?next=%2F"),
        ("/password", "/login?next=%2Fpassword"),
        ("/?day=2026-11-21&x=1", "/login?next=" + quote("/?day=2026-11-21&x=1", safe="")),
    ],
)
def test_pages_without_a_session_send_to_login_and_back(web: Web, path: str, location: str) -> None:
    browser = web.browser()
    answer = browser.get(path)
    assert answer.status_code == 303 and answer.headers["location"] == location
    form = browser.get(answer.headers["location"])
    hidden = re.search(r'name="next" value="([^"]*)"', form.text)
    assert hidden is not None
    back = browser.post(
        "/login",
        data={
            "csrf": csrf_in(form.text),
            "username": "aida",
            "password": PASSWORD,
            "next": unescape(hidden.group(1)),
        },
    )
    assert back.headers["location"] == path


def test_posts_without_a_session_and_stale_cookies_go_to_login(web: Web) -> None:
    browser = web.browser()
    for path in ("/logout", "/password", "/language"):
        answer = browser.post(path, data={"csrf": "x", "language": "en"})
        assert answer.status_code == 303 and answer.headers["location"] == "/login", path
    browser.cookies.set("tolom_session", "not-a-session")
    stale = browser.get("/")
    assert stale.status_code == 303
    assert any(
        c.startswith('tolom_session="";') or "Max-Age=0" in c
        for c in stale.headers.get_list("set-cookie")
    ), "the dead cookie is removed"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example",
        "/\\/evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "",
    ],
)
def test_next_never_leads_off_the_site(web: Web, target: str) -> None:
    assert safe_next(target) == "/"
    browser = web.browser()
    form = browser.get("/login", params={"next": target})
    assert 'name="next" value="/"' in form.text
    answer = log_in(browser, next_path=target)
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_next_keeps_a_local_path(web: Web) -> None:
    assert safe_next("/password?x=1&y=2") == "/password?x=1&y=2"
    answer = log_in(web.browser(), next_path="/password?x=1")
    assert answer.headers["location"] == "/password?x=1"


def test_logout_ends_the_session(web: Web) -> None:
    browser = web.signed_in()
    token = browser.cookies.get("tolom_session")
    answer = browser.post("/logout", data={"csrf": csrf_in(browser.get("/").text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert session_cookie(answer) is None
    assert browser.get("/").status_code == 303
    replay = web.browser()
    replay.cookies.set("tolom_session", token or "")
    assert replay.get("/").status_code == 303, "the old cookie is dead on the server too"
    assert audit_actions(web.engine)[-1] == "user.logout"


def test_a_disabled_user_and_an_expired_session_stop_working(web: Web) -> None:
    browser = web.signed_in()
    with web.engine.begin() as conn:
        users.change(conn, "aida", active=False)
    assert browser.get("/").status_code == 303
    assert session_cookie(log_in(web.browser())) is None, "nor can they log in again"

    add_user(web.engine, "bolot")
    later = web.signed_in("bolot")
    assert later.get("/").status_code == 200
    web.clock.now += timedelta(hours=web.settings.web_session_hours, seconds=1)
    assert later.get("/").headers["location"] == "/login?next=%2F"


# --- password and language --------------------------------------------------------------


def _change_password(browser: TestClient, old: str, new: str, repeat: str | None = None) -> Any:
    form = browser.get("/password")
    assert form.status_code == 200 and page_of(form) == "password"
    for name in ("old_password", "new_password", "repeat_password"):
        assert f'<label for="{name}">' in form.text and f'name="{name}"' in form.text
    return browser.post(
        "/password",
        data={
            "csrf": csrf_in(form.text),
            "old_password": old,
            "new_password": new,
            "repeat_password": new if repeat is None else repeat,
        },
    )


def test_password_change(web: Web) -> None:
    browser, elsewhere = web.signed_in(), web.signed_in()
    refusals = [
        (_change_password(browser, "неверный-пароль", NEW_PASSWORD), "Текущий пароль неверен."),
        (_change_password(browser, PASSWORD, "короткий"), "не короче 10 символов"),
        (_change_password(browser, PASSWORD, NEW_PASSWORD, "другой-пароль-123"), "не совпадают"),
    ]
    for answer, message in refusals:
        alert = re.search(r'<div role="alert" id="password-error".*?</div>', answer.text, re.S)
        assert answer.status_code == 200 and alert is not None and message in alert.group(0)
    assert web.sleeps == [1.0], "a wrong current password is answered later"
    assert user_row(web.engine).password_changed_at is not None

    changed = _change_password(browser, PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 303 and changed.headers["location"] == "/password?changed=1"
    assert session_cookie(changed) is not None
    done = browser.get(changed.headers["location"])
    assert "Пароль изменён" in text_of(done.text, "password-changed")
    assert browser.get("/").status_code == 200, "the new cookie works"
    assert elsewhere.get("/").status_code == 303, "every other session ended"
    assert session_cookie(log_in(web.browser(), password=PASSWORD)) is None
    assert session_cookie(log_in(web.browser(), password=NEW_PASSWORD)) is not None
    assert "user.change_password" in audit_actions(web.engine)


def test_language_switch(web: Web) -> None:
    browser = web.signed_in()

    def switch(language: str, next_path: str = "/") -> Any:
        page = browser.get(next_path)
        return browser.post(
            "/language", data={"csrf": csrf_in(page.text), "language": language, "next": next_path}
        )

    answer = switch("ky", "/password")
    assert answer.status_code == 303 and answer.headers["location"] == "/password"
    kyrgyz = browser.get("/")
    assert '<html lang="ky">' in kyrgyz.text
    assert "Чыгуу" in kyrgyz.text and "Жыйынтык" in kyrgyz.text and "Выйти" not in kyrgyz.text
    assert user_row(web.engine).language == "ky"

    switch("en")
    english = browser.get("/")
    assert '<html lang="en">' in english.text
    assert ">Log out</button>" in english.text and "<h1>Dashboard</h1>" in english.text
    assert text_of(english.text, "current-role") == "operator"
    assert "No payments yet today." in english.text

    refused = switch("fr")
    assert refused.status_code == 400 and user_row(web.engine).language == "en"
    with web.engine.connect() as conn:
        [entry, *_] = audit.entries(conn, object_type="user", object_id="aida")
    assert (entry["action"], entry["before"], entry["after"]) == (
        "user.language",
        {"language": "ky"},
        {"language": "en"},
    )


def test_the_login_page_speaks_the_chosen_language(web: Web) -> None:
    assert "Log in to Tolom" in web.browser().get("/login?lang=en").text
    assert '<html lang="ru">' in web.browser().get("/login?lang=xx").text
    wrong = log_in(web.browser(), password="неверный-пароль", lang="ky")
    assert '<html lang="ky">' in wrong.text
    assert text_of(wrong.text, "login-error") == "Колдонуучунун аты же сырсөз туура эмес."


# --- roles ------------------------------------------------------------------------------


def test_the_role_guard(web: Web) -> None:
    extra = APIRouter(route_class=PageRoute)

    @extra.get("/test-cash")
    async def cash(session: Annotated[Session, Depends(may("cash"))]) -> Response:
        return PlainTextResponse(f"cash for {session.user.username}")

    web.app.include_router(extra)
    add_user(web.engine, "buh", role="accountant")
    add_user(web.engine, "audit", role="auditor", language="en")

    assert web.signed_in("aida").get("/test-cash").text == "cash for aida"
    refused = web.signed_in("buh").get("/test-cash")
    assert refused.status_code == 403 and page_of(refused) == "forbidden"
    assert "(бухгалтер)" in refused.text
    assert refused.headers["x-frame-options"] == "DENY"
    english = web.signed_in("audit").get("/test-cash")
    assert english.status_code == 403 and "Your role (auditor) may not do this" in english.text
    assert web.browser().get("/test-cash").headers["location"] == "/login?next=%2Ftest-cash"
    with pytest.raises(ValueError, match="unknown action"):
        may("everything")


# --- the dashboard ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dashboard_figures(web: Web, gateway: Gateway, settings: Settings) -> None:
    # 12:00 in Bishkek on 21 November 2026: the agents' business day of the payments below.
    web.clock.now = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    with web.engine.begin() as conn:
        endpoints.add(
            conn,
            name="crm",
            url=f"http://127.0.0.1:{_closed_port()}/hook",
            event_types="charge.awaiting_payment",
            actor="test",
            allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
        )
        key = apikeys.create(conn, name="desk", scopes=["write"])
    inn = add_customer(web.engine)
    assert gateway.pay("sochi", inn, "1510.00", txn_date="20261121100000")["result"] == 0
    assert gateway.pay("sochi", inn, "500.00", txn_date="20261121110000")["result"] == 0
    reversed_one = gateway.pay("sochi", inn, "70.00", txn_date="20261121113000")
    with web.engine.begin() as conn:
        reversal = payment_service.reverse(
            conn, int(reversed_one["prv_txn"]), "ошибка агента", "test"
        )
    assert reversal.outcome.name == "OK", reversal
    cash = web.browser().post(
        "/api/v1/manual-payments",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "channel": "cash_desk",
            "reference": "PKO-1",
            "service": "sochi",
            "account": inn,
            "amount": "250.00",
            "received_at": "2026-11-21T09:00:00+06:00",
        },
    )
    assert cash.status_code == 201, cash.text
    invoice = add_invoice(web.engine)
    total = format_amount(invoice.total)
    assert gateway.pay("eds", invoice.number, total, txn_date="20261120150000")["result"] == 0
    # An older payment is outside both days.
    assert gateway.pay("sochi", inn, "9.00", txn_date="20261119150000")["result"] == 0

    # A report charge waits (its customer has no money); its webhook dies (nobody listens).
    waiting_inn = add_customer(web.engine, name="ОсОО «Должник»")
    with web.engine.begin() as conn:
        charge = charges.create(
            conn,
            charges.ChargeRequest(
                client="apikey:sochi",
                idempotency_key="report-1",
                inn=waiting_inn,
                description="Отчёт",
                amount=15_000,
            ),
        )
    assert charge.status == "awaiting_payment"
    local = [ipaddress.ip_network("127.0.0.1/32")]  # the closed port: a connection refused
    failing = {"delivery_max_attempts": 1, "webhook_allowed_networks": local}
    Worker(settings.model_copy(update=failing), web.engine).run(once=True)

    # The invoice's signature, issued almost a year ago, expires within the warning days.
    with web.engine.begin() as conn:
        order_id = conn.execute(
            select(signature_orders.c.id).where(signature_orders.c.invoice_id == invoice.id)
        ).scalar_one()
        orders.start(conn, order_id)
        orders.issue(
            conn,
            order_id,
            validity_months=12,
            now=datetime(2025, 12, 1, 6, 0, tzinfo=UTC),
        )

    page = web.signed_in().get("/")
    assert page.status_code == 200
    html = page.text
    assert "Сегодня, 21.11.2026" in html and "Вчера, 20.11.2026" in html

    def som(text: str) -> str:
        return text.replace(" ", NBSP) + NBSP + "сом"

    assert table_rows(html, "today-agents") == {
        "optima": ("Агент optima optima", "2", som("2 010,00")),
        "cash_desk": ("Касса компании", "1", som("250,00")),
        "total": ("Итого", "3", som("2 260,00")),
    }
    assert table_rows(html, "today-services") == {
        "sochi": ("Пополнение баланса СОЧИ", "3", som("2 260,00")),
        "total": ("Итого", "3", som("2 260,00")),
    }
    invoice_total = money(invoice.total, "ru")
    assert table_rows(html, "yesterday-agents") == {
        "optima": ("Агент optima optima", "1", invoice_total),
        "total": ("Итого", "1", invoice_total),
    }
    assert table_rows(html, "yesterday-services")["eds"] == (
        "Оплата ЭЦП по счёту",
        "1",
        invoice_total,
    )
    assert text_of(html, "awaiting") == f"1 на сумму {som('150,00')}"
    assert text_of(html, "dead-deliveries") == "1"
    assert text_of(html, "expiring-signatures") == "1"

    # The same figures in English.
    browser = web.signed_in()
    browser.post("/language", data={"csrf": csrf_in(browser.get("/").text), "language": "en"})
    english = browser.get("/").text
    assert table_rows(english, "today-agents")["total"] == ("Total", "3", f"2,260.00{NBSP}KGS")
    assert text_of(english, "awaiting") == f"1 totalling 150.00{NBSP}KGS"


def test_an_empty_dashboard_says_so_in_words(web: Web) -> None:
    html = web.signed_in().get("/").text
    assert text_of(html, "today-empty") == "Сегодня платежей ещё не было."
    assert text_of(html, "yesterday-empty") == "Вчера платежей не было."
    assert text_of(html, "awaiting") == "Нет отчётов, ожидающих оплаты."
    assert text_of(html, "dead-deliveries") == "Все доставки идут без сбоев."
    assert web.settings.signature_expiry_warning_days == 30
    assert text_of(html, "expiring-signatures") == "В ближайшие 30 дней подписи не истекают."


# --- the catalogue, formats, templates, headers ----------------------------------------------


def test_amounts_and_moments_as_written_here() -> None:
    assert money(151_000, "ru") == f"1{NBSP}510,00{NBSP}сом"
    assert money(151_000, "ky") == f"1{NBSP}510,00{NBSP}сом"
    assert money(151_000, "en") == f"1,510.00{NBSP}KGS"
    assert money(0, "ru") == f"0,00{NBSP}сом"
    assert money(-5, "ru") == f"-0,05{NBSP}сом"
    assert money(123_456_789_012, "ru") == f"1{NBSP}234{NBSP}567{NBSP}890,12{NBSP}сом"
    with pytest.raises(TypeError):
        money(True, "ru")
    with pytest.raises(TypeError):
        money(1.5, "ru")  # type: ignore[arg-type]
    assert moment(datetime(2026, 11, 23, 8, 5, tzinfo=UTC)) == "23.11.2026 14:05"
    assert moment(datetime(2026, 11, 23, 8, 5)) == "23.11.2026 14:05"  # SQLite: naive UTC
    assert day(datetime(2026, 11, 23, 19, 0, tzinfo=UTC)) == "24.11.2026"  # 01:00 in Bishkek
    assert day(date(2026, 1, 2)) == "02.01.2026"
    assert translator("ky").number(1234567) == f"1{NBSP}234{NBSP}567"
    assert translator("xx").language == "ru"


def _samples() -> dict[str, dict[str, Any]]:
    """A context for every page template, with every branch that shows text."""
    user = users.User(1, "aida", NAME, "accountant", "ru", True)
    session = Session(user, "csrf-token", datetime(2026, 11, 23, tzinfo=UTC))
    line = Line("optima", "Агент optima", "gateway", 1234, 151_000)
    desk = Line("cash_desk", "Касса компании", "cash_desk", 1, 100)
    service = Line("sochi", "sochi", "service", 1235, 151_100)
    figures = Dashboard(
        today=DayTotals(date(2026, 11, 23), [line, desk], [service]),
        yesterday=DayTotals(date(2026, 11, 22), [], []),
        awaiting_count=2,
        awaiting_total=30_000,
        dead_deliveries=0,
        expiring_signatures=3,
        expiry_days=30,
    )
    common = {"session": session, "title": "Tolom"}
    return {
        "web/login.html": {
            "session": None,
            "title": "Tolom",
            "page": "login",
            "login_csrf": "x",
            "error": "ошибка",
            "username": "aida",
        },
        "web/password.html": {
            **common,
            "page": "password",
            "errors": ["ошибка"],
            "changed": True,
            "min_length": 10,
        },
        "web/dashboard.html": {**common, "page": "dashboard", "d": figures},
        "web/message.html": {**common, "page": "forbidden", "text": "текст"},
        "web/base.html": {**common, "page": "dashboard"},
        **_payment_samples(common),
        **_simulator_samples(common),
        **_user_samples(common),
        **_audit_samples(common),
        **_invoice_samples(common),
        **_agent_samples(common),
        **_cash_samples(common),
        **_customer_samples(common),
        **_order_samples(common),
        **_application_samples(common),
        **_event_samples(common),
        **_reconciliation_samples(common),
    }


def _order_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_orders import template_samples

    return template_samples(common)


def _application_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_applications import template_samples

    return template_samples(common)


def _reconciliation_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_reconciliation import template_samples

    return template_samples(common)


def _event_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_events import template_samples

    return template_samples(common)


def _customer_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_customers import template_samples

    return template_samples(common)


def _cash_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_cash import template_samples

    return template_samples(common)


def _agent_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_agents import template_samples

    return template_samples(common)


def _invoice_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_invoices import template_samples

    return template_samples(common)


def _user_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_users import template_samples

    return template_samples(common)


def _audit_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tests.adapters.web.test_web_audit import template_samples

    return template_samples(common)


def _payment_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The payments list and one payment, with every branch that shows text."""
    from tolom.payments import records
    from tolom.web import payments as payment_pages

    moment_ = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    payment = records.PaymentRecord(
        id=1001,
        agent="cash",
        agent_kind="cash_desk",
        txn_id="PKO-1",
        service="eds",
        account="E-1",
        amount=151_000,
        status="reversed",
        txn_date=moment_,
        txn_date_raw="20261123140000",
        business_date=date(2026, 11, 23),
        created_at=moment_,
        entry_id=1,
        invoice_number="E-1",
        reversal=records.Reversal("ошибка", "user:aida", moment_, 2),
        manual=records.ManualDetails("bank", "user:aida", "42151410", "PP-1", "Иванов", "прим."),
    )
    form = payment_pages.ListForm.read(
        {"q": "E-1", "agent": "cash", "service": "eds", "status": "reversed"}
        | {"from": "2026-11-01", "to": "2026-11-30"}
    )
    posting = records.PostingLine(1, "payment", "платёж", moment_, "clearing:cash", "x", 100)
    logged = records.LoggedRequest(1, moment_, "osmp", "127.0.0.1", "GET", "pay", "[]", 200, "<r/>")
    detail = payment_pages.Detail(payment, [posting], [logged], "https://pay.example.kg/r/x")
    listing = {
        "form": form,
        "agents": [("cash", "Касса")],
        "services": ("sochi", "eds"),
        "statuses": ("accepted", "reversed"),
        "more": "before=1",
        "first_page": False,
        "filters": "q=E-1",
        "may_export": True,
    }
    shown = {"params_text": payment_pages.params_text, "reversed_now": True, "error": "нет"}
    return {
        "web/payments.html": {**common, "page": "payments", "rows": [payment], **listing},
        "web/payment.html": {
            **common,
            "page": "payment",
            "d": detail,
            "may_reverse": True,
            "reason": "",
            **shown,
        },
    }


def _simulator_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The wallet simulator on MegaPay's «Оплата» screen: a favourite with an autopay and
    its last automatic run, a journey's requests and its receipt, a problem and a notice."""
    moment_ = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    body = (
        "<response><osmp_txn_id>17</osmp_txn_id><prv_txn>5</prv_txn><sum>100.00</sum>"
        '<result>0</result><comment>OK</comment><fields><field1 name="name">Тест</field1>'
        "</fields></response>"
    )
    params = (("command", "pay"), ("txn_id", "17"))
    exchanges = [
        journeys.Exchange(
            "check", "GET", "http://x/gateway/osmp/sochi", params, "Basic sb:•", 200, body
        ),
        journeys.Exchange(
            "pay",
            "GET",
            "http://x/gateway/osmp/sochi",
            params,
            "Basic sb:•",
            None,
            "",
            "ConnectError",
        ),
    ]
    wallet = journeys.WALLETS["megapay"]
    receipt = journeys.Receipt(
        "megapay", journeys.PAYEE, "sochi", "99999000000000", "Тест", "100.00", "17", "5", moment_
    )
    journey = journeys.Journey(
        wallet, "sb", "sochi", "99999000000000", 10_000, tuple(exchanges), receipt
    )
    saved = favourites.Favourite(
        7,
        "megapay",
        "sb",
        "sochi",
        "99999000000000",
        10_000,
        7,
        date(2026, 11, 23),
        2,
        "17",
        "aida",
        None,
    )
    return {
        "web/simulator.html": {
            **common,
            "page": "simulator",
            "here": "/simulator",
            "step": simulator_pages.Step(wallet="megapay", agent="sb", screen="payments"),
            "agent": "sb",
            "agents": [
                queries.SandboxAgent("sb", "Песочница", True, True),
                queries.SandboxAgent("old", "Старый", True, False),
                queries.SandboxAgent("off", "Выключен", False, True),
            ],
            "wallet": wallet,
            "wallets": journeys.WALLETS,
            "services": journeys.SERVICES,
            "exchanges": exchanges,
            "trail": "[]",
            "check": exchanges[0].answer,
            "journey": journey,
            "problem": "ошибка",
            "notice": "готово",
            "favourites": [saved],
            "last_runs": {7: autopay.LastRun(moment_, "17", "refused", 242)},
            "autopay_days": favourites.AUTOPAY_DAYS,
            "today": date(2026, 11, 23),
            "base_url": "http://127.0.0.1:8000",
            "amount_text": format_amount,
        }
    }


@pytest.mark.parametrize("language", ["ru", "ky", "en"])
def test_every_template_renders_in_every_language(language: str) -> None:
    samples = _samples()
    assert set(pages.template_names()) == set(samples), "a new template needs a sample here"
    t = translator(language)
    for name, context in samples.items():
        html = pages.render_text(name.removeprefix("web/"), t=t, **context)
        assert f'<html lang="{language}">' in html and 'href="#main"' in html, name
        assert '<main id="main" data-page=' in html
        # Every input has a label (hidden ones carry no text a person reads).
        inputs = re.findall(r"<input ([^>]*)>", html)
        for attributes in inputs:
            if 'type="hidden"' in attributes:
                continue
            input_id = re.search(r'id="([^"]+)"', attributes)
            assert input_id and f'<label for="{input_id.group(1)}">' in html, (name, attributes)
    dashboard = pages.render_text("dashboard.html", t=t, **samples["web/dashboard.html"])
    assert t.money(151_000) in dashboard and t("role.accountant") in dashboard


def test_security_headers_on_every_kind_of_page(web: Web) -> None:
    browser = web.browser()
    answers = [browser.get("/login"), browser.get("/"), browser.post("/login", data={})]
    signed = web.signed_in()
    answers += [signed.get("/"), signed.get("/password"), signed.post("/logout", data={})]
    for answer in answers:
        headers = answer.headers
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"
    # The stylesheet the pages use is served from this site.
    css = browser.get("/static/web/tolom.css")
    assert css.status_code == 200 and ":focus-visible" in css.text


def test_pages_are_not_in_the_api_document(app: FastAPI) -> None:
    paths = set(app.openapi()["paths"])
    assert not paths & {"/", "/login", "/logout", "/password", "/language"}


def test_every_event_customers_are_told_of_has_a_name_on_the_customer_card() -> None:
    from tolom.events.outbox import NOTIFIED
    from tolom.web import labels

    assert {str(event) for event in NOTIFIED} <= set(labels.CUSTOMER_EVENT)
