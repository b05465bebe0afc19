"""Reading registries: QIWI-style text, CSV and XLSX with per-agent columns, encodings and
zones; every kind of bad file refused with its line and field named."""

from __future__ import annotations

import contextlib
import io
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook

from tolom.reconciliation.formats import FormatError, RegistryFormat, from_mapping
from tolom.reconciliation.parsing import RegistryError
from tolom.reconciliation.reading import parse
from tolom.settings import get_settings

BISHKEK = ZoneInfo("Asia/Bishkek")
MOSCOW = ZoneInfo("Europe/Moscow")
QIWI = RegistryFormat()


def qiwi(*lines: str, total: str | None = None) -> bytes:
    body = "\n".join(lines)
    if total is None:
        count = len(lines)
        amount = sum(Decimal(line.split("\t")[4]) for line in lines)
        total = f"Total: {count} {amount}"
    return (body + "\n" + total + "\n").encode()


def refused(content: bytes, fmt: RegistryFormat = QIWI) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        parse(content, fmt, BISHKEK)
    return caught.value


def test_qiwi_lines_and_total() -> None:
    content = qiwi(
        "1001\t22.11.2026\t10:15:00\t01234567890123\t500.00",
        "0001002\t2026-11-22\t23:59:59\t1234567890123456\t1510.5",
    )
    parsed = parse(content, QIWI, BISHKEK)
    assert [line.txn_id for line in parsed.lines] == ["1001", "1002"]  # keyed as at pay
    assert [line.amount for line in parsed.lines] == [50000, 151050]
    assert parsed.total == 201050
    assert parsed.days == {date(2026, 11, 22)}
    assert parsed.lines[1].occurred_at == "2026-11-22T23:59:59+06:00"
    assert parsed.lines[0].line_no == 1 and parsed.lines[1].line_no == 2


def test_a_registry_in_another_zone_lands_on_the_agents_day() -> None:
    # 21:30 in Moscow is 00:30 the next day in Bishkek (UTC+6 vs UTC+3).
    fmt = RegistryFormat(timezone="Europe/Moscow")
    content = qiwi("7\t21.11.2026\t21:30:00\t01234567890123\t10.00")
    [line] = parse(content, fmt, BISHKEK).lines
    assert line.business_date == date(2026, 11, 22)
    # The same moment, for an agent in Moscow: still the 21st.
    [line] = parse(content, RegistryFormat(), MOSCOW).lines
    assert line.business_date == date(2026, 11, 21)


def test_cp1251_csv_with_named_columns_and_decimal_commas() -> None:
    fmt = from_mapping(
        {
            "kind": "csv",
            "encoding": "cp1251",
            "delimiter": ";",
            "header": True,
            "total_line": False,
            "columns": {
                "txn_id": "Номер",
                "datetime": "Дата операции",
                "account": "Лицевой счёт",
                "amount": "Сумма, сом",
            },
            "datetime_format": "%d.%m.%Y %H:%M",
        }
    )
    text = (
        "Номер;Дата операции;Лицевой счёт;Сумма, сом;Плательщик\r\n"
        "55;22.11.2026 09:05;01234567890123;1 510,50;Иванов\r\n"
        '56;22.11.2026 09:06;01234567890123;"20,00";Пётр\r\n'
    )
    parsed = parse(text.encode("cp1251"), fmt, BISHKEK)
    assert [(line.txn_id, line.amount) for line in parsed.lines] == [("55", 151050), ("56", 2000)]
    assert parsed.lines[0].line_no == 2


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_with_real_numbers_and_dates() -> None:
    fmt = from_mapping(
        {
            "kind": "xlsx",
            "header": True,
            "total_line": False,
            "columns": {
                "txn_id": "ID",
                "date": "Дата",
                "time": "Время",
                "account": "ИНН",
                "amount": "Сумма",
            },
        }
    )
    content = _xlsx(
        [
            ["ID", "Дата", "Время", "ИНН", "Сумма"],
            [9001, datetime(2026, 11, 22), "08:00:00", 1234567890123, 150.5],  # leading 0 lost
            [9002, date(2026, 11, 22), "08:01:00", "22222222222222", 0.1],
        ]
    )
    parsed = parse(content, fmt, BISHKEK)
    assert [line.account for line in parsed.lines] == ["01234567890123", "22222222222222"]
    assert [line.amount for line in parsed.lines] == [15050, 10]
    bad = _xlsx(
        [
            ["ID", "Дата", "Время", "ИНН", "Сумма"],
            [1, "22.11.2026", "08:00:00", "22222222222222", 1.005],
        ]
    )
    error = refused(bad, fmt)
    assert error.line == 2 and error.field == "amount"


