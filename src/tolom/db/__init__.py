"""Tables, the engine and the migrations.

The names adapters need to hold a unit of work and to tell a database failure, so that
pages, API routes and commands import no SQLAlchemy: `Connection` (one transaction, as
`engine.begin()` hands it out), `Engine`, and `DatabaseError` (whatever the database layer
raises; `tolom.db.engine.is_temporary` says whether trying again later may help).
"""

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError as DatabaseError

__all__ = ["Connection", "DatabaseError", "Engine"]
