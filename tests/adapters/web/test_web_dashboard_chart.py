"""The dashboard's chart of the last 30 business days: the figures per day and service, the
empty days, today at the right, bars proportional to their sums, the same figures in a
table, and the closed days grouped once behind it all."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy import event

from tests.adapters.web.test_web import NAME, Web, csrf_in
from tests.adapters.web.test_web import web as web
from tests.factories import Gateway, add_customer, add_invoice
from tolom.backoffice.dashboard import CHART_DAYS, Chart, ChartDay, Tally
from tolom.backoffice.users import Session, User
from tolom.money import format_amount
from tolom.payments import service as payment_service
from tolom.web import charts, pages
from tolom.web.i18n import money, translator

NBSP = "\u00a0"
TODAY = date(2026, 11, 21)
# 12:00 in Bishkek on TODAY.
NOON = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


def _som(text: str) -> str:
    return text.replace(" ", NBSP) + NBSP + "сом"


def _cells(row: str) -> list[str]:
    return [unescape(c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def table_of(html: str) -> dict[str, list[str]]:
    """{YYYY-MM-DD: cells} of the chart's table, and "total" for its footer."""
    start = html.index('id="chart-table"')
    table = html[start : html.index("</table>", start)]
    rows = {
        day: _cells(row)
        for day, row in re.findall(r'<tr data-day="([^"]+)">(.*?)</tr>', table, re.S)
    }
    [footer] = re.findall(r"<tfoot>\s*<tr>(.*?)</tr>", table, re.S)
    rows["total"] = _cells(footer)
    return rows


def columns_of(html: str) -> list[dict[str, Any]]:
    """The SVG's day groups in drawing order (left to right), with their bars."""
    start = html.index('<svg id="chart"')
    svg = html[start : html.index("</svg>", start)]
    found = []
    for classes, day, count, total, body in re.findall(
        r'<g class="(day[^"]*)" data-day="([^"]+)" data-count="(\d+)" data-total="(\d+)">'
        r"(.*?)</g>",
        svg,
        re.S,
    ):
        bars = [
            {
                "service": service,
                "count": int(n),
                "total": int(amount),
                "y": float(y),
                "height": float(height),
            }
            for service, n, amount, y, height in re.findall(
                r'<rect class="bar [a-z]+" data-service="([a-z]+)" data-count="(\d+)" '
                r'data-total="(\d+)" x="[\d.]+" y="([\d.]+)" width="[\d.]+" '
                r'height="([\d.]+)">',
                body,
            )
        ]
        label = re.search(r'<text class="day-label"[^>]*>(.*?)</text>', body)
        found.append(
            {
                "day": date.fromisoformat(day),
                "today": "today" in classes.split(),
                "count": int(count),
                "total": int(total),
                "bars": bars,
                "label": label.group(1) if label else None,
                "title": re.search(r"<title>(.*?)</title>", body, re.S).group(1),  # type: ignore[union-attr]
            }
        )
    return found


def svg_attribute(html: str, name: str) -> str:
    found = re.search(rf'<svg id="chart"[^>]* {name}="([^"]+)"', html)
    assert found is not None, name
    return found.group(1)


@pytest.fixture
def paid(web: Web, gateway: Gateway) -> dict[str, Any]:
    """Payments on a few of the last 30 business days, and some that must not count."""
    web.clock.now = NOON
    inn = add_customer(web.engine)
    assert gateway.pay("sochi", inn, "1510.00", txn_date="20261121100000")["result"] == 0
    assert gateway.pay("sochi", inn, "500.00", txn_date="20261121110000")["result"] == 0
    # Reversed: no longer money received.
    reversed_one = gateway.pay("sochi", inn, "70.00", txn_date="20261121113000")
    with web.engine.begin() as conn:
        outcome = payment_service.reverse(conn, int(reversed_one["prv_txn"]), "ошибка", "test")
    assert outcome.outcome.name == "OK"
    # 00:30 in Bishkek on 20 November is still 19 November in UTC: the 20th's payment.
    assert gateway.pay("sochi", inn, "250.00", txn_date="20261120003000")["result"] == 0
    invoice = add_invoice(web.engine)
    eds_total = format_amount(invoice.total)
    assert gateway.pay("eds", invoice.number, eds_total, txn_date="20261120150000")["result"] == 0
    # The busiest day, ten days ago.
    assert gateway.pay("sochi", inn, "4000.00", txn_date="20261111120000")["result"] == 0
    # The first day of the chart, and the day before it (not shown).
    assert gateway.pay("sochi", inn, "100.00", txn_date="20261023090000")["result"] == 0
    assert gateway.pay("sochi", inn, "9.00", txn_date="20261022230000")["result"] == 0
    # Tomorrow's business day (an agent's clock ahead of ours) is not in the chart either.
    assert gateway.pay("sochi", inn, "7.00", txn_date="20261122090000")["result"] == 0
    return {"inn": inn, "eds_total": invoice.total}


