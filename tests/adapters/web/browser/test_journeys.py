"""Journeys through the back office in a real browser (see conftest.py for the set-up).

They rely on the agreed page contract: `form#login` with labelled `username` and
`password`, `#login-error` (role alert), `main[data-page]`, `#current-user`, `form#logout`,
`form#language` with buttons `name=language value=ru|ky|en`. Visible words come from the
pages' own catalogue (the gettext catalogues, `tolom.texts`), so a reworded text does not break a journey
but a text missing from the page does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.adapters.web.browser.conftest import Account, LiveServer, Shots
from tests.factories import add_customer
from tolom import apikeys
from tolom.texts import texts

RU, KY, EN = texts("ru"), texts("ky"), texts("en")
SESSION_COOKIE = "tolom_session"
LOGIN_FOR_HOME = re.compile(r"/login\?next=(%2F|/)$")  # where "/" sends a stranger


def dashboard(page: Page) -> Locator:
    return page.locator("main[data-page=dashboard]")


def fill_login(page: Page, username: str, password: str) -> None:
    """The login form, found as a person finds it: by its labels and its button."""
    form = page.locator("form#login")
    form.get_by_label(RU("login.username"), exact=True).fill(username)
    form.get_by_label(RU("login.password"), exact=True).fill(password)


def submit_login(page: Page) -> None:
    page.locator("form#login").get_by_role("button", name=RU("login.submit")).click()


def log_in(page: Page, account: Account) -> None:
    page.goto("/login")
    fill_login(page, account.username, account.password)
    submit_login(page)
    expect(dashboard(page)).to_be_visible()


def session_cookie(page: Page) -> dict[str, object] | None:
    found = [c for c in page.context.cookies() if c.get("name") == SESSION_COOKIE]
    return dict(found[0]) if found else None


def tab_to(page: Page, target: Locator, *, most: int = 25) -> None:
    """Press Tab until `target` has the focus, as a keyboard user would."""
    for _ in range(most):
        if target.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    expect(target).to_be_focused()  # fails, saying which element never got the focus


def test_browser_reaches_the_live_server(page: Page, shot: Shots, live_server: LiveServer) -> None:
    """The infrastructure itself: Chromium, the live server and its database answer."""
    page.goto("/docs")
    expect(page).to_have_title("Tolom API")
    expect(page.get_by_role("heading", name="Tolom")).to_be_visible()
    shot("api-docs", full_page=False)  # the whole of it is 6000 px tall
    assert page.request.get("/health").ok
    ready = page.request.get("/ready")
    assert ready.ok
    assert ready.json()["database"] == "ok" and ready.json()["migrations"] == "current"


def test_operator_logs_in_and_sees_the_dashboard(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    operator = live_server.accounts["operator"]
    page.goto("/")
    expect(page).to_have_url(LOGIN_FOR_HOME)
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("heading", name=RU("login.heading"))).to_be_visible()
    shot("login-page")

    fill_login(page, operator.username, operator.password)
    shot("credentials-typed")
    submit_login(page)

    expect(page).to_have_url(f"{live_server.url}/")
    expect(dashboard(page)).to_be_visible()
    expect(page.locator("#current-user")).to_have_text(operator.display_name)
    expect(page.get_by_role("heading", name=RU("dashboard.title"), exact=True)).to_be_visible()
    shot("dashboard")

    cookie = session_cookie(page)
    assert cookie is not None, "no session cookie after logging in"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # session_cookie_secure is off for http://127.0.0.1


def test_wrong_password_is_refused(page: Page, shot: Shots, live_server: LiveServer) -> None:
    user = live_server.new_user("operator")  # its failed login touches no other journey
    page.goto("/login")
    fill_login(page, user.username, "not-the-password")
    submit_login(page)

    error = page.locator("#login-error")
    expect(error).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text(RU("login.bad_credentials"))
    expect(page).to_have_url(re.compile(r"/login(\?.*)?$"))
    expect(page.locator("form#login")).to_be_visible()
    # The refused password is not sent back to the browser in the page.
    expect(page.locator("form#login [name=password]")).to_have_value("")
    assert session_cookie(page) is None
    shot("refused")

    page.goto("/")
    expect(page).to_have_url(LOGIN_FOR_HOME)

    # The right password on the refused page's form still works (its CSRF token is good).
    page.goto("/login")
    fill_login(page, user.username, "wrong-again-123")
    submit_login(page)
    expect(error).to_be_visible()
    fill_login(page, user.username, user.password)
    submit_login(page)
    expect(dashboard(page)).to_be_visible()
    expect(page.locator("#current-user")).to_have_text(user.display_name)
    shot("dashboard-after-retry")


def test_log_out(page: Page, shot: Shots, live_server: LiveServer) -> None:
    operator = live_server.accounts["operator"]
    log_in(page, operator)
    shot("dashboard")

    page.locator("form#logout").get_by_role("button", name=RU("header.logout")).click()
    expect(page).to_have_url(f"{live_server.url}/login")
    expect(page.locator("form#login")).to_be_visible()
    expect(page.locator("#current-user")).to_have_count(0)
    shot("logged-out")

    page.goto("/")
    expect(page).to_have_url(LOGIN_FOR_HOME)
    expect(dashboard(page)).to_have_count(0)
    shot("home-asks-to-log-in")


def test_a_page_asked_for_before_login_opens_after_it(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    page.goto("/password")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)password$"))
    shot("login-page")
    operator = live_server.accounts["operator"]
    fill_login(page, operator.username, operator.password)
    submit_login(page)
    expect(page).to_have_url(f"{live_server.url}/password")
    expect(page.locator("main[data-page=password]")).to_be_visible()
    shot("password-page")


def test_language_switches_to_kyrgyz_and_english(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    html = page.locator("html")
    # Before login: the login page's own language links.
    page.goto("/login")
    expect(html).to_have_attribute("lang", "ru")
    page.get_by_role("link", name="Кыргызча").click()
    expect(html).to_have_attribute("lang", "ky")
    expect(page.get_by_label(KY("login.username"), exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name=KY("login.heading"))).to_be_visible()
    shot("login-in-kyrgyz")

    # After login the language is the user's own; this user's choice touches no one else.
    user = live_server.new_user("operator")
    page.goto("/login")
    fill_login(page, user.username, user.password)
    submit_login(page)
    expect(dashboard(page)).to_be_visible()
    expect(html).to_have_attribute("lang", "ru")
    switcher = page.locator("form#language")
    nav = page.get_by_role("navigation", name=RU("nav.label"))
    expect(nav.get_by_role("link", name=RU("nav.dashboard"))).to_be_visible()
    shot("dashboard-in-russian")

    switcher.get_by_role("button", name="Кыргызча").click()
    expect(html).to_have_attribute("lang", "ky")
    expect(dashboard(page)).to_be_visible()
    expect(page.get_by_role("navigation", name=KY("nav.label"))).to_be_visible()
    expect(page.get_by_role("link", name=KY("nav.dashboard"))).to_be_visible()
    expect(page.get_by_role("button", name=KY("header.logout"))).to_be_visible()
    shot("dashboard-in-kyrgyz")

    switcher.locator("button[name=language][value=en]").click()
    expect(html).to_have_attribute("lang", "en")
    expect(page.get_by_role("link", name=EN("nav.dashboard"))).to_be_visible()
    expect(page.get_by_role("button", name=EN("header.logout"))).to_be_visible()
    expect(page.get_by_role("button", name=KY("header.logout"))).to_have_count(0)
    shot("dashboard-in-english")

    # The choice is the user's: it stays after a reload.
    page.reload()
    expect(html).to_have_attribute("lang", "en")
    expect(page.locator("#current-user")).to_have_text(user.display_name)

    switcher.locator("button[name=language][value=ru]").click()
    expect(html).to_have_attribute("lang", "ru")
    expect(page.get_by_role("button", name=RU("header.logout"))).to_be_visible()
    shot("back-in-russian")


def test_keyboard_only_login_and_logout(page: Page, shot: Shots, live_server: LiveServer) -> None:
    """Accessibility smoke: everything reachable with Tab and done with Enter."""
    operator = live_server.accounts["operator"]
    page.goto("/login")
    username = page.get_by_label(RU("login.username"), exact=True)
    password = page.get_by_label(RU("login.password"), exact=True)
    submit = page.locator("form#login").get_by_role("button", name=RU("login.submit"))

    tab_to(page, username)
    page.keyboard.type(operator.username)
    page.keyboard.press("Tab")
    expect(password).to_be_focused()
    page.keyboard.type(operator.password)
    page.keyboard.press("Tab")
    expect(submit).to_be_focused()
    shot("submit-focused")
    page.keyboard.press("Enter")

    expect(dashboard(page)).to_be_visible()
    expect(page.locator("#current-user")).to_have_text(operator.display_name)
    shot("dashboard")

    logout = page.locator("form#logout").get_by_role("button", name=RU("header.logout"))
    tab_to(page, logout)
    shot("logout-focused")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/login")
    shot("logged-out")


# --- payments -------------------------------------------------------------------------------


def _paid_customer(live_server: LiveServer, amount: str = "321.00") -> tuple[str, int]:
    """A new customer with one cash-desk payment, taken through the operator API."""
    inn = add_customer(live_server.engine, name="ОсОО «Браузер»")
    with live_server.engine.begin() as conn:
        key = apikeys.create(conn, name=f"desk-{inn}", scopes=["write"])
    answer = httpx.post(
        f"{live_server.url}/api/v1/manual-payments",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "channel": "cash_desk",
            "reference": f"PKO-{inn}",
            "service": "sochi",
            "account": inn,
            "amount": amount,
            "received_at": datetime.now(UTC).isoformat(),
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return inn, int(answer.json()["id"])


def test_accountant_finds_a_payment_by_inn_and_reverses_it(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    inn, number = _paid_customer(live_server)
    log_in(page, live_server.accounts["accountant"])
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.payments")
    ).click()
    expect(page.locator("main[data-page=payments]")).to_be_visible()
    page.get_by_label(RU("payments.search")).fill(inn)
    shot("search-typed")
    page.get_by_role("button", name=RU("payments.apply")).click()
    rows = page.locator("table#payments tbody tr")
    expect(rows).to_have_count(1)
    shot("found-by-inn")

    rows.first.get_by_role("link", name=str(number)).click()
    expect(page.locator("main[data-page=payments-one]")).to_be_visible()
    expect(page.locator("#f-account")).to_have_text(inn)
    shot("payment")

    page.get_by_role("button", name=RU("payment.reverse_submit")).click()
    # The reason is required: the browser does not send the form without it.
    expect(page.locator("main[data-page=payments-one]")).to_be_visible()
    page.get_by_label(RU("payment.reason"), exact=True).fill("Ошибка кассира, деньги возвращены")
    shot("reason-typed")
    page.get_by_role("button", name=RU("payment.reverse_submit")).click()
    expect(page.locator("#payment-reversed")).to_have_text(RU("payment.reversed_now"))
    expect(page.locator("#reversal-reason")).to_have_text("Ошибка кассира, деньги возвращены")
    expect(page.locator("#f-status")).to_have_attribute("data-status", "reversed")
    expect(page.locator("form#reverse")).to_have_count(0)
    shot("reversed")


def test_operator_sees_no_reversal_form_and_a_direct_post_is_refused(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    inn, number = _paid_customer(live_server, "45.00")
    log_in(page, live_server.accounts["operator"])
    page.goto(f"/payments?q={inn}")
    page.locator("table#payments").get_by_role("link", name=str(number)).click()
    expect(page.locator("main[data-page=payments-one]")).to_be_visible()
    expect(page.locator("form#reverse")).to_have_count(0)
    shot("no-reversal-form")

    csrf = page.locator("form#logout input[name=csrf]").get_attribute("value")
    answer = page.request.post(
        f"/payments/{number}/reverse", form={"csrf": csrf or "", "reason": "попытка"}
    )
    assert answer.status == 403
    page.reload()
    expect(page.locator("#f-status")).to_have_attribute("data-status", "accepted")
    shot("still-accepted")
