"""`tolom webhook listen NAME`: receive a webhook endpoint's events here and print them."""

from __future__ import annotations

from typing import Annotated

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
    inbox = Inbox(secret, typer.echo, refuse_first=refuse_first)
    try:
        http = server(row.url, inbox)
    except OSError as error:
        fail(f"не удалось слушать {row.url}: {error}")
    typer.echo(f"Принимаю события вебхука {name} на {row.url} (Ctrl+C — выход)")
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        http.server_close()
    typer.echo(f"Получено событий: {len(inbox.events)}")
