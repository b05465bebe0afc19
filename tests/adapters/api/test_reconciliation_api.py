"""Reconciliation over the operator API (/api/v1/agents/..., /api/v1/reconciliation/...):
uploads matched at once, replays, corrections, bad files, every scope, resolutions, closing
and reopening, the act, our registry in the agent's format, the calendar, the audit."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.adapters.api.test_operator_api import PEER, Api, api, problem
from tests.core.reconciliation.test_reconciliation import DAY, balance_of, planted, registry
from tests.factories import Gateway
from tolom import audit
from tolom.agents import service as agent_service
from tolom.api.operator.reconciliation import uploads
from tolom.db.schema import (
    audit_log,
    discrepancies,
    payments,
    reconciliation_days,
    registries,
    registry_lines,
)
from tolom.reconciliation import formats, reading

__all__ = ["api", "planted"]  # the fixtures, used by name

BASE = "/api/v1"
DAY_PATH = f"{BASE}/reconciliation/days/optima/{DAY.isoformat()}"
UPLOAD = f"{BASE}/agents/optima/registries"
FORMAT = f"{BASE}/agents/optima/registry-format"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def upload(
    api: Api,
    content: bytes,
    key: str = "write",
    *,
    agent: str = "optima",
    content_type: str = "text/plain",
    **params: str,
) -> Any:
    return api.client.post(
        f"{BASE}/agents/{agent}/registries",
        content=content,
        params=params or None,
        headers={**api.auth(key), "Content-Type": content_type},
    )


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def stored(engine: Engine) -> tuple[int, ...]:
    """What an import or a resolution leaves behind, to show a refusal left nothing."""
    return tuple(
        count(engine, table)
        for table in (
            registries,
            registry_lines,
            discrepancies,
            reconciliation_days,
            payments,
            audit_log,
        )
    )


def actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [line["action"] for line in audit.entries(conn, limit=1000)]


def by_kind(api: Api, key: str = "read") -> dict[str, dict[str, Any]]:
    response = api.get(DAY_PATH, key=key)
    assert response.status_code == 200, response.text
    return {d["kind"]: d for d in response.json()["discrepancies"]}


def resolve(api: Api, number: int, action: str, reason: str, key: str = "write") -> Any:
    return api.post(
        f"{BASE}/reconciliation/discrepancies/{number}/resolve",
        {"action": action, "reason": reason},
        key=key,
    )


def resolve_all(api: Api) -> None:
    for kind, found in by_kind(api).items():
        action = "accept" if kind == "missing_ours" else "explain"
        assert resolve(api, found["id"], action, f"Сверено: {kind}").status_code == 200


def corrected(inn: str) -> bytes:
    return registry(
        ("101", "21.11.2026 09:00:00", inn, "100.00"),
        ("102", "21.11.2026 10:00:00", inn, "200.00"),
        ("103", "21.11.2026 11:00:00", inn, "300.00"),
        ("104", "21.11.2026 12:00:00", inn, "400.00"),
        ("105", "21.11.2026 23:59:59", inn, "50.00"),
    )


# --- upload -----------------------------------------------------------------------------


def test_an_upload_is_matched_at_once_and_its_repeat_is_replayed(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    response = upload(api, planted["content"], day="2026-11-21", file_name="optima-21.txt")
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    done = response.json()
    assert (done["agent"], done["day"], done["lines"], done["total"]) == (
        "optima",
        "2026-11-21",
        6,
        "870.00",
    )
    assert (done["replayed"], done["superseded"]) == (False, None)
    summary = done["summary"]
    assert (summary["their_count"], summary["their_amount"]) == (6, "870.00")
    assert (summary["our_count"], summary["our_amount"]) == (5, "1050.00")
    assert (summary["matched_count"], summary["matched_amount"]) == (2, "150.00")
    assert (summary["difference"], summary["discrepancy_count"]) == ("-180.00", 5)
    assert {kind: total["count"] for kind, total in summary["classes"].items()} == {
        "missing_ours": 1,
        "missing_theirs": 1,
        "amount_mismatch": 1,
        "account_mismatch": 1,
        "duplicate": 1,
    }
    assert summary["classes"]["amount_mismatch"] == {
        "count": 1,
        "their_amount": "250.00",
        "our_amount": "200.00",
    }
    before = stored(engine)

    # The same file again, as XLSX-typed bytes and without the day: nothing changes.
    again = upload(api, planted["content"], content_type="application/octet-stream")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["registry"] == done["registry"] and again.json()["replayed"] is True
    assert again.json()["summary"] == summary
    assert stored(engine) == before
    assert actions(engine).count("registry.import") == 1
    with engine.connect() as conn:
        [line] = audit.entries(conn, "registry", str(done["registry"]))
    assert line["actor"] == "apikey:writer" and line["address"] == PEER
    assert line["after"]["file"] == "optima-21.txt" and line["after"]["discrepancies"] == 5


def test_a_corrected_file_supersedes_the_current_one(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    first = upload(api, planted["content"]).json()
    fixed = upload(api, corrected(planted["inn"]), file_name="исправленный.txt")
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["superseded"] == first["registry"]
    assert fixed.json()["summary"]["discrepancy_count"] == 0
    day = api.get(DAY_PATH).json()
    assert (day["state"], day["unresolved"], day["discrepancies"]) == ("ready", 0, [])
    assert day["registry"]["id"] == fixed.json()["registry"]
    assert day["registry"]["file_name"] == "исправленный.txt"
    assert day["registry"]["imported_by"] == "apikey:writer"
    with engine.connect() as conn:
        states = dict(conn.execute(select(registries.c.id, registries.c.state)).all())
    assert states == {first["registry"]: "superseded", fixed.json()["registry"]: "current"}


def _bad_file(api: Api, content: bytes, **params: str) -> dict[str, Any]:
    body = problem(upload(api, content, **params), 422, "registry_invalid")
    assert len(body["errors"]) == 1
    return body


def test_a_bad_file_is_refused_naming_the_line_and_field_and_nothing_is_stored(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    inn = planted["inn"]
    before = stored(engine)
    body = _bad_file(
        api,
        b"101\t21.11.2026\t09:00:00\t" + inn.encode() + b"\t100.00\n"
        b"102\t21.11.2026\t10:00:00\t" + inn.encode() + b"\t12,3,4\n"
        b"Total: 2 112.34\n",
    )
    assert body["errors"][0]["line"] == 2 and body["errors"][0]["field"] == "amount"
    assert body["detail"].startswith("Строка 2, поле «сумма»")
    # A line on another day than the one asked for.
    body = _bad_file(
        api,
        registry(
            ("101", "21.11.2026 09:00:00", inn, "100.00"),
            ("107", "22.11.2026 00:00:01", inn, "1.00"),
        ),
        day="2026-11-21",
    )
    assert (body["errors"][0]["line"], body["errors"][0]["field"]) == (2, "date")
    assert "22.11.2026" in body["detail"]
    # A Total that does not add up; lines of two days; an empty file; binary junk with NUL
    # bytes (a body may hold U+0000: the file's reader judges it).
    bad_total = registry(("101", "21.11.2026 09:00:00", inn, "100.00"), total="Total: 1 99.00\n")
    assert "сумма" in _bad_file(api, bad_total)["detail"]
    two_days = registry(
        ("101", "21.11.2026 09:00:00", inn, "100.00"),
        ("107", "22.11.2026 00:00:01", inn, "1.00"),
    )
    assert "разные дни" in _bad_file(api, two_days)["detail"]
    empty = _bad_file(api, b"")
    assert empty["errors"][0] == {"field": "file", "message": "файл пустой"}
    junk = _bad_file(api, b"PK\x03\x04\x00\x00\xff\xfe", content_type=XLSX)
    assert junk["errors"][0]["line"] == 1
    assert stored(engine) == before


def test_bad_upload_requests_are_problems_and_store_nothing(
    api: Api, engine: Engine, planted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    content = planted["content"]
    before = stored(engine)
    problem(upload(api, content, agent="nobody"), 404, "agent_not_found")
    problem(upload(api, content, agent="оптима"), 404, "agent_not_found")
    problem(upload(api, content, agent="x" * 33), 422, "invalid_request")
    for day in ("2026-13-01", "2026-02-30", "21.11.2026", "2026-11-21T00:00:00"):
        body = problem(upload(api, content, day=day), 422, "invalid_request")
        assert "day" in {e["field"] for e in body["errors"]}
    body = problem(upload(api, content, file_name="a\tb.txt"), 422, "invalid_request")
    assert body["errors"][0]["field"] == "file_name"
    problem(upload(api, content, file_name="x" * 201), 422, "invalid_request")
    problem(upload(api, content, file_name="a\x00b"), 422, "invalid_request")
    response = api.client.post(
        UPLOAD, content=content, headers={"Content-Type": "text/plain"}
    )  # no key: refused before the body is read
    problem(response, 401, "unauthenticated")
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100)
    body = problem(upload(api, content), 413, "request_too_large")
    assert "100 байт" in body["detail"]

    def chunks() -> Any:  # no Content-Length: the cap holds while it is read
        yield content[:60]
        yield content[60:]

    streamed = api.client.post(UPLOAD, content=chunks(), headers=api.auth("write"))
    problem(streamed, 413, "request_too_large")
    assert stored(engine) == before


# --- scopes -----------------------------------------------------------------------------


def test_every_scope_gets_what_it_may_and_nothing_else(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    for path in (
        FORMAT,
        f"{BASE}/reconciliation/days?from=2026-11-20&to=2026-11-21",
        DAY_PATH,
        f"{DAY_PATH}/our-registry",
    ):
        for key in ("read", "write", "admin"):
            assert api.get(path, key=key).status_code == 200, path
    # read: nothing that changes anything.
    before = stored(engine)
    problem(upload(api, planted["content"], key="read"), 403, "insufficient_scope")
    assert stored(engine) == before
    registry_id = upload(api, planted["content"]).json()["registry"]
    found = by_kind(api)
    before = stored(engine)
    problem(
        resolve(api, found["duplicate"]["id"], "explain", "дубль", key="read"),
        403,
        "insufficient_scope",
    )
    problem(api.post(f"{DAY_PATH}/close", key="read"), 403, "insufficient_scope")
    for key in ("read", "write"):
        problem(
            api.post(f"{DAY_PATH}/reopen", {"reason": "исправление"}, key=key),
            403,
            "insufficient_scope",
        )
        response = api.client.put(FORMAT, json={"kind": "csv"}, headers=api.auth(key))
        assert "admin" in problem(response, 403, "insufficient_scope")["detail"]
    assert stored(engine) == before
    assert by_kind(api)["duplicate"]["resolution"] is None
    # write resolves and closes; admin reopens and sets the format.
    resolve_all(api)
    assert api.post(f"{DAY_PATH}/close").json()["state"] == "closed"
    reopened = api.post(f"{DAY_PATH}/reopen", {"reason": "Агент прислал исправление"}, "admin")
    assert reopened.status_code == 200 and reopened.json()["state"] == "ready"
    response = api.client.put(FORMAT, json={"kind": "csv"}, headers=api.auth("admin"))
    assert response.status_code == 200 and response.json()["kind"] == "csv"
    assert api.get(DAY_PATH).json()["registry"]["id"] == registry_id


# --- resolutions, closing, reopening ----------------------------------------------------


def test_each_action_resolves_its_discrepancy(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    upload(api, planted["content"])
    found = by_kind(api)
    assert found["missing_ours"]["actions"] == ["accept", "explain"]
    assert found["missing_theirs"]["actions"] == ["reverse", "explain"]
    assert found["duplicate"]["actions"] == ["explain"]
    assert found["amount_mismatch"]["their_amount"] == "250.00"
    assert found["amount_mismatch"]["our_amount"] == "200.00"
    assert found["duplicate"]["line"] == 5 and found["missing_theirs"]["line"] is None
    inn = planted["inn"]
    before = balance_of(engine, inn)

    accepted = resolve(api, found["missing_ours"]["id"], "accept", "Агент подтвердил чек")
    assert accepted.status_code == 200, accepted.text
    assert "Idempotent-Replayed" not in accepted.headers
    one = accepted.json()
    assert (one["resolution"], one["reason"], one["resolved_by"], one["actions"]) == (
        "accepted",
        "Агент подтвердил чек",
        "apikey:writer",
        [],
    )
    assert one["resolution_payment_id"] is not None and one["resolved_at"].endswith("Z")
    assert balance_of(engine, inn) == before + 7000
    again = resolve(api, found["missing_ours"]["id"], "accept", "повтор")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["resolution_payment_id"] == one["resolution_payment_id"]
    assert balance_of(engine, inn) == before + 7000
    body = problem(
        resolve(api, found["missing_ours"]["id"], "explain", "иначе"),
        409,
        "reconciliation_refused",
    )
    assert body["detail"] == "Расхождение уже разобрано другим действием"

    reversed_ = resolve(api, found["missing_theirs"]["id"], "reverse", "Агент не проводил")
    assert reversed_.json()["resolution"] == "reversed"
    assert balance_of(engine, inn) == before + 7000 - 40000
    body = problem(
        resolve(api, found["duplicate"]["id"], "accept", "дубль"), 409, "reconciliation_refused"
    )
    assert "не подходит" in body["detail"]
    explained = resolve(api, found["duplicate"]["id"], "explain", "Агент задвоил строку")
    assert explained.json()["resolution"] == "explained"
    got = api.get(f"{BASE}/reconciliation/discrepancies/{found['duplicate']['id']}")
    assert got.status_code == 200 and got.json() == explained.json()
    for action in ("discrepancy.accept", "discrepancy.reverse", "discrepancy.explain"):
        assert action in actions(engine)
    with engine.connect() as conn:
        [line] = audit.entries(conn, "discrepancy", str(found["duplicate"]["id"]))
    assert line["actor"] == "apikey:writer" and line["after"]["reason"] == "Агент задвоил строку"


def test_bad_resolutions_are_problems_and_change_nothing(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    upload(api, planted["content"])
    number = by_kind(api)["missing_ours"]["id"]
    before = stored(engine)
    path = f"{BASE}/reconciliation/discrepancies/{number}/resolve"
    for body in (
        {"action": "accept"},
        {"action": "accept", "reason": ""},
        {"action": "accept", "reason": "   "},
        {"action": "accept", "reason": "x" * 501},
        {"action": "accept", "reason": "a\u0000b"},
        {"action": "pay", "reason": "x"},
        {"action": "accept", "reason": "x", "extra": 1},
        [],
    ):
        problem(api.post(path, body), 422, "invalid_request")
    problem(resolve(api, 999_999, "explain", "x"), 404, "discrepancy_not_found")
    problem(api.get(f"{BASE}/reconciliation/discrepancies/999999"), 404, "discrepancy_not_found")
    for bad in ("abc", "1" * 19, "-1", "١٢"):
        problem(
            api.post(
                f"{BASE}/reconciliation/discrepancies/{bad}/resolve",
                {"action": "explain", "reason": "x"},
            ),
            422,
            "invalid_request",
        )
        problem(api.get(f"{BASE}/reconciliation/discrepancies/{bad}"), 422, "invalid_request")
    assert stored(engine) == before


def test_closing_reopening_and_what_a_closed_day_refuses(
    api: Api, engine: Engine, planted: dict[str, Any]
) -> None:
    problem(api.post(f"{DAY_PATH}/close"), 409, "reconciliation_refused")  # no registry yet
    upload(api, planted["content"])
    body = problem(api.post(f"{DAY_PATH}/close"), 409, "reconciliation_refused")
    assert body["detail"] == "День нельзя закрыть: не разобрано расхождений — 5"
    resolve_all(api)
    closed = api.post(f"{DAY_PATH}/close")
    assert closed.status_code == 200 and "Idempotent-Replayed" not in closed.headers
    day = closed.json()
    assert (day["state"], day["closed_by"], day["unresolved"]) == ("closed", "apikey:writer", 0)
    assert day["closed_at"].endswith("Z") and day["summary"]["discrepancy_count"] == 5
    again = api.post(f"{DAY_PATH}/close")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == day
    # Closed: another file is refused, the same file is still a replay.
    before = stored(engine)
    body = problem(upload(api, corrected(planted["inn"])), 409, "day_closed")
    assert "закрыт" in body["detail"] and "администратор" in body["detail"]
    replay = upload(api, planted["content"])
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    duplicate = by_kind(api)["duplicate"]["id"]
    problem(resolve(api, duplicate, "explain", "ещё раз иначе"), 409, "reconciliation_refused")
    assert stored(engine) == before
    # Reopened by an administrator, with a reason.
    problem(api.post(f"{DAY_PATH}/reopen", {"reason": " "}, "admin"), 422, "invalid_request")
    problem(api.post(f"{DAY_PATH}/reopen", {}, "admin"), 422, "invalid_request")
    reopened = api.post(f"{DAY_PATH}/reopen", {"reason": "Агент прислал исправление"}, "admin")
    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["state"], reopened.json()["closed_by"]) == ("ready", None)
    body = problem(
        api.post(f"{DAY_PATH}/reopen", {"reason": "ещё"}, "admin"), 409, "reconciliation_refused"
    )
    assert body["detail"] == "День не закрыт"
    assert upload(api, corrected(planted["inn"])).status_code == 201
    with engine.connect() as conn:
        trail = audit.entries(conn, "reconciliation_day", f"optima:{DAY.isoformat()}")
    assert [(line["action"], line["actor"]) for line in reversed(trail)] == [
        ("reconciliation.close", "apikey:writer"),
        ("reconciliation.reopen", "apikey:boss"),
    ]
    assert trail[0]["after"]["reason"] == "Агент прислал исправление"
    problem(api.post(f"{BASE}/reconciliation/days/nobody/2026-11-21/close"), 404, "agent_not_found")
    problem(
        api.post(f"{BASE}/reconciliation/days/nobody/2026-11-21/reopen", {"reason": "x"}, "admin"),
        404,
        "agent_not_found",
    )


# --- the day, the calendar --------------------------------------------------------------


def test_the_day_pages_its_discrepancies_and_filters_the_unresolved(
    api: Api, planted: dict[str, Any]
) -> None:
    waiting = api.get(DAY_PATH).json()
    assert (waiting["state"], waiting["registry"], waiting["summary"]) == ("waiting", None, None)
    assert (waiting["discrepancy_count"], waiting["discrepancies"]) == (0, [])
    upload(api, planted["content"])
    first = api.get(DAY_PATH, limit=2).json()
    assert first["discrepancy_count"] == 5 and len(first["discrepancies"]) == 2
    seen = [d["id"] for d in first["discrepancies"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = api.get(DAY_PATH, limit=2, cursor=cursor).json()
        seen += [d["id"] for d in page["discrepancies"]]
        cursor = page["next_cursor"]
    assert len(seen) == 5 and seen == sorted(set(seen))
    number = first["discrepancies"][0]["id"]
    assert resolve(api, number, "explain", "Проверено").status_code == 200
    open_only = api.get(DAY_PATH, unresolved_only="true").json()
    assert open_only["discrepancy_count"] == open_only["unresolved"] == 4
    assert number not in {d["id"] for d in open_only["discrepancies"]}
    assert api.get(DAY_PATH).json()["discrepancy_count"] == 5
    problem(api.get(DAY_PATH, cursor="x1"), 422, "invalid_request")
    problem(api.get(DAY_PATH, limit=0), 422, "invalid_request")
    problem(api.get(f"{BASE}/reconciliation/days/optima/2026-02-30"), 422, "invalid_request")
    problem(api.get(f"{BASE}/reconciliation/days/optima/21.11.2026"), 422, "invalid_request")
    problem(api.get(f"{BASE}/reconciliation/days/nobody/2026-11-21"), 404, "agent_not_found")
    problem(api.get(f"{BASE}/reconciliation/days/a%00b/2026-11-21"), 422, "invalid_request")
    problem(api.get(f"{BASE}/reconciliation/days/%F0%9F%92%A3/2026-11-21"), 404, "agent_not_found")


def test_the_calendar_shows_each_days_state(
    api: Api, engine: Engine, gateway: Gateway, planted: dict[str, Any]
) -> None:
    inn = planted["inn"]
    assert (
        gateway.pay("sochi", inn, "10.00", txn_id="201", txn_date="20261120120000")["result"] == 0
    )

    def states() -> dict[str, tuple[str, int, bool]]:
        response = api.get(
            f"{BASE}/reconciliation/days", **{"from": "2026-11-19", "to": "2026-11-21"}
        )
        assert response.status_code == 200, response.text
        return {
            c["day"]: (c["state"], c["unresolved"], c["has_payments"])
            for c in response.json()["items"]
            if c["agent"] == "optima"
        }

    assert states() == {
        "2026-11-19": ("none", 0, False),
        "2026-11-20": ("waiting", 0, True),
        "2026-11-21": ("waiting", 0, True),
    }
    upload(api, planted["content"])
    assert states()["2026-11-21"] == ("open", 5, True)
    resolve_all(api)
    assert states()["2026-11-21"] == ("ready", 0, True)
    api.post(f"{DAY_PATH}/close")
    assert states()["2026-11-21"] == ("closed", 0, True)
    Gateway.create(api.client.app, engine, "megapay")
    both = api.get(
        f"{BASE}/reconciliation/days", **{"from": "2026-11-21", "to": "2026-11-21"}
    ).json()
    assert [c["agent"] for c in both["items"]] == ["megapay", "optima"]
    only = api.client.get(
        f"{BASE}/reconciliation/days?from=2026-11-21&to=2026-11-21&agent=megapay&agent=nobody",
        headers=api.auth("read"),
    ).json()
    assert [(c["agent"], c["state"]) for c in only["items"]] == [("megapay", "none")]
    for params, field in (
        ({"from": "2026-11-21", "to": "2026-11-20"}, "to"),
        ({"from": "2026-01-01", "to": "2026-12-31"}, "to"),
        ({"from": "2026-11-31", "to": "2026-12-01"}, "from"),
        ({"from": "yesterday", "to": "2026-12-01"}, "from"),
        ({"to": "2026-12-01"}, "from"),
        ({"from": "2026-11-21", "to": "2026-11-21", "agent": "x" * 33}, "agent"),
    ):
        body = problem(api.get(f"{BASE}/reconciliation/days", **params), 422, "invalid_request")
        assert field in {e["field"] for e in body["errors"]}, body


# --- files ------------------------------------------------------------------------------


def test_the_act_as_pdf_and_xlsx(api: Api, planted: dict[str, Any]) -> None:
    from openpyxl import load_workbook
    from pypdf import PdfReader

    problem(api.get(f"{DAY_PATH}/act.pdf"), 409, "reconciliation_refused")  # no registry
    upload(api, planted["content"])
    pdf = api.get(f"{DAY_PATH}/act.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'attachment; filename="akt-optima-2026-11-21.pdf"'
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "АКТ СВЕРКИ" in text and "ЧЕРНОВИК" in text
    # A hostile reason is only text in the act.
    for kind, found in by_kind(api).items():
        action = "accept" if kind == "missing_ours" else "explain"
        reason = f'=HYPERLINK("http://x.example") <script>«{kind}»</script> \u202e\u0007 ✓'
        assert resolve(api, found["id"], action, reason).status_code == 200
    api.post(f"{DAY_PATH}/close")
    final = api.get(f"{DAY_PATH}/act.pdf")
    assert final.status_code == 200
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(final.content)).pages)
    assert "ЧЕРНОВИК" not in text and "закрыт" in text
    xlsx = api.get(f"{DAY_PATH}/act.xlsx", key="write")
    assert xlsx.status_code == 200 and xlsx.headers["content-type"] == XLSX
    assert "akt-optima-2026-11-21.xlsx" in xlsx.headers["content-disposition"]
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames == ["Акт", "Расхождения"]
    rows = list(book["Расхождения"].iter_rows())
    assert len(rows) == 1 + 5
    for row in rows[1:]:  # the reasons: text, never a formula; BEL replaced, not refused
        reason = row[12]
        assert reason.data_type == "s" and reason.value.startswith("=HYPERLINK")
        assert "\ufffd" in reason.value and "\u0007" not in reason.value
    summary = {r[0]: r for r in book["Акт"].iter_rows(values_only=True) if r}
    assert summary["Разница (агент − мы)"][2] == -180
    problem(
        api.get(f"{BASE}/reconciliation/days/nobody/2026-11-21/act.xlsx"), 404, "agent_not_found"
    )


def _our_payments(engine: Engine) -> set[tuple[str, str, int, date]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(payments.c.txn_id, payments.c.account, payments.c.amount).where(
                payments.c.business_date == DAY, payments.c.status == "accepted"
            )
        ).all()
    return {(r.txn_id, r.account, int(r.amount), DAY) for r in rows}


@pytest.mark.parametrize(
    ("chosen", "media_type", "extension"),
    [
        ({}, "text/plain; charset=utf-8", "txt"),
        (
            {
                "kind": "csv",
                "encoding": "cp1251",
                "header": True,
                "total_line": False,
                "columns": {
                    "txn_id": "Номер",
                    "datetime": "Время",
                    "account": "Счёт",
                    "amount": "Сумма",
                },
            },
            "text/csv; charset=cp1251",
            "csv",
        ),
        (
            {
                "kind": "xlsx",
                "header": True,
                "amount_unit": "tyiyn",
                "columns": {"txn_id": 1, "date": 2, "time": 3, "account": 4, "amount": 5},
            },
            XLSX,
            "xlsx",
        ),
    ],
    ids=["qiwi", "csv-cp1251", "xlsx"],
)
def test_our_registry_in_the_agents_format_reads_back_as_our_payments(
    api: Api,
    engine: Engine,
    planted: dict[str, Any],
    chosen: dict[str, Any],
    media_type: str,
    extension: str,
) -> None:
    if chosen:
        put = api.client.put(FORMAT, json=chosen, headers=api.auth("admin"))
        assert put.status_code == 200, put.text
    response = api.get(f"{DAY_PATH}/our-registry")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert response.headers["content-disposition"] == (
        f'attachment; filename="tolom-optima-2026-11-21.{extension}"'
    )
    with engine.connect() as conn:
        agent = agent_service.load(conn, "optima")
        assert agent is not None
        fmt = formats.load(conn, agent.id)
    lines = reading.parse(response.content, fmt, agent.timezone).lines
    assert len(lines) == 5
    assert {(x.txn_id, x.account, x.amount, x.business_date) for x in lines} == _our_payments(
        engine
    )
    # Sent back as the agent's registry, it matches every payment.
    done = upload(api, response.content, content_type=media_type).json()
    assert done["summary"]["discrepancy_count"] == 0 and done["summary"]["matched_count"] == 5
    # A day without payments: a file without lines (with its Total, it reads back empty).
    empty = api.get(f"{BASE}/reconciliation/days/optima/2026-11-01/our-registry")
    assert empty.status_code == 200 and empty.headers["content-type"] == media_type
    if fmt.total_line:
        assert reading.parse(empty.content, fmt, agent.timezone).lines == []
    problem(
        api.get(f"{BASE}/reconciliation/days/nobody/2026-11-21/our-registry"),
        404,
        "agent_not_found",
    )


# --- the registry format ----------------------------------------------------------------


def test_the_registry_format_is_read_set_checked_and_audited(
    api: Api, engine: Engine, gateway: Gateway
) -> None:
    default = api.get(FORMAT)
    assert default.status_code == 200
    assert default.json() == {
        "kind": "qiwi",
        "encoding": "utf-8",
        "delimiter": ";",
        "header": False,
        "columns": {"txn_id": 1, "date": 2, "time": 3, "account": 4, "amount": 5},
        "date_format": "auto",
        "time_format": "%H:%M:%S",
        "datetime_format": "%Y-%m-%d %H:%M:%S",
        "timezone": None,
        "amount_unit": "som",
        "total_line": True,
        "sheet": None,
    }
    wanted = {
        "kind": "csv",
        "encoding": "cp1251",
        "header": True,
        "columns": {"txn_id": "Номер", "datetime": "Время", "account": "Счёт", "amount": "3"},
        "timezone": "Europe/Moscow",
    }
    response = api.client.put(FORMAT, json=wanted, headers=api.auth("admin"))
    assert response.status_code == 200, response.text
    stored_format = response.json()
    assert stored_format["columns"]["amount"] == 3 and stored_format["encoding"] == "cp1251"
    assert api.get(FORMAT).json() == stored_format
    with engine.connect() as conn:
        trail = audit.entries(conn, "agent", "optima")
    assert [line["action"] for line in trail] == ["registry_format.set"]
    assert (trail[0]["actor"], trail[0]["address"]) == ("apikey:boss", PEER)
    assert trail[0]["before"] == default.json() and trail[0]["after"] == stored_format
    # The same settings again change nothing and write no audit line.
    assert api.client.put(FORMAT, json=wanted, headers=api.auth("admin")).status_code == 200
    assert actions(engine).count("registry_format.set") == 1
    # Settings the core cannot use: the problem named, nothing stored.
    before = stored(engine)
    for settings, words in (
        ({"columns": {"txn_id": "A", "date": 2, "account": 4, "amount": 5}}, "заголовка"),
        ({"encoding": "klingon"}, "кодировка"),
        ({"timezone": "Mars/Olympus"}, "часовой пояс"),
        ({"kind": "csv", "delimiter": ";;"}, "разделитель"),
        ({"columns": {"txn_id": 1, "account": 2}}, "не указаны колонки"),
        ({"columns": {"txn_id": 1, "date": 1, "account": 2, "amount": 3}}, "одна колонка"),
        ({"columns": {"txn_id": 0, "date": 2, "account": 3, "amount": 4}}, "от 1 до 200"),
    ):
        response = api.client.put(FORMAT, json=settings, headers=api.auth("admin"))
        body = problem(response, 422, "invalid_request")
        assert words in body["detail"], body
    for settings, field in (
        ({"kind": "pdf"}, "kind"),
        ({"columns": {"txn_id": 1, "color": 2}}, "columns.color"),
        ({"header": "yes"}, "header"),
        ({"columns": {"txn_id": 1.5}}, "columns.txn_id"),
        ({"speed": 1}, "speed"),
        ({"sheet": "a\u0000b"}, "body"),
    ):
        response = api.client.put(FORMAT, json=settings, headers=api.auth("admin"))
        body = problem(response, 422, "invalid_request")
        assert any(e["field"].startswith(field) for e in body["errors"]), body
    assert stored(engine) == before and api.get(FORMAT).json() == stored_format
    problem(api.get(f"{BASE}/agents/nobody/registry-format"), 404, "agent_not_found")
    response = api.client.put(
        f"{BASE}/agents/nobody/registry-format", json={}, headers=api.auth("admin")
    )
    problem(response, 404, "agent_not_found")


def test_the_openapi_document_describes_every_reconciliation_route(api: Api) -> None:
    client: TestClient = api.client
    document = client.get("/openapi.json").json()
    upload_operation = document["paths"][f"{BASE}/agents/{{code}}/registries"]["post"]
    assert set(upload_operation["requestBody"]["content"]) >= {
        "text/plain",
        "application/octet-stream",
    }
    assert upload_operation["tags"] == ["reconciliation"]
    for path, operations in document["paths"].items():
        if "/reconciliation/" in path or "/registr" in path:
            for operation in operations.values():
                assert operation["summary"] and "401" in operation["responses"], path
    codes = document["components"]["schemas"]["Problem"]
    assert codes  # the problem schema is shared by every route


def test_an_empty_registry_with_its_total_is_a_day_without_payments(
    api: Api, gateway: Gateway
) -> None:
    response = upload(api, b"Total: 0 0.00\n", day="2026-11-19")
    assert response.status_code == 201, response.text
    done = response.json()
    assert (done["day"], done["lines"], done["total"]) == ("2026-11-19", 0, "0.00")
    assert done["summary"]["discrepancy_count"] == 0
    # The same file again is that day's registry; another empty one needs its day.
    assert upload(api, b"Total: 0 0.00\n").headers["Idempotent-Replayed"] == "true"
    body = problem(upload(api, b"Total: 0 0\n"), 422, "registry_invalid")
    assert "укажите день" in body["detail"]
    day = api.get(f"{BASE}/reconciliation/days/optima/2026-11-19").json()
    assert (day["state"], day["unresolved"]) == ("ready", 0)