def test_figures_per_day_and_service(web: Web, paid: dict[str, Any]) -> None:
    html = web.signed_in().get("/").text
    rows = table_of(html)
    days = [d for d in rows if d != "total"]
    assert len(days) == CHART_DAYS == 30
    assert days[0] == "2026-10-23" and days[-1] == "2026-11-21"  # oldest first, today last
    eds = money(paid["eds_total"], "ru")
    # Day | sochi count, sum | eds count, sum | total count, sum
    assert rows["2026-11-21"] == [
        "21.11.2026",
        "2",
        _som("2 010,00"),
        "0",
        _som("0,00"),
        "2",
        _som("2 010,00"),
    ]
    assert rows["2026-11-20"][1:] == [
        "1",
        _som("250,00"),
        "1",
        eds,
        "2",
        money(25_000 + paid["eds_total"], "ru"),
    ]
    assert rows["2026-11-11"][1:3] == ["1", _som("4 000,00")]
    assert rows["2026-10-23"][1:3] == ["1", _som("100,00")]
    # Every other day is there, with zeros.
    quiet = [d for d in days if d not in {"2026-11-21", "2026-11-20", "2026-11-11", "2026-10-23"}]
    assert len(quiet) == 26
    for day in quiet:
        assert rows[day][1:] == ["0", _som("0,00")] * 3, day
    total = 201_000 + 25_000 + 400_000 + 10_000 + paid["eds_total"]
    assert rows["total"] == [
        "Итого",
        "5",
        money(total - paid["eds_total"], "ru"),
        "1",
        eds,
        "6",
        money(total, "ru"),
    ]
    summary = unescape(re.search(r'id="chart-summary">(.*?)<', html, re.S).group(1))  # type: ignore[union-attr]
    assert summary == (
        f"С 23.10.2026 по 21.11.2026: платежей — 6, на сумму {money(total, 'ru')}. "
        f"Больше всего — 11.11.2026: {_som('4 000,00')}."
    )


def test_today_is_at_the_right_and_bars_are_proportional(web: Web, paid: dict[str, Any]) -> None:
    html = web.signed_in().get("/").text
    columns = columns_of(html)
    assert [c["day"] for c in columns] == [
        TODAY - timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)
    ]
    assert [c["today"] for c in columns] == [False] * 29 + [True]
    assert columns[-1]["label"] == "сегодня"
    # Labels under every fifth day counted back from today.
    assert [c["label"] for c in columns if c["label"]] == [
        "27.10",
        "01.11",
        "06.11",
        "11.11",
        "16.11",
        "сегодня",
    ]
    by_day = {c["day"]: c for c in columns}
    assert by_day[TODAY]["total"] == 201_000 and by_day[TODAY]["count"] == 2
    assert [b["service"] for b in by_day[TODAY]["bars"]] == ["sochi"]
    # The 20th is stacked: sochi at the bottom, eds on top of it.
    sochi, eds = by_day[date(2026, 11, 20)]["bars"]
    assert (sochi["service"], eds["service"]) == ("sochi", "eds")
    assert eds["y"] + eds["height"] == pytest.approx(sochi["y"], abs=0.02)
    # Empty days have no bar, and say so in their tooltip.
    empty = by_day[date(2026, 11, 1)]
    assert empty["bars"] == [] and empty["total"] == 0
    assert unescape(empty["title"]) == f"01.11.2026: платежей — 0, сумма — {_som('0,00')}"
    # Every bar's height is its sum on one scale; the busiest day reaches past 3/4 of it.
    scale = int(svg_attribute(html, "data-scale"))
    plot = float(svg_attribute(html, "data-plot-height"))
    assert scale == 400_000  # 4 000 som: a round step of 1 000 som, four steps
    bars = [bar for c in columns for bar in c["bars"]]
    assert len(bars) == 5
    for bar in bars:
        assert bar["height"] == pytest.approx(plot * bar["total"] / scale, abs=0.01)
    tallest = max(bars, key=lambda b: b["height"])
    assert tallest["total"] == 400_000 and tallest["height"] == pytest.approx(plot, abs=0.01)
    ratio = by_day[TODAY]["bars"][0]["height"] / tallest["height"]
    assert ratio == pytest.approx(201_000 / 400_000, abs=0.001)
    # Axis labels: round amounts, every one in the same unit (zero too).
    labels = re.findall(r'<text class="axis-label"[^>]*data-value="(\d+)">(.*?)</text>', html)
    assert [(int(v), unescape(label)) for v, label in labels] == [
        (0, "0 тыс. сом"),
        (100_000, "1 тыс. сом"),
        (200_000, "2 тыс. сом"),
        (300_000, "3 тыс. сом"),
        (400_000, "4 тыс. сом"),
    ]


