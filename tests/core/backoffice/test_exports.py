"""Exports of payments (CSV, XLSX): the core's rows and pages, both writers, the API's
`GET /payments/export` and `tolom export payments` — on every database backend."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, event
from starlette.testclient import TestClient

from tests.factories import Cli, Gateway, add_customer, add_invoice, new_txn_id
from tolom import apikeys
from tolom.backoffice import exports
from tolom.cli import exports as exports_cli
from tolom.payments import records

BOM = b"\xef\xbb\xbf"
XLSX = exports.XLSX_MEDIA_TYPE
EXPORT = "/api/v1/payments/export"


# --- data ------------------------------------------------------------------------------


@dataclass
class Sample:
    """Four payments of every kind, one of them reversed; receipts newest first."""

    romashka: str  # INN
    risky: str  # INN of a customer whose name looks like a formula
    invoice: str
    receipts: list[int]  # newest first: bank, eds, risky's, romashka's (reversed)


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, client=("203.0.113.7", 50000))


@pytest.fixture
def tokens(engine: Engine) -> dict[str, str]:
    with engine.begin() as conn:
        return {
            "read": apikeys.create(conn, name="reader", scopes=["read"]),
            "write": apikeys.create(conn, name="writer", scopes=["write"]),
            "charges": apikeys.create(conn, name="sochi", scopes=["charges"]),
        }


def auth(tokens: dict[str, str], key: str = "read") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[key]}"}


@pytest.fixture
def sample(client: TestClient, tokens: dict[str, str], engine: Engine, gateway: Gateway) -> Sample:
    romashka = add_customer(engine, name="ОсОО «Ромашка»")
    risky = add_customer(engine, name='=HYPERLINK("http://evil.example";"x")')
    invoice = add_invoice(engine)  # payer «ОсОО «Новый клиент»», 1510.00
    assert gateway.pay("sochi", romashka, "1510.00", "11", "20261120143005")["result"] == 0
    assert gateway.pay("sochi", risky, "250.50", "12", "20261121090000")["result"] == 0
    assert gateway.pay("eds", invoice.number, "1510.00", "13", "20261121235959")["result"] == 0
    bank = client.post(
        "/api/v1/manual-payments",
        json={
            "channel": "bank",
            "reference": "PP-000123",
            "service": "sochi",
            "account": romashka,
            "amount": "15000.00",
            "payment_code": "42151410",
            "bank_reference": "-000123",
            "payer": "@ИП Асанов",
            "received_at": "2026-11-21T10:15:00+06:00",
        },
        headers=auth(tokens, "write"),
    )
    assert bank.status_code == 201, bank.text
    listed = client.get("/api/v1/payments", headers=auth(tokens)).json()["items"]
    receipts = [p["id"] for p in listed]
    reversed_ = client.post(
        f"/api/v1/payments/{receipts[-1]}/reverse",
        json={"reason": '-Ошибочный ИНН; "повтор"\nвторая строка'},
        headers=auth(tokens, "write"),
    )
    assert reversed_.status_code == 200, reversed_.text
    return Sample(romashka, risky, invoice.number, receipts)


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(BOM)
    text = data[len(BOM) :].decode("utf-8")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def export_csv(engine: Engine, where: records.PaymentFilter | None = None) -> list[list[str]]:
    stream = io.BytesIO()
    exports.write_csv(exports.payments_rows(engine, where or records.PaymentFilter()), stream)
    return read_csv(stream.getvalue())


def receipts_of(table: list[list[str]]) -> list[int]:
    return [int(line[0]) for line in table[1:]]


# --- CSV -------------------------------------------------------------------------------


def test_csv_round_trip(engine: Engine, sample: Sample) -> None:
    table = export_csv(engine)
    assert tuple(table[0]) == exports.HEADER
    assert table[0][0] == "Квитанция" and table[0][8] == "Сумма, сом"
    assert receipts_of(table) == sample.receipts
    bank, eds, risky, romashka = (
        dict(zip(exports.HEADER, line, strict=True)) for line in table[1:]
    )

    assert romashka == {
        "Квитанция": str(sample.receipts[3]),
        "Рабочий день": "2026-11-20",
        "Время оплаты (Бишкек)": "2026-11-20 14:30:05",
        "Агент/канал": "optima",
        "txn_id": "11",
        "Услуга": "СОЧИ",
        "Лицевой счёт (ИНН или счёт)": sample.romashka,
        "Абонент/плательщик": "ОсОО «Ромашка»",
        "Сумма, сом": "1510,00",
        "Статус": "сторнирован",
        # starts with "-": neutralised; the quote, ';' and the line break survive CSV quoting
        "Причина сторно": '\'-Ошибочный ИНН; "повтор"\nвторая строка',
        "Код платежа": "",
        "Документ банка": "",
        "Вносил (касса/банк)": "",
    }
    assert risky["Абонент/плательщик"] == '\'=HYPERLINK("http://evil.example";"x")'
    assert risky["Сумма, сом"] == "250,50" and risky["Статус"] == "принят"
    assert risky["Причина сторно"] == ""
    assert eds["Услуга"] == "ЭЦП" and eds["Лицевой счёт (ИНН или счёт)"] == sample.invoice
    assert eds["Абонент/плательщик"] == "ОсОО «Новый клиент»"
    assert eds["Время оплаты (Бишкек)"] == "2026-11-21 23:59:59"
    assert bank["Агент/канал"] == "bank" and bank["txn_id"] == "PP-000123"
    assert bank["Рабочий день"] == "2026-11-21"
    assert bank["Время оплаты (Бишкек)"] == "2026-11-21 10:15:00"
    assert bank["Сумма, сом"] == "15000,00"
    assert bank["Абонент/плательщик"] == "ОсОО «Ромашка»"
    assert bank["Код платежа"] == "42151410"
    assert bank["Документ банка"] == "'-000123"
    assert bank["Вносил (касса/банк)"] == "'@ИП Асанов"
    # machine-readable: the amount's digits are tyiyn
    assert int(bank["Сумма, сом"].replace(",", "")) == 1_500_000


def test_csv_of_nothing_is_the_header(engine: Engine) -> None:
    assert export_csv(engine) == [list(exports.HEADER)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+996555", "'+996555"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("1-2", "1-2"),
        ("ОсОО «Тест»", "ОсОО «Тест»"),
        ("", ""),
    ],
)
def test_neutralise(text: str, expected: str) -> None:
    assert exports.neutralise(text) == expected


def _row(**changes: Any) -> exports.ExportRow:
    row = exports.ExportRow(
        receipt=7,
        business_date=date(2026, 11, 21),
        paid_at=datetime(2026, 11, 21, 14, 30, 5, tzinfo=exports.ZONE),
        agent="optima",
        txn_id="1",
        service="sochi",
        account="01904202310427",
        payer_name="ОсОО «Тест»",
        amount=151_005,
        status="accepted",
        reversal_reason=None,
        payment_code=None,
        bank_reference=None,
        depositor=None,
    )
    return replace(row, **changes)


RISKY = ["=cmd|' /C calc'!A0", "+1", "-1", "@x", "\t=1", "\r=1"]


def test_every_text_column_is_neutralised_in_csv() -> None:
    rows = [
        _row(
            agent=text,
            txn_id=text,
            account=text,
            payer_name=text,
            reversal_reason=text,
            payment_code=text,
            bank_reference=text,
            depositor=text,
        )
        for text in RISKY
    ]
    stream = io.BytesIO()
    assert exports.write_csv(rows, stream) == len(RISKY)
    table = read_csv(stream.getvalue())
    for line, text in zip(table[1:], RISKY, strict=True):
        for column in (3, 4, 6, 7, 10, 11, 12, 13):
            assert line[column] == "'" + text, (column, line)


# --- XLSX ------------------------------------------------------------------------------


def open_xlsx(data: bytes) -> Any:
    return load_workbook(io.BytesIO(data)).active


def test_xlsx_types_formats_and_frozen_header(engine: Engine, sample: Sample) -> None:
    stream = io.BytesIO()
    rows = exports.payments_rows(engine, records.PaymentFilter())
    assert exports.write_xlsx(rows, stream) == 4
    sheet = open_xlsx(stream.getvalue())
    assert sheet.title == "Платежи"
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:N5"
    assert sheet.column_dimensions["H"].width == 36
    lines = [[c for c in line] for line in sheet.iter_rows()]
    assert tuple(c.value for c in lines[0]) == exports.HEADER
    assert lines[0][0].font.b
    assert [c[0].value for c in lines[1:]] == sample.receipts
    bank, eds, risky, romashka = lines[1:]

    day, moment, amount = romashka[1], romashka[2], romashka[8]
    assert day.is_date and day.value == datetime(2026, 11, 20)  # Excel dates are datetimes
    assert day.number_format == "DD.MM.YYYY"
    assert moment.is_date and moment.value == datetime(2026, 11, 20, 14, 30, 5)
    assert moment.number_format == "DD.MM.YYYY HH:MM:SS"
    assert amount.data_type == "n" and amount.value == 1510
    assert amount.number_format == "#,##0.00"
    assert Decimal(str(risky[8].value)) == Decimal("250.50")
    assert romashka[9].value == "сторнирован" and risky[9].value == "принят"
    assert romashka[10].value == '-Ошибочный ИНН; "повтор"\nвторая строка'
    # a text that looks like a formula is a string cell, kept as it is
    assert risky[7].data_type == "s"
    assert risky[7].value == '=HYPERLINK("http://evil.example";"x")'
    assert romashka[6].data_type == "s" and romashka[6].value == sample.romashka  # leading 0
    assert eds[6].value == sample.invoice and eds[7].value == "ОсОО «Новый клиент»"
    assert [c.value for c in bank[11:]] == ["42151410", "-000123", "@ИП Асанов"]
    assert bank[3].value == "bank" and bank[4].value == "PP-000123"
    assert bank[2].value == datetime(2026, 11, 21, 10, 15)


def test_xlsx_never_holds_a_formula() -> None:
    stream = io.BytesIO()
    rows = [_row(payer_name=text, reversal_reason=text, txn_id=text) for text in RISKY]
    exports.write_xlsx(rows, stream)
    with zipfile.ZipFile(io.BytesIO(stream.getvalue())) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml and "<f " not in xml
    sheet = open_xlsx(stream.getvalue())
    for line, text in zip(list(sheet.iter_rows(values_only=True))[1:], RISKY, strict=True):
        # XML reads a bare carriage return back as a line feed
        assert line[4] == line[7] == line[10] == text.replace("\r", "\n")


def test_xlsx_replaces_characters_xml_cannot_carry(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    exports.write_xlsx([_row(reversal_reason="до\x01после\tтаб")], path)
    sheet = open_xlsx(path.read_bytes())
    assert sheet["K2"].value == "до\ufffdпосле\tтаб"
    assert Decimal(str(sheet["I2"].value)) == Decimal("1510.05")


# --- rows: filters, order, pages -------------------------------------------------------


def test_filters_are_respected(engine: Engine, sample: Sample) -> None:
    def receipts(**fields: Any) -> list[int]:
        return [r.receipt for r in exports.payments_rows(engine, records.PaymentFilter(**fields))]

    bank, eds, risky, romashka = sample.receipts
    assert receipts(agent="optima") == [eds, risky, romashka]
    assert receipts(agent="bank") == [bank]
    assert receipts(date_from=date(2026, 11, 21), date_to=date(2026, 11, 21)) == [bank, eds, risky]
    assert receipts(date_to=date(2026, 11, 20)) == [romashka]
    assert receipts(status="reversed") == [romashka]
    assert receipts(status="accepted", service="sochi") == [bank, risky]
    assert receipts(account=sample.romashka) == [bank, romashka]
    assert receipts(agent="nobody") == []
    with engine.connect() as conn:  # inside a caller's transaction too
        rows = list(exports.payments_rows(conn, records.PaymentFilter(service="eds")))
    assert [r.receipt for r in rows] == [eds]


@pytest.fixture
def twelve(engine: Engine, gateway: Gateway) -> list[int]:
    inn = add_customer(engine)
    for i in range(12):
        assert gateway.pay("sochi", inn, f"{i + 1}.00")["result"] == 0
    with engine.connect() as conn:
        return [
            p.id for p in records.search(conn, records.PaymentFilter(), before_id=None, limit=99)
        ]


class Queries:
    """The statements the engine runs, as the database receives them (no mock involved)."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        self.engine = engine

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    @property
    def pages(self) -> int:
        """Page reads: only the payment record's query joins the reversals."""
        return sum("payment_reversals" in s for s in self.statements)

    @property
    def payer_lookups(self) -> int:
        return sum("payer_name" in s and "payment_reversals" not in s for s in self.statements)


