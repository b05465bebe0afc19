"""Tariffs of reports and the quote: the seed, the arithmetic, the API (scopes, 422s) and the
`tolom tariff` commands."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update
from starlette.testclient import TestClient

from tolom import apikeys, audit, installation
from tolom.billing import tariffs
from tolom.db.schema import tariffs as tariffs_table

SEEDED = json.loads(
    resources.files("tolom.data").joinpath("tariffs.json").read_text(encoding="utf-8")
)


def _set_price(engine: Engine, code: str, price: int) -> None:
    with engine.begin() as conn:
        tariffs.set_price(conn, code, price)


def _quote(engine: Engine, items: list[tuple[tariffs.TariffRef, int]]) -> tariffs.Quote:
    with engine.connect() as conn:
        return tariffs.quote(conn, items)


# --- the seed ------------------------------------------------------------------------------


def test_the_seed_prices_reports_of_each_state_body_and_period(engine: Engine) -> None:
    with engine.connect() as conn:
        found = tariffs.list_tariffs(conn)
    assert {t.code for t in found} == {item["code"] for item in SEEDED}
    assert {t.state_body for t in found} == {"sti", "sf", "nsc"}
    assert {t.period for t in found} == {"month", "quarter", "year"}
    assert all(t.active and 5000 <= t.price <= 30000 for t in found)  # 50–300 som
    vat = next(t for t in found if t.code == "sti-vat-month")
    assert (vat.state_body, vat.form, vat.period, vat.price) == ("sti", "vat", "month", 15000)
    assert "НДС" in vat.name


def test_the_seed_never_overwrites_what_operators_changed(engine: Engine) -> None:
    with engine.begin() as conn:
        tariffs.set_price(conn, "sti-vat-month", 12345)
        tariffs.set_active(conn, "sti-sales-tax-month", False)
        conn.execute(delete(tariffs_table).where(tariffs_table.c.code == "nsc-1-enterprise-year"))
        # The operators price one shipped report under a code of their own.
        conn.execute(
            update(tariffs_table)
            .where(tariffs_table.c.code == "sf-contributions-month")
            .values(code="sf-own-code")
        )
        installation.prepare(conn)
        installation.prepare(conn)
        assert tariffs.get(conn, "sti-vat-month").price == 12345  # type: ignore[union-attr]
        assert tariffs.get(conn, "sti-sales-tax-month").active is False  # type: ignore[union-attr]
        assert tariffs.get(conn, "nsc-1-enterprise-year") is not None  # a missing one returns
        assert tariffs.get(conn, "sf-contributions-month") is None  # its report is priced
        assert tariffs.find(conn, "sf", "contributions", "month").code == "sf-own-code"  # type: ignore[union-attr]
        assert conn.execute(select(func.count()).select_from(tariffs_table)).scalar_one() == len(
            SEEDED
        )


def test_get_and_find_name_one_tariff(engine: Engine) -> None:
    with engine.connect() as conn:
        by_code = tariffs.get(conn, "sf-unified-report-quarter")
        by_report = tariffs.find(conn, "sf", "unified_report", "quarter")
        assert by_code is not None and by_code == by_report
        assert tariffs.get(conn, "nope") is None
        assert tariffs.find(conn, "sf", "unified_report", "month") is None


def test_set_price_and_activity_refuse_what_cannot_be(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(tariffs.TariffError, match="больше нуля"):
            tariffs.set_price(conn, "sti-vat-month", 0)
        with pytest.raises(tariffs.TariffError, match="нет тарифа"):
            tariffs.set_price(conn, "nope", 100)
        with pytest.raises(tariffs.TariffError, match="нет тарифа"):
            tariffs.set_active(conn, "nope", False)
        before, after = tariffs.set_price(conn, "sti-vat-month", 17550)
        assert (before.price, after.price) == (15000, 17550)


# --- the quote -----------------------------------------------------------------------------


@pytest.fixture
def round_prices(engine: Engine) -> None:
    """Prices that make the arithmetic readable: 100, 200, 300 som."""
    _set_price(engine, "sti-vat-month", 10000)
    _set_price(engine, "sf-unified-report-quarter", 20000)
    _set_price(engine, "sti-unified-declaration-year", 30000)


def test_a_monthly_report_costs_its_price_each_month(engine: Engine, round_prices: None) -> None:
    result = _quote(engine, [("sti-vat-month", 1)])
    assert (result.month, result.quarter, result.year) == (10000, 30000, 120000)


def test_a_quarterly_report_costs_nothing_per_month(engine: Engine, round_prices: None) -> None:
    result = _quote(engine, [("sf-unified-report-quarter", 1)])
    assert (result.month, result.quarter, result.year) == (0, 20000, 80000)


def test_a_yearly_report_costs_only_in_the_year(engine: Engine, round_prices: None) -> None:
    result = _quote(engine, [("sti-unified-declaration-year", 1)])
    assert (result.month, result.quarter, result.year) == (0, 0, 30000)


def test_a_mix_adds_up_per_column_and_counts_multiply(engine: Engine, round_prices: None) -> None:
    result = _quote(
        engine,
        [
            ("sti-vat-month", 2),  # 200 a month
            (("sf", "unified_report", "quarter"), 3),  # 600 a quarter
            ("sti-unified-declaration-year", 1),  # 300 a year
        ],
    )
    assert [(line.month, line.quarter, line.year) for line in result.lines] == [
        (20000, 60000, 240000),
        (0, 60000, 240000),
        (0, 0, 30000),
    ]
    # month = m; quarter = 3m + q; year = 12m + 4q + y
    assert result.month == 20000
    assert result.quarter == 3 * 20000 + 60000
    assert result.year == 12 * 20000 + 4 * 60000 + 30000
    assert [line.count for line in result.lines] == [2, 3, 1]
    assert result.lines[1].tariff.code == "sf-unified-report-quarter"


def test_the_quote_stays_in_integer_tyiyn(engine: Engine) -> None:
    _set_price(engine, "sti-vat-month", 3333)  # 33.33 som
    result = _quote(engine, [("sti-vat-month", 7)])
    assert (result.month, result.quarter, result.year) == (23331, 69993, 279972)
    assert all(isinstance(x, int) for x in (result.month, result.quarter, result.year))


def test_the_quote_refuses_unknown_disabled_and_miscounted_items(engine: Engine) -> None:
    with engine.begin() as conn:
        tariffs.set_active(conn, "sti-sales-tax-month", False)
    cases: list[tuple[list[tuple[tariffs.TariffRef, int]], int, str]] = [
        ([("sti-vat-month", 1), ("nope", 1)], 1, "nope"),
        ([("sti-sales-tax-month", 1)], 0, "sti-sales-tax-month"),
        ([(("sti", "vat", "year"), 1)], 0, "sti/vat/year"),
        ([("sti-vat-month", 0)], 0, "количество"),
        ([("sti-vat-month", tariffs.MAX_COUNT + 1)], 0, "количество"),
        ([], 0, "хотя бы один"),
    ]
    for items, index, fragment in cases:
        with pytest.raises(tariffs.QuoteError, match=fragment) as caught:
            _quote(engine, items)
        assert caught.value.index == index


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, client=("203.0.113.7", 50000))


@pytest.fixture
def keys(engine: Engine) -> dict[str, str]:
    with engine.begin() as conn:
        return {
            scope: apikeys.create(conn, name=f"key-{scope}", scopes=[scope])
            for scope in ("read", "write", "charges", "admin")
        }


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


QUOTE = {
    "items": [
        {"tariff": "sti-vat-month", "count": 2},
        {"state_body": "sf", "form": "unified_report", "period": "quarter"},
        {"tariff": "sti-unified-declaration-year"},
    ]
}


@pytest.mark.parametrize("scope", ["read", "write", "charges", "admin"])
def test_tariffs_are_read_with_read_or_charges(
    client: TestClient, keys: dict[str, str], scope: str
) -> None:
    listed = client.get("/api/v1/tariffs", headers=_auth(keys[scope]))
    assert listed.status_code == 200, listed.text
    vat = next(t for t in listed.json()["items"] if t["code"] == "sti-vat-month")
    assert vat == {
        "code": "sti-vat-month",
        "state_body": "sti",
        "form": "vat",
        "period": "month",
        "name": "ГНС: налоговый отчёт по НДС (ежемесячный)",
        "price": "150.00",
        "active": True,
    }
    quoted = client.post("/api/v1/tariffs/quote", json=QUOTE, headers=_auth(keys[scope]))
    assert quoted.status_code == 200, quoted.text


def test_tariffs_need_a_key(client: TestClient) -> None:
    _problem(client.get("/api/v1/tariffs"), 401, "unauthenticated")
    _problem(client.post("/api/v1/tariffs/quote", json=QUOTE), 401, "unauthenticated")


def test_the_tariff_list_can_skip_disabled_ones(
    client: TestClient, keys: dict[str, str], engine: Engine
) -> None:
    with engine.begin() as conn:
        tariffs.set_active(conn, "sti-vat-month", False)
    every = client.get("/api/v1/tariffs", headers=_auth(keys["read"])).json()["items"]
    offered = client.get(
        "/api/v1/tariffs", params={"active_only": "true"}, headers=_auth(keys["read"])
    ).json()["items"]
    assert len(every) == len(SEEDED) and len(offered) == len(SEEDED) - 1
    assert next(t for t in every if t["code"] == "sti-vat-month")["active"] is False
    assert "sti-vat-month" not in {t["code"] for t in offered}


def test_the_quote_endpoint(
    client: TestClient, keys: dict[str, str], engine: Engine, round_prices: None
) -> None:
    response = client.post("/api/v1/tariffs/quote", json=QUOTE, headers=_auth(keys["charges"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["month"], body["quarter"], body["year"]) == ("200.00", "800.00", "3500.00")
    assert [
        (x["tariff"]["code"], x["count"], x["month"], x["quarter"], x["year"])
        for x in body["lines"]
    ] == [
        ("sti-vat-month", 2, "200.00", "600.00", "2400.00"),
        ("sf-unified-report-quarter", 1, "0.00", "200.00", "800.00"),
        ("sti-unified-declaration-year", 1, "0.00", "0.00", "300.00"),
    ]


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"tariff": "sti-vat-month"}, {"tariff": "nope"}], "items.1.tariff"),
        ([{"state_body": "sti", "form": "vat", "period": "year"}], "items.0"),
        ([{"state_body": "sti", "form": "vat"}], "items.0"),
        ([{"tariff": "sti-vat-month", "state_body": "sti"}], "items.0"),
        ([{}], "items.0"),
        ([{"tariff": "sti-vat-month", "count": 0}], "items.0.count"),
        ([{"tariff": "sti-vat-month", "period": "week"}], "items.0.period"),
        ([], "items"),
    ],
)
def test_a_bad_quote_is_422_naming_the_item(
    client: TestClient, keys: dict[str, str], items: list[dict[str, Any]], field: str
) -> None:
    body = _problem(
        client.post("/api/v1/tariffs/quote", json={"items": items}, headers=_auth(keys["read"])),
        422,
        "invalid_request",
    )
    assert field in {e["field"] for e in body["errors"]}, body


# --- the CLI -------------------------------------------------------------------------------


def test_cli_lists_tariffs(cli: Any) -> None:
    result = cli("tariff", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {t["code"] for t in listed} == {item["code"] for item in SEEDED}
    human = cli("tariff", "list")
    assert human.exit_code == 0 and "sti-vat-month" in human.output and "150.00" in human.output


def test_cli_sets_a_price_disables_and_enables_with_an_audit_trail(
    cli: Any, engine: Engine
) -> None:
    assert cli("tariff", "set-price", "sti-vat-month", "175.50").exit_code == 0
    assert cli("tariff", "disable", "sti-vat-month").exit_code == 0
    disabled = cli("tariff", "list", "--active-only", "--json")
    assert "sti-vat-month" not in {t["code"] for t in json.loads(disabled.stdout)}
    enabled = cli("tariff", "enable", "sti-vat-month", "--json")
    assert json.loads(enabled.stdout)["active"] is True
    with engine.connect() as conn:
        vat = tariffs.get(conn, "sti-vat-month")
        trail = list(reversed(audit.entries(conn, "tariff", "sti-vat-month")))
    assert vat is not None and vat.price == 17550 and vat.active
    assert [e["action"] for e in trail] == ["tariff.set_price", "tariff.disable", "tariff.enable"]
    assert trail[0]["before"]["price"] == "150.00" and trail[0]["after"]["price"] == "175.50"
    assert all(e["actor"].startswith("cli:") for e in trail)


def test_cli_refusals(cli: Any, engine: Engine) -> None:
    for args, fragment in [
        (("tariff", "set-price", "nope", "10"), "нет тарифа"),
        (("tariff", "set-price", "sti-vat-month", "0"), "больше нуля"),
        (("tariff", "set-price", "sti-vat-month", "1,5"), "неверная сумма"),
        (("tariff", "disable", "nope"), "нет тарифа"),
        (("tariff", "quote", "nope"), "нет действующего тарифа"),
        (("tariff", "quote", "sti-vat-month:x"), "число отчётов"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert fragment in result.output, result.output
    with engine.connect() as conn:
        assert audit.entries(conn, "tariff") == []


def test_cli_quotes(cli: Any, engine: Engine, round_prices: None) -> None:
    result = cli(
        "tariff",
        "quote",
        "sti-vat-month:2",
        "sf-unified-report-quarter",
        "sti-unified-declaration-year",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["month"], data["quarter"], data["year"]) == ("200.00", "800.00", "3500.00")
    human = cli("tariff", "quote", "sti-vat-month")
    assert "Итого" in human.output and "1200.00" in human.output


def test_a_new_tariff_row_is_seen_by_the_quote(engine: Engine) -> None:
    """Tariffs are data: a row the operators add is quoted like a shipped one."""
    with engine.begin() as conn:
        conn.execute(
            insert(tariffs_table).values(
                code="sti-excise-month",
                state_body="sti",
                form="excise",
                period="month",
                name="ГНС: акцизный налог",
                price=12000,
            )
        )
    assert _quote(engine, [(("sti", "excise", "month"), 1)]).year == 144000
