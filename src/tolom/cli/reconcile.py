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
from sqlalchemy.exc import SQLAlchemyError

from tolom.cli.common import JsonOption, cli_actor, emit, engine, fail, transaction
from tolom.formatting import som
from tolom.money import format_amount
from tolom.reconciliation import days, formats, outbound, registries, shapes, watch
from tolom.reconciliation.days import ReconciliationError
from tolom.reconciliation.formats import FormatError
from tolom.reconciliation.matching import KINDS, Summary
from tolom.reconciliation.parsing import RegistryError
from tolom.timestamps import as_utc

reconcile_app = typer.Typer(
    help="Reconciliation with agents: registries, discrepancies, closing the day.",
    no_args_is_help=True,
)

KIND_NAMES = {
    "missing_ours": "нет у нас",
    "missing_theirs": "нет у агента",
    "amount_mismatch": "расходится сумма",
    "account_mismatch": "расходится лицевой счёт",
    "duplicate": "повтор строки в реестре",
}
STATE_NAMES = {
    "none": "нет платежей",
    "waiting": "ждём реестр",
    "open": "есть расхождения",
    "ready": "можно закрыть",
    "closed": "закрыт",
}
RESOLUTION_NAMES = {"accepted": "принят", "reversed": "отменён", "explained": "объяснено"}

DayArgument = Annotated[str, typer.Argument(help="The business day, YYYY-MM-DD.")]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"неверная дата {text!r}: нужна ГГГГ-ММ-ДД")


def _summary_json(summary: Summary | None) -> dict[str, Any] | None:
    """The API's shape: amounts as som strings, every class listed."""
    return None if summary is None else shapes.summary_fields(summary)