def test_the_chart_is_accessible_text_too(web: Web, paid: dict[str, Any]) -> None:
    html = web.signed_in().get("/").text
    svg = html[html.index('<svg id="chart"') :]
    assert 'role="img"' in svg[:400] and 'aria-labelledby="chart-svg-title chart-svg-desc"' in svg
    assert '<title id="chart-svg-title">Принятые платежи за 30 дней</title>' in svg
    assert '<desc id="chart-svg-desc">С 23.10.2026 по 21.11.2026' in svg
    assert '<details id="chart-details">' in html and "Показать таблицей" in html
    assert "<caption>Принятые платежи по дням, 23.10.2026 — 21.11.2026</caption>" in html
    assert ' style="' not in html.split('<section class="chart"')[1].split("</section>")[0]
    # The bar's own tooltip names its service.
    assert (
        f"<title>11.11.2026, Пополнение баланса СОЧИ: платежей — 1, сумма — {_som('4 000,00')}</title>"
        in html
    )


def test_the_same_chart_in_english(web: Web, paid: dict[str, Any]) -> None:
    browser = web.signed_in()
    browser.post("/language", data={"csrf": csrf_in(browser.get("/").text), "language": "en"})
    html = browser.get("/").text
    assert table_of(html)["2026-11-21"][1:3] == ["2", f"2,010.00{NBSP}KGS"]
    assert columns_of(html)[-1]["label"] == "today"
    assert ">4k KGS<" in html


def test_no_payments_in_30_days(web: Web) -> None:
    web.clock.now = NOON
    html = web.signed_in().get("/").text
    assert (
        unescape(re.search(r'id="chart-summary">(.*?)<', html).group(1))  # type: ignore[union-attr]
        == "За последние 30 дней принятых платежей не было."
    )
    assert '<svg id="chart"' not in html  # nothing to draw
    rows = table_of(html)
    assert len(rows) == CHART_DAYS + 1
    assert all(
        cells[1:] == ["0", _som("0,00")] * 3 for day, cells in rows.items() if day != "total"
    )


def test_closed_days_are_grouped_once_then_only_the_last_two_days(
    web: Web, paid: dict[str, Any]
) -> None:
    """The first view groups the closed days once (and stores them: payments.day_totals)
    and the last two days live; later views group only the last two days."""
    browser = web.signed_in()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def reading() -> list[str]:
        statements.clear()
        event.listen(web.engine, "before_cursor_execute", seen)
        try:
            assert browser.get("/").status_code == 200
        finally:
            event.remove(web.engine, "before_cursor_execute", seen)
        return [s for s in statements if re.search(r"\bFROM payments\b", s)]

    first = reading()
    assert len(first) == 2, first
    assert all("GROUP BY payments.business_date" in query for query in first)
    [again] = reading()
    assert "GROUP BY payments.business_date" in again
    assert "payments.business_date BETWEEN" in again


# --- the layout and the labels, without a database ---------------------------------------


def _chart(totals: list[int]) -> Chart:
    first = TODAY - timedelta(days=len(totals) - 1)
    return Chart(
        ("sochi", "eds"),
        [
            ChartDay(
                first + timedelta(days=i),
                {"sochi": Tally(1 if total else 0, total), "eds": Tally()},
            )
            for i, total in enumerate(totals)
        ],
    )