@pytest.fixture
def queries(engine: Engine) -> Iterator[Queries]:
    counter = Queries(engine)
    event.listen(engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine, "before_cursor_execute", counter)


def test_pages_are_read_lazily_with_the_page_size(
    engine: Engine, twelve: list[int], queries: Queries
) -> None:
    rows = exports.payments_rows(engine, records.PaymentFilter(), page_size=5)
    first = next(rows)
    assert first.receipt == twelve[0]
    assert queries.pages == 1  # one page read, not the whole table
    rest = list(rows)
    assert [first.receipt, *(r.receipt for r in rest)] == twelve  # each once, newest first
    assert queries.pages == 3  # 5 + 5 + 2
    assert queries.payer_lookups == 3  # one per page, not per row


def test_an_exact_multiple_of_the_page_size_ends_with_an_empty_page(
    engine: Engine, twelve: list[int], queries: Queries
) -> None:
    rows = list(exports.payments_rows(engine, records.PaymentFilter(), page_size=4))
    assert [r.receipt for r in rows] == twelve
    assert queries.pages == 4  # 4 + 4 + 4 + 0
    assert queries.payer_lookups == 3  # the empty page asks for no names


def test_pages_keep_the_filter(engine: Engine, twelve: list[int], gateway: Gateway) -> None:
    other = add_customer(engine)
    gateway.pay("sochi", other, "999.00")
    where = records.PaymentFilter(amount_min=300, amount_max=1000)  # 3.00 … 10.00
    rows = list(exports.payments_rows(engine, where, page_size=3))
    assert [r.amount for r in rows] == [1000, 900, 800, 700, 600, 500, 400, 300]
    assert [r.receipt for r in rows] == twelve[2:10]


