"""The registry upload: the body is the agent's file itself, read after the caller is known
and never past the core's size cap (`httpkit.bodies.read_limited`), then imported and
matched by the core in a worker thread that stops an XLSX read if the caller leaves."""

from __future__ import annotations

import threading
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tolom.api.operator.common import (
    AUTH,
    RawBodyRoute,
    Writer,
    bad_input,
    date_of,
    replayed_headers,
    transaction,
)
from tolom.api.operator.reconciliation.refusals import (
    no_agent,
    registry_refused,
    sentence,
)
from tolom.api.operator.reconciliation.schemas import (
    DAY_PATTERN,
    AgentCode,
    RegistryImport,
)
from tolom.api.security import Caller
from tolom.backoffice.exports import XLSX_MEDIA_TYPE
from tolom.httpkit.bodies import BodyTooLarge, read_limited
from tolom.httpkit.database import retry_later_when_unavailable
from tolom.httpkit.disconnect import run_while_connected
from tolom.httpkit.downloads import FILE_SCHEMA
from tolom.httpkit.problems import ProblemError, responses
from tolom.reconciliation import queries, registries, shapes
from tolom.reconciliation.days import NotFound
from tolom.reconciliation.parsing import RegistryError
from tolom.reconciliation.registries import DayClosed, Imported
from tolom.reconciliation.xlsx import cancelled_when

# The upload reads its body itself, after the caller is known, with a size cap; tagged by
# the router that includes it.
router = APIRouter(route_class=RawBodyRoute)

# The largest registry file taken: the core's own limit (a million lines is about 50 MB).
MAX_UPLOAD_BYTES = registries.MAX_FILE_BYTES

_UPLOAD_BODY = {
    "required": True,
    "description": "The registry file as it is, in the agent's format (`GET "
    "/agents/{code}/registry-format`). Any Content-Type; these are the usual ones.",
    "content": {
        "text/plain": {
            "schema": {"type": "string"},
            "example": "101\t21.11.2026\t09:00:00\t01904202310427\t100.00\nTotal: 1 100.00\n",
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": FILE_SCHEMA},
        XLSX_MEDIA_TYPE: {"schema": FILE_SCHEMA},
    },
}


def _import(
    caller: Caller,
    code: str,
    content: bytes,
    name: str,
    when: date | None,
    gone: threading.Event,
) -> Imported:
    with transaction(caller.runtime) as conn:
        try:
            queries.agent(conn, code)
        except NotFound:
            raise no_agent(code) from None
    try:
        # An XLSX parse stops if the caller leaves.
        with retry_later_when_unavailable(), cancelled_when(gone):
            return registries.import_registry(
                caller.runtime.engine,
                code,
                content,
                file_name=name,
                actor=caller.actor,
                day=when,
                address=caller.address,
            )
    except DayClosed as error:
        raise ProblemError("day_closed", sentence(str(error))) from None
    except RegistryError as error:
        raise registry_refused(error) from None


@router.post(
    "/agents/{code}/registries",
    status_code=201,
    summary="Upload the agent's registry of a day",
    description="The body is the registry file itself (text, CSV or XLSX, as the agent's "
    "format says), at most 256 MB. It is read, stored and matched against our payments of "
    "the agent's business day at once, in one transaction: 201 with the summary. The same "
    "file again, while it is the day's registry, changes nothing: 200 with "
    "`Idempotent-Replayed: true`. Another file for the day supersedes the current one (the "
    "old one is kept as history) and is matched afresh. A bad file is refused whole with "
    "422 `registry_invalid`, whose `errors` name the line and the field; nothing is stored. "
    "A closed day refuses new files (409 `day_closed`) until an administrator reopens it. "
    "Audited as `registry.import`.",
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        200: {
            "model": RegistryImport,
            "description": "This very file is the day's registry already; nothing changed.",
            "headers": replayed_headers(),
        },
        **responses(
            *AUTH,
            "invalid_request",
            "agent_not_found",
            "day_closed",
            "request_too_large",
            "registry_invalid",
        ),
    },
)
async def upload_registry(
    request: Request,
    code: AgentCode,
    caller: Writer,
    response: Response,
    day: Annotated[
        str | None,
        Query(
            pattern=DAY_PATTERN,
            description="The business day it lists, YYYY-MM-DD; every line must be on it. "
            "Default: the one day all its lines are on.",
            examples=["2026-11-21"],
            json_schema_extra={"format": "date"},
        ),
    ] = None,
    file_name: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The file's name, kept with the registry and shown in the act.",
            examples=["optima-2026-11-21.txt"],
        ),
    ] = None,
) -> RegistryImport:
    when = date_of(day, "day")
    name = (file_name or "").strip()
    if not name.isprintable():
        raise bad_input(("file_name", "имя файла: только печатные символы"))
    try:
        content = await read_limited(request, MAX_UPLOAD_BYTES)
    except BodyTooLarge:
        raise ProblemError(
            "request_too_large", sentence(registries.too_large(MAX_UPLOAD_BYTES))
        ) from None
    done = await run_while_connected(
        request, lambda gone: _import(caller, code, content, name or "registry", when, gone)
    )
    if done.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return RegistryImport.model_validate(shapes.imported_fields(done))
