"""`tolom user`: back-office users — the first admin, roles, blocking, password resets."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tolom import audit
from tolom.backoffice import passwords, users
from tolom.cli.common import JsonOption, cli_actor, emit, fail, transaction

user_app = typer.Typer(help="Back-office users and their roles.", no_args_is_help=True)

ROLE_NAMES = {
    "admin": "администратор",
    "operator": "оператор",
    "accountant": "бухгалтер",
    "auditor": "аудитор",
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
    state = "" if user.active else "  (отключён)"
    return (
        f"{user.username:20} {ROLE_NAMES[user.role]:14} {user.language}  {user.display_name}{state}"
    )


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = typer.prompt("Пароль", hide_input=True, confirmation_prompt="Ещё раз")
    return value


def _audit(conn: Any, action: str, username: str, before: Any, after: Any) -> None:
    audit.record(
        conn,
        actor=cli_actor(),
        action=action,
        object_type="user",
        object_id=username,
        before=before,
        after=after,
    )


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
            user = users.create(
                conn,
                username=username,
                display_name=name,
                role=role,
                password=password,
                language=language,
                password_hash=encoded,
            )
            _audit(conn, "user.create", username, None, _json(user))
    except users.UserError as error:
        fail(str(error), as_json)
    emit(_json(user), as_json, f"Пользователь создан: {_line(user)}")


@user_app.command("list")
def user_list(as_json: JsonOption = False) -> None:
    """Every user with role, language and state."""
    with transaction() as conn:
        found = users.list_users(conn)
    emit(
        [_json(u) for u in found],
        as_json,
        "\n".join(_line(u) for u in found) or "Нет пользователей.",
    )


def _change(username: str, action: str, as_json: bool, **values: Any) -> None:
    try:
        with transaction() as conn:
            before, after = users.change(conn, username, **values)
            if before != after:
                _audit(conn, action, username, _json(before), _json(after))
    except users.UserError as error:
        fail(str(error), as_json)
    emit(_json(after), as_json, _line(after))


@user_app.command("set-role")
def user_set_role(username: str, role: str, as_json: JsonOption = False) -> None:
    """Give a user another role (their sessions end)."""
    _change(username, "user.role", as_json, role=role)


@user_app.command("disable")
def user_disable(username: str, as_json: JsonOption = False) -> None:
    """Stop a user from logging in (their sessions end at once)."""
    _change(username, "user.disable", as_json, active=False)


@user_app.command("enable")
def user_enable(username: str, as_json: JsonOption = False) -> None:
    """Let a disabled user log in again."""
    _change(username, "user.enable", as_json, active=True)


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
            user = users.get(conn, username)
            if user is None:
                raise users.UserError(f"пользователь {username} не найден")
            users.set_password(conn, user.id, password, password_hash=encoded)
            _audit(conn, "user.reset_password", username, None, None)
    except users.UserError as error:
        fail(str(error), as_json)
    emit(_json(user), as_json, f"Пароль пользователя {username} изменён.")
