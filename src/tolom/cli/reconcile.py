"""`tolom reconcile`: agents' registries in, discrepancies resolved, days closed.

A thin adapter over `tolom.reconciliation`; every change is audited as `cli:<user>`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tolom.cli.common import JsonOption, cli_actor, emit, engine, fail, plural, t, transaction
from tolom.formatting import som
from tolom.reconciliation import days, formats, outbound, queries, registries, shapes, watch
from tolom.reconciliation.days import ReconciliationError
from tolom.reconciliation.formats import FormatError
from tolom.reconciliation.matching import KINDS, Summary
from tolom.reconciliation.parsing import RegistryError
from tolom.texts import N_
from tolom.timestamps import as_utc

reconcile_app = typer.Typer(
    help="Reconciliation with agents: registries, discrepancies, closing the day.",
    no_args_is_help=True,
)

# Keys of the words operators read (the back office's where they say the same).
KIND_NAMES = {
    "missing_ours": N_("cli.recon.kind.missing_ours"),
    "missing_theirs": N_("cli.recon.kind.missing_theirs"),
    "amount_mismatch": N_("cli.recon.kind.amount_mismatch"),
    "account_mismatch": N_("cli.recon.kind.account_mismatch"),
    "duplicate": N_("cli.recon.kind.duplicate"),
}
STATE_NAMES = {
    "none": N_("cli.recon.state.none"),
    "waiting": N_("recon.state.waiting"),
    "open": N_("cli.recon.state.open"),
    "ready": N_("recon.state.ready"),
    "closed": N_("recon.state.closed"),
}
RESOLUTION_NAMES = {
    "accepted": N_("cli.recon.resolution.accepted"),
    "reversed": N_("cli.recon.resolution.reversed"),
    "explained": N_("recon.resolution.explained"),
}
STAGE_NAMES = {
    "parse": N_("cli.recon.stage.parse"),
    "store": N_("cli.recon.stage.store"),
    "match": N_("cli.recon.stage.match"),
}

DayArgument = Annotated[str, typer.Argument(help="The business day, YYYY-MM-DD.")]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(t("cli.recon.bad_date", text=repr(text)))


def _written(value: Any) -> Any:
    """The one outward shape (`reconciliation.shapes`) written out as the API writes it:
    days as YYYY-MM-DD, moments ISO 8601 in UTC with a Z."""
    if isinstance(value, dict):
        return {key: _written(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_written(item) for item in value]
    if isinstance(value, datetime):
        return as_utc(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _summary_text(summary: Summary) -> str:
    lines = [
        t("cli.recon.theirs", count=summary.their_count, amount=som(summary.their_amount)),
        t("cli.recon.ours", count=summary.our_count, amount=som(summary.our_amount)),
        t("cli.recon.matched", count=summary.matched_count, amount=som(summary.matched_amount)),
    ]
    for kind in KINDS:
        total = summary.classes[kind]
        if total.count:
            lines.append(
                t(
                    "cli.recon.kind_total",
                    kind=t(KIND_NAMES[kind]),
                    count=total.count,
                    theirs=som(total.their_amount),
                    ours=som(total.our_amount),
                )
            )
    lines.append(t("cli.recon.difference", amount=som(summary.difference)))
    return "\n".join(lines)


@reconcile_app.command("import")
def import_registry(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    day: Annotated[
        str | None, typer.Option(help="The day it lists (default: the day of its lines).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import a registry and match it at once. The same file again changes nothing; another
    file for the day supersedes the current one. A bad file is refused whole."""
    if file.stat().st_size > registries.MAX_FILE_BYTES:  # refused unread, as over HTTP
        fail(registries.too_large(), as_json)
    content = file.read_bytes()
    expected = max(1, content.count(b"\n"))
    db = engine()
    try:
        # On stderr: --json keeps stdout to the answer alone.
        label = t(STAGE_NAMES["parse"])
        with typer.progressbar(length=expected, label=label, file=sys.stderr) as bar:
            seen = 0

            def progress(stage: str, lines: int) -> None:
                nonlocal seen
                if lines > seen:
                    bar.update(min(lines, expected) - seen)
                    seen = min(lines, expected)
                bar.label = t(STAGE_NAMES[stage]) if stage in STAGE_NAMES else stage

            done = registries.import_registry(
                db,
                agent,
                content,
                file_name=file.name,
                actor=cli_actor(),
                day=_day(day) if day else None,
                progress=progress,
            )
            bar.update(expected - seen)
    except RegistryError as error:
        fail(str(error), as_json)
    finally:
        db.dispose()
    data = _written(shapes.imported_fields(done))
    head = (
        t("cli.recon.replayed")
        if done.replayed
        else plural(
            "cli.recon.imported",
            done.lines,
            id=done.registry_id,
            agent=done.agent,
            day=f"{done.business_date:%d.%m.%Y}",
            count=done.lines,
            amount=som(done.total),
        )
        + (t("cli.recon.superseded", id=done.superseded) if done.superseded else "")
    )
    emit(data, as_json, f"{head}\n{_summary_text(done.summary)}")


