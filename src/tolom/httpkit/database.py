"""The database's "retry later" as an HTTP answer, for routes that call a core use case
which runs its own transactions (an import, a resolution): out of reach, locked or timing
out is 503 `temporarily_unavailable`, never our fault or the caller's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError

from tolom import metrics
from tolom.db.engine import is_temporary
from tolom.httpkit.problems import ProblemError


@contextmanager
def retry_later_when_unavailable() -> Iterator[None]:
    """Run the block; a temporary database failure in it becomes the 503 problem."""
    try:
        yield
    except SQLAlchemyError as error:
        if is_temporary(error):
            metrics.database_unavailable("http")
            raise ProblemError("temporarily_unavailable") from error
        raise
