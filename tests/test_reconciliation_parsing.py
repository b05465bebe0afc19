"""Reading registries: QIWI-style text, CSV and XLSX with per-agent columns, encodings and
zones; every kind of bad file refused with its line and field named."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook

from tolom.reconciliation.formats import FormatError, RegistryFormat, from_mapping
from tolom.reconciliation.parsing import RegistryError, parse

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
        [["ID", "Дата", "Время", "ИНН", "Сумма"], [1, "22.11.2026", "08:00:00", "1", 1.005]]
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
