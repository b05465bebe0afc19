"""Journeys through the users pages and the audit log in a real browser: an administrator
creates an operator, who then logs in with the password shown once; an auditor finds that
change in the audit log and has no form there to change anything."""

from __future__ import annotations

import secrets

from playwright.sync_api import Page, expect

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, dashboard, fill_login, log_in, submit_login


def _log_out(page: Page) -> None:
    page.locator("form#logout").get_by_role("button", name=RU("header.logout")).click()
    expect(page.locator("form#login")).to_be_visible()


def test_an_admin_creates_an_operator_who_then_logs_in(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    username = f"op-{secrets.token_hex(3)}"
    log_in(page, live_server.accounts["admin"])
    page.get_by_role("link", name=RU("nav.users"), exact=True).click()
    expect(page.locator("main[data-page=users]")).to_be_visible()
    expect(page.locator("#users tr[data-username=admin]")).to_be_visible()
    shot("users")

    page.get_by_role("link", name=RU("users.new_link")).click()
    form = page.locator("form#new-user-form")
    form.get_by_label(RU("users.username"), exact=True).fill(username)
    form.get_by_label(RU("users.display_name"), exact=True).fill("Жылдыз Операторова")
    form.get_by_label(RU("users.role"), exact=True).select_option("operator")
    # Both password fields left empty: Tolom makes one up and shows it once.
    shot("new-user-typed")
    form.get_by_role("button", name=RU("users.new.submit")).click()

    expect(page.locator("main[data-page=users-secret]")).to_be_visible()
    expect(page.locator("#secret-warning")).to_contain_text("один раз")
    password = page.locator("#secret-password").inner_text().strip()
    assert len(password) == 19
    shot("password-shown-once")
    page.get_by_role("link", name=RU("users.secret.done")).click()
    expect(page.locator("#f-role")).to_have_text(RU("role.operator"))
    expect(page.locator("main")).not_to_contain_text(password)
    shot("the-new-user")
    _log_out(page)

    fill_login(page, username, password)
    submit_login(page)
    expect(dashboard(page)).to_be_visible()
    expect(page.locator("#current-user")).to_have_text("Жылдыз Операторова")
    expect(page.locator("#current-role")).to_have_text(RU("role.operator"))
    shot("the-operator-is-in")
    # An operator reads the users but gets no form to change them.
    page.goto(f"/users/{username}")
    expect(page.locator("#f-username")).to_have_text(username)
    expect(page.locator("main form")).to_have_count(0)


def test_an_auditor_finds_a_change_in_the_audit_log_and_cannot_change_it(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    target = live_server.new_user("operator")
    log_in(page, live_server.accounts["admin"])
    page.goto(f"/users/{target.username}")
    change = page.locator("form#change-user")
    change.get_by_label(RU("users.role"), exact=True).select_option("accountant")
    change.get_by_role("button", name=RU("users.change.submit")).click()
    expect(page.locator("#user-done")).to_have_text(RU("users.done.changed"))
    _log_out(page)

    log_in(page, live_server.accounts["auditor"])
    page.get_by_role("link", name=RU("nav.audit"), exact=True).click()
    expect(page.locator("main[data-page=audit]")).to_be_visible()
    shot("audit-log")
    filters = page.locator("form#audit-filters")
    filters.get_by_label(RU("audit.action"), exact=True).fill("user.role")
    filters.get_by_label(RU("audit.object_id"), exact=True).fill(target.username)
    shot("filter-typed")
    filters.get_by_role("button", name=RU("audit.apply")).click()

    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("user:admin")
    expect(rows.first.get_by_role("link", name=target.username)).to_have_attribute(
        "href", f"/users/{target.username}"
    )
    expect(page.locator("main form[method=post]")).to_have_count(0)
    expect(page.locator("#export-csv")).to_be_visible()  # auditors may download the log
    shot("found")

    rows.first.get_by_role("link").first.click()
    expect(page.locator("main[data-page=audit-one]")).to_be_visible()
    expect(page.locator("#changed-keys")).to_have_text(RU("audit.changed").format(keys="role"))
    expect(page.locator("#before mark")).to_contain_text('"role": "operator"')
    expect(page.locator("#after mark")).to_contain_text('"role": "accountant"')
    expect(page.locator("main form")).to_have_count(0)
    shot("before-and-after")

    page.locator("#object-link").click()
    expect(page.locator("#f-role")).to_have_text(RU("role.accountant"))
    expect(page.locator("main form")).to_have_count(0)
    shot("the-user-read-only")
