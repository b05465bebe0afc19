"""`tolom webhook`, `tolom events` and `tolom worker`: endpoints, dead letters, delivery."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import datetime
from types import FrameType
from typing import Annotated

import typer

from tolom import logs, secretbox
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.cli.listen import listen
from tolom.db.engine import make_engine
from tolom.events import admin, endpoints
from tolom.settings import get_settings
from tolom.texts import N_

webhook_app = typer.Typer(help="Webhook endpoints that receive events.", no_args_is_help=True)
events_app = typer.Typer(
    help="Events and their deliveries: list, inspect, re-drive dead letters.",
    no_args_is_help=True,
)


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _number(text: str, what: str, as_json: bool) -> int:
    """`text` as a positive id; `what` is the key of what it numbers (in the genitive)."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        fail(t("cli.events.bad_number", what=t(what), text=repr(text)), as_json)
    return int(text)


# --- webhook ------------------------------------------------------------------------


def _emit_secret(name: str, secret: str, as_json: bool, headline: str) -> None:
    emit(
        {"name": name, "secret": secret},
        as_json,
        t("cli.webhook.secret", headline=headline, secret=secret),
    )


@webhook_app.command("add")
def webhook_add(
    name: Annotated[str, typer.Argument(help="A short name, e.g. sochi.")],
    url: Annotated[str, typer.Argument(help="http:// or https:// address receiving POSTs.")],
    events: Annotated[
        str, typer.Option(help='Event types, space-separated, e.g. "payment.accepted"; * = all.')
    ] = "*",
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Send it the sandbox agents' events instead of the real ones (for testing).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register an endpoint; prints its signing secret once."""
    try:
        with transaction() as conn:
            endpoint_id, secret = endpoints.add(
                conn,
                name=name,
                url=url,
                event_types=events,
                actor=cli_actor(),
                allowed_networks=get_settings().webhook_allowed_networks,
                sandbox=sandbox,
            )
    except endpoints.EndpointError as error:
        fail(str(error), as_json)
    added = N_("cli.webhook.added_sandbox") if sandbox else N_("cli.webhook.added")
    _emit_secret(name, secret, as_json, t(added, name=name, id=endpoint_id))


@webhook_app.command("list")
def webhook_list(as_json: JsonOption = False) -> None:
    """All endpoints, their addresses and event types."""
    with transaction() as conn:
        found = endpoints.load_all(conn)
    on, off, mark = t("cli.webhook.on"), t("cli.webhook.off"), t("cli.webhook.sandbox")
    human = "\n".join(
        f"{e.name:16} {e.destination:12} {on if e.enabled else off} {e.url}  {e.event_types}"
        + (f"  [{mark}]" if e.sandbox else "")
        for e in found
    )
    emit([e.as_json() for e in found], as_json, human or t("cli.webhook.none"))


def _set_enabled(name: str, enabled: bool) -> None:
    try:
        with transaction() as conn:
            endpoints.set_enabled(conn, name, enabled, actor=cli_actor())
    except endpoints.EndpointError as error:
        fail(str(error))
    typer.echo(
        t("cli.webhook.enabled", name=name) if enabled else t("cli.webhook.disabled", name=name)
    )


@webhook_app.command("disable")
def webhook_disable(name: str) -> None:
    """Stop sending to the endpoint; what was queued waits, new events are not queued."""
    _set_enabled(name, False)


@webhook_app.command("enable")
def webhook_enable(name: str) -> None:
    """Send to the endpoint again, starting with what waited."""
    _set_enabled(name, True)


@webhook_app.command("rotate-secret")
def webhook_rotate_secret(name: str, as_json: JsonOption = False) -> None:
    """Issue a new signing secret; every request from now on is signed with it."""
    try:
        with transaction() as conn:
            secret = endpoints.rotate_secret(conn, name, actor=cli_actor())
    except endpoints.EndpointError as error:
        fail(str(error), as_json)
    _emit_secret(name, secret, as_json, t("cli.webhook.rotated", name=name))


webhook_app.command("listen")(listen)


# --- events -------------------------------------------------------------------------


def _line(d: admin.Delivery) -> str:
    text = t(
        "cli.events.line",
        id=d.id,
        event=d.event_id,
        type=d.event_type,
        destination=d.destination,
        status=d.status,
        attempts=d.attempts,
    )
    if d.status == "pending":
        text += t("cli.events.next", moment=_when(d.next_attempt_at))
    if d.status == "delivered":
        text += t("cli.events.delivered", moment=_when(d.delivered_at))
    return text + (t("cli.events.last_error", error=d.last_error) if d.last_error else "")


@events_app.command("list")
def events_list(
    status: Annotated[
        str | None, typer.Option(help="pending | delivered | dead (default: all).")
    ] = None,
    destination: Annotated[
        str | None, typer.Option(help="webhook:ID (see `tolom webhook list`), email or sms.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Deliveries, newest first: event, destination, attempts, next attempt, last error."""
    try:
        with transaction() as conn:
            found = admin.list_deliveries(conn, status=status, destination=destination, limit=limit)
    except admin.DeliveryError as error:
        fail(str(error), as_json)
    emit(
        [d.as_json() for d in found],
        as_json,
        "\n".join(map(_line, found)) or t("cli.events.no_deliveries"),
    )


@events_app.command("show")
def events_show(
    event_id: Annotated[str, typer.Argument(help="The event id.")], as_json: JsonOption = False
) -> None:
    """An event's payload and its deliveries."""
    number = _number(event_id, N_("cli.events.of_event"), as_json)
    try:
        with transaction() as conn:
            event = admin.show_event(conn, number)
    except admin.DeliveryError as error:
        fail(str(error), as_json)
    lines = [
        t(
            "cli.events.event",
            id=event.id,
            type=event.type,
            ordering=event.ordering_key,
            moment=_when(event.created_at),
        ),
        json.dumps(event.payload, ensure_ascii=False, indent=2),
        t("cli.events.deliveries") if event.deliveries else t("cli.events.no_deliveries"),
        *(f"  {_line(d)}" for d in event.deliveries),
    ]
    emit(event.as_json(), as_json, "\n".join(lines))


@events_app.command("redrive")
def events_redrive(
    delivery: Annotated[
        list[str] | None, typer.Option("--delivery", help="A dead delivery's id; repeat.")
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead delivery.")] = False,
    destination: Annotated[
        str | None, typer.Option(help="Only deliveries to this destination, e.g. webhook:1.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send dead deliveries again: back to pending, attempts from zero, due now."""
    ids = [_number(d, N_("cli.events.of_delivery"), as_json) for d in delivery or []]
    try:
        with transaction() as conn:
            redriven = admin.redrive(
                conn,
                delivery_ids=ids,
                all_dead=all_dead,
                destination=destination,
                actor=cli_actor(),
            )
    except admin.DeliveryError as error:
        fail(str(error), as_json)
    emit(
        {"redriven": redriven},
        as_json,
        t("cli.events.redriven", count=len(redriven)) if redriven else t("cli.events.no_dead"),
    )


# --- worker -------------------------------------------------------------------------


def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit (cron, tests).")
    ] = False,
    batch: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Deliveries attempted at once (default TOLOM_WORKER_CONCURRENCY)."
        ),
    ] = None,
) -> None:
    """Deliver events to webhooks, e-mail and SMS until SIGTERM or Ctrl-C."""
    # The worker brings httpx (and its rich/click/pygments CLI): imported by this command,
    # not by every `tolom` run, nor by each `tolom serve` worker (docs/operations.md).
    from tolom import companions
    from tolom.billing.scheduled import JOBS
    from tolom.events.worker import Worker
    from tolom.payments import sandbox

    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)  # httpx quiet: we log each attempt
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("tolom.worker").info(
            "%s: stopping after the deliveries in flight", signal.Signals(signum).name
        )
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    concurrency = batch or settings.worker_concurrency
    try:
        engine = make_engine(settings, pool_size=concurrency + 1)
    except secretbox.SecretKeyError as error:  # the key file: unset, missing, malformed
        fail(str(error))
    try:
        jobs = (*JOBS, sandbox.nightly_job)
        worker = Worker(settings, engine, concurrency=concurrency, stop=stop, jobs=jobs)
        if once:
            worker.run(once=True)
        else:  # its heartbeat row and, if configured, the probe and autopays
            with companions.accompany(settings, engine, stop):
                worker.run()
    finally:
        engine.dispose()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
