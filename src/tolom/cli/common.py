"""What every `tolom` command group shares: settings, a transaction, output and errors.

Texts for operators: `t("cli.…", …)` reads the catalogues (`tolom.texts`, keys `cli.*`) in
the language of `TOLOM_LANGUAGE` (ru, ky or en), Russian when it is unset or unknown. The
system locale (`LANG`) is not consulted: operators' machines often run an English locale
and expect Russian output. Typer's `help=` strings stay literal English: Typer needs them
when the module is imported, before any language could be chosen.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from tolom import secretbox
from tolom.db import Connection, Engine
from tolom.db.engine import make_engine
from tolom.money import MalformedAmount, parse_amount
from tolom.settings import get_settings
from tolom.texts import texts

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def t(key: str, **values: Any) -> str:
    """An operator's text in the chosen language (`TOLOM_LANGUAGE`, else Russian)."""
    return texts(get_settings().language)(key, **values)


def plural(key: str, count: int, /, **values: Any) -> str:
    """An operator's text that agrees with a number (the language's CLDR plural forms)."""
    return texts(get_settings().language).plural(key, count, **values)


def engine() -> Engine:
    try:
        return make_engine(get_settings(), pool_size=2)
    except secretbox.SecretKeyError as error:  # the key file: missing, unreadable, malformed
        fail(str(error))


@contextmanager
def transaction() -> Iterator[Connection]:
    """One transaction on a short-lived engine: a command is one unit of work."""
    db = engine()
    try:
        with db.begin() as conn:
            yield conn
    finally:
        db.dispose()


def fail(message: str, as_json: bool = False) -> NoReturn:
    """Print the error (in Russian, for operators) and exit with status 1."""
    if as_json:
        typer.echo(json.dumps({"error": message}, ensure_ascii=False))
    else:
        typer.secho(t("cli.error", message=message), fg="red", err=True)
    raise typer.Exit(code=1)


def emit(data: Any, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str) if as_json else human)


def amount(text: str) -> int:
    """An amount in som as the operator types it, in tyiyn."""
    try:
        return parse_amount(text)
    except MalformedAmount:
        fail(t("cli.bad_amount", text=repr(text)))


def cli_actor() -> str:
    """Who ran the command, for the audit log."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        user = "unknown"
    return f"cli:{user}"
