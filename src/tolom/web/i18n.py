"""Languages of the pages, and numbers, amounts and dates as people here write them.

Russian is the default (before login, and for anything unknown); after login the
language is the user's own (`User.language`). Amounts are integer tyiyn formatted without
floats: "1 510,00 сом" in Russian and Kyrgyz (no-break spaces between thousands and before
the currency, a comma before the tyiyn), "1,510.00 KGS" in English. Dates and times are
in Asia/Bishkek: "23.11.2026 14:05" in every language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from tolom import formatting
from tolom.backoffice.users import LANGUAGES
from tolom.web.messages import CATALOGUE

DEFAULT = "ru"
LANGUAGE_NAMES = {"ru": "Русский", "ky": "Кыргызча", "en": "English"}
assert tuple(CATALOGUE) == LANGUAGES == tuple(LANGUAGE_NAMES)


def language_of(value: str | None) -> str:
    """A language we speak: the given one if known, else Russian."""
    return value if value in CATALOGUE else DEFAULT


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
class Translator:
    """The texts and formats of one language, as templates call them: `t("key", x=1)`."""

    language: str

    def __call__(self, key: str, **values: Any) -> str:
        text = CATALOGUE[self.language].get(key)
        if text is None:  # a test keeps the languages' keys equal; Russian is the backstop
            text = CATALOGUE[DEFAULT][key]
        return text.format(**values) if values else text

    def name(self, prefix: str, code: str) -> str:
        """The name of a code we may not know in advance (a service added later): its
        translation if there is one, else the code itself."""
        return CATALOGUE[self.language].get(f"{prefix}.{code}", code)

    def money(self, tyiyn: int) -> str:
        return money(tyiyn, self.language)

    def number(self, count: int) -> str:
        return grouped(count, self.language)


def translator(language: str | None) -> Translator:
    return Translator(language_of(language))
