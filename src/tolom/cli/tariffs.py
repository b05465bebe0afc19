"""`tolom tariff`: report prices (list, set a price, disable, enable) and the quote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from tolom.billing import tariffs
from tolom.cli.common import JsonOption, amount, cli_actor, emit, fail, t, transaction
from tolom.db import Connection
from tolom.formatting import som
from tolom.money import format_amount
from tolom.texts import N_

tariff_app = typer.Typer(
    help="Prices of reports sent through СОЧИ (by state body, form and period).",
    no_args_is_help=True,
)

_PERIOD_TEXT = {
    "month": N_("cli.tariff.period.month"),
    "quarter": N_("cli.tariff.period.quarter"),
    "year": N_("cli.tariff.period.year"),
}


def _tariff_json(tariff: tariffs.Tariff) -> dict[str, Any]:
    return tariffs.snapshot(tariff)


@tariff_app.command("list")
def tariff_list(
    active_only: Annotated[bool, typer.Option(help="Only tariffs on offer.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Tariffs with code, price and whether they are offered."""
    with transaction() as conn:
        rows = [_tariff_json(x) for x in tariffs.list_tariffs(conn, active_only=active_only)]
    human = "\n".join(_tariff_line(r) for r in rows)
    emit(rows, as_json, human or t("cli.tariff.none"))


def _tariff_line(row: dict[str, Any]) -> str:
    period = t(_PERIOD_TEXT[row["period"]])
    mark = "" if row["active"] else t("cli.tariff.disabled_mark")
    return f"{row['code']:30} {row['price']:>10} {period:10} {mark}{row['name']}"


def _audited_change(
    change: Callable[[Connection], tariffs.Tariff], as_json: bool
) -> tariffs.Tariff:
    """Run one audited change in one transaction; a refusal ends the command."""
    try:
        with transaction() as conn:
            return change(conn)
    except tariffs.TariffError as error:
        fail(str(error), as_json)


@tariff_app.command("set-price")
def tariff_set_price(
    code: str,
    price: Annotated[str, typer.Argument(help="Price per report in som, e.g. 150.00")],
    as_json: JsonOption = False,
) -> None:
    """Set a tariff's price; charges already made keep theirs. Audited."""
    value = amount(price)
    after = _audited_change(
        lambda conn: tariffs.set_price_audited(conn, code, value, actor=cli_actor()), as_json
    )
    emit(_tariff_json(after), as_json, t("cli.tariff.price_set", code=code, price=som(after.price)))


@tariff_app.command("disable")
def tariff_disable(code: str, as_json: JsonOption = False) -> None:
    """Stop offering a tariff: it is no longer quoted or charged. Audited."""
    after = _audited_change(
        lambda conn: tariffs.set_active_audited(conn, code, False, actor=cli_actor()), as_json
    )
    emit(_tariff_json(after), as_json, t("cli.tariff.disabled", code=code))


@tariff_app.command("enable")
def tariff_enable(code: str, as_json: JsonOption = False) -> None:
    """Offer a disabled tariff again. Audited."""
    after = _audited_change(
        lambda conn: tariffs.set_active_audited(conn, code, True, actor=cli_actor()), as_json
    )
    emit(_tariff_json(after), as_json, t("cli.tariff.enabled", code=code))


def _parse_item(text: str) -> tuple[str, int]:
    code, _, count = text.partition(":")
    if not count:
        return code, 1
    if not count.isascii() or not count.isdigit():
        fail(t("cli.tariff.bad_count", text=repr(text)))
    return code, int(count)


@tariff_app.command("quote")
def tariff_quote(
    items: Annotated[
        list[str], typer.Argument(help="CODE or CODE:COUNT (reports each time it is due).")
    ],
    as_json: JsonOption = False,
) -> None:
    """What the reports cost per month, quarter and year (the site's calculator)."""
    parsed = [_parse_item(i) for i in items]
    try:
        with transaction() as conn:
            result = tariffs.quote(conn, list(parsed))
    except tariffs.QuoteError as error:
        fail(f"{items[error.index] if error.index < len(items) else ''}: {error}", as_json)
    rows = [
        {
            "tariff": line.tariff.code,
            "count": line.count,
            "month": format_amount(line.month),
            "quarter": format_amount(line.quarter),
            "year": format_amount(line.year),
        }
        for line in result.lines
    ]
    data = {
        "lines": rows,
        "month": format_amount(result.month),
        "quarter": format_amount(result.quarter),
        "year": format_amount(result.year),
    }
    head = [
        t("cli.tariff.column.tariff"),
        t("cli.tariff.column.count"),
        t("cli.tariff.column.month"),
        t("cli.tariff.column.quarter"),
        t("cli.tariff.column.year"),
    ]
    lines = [f"{head[0]:30} {head[1]:>5} {head[2]:>10} {head[3]:>10} {head[4]:>10}"]
    lines += [
        f"{x['tariff']:30} {x['count']:>5} {x['month']:>10} {x['quarter']:>10} {x['year']:>10}"
        for x in rows
    ]
    total = t("cli.tariff.total")
    lines.append(f"{total:36} {data['month']:>10} {data['quarter']:>10} {data['year']:>10}")
    emit(data, as_json, "\n".join(lines))
