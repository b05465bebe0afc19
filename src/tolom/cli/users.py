"""`tolom user`: back-office users — the first admin, roles, blocking, password resets."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tolom.backoffice import passwords, users
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.texts import N_

user_app = typer.Typer(help="Back-office users and their roles.", no_args_is_help=True)

ROLE_NAMES = {  # the back office's words for the roles
    "admin": N_("role.admin"),
    "operator": N_("role.operator"),
    "accountant": N_("role.accountant"),
    "auditor": N_("role.auditor"),
}
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input (scripts) instead."
    ),
]


def _json(user: users.User) -> dict[str, Any]:
    return users.as_dict(user)


def _line(user: users.User) -> str:
    state = "" if user.active else t("cli.user.disabled_mark")
    role = t(ROLE_NAMES[user.role])
    return f"{user.username:20} {role:14} {user.language}  {user.display_name}{state}"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = typer.prompt(
        t("cli.user.password_prompt"),
        hide_input=True,
        confirmation_prompt=t("cli.user.password_again"),
    )
    return value


@user_app.command("create")
def user_create(
    username: str,
    name: Annotated[str, typer.Option("--name", help="The person's name, as shown in pages.")],
    role: Annotated[str, typer.Option(help="admin | operator | accountant | auditor")],
    language: Annotated[str, typer.Option(help="ru | ky | en")] = "ru",
    password_stdin: PasswordStdin = False,
    as_json: JsonOption = False,
) -> None:
    """Create a user (the first admin, for instance); asks for the password twice."""
    password = _password(password_stdin)
    try:
        users.check_password(password)
        encoded = passwords.hash_with_pool(password)  # not inside the transaction
        with transaction() as conn:
            user = users.create_audited(
                conn,
                username=username,
                display_name=name,
                role=role,
                password=password,
                language=language,
                password_hash=encoded,
                actor=cli_actor(),
            )
    except users.UserError as error:
        fail(str(error), as_json)
    emit(_json(user), as_json, t("cli.user.created", line=_line(user)))


@user_app.command("list")
def user_list(as_json: JsonOption = False) -> None:
    """Every user with role, language and state."""
    with transaction() as conn:
        found = users.list_users(conn)
    emit(
        [_json(u) for u in found],
        as_json,
        "\n".join(_line(u) for u in found) or t("cli.user.none"),
    )


def _change(username: str, as_json: bool, **values: Any) -> None:
    try:
        with transaction() as conn:
            _, after = users.change_audited(conn, username, actor=cli_actor(), **values)
    except users.UserError as error:
        fail(str(error), as_json)
    emit(_json(after), as_json, _line(after))


@user_app.command("set-role")
def user_set_role(username: str, role: str, as_json: JsonOption = False) -> None:
    """Give a user another role (their sessions end)."""
    _change(username, as_json, role=role)


@user_app.command("disable")
def user_disable(username: str, as_json: JsonOption = False) -> None:
    """Stop a user from logging in (their sessions end at once)."""
    _change(username, as_json, active=False)


@user_app.command("enable")
def user_enable(username: str, as_json: JsonOption = False) -> None:
    """Let a disabled user log in again."""
    _change(username, as_json, active=True)


@user_app.command("reset-password")
def user_reset_password(
    username: str, password_stdin: PasswordStdin = False, as_json: JsonOption = False
) -> None:
    """Set a new password (also unlocks the user and ends their sessions)."""
    password = _password(password_stdin)
    try:
        users.check_password(password)
        encoded = passwords.hash_with_pool(password)  # not inside the transaction
        with transaction() as conn:
            user = users.set_password_audited(
                conn, username, password, password_hash=encoded, actor=cli_actor()
            )
    except users.UserError as error:
        fail(str(error), as_json)
    emit(_json(user), as_json, t("cli.user.password_changed", username=username))
