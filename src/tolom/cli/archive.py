"""`tolom archive`: old months of the request log and the outbox, to files and away."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tolom import archives
from tolom.cli.common import engine, fail, t, transaction
from tolom.db.partitions import Month, partitions
from tolom.settings import get_settings
from tolom.texts import N_

archive_app = typer.Typer(
    help="Monthly partitions of the request log and events: list, archive.",
    no_args_is_help=True,
)

_REFUSED = {
    "pending_deliveries": N_("cli.archive.pending"),
    "not_supported": N_("cli.archive.not_supported"),
}
_DONE = {True: N_("cli.archive.would"), False: N_("cli.archive.archived")}


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024 / 1024:.1f} MB"


@archive_app.command("list")
def list_partitions() -> None:
    """Every month of the request log, events and deliveries: rows and size on disk."""
    with transaction() as conn:
        found = partitions(conn)
    for p in found:
        month = str(p.month) if p.month else t("cli.archive.default")
        typer.echo(
            t("cli.archive.partition", name=p.name, month=month, rows=p.rows, size=_size(p.size))
        )


@archive_app.command("run")
def run(
    before: Annotated[
        str | None,
        typer.Option(help="Archive months before this one (YYYY-MM); default: the retention."),
    ] = None,
    to: Annotated[Path, typer.Option(help="Folder for the .csv.gz files and manifests.")] = Path(
        "var/archive"
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be archived; change nothing.")
    ] = False,
) -> None:
    """Export each old month to gzip CSV with a manifest, verify, then drop the month."""
    limit = None
    if before is not None:
        try:
            limit = Month.parse(before)
        except ValueError:
            fail(t("cli.archive.bad_month", text=repr(before)))
    settings = get_settings()
    retention = {
        "requests": settings.request_log_retention_months,
        "events": settings.events_retention_months,
    }
    db = engine()
    refused = False
    try:
        months = archives.due(db, retention, limit)
        if not months:
            typer.echo(t("cli.archive.none"))
        for family, month in months:
            try:
                done, refusal = archives.archive_month(db, family, month, to, dry_run=dry_run)
            except archives.ArchiveError as error:
                fail(str(error))
            if refusal is not None:
                refused = True
                key = _REFUSED[refusal.reason]
                typer.secho(t(key, month=refusal.month, count=refusal.count), err=True)
            for item in done:
                key = _DONE[dry_run]
                typer.echo(
                    t(key, table=item.table, month=item.month, rows=item.rows, file=item.file)
                )
    finally:
        db.dispose()
    if refused:
        raise typer.Exit(code=1)