def test_check_size_counts_up_to_the_cap(engine: Engine, twelve: list[int]) -> None:
    everything = records.PaymentFilter()
    with engine.connect() as conn:
        assert exports.check_size(conn, everything) == 12
        assert exports.check_size(conn, everything, limit=12) == 12
        with pytest.raises(exports.ExportTooLarge, match="больше 11 платежей"):
            exports.check_size(conn, everything, limit=11)
        assert records.count(conn, everything, at_most=5) == 5
        assert records.count(conn, records.PaymentFilter(agent="optima"), at_most=99) == 12
        assert records.count(conn, records.PaymentFilter(agent="bank"), at_most=99) == 0


def test_page_size_must_be_positive(engine: Engine) -> None:
    with pytest.raises(ValueError, match="page_size"):
        next(exports.payments_rows(engine, records.PaymentFilter(), page_size=0))


def test_filename() -> None:
    days = {"date_from": date(2026, 11, 1), "date_to": date(2026, 11, 21)}
    assert exports.filename(records.PaymentFilter(**days), "csv") == (
        "payments-2026-11-01_2026-11-21.csv"
    )
    first = records.PaymentFilter(date_from=date(2026, 11, 1))
    assert exports.filename(first, "xlsx") == "payments-from-2026-11-01.xlsx"
    last = records.PaymentFilter(date_to=date(2026, 11, 21))
    assert exports.filename(last, "csv") == "payments-to-2026-11-21.csv"
    assert exports.filename(records.PaymentFilter(), "csv") == "payments-all.csv"