@pytest.mark.parametrize(
    ("content", "line", "field", "words"),
    [
        (b"", None, None, "пустой"),
        (b"   \n\n", None, None, "пустой"),
        (
            qiwi("1\t22.11.2026\t10:00:00\t01234567890123\t5.00", total="Total: 2 5.00"),
            2,
            None,
            "платежей — 2",
        ),
        (
            qiwi("1\t22.11.2026\t10:00:00\t01234567890123\t5.00", total="Total: 1 6.00"),
            2,
            None,
            "6,00",
        ),
        (b"1\t22.11.2026\t10:00:00\t01234567890123\t5.00\n", None, None, "итоговой"),
        (
            qiwi("1\t22.11.2026\t10:00:00\t01234567890123", total="Total: 1 5.00"),
            1,
            None,
            "5 полей",
        ),
        (qiwi("x1\t22.11.2026\t10:00:00\t01234567890123\t5.00"), 1, "txn_id", "цифр"),
        (qiwi("1\t31.11.2026\t10:00:00\t01234567890123\t5.00"), 1, "date", "не дата"),
        (qiwi("1\t22.11.2026\t25:00:00\t01234567890123\t5.00"), 1, "time", "не время"),
        (qiwi("1\t22.11.2026\t10:00:00\t01234567890123\t5.001"), 1, "amount", "двух знаков"),
        (qiwi("1\t22.11.2026\t10:00:00\t01234567890123\t-5.00"), 1, "amount", None),
        (qiwi("1\t22.11.2026\t10:00:00\t01234567890123\t0.00"), 1, "amount", "больше нуля"),
        (qiwi("1\t22.11.2026\t10:00:00\t\t5.00"), 1, "account", "пусто"),
        (qiwi("1\t22.11.1999\t10:00:00\t01234567890123\t5.00"), 1, "date", "1999"),
        ("1\t22.11.2026\t10:00:00\tИНН\t5.00\nTotal: 1 5.00\n".encode("cp1251"), 1, None, "utf-8"),
        (b"1\t22.11.2026\t10:00:00\t0123\x0045\t5.00\nTotal: 1 5.00\n", 1, None, "нулевой"),
        (
            qiwi("1\t22.11.2026\t10:00:00\t01234567890123\t5.00")
            + b"2\t22.11.2026\t10:00:00\t01234567890123\t5.00\n",
            3,
            None,
            "после итоговой",
        ),
    ],
)
def test_bad_files_are_refused_naming_line_and_field(
    content: bytes, line: int | None, field: str | None, words: str | None
) -> None:
    error = refused(content)
    assert (error.line, error.field) == (line, field), str(error)
    if words:
        assert words in str(error), str(error)


@pytest.mark.parametrize("account", ["12345", "ABC-1", "012345678901234", "40000000000000021"])
@pytest.mark.parametrize("kind", ["qiwi", "csv"])
def test_an_account_that_is_neither_an_inn_nor_an_invoice_number_refuses_the_file(
    account: str, kind: str
) -> None:
    good = "1\t22.11.2026\t10:00:00\t01234567890123\t5.00"
    bad = f"2\t22.11.2026\t10:00:00\t{account}\t5.00"
    content = qiwi(good, bad)
    fmt = QIWI
    if kind == "csv":
        content = content.replace(b"\t", b";")
        fmt = from_mapping({"kind": "csv", "total_line": False})
        content = content.rsplit(b"\n", 2)[0] + b"\n"  # no Total line
    error = refused(content, fmt)
    assert (error.line, error.field) == (2, "account"), str(error)
    assert "14" in str(error) and "16" in str(error), str(error)


def test_an_invoice_number_and_an_excel_inn_are_accounts() -> None:
    """16 digits (an invoice number, check digit not judged here) and a numeric cell that lost
    an INN's leading zeros stay accepted."""
    parsed = parse(
        qiwi(
            "1\t22.11.2026\t10:00:00\t4000000000000002\t5.00",
            "2\t22.11.2026\t10:00:00\t4000000000000003\t5.00",
        ),
        QIWI,
        BISHKEK,
    )
    assert [line.account for line in parsed.lines] == ["4000000000000002", "4000000000000003"]


