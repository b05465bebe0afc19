"""`tolom customer`: customers (organisations and sole proprietors) and their contacts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tolom.billing import customers
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.db import Connection
from tolom.formatting import som
from tolom.ledger.statements import latest_entries
from tolom.money import format_amount
from tolom.texts import N_

customer_app = typer.Typer(
    help="Customers (organisations and sole proprietors).", no_args_is_help=True
)


def _customer_json(conn: Connection, c: customers.Customer) -> dict[str, Any]:
    return {
        "inn": c.inn,
        "name": c.name,
        "legal_form": c.legal_form,
        "status": c.status,
        "balance": format_amount(customers.balance(conn, c)),
        **c.contacts(),
    }


_LANGUAGE_NAMES = {"ru": N_("cli.customer.language.ru"), "ky": N_("cli.customer.language.ky")}


def _contacts_lines(c: customers.Customer) -> list[str]:
    return [
        t("cli.customer.email", email=c.email or t("cli.customer.none")),
        t("cli.customer.phone", phone=c.phone or t("cli.customer.none")),
        t(
            "cli.customer.language",
            code=c.language,
            name=t(_LANGUAGE_NAMES[c.language]) if c.language in _LANGUAGE_NAMES else c.language,
        ),
    ]


EmailOption = Annotated[
    str | None, typer.Option("--email", help="E-mail for notifications.", show_default=False)
]
PhoneOption = Annotated[
    str | None,
    typer.Option(
        "--phone",
        help="Phone for SMS: +996 555 123 456, 996555123456 or 0555 123 456.",
        show_default=False,
    ),
]
LanguageOption = Annotated[
    str | None,
    typer.Option("--language", help="Language of notifications: ru or ky.", show_default=False),
]


@customer_app.command("add")
def customer_add(
    inn: str,
    name: str,
    legal_form: Annotated[
        str, typer.Option(help=f"One of: {', '.join(customers.LEGAL_FORMS)}.")
    ] = "ОсОО",
    email: EmailOption = None,
    phone: PhoneOption = None,
    language: LanguageOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a customer with a zero balance."""
    try:
        with transaction() as conn:
            customer = customers.add(
                conn,
                inn=inn,
                name=name,
                legal_form=legal_form,
                email=email,
                phone=phone,
                language=language or customers.DEFAULT_LANGUAGE,
            )
            data = _customer_json(conn, customer)
    except customers.CustomerError as error:
        fail(str(error), as_json)
    emit(data, as_json, t("cli.customer.added", inn=inn, name=name))


@customer_app.command("import")
def customer_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="CSV: inn,name[,legal_form][,email][,phone][,language]",
        ),
    ],
    skip_bad: Annotated[
        bool, typer.Option(help="Import the good lines even if some are bad.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Import customers from CSV. Any bad line and nothing is imported, unless --skip-bad."""
    rows, problems = customers.read_import_file(file)

    class _Refused(Exception):
        """Roll the import back: a bad line and no --skip-bad."""

    try:
        with transaction() as conn:
            added, known = customers.import_rows(conn, rows)
            problems = sorted(problems + known, key=lambda p: p.line)
            if problems and not skip_bad:
                raise _Refused
    except _Refused:
        for p in problems:
            typer.secho(
                t("cli.customer.bad_line", line=p.line, message=p.message), fg="red", err=True
            )
        fail(t("cli.customer.import_refused", count=len(problems)), as_json)
    for p in problems:
        typer.secho(
            t("cli.customer.skipped_line", line=p.line, message=p.message), fg="yellow", err=True
        )
    report = [{"line": p.line, "error": p.message} for p in problems]
    emit(
        {"imported": added, "skipped": report},
        as_json,
        t("cli.customer.imported", added=added, skipped=len(report)),
    )


def _set_customer_status(inn: str, status: str) -> None:
    try:
        with transaction() as conn:
            customers.set_status(conn, inn, status)
    except customers.CustomerError as error:
        fail(str(error))
    typer.echo(
        t("cli.customer.blocked", inn=inn)
        if status == "blocked"
        else t("cli.customer.unblocked", inn=inn)
    )


@customer_app.command("block")
def customer_block(inn: str) -> None:
    """Refuse payments to this customer (result 79)."""
    _set_customer_status(inn, "blocked")


@customer_app.command("unblock")
def customer_unblock(inn: str) -> None:
    """Accept payments to this customer again."""
    _set_customer_status(inn, "active")


@customer_app.command("contacts")
def customer_contacts(
    inn: str,
    email: EmailOption = None,
    phone: PhoneOption = None,
    language: LanguageOption = None,
    clear_email: Annotated[
        bool, typer.Option("--clear-email", help="Remove the e-mail: no more e-mails.")
    ] = False,
    clear_phone: Annotated[
        bool, typer.Option("--clear-phone", help="Remove the phone: no more SMS.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show or change the e-mail, phone and language of a customer's notifications."""
    if email is not None and clear_email:
        fail(t("cli.customer.email_conflict"), as_json)
    if phone is not None and clear_phone:
        fail(t("cli.customer.phone_conflict"), as_json)
    try:
        with transaction() as conn:
            before, after = customers.set_contacts_audited(
                conn,
                inn,
                email=None if clear_email else customers.KEEP if email is None else email,
                phone=None if clear_phone else customers.KEEP if phone is None else phone,
                language=customers.KEEP if language is None else language,
                actor=cli_actor(),
            )
    except customers.CustomerError as error:
        fail(str(error), as_json)
    _old, new = customers.contact_changes(before, after)
    asked = clear_email or clear_phone or any(v is not None for v in (email, phone, language))
    if new:
        headline = t("cli.customer.contacts_changed", inn=inn)
    elif asked:
        headline = t("cli.customer.contacts_same", inn=inn)
    else:
        headline = t("cli.customer.contacts", inn=inn)
    emit(
        {"inn": inn, **after.contacts(), "changed": list(new)},
        as_json,
        "\n".join([headline, *_contacts_lines(after)]),
    )


@customer_app.command("show")
def customer_show(
    inn: str,
    entries: Annotated[
        int, typer.Option(min=0, max=1000, help="How many latest ledger entries.")
    ] = 10,
    as_json: JsonOption = False,
) -> None:
    """A customer's balance (som) and latest ledger entries."""
    with transaction() as conn:
        customer = customers.get(conn, inn)
        if customer is None:
            fail(t("cli.customer.not_found", inn=inn), as_json)
        data = _customer_json(conn, customer)
        balance = customers.balance(conn, customer)
        data["entries"] = [
            {
                "entry_id": e.entry_id,
                "at": e.created_at.isoformat(),
                "amount": format_amount(e.amount),
                "description": e.description,
            }
            for e in latest_entries(conn, customer.account_id, limit=entries)
        ]
    lines = [
        t(
            "cli.customer.headline",
            name=data["name"],
            form=data["legal_form"],
            inn=inn,
            status=t("cli.customer.active")
            if customer.status == "active"
            else t("cli.customer.is_blocked"),
        ),
        t("cli.customer.balance", balance=som(balance)),
        *_contacts_lines(customer),
        t("cli.customer.entries") if data["entries"] else t("cli.customer.no_entries"),
    ]
    lines += [
        f"  #{e['entry_id']:<8} {e['at'][:19]}  {e['amount']:>12}  {e['description']}"
        for e in data["entries"]
    ]
    emit(data, as_json, "\n".join(lines))
