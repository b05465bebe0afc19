"""`tolom agent`: payment agents, their credentials, allow-lists and limits."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tolom.agents import admin as agent_admin
from tolom.agents import service as agents
from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.cli.common import amount as som_amount
from tolom.money import format_amount
from tolom.settings import get_settings
from tolom.texts import N_
from tolom.timestamps import HOME_ZONE_NAME

agent_app = typer.Typer(help="Payment agents and their credentials.", no_args_is_help=True)
_CREATED = {False: N_("cli.agent.created"), True: N_("cli.agent.created_sandbox")}


def _agent_json(agent: agents.Agent) -> dict[str, Any]:
    return {
        "code": agent.code,
        "name": agent.name,
        "kind": agent.kind,
        "enabled": agent.enabled,
        "timezone": agent.timezone.key,
        "cancel_window_days": agent.cancel_window_days,
        "sandbox": agent.sandbox,
        "allowed_networks": "*" if agent.networks is None else [str(n) for n in agent.networks],
        "services": {
            code: {"min": format_amount(lim.min_amount), "max": format_amount(lim.max_amount)}
            for code, lim in agent.services.items()
        },
    }


@agent_app.command("create")
def agent_create(
    code: Annotated[str, typer.Argument(help="Login of the agent, e.g. optima.")],
    name: Annotated[str, typer.Option(help="Display name, e.g. «Оптима Банк».")],
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="CIDR the agent calls from; repeat.")
    ] = None,
    allow_any_ip: Annotated[
        bool, typer.Option(help="Accept this agent from any address (tests, demos).")
    ] = False,
    services_: Annotated[
        str, typer.Option("--services", help="Comma-separated services.")
    ] = "sochi,eds",
    timezone: Annotated[str, typer.Option(help="Zone of the agent's txn_date.")] = HOME_ZONE_NAME,
    sandbox: Annotated[
        bool,
        typer.Option(help="A test agent: answered from the magic accounts, no real money."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register an agent; prints its generated secret once."""
    networks = ["*"] if allow_any_ip else (allow_ip or [])
    try:
        with transaction() as conn:
            secret = agent_admin.create(
                conn,
                code=code,
                name=name,
                networks=networks,
                service_codes=[s.strip() for s in services_.split(",") if s.strip()],
                timezone=timezone,
                sandbox=sandbox,
                actor=cli_actor(),
            )
    except agents.AgentError as error:
        fail(str(error), as_json)
    headline = t(_CREATED[sandbox], code=code)
    _emit_secret(code, secret, as_json, headline)


def _emit_secret(code: str, secret: str, as_json: bool, headline: str) -> None:
    signing_key = agents.signing_key_for(secret)
    emit(
        {"code": code, "secret": secret, "signing_key": signing_key},
        as_json,
        t("cli.agent.secret", headline=headline, secret=secret, signing_key=signing_key),
    )


@agent_app.command("list")
def agent_list(
    as_json: JsonOption = False,
    channels: Annotated[
        bool, typer.Option(help="Also list the built-in cash desk and bank channels.")
    ] = False,
) -> None:
    """All agents with their services, limits and allow-lists."""
    with transaction() as conn:
        found = [a for a in agents.load_all(conn) if channels or a.kind == agents.GATEWAY]
    rows = [_agent_json(a) for a in found]
    on, off = t("cli.agent.on"), t("cli.agent.off")
    sandbox_mark = t("cli.agent.sandbox")
    human = "\n".join(
        f"{r['code']:12} {on if r['enabled'] else off} {r['timezone']:14} "
        f"{','.join(r['services'])} {r['allowed_networks']}  {r['name']}"
        + (f"  [{sandbox_mark}]" if r["sandbox"] else "")
        for r in rows
    )
    emit(rows, as_json, human or t("cli.agent.none"))


def _set_enabled(code: str, enabled: bool) -> None:
    try:
        with transaction() as conn:
            agent_admin.set_enabled(conn, code, enabled, actor=cli_actor())
    except agents.AgentError as error:
        fail(str(error))
    seconds = get_settings().agent_cache_seconds
    typer.echo(
        t("cli.agent.enabled", code=code, seconds=seconds)
        if enabled
        else t("cli.agent.disabled", code=code, seconds=seconds)
    )


@agent_app.command("disable")
def agent_disable(code: str) -> None:
    """Refuse the agent's requests (HTTP 403) from now on."""
    _set_enabled(code, False)


@agent_app.command("enable")
def agent_enable(code: str) -> None:
    """Accept the agent's requests again."""
    _set_enabled(code, True)


@agent_app.command("rotate-secret")
def agent_rotate_secret(code: str, as_json: JsonOption = False) -> None:
    """Issue a new secret and signing key; the old ones stop working."""
    try:
        with transaction() as conn:
            secret = agent_admin.rotate_secret(conn, code, actor=cli_actor())
    except agents.AgentError as error:
        fail(str(error), as_json)
    _emit_secret(code, secret, as_json, t("cli.agent.rotated", code=code))


@agent_app.command("configure")
def agent_configure(
    code: str,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Replace the allow-list with these CIDRs; repeat."),
    ] = None,
    allow_any_ip: Annotated[bool, typer.Option(help="Accept the agent from any address.")] = False,
    timezone: Annotated[str | None, typer.Option(help="Zone of the agent's txn_date.")] = None,
    cancel_window_days: Annotated[
        int | None,
        typer.Option(
            help="Days after the business day in which the agent may cancel; 0: same day."
        ),
    ] = None,
) -> None:
    """Change an agent's allow-list, time zone or cancel window."""
    networks = ["*"] if allow_any_ip else allow_ip
    try:
        with transaction() as conn:
            agent_admin.configure(
                conn,
                code,
                networks=networks,
                timezone=timezone,
                cancel_window_days=cancel_window_days,
                actor=cli_actor(),
            )
    except agents.AgentError as error:
        fail(str(error))
    typer.echo(t("cli.agent.saved", seconds=get_settings().agent_cache_seconds))


@agent_app.command("set-limits")
def agent_set_limits(
    code: str,
    service: str,
    min_amount: Annotated[str | None, typer.Option("--min", help="Smallest amount, som.")] = None,
    max_amount: Annotated[str | None, typer.Option("--max", help="Largest amount, som.")] = None,
    forbid: Annotated[bool, typer.Option(help="Forbid this service for the agent.")] = False,
) -> None:
    """Allow a service for an agent, with its own limits, or forbid it."""
    try:
        with transaction() as conn:
            agent_admin.set_service(
                conn,
                code,
                service,
                allowed=not forbid,
                min_amount=som_amount(min_amount) if min_amount else None,
                max_amount=som_amount(max_amount) if max_amount else None,
                actor=cli_actor(),
            )
    except agents.AgentError as error:
        fail(str(error))
    typer.echo(t("cli.saved"))
