"""Amounts and moments as people here write them: "1 510,00 сом", Bishkek time. The one
place for it: the back-office pages, the public receipt page and the PDFs all use it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from tolom.money import TYIYN_PER_SOM
from tolom.timestamps import HOME_ZONE, as_utc

ZONE = HOME_ZONE
# No-break space between thousands: "1 510,00" never wraps between "1" and "510".
THOUSANDS = "\u00a0"


def som(tyiyn: int, *, currency: str = "сом", english: bool = False) -> str:
    """Tyiyn as "1 510,00 сом" (grouped thousands, a decimal comma; English: "1,510.00
    KGS"), with no float on the way. `currency=""` leaves the currency out."""
    if isinstance(tyiyn, bool) or not isinstance(tyiyn, int):
        raise TypeError(f"an amount in tyiyn is an int, not {tyiyn!r}")
    sign = "-" if tyiyn < 0 else ""
    whole, rest = divmod(abs(tyiyn), TYIYN_PER_SOM)
    text = f"{sign}{grouped(whole, english=english)}{'.' if english else ','}{rest:02d}"
    if english:
        currency = currency and "KGS"
    return f"{text}{THOUSANDS}{currency}" if currency else text


# A chart axis's units, in whole som, largest first: millions, thousands, som.
AXIS_UNITS = (1_000_000, 1_000, 1)


def axis_unit(values: Sequence[int]) -> int:
    """The unit (in som) every tick of one axis is written in, so no tick reads "0,00 сом"
    beside "1 тыс. сом": the largest that the top tick reaches and in which every tick
    (tyiyn, whole som) needs at most one decimal; 1 (amounts in full) otherwise."""
    whole = [value // TYIYN_PER_SOM for value in values]
    top = max(whole, default=0)
    return next(
        u for u in AXIS_UNITS if u == 1 or (top >= u and all(v * 10 % u == 0 for v in whole))
    )


def axis_numbers(values: Sequence[int], unit: int, *, english: bool = False) -> list[str]:
    """The ticks (tyiyn, whole som) as numbers of `unit` som, all with the same number of
    decimals (none or one): "0", "250", "1 000" or "0,0", "0,5", "1,5"."""
    whole = [value // TYIYN_PER_SOM for value in values]
    if not any(v % unit for v in whole):
        return [grouped(v // unit, english=english) for v in whole]
    point = "." if english else ","
    return [
        f"{grouped(v * 10 // unit // 10, english=english)}{point}{v * 10 // unit % 10}"
        for v in whole
    ]


def local(moment: datetime) -> datetime:
    """The moment in Asia/Bishkek (the database may hand back naive UTC)."""
    return as_utc(moment).astimezone(ZONE)


def grouped(number: int, *, english: bool = False) -> str:
    """An integer with its thousands grouped: "12 345", in English "12,345"."""
    text = f"{abs(number):,}"
    if not english:
        text = text.replace(",", THOUSANDS)
    return f"-{text}" if number < 0 else text


def date_time(moment: datetime) -> str:
    """DD.MM.YYYY HH:MM in Asia/Bishkek."""
    return local(moment).strftime("%d.%m.%Y %H:%M")


def day(value: date | datetime) -> str:
    """DD.MM.YYYY of a date, or of a moment in Asia/Bishkek."""
    if isinstance(value, datetime):
        value = local(value).date()
    return value.strftime("%d.%m.%Y")