# --- API -------------------------------------------------------------------------------


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def test_api_streams_the_csv(client: TestClient, tokens: dict[str, str], sample: Sample) -> None:
    params = {"date_from": "2026-11-20", "date_to": "2026-11-21"}
    response = client.get(EXPORT, params=params, headers=auth(tokens))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="payments-2026-11-20_2026-11-21.csv"'
    )
    table = read_csv(response.content)
    assert tuple(table[0]) == exports.HEADER
    assert receipts_of(table) == sample.receipts
    assert table[4][9] == "сторнирован"
    # the same filters as the list
    listed = client.get("/api/v1/payments", params={"agent": "optima"}, headers=auth(tokens))
    exported = client.get(EXPORT, params={"agent": "optima"}, headers=auth(tokens))
    assert receipts_of(read_csv(exported.content)) == [p["id"] for p in listed.json()["items"]]
    assert 'filename="payments-all.csv"' in exported.headers["content-disposition"]
    reversed_ = client.get(EXPORT, params={"status": "reversed"}, headers=auth(tokens))
    assert receipts_of(read_csv(reversed_.content)) == [sample.receipts[3]]


def test_api_returns_the_xlsx(client: TestClient, tokens: dict[str, str], sample: Sample) -> None:
    params = {"format": "xlsx", "date_from": "2026-11-21", "service": "sochi"}
    response = client.get(EXPORT, params=params, headers=auth(tokens, "write"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == (
        'attachment; filename="payments-from-2026-11-21.xlsx"'
    )
    assert int(response.headers["content-length"]) == len(response.content)
    sheet = open_xlsx(response.content)
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == exports.HEADER
    assert [line[0] for line in values[1:]] == [sample.receipts[0], sample.receipts[2]]


def test_api_export_is_not_taken_for_a_payment_id(
    client: TestClient, tokens: dict[str, str]
) -> None:
    response = client.get(EXPORT, headers=auth(tokens))
    assert response.status_code == 200 and read_csv(response.content) == [list(exports.HEADER)]


def test_api_export_needs_the_read_scope(client: TestClient, tokens: dict[str, str]) -> None:
    problem(client.get(EXPORT), 401, "unauthenticated")
    problem(client.get(EXPORT, headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")
    problem(client.get(EXPORT, headers=auth(tokens, "charges")), 403, "insufficient_scope")
    # without a key, a bad filter is still a 401 first
    problem(client.get(EXPORT, params={"date_from": "x"}), 401, "unauthenticated")
    for key in ("read", "write"):
        assert client.get(EXPORT, headers=auth(tokens, key)).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"amount_min": "1,00"}, "amount_min"),
        ({"amount_min": "10", "amount_max": "5"}, "amount_min"),
        ({"date_from": "2026-02-30"}, "date_from"),
        ({"date_to": "2026-11-21T00:00:00"}, "date_to"),
        ({"date_from": "2026-11-22", "date_to": "2026-11-21"}, "date_from"),
        ({"service": "gas"}, "service"),
        ({"status": "lost"}, "status"),
        ({"format": "pdf"}, "format"),
        ({"date_from": "2026-11-01", "format": "xlsx", "agent": "x" * 33}, "agent"),
    ],
)
def test_api_bad_filters_are_422(
    client: TestClient, tokens: dict[str, str], params: dict[str, str], field: str
) -> None:
    body = problem(client.get(EXPORT, params=params, headers=auth(tokens)), 422, "invalid_request")
    assert {e["field"] for e in body["errors"]} == {field}


