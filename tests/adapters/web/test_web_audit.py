"""The back office's audit log: filters (actor exact or prefix, action prefix, object,
Bishkek days, address), keyset pages, one line with before and after side by side (escaped,
changed keys marked), object links, the CSV export (its roles, content, bound and its own
audit line); everyone reads, nothing posts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from starlette.testclient import TestClient

from tests.adapters.web.test_web import Web, add_user, audit_actions, csrf_in, page_of, text_of
from tests.adapters.web.test_web import web as web
from tolom import audit
from tolom.backoffice import audit_log as audit_core
from tolom.backoffice.audit_log import AuditFilter, AuditLine
from tolom.db.schema import audit_log
from tolom.web import audit as audit_pages

ROLES = ("admin", "operator", "accountant", "auditor")


def template_samples(common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for each audit template, with every branch that shows text (used by
    tests/adapters/web/test_web.py's test of every template in every language)."""
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    line = AuditLine(
        7,
        at,
        "user:aida",
        None,
        "user.role",
        "user",
        "bob",
        '{"role": "operator", "same": 1}',
        '{"role": "admin", "same": 1}',
    )
    form = audit_pages.ListForm.read(
        {
            "actor": "user:aida",
            "action": "user.",
            "type": "user",
            "object": "bob",
            "from": "2026-11-01",
            "to": "2026-11-30",
            "address": "10.0.*",
        }
    )
    listing = {
        "form": form,
        "rows": [line, AuditLine(6, at, "cli:root", "10.0.0.1", "x", "tariff", "t", None, None)],
        "object_types": ["payment", "user"],
        "object_link": audit_pages.object_link,
        "more": "before=6",
        "first_page": False,
        "filters": "actor=user%3Aaida",
        "may_export": True,
    }
    return {
        "web/audit.html": {**common, "page": "audit", **listing},
        "web/audit_entry.html": {
            **common,
            "page": "audit-one",
            "line": line,
            "diff": audit_core.compare(line),
            "link": "/users/bob",
        },
    }


# --- helpers ------------------------------------------------------------------------------


def _staff(web: Web, role: str) -> TestClient:
    if role == "operator":
        return web.signed_in()
    add_user(web.engine, username=role, role=role)
    return web.signed_in(role)


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def _line(engine: Engine, **values: Any) -> int:
    """An audit line as given (moment included), as the log would hold it."""
    fields = {
        "actor": "cli:root",
        "action": "test.line",
        "object_type": "thing",
        "object_id": "1",
        **values,
    }
    with engine.begin() as conn:
        return int(
            conn.execute(insert(audit_log).values(**fields).returning(audit_log.c.id)).scalar_one()
        )


def _seed(engine: Engine) -> dict[str, int]:
    """Lines of every kind a filter tells apart, oldest first."""
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    return {
        "aida": _line(
            engine,
            actor="user:aida",
            action="payment.reverse",
            object_type="payment",
            object_id="1001",
            address="10.0.0.5",
            at=at,
        ),
        "aidar": _line(
            engine,
            actor="user:aidar",
            action="payment.manual",
            object_type="payment",
            object_id="1002",
            address="10.0.1.7",
            at=at,
        ),
        "key": _line(
            engine,
            actor="apikey:crm",
            action="customer.create",
            object_type="customer",
            object_id="01904202310427",
            address="192.168.1.1",
            at=at,
        ),
        "cli": _line(
            engine,
            actor="cli:root",
            action="user.role",
            object_type="user",
            object_id="aida",
            at=at,
        ),
        # 19:30 UTC on the 20th is 01:30 on the 21st in Bishkek.
        "late": _line(
            engine,
            actor="user:aida",
            action="invoice.create",
            object_type="invoice",
            object_id="E-2026-1",
            address="10.0.0.5",
            at=datetime(2026, 11, 20, 19, 30, tzinfo=UTC),
        ),
        "odd": _line(
            engine,
            actor="user:a_b",
            action="user_x.y",
            object_type="user",
            object_id="a_b",
            at=datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
        ),
    }


# --- the list ---------------------------------------------------------------------------------


