"""Languages of the pages, and numbers, amounts and dates as people here write them.

Russian is the default (before login, and for anything unknown); after login the
language is the user's own (`User.language`). Amounts are integer tyiyn formatted without
floats: "1 510,00 сом" in Russian and Kyrgyz (no-break spaces between thousands and before
the currency, a comma before the tyiyn), "1,510.00 KGS" in English. Dates and times are
in Asia/Bishkek: "23.11.2026 14:05" in every language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from tolom import formatting
from tolom.texts import DEFAULT, LANGUAGE_NAMES, Texts, language_of

__all__ = ["DEFAULT", "LANGUAGE_NAMES", "Translator", "language_of", "translator"]


def grouped(number: int, language: str) -> str:
    """An integer with its thousands grouped: "12 345" (ru, ky), "12,345" (en)."""
    return formatting.grouped(number, english=language == "en")


def money(tyiyn: int, language: str) -> str:
    """Tyiyn for people: "1 510,00 сом" (ru, ky) or "1,510.00 KGS" (en)."""
    return formatting.som(tyiyn, english=language == "en")


def day(value: date | datetime) -> str:
    """A date (a moment is taken in Asia/Bishkek) as "23.11.2026"."""
    return formatting.day(value)


def moment(value: datetime) -> str:
    """A moment in Asia/Bishkek as "23.11.2026 14:05"."""
    return formatting.date_time(value)


@dataclass(frozen=True, slots=True)
class Translator(Texts):
    """A language's texts (`t("key", x=1)`, from the gettext catalogues of `tolom.texts`)
    and its ways of writing numbers and amounts, as templates call them."""

    def name(self, keys: Mapping[str, str], code: str) -> str:
        """The name of a code (`keys` is one of `web.labels`' families): its text, or the
        code itself for one we do not know yet (a service added later)."""
        key = keys.get(code)
        return self(key) if key is not None else code

    def money(self, tyiyn: int) -> str:
        return money(tyiyn, self.language)

    def number(self, count: int) -> str:
        return grouped(count, self.language)


def translator(language: str | None) -> Translator:
    return Translator(language_of(language))
