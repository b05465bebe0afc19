"""U+0000 in the back office: one guard refuses it in any form field (name or value) and
any query parameter, on every page alike (PostgreSQL text cannot hold it, so it must never
reach a page body on either database). Uploaded files are bytes the parser judges.
"""

from __future__ import annotations

import pkgutil
import re
from importlib import import_module
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

import tolom.web as web_package
from tests.adapters.web.test_web import Web, add_user, csrf_in, page_of, user_row
from tests.adapters.web.test_web import web as web
from tests.factories import Gateway
from tolom.db.schema import audit_log
from tolom.web.auth import PageRoute

ROLES = ("admin", "operator", "accountant")


def _audit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def _routes(method: str) -> list[str]:
    """Every back-office page answering `method` (each module of `tolom.web` with a
    router), its path parameters filled in."""
    modules = [
        import_module(f"tolom.web.{m.name}") for m in pkgutil.iter_modules(web_package.__path__)
    ]
    paths = [
        re.sub(r"\{[^}]+\}", "1", route.path_format)
        for module in modules
        if isinstance(getattr(module, "router", None), APIRouter)
        for route in module.router.routes
        if isinstance(route, PageRoute) and method in route.methods
    ]
    assert paths, f"no {method} pages found"
    return sorted(set(paths))


def _browsers(web: Web) -> dict[str, tuple[TestClient, str]]:
    """One signed-in browser per role that changes something, with its CSRF token."""
    found = {}
    for role in ROLES:
        add_user(web.engine, username=role, role=role)
        browser = web.signed_in(role)
        found[role] = (browser, csrf_in(browser.get("/").text))
    return found


def _refused(answer: Any) -> bool:
    return answer.status_code == 400 and page_of(answer) == "bad-request"


def test_every_post_refuses_a_nul_in_any_field_and_changes_nothing(web: Web) -> None:
    browsers = _browsers(web)
    before = _audit_count(web.engine)
    posts = _routes("POST")
    assert "/logout" in posts and "/customers/new" in posts and "/reconciliation/upload" in posts
    for path in [p for p in posts if p != "/login"]:
        for form in ({"note": "a\x00b"}, {"no\x00te": "x"}, {"events": ["ok", "a\x00"]}):
            allowed = 0
            for role, (browser, csrf) in browsers.items():
                answer = browser.post(path, data={"csrf": csrf, **form})
                if answer.status_code == 403 and page_of(answer) == "forbidden":
                    continue  # this role may not: the role guard answers first
                allowed += 1
                assert _refused(answer), (path, role, form, answer.status_code)
                assert "\x00" not in answer.text
            assert allowed, f"no role may post to {path}"
    assert _audit_count(web.engine) == before
    for role, (browser, _csrf) in browsers.items():
        assert browser.get("/").status_code == 200, f"{role} is still signed in"


def test_the_login_form_refuses_a_nul_and_counts_no_failure(web: Web) -> None:
    browser = web.browser()
    form = browser.get("/login")
    for data in ({"username": "ai\x00da", "password": "x"}, {"password": "a\x00"}):
        answer = browser.post("/login", data={"csrf": csrf_in(form.text), **data})
        assert _refused(answer), data
        assert "tolom_session=" not in answer.headers.get("set-cookie", "")
    assert user_row(web.engine).failed_logins == 0 and web.sleeps == []


def test_every_page_refuses_a_nul_in_its_query(web: Web) -> None:
    browsers = _browsers(web)
    for path in _routes("GET"):
        for params in ({"q": "a\x00b"}, {"x\x00": "1"}):
            browser = browsers["admin"][0]
            answer = browser.get(path, params=params)
            assert _refused(answer), (path, params, answer.status_code)
    # Before a session, too: the login page's `next`.
    assert _refused(web.browser().get("/login", params={"next": "/\x00"}))


def test_an_uploaded_file_is_judged_by_the_parser_not_the_guard(web: Web, gateway: Gateway) -> None:
    browser, csrf = _browsers(web)["accountant"]
    content = b"1\t22.11.2026\t10:00:00\t0123\x0045\t5.00\nTotal: 1 5.00\n"
    answer = browser.post(
        "/reconciliation/upload",
        data={"csrf": csrf, "agent": "optima", "day": ""},
        files={"file": ("reestr.txt", content, "text/plain")},
    )
    assert answer.status_code == 422 and page_of(answer) != "bad-request"
    refused = browser.post(
        "/reconciliation/upload",
        data={"csrf": csrf, "agent": "opt\x00ima", "day": ""},
        files={"file": ("reestr.txt", b"x", "text/plain")},
    )
    assert _refused(refused)
