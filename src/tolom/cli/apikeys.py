"""`tolom apikey`: keys of the operator and service API, shown once, stored hashed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tolom import apikeys
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.settings import get_settings

apikey_app = typer.Typer(
    help="API keys of the operator and service API (/api/v1).", no_args_is_help=True
)


def _apikey_json(key: apikeys.ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "scopes": sorted(key.scopes),
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="Who uses the key, e.g. buh or sochi-backend.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="read, write, admin or charges (admin implies write and charges, write "
            "implies read; charges: the СОЧИ system's key for charges and tariffs); repeat "
            "or separate with commas.",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Create an API key; prints the token once (only its hash is stored)."""
    try:
        with transaction() as conn:
            token, granted = apikeys.create_audited(
                conn, name=name, scopes=scope, actor=cli_actor()
            )
    except apikeys.ApiKeyError as error:
        fail(str(error), as_json)
    emit(
        {"name": name, "scopes": granted, "token": token},
        as_json,
        t("cli.apikey.created", name=name, scopes=", ".join(granted), token=token),
    )


@apikey_app.command("list")
def apikey_list(as_json: JsonOption = False) -> None:
    """All API keys with their scopes, revoked ones too; never the tokens."""
    with transaction() as conn:
        rows = [_apikey_json(k) for k in apikeys.list_keys(conn)]
    human = "\n".join(
        f"{r['name']:24} {','.join(r['scopes']):18} tolom_{r['prefix']}_…  "
        + t("cli.apikey.created_at", moment=r["created_at"][:19])
        + (t("cli.apikey.revoked_at", moment=r["revoked_at"][:19]) if r["revoked_at"] else "")
        for r in rows
    )
    emit(rows, as_json, human or t("cli.apikey.none"))


@apikey_app.command("revoke")
def apikey_revoke(name: str, as_json: JsonOption = False) -> None:
    """Revoke an API key for good; requests with it get HTTP 401."""
    try:
        with transaction() as conn:
            apikeys.revoke_audited(conn, name, actor=cli_actor())
    except apikeys.ApiKeyError as error:
        fail(str(error), as_json)
    emit(
        {"name": name, "revoked": True},
        as_json,
        t("cli.apikey.revoked", name=name, seconds=get_settings().agent_cache_seconds),
    )
