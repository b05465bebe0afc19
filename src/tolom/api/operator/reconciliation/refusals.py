"""The core's refusals in the reconciliation API's terms: which problem each one is."""

from __future__ import annotations

from datetime import date

from tolom.api.operator.common import date_of
from tolom.httpkit.problems import FieldError, ProblemError
from tolom.reconciliation.days import NotFound, ReconciliationError
from tolom.reconciliation.parsing import RegistryError


def sentence(message: str) -> str:
    """A core message (lower case, as it is embedded elsewhere) as a problem's detail."""
    return message[:1].upper() + message[1:]


def no_agent(code: str) -> ProblemError:
    return ProblemError("agent_not_found", f"Агент «{code}» не найден")


def refused(error: ReconciliationError, code: str) -> ProblemError:
    """The agent or the discrepancy not found (404 `code`), anything else a 409 with the
    core's message."""
    if isinstance(error, NotFound):
        return ProblemError(code, sentence(str(error)))
    return ProblemError("reconciliation_refused", sentence(str(error)))


def registry_refused(error: RegistryError) -> ProblemError:
    """A bad file as `registry_invalid`, naming the line and the field when known."""
    return ProblemError(
        "registry_invalid",
        sentence(str(error)),
        errors=[FieldError(field=error.field or "file", message=error.reason, line=error.line)],
    )


def day_of(text: str, field: str = "day") -> date:
    """A day given as YYYY-MM-DD; one that does not exist is a 422 naming the field."""
    when = date_of(text, field)
    assert when is not None
    return when
