"""Tariffs: the price of sending one report through СОЧИ, and the quote built on them.

A tariff prices one report form of one state body (`sti` — ГНС, `sf` — Социальный фонд,
`nsc` — Нацстатком) due once a `period` (month, quarter or year). Prices are configuration:
shipped in `tolom/data/tariffs.json`, seeded once, then the operators' to change.

The quote is the calculator the company's site offers: what a set of reports costs per
month, per quarter and per year, in integer tyiyn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tolom import audit
from tolom.db.schema import tariffs
from tolom.money import format_amount, parse_amount
from tolom.texts import N_, Refusal

PERIODS = ("month", "quarter", "year")
STATE_BODIES = {"sti": "ГНС", "sf": "Социальный фонд", "nsc": "Нацстатком"}
MAX_COUNT = 10_000  # reports of one form per due date, in one quote item
MAX_ITEMS = 100  # items in one quote

# How many times a report due once per `period` is sent in a month, a quarter and a year.
# A quarterly report costs nothing in the month column: the month column is what is paid
# every month, the quarter and year columns include everything due in them.
TIMES_DUE: dict[str, tuple[int, int, int]] = {
    "month": (1, 3, 12),
    "quarter": (0, 1, 4),
    "year": (0, 0, 1),
}


class TariffError(Refusal):
    """A tariff operation that cannot be done, worded by a catalogue key."""


class QuoteError(TariffError):
    """A quote item that cannot be priced; `index` is its position in the request."""

    def __init__(self, index: int, key: str, /, **values: Any) -> None:
        super().__init__(key, **values)
        self.index = index


@dataclass(frozen=True, slots=True)
class Tariff:
    """The price (tyiyn) of sending one report of `form` to `state_body`, due each `period`."""

    code: str
    state_body: str
    form: str
    period: str
    name: str
    price: int
    active: bool


# A quote item names its tariff by code or by (state_body, form, period).
TariffRef = str | tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """One item of a quote: `count` reports of `tariff` each time the report is due."""

    tariff: Tariff
    count: int
    month: int
    quarter: int
    year: int


@dataclass(frozen=True, slots=True)
class Quote:
    lines: tuple[QuoteLine, ...]
    month: int
    quarter: int
    year: int


def _load() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        resources.files("tolom.data").joinpath("tariffs.json").read_text(encoding="utf-8")
    )
    return data


def seed(conn: Connection) -> None:
    """Insert the shipped tariffs that the database does not have yet.

    Existing rows are left alone, and so is a shipped tariff whose report (state body,
    form, period) the operators already price under another code.
    """
    known = conn.execute(
        select(tariffs.c.code, tariffs.c.state_body, tariffs.c.form, tariffs.c.period)
    ).all()
    codes = {r.code for r in known}
    reports = {(r.state_body, r.form, r.period) for r in known}
    for item in _load():
        report = (item["state_body"], item["form"], item["period"])
        if item["code"] in codes or report in reports:
            continue
        conn.execute(
            insert(tariffs).values(
                code=item["code"],
                state_body=item["state_body"],
                form=item["form"],
                period=item["period"],
                name=item["name"],
                price=parse_amount(item["price"]),
            )
        )


def _from_row(row: Any) -> Tariff:
    return Tariff(
        row.code, row.state_body, row.form, row.period, row.name, row.price, bool(row.active)
    )


def list_tariffs(conn: Connection, *, active_only: bool = False) -> list[Tariff]:
    """Tariffs by state body, form and period."""
    query = select(tariffs).order_by(
        tariffs.c.state_body, tariffs.c.form, tariffs.c.period, tariffs.c.code
    )
    if active_only:
        query = query.where(tariffs.c.active)
    return [_from_row(r) for r in conn.execute(query)]


def get(conn: Connection, code: str) -> Tariff | None:
    """The tariff with this code, active or not (a charge decides what an inactive one means)."""
    row = conn.execute(select(tariffs).where(tariffs.c.code == code)).first()
    return None if row is None else _from_row(row)


def find(conn: Connection, state_body: str, form: str, period: str) -> Tariff | None:
    """The tariff of one report: its state body, form and how often it is due."""
    row = conn.execute(
        select(tariffs).where(
            tariffs.c.state_body == state_body,
            tariffs.c.form == form,
            tariffs.c.period == period,
        )
    ).first()
    return None if row is None else _from_row(row)


def set_price(conn: Connection, code: str, price: int) -> tuple[Tariff, Tariff]:
    """Set a tariff's price; returns (before, after). Charges already made keep their amount."""
    if price <= 0:
        raise TariffError(N_("tariff.error.price"))
    return _change(conn, code, price=price)