def _utc(value: datetime | None) -> str | None:
    """A moment as the API writes it: ISO 8601 in UTC with a Z."""
    if value is None:
        return None
    return as_utc(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _summary_text(summary: Summary) -> str:
    lines = [
        f"  у агента: {summary.their_count} на {som(summary.their_amount)}",
        f"  у нас:    {summary.our_count} на {som(summary.our_amount)}",
        f"  сошлось:  {summary.matched_count} на {som(summary.matched_amount)}",
    ]
    for kind in KINDS:
        total = summary.classes[kind]
        if total.count:
            lines.append(
                f"  {KIND_NAMES[kind]}: {total.count} (у агента {som(total.their_amount)}, "
                f"у нас {som(total.our_amount)})"
            )
    lines.append(f"  разница (агент − мы): {som(summary.difference)}")
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
        fail(f"файл больше {registries.MAX_FILE_BYTES // (1024 * 1024)} МБ", as_json)
    content = file.read_bytes()
    expected = max(1, content.count(b"\n"))
    db = engine()
    try:
        # On stderr: --json keeps stdout to the answer alone.
        with typer.progressbar(length=expected, label="Разбор", file=sys.stderr) as bar:
            seen = 0

            def progress(stage: str, lines: int) -> None:
                nonlocal seen
                if lines > seen:
                    bar.update(min(lines, expected) - seen)
                    seen = min(lines, expected)
                bar.label = {"parse": "Разбор", "store": "Запись", "match": "Сверка"}.get(
                    stage, stage
                )

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
    data = {
        "registry": done.registry_id,
        "agent": done.agent,
        "day": done.business_date.isoformat(),
        "lines": done.lines,
        "total": format_amount(done.total),
        "replayed": done.replayed,
        "superseded": done.superseded,
        "summary": _summary_json(done.summary),
    }
    head = (
        "Этот реестр уже загружен за этот день: ничего не изменилось."
        if done.replayed
        else f"Реестр №{done.registry_id} агента {done.agent} за {done.business_date:%d.%m.%Y}: "
        f"{done.lines} строк на {som(done.total)}"
        + (f" (заменил №{done.superseded})" if done.superseded else "")
    )
    emit(data, as_json, f"{head}\n{_summary_text(done.summary)}")


def _discrepancy_json(d: days.Discrepancy) -> dict[str, Any]:
    """The API's `Discrepancy`: the same fields, amounts as som strings."""
    data = shapes.discrepancy_fields(d)
    data["resolved_at"] = _utc(d.resolved_at)
    return data


def _discrepancy_line(d: days.Discrepancy) -> str:
    theirs = f"{d.their_account} {som(d.their_amount)}" if d.their_amount is not None else "—"
    ours = f"{d.our_account} {som(d.our_amount)}" if d.our_amount is not None else "—"
    elsewhere = ""
    if d.other_day is not None:
        elsewhere = f" (у нас платёж №{d.payment_id} за {d.other_day:%d.%m.%Y}, {d.other_status})"
    state = (
        f"{RESOLUTION_NAMES[d.resolution]}: {d.reason}"
        if d.resolution
        else "не разобрано: " + ", ".join(a.value for a in d.actions)
    )
    return (
        f"№{d.id:<6} {KIND_NAMES[d.kind]:<24} txn {d.txn_id:<12} агент: {theirs} | "
        f"мы: {ours}{elsewhere} — {state}"
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
    data = {
        "agent": found.agent,
        "day": found.business_date.isoformat(),
        "state": found.state,
        "registry": found.registry_id,
        "file": found.file_name,
        "unresolved": found.unresolved,
        "closed_by": found.closed_by,
        "closed_at": _utc(found.closed_at),
        "summary": _summary_json(found.summary),
        "discrepancies": [_discrepancy_json(d) for d in listed],
    }
    text = [f"{found.agent}, {found.business_date:%d.%m.%Y}: {STATE_NAMES[found.state]}"]
    if found.summary is not None:
        text.append(f"Реестр №{found.registry_id} ({found.file_name}):")
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
        {"agent": found.agent, "day": found.business_date.isoformat(), "state": found.state},
        as_json,
        f"{found.agent}, {found.business_date:%d.%m.%Y}: {name} ({STATE_NAMES[found.state]})",
    )


@reconcile_app.command("close")
def close(
    agent: Annotated[str, typer.Argument(help="The agent's code.")],
    day: DayArgument,
    as_json: JsonOption = False,
) -> None:
    """Close the agent's day; refused while a discrepancy is open."""
    when = _day(day)
    _day_change("день закрыт", lambda db: days.close(db, agent, when, actor=cli_actor()), as_json)


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
        "день снова открыт",
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
        [
            {
                "agent": c.agent,
                "day": c.business_date.isoformat(),
                "state": c.state,
                "unresolved": c.unresolved,
            }
            for c in cells
        ],
        as_json,
        "\n".join(
            f"{c.agent:<12} {c.business_date:%d.%m.%Y}  {STATE_NAMES[c.state]}"
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
            found = registries.agent_for_registry(conn, agent)
            if settings_file is None:
                emit(json.loads(formats.load(conn, found.id).to_json()), True, "")
                return
            try:
                data = json.loads(settings_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                fail(f"файл настроек не читается как JSON: {error}", as_json)
            if not isinstance(data, dict):
                fail("настройки формата — это JSON-объект", as_json)
            done = formats.set_audited(
                conn, found.id, found.code, formats.from_mapping(data), actor=cli_actor()
            )
    except (FormatError, RegistryError) as error:
        fail(str(error), as_json)
    emit(
        json.loads(done.after.to_json()),
        as_json,
        f"Формат реестра агента {agent} сохранён."
        if done.changed
        else f"Формат реестра агента {agent} не изменился: он уже такой.",
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
            found = registries.agent_for_registry(conn, agent)
            fmt = formats.load(conn, found.id)
        target = output or Path(outbound.filename(found, when, fmt))
        with target.open("wb") as out:
            count = outbound.write(db, found, when, fmt, out)
    except (RegistryError, OSError) as error:
        fail(str(error))
    finally:
        db.dispose()
    typer.echo(f"Наш реестр для {agent} за {when:%d.%m.%Y}: {count} платежей → {target}")


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
        typer.secho("День не закрыт: это черновик акта.", fg="yellow", err=True)


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
                            f"{outcome.agent}/{outcome.file}: отклонён — {outcome.error}",
                            fg="red",
                            err=True,
                        )
                    elif outcome.imported is not None:
                        done = outcome.imported
                        typer.echo(
                            f"{outcome.agent}/{outcome.file}: {done.business_date:%d.%m.%Y}, "
                            f"{done.lines} строк, расхождений "
                            f"{done.summary.discrepancy_count}"
                            + (" (уже был загружен)" if done.replayed else "")
                        )
            except SQLAlchemyError as error:  # the database is away: the files wait
                typer.secho(f"База данных недоступна, повторю: {error}", fg="red", err=True)
            if once:
                return
            clock.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        db.dispose()
