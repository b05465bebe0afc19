"""The one Jinja2 environment every template is rendered with: back-office pages, the
public receipt page and customer notifications.

Templates are read from the installed package (works from a wheel too). A misspelt
variable is an error (StrictUndefined), so the tests fail rather than a page or an SMS.
HTML is escaped, text (`.txt`: e-mail and SMS) is not. Amounts, dates and numbers are
written by the filters of `formatting` (the one writer of each). Texts come from the
gettext catalogues (`tolom.texts`): a template calls `t("key", x=1)` with the `t` of the
reader's language it is rendered with; `jinja2.ext.i18n` is installed over the same
catalogues, so `_("key")` and `{% trans %}` read the same texts.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from tolom import formatting
from tolom.texts import texts


def _texts_of(context: Context) -> Any:
    """The `t` the template is rendered with, or Russian when it was given none."""
    found = context.get("t")
    return found if found is not None else texts(None)


@pass_context
def _gettext(context: Context, key: str, **values: Any) -> str:
    result: str = _texts_of(context)(key, **values)
    return result


@pass_context
def _ngettext(context: Context, key: str, plural: str, count: int, /, **values: Any) -> str:
    result: str = _texts_of(context).plural(key, count, **values)
    return result


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The environment (built once per process; Jinja caches compiled templates in it)."""
    env = Environment(
        loader=PackageLoader("tolom", "templates"),
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(_gettext, _ngettext, newstyle=False)  # type: ignore[attr-defined]
    env.filters.update(
        som=formatting.som,
        day=formatting.day,
        moment=formatting.date_time,
        grouped=formatting.grouped,
    )
    return env
