"""The gettext catalogues (src/tolom/locale/<language>/LC_MESSAGES/tolom.po): every text the
code asks for is translated in every language, none is left that no code asks for, plural
forms follow CLDR, and each catalogue compiles (what `pybabel compile` would do)."""

from __future__ import annotations

import io
import string

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from tests.factories import REPO
from tolom.texts import LANGUAGES, catalogue_path, texts

# Kyrgyz and English are translations, not copies; these few words agree with Russian.
SAME_IN_KYRGYZ = {
    "role.admin",
    "role.operator",
    "role.accountant",
    "role.auditor",
    "dashboard.agent",
    "dashboard.sum",
    "nav.cash",
    # the public receipt page: «Квитанция №», «Сумма»
    "receipt.public.number",
    "receipt.public.amount",
    # notifications: «ИНН: …», «Баланс: …», «СОЧИ: ИНН … +…» read the same in Kyrgyz
    "notify.line.inn",
    "notify.line.balance",
    "notify.payment_accepted.sms",
    # the cabinet: «Баланс», «ИНН …», «Квитанция (PDF)», «PDF»
    "site.cabinet.balance",
    "site.cabinet.inn_is",
    "site.cabinet.receipt",
    "site.cabinet.pdf",
    # `tolom probe`: «check sochi: 12 мс», «HTTP 401: …»
    "cli.probe.step",
    "probe.failure.http",
}


def _catalogue(language: str) -> Catalog:
    with catalogue_path(language).open("rb") as po:
        return read_po(po, locale=language)


def _texts(catalog: Catalog) -> dict[str, str | tuple[str, ...]]:
    return {str(m.id if isinstance(m.id, str) else m.id[0]): m.string for m in catalog if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _extracted_keys() -> set[str]:
    """What `pybabel extract -F babel.cfg` finds, with the keywords `./scripts/dev i18n` uses."""
    with (REPO / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = parse_keywords(["t", "N_", "_", "gettext", "ngettext:1,2", "plural:1,1"])
    found = extract_from_dir(
        str(REPO / "src"), method_map, options_map, keywords=keywords, callback=None
    )
    return {str(m[2] if isinstance(m[2], str) else m[2][0]) for m in found}


@pytest.fixture(scope="module")
def catalogues() -> dict[str, dict[str, str | tuple[str, ...]]]:
    return {language: _texts(_catalogue(language)) for language in LANGUAGES}


def test_every_language_translates_every_key_with_the_same_placeholders(
    catalogues: dict[str, dict[str, str | tuple[str, ...]]],
) -> None:
    keys = set(catalogues["ru"])
    for language, found in catalogues.items():
        assert set(found) == keys, f"{language}: {sorted(set(found) ^ keys)[:20]}"
        for key, text in found.items():
            forms = (text,) if isinstance(text, str) else text
            russian = catalogues["ru"][key]
            russian_forms = (russian,) if isinstance(russian, str) else russian
            for form in forms:
                assert form.strip(), f"{language}: {key} is not translated"
                assert _fields(form) <= _fields(russian_forms[-1]) | {"count"}, (language, key)
    same = {k for k in keys if catalogues["ky"][k] == catalogues["ru"][k]}
    assert same <= SAME_IN_KYRGYZ, sorted(same - SAME_IN_KYRGYZ)


def test_the_code_asks_for_no_key_a_catalogue_lacks_and_every_key_is_asked_for(
    catalogues: dict[str, dict[str, str | tuple[str, ...]]],
) -> None:
    extracted = _extracted_keys()
    missing = extracted - set(catalogues["ru"])
    assert not missing, f"keys the code uses but no catalogue has: {sorted(missing)}"
    unused = set(catalogues["ru"]) - extracted
    assert not unused, (
        "catalogue keys no code names (mark a key built at run time with N_ where its "
        f"values are listed): {sorted(unused)[:40]} ... {len(unused)} in all"
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_plural_forms_are_cldr_and_the_catalogue_compiles(language: str) -> None:
    catalog = _catalogue(language)
    assert not [m.id for m in catalog if m.id and m.fuzzy], "fuzzy entries are not used"
    expected = get_plural(Locale.parse(language))
    assert catalog.num_plurals == expected.num_plurals
    assert catalog.plural_expr == expected.plural_expr
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    assert compiled.getvalue()


def test_plurals_agree_with_the_number() -> None:
    """Russian has three forms (1 день, 2 дня, 5 дней), Kyrgyz and English two."""
    ru, ky, en = texts("ru"), texts("ky"), texts("en")
    numbers = (1, 2, 5, 11, 21, 22, 111)
    assert [ru.plural("agents.days", n, days=n) for n in numbers] == [
        "1 день", "2 дня", "5 дней", "11 дней", "21 день", "22 дня", "111 дней",
    ]  # fmt: skip
    assert [en.plural("agents.days", n, days=n) for n in (1, 2, 21)] == [
        "1 day", "2 days", "21 days",
    ]  # fmt: skip
    assert ky.plural("agents.days", 21, days=21) == "21 күн"
    catalogues = {language: _texts(_catalogue(language)) for language in LANGUAGES}
    plural_keys = [k for k, v in catalogues["ru"].items() if isinstance(v, tuple)]
    for key in plural_keys:
        # a number agrees: Russian's forms are not one text thrice, nor English's twice
        assert len(set(catalogues["ru"][key])) > 1, key
        assert len(set(catalogues["en"][key])) == 2, key
        assert all(isinstance(catalogues[language][key], tuple) for language in LANGUAGES), key


def test_an_unknown_language_reads_russian() -> None:
    assert texts("xx")("nav.payments") == texts("ru")("nav.payments")
    assert texts("en")("nav.payments") != texts("ru")("nav.payments")
