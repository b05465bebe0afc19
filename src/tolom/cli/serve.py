"""`tolom serve`: the HTTP server (agent gateways, APIs, back office) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from tolom import logs, secretbox
from tolom.cli.common import t
from tolom.settings import get_settings


def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; with --port also the public base URL (receipt "
            "links, QR codes) unless TOLOM_PUBLIC_BASE_URL is set."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (use several on PostgreSQL).")] = 1,
    timeout_worker_healthcheck: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="With --workers 2 or more: seconds a worker has to answer the supervisor's "
            "ping (sent every 0.5 s) before it is killed and replaced; also how long a "
            "worker restarted by SIGHUP may take to start. Default: uvicorn's.",
        ),
    ] = 5,
    access_log: Annotated[bool, typer.Option(help="Print one line per request.")] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            help="Also deliver events (webhooks, e-mail, SMS) from inside the server process; "
            "in production run `tolom worker` instead."
        ),
    ] = False,
) -> None:
    """Run the HTTP server (agent gateways, APIs, docs)."""
    import os

    import uvicorn

    from tolom.metrics import processes

    if workers > 1 and get_settings().database_url.startswith("sqlite"):
        typer.secho(
            "SQLite: one writer at a time; several workers add little.", fg="yellow", err=True
        )
    if with_worker:
        os.environ["TOLOM_WORKER_IN_SERVER"] = "true"  # read by each server process
        get_settings.cache_clear()
    if "public_base_url" not in get_settings().model_fields_set:
        # Not configured (environment or .env): receipt links, QR codes and the back
        # office's ready-to-paste commands name the address this server listens on.
        os.environ["TOLOM_PUBLIC_BASE_URL"] = public_base_url(host, port)  # every worker
        get_settings.cache_clear()
    # Tolom's own log lines (gateway failures, deliveries, console e-mail and SMS) beside
    # uvicorn's, as text or JSON lines (TOLOM_LOG_FORMAT): the same config in every worker.
    settings = get_settings()
    try:  # every worker would fail to start without it: say so once, plainly
        secretbox.for_settings(settings).check()
    except secretbox.SecretKeyError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from None
    if not _loopback(host) and not settings.secure_cookies and not settings.allow_insecure_http:
        typer.secho(
            t("cli.serve.insecure", host=host),
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    log_config = logs.config(settings.log_format, settings.log_level)
    metrics_dir = None
    if workers > 1:  # the workers' metrics meet in files: any worker's /metrics sums them
        metrics_dir = processes.prepare(settings.metrics_dir)
    try:
        uvicorn.run(
            "tolom.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # Client addresses are decided by TOLOM_TRUSTED_PROXIES in tolom.gateway.peers,
            # never by uvicorn's own header handling.
            proxy_headers=False,
            access_log=access_log,
            server_header=False,
            timeout_keep_alive=75,
            timeout_worker_healthcheck=timeout_worker_healthcheck,
            log_config=log_config,
        )
    finally:
        if metrics_dir is not None:
            processes.release(*metrics_dir)


def _loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def public_base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a server listening on `host`:`port`."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"  # a name
    if address.is_unspecified:  # every address: this machine's own is loopback
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{port}"
