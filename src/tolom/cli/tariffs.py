"""`tolom tariff`: report prices (list, set a price, disable, enable) and the quote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from sqlalchemy import Connection

from tolom import audit
from tolom.billing import tariffs
from tolom.cli.common import JsonOption, amount, cli_actor, emit, fail, transaction
from tolom.money import format_amount

tariff_app = typer.Typer(
    help="Prices of reports sent through СОЧИ (by state body, form and period).",
    no_args_is_help=True,
)

_PERIOD_TEXT = {"month": "ежемесячно", "quarter": "ежекварт.", "year": "ежегодно"}


def _tariff_json(tariff: tariffs.Tariff) -> dict[str, Any]:
    return {
        "code": tariff.code,
        "state_body": tariff.state_body,
        "form": tariff.form,
        "period": tariff.period,
        "name": tariff.name,
        "price": format_amount(tariff.price),
        "active": tariff.active,
    }


@tariff_app.command("list")
def tariff_list(
    active_only: Annotated[bool, typer.Option(help="Only tariffs on offer.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Tariffs with code, price and whether they are offered."""
    with transaction() as conn:
        rows = [_tariff_json(t) for t in tariffs.list_tariffs(conn, active_only=active_only)]
    human = "\n".join(
        f"{r['code']:30} {r['price']:>10} {_PERIOD_TEXT[r['period']]:10} "
        f"{'' if r['active'] else 'ОТКЛЮЧЁН '}{r['name']}"
        for r in rows
    )
    emit(rows, as_json, human or "Тарифов нет.")


def _audited_change(
    action: str,
    code: str,
    change: Callable[[Connection], tuple[tariffs.Tariff, tariffs.Tariff]],
    as_json: bool,
) -> tariffs.Tariff:
    """Run one change in one transaction with its audit line (before and after)."""
    try:
        with transaction() as conn:
            before, after = change(conn)
            audit.record(
                conn,
                actor=cli_actor(),
                action=action,
                object_type="tariff",
                object_id=code,
                before=_tariff_json(before),
                after=_tariff_json(after),
            )
    except tariffs.TariffError as error:
        fail(str(error), as_json)
    return after


@tariff_app.command("set-price")
def tariff_set_price(
    code: str,
    price: Annotated[str, typer.Argument(help="Price per report in som, e.g. 150.00")],
    as_json: JsonOption = False,
) -> None:
    """Set a tariff's price; charges already made keep theirs. Audited."""
    value = amount(price)
    after = _audited_change(
        "tariff.set_price", code, lambda conn: tariffs.set_price(conn, code, value), as_json
    )
    emit(_tariff_json(after), as_json, f"Тариф {code}: цена {format_amount(after.price)} сом.")


@tariff_app.command("disable")
def tariff_disable(code: str, as_json: JsonOption = False) -> None:
    """Stop offering a tariff: it is no longer quoted or charged. Audited."""
    after = _audited_change(
        "tariff.disable", code, lambda conn: tariffs.set_active(conn, code, False), as_json
    )
    emit(_tariff_json(after), as_json, f"Тариф {code} отключён.")


@tariff_app.command("enable")
def tariff_enable(code: str, as_json: JsonOption = False) -> None:
    """Offer a disabled tariff again. Audited."""
    after = _audited_change(
        "tariff.enable", code, lambda conn: tariffs.set_active(conn, code, True), as_json
    )
    emit(_tariff_json(after), as_json, f"Тариф {code} включён.")


def _parse_item(text: str) -> tuple[str, int]:
    code, _, count = text.partition(":")
    if not count:
        return code, 1
    if not count.isascii() or not count.isdigit():
        fail(f"в {text!r} после двоеточия нужно число отчётов")
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
    lines = [f"{'тариф':30} {'кол.':>5} {'в месяц':>10} {'в квартал':>10} {'в год':>10}"]
    lines += [
        f"{x['tariff']:30} {x['count']:>5} {x['month']:>10} {x['quarter']:>10} {x['year']:>10}"
        for x in rows
    ]
    lines.append(f"{'Итого, сом':36} {data['month']:>10} {data['quarter']:>10} {data['year']:>10}")
    emit(data, as_json, "\n".join(lines))