def _discrepancy_json(d: days.Discrepancy) -> dict[str, Any]:
    """The API's `Discrepancy`: the same fields, amounts as som strings."""
    return dict(_written(shapes.discrepancy_fields(d)))


def _discrepancy_line(d: days.Discrepancy) -> str:
    theirs = f"{d.their_account} {som(d.their_amount)}" if d.their_amount is not None else "—"
    ours = f"{d.our_account} {som(d.our_amount)}" if d.our_amount is not None else "—"
    elsewhere = ""
    if d.other_day is not None:
        elsewhere = t(
            "cli.recon.elsewhere",
            payment=d.payment_id,
            day=f"{d.other_day:%d.%m.%Y}",
            status=d.other_status,
        )
    state = (
        f"{t(RESOLUTION_NAMES[d.resolution])}: {d.reason}"
        if d.resolution
        else t("cli.recon.unresolved", actions=", ".join(a.value for a in d.actions))
    )
    return t(
        "cli.recon.discrepancy",
        id=d.id,
        kind=t(KIND_NAMES[d.kind]),
        txn=d.txn_id,
        theirs=theirs,
        ours=ours,
        elsewhere=elsewhere,
        state=state,
    )


@reconcile_app.command("show")
def show(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    day: DayArgument,
    unresolved: Annotated[bool, typer.Option(help="Only what is still open.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The agent's day: its state, the registry's summary and the discrepancies."""
    db = engine()
    try:
        with db.connect() as conn:
            found = days.day(conn, agent, _day(day))
            listed = (
                days.discrepancies_of(conn, found.registry_id, unresolved_only=unresolved)
                if found.registry_id is not None
                else []
            )
    except ReconciliationError as error:
        fail(str(error), as_json)
    finally:
        db.dispose()
    # The API's day (`GET /reconciliation/days/{code}/{day}`) with every discrepancy at
    # once: no pages here.
    data = _written(shapes.day_fields(found))
    data["discrepancy_count"] = len(listed)
    data["discrepancies"] = [_discrepancy_json(d) for d in listed]
    text = [f"{found.agent}, {found.business_date:%d.%m.%Y}: {t(STATE_NAMES[found.state])}"]
    if found.summary is not None:
        text.append(t("cli.recon.registry", id=found.registry_id, file=found.file_name))
        text.append(_summary_text(found.summary))
    text.extend(_discrepancy_line(d) for d in listed)
    emit(data, as_json, "\n".join(text))


@reconcile_app.command("resolve")
def resolve(
    discrepancy: Annotated[int, typer.Argument(help="The discrepancy's number.")],
    action: Annotated[str, typer.Argument(help="accept | reverse | explain")],
    reason: Annotated[str, typer.Option(help="Why: required, goes to the audit log.")],
    as_json: JsonOption = False,
) -> None:
    """Resolve a discrepancy: accept the agent's payment, reverse ours, or explain it."""
    db = engine()
    try:
        done = days.resolve(db, discrepancy, action, reason, actor=cli_actor())
    except ReconciliationError as error:
        fail(str(error), as_json)
    finally:
        db.dispose()
    emit(_discrepancy_json(done), as_json, _discrepancy_line(done))


def _day_change(name: str, call: Any, as_json: bool) -> None:
    db = engine()
    try:
        found = call(db)
    except ReconciliationError as error:
        fail(str(error), as_json)
    finally:
        db.dispose()
    emit(
        _written(shapes.day_fields(found)),
        as_json,
        f"{found.agent}, {found.business_date:%d.%m.%Y}: {name} ({t(STATE_NAMES[found.state])})",
    )


@reconcile_app.command("close")
def close(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    day: DayArgument,
    as_json: JsonOption = False,
) -> None:
    """Close the agent's day; refused while a discrepancy is open."""
    when = _day(day)
    _day_change(
        t("cli.recon.closed"), lambda db: days.close(db, agent, when, actor=cli_actor()), as_json
    )


@reconcile_app.command("reopen")
def reopen(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    day: DayArgument,
    reason: Annotated[str, typer.Option(help="Why: required, goes to the audit log.")],
    as_json: JsonOption = False,
) -> None:
    """Reopen a closed day. In the back office and the API only administrators may; here
    whoever runs this command may (it needs the database), audited as cli:<user>."""
    when = _day(day)
    _day_change(
        t("cli.recon.reopened"),
        lambda db: days.reopen(db, agent, when, reason, actor=cli_actor()),
        as_json,
    )


@reconcile_app.command("days")
def calendar(
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    agent: Annotated[list[str] | None, typer.Option(help="Only these agents.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Each agent's days and their state: waiting for the registry, open, closed."""
    db = engine()
    try:
        with db.connect() as conn:
            cells = days.calendar(conn, _day(start), _day(end), agent)
    except ReconciliationError as error:
        fail(str(error), as_json)
    finally:
        db.dispose()
    emit(
        [_written(shapes.calendar_fields(c)) for c in cells],
        as_json,
        "\n".join(
            f"{c.agent:<12} {c.business_date:%d.%m.%Y}  {t(STATE_NAMES[c.state])}"
            + (f" ({c.unresolved})" if c.unresolved else "")
            for c in cells
        ),
    )


@reconcile_app.command("format")
def set_format(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    settings_file: Annotated[
        Path | None,
        typer.Option("--file", help="JSON settings (see docs/reconciliation.md); none: show."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show or set how the agent writes its registry (kind, columns, encoding, zone)."""
    try:
        with transaction() as conn:
            found = queries.agent_format(conn, agent)
            if settings_file is None:
                emit(json.loads(found.format.to_json()), True, "")
                return
            try:
                data = json.loads(settings_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                fail(t("cli.recon.format_unreadable", error=error), as_json)
            if not isinstance(data, dict):
                fail(t("cli.recon.format_not_object"), as_json)
            done = formats.set_audited(
                conn,
                found.agent.id,
                found.agent.code,
                formats.from_mapping(data),
                actor=cli_actor(),
            )
    except (FormatError, ReconciliationError) as error:
        fail(str(error), as_json)
    emit(
        json.loads(done.after.to_json()),
        as_json,
        t("cli.recon.format_saved", agent=agent)
        if done.changed
        else t("cli.recon.format_unchanged", agent=agent),
    )


@reconcile_app.command("export")
def export_registry(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    day: DayArgument,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: a name of ours).")
    ] = None,
) -> None:
    """Our registry of the agent's day, in the agent's own format, to send to the agent."""
    when = _day(day)
    db = engine()
    try:
        with db.connect() as conn:
            found = queries.agent_format(conn, agent)
        target = output or Path(outbound.filename(found.agent, when, found.format))
        with target.open("wb") as out:
            count = outbound.write(db, found.agent, when, found.format, out)
    except (ReconciliationError, OSError) as error:
        fail(str(error))
    finally:
        db.dispose()
    typer.echo(
        plural(
            "cli.recon.exported",
            count,
            agent=agent,
            day=f"{when:%d.%m.%Y}",
            count=count,
            file=target,
        )
    )


@reconcile_app.command("act")
def act_file(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    day: DayArgument,
    pdf: Annotated[Path | None, typer.Option(help="Write the act as PDF here.")] = None,
    xlsx: Annotated[Path | None, typer.Option(help="Write the act as XLSX here.")] = None,
) -> None:
    """The act of reconciliation of the agent's day (a draft until the day is closed)."""
    from tolom.reconciliation import act  # brings fpdf: only for this command
    from tolom.settings import get_settings

    when = _day(day)
    if pdf is None and xlsx is None:
        pdf = Path(f"akt-{agent}-{when.isoformat()}.pdf")
    db = engine()
    try:
        with db.connect() as conn:
            found = act.load(conn, agent, when)
        settings = get_settings()
        for path, render in ((pdf, act.pdf), (xlsx, act.xlsx)):
            if path is not None:
                path.write_bytes(render(found, settings))
                typer.echo(f"{act.title(found)} ({agent}) → {path}")
    except (ReconciliationError, OSError) as error:
        fail(str(error))
    finally:
        db.dispose()
    if not found.final:
        typer.secho(t("cli.recon.draft"), fg="yellow", err=True)


@reconcile_app.command("watch")
def watch_folder(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    once: Annotated[bool, typer.Option(help="One pass, then exit (for cron).")] = False,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between passes.")] = 30,
) -> None:
    """Import registries dropped into FOLDER/<agent>/ as they arrive (see docs)."""
    import time as clock

    db = engine()
    try:
        while True:
            try:
                for outcome in watch.scan_once(db, folder, actor=cli_actor()):
                    if outcome.error:
                        typer.secho(
                            t(
                                "cli.recon.watch_refused",
                                agent=outcome.agent,
                                file=outcome.file,
                                error=outcome.error,
                            ),
                            fg="red",
                            err=True,
                        )
                    elif outcome.imported is not None:
                        done = outcome.imported
                        typer.echo(
                            plural(
                                "cli.recon.watch_imported",
                                done.lines,
                                agent=outcome.agent,
                                file=outcome.file,
                                day=f"{done.business_date:%d.%m.%Y}",
                                count=done.lines,
                                discrepancies=done.summary.discrepancy_count,
                            )
                            + (t("cli.recon.watch_replayed") if done.replayed else "")
                        )
            except watch.Unreachable as error:  # the database is away: the files wait
                typer.secho(t("cli.recon.db_away", error=error), fg="red", err=True)
            if once:
                return
            clock.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        db.dispose()