def test_the_log_filters_newest_first(web: Web) -> None:
    ids = _seed(web.engine)
    browser = _staff(web, "auditor")  # its login is not by user:aida
    page = browser.get("/audit")
    assert page.status_code == 200 and page_of(page) == "audit"
    shown = _ids(page.text)
    assert shown == sorted(shown, reverse=True) and set(ids.values()) <= set(shown)
    assert '<label for="f-actor">' in page.text and 'id="object-types"' in page.text

    def found(**params: str) -> list[int]:
        answer = browser.get("/audit", params=params)
        assert answer.status_code == 200, params
        return _ids(answer.text)

    assert found(actor="user:aida") == [ids["late"], ids["aida"]]  # exact: not user:aidar
    assert found(actor="user:aid*") == [ids["late"], ids["aidar"], ids["aida"]]
    assert found(actor="apikey:") == [ids["key"]]
    assert found(actor="cli:", action="user.") == [ids["cli"]]
    assert found(actor="APIKEY:") == []  # case matters on both databases
    assert found(actor="user:a_*") == [ids["odd"]]  # "_" is a plain character
    assert found(action="payment.") == [ids["aidar"], ids["aida"]]
    assert found(action="payment.reverse") == [ids["aida"]]
    assert found(action="user_") == [ids["odd"]]
    assert found(action="%") == []
    assert found(type="payment", object="1002") == [ids["aidar"]]
    assert found(type="customer") == [ids["key"]]
    assert found(object="aida") == [ids["cli"]]
    assert found(**{"from": "2026-11-20", "to": "2026-11-20"}) == [
        ids["cli"],
        ids["key"],
        ids["aidar"],
        ids["aida"],
    ]
    assert found(**{"from": "2026-11-21", "to": "2026-11-21"}) == [ids["late"]]
    assert found(**{"from": "2026-11-22", "to": "2026-11-22"}) == [ids["odd"]]
    assert found(to="2026-11-19") == []
    assert found(address="10.0.0.5") == [ids["late"], ids["aida"]]
    assert found(address="10.0.*") == [ids["late"], ids["aidar"], ids["aida"]]
    assert found(address="10.0.") == []  # exact unless it ends with "*"
    empty = browser.get("/audit", params={"actor": "nobody"})
    assert _ids(empty.text) == [] and text_of(empty.text, "audit-empty")


