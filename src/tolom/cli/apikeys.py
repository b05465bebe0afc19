"""`tolom apikey`: keys of the operator and service API, shown once, stored hashed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tolom import apikeys, audit
from tolom.cli.common import JsonOption, cli_actor, emit, fail, transaction
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
            token = apikeys.create(conn, name=name, scopes=scope)
            granted = sorted(apikeys.parse_scopes(scope))
            audit.record(
                conn,
                actor=cli_actor(),
                action="apikey.create",
                object_type="api_key",
                object_id=name,
                after={"name": name, "scopes": granted},
            )
    except apikeys.ApiKeyError as error:
        fail(str(error), as_json)
    emit(
        {"name": name, "scopes": granted, "token": token},
        as_json,
        f"Ключ API {name} создан (права: {', '.join(granted)}). "
        "Сохраните его, больше он не будет показан:\n"
        f"  {token}\n"
        "Передавайте его в заголовке запроса: Authorization: Bearer <ключ>",
    )


@apikey_app.command("list")
def apikey_list(as_json: JsonOption = False) -> None:
    """All API keys with their scopes, revoked ones too; never the tokens."""
    with transaction() as conn:
        rows = [_apikey_json(k) for k in apikeys.list_keys(conn)]
    human = "\n".join(
        f"{r['name']:24} {','.join(r['scopes']):18} tolom_{r['prefix']}_…  "
        f"создан {r['created_at'][:19]}"
        + (f"  ОТОЗВАН {r['revoked_at'][:19]}" if r["revoked_at"] else "")
        for r in rows
    )
    emit(rows, as_json, human or "Ключей API нет.")


@apikey_app.command("revoke")
def apikey_revoke(name: str, as_json: JsonOption = False) -> None:
    """Revoke an API key for good; requests with it get HTTP 401."""
    try:
        with transaction() as conn:
            apikeys.revoke(conn, name)
            audit.record(
                conn,
                actor=cli_actor(),
                action="apikey.revoke",
                object_type="api_key",
                object_id=name,
                before={"revoked": False},
                after={"revoked": True},
            )
    except apikeys.ApiKeyError as error:
        fail(str(error), as_json)
    emit(
        {"name": name, "revoked": True},
        as_json,
        f"Ключ API {name} отозван (в силе через ≤ {get_settings().agent_cache_seconds:g} с).",
    )
