"""The back office's reconciliation pages: the calendar of agent-days, the upload of a
registry (good, bad, the same again, a closed day), one day with its discrepancies resolved
by each action (audited), closing and reopening (admin only), the downloads, every role's
permission, CSRF, bad input and hostile text (both databases)."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tests.core.reconciliation.test_reconciliation import registry
from tests.factories import Gateway, add_customer
from tolom.db.schema import audit_log, discrepancies, payments, reconciliation_days, registries
from tolom.reconciliation import days, formats, reading
from tolom.reconciliation.registries import agent_for_registry

DAY = date(2026, 11, 21)
BASE = "/reconciliation/optima/2026-11-21"


def _planted(gateway: Gateway, engine: Engine) -> dict[str, Any]:
    """As `tests.core.reconciliation.test_reconciliation.planted`: five payments of ours on 21.11.2026 and a
    registry with one discrepancy of every class."""
    inn, other = add_customer(engine), add_customer(engine)
    for txn, amount, at in (
        ("101", "100.00", "20261121090000"),
        ("102", "200.00", "20261121100000"),
        ("103", "300.00", "20261121110000"),
        ("104", "400.00", "20261121120000"),
        ("105", "50.00", "20261121235959"),
    ):
        assert gateway.pay("sochi", inn, amount, txn_id=txn, txn_date=at)["result"] == 0
    content = registry(
        ("101", "21.11.2026 09:00:00", inn, "100.00"),
        ("0102", "21.11.2026 10:00:00", inn, "250.00"),
        ("103", "21.11.2026 11:00:00", other, "300.00"),
        ("106", "21.11.2026 13:00:00", inn, "70.00"),
        ("101", "21.11.2026 09:00:00", inn, "100.00"),
        ("105", "21.11.2026 23:59:59", inn, "50.00"),
    )
    return {"inn": inn, "other": other, "content": content}


def _staff(web: Web, role: str) -> TestClient:
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _upload(
    browser: TestClient,
    content: bytes,
    *,
    agent: str = "optima",
    day: str = "",
    name: str = "reestr-21.11.txt",
    csrf: str | None = None,
) -> Any:
    token = csrf if csrf is not None else csrf_in(browser.get("/reconciliation").text)
    return browser.post(
        "/reconciliation/upload",
        data={"csrf": token, "agent": agent, "day": day},
        files={"file": (name, content, "text/plain")},
    )


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _by_kind(engine: Engine) -> dict[str, days.Discrepancy]:
    with engine.connect() as conn:
        found = days.day(conn, "optima", DAY)
        assert found.registry_id is not None
        return {d.kind: d for d in days.discrepancies_of(conn, found.registry_id)}


def _state(engine: Engine) -> str:
    with engine.connect() as conn:
        return days.day(conn, "optima", DAY).state


def _cell(html: str, day: str) -> tuple[str, str]:
    found = re.search(
        rf'data-day="{day}" data-state="([a-z]+)">\s*<a [^>]*>([^<]*)</a>', html, re.S
    )
    assert found is not None, day
    return found.group(1), found.group(2)


def _resolve(browser: TestClient, number: int, action: str, reason: str, **extra: str) -> Any:
    token = extra.pop("csrf", None) or csrf_in(browser.get(BASE).text)
    return browser.post(
        f"{BASE}/discrepancies/{number}",
        data={"csrf": token, "action": action, "reason": reason},
    )


def _post(browser: TestClient, path: str, **data: str) -> Any:
    token = csrf_in(browser.get(BASE).text)
    return browser.post(f"{BASE}/{path}", data={"csrf": token, **data})


def test_the_calendar_shows_each_state_in_words(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    assert (
        gateway.pay("sochi", planted["inn"], "10.00", txn_id="201", txn_date="20261120100000")[
            "result"
        ]
        == 0
    )
    browser = _staff(web, "accountant")
    page = browser.get("/reconciliation?month=2026-11")
    assert page.status_code == 200 and page_of(page) == "reconciliation"
    assert _cell(page.text, "2026-11-20") == ("waiting", "ждём реестр")
    assert _cell(page.text, "2026-11-21") == ("waiting", "ждём реестр")
    assert _cell(page.text, "2026-11-19") == ("none", "—")
    assert 'href="/reconciliation/optima/2026-11-21"' in page.text
    assert 'id="recon-legend"' in page.text and "можно закрыть — " in page.text
    assert 'href="/reconciliation?month=2026-10"' in page.text
    assert 'href="/reconciliation?month=2026-12"' in page.text
    assert _upload(browser, planted["content"]).status_code == 303
    page = browser.get("/reconciliation?month=2026-11")
    assert _cell(page.text, "2026-11-21") == ("open", "расхождения: 5")
    for d in _by_kind(web.engine).values():
        days.resolve(web.engine, d.id, d.actions[-1].value, "ok", actor="user:x")
    assert _cell(browser.get("/reconciliation?month=2026-11").text, "2026-11-21") == (
        "ready",
        "можно закрыть",
    )
    days.close(web.engine, "optima", DAY, actor="user:x")
    assert _cell(browser.get("/reconciliation?month=2026-11").text, "2026-11-21") == (
        "closed",
        "закрыт",
    )
    # The default month is the current one in Bishkek.
    here = web.clock.now.astimezone(ZoneInfo("Asia/Bishkek"))
    assert f'id="this-month">{here:%m.%Y}<' in browser.get("/reconciliation").text
    for bad in ("2026-13", "2026-1", "abcd-ef", "1999-12", "2026-11\x00"):
        assert browser.get("/reconciliation", params={"month": bad}).status_code == 400


def test_upload_imports_and_opens_the_day(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    browser = _staff(web, "accountant")
    answer = _upload(browser, planted["content"])
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{BASE}?imported=1"
    page = browser.get(answer.headers["location"])
    assert page.status_code == 200 and page_of(page) == "reconciliation-day"
    assert "Реестр «reestr-21.11.txt» загружен: строк — 6" in text_of(page.text, "recon-notice")
    assert text_of(page.text, "registry-by") == "user:accountant"
    assert page.text.count('<tr id="d-') == 5
    assert "Расходится сумма" in page.text and "Нет у нас" in page.text
    assert text_of(page.text, "difference") == "-180,00\u00a0сом"
    assert audit_actions(web.engine)[-1] == "registry.import"
    with web.engine.connect() as conn:
        line = conn.execute(select(audit_log).where(audit_log.c.action == "registry.import")).one()
    assert line.actor == "user:accountant"
    # The same file again: nothing changes, the page says so.
    before = _count(web.engine, registries), audit_actions(web.engine)
    again = _upload(browser, planted["content"])
    assert again.headers["location"] == f"{BASE}?replayed=1"
    assert "уже загружен" in text_of(browser.get(again.headers["location"]).text, "recon-notice")
    assert (_count(web.engine, registries), audit_actions(web.engine)) == before


def test_a_bad_file_is_refused_naming_line_and_field(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    browser = _staff(web, "accountant")
    bad = planted["content"].replace(b"250.00", b"12,345")
    answer = _upload(browser, bad)
    assert answer.status_code == 422 and page_of(answer) == "reconciliation"
    alert = text_of(answer.text, "upload-errors")
    assert "Строка 2" in alert and "сумма" in alert and "ничего не изменилось" in alert
    assert 'value="optima" selected' in answer.text
    assert _count(web.engine, registries) == 0 and audit_actions(web.engine) == ["user.login"]
    # No agent, an unknown agent, no file, a bad day: the form says which.
    assert "Выберите агента" in _upload(browser, planted["content"], agent="").text
    assert _upload(browser, planted["content"], agent="nobody").status_code == 422
    token = csrf_in(browser.get("/reconciliation").text)
    no_file = browser.post(
        "/reconciliation/upload", data={"csrf": token, "agent": "optima"}, files={}
    )
    assert no_file.status_code == 422 and "Выберите файл" in no_file.text
    assert "ГГГГ-ММ-ДД" in _upload(browser, planted["content"], day="21.11.2026").text
    # A day other than the lines' day: refused by the core.
    other_day = _upload(browser, planted["content"], day="2026-11-22")
    assert other_day.status_code == 422
    too_big = browser.post(
        "/reconciliation/upload",
        data={"csrf": token, "agent": "optima"},
        files={"file": ("big.txt", b"x", "text/plain")},
        headers={"content-length": str(200 * 1024 * 1024)},
    )
    assert too_big.status_code == 413
    assert _count(web.engine, registries) == 0


def test_resolving_each_action_is_audited(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    browser = _staff(web, "accountant")
    _upload(browser, planted["content"])
    found = _by_kind(web.engine)
    page = browser.get(BASE).text
    # Only the allowed actions are offered.
    missing = found["missing_ours"]
    form = re.search(rf'id="action-{missing.id}"[^>]*>(.*?)</select>', page, re.S)
    assert form is not None
    assert re.findall(r'value="([a-z]+)"', form.group(1)) == ["accept", "explain"]
    assert "наш платёж — за другой день" not in page
    # A reason is required; an action the class does not allow is refused; nothing changes.
    refused = _resolve(browser, missing.id, "accept", "  ")
    assert refused.status_code == 422
    assert "Укажите причину" in text_of(refused.text, f"error-{missing.id}")
    wrong = _resolve(browser, found["duplicate"].id, "reverse", "нет")
    assert wrong.status_code == 422 and "Выберите действие" in wrong.text
    assert audit_actions(web.engine)[-1] == "registry.import"
    done = _resolve(browser, missing.id, "accept", "платёж агента верен")
    assert done.status_code == 303
    assert done.headers["location"] == f"{BASE}?resolved={missing.id}#d-{missing.id}"
    assert _resolve(browser, found["missing_theirs"].id, "reverse", "не было").status_code == 303
    for kind in ("amount_mismatch", "account_mismatch", "duplicate"):
        assert _resolve(browser, found[kind].id, "explain", f"<b>{kind}</b>").status_code == 303
    assert audit_actions(web.engine)[-6:] == [
        "discrepancy.accept",
        "payment.reverse",
        "discrepancy.reverse",
        "discrepancy.explain",
        "discrepancy.explain",
        "discrepancy.explain",
    ]
    with web.engine.connect() as conn:
        accept = conn.execute(
            select(audit_log).where(audit_log.c.action == "discrepancy.accept")
        ).one()
        statuses = dict(conn.execute(select(payments.c.txn_id, payments.c.status)).all())
    assert accept.actor == "user:accountant" and accept.object_id == str(missing.id)
    assert '"resolution": null' in accept.before and "платёж агента верен" in accept.after
    assert statuses["106"] == "accepted" and statuses["104"] == "reversed"
    after = browser.get(BASE)
    assert "&lt;b&gt;duplicate&lt;/b&gt;" in after.text and "<b>duplicate" not in after.text
    assert "платёж агента принят" in after.text and "наш платёж отменён" in after.text
    assert text_of(after.text, "day-state") == "все расхождения разобраны, можно закрыть"
    # Only unresolved: none left.
    assert 'id="list-empty"' in browser.get(BASE, params={"only": "open"}).text
    # A discrepancy of another day or none at all.
    assert _resolve(browser, 999999, "explain", "x").status_code == 404


def test_close_is_refused_while_open_then_done_and_reopen_is_for_admins(
    web: Web, gateway: Gateway
) -> None:
    planted = _planted(gateway, web.engine)
    accountant = _staff(web, "accountant")
    _upload(accountant, planted["content"])
    refused = _post(accountant, "close")
    assert refused.status_code == 409
    assert "не разобрано расхождений — 5" in text_of(refused.text, "recon-error")
    assert _state(web.engine) == "open"
    for d in _by_kind(web.engine).values():
        days.resolve(web.engine, d.id, "explain", "сверено", actor="user:x")
    done = _post(accountant, "close")
    assert done.status_code == 303 and done.headers["location"] == f"{BASE}?closed=1"
    page = accountant.get(done.headers["location"]).text
    assert text_of(page, "day-state") == "день закрыт" and 'id="close"' not in page
    assert 'id="reopen"' not in page and "user:accountant" in page
    assert audit_actions(web.engine)[-1] == "reconciliation.close"
    # A closed day refuses a new registry (409) and the accountant may not reopen it.
    other = planted["content"].replace(b"250.00", b"260.00").replace(b"870.00", b"880.00")
    closed = _upload(accountant, other)
    assert closed.status_code == 409 and "закрыт" in text_of(closed.text, "upload-errors")
    token = csrf_in(accountant.get(BASE).text)
    forbidden = accountant.post(f"{BASE}/reopen", data={"csrf": token, "reason": "нужно"})
    assert forbidden.status_code == 403 and _state(web.engine) == "closed"
    admin = _staff(web, "admin")
    page = admin.get(BASE).text
    assert 'id="reopen"' in page and 'id="close"' not in page
    no_reason = _post(admin, "reopen", reason=" ")
    assert no_reason.status_code == 422 and _state(web.engine) == "closed"
    reopened = _post(admin, "reopen", reason="агент прислал исправление")
    assert reopened.status_code == 303 and _state(web.engine) == "ready"
    assert audit_actions(web.engine)[-1] == "reconciliation.reopen"
    with web.engine.connect() as conn:
        line = conn.execute(
            select(audit_log).where(audit_log.c.action == "reconciliation.reopen")
        ).one()
    assert line.actor == "user:admin" and "агент прислал исправление" in line.after
    assert _post(admin, "reopen", reason="ещё раз").status_code == 409


def test_downloads_act_and_our_registry(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    browser = _staff(web, "auditor")
    assert browser.get(f"{BASE}/act.pdf").status_code == 404  # no registry yet
    _upload(_staff(web, "accountant"), planted["content"])
    pdf = browser.get(f"{BASE}/act.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    xlsx = browser.get(f"{BASE}/act.xlsx")
    assert xlsx.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert book.active is not None and book.active.max_row > 5
    ours = browser.get(f"{BASE}/our-registry")
    assert ours.status_code == 200
    assert "tolom-optima-2026-11-21.txt" in ours.headers["content-disposition"]
    with web.engine.connect() as conn:
        agent = agent_for_registry(conn, "optima")
        fmt = formats.load(conn, agent.id)
    parsed = reading.parse(ours.content, fmt, agent.timezone, gateway=True)
    assert sorted(line.txn_id for line in parsed.lines) == ["101", "102", "103", "104", "105"]
    for path in ("act.pdf", "act.xlsx", "our-registry"):
        assert browser.get(f"/reconciliation/nobody/2026-11-21/{path}").status_code == 404
        assert browser.get(f"/reconciliation/optima/2026-02-30/{path}").status_code == 400


def test_every_role_reads_and_only_the_right_ones_change(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    accountant = _staff(web, "accountant")
    _upload(accountant, planted["content"])
    number = _by_kind(web.engine)["duplicate"].id
    for role in ("operator", "auditor", "admin"):
        browser = _staff(web, role)
        calendar = browser.get("/reconciliation?month=2026-11")
        assert calendar.status_code == 200 and 'id="upload"' not in calendar.text
        page = browser.get(BASE)
        assert page.status_code == 200 and 'id="close"' not in page.text
        assert f'id="action-{number}"' not in page.text
        token = csrf_in(page.text)
        before = audit_actions(web.engine), _count(web.engine, registries)
        assert _upload(browser, planted["content"], csrf=token).status_code == 403
        assert _resolve(browser, number, "explain", "x", csrf=token).status_code == 403
        assert browser.post(f"{BASE}/close", data={"csrf": token}).status_code == 403
        assert (audit_actions(web.engine), _count(web.engine, registries)) == before
    assert 'id="upload"' in accountant.get("/reconciliation").text
    assert f'id="action-{number}"' in accountant.get(BASE).text
    anonymous = web.browser().get(BASE)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def test_csrf_is_required_for_every_change(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    accountant = _staff(web, "accountant")
    for token in ("", "wrong"):
        assert _upload(accountant, planted["content"], csrf=token).status_code == 403
    assert _count(web.engine, registries) == 0
    _upload(accountant, planted["content"])
    number = _by_kind(web.engine)["duplicate"].id
    before = audit_actions(web.engine)
    for token in ("", "wrong"):
        assert _resolve(accountant, number, "explain", "x", csrf=token or "-").status_code == 403
        assert accountant.post(f"{BASE}/close", data={"csrf": token}).status_code == 403
    admin = _staff(web, "admin")
    days.resolve(web.engine, number, "explain", "x", actor="user:x")
    before = audit_actions(web.engine)
    assert admin.post(f"{BASE}/reopen", data={"reason": "x"}).status_code == 403
    assert audit_actions(web.engine)[-1] == before[-1] == "discrepancy.explain"
    with web.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reconciliation_days)).scalar_one()
        left = conn.execute(
            select(func.count()).where(discrepancies.c.resolution.is_(None))
        ).scalar_one()
    assert left == 4


def test_bad_addresses_and_hostile_text(web: Web, gateway: Gateway) -> None:
    planted = _planted(gateway, web.engine)
    browser = _staff(web, "accountant")
    for path in (
        "/reconciliation/optima/2026-13-01",
        "/reconciliation/optima/21.11.2026",
        "/reconciliation/optima/1999-01-01",
        f"/reconciliation/{'x' * 40}/2026-11-21",
    ):
        assert browser.get(path).status_code == 400, path
    assert browser.get("/reconciliation/nobody/2026-11-21").status_code == 404
    waiting = browser.get(BASE)
    assert waiting.status_code == 200 and 'id="no-registry"' in waiting.text
    assert "ждём реестр агента" in text_of(waiting.text, "day-state")
    hostile = planted["content"]
    answer = _upload(browser, hostile, name='<script>alert("x")</script>.txt')
    assert answer.status_code == 303
    page = browser.get(answer.headers["location"]).text
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    number = _by_kind(web.engine)["duplicate"].id
    long = _resolve(browser, number, "explain", "я" * 501)
    assert long.status_code == 422 and "не длиннее 500" in long.text
    nul = _resolve(
        browser, number, "explain", "a\x00b"
    )  # tests.adapters.web.test_web_bad_characters
    assert nul.status_code == 400 and page_of(nul) == "bad-request"
    bad_number = _resolve(browser, 0, "explain", "x")
    assert bad_number.status_code == 404
    token = csrf_in(browser.get(BASE).text)
    assert (
        browser.post(
            f"{BASE[:-10]}2026-02-30/discrepancies/{number}",
            data={"csrf": token, "action": "explain", "reason": "x"},
        ).status_code
        == 400
    )
    assert audit_actions(web.engine)[-1] == "registry.import"
    # A discrepancy of this agent asked for under another day is not found there.
    wrong_day = browser.post(
        f"/reconciliation/optima/2026-11-22/discrepancies/{number}",
        data={"csrf": token, "action": "explain", "reason": "x"},
    )
    assert wrong_day.status_code == 404


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The calendar and one day, with every branch that shows text."""
    from tolom.reconciliation.days import Action, Cell, Day, Discrepancy
    from tolom.reconciliation.matching import KINDS, ClassTotal, Summary
    from tolom.web import reconciliation as pages

    moment = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    cells = [
        Cell("optima", date(2026, 11, n + 1), state, n, True)
        for n, state in enumerate(pages.STATES)
    ]
    summary = Summary(6, 87000, 5, 105000, 2, 15000, {k: ClassTotal(1, 100, 200) for k in KINDS})
    day_ = Day(
        "optima", 1, DAY, "open", 7, "r.txt", moment, "user:aida", summary, 2, "user:b", moment
    )
    listed = [
        Discrepancy(
            1,
            7,
            "missing_ours",
            "106",
            4,
            9,
            "1",
            7000,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            date(2026, 11, 20),
            "accepted",
        ),
        Discrepancy(
            2,
            7,
            "missing_ours",
            "107",
            5,
            10,
            "1",
            7000,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            date(2026, 11, 21),
            "reversed",
        ),
        Discrepancy(
            3,
            7,
            "amount_mismatch",
            "102",
            2,
            11,
            "1",
            25000,
            "1",
            20000,
            "explained",
            "верно",
            "user:aida",
            moment,
            12,
        ),
    ]
    assert listed[0].actions == (Action.ACCEPT, Action.EXPLAIN)
    view = pages.DayView(day_, listed, True, 6, 87000)
    day_page = {
        **common,
        "page": "reconciliation-day",
        "v": view,
        "base": BASE,
        "kinds": KINDS,
        "only_open": True,
        "list_limit": 500,
        "notice": "ok",
        "error": "нет",
        "errors": {1: "нет"},
        "reasons": {1: "x"},
        "reopen_reason": "x",
        "reason_max": 500,
        "may_reconcile": True,
        "may_reopen": True,
        "month": "2026-11",
    }
    return {
        "web/reconciliation.html": {
            **common,
            "page": "reconciliation",
            "month": "2026-11",
            "month_name": "11.2026",
            "prev_month": "2026-10",
            "next_month": "2026-12",
            "rows": [pages.Row("optima", "Оптима", cells)],
            "every": [c.business_date for c in cells],
            "states": pages.STATES,
            "form": pages.UploadForm(agent="optima", day="2026-11-21", errors={"form": "ошибка"}),
            "may_upload": True,
            "max_mb": 64,
        },
        "web/reconciliation_day.html": day_page,
    }


def test_a_line_we_have_on_another_day_and_a_bounded_list(web: Web, gateway: Gateway) -> None:
    inn = add_customer(web.engine)
    assert (
        gateway.pay("sochi", inn, "10.00", txn_id="900", txn_date="20261120100000")["result"] == 0
    )
    lines = [("900", "21.11.2026 10:00:00", inn, "10.00")] + [
        (str(1000 + n), "21.11.2026 11:00:00", inn, "1.00") for n in range(500)
    ]
    browser = _staff(web, "accountant")
    assert _upload(browser, registry(*lines)).status_code == 303
    page = browser.get(BASE).text
    assert page.count('<tr id="d-') == 500
    assert "Показаны первые 500" in text_of(page, "list-bounded")
    first = re.search(r'<tr id="d-\d+"[^>]*data-kind="missing_ours".*?</tr>', page, re.S)
    assert first is not None and "наш платёж — за другой день (20.11.2026)" in first.group(0)
    assert 'href="/payments/' in first.group(0)
    assert _cell(browser.get("/reconciliation?month=2026-11").text, "2026-11-21") == (
        "open",
        "расхождения: 501",
    )