def test_a_broken_xlsx_and_a_wrong_header_are_refused() -> None:
    fmt = from_mapping(
        {
            "kind": "xlsx",
            "header": True,
            "total_line": False,
            "columns": {"txn_id": "ID", "date": "D", "account": "A", "amount": "S"},
        }
    )
    assert "XLSX" in str(refused(b"PK\x03\x04 not really a zip", fmt))
    error = refused(_xlsx([["ID", "D", "A"], [1, date(2026, 11, 22), "1"]]), fmt)
    assert error.line == 1 and "«S»" in str(error)


def test_formats_are_validated() -> None:
    for bad in (
        {"kind": "pdf"},
        {"encoding": "klingon"},
        {"timezone": "Mars/Olympus"},
        {"columns": {"txn_id": 1, "account": 2}},  # no amount, no date
        {"columns": {"txn_id": 1, "date": 1, "account": 2, "amount": 3}},  # one column twice
        {"kind": "csv", "columns": {"txn_id": "ID", "date": 2, "account": 3, "amount": 4}},
        {"colour": "red"},
    ):
        with pytest.raises(FormatError):
            from_mapping(bad)


@given(
    st.lists(
        st.tuples(st.integers(1, 10**12), st.integers(1, 10**9)),
        min_size=1,
        max_size=30,
        unique_by=lambda pair: pair[0],
    )
)
def test_any_well_formed_registry_reads_back_exactly(pairs: list[tuple[int, int]]) -> None:
    lines = [
        f"{txn}\t22.11.2026\t12:00:00\t01234567890123\t{amount // 100}.{amount % 100:02d}"
        for txn, amount in pairs
    ]
    parsed = parse(qiwi(*lines), QIWI, BISHKEK)
    assert [(int(line.txn_id), line.amount) for line in parsed.lines] == pairs
    assert parsed.total == sum(amount for _, amount in pairs)


# The general path (any layout) and the fast path (the default QIWI layout) read alike.
GENERAL = RegistryFormat(kind="csv", delimiter="\t")


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"0{0,3}[1-9][0-9]{0,12}", fullmatch=True),
            st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)),
            st.from_regex(r"[0-9]{14}|[0-9]{16}", fullmatch=True),
            st.integers(1, 10**12),
            st.booleans(),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["Asia/Bishkek", "UTC", "Europe/Moscow", "America/New_York"]),
)
def test_the_fast_and_the_general_path_agree(
    rows: list[tuple[str, datetime, str, int, bool]], zone: str
) -> None:
    lines = []
    for txn, moment, account, amount, iso in rows:
        day = moment.strftime("%Y-%m-%d" if iso else "%d.%m.%Y")
        lines.append(
            f"{txn}\t{day}\t{moment:%H:%M:%S}\t{account}\t{amount // 100}.{amount % 100:02d}"
        )
    content = qiwi(*lines)
    fast = parse(content, RegistryFormat(timezone=zone), BISHKEK)
    general = parse(content, replace(GENERAL, timezone=zone), BISHKEK)
    assert fast == general
    for line, (_, moment, _, _, _) in zip(fast.lines, rows, strict=True):
        written = moment.replace(microsecond=0, tzinfo=ZoneInfo(zone))
        assert datetime.fromisoformat(line.occurred_at) == written
        assert line.business_date == written.astimezone(BISHKEK).date()


# --- XLSX bombs: a workbook costs what its real content costs, or is refused ----------------

XLSX = from_mapping(
    {
        "kind": "xlsx",
        "header": True,
        "total_line": False,
        "columns": {"txn_id": "ID", "date": "Дата", "account": "ИНН", "amount": "Сумма"},
    }
)
SHEET = "xl/worksheets/sheet1.xml"


def _registry_xlsx() -> bytes:
    return _xlsx(
        [
            ["ID", "Дата", "ИНН", "Сумма"],
            [9001, "22.11.2026", "01234567890123", 150.5],
            [9002, "22.11.2026", "22222222222222", 10],
        ]
    )


