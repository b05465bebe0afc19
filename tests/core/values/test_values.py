"""Pure value rules: amounts in tyiyn, INNs, invoice numbers (Luhn) and agents' txn ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tolom import formatting, money
from tolom.identifiers import (
    is_inn,
    is_invoice_number,
    is_txn_id,
    luhn_check_digit,
    new_invoice_number,
)
from tolom.money import MalformedAmount, format_amount, parse_amount
from tolom.payments import manual
from tolom.payments.service import CLOCK_SKEW, txn_date_problem

# The largest amount the protocol form can carry: 15 digits of som and 2 of tyiyn.
MAX_TYIYN = 10**17 - 1

# Fullwidth and Arabic-Indic digits are `str.isdigit()` and `int()`-able: exactly the trap.
ARABIC_INDIC_500 = "\u0665\u0660\u0660"
FULLWIDTH_500 = "\uff15\uff10\uff10"


# --- parse_amount ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tyiyn"),
    [
        ("500", 50000),
        ("500.5", 50050),
        ("500.50", 50050),
        ("500.05", 50005),
        ("0.00", 0),
        ("0", 0),
        ("0.01", 1),
        ("1", 100),
        ("1510.00", 151000),
        ("999999999999999.99", MAX_TYIYN),
    ],
)
def test_parse_amount_accepts(text: str, tyiyn: int) -> None:
    assert parse_amount(text) == tyiyn


@pytest.mark.parametrize(
    "text",
    [
        "500.505",  # three decimals
        "0.001",
        "-5",  # signs
        "+5",
        "-0.00",
        "5e2",  # exponents
        "1E3",
        "5.0e1",
        " 500",  # spaces
        "500 ",
        "5 000",
        "500\n",
        "\t500",
        "5\u00a0000",  # no-break space
        "5,000",  # thousands separators and decimal commas
        "1,000.00",
        "5'000",
        "1_000",  # int() would accept this one
        "500,50",
        ARABIC_INDIC_500,  # non-ASCII digits
        FULLWIDTH_500,
        "\u0665\u0660\u0660.\u0660\u0660",
        "5\uff10\uff10",
        "",  # empty and half-written
        ".",
        "5.",
        ".5",
        "500..0",
        "5.0.0",
        "0x10",
        "inf",
        "nan",
        "NaN",
        "9" * 30,  # would not fit a BIGINT
    ],
)
def test_parse_amount_refuses(text: str) -> None:
    with pytest.raises(MalformedAmount):
        parse_amount(text)


def test_malformed_amount_is_a_value_error_carrying_the_text() -> None:
    with pytest.raises(ValueError, match=re.escape("5.")):
        parse_amount("5.")


@given(st.integers(min_value=0, max_value=MAX_TYIYN))
@example(0)
@example(1)
@example(99)
@example(100)
@example(MAX_TYIYN)
def test_parse_amount_reads_back_format_amount(tyiyn: int) -> None:
    assert parse_amount(format_amount(tyiyn)) == tyiyn


@given(st.from_regex(r"[0-9]{1,15}(\.[0-9]{1,2})?", fullmatch=True))
def test_parse_amount_agrees_with_decimal(text: str) -> None:
    assert parse_amount(text) == int(Decimal(text) * 100)


@given(st.text(max_size=25))
@example("١٢٣")
@example("１２３")
@example("12.3.4")
@example("1_0")
def test_parse_amount_only_accepts_ascii_digits_and_one_dot(text: str) -> None:
    """Any text either is refused with MalformedAmount (never another error) or is plain."""
    try:
        value = parse_amount(text)
    except MalformedAmount:
        return
    assert re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", text, flags=re.ASCII)
    assert value == int(Decimal(text) * 100)


# --- format_amount (protocols) and formatting.som (people) ----------------------------


@pytest.mark.parametrize(
    ("tyiyn", "text"),
    [(0, "0.00"), (1, "0.01"), (50050, "500.50"), (151000, "1510.00"), (-1205, "-12.05")],
)
def test_format_amount(tyiyn: int, text: str) -> None:
    assert format_amount(tyiyn) == text


@pytest.mark.parametrize(
    ("tyiyn", "text"),
    [
        (0, "0,00 сом"),
        (5, "0,05 сом"),
        (99999, "999,99 сом"),
        (100000, "1 000,00 сом"),
        (151000, "1 510,00 сом"),
        (100000000, "1 000 000,00 сом"),
        (123456789012, "1 234 567 890,12 сом"),
        (-151000, "-1 510,00 сом"),
    ],
)
def test_som_groups_thousands(tyiyn: int, text: str) -> None:
    assert formatting.som(tyiyn) == text.replace(" ", formatting.THOUSANDS)


@given(st.integers(min_value=-MAX_TYIYN, max_value=MAX_TYIYN))
def test_som_is_format_amount_grouped_by_three(tyiyn: int) -> None:
    text = formatting.som(tyiyn)
    space = formatting.THOUSANDS
    assert text.endswith(f"{space}сом")
    number = text.removesuffix(f"{space}сом")
    assert number.replace(space, "").replace(",", ".") == format_amount(tyiyn)
    som = number.lstrip("-").split(",")[0]
    groups = som.split(space)
    assert 1 <= len(groups[0]) <= 3
    assert all(len(g) == 3 for g in groups[1:])


def test_people_amounts_have_one_writer() -> None:
    """`formatting.som` is the writer for people; money keeps only the protocols' one."""
    assert not hasattr(money, "format_som")