def test_round_steps() -> None:
    assert charts.nice_step(0) == 100  # one som: an empty chart still has an axis
    assert charts.nice_step(300) == 100
    assert charts.nice_step(401) == 200
    assert charts.nice_step(400_000) == 100_000
    assert charts.nice_step(400_001) == 200_000
    assert charts.nice_step(900_000) == 250_000
    assert charts.nice_step(2_000_001) == 1_000_000
    assert charts.nice_step(7_654_321_00) == 200_000_000  # 7.65 M som: steps of 2 M som


def _labels(values: list[int], language: str = "ru") -> list[str]:
    shown = charts.axis_labels(values, translator(language))
    return [shown[value] for value in values]


def test_every_tick_of_an_axis_is_written_in_one_format() -> None:
    """One unit and one number of decimals per axis: never «0,00 сом» beside «1 тыс. сом»."""
    som = [i * 25_000 for i in range(5)]  # 0 .. 1 000 som in steps of 250: in full
    assert _labels(som) == [_som(x) for x in ("0,00", "250,00", "500,00", "750,00", "1 000,00")]
    thousands = [i * 100_000 for i in range(5)]
    assert _labels(thousands) == [f"{i} тыс. сом" for i in range(5)]
    halves = [i * 50_000_000 for i in range(4)]  # 0 .. 1,5 million: one decimal on all
    assert _labels(halves) == ["0,0 млн сом", "0,5 млн сом", "1,0 млн сом", "1,5 млн сом"]
    assert _labels(halves, "en") == ["0.0M KGS", "0.5M KGS", "1.0M KGS", "1.5M KGS"]
    assert _labels(halves, "ky")[-1] == "1,5 миллион сом"
    quarters = [i * 25_000_000 for i in range(5)]  # 250 000 som steps: thousands, not 0,25 M
    assert _labels(quarters) == [
        "0 тыс. сом",
        "250 тыс. сом",
        "500 тыс. сом",
        "750 тыс. сом",
        f"1{NBSP}000 тыс. сом",
    ]
    assert _labels([0]) == [_som("0,00")]
    assert _labels([0, 100], "en") == [f"0.00{NBSP}KGS", f"1.00{NBSP}KGS"]
    for values in (som, thousands, halves, quarters):
        for language in ("ru", "ky", "en"):
            shown = _labels(values, language)
            words = {re.sub(r"^[\d\s.,]+", "", label) for label in shown}
            assert len(words) == 1, shown  # one unit
            point = "." if language == "en" else ","
            decimals = {
                len(label.partition(point)[2].split()[0]) if point in label else 0
                for label in shown
            }
            assert len(decimals) == 1, shown


def test_layout_of_an_empty_and_a_full_chart() -> None:
    empty = charts.layout(_chart([0] * 30))
    assert empty.bars == [] and empty.ticks[0].value == 0
    assert len(empty.columns) == 30 and empty.columns[-1].today
    full = charts.layout(_chart([100 * i for i in range(30)]))
    assert len(full.bars) == 29  # the first day is zero
    for bar in full.bars:
        assert bar.height == pytest.approx(full.plot_height * bar.total / full.scale)
        assert bar.y + bar.height == pytest.approx(full.bottom)
        assert full.left <= bar.x and bar.x + bar.width <= full.right
    assert full.scale >= 2900 and full.ticks[-1].y == pytest.approx(full.top)


@pytest.mark.parametrize("language", ["ru", "ky", "en"])
def test_the_chart_renders_in_every_language(language: str) -> None:
    from tolom.backoffice.dashboard import Dashboard, DayTotals

    t = translator(language)
    chart = _chart([0, 150_000, 0] + [12_345] * 27)
    figures = Dashboard(
        today=DayTotals(TODAY, [], []),
        yesterday=DayTotals(TODAY - timedelta(days=1), [], []),
        awaiting_count=0,
        awaiting_total=0,
        dead_deliveries=0,
        expiring_signatures=0,
        expiry_days=30,
        chart=chart,
    )
    session = Session(User(1, "aida", NAME, "operator", language, True), "x", NOON)
    layout = charts.layout(chart)
    html = pages.render_text(
        "dashboard.html",
        t=t,
        session=session,
        page="dashboard",
        title="Tolom",
        d=figures,
        chart=layout,
        axis_label=charts.axis_labels([tick.value for tick in layout.ticks], t).get,
    )
    assert html.count('<g class="day') == 30 and html.count('class="bar sochi"') == 28 + 1
    assert t("dashboard.chart.as_table") in html and t.money(150_000) in html