def test_keyset_pages_carry_the_filter(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _seed(web.engine)
    monkeypatch.setattr(audit_pages, "PAGE_SIZE", 2)
    browser = _staff(web, "auditor")  # its login is not by user:aida
    first = browser.get("/audit", params={"actor": "user:aid*"})
    assert _ids(first.text) == [ids["late"], ids["aidar"]]
    assert 'id="first-page"' not in first.text
    link = unescape(re.search(r'id="next-page" rel="next" href="([^"]+)"', first.text)[1])
    assert "actor=user%3Aaid%2A" in link and f"before={ids['aidar']}" in link
    second = browser.get(link)
    assert _ids(second.text) == [ids["aida"]] and 'id="next-page"' not in second.text
    assert 'id="first-page" href="/audit?actor=user%3Aaid%2A"' in second.text


@pytest.mark.parametrize(
    "params",
    [
        {"from": "вчера"},
        {"to": "2026-13-01"},
        {"before": "abc"},
        {"before": "9" * 30},
        {"actor": "x" * 81},
        {"action": "a\x00b"},
        {"object": "o" * 65},
        {"type": "<script>"},
        {"address": "1\n2"},
    ],
)
def test_a_filter_no_form_sends_is_a_bad_request(web: Web, params: dict[str, str]) -> None:
    answer = web.signed_in().get("/audit", params=params)
    assert answer.status_code == 400 and page_of(answer) == "bad-request"
    if "before" not in params:  # the export has no pages
        export = _staff(web, "auditor").get("/audit/export.csv", params=params)
        assert export.status_code == 400 and page_of(export) == "bad-request"


def test_object_links_lead_to_their_pages(web: Web) -> None:
    ids = _seed(web.engine)
    order = _line(web.engine, object_type="order", object_id="17")
    agent = _line(web.engine, object_type="agent", object_id="optima")
    key = _line(web.engine, object_type="api_key", object_id="crm")
    html = web.signed_in().get("/audit").text
    for path in (
        "/payments/1001",
        "/customers/01904202310427",
        "/invoices/E-2026-1",
        "/users/aida",
        "/orders/17",
        "/agents/optima",
    ):
        assert f'<a href="{path}">' in html, path
    assert '<span class="code">api_key</span> crm</td>' in html  # no page: plain text
    assert {order, agent, key, *ids.values()} <= set(_ids(html))


# --- one line ---------------------------------------------------------------------------------


def test_one_line_shows_before_and_after_escaped_with_changes_marked(web: Web) -> None:
    with web.engine.begin() as conn:
        audit.record(
            conn,
            actor="apikey:<b>crm</b>",
            action="customer.contacts",
            object_type="customer",
            object_id="01904202310427",
            before={"email": "<script>alert(1)</script>", "phone": "+996555000111", "x": 1},
            after={"email": "a@example.kg", "phone": "+996555000111", "note": "</pre><hr>"},
            address="10.0.0.5",
        )
    with web.engine.connect() as conn:
        line_id = conn.execute(select(audit_log.c.id)).scalar_one()
    for role in ROLES:
        browser = _staff(web, role)
        page = browser.get(f"/audit/{line_id}")
        assert page.status_code == 200 and page_of(page) == "audit-one", role
        html = page.text
        assert "<script>" not in html and "<b>crm" not in html and "<hr>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert text_of(html, "f-actor") == "apikey:&lt;b&gt;crm&lt;/b&gt;"
        assert 'id="object-link" href="/customers/01904202310427"' in html
        assert text_of(html, "changed-keys") == "Изменились: email, note, x"
        before = html[html.index('id="before"') : html.index('id="after"')]
        after = html[html.index('id="after"') :]
        marked_before = re.findall(r"<mark>(.*?)</mark>", before, re.S)
        marked_after = re.findall(r"<mark>(.*?)</mark>", after, re.S)
        assert [m.split(":")[0] for m in marked_before] == ["&#34;email&#34;", "&#34;x&#34;"]
        assert [m.split(":")[0] for m in marked_after] == ["&#34;email&#34;", "&#34;note&#34;"]
        assert "&#34;phone&#34;: &#34;+996555000111&#34;" in before  # unchanged, not marked
        assert "+996555000111" not in "".join(marked_before + marked_after)
        # Nothing to change here: no form posts (the header's logout and language aside).
        main = html[html.index('<main id="main"') :]
        assert 'method="post"' not in main


def test_lines_without_data_or_with_text_are_shown(web: Web) -> None:
    nothing = _line(web.engine, action="user.reset_password", object_type="user", object_id="aida")
    text = _line(web.engine, before="not json <i>", after='["a", 1]')
    browser = web.signed_in()
    empty = browser.get(f"/audit/{nothing}").text
    assert "нет данных" in empty and 'id="changed-keys"' not in empty
    raw = browser.get(f"/audit/{text}").text
    assert "&#34;not json &lt;i&gt;&#34;" in raw and "<i>" not in raw
    assert text_of(raw, "changed-keys") == "Значения не менялись."
    assert "<mark>" not in raw


def test_the_comparison_of_nested_values() -> None:
    line = AuditLine(
        1, datetime.now(UTC), "a", None, "x", "y", "z", '{"a": {"b": [1, 2]}, "c": 1}', "null"
    )
    diff = audit_core.compare(line)
    assert diff.changed_keys == ["a", "c"] and diff.after == []
    text = "".join(s.text for s in diff.before)
    assert text == '{\n  "a": {\n    "b": [\n      1,\n      2\n    ]\n  },\n  "c": 1\n}'


@pytest.mark.parametrize("path", ["/audit/999999", "/audit/abc", "/audit/-1", "/audit/" + "9" * 40])
def test_unknown_lines_are_not_found(web: Web, path: str) -> None:
    answer = web.signed_in().get(path)
    assert answer.status_code == 404 and page_of(answer) == "not-found"


def test_nothing_posts_to_the_log(web: Web) -> None:
    _seed(web.engine)
    for role in ROLES:
        browser = _staff(web, role)
        page = browser.get("/audit").text
        assert 'method="post"' not in page[page.index('<main id="main"') :]
        csrf = csrf_in(page)
        before = audit_actions(web.engine)
        for path in ("/audit", "/audit/1", "/audit/export.csv"):
            answer = browser.post(path, data={"csrf": csrf})
            assert answer.status_code == 405, (role, path)
        assert audit_actions(web.engine) == before


# --- the export -------------------------------------------------------------------------------


def test_the_export_follows_the_filter_and_is_audited(web: Web) -> None:
    ids = _seed(web.engine)
    _line(
        web.engine,
        actor="user:aida",
        action="payment.note",
        object_id="=HYPERLINK(1)",
        after='{"n": "=cmd"}',
        at=datetime(2026, 11, 20, 11, 0, tzinfo=UTC),
    )
    browsers = {role: _staff(web, role) for role in ("admin", "accountant", "auditor")}
    for browser in browsers.values():
        page = browser.get("/audit", params={"actor": "user:aida"})
        assert 'id="export-csv" href="/audit/export.csv?actor=user%3Aaida"' in page.text
        answer = browser.get(
            "/audit/export.csv", params={"actor": "user:aida", "action": "payment."}
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        assert 'filename="audit-all.csv"' in answer.headers["content-disposition"]
        assert answer.content.startswith("\ufeff".encode())
        rows = answer.content.decode("utf-8-sig").split("\r\n")
        assert (
            rows[0]
            == "№;Время (Бишкек);Кто;Адрес;Действие;Тип объекта;Объект;До (JSON);После (JSON)"
        )
        assert (
            rows[2]
            == f"{ids['aida']};2026-11-20 16:00:00;user:aida;10.0.0.5;payment.reverse;payment;1001;;"
        )
        assert "'=HYPERLINK(1)" in rows[1] and "=cmd" in rows[1]
        assert rows[3:] == [""]
    with web.engine.connect() as conn:
        exported = list(conn.execute(select(audit_log).where(audit_log.c.action == "audit.export")))
    assert [line.actor for line in exported] == ["user:admin", "user:accountant", "user:auditor"]
    assert '"filter": {"actor": "user:aida", "action": "payment."}' in exported[0].after
    assert '"lines": 2' in exported[0].after
    assert exported[0].object_type == "audit_log" and exported[0].address == "testclient"
    # The export's own line is not in a later, unfiltered file, but an earlier one is.
    everything = browsers["auditor"].get("/audit/export.csv")
    lines = everything.content.decode("utf-8-sig").split("\r\n")[1:-1]
    assert sum(";audit.export;" in line for line in lines) == 3


def test_operators_may_not_export(web: Web) -> None:
    _seed(web.engine)
    operator = web.signed_in()
    assert 'id="export-csv"' not in operator.get("/audit").text
    before = audit_actions(web.engine)
    refused = operator.get("/audit/export.csv")
    assert refused.status_code == 403 and page_of(refused) == "forbidden"
    assert audit_actions(web.engine) == before


def test_an_export_beyond_the_bound_is_refused(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(web.engine)
    monkeypatch.setattr(audit_core, "MAX_EXPORT_ROWS", 3)
    browser = _staff(web, "auditor")
    before = audit_actions(web.engine)
    refused = browser.get("/audit/export.csv")
    assert refused.status_code == 422 and page_of(refused) == "export-too-large"
    assert "больше 3 записей" in refused.text
    assert audit_actions(web.engine) == before
    fits = browser.get("/audit/export.csv", params={"actor": "user:aid*"})
    assert fits.status_code == 200 and fits.text.count("\r\n") == 4


def test_the_export_is_read_in_pages(web: Web) -> None:
    ids = _seed(web.engine)
    found = list(audit_core.lines(web.engine, AuditFilter(), page_size=2))
    assert [line.id for line in found] == sorted(ids.values(), reverse=True)
    upto = list(audit_core.lines(web.engine, AuditFilter(), before_id=ids["cli"], page_size=2))
    assert [line.id for line in upto] == [ids["key"], ids["aidar"], ids["aida"]]


def test_a_user_change_is_found_by_an_auditor(web: Web) -> None:
    add_user(web.engine, username="boss", role="admin")
    admin = web.signed_in("boss")
    csrf = csrf_in(admin.get("/users/aida").text)
    assert admin.post("/users/aida/disable", data={"csrf": csrf}).status_code == 303
    auditor = _staff(web, "auditor")
    listing = auditor.get("/audit", params={"action": "user.disable"}).text
    [line_id] = _ids(listing)
    assert '<a href="/users/aida">aida</a>' in listing and "user:boss" in listing
    entry = auditor.get(f"/audit/{line_id}").text
    assert text_of(entry, "changed-keys") == "Изменились: active"
    assert 'id="object-link" href="/users/aida"' in entry


def test_day_ranges_bound_the_scan_by_id(web: Web) -> None:
    """Lines written day by day: a range's ids are bounded by lines more than a day
    outside it (two probes of `at`), and the answer is the range's lines exactly."""
    days = [datetime(2026, 10, d, 8, 0, tzinfo=UTC) for d in (1, 4, 7, 10, 13)]
    ids = [_line(web.engine, at=at, object_id=str(at.day)) for at in days]
    where = AuditFilter(date_from=days[2].date(), date_to=days[2].date())
    with web.engine.connect() as conn:
        bounds = audit_core._id_bounds(conn, where)
        assert [str(b.compile(compile_kwargs={"literal_binds": True})) for b in bounds] == [
            f"audit_log.id > {ids[1]}",
            f"audit_log.id < {ids[3]}",
        ]
        assert [line.id for line in audit_core.search(conn, where)] == [ids[2]]
        wider = AuditFilter(date_from=days[1].date(), date_to=days[3].date())
        assert [line.id for line in audit_core.search(conn, wider)] == ids[3:0:-1]
        assert audit_core.count(conn, wider, at_most=10) == 3
        # Nothing more than a day outside: no bound, the same answer.
        assert audit_core._id_bounds(conn, AuditFilter(date_from=days[0].date())) == []
