"""Schema migrations (Alembic), driven from code so `tolom db upgrade` needs no ini file."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest by default).

    On PostgreSQL without the application's statement timeout (for this transaction only):
    building an index on a big table takes longer (18 s for 11 million events), and a
    migration cut off half-way helps nobody. The lock timeout stays, so a migration waiting
    behind live traffic gives up instead of stalling the pays queued behind it."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the difference between `schema.py` and the database."""
    with engine.connect() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