def test_api_refuses_an_export_above_the_cap(
    client: TestClient,
    tokens: dict[str, str],
    sample: Sample,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exports, "MAX_ROWS", 3)
    for fmt in ("csv", "xlsx"):
        response = client.get(EXPORT, params={"format": fmt}, headers=auth(tokens))
        body = problem(response, 422, "export_too_large")
        assert "больше 3 платежей" in body["detail"] and "сузьте" in body["detail"]
    narrower = client.get(EXPORT, params={"agent": "optima"}, headers=auth(tokens))
    assert narrower.status_code == 200 and len(read_csv(narrower.content)) == 4


def test_openapi_documents_both_media_types(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/payments/export"]["get"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"text/csv", XLSX}
    assert "Content-Disposition" in operation["responses"]["200"]["headers"]
    assert "export_too_large" in operation["responses"]["422"]["description"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {
        "agent",
        "service",
        "status",
        "date_from",
        "date_to",
        "account",
        "amount_min",
        "amount_max",
        "txn_id",
        "format",
    }


# --- CLI -------------------------------------------------------------------------------


def test_cli_writes_csv_and_xlsx(cli: Cli, sample: Sample, tmp_path: Path) -> None:
    folder = tmp_path / "exports"  # tmp_path holds the SQLite database too
    folder.mkdir()
    target = folder / "ноябрь.csv"
    result = cli(
        "export", "payments", "--from", "2026-11-20", "--to", "2026-11-21",
        "--format", "csv", "-o", str(target),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Выгружено платежей: 4 → {target}" in result.stdout
    assert receipts_of(read_csv(target.read_bytes())) == sample.receipts
    assert list(folder.iterdir()) == [target]  # no .part left behind

    book = tmp_path / "bank.xlsx"  # the format from the extension
    result = cli("export", "payments", "--agent", "bank", "-o", str(book), "--json")
    assert result.exit_code == 0, result.output
    assert '"rows": 1' in result.stdout and '"format": "xlsx"' in result.stdout
    values = list(open_xlsx(book.read_bytes()).iter_rows(values_only=True))
    assert [line[0] for line in values[1:]] == [sample.receipts[0]]

    reversed_ = tmp_path / "r.csv"
    result = cli(
        "export", "payments", "--status", "reversed", "--service", "sochi", "-o", str(reversed_)
    )
    assert result.exit_code == 0, result.output
    assert receipts_of(read_csv(reversed_.read_bytes())) == [sample.receipts[3]]


def test_cli_reports_progress_on_stderr(
    cli: Cli, twelve: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports_cli, "PROGRESS_EVERY", 5)
    target = tmp_path / "all.xlsx"
    result = cli("export", "payments", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["Записано строк: 5", "Записано строк: 10"]
    assert "Записано" not in result.stdout
    assert len(list(open_xlsx(target.read_bytes()).iter_rows())) == 13


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-01"], "--from: нужна дата"),
        (["--to", "20261121"], "--to: нужна дата"),
        (["--from", "2026-11-22", "--to", "2026-11-21"], "позже"),
        (["--status", "lost"], "--status: допустимы accepted, reversed"),
        (["--service", "gas"], "--service: допустимы sochi, eds"),
        (["--format", "pdf"], "--format: допустимы csv, xlsx"),
    ],
)
def test_cli_refuses_bad_options(cli: Cli, tmp_path: Path, args: list[str], message: str) -> None:
    target = tmp_path / "out.csv"
    result = cli("export", "payments", *args, "-o", str(target))
    assert result.exit_code == 1
    assert "Ошибка:" in result.stderr and message in result.stderr
    assert not target.exists()


def test_cli_needs_a_format_it_can_tell(cli: Cli, tmp_path: Path) -> None:
    result = cli("export", "payments", "-o", str(tmp_path / "out.txt"))
    assert result.exit_code == 1 and "--format" in result.stderr


def test_cli_refuses_an_export_above_the_cap(
    cli: Cli, twelve: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "MAX_ROWS", 11)
    folder = tmp_path / "exports"
    folder.mkdir()
    result = cli("export", "payments", "-o", str(folder / "out.csv"))
    assert result.exit_code == 1 and "больше 11 платежей" in result.stderr
    assert list(folder.iterdir()) == []


def test_cli_reports_an_unwritable_file(cli: Cli, tmp_path: Path) -> None:
    result = cli("export", "payments", "-o", str(tmp_path / "missing" / "out.csv"))
    assert result.exit_code == 1 and "не удалось записать" in result.stderr


def test_a_manual_cash_payment_has_no_bank_details(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    inn = add_customer(engine, name="ИП Токтогулов")
    cash = {
        "channel": "cash_desk",
        "reference": f"PKO-{new_txn_id()}",
        "service": "sochi",
        "account": inn,
        "amount": "40.5",
        "payer": "Токтогулов А.",
    }
    assert client.post(
        "/api/v1/manual-payments", json=cash, headers=auth(tokens, "write")
    ).is_success
    (line,) = export_csv(engine)[1:]
    assert line[3] == "cash_desk" and line[7] == "ИП Токтогулов" and line[8] == "40,50"
    assert line[11:] == ["", "", "Токтогулов А."]