def set_active(conn: Connection, code: str, active: bool) -> tuple[Tariff, Tariff]:
    """Offer a tariff or stop offering it; returns (before, after)."""
    return _change(conn, code, active=active)


def _change(conn: Connection, code: str, **values: Any) -> tuple[Tariff, Tariff]:
    row = conn.execute(select(tariffs).where(tariffs.c.code == code).with_for_update()).first()
    if row is None:
        raise TariffError(N_("tariff.error.unknown"), code=repr(code))
    conn.execute(update(tariffs).where(tariffs.c.code == code).values(**values))
    after = get(conn, code)
    assert after is not None
    return _from_row(row), after


def _describe(ref: TariffRef) -> str:
    if isinstance(ref, str):
        return repr(ref)
    return "/".join(ref)


def quote(conn: Connection, items: Sequence[tuple[TariffRef, int]]) -> Quote:
    """What `items` cost per month, quarter and year (tyiyn).

    Each item is a tariff (code, or state body, form and period) and how many such reports
    are sent each time it is due (e.g. one per company). With `m`, `q`, `y` the costs of
    the monthly, quarterly and yearly items: month = m; quarter = 3·m + q;
    year = 12·m + 4·q + y. Only active tariffs are quoted.
    """
    if not items:
        raise QuoteError(0, N_("quote.error.empty"))
    if len(items) > MAX_ITEMS:
        raise QuoteError(MAX_ITEMS, N_("quote.error.too_many"), max=MAX_ITEMS)
    lines = []
    for index, (ref, count) in enumerate(items):
        if not 1 <= count <= MAX_COUNT:
            raise QuoteError(index, N_("quote.error.count"), max=MAX_COUNT)
        found = get(conn, ref) if isinstance(ref, str) else find(conn, *ref)
        if found is None or not found.active:
            raise QuoteError(index, N_("quote.error.no_tariff"), tariff=_describe(ref))
        in_month, in_quarter, in_year = TIMES_DUE[found.period]
        each = found.price * count
        lines.append(QuoteLine(found, count, each * in_month, each * in_quarter, each * in_year))
    return Quote(
        tuple(lines),
        month=sum(line.month for line in lines),
        quarter=sum(line.quarter for line in lines),
        year=sum(line.year for line in lines),
    )


def snapshot(tariff: Tariff) -> dict[str, Any]:
    """What the audit log (and the command line's JSON) shows of a tariff."""
    return {
        "code": tariff.code,
        "state_body": tariff.state_body,
        "form": tariff.form,
        "period": tariff.period,
        "name": tariff.name,
        "price": format_amount(tariff.price),
        "active": tariff.active,
    }


def _audited(
    conn: Connection,
    action: str,
    change: tuple[Tariff, Tariff],
    *,
    actor: str,
    address: str | None,
) -> Tariff:
    before, after = change
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type="tariff",
        object_id=after.code,
        before=snapshot(before),
        after=snapshot(after),
        address=address,
    )
    return after


def set_price_audited(
    conn: Connection, code: str, price: int, *, actor: str, address: str | None = None
) -> Tariff:
    """`set_price`, and `tariff.set_price` audited (before and after); returns the tariff
    as it is now. Raises TariffError."""
    change = set_price(conn, code, price)
    return _audited(conn, "tariff.set_price", change, actor=actor, address=address)


def set_active_audited(
    conn: Connection, code: str, active: bool, *, actor: str, address: str | None = None
) -> Tariff:
    """`set_active`, and `tariff.enable` or `tariff.disable` audited (before and after);
    returns the tariff as it is now. Raises TariffError."""
    change = set_active(conn, code, active)
    action = "tariff.enable" if active else "tariff.disable"
    return _audited(conn, action, change, actor=actor, address=address)
