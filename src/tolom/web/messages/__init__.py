"""Every text the back-office pages show, in Russian (the default), Kyrgyz and English.

One module per section of the back office, each with three dicts `RU`, `KY`, `EN` holding
the same keys (a test holds them equal); a key belongs to exactly one section (checked
here, at import). Placeholders are `str.format` fields such as `{minutes}` or `{amount}`.
"""

from __future__ import annotations

from types import ModuleType

from tolom.web.messages import (
    agents,
    audit,
    cash,
    core,
    customers,
    events,
    invoices,
    orders,
    reconciliation,
    users,
)

SECTIONS: tuple[ModuleType, ...] = (
    core,
    agents,
    invoices,
    cash,
    users,
    audit,
    customers,
    orders,
    events,
    reconciliation,
)
LANGUAGES = ("ru", "ky", "en")


def _merge() -> dict[str, dict[str, str]]:
    catalogue: dict[str, dict[str, str]] = {language: {} for language in LANGUAGES}
    for section in SECTIONS:
        for language in LANGUAGES:
            texts: dict[str, str] = getattr(section, language.upper())
            twice = catalogue[language].keys() & texts.keys()
            if twice:
                raise RuntimeError(f"{section.__name__} repeats keys {sorted(twice)}")
            catalogue[language].update(texts)
    return catalogue


CATALOGUE: dict[str, dict[str, str]] = _merge()
