"""`tolom sandbox`: the agent sandbox (`tolom.payments.sandbox`)."""

from __future__ import annotations

from typing import Annotated

import typer

from tolom.cli.common import JsonOption, cli_actor, emit, fail, t, transaction
from tolom.payments import sandbox

sandbox_app = typer.Typer(help="The agent sandbox: test agents' payments.", no_args_is_help=True)


@sandbox_app.command("reset")
def sandbox_reset(
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this sandbox agent's payments.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Empty the sandbox: sandbox agents' payments and retry counters (also done nightly)."""
    with transaction() as conn:
        agent_id = None
        if agent is not None:
            agent_id = sandbox.sandbox_agent_id(conn, agent)
            if agent_id is None:
                fail(t("cli.sandbox.no_agent", code=agent), as_json)
        removed = sandbox.reset(conn, agent_id=agent_id, actor=cli_actor())
    emit({"removed": removed}, as_json, t("cli.sandbox.reset", count=removed))