# --- INN ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["01904202310427", "00000000000000", "21503198012345"])
def test_is_inn_accepts_14_ascii_digits(text: str) -> None:
    assert is_inn(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0190420231042",  # 13
        "019042023104271",  # 15
        "0190420231042a",
        " 01904202310427",
        "01904202310427 ",
        "01904202310427\n",
        "0190-4202310427",
        "\u0660\u0661\u0669\u0660\u0664\u0662\u0660\u0662\u0663\u0661\u0660\u0664\u0662\u0667",
        "\uff10" * 14,
    ],
)
def test_is_inn_refuses(text: str) -> None:
    assert not is_inn(text)


# --- Luhn and invoice numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "79927398713",  # the textbook example
        "4111111111111111",
        "4012888888881881",
        "4000000000000002",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "18",
        "0",
    ],
)
def test_luhn_check_digit_of_known_numbers(number: str) -> None:
    assert luhn_check_digit(number[:-1]) == number[-1]


def test_luhn_check_digit_textbook() -> None:
    assert luhn_check_digit("7992739871") == "3"
    assert luhn_check_digit("") == "0"


@pytest.mark.parametrize(
    "text", ["4111111111111111", "4012888888881881", "4000000000000002", "5555555555554444"]
)
def test_is_invoice_number_accepts_16_digit_luhn_numbers(text: str) -> None:
    assert is_invoice_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # wrong check digit
        "4111111111111110",
        "411111111111111",  # 15 digits
        "41111111111111111",  # 17 digits
        "79927398713",  # Luhn-valid but short
        "",
        "4111 1111 1111 1111",
        "4111111111111111\n",
        "\uff14" + "\uff11" * 15,
        "\u0664" + "\u0661" * 15,
    ],
)
def test_is_invoice_number_refuses(text: str) -> None:
    assert not is_invoice_number(text)


def test_new_invoice_numbers_are_not_constant() -> None:
    assert len({new_invoice_number() for _ in range(50)}) > 45


@given(st.data())
def test_new_invoice_number_is_valid_and_every_single_digit_change_breaks_it(
    data: st.DataObject,
) -> None:
    number = new_invoice_number()
    assert len(number) == 16
    assert number.isascii() and number.isdigit()
    assert number[0] != "0"
    assert is_invoice_number(number)
    position = data.draw(st.integers(min_value=0, max_value=15), label="position")
    replacement = data.draw(st.sampled_from("0123456789"), label="digit")
    assume(replacement != number[position])
    typo = number[:position] + replacement + number[position + 1 :]
    assert not is_invoice_number(typo)


