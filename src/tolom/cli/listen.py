"""`tolom webhook listen NAME`: receive a webhook endpoint's events here and print them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from tolom.cli.common import fail, t, transaction
from tolom.events import endpoints
from tolom.settings import get_settings
from tolom.texts import texts


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
        found = endpoints.receiver(conn, name)
    if found is None:
        fail(t("cli.listen.not_found", name=repr(name)))
    endpoint_url, secret = found
    url = _listening_url(endpoint_url, host, port)
    inbox = Inbox(secret, typer.echo, refuse_first=refuse_first, t=texts(get_settings().language))
    try:
        http = server(url, inbox)
    except OSError as error:
        fail(t("cli.listen.bind_failed", url=url, error=error))
    typer.echo(t("cli.listen.started", name=name, url=url))
    if url != endpoint_url:  # the worker still posts to the endpoint's own address
        typer.echo(t("cli.listen.elsewhere", url=endpoint_url))
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        http.server_close()
    typer.echo(t("cli.listen.received", count=len(inbox.events)))


def _listening_url(url: str, host: str | None, port: int | None) -> str:
    """The endpoint's URL with the host and port this listener binds instead, if given."""
    if host is None and port is None:
        return url
    parts = urlsplit(url)
    bind = host if host is not None else parts.hostname or "127.0.0.1"
    shown = f"[{bind}]" if ":" in bind else bind
    number = port if port is not None else parts.port or (443 if parts.scheme == "https" else 80)
    return parts._replace(netloc=f"{shown}:{number}").geturl()
