"""`tolom webhook listen NAME`: receive a webhook endpoint's events here and print them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer
from sqlalchemy import select

from tolom import secretbox
from tolom.cli.common import fail, transaction
from tolom.db.schema import webhook_endpoints


def listen(
    name: Annotated[str, typer.Argument(help="The endpoint (tolom webhook list).")],
    refuse_first: Annotated[
        int,
        typer.Option(min=0, help="Answer 503 to the first N requests, to watch the retries."),
    ] = 0,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on. Default: the endpoint URL's host."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on. Default: the endpoint URL's port."),
    ] = None,
) -> None:
    """Be the endpoint's receiver on this machine: verify signatures, print events once each."""
    from tolom.events.inbox import Inbox, server  # brings httpx: only for this command

    with transaction() as conn:
        row = conn.execute(
            select(webhook_endpoints.c.url, webhook_endpoints.c.secret_sealed).where(
                webhook_endpoints.c.name == name
            )
        ).first()
        if row is None:
            fail(f"вебхук {name!r} не найден (tolom webhook list)")
        secret = secretbox.for_connection(conn).open(row.secret_sealed)
    url = _listening_url(row.url, host, port)
    inbox = Inbox(secret, typer.echo, refuse_first=refuse_first)
    try:
        http = server(url, inbox)
    except OSError as error:
        fail(f"не удалось слушать {url}: {error}")
    typer.echo(f"Принимаю события вебхука {name} на {url} (Ctrl+C — выход)")
    if url != row.url:  # the worker still posts to the endpoint's own address
        typer.echo(f"Вебхук отправляет на {row.url}: туда события должны доходить (прокси, NAT).")
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        http.server_close()
    typer.echo(f"Получено событий: {len(inbox.events)}")


def _listening_url(url: str, host: str | None, port: int | None) -> str:
    """The endpoint's URL with the host and port this listener binds instead, if given."""
    if host is None and port is None:
        return url
    parts = urlsplit(url)
    bind = host if host is not None else parts.hostname or "127.0.0.1"
    shown = f"[{bind}]" if ":" in bind else bind
    number = port if port is not None else parts.port or (443 if parts.scheme == "https" else 80)
    return parts._replace(netloc=f"{shown}:{number}").geturl()
