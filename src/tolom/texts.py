"""Every text people read, in Russian (the default), Kyrgyz and English: gettext catalogues.

The catalogues are `locale/<language>/LC_MESSAGES/tolom.po` in this package, kept with
Babel (`./scripts/dev i18n` extracts, updates and compiles them). A message id is a dotted
key ("cash.error.amount_format"), not a sentence, so that a Russian wording can change
without touching the code; every language, Russian included, is a translation of the key.
Placeholders are `str.format` fields ("{amount}"). Plural forms follow CLDR through the
catalogue's own `Plural-Forms` header (Russian has three, Kyrgyz and English two).

A key built at run time ("cash.refused." + reason) is marked where its possible values
are listed, with `N_`, so that extraction finds it: the test suite fails on a key the code
uses that a catalogue lacks, and on a catalogue entry no code uses.

The `.po` files are read and compiled in memory when first needed (a few milliseconds
per language, once per process), so there is no build artefact that could go stale.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("ru", "ky", "en")
DEFAULT = "ru"
LANGUAGE_NAMES = {"ru": "Русский", "ky": "Кыргызча", "en": "English"}
DOMAIN = "tolom"


def N_(key: str) -> str:  # noqa: N802 - the gettext convention extraction looks for
    """Mark a key for extraction where it is named but looked up later."""
    return key


def language_of(value: str | None) -> str:
    """A language we speak: the given one if known, else Russian."""
    return value if value in LANGUAGES else DEFAULT


def catalogue_path(language: str) -> Any:
    """The `.po` file of a language, inside the installed package."""
    return resources.files("tolom") / "locale" / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> Translations:
    """The compiled catalogue of one language (Russian behind the others, so a text missing
    from a catalogue reads in Russian rather than as its key; a test keeps none missing)."""
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    found = Translations(fp=compiled, domain=DOMAIN)
    if language != DEFAULT:
        found.add_fallback(translations(DEFAULT))
    return found


def _format(text: str, values: dict[str, Any]) -> str:
    return text.format(**values) if values else text


@dataclass(frozen=True, slots=True)
class Texts:
    """The texts of one language, called as templates and adapters call them:
    `t("key", amount="1 500,00 сом")`, `t.plural("key", count, count=count)`."""

    language: str

    def __call__(self, key: str, **values: Any) -> str:
        return _format(translations(self.language).gettext(key), values)

    def plural(self, key: str, count: int, /, **values: Any) -> str:
        """The form of `key` that agrees with `count` (CLDR: 1 день, 2 дня, 5 дней)."""
        return _format(translations(self.language).ngettext(key, key, count), values)

    def has(self, key: str) -> bool:
        """Whether the catalogues know `key` (for a code that arrives from data)."""
        return translations(self.language).gettext(key) != key


def texts(language: str | None) -> Texts:
    """The texts of `language`, or Russian for anything we do not speak."""
    return Texts(language_of(language))


def text(language: str | None, key: str, **values: Any) -> str:
    """One text: `text("ky", "receipt.title")`."""
    return texts(language)(key, **values)


class Refusal(ValueError):
    """A refusal the core words by key, so each adapter can say it in its reader's language.

    `str(error)` is the Russian text (what the API's `detail`, the CLI and the logs show);
    `error.said(language)` is the same text in another language; `error.key` and
    `error.values` let a page choose its own wording. Subclasses keep their own meaning
    (`CustomerError`, `OrderError`, …); raise them with the key marked for extraction:
    `raise CustomerError(N_("customer.error.name_too_long"), max=MAX_NAME_LENGTH)`.
    """

    def __init__(self, key: str, /, **values: Any) -> None:
        self.key = key
        self.values = values
        super().__init__(text(DEFAULT, key, **values))

    def said(self, language: str | None) -> str:
        return text(language, self.key, **self.values)
