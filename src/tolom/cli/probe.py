"""`tolom probe`: the synthetic check (`tolom.probe`), once, from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from tolom.cli.common import JsonOption, emit, engine, fail, t
from tolom.settings import get_settings
from tolom.texts import N_


def probe(
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="The sandbox agent to pay as (default TOLOM_PROBE_AGENT)."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Where the gateways are (default TOLOM_PROBE_BASE_URL, else "
            "TOLOM_PUBLIC_BASE_URL).",
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="TOLOM_PROBE_SECRET",
            help="The agent's secret; default: the one the database keeps sealed for "
            "sandbox agents.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=120, help="Seconds to wait for each answer.")
    ] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Pay and cancel through each gateway (OSMP, REST) as a sandbox agent; exit 0 only if
    every path worked."""
    from tolom import probe as core  # brings httpx: only for this command

    settings = get_settings()
    code = agent if agent is not None else settings.probe_agent
    db = engine()
    try:
        who = core.credentials(db, code, secret)
    except core.ProbeRefused as error:
        fail(error.said(settings.language), as_json)
    finally:
        db.dispose()
    report = core.run(base_url or settings.own_gateways_url, who, timeout=timeout)
    emit(report.as_json(settings.language), as_json, _human(report))
    if not report.ok:
        raise typer.Exit(code=1)


def _human(report: object) -> str:
    from tolom import probe as core

    assert isinstance(report, core.Report)
    lines = [t("cli.probe.heading", agent=report.agent, url=report.base_url)]
    for path in report.paths:
        verdict = N_("cli.probe.path_ok") if path.ok else N_("cli.probe.path_failed")
        lines.append(t(verdict, gateway=path.gateway.upper(), ms=_ms(path.seconds)))
        for step in path.steps:
            lines.append(
                t("cli.probe.step", step=step.step, service=step.service, ms=_ms(step.seconds))
            )
        failed = path.failed
        if failed is not None:
            reason = failed.reason(get_settings().language)
            lines.append(
                t("cli.probe.failed_at", step=failed.step, service=failed.service, reason=reason)
            )
    total = N_("cli.probe.all_ok") if report.ok else N_("cli.probe.not_ok")
    lines.append(t(total, ms=_ms(report.seconds)))
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"