def test_every_single_digit_change_of_a_number_is_caught() -> None:
    number = "4111111111111111"
    for position in range(16):
        for digit in "0123456789":
            if digit != number[position]:
                typo = number[:position] + digit + number[position + 1 :]
                assert not is_invoice_number(typo), typo


@given(st.data())
def test_transposing_adjacent_digits_breaks_it_except_09(data: st.DataObject) -> None:
    number = new_invoice_number()
    position = data.draw(st.integers(min_value=0, max_value=14), label="position")
    a, b = number[position], number[position + 1]
    assume(a != b)
    swapped = number[:position] + b + a + number[position + 2 :]
    if {a, b} == {"0", "9"}:
        assert is_invoice_number(swapped)  # the one swap Luhn cannot see
    else:
        assert not is_invoice_number(swapped)


@given(
    body=st.from_regex(r"[0-9]{13}", fullmatch=True),
    pair=st.sampled_from(["09", "90"]),
    position=st.integers(min_value=0, max_value=13),
)
def test_the_09_90_swap_is_invisible_to_luhn(body: str, pair: str, position: int) -> None:
    """The documented Luhn blind spot, constructed on purpose (rare in random numbers)."""
    prefix = body[:position] + pair + body[position:]
    number = prefix + luhn_check_digit(prefix)
    swapped = number[:position] + pair[::-1] + number[position + 2 :]
    assert is_invoice_number(number)
    assert is_invoice_number(swapped)


@given(st.from_regex(r"[0-9]{15}", fullmatch=True))
def test_appending_the_check_digit_makes_a_valid_invoice_number(body: str) -> None:
    check = luhn_check_digit(body)
    assert is_invoice_number(body + check)
    assert sum(is_invoice_number(body + d) for d in "0123456789") == 1


# --- txn_id ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "1", "1001", "9" * 20, "00000000000000000001"])
def test_is_txn_id_accepts_1_to_20_ascii_digits(text: str) -> None:
    assert is_txn_id(text)


@pytest.mark.parametrize(
    "text",
    ["", "9" * 21, "-1", "+1", "1.0", "1e3", " 1", "1 ", "1\n", "12a", "\u0661", "\uff11", "1_0"],
)
def test_is_txn_id_refuses(text: str) -> None:
    assert not is_txn_id(text)


@given(st.text(max_size=25))
def test_is_txn_id_is_exactly_1_to_20_ascii_digits(text: str) -> None:
    expected = 1 <= len(text) <= 20 and all(c in "0123456789" for c in text)
    assert is_txn_id(text) == expected


# --- a payment's moment ---------------------------------------------------------------


def test_txn_date_problem_is_the_one_plausibility_rule() -> None:
    """Years 2000–2099, at most CLOCK_SKEW ahead of our clock; the manual payments' received_at
    is judged by the same function, word for word."""
    now = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    assert txn_date_problem(now + CLOCK_SKEW, now) is None
    assert txn_date_problem(datetime(2000, 1, 1, tzinfo=UTC), now) is None
    ahead = txn_date_problem(now + CLOCK_SKEW + timedelta(seconds=1), now)
    assert ahead == "дата платежа впереди наших часов больше чем на 5 минут"
    assert txn_date_problem(datetime(1999, 12, 31, 23, 59, tzinfo=UTC), now) == (
        "год должен быть от 2000 до 2099"
    )
    year_one = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=6)))
    assert txn_date_problem(year_one, now) == "год должен быть от 2000 до 2099"
    with pytest.raises(manual.InvalidField) as refused:
        manual.check_received_at(now + timedelta(minutes=6), now)
    assert (refused.value.field, refused.value.message) == ("received_at", ahead)