def _rewritten(content: bytes, change: Callable[[str], str], *, extra: int = 0) -> bytes:
    """The workbook with its sheet's XML changed (and `extra` empty parts added)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(content)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == SHEET:
                data = change(data.decode()).encode()
            target.writestr(member.filename, data)
        for number in range(extra):
            target.writestr(f"xl/padding/{number}.xml", b"")
    return out.getvalue()


def _padded(megabytes: int) -> Callable[[str], str]:
    """Whitespace inside <sheetData>: valid XML, compressed about a thousand times."""
    return lambda xml: xml.replace("<sheetData>", "<sheetData>" + " " * (megabytes << 20), 1)


@pytest.fixture
def xlsx_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set `registry_xlsx_*` settings for one test (TOLOM_REGISTRY_XLSX_<NAME>)."""

    def configure(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"TOLOM_REGISTRY_XLSX_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield configure
    get_settings.cache_clear()


def test_a_declared_dimension_is_not_believed() -> None:
    """A few KB declaring A1:XFD1048576 with a last (blank) row at 1048576: openpyxl's
    read-only rows filled in every row between, each 16384 cells wide (~16 minutes)."""

    def bomb(xml: str) -> str:
        xml = re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1:XFD1048576"', xml)
        last = '<row r="1048576"><c r="A1048576" t="inlineStr"><is><t> </t></is></c></row>'
        return xml.replace("</sheetData>", last + "</sheetData>")

    content = _rewritten(_registry_xlsx(), bomb)
    assert len(content) < 10_000
    parsed = parse(content, XLSX, BISHKEK)
    assert [(line.txn_id, line.amount) for line in parsed.lines] == [
        ("9001", 15050),
        ("9002", 1000),
    ]


def test_rows_and_columns_past_the_caps_are_refused() -> None:
    far_row = _rewritten(
        _registry_xlsx(),
        lambda xml: xml.replace(
            "</sheetData>",
            '<row r="2000000"><c r="A2000000" t="inlineStr"><is><t>x</t></is></c></row>'
            "</sheetData>",
        ),
    )
    error = refused(far_row, XLSX)
    assert error.line == 2000000 and "1048576 строк" in str(error), str(error)
    far_column = _rewritten(
        _registry_xlsx(),
        lambda xml: xml.replace(
            "</row></sheetData>",
            '<c r="XFD3" t="inlineStr"><is><t>x</t></is></c></row></sheetData>',
        ),
    )
    error = refused(far_column, XLSX)
    assert error.line == 3 and "колонке 16384" in str(error), str(error)
    # A far row of no values (formatting only) costs nothing and is skipped.
    styled = _rewritten(
        _registry_xlsx(),
        lambda xml: xml.replace(
            "</sheetData>", '<row r="900000"><c r="XFD900000"/></row></sheetData>'
        ),
    )
    assert len(parse(styled, XLSX, BISHKEK).lines) == 2


def test_a_zip_bomb_is_refused_before_it_is_unpacked(
    xlsx_settings: Callable[..., None],
) -> None:
    bomb = _rewritten(_registry_xlsx(), _padded(20))
    assert len(bomb) < 200_000  # 20 MB of sheet in a few dozen KB
    error = refused(bomb, XLSX)
    assert "сжата в" in str(error) and "sheet1.xml" in str(error), str(error)
    assert error.line is None
    xlsx_settings(max_unpacked_mb=5)
    error = refused(bomb, XLSX)
    assert "больше чем в 5 МБ" in str(error), str(error)
    error = refused(_rewritten(_registry_xlsx(), str, extra=1000), XLSX)
    assert "частей" in str(error), str(error)


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


def test_a_workbook_read_too_long_is_refused_and_its_reader_killed(
    xlsx_settings: Callable[..., None],
) -> None:
    before = _children()
    xlsx_settings(max_ratio=100_000, timeout_seconds=0.2)
    error = refused(_rewritten(_registry_xlsx(), _padded(40)), XLSX)
    assert "дольше 0.2 с" in str(error), str(error)
    assert _children() <= before  # the child process is gone, not left running


def test_a_workbook_read_stops_when_its_client_has_gone(
    xlsx_settings: Callable[..., None],
) -> None:
    import threading

    from tolom.reconciliation.xlsx import cancelled_when

    before = _children()
    xlsx_settings(max_ratio=100_000, timeout_seconds=600)
    gone = threading.Event()
    gone.set()
    with cancelled_when(gone):
        error = refused(_rewritten(_registry_xlsx(), _padded(40)), XLSX)
    assert "разбор прерван" in str(error), str(error)
    assert _children() <= before
