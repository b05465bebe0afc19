"""Amounts and moments as people here write them: "1 510,00 сом", Bishkek time. The one
place for it: the back-office pages, the public receipt page and the PDFs all use it."""

from __future__ import annotations

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
