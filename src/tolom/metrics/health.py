"""Readiness: the database answers and its schema is the one this code expects.

Alembic is imported at the first /ready or scrape, not when a server process starts
(docs/operations.md "Start-up cost")."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine


@dataclass(frozen=True, slots=True)
class Readiness:
    database: str  # ok | unreachable
    migrations: str  # current | behind | unknown
    current: tuple[str, ...]
    expected: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return self.database == "ok" and self.migrations == "current"


@lru_cache(maxsize=1)
def expected_heads() -> tuple[str, ...]:
    """The newest revisions of the packaged migrations (read from disk once)."""
    from alembic.script import ScriptDirectory

    from tolom.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    return tuple(sorted(script.get_heads()))


def readiness(engine: Engine) -> Readiness:
    """One connection, one read of `alembic_version`."""
    from alembic.runtime.migration import MigrationContext

    expected = expected_heads()
    try:
        with engine.connect() as conn:
            current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    except Exception:
        return Readiness("unreachable", "unknown", (), expected)
    return Readiness("ok", "current" if current == expected else "behind", current, expected)
