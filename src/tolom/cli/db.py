"""`tolom db`: the database schema, created or migrated, and the shipped rows."""

from __future__ import annotations

import typer

from tolom import installation
from tolom.cli.common import engine, t
from tolom.db import Engine

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _revision(db: Engine) -> str | None:
    """The schema's Alembic revision; None before the first migration."""
    from alembic.runtime.migration import MigrationContext  # only for this command

    with db.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema, then add the shipped services, products and accounts."""
    from tolom.db import migrate  # alembic and mako: only for this command

    db = engine()
    try:
        before = _revision(db)
        migrate.upgrade(db)
        after = _revision(db)
        with db.begin() as conn:
            installation.prepare(conn)
    finally:
        db.dispose()
    where = db.url.render_as_string(hide_password=True)
    # Say what happened: a first run must not read as if the schema had been there already.
    if before is None:
        typer.echo(t("cli.db.created", version=after, where=where))
    elif before != after:
        typer.echo(t("cli.db.upgraded", before=before, after=after, where=where))
    else:
        typer.echo(t("cli.db.current", version=after, where=where))
