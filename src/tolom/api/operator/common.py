"""What every operator API route shares: callers by scope, transactions, input helpers, pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tolom.api.security import Caller, authenticate, bearer, require
from tolom.db import Connection, DatabaseError
from tolom.db.engine import is_temporary
from tolom.fields import AMOUNT_MESSAGE, DAY_MESSAGE, DAY_PATTERN
from tolom.httpkit.ids import id_from
from tolom.httpkit.problems import FieldError, ProblemError
from tolom.money import MalformedAmount, parse_amount
from tolom.runtime import Runtime
from tolom.timestamps import as_utc

# A key with this scope (or one that implies it) may call the route.
Reader = Annotated[Caller, Depends(require("read"))]
Writer = Annotated[Caller, Depends(require("write"))]
Admin = Annotated[Caller, Depends(require("admin"))]

# Problems any authenticated route may answer, besides its own.
AUTH = ("unauthenticated", "invalid_api_key", "insufficient_scope", "temporarily_unavailable")


def _in_utc(moment: datetime) -> datetime:
    return as_utc(moment).astimezone(UTC)


# A moment in an answer: always UTC, whatever the database session's time zone.
UtcTime = Annotated[datetime, AfterValidator(_in_utc)]

MAX_PAGE = 500
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page (1–500).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=32,
        description="`next_cursor` of the previous page; omit for the first page.",
        examples=["1042"],
    ),
]
AMOUNT_EXAMPLE = "500.00"
AMOUNT_DESCRIPTION = "Som with a dot and at most two decimals, as a string."


class OperatorRoute(APIRoute):
    """A route that knows its caller before it reads a byte of the body, and whose
    unreadable body is a 422 problem like any other bad input.

    FastAPI reads a route's body before it runs the route's dependencies: left alone, a
    caller without a key could make us read (up to the body cap) and scan a large body.
    Here the key is checked first (401 without reading), then the body is read — never
    more than `max_api_body_bytes`, see `tolom.httpkit.bodies` — and scanned for U+0000
    off the event loop. FastAPI answers a body it cannot even decode (not UTF-8, say)
    with a bare HTTPException(400), which is not bad input as the rest of this API
    reports it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            runtime: Runtime = request.app.state.runtime
            credentials = await bearer(request)
            token = credentials.credentials if credentials else None
            request.state.api_key = await run_in_threadpool(authenticate, runtime, token)
            body = await request.body()
            # Refused by `require`, after the scope: a reader's NUL is still a 403 first.
            if len(body) <= _SCAN_INLINE:
                request.state.nul_in = _nul_in(request.url.path, request.url.query, body)
            else:
                request.state.nul_in = await run_in_threadpool(
                    _nul_in, request.url.path, request.url.query, body
                )
            try:
                return await handler(request)
            except HTTPException as error:
                if error.status_code != 400:
                    raise
                raise bad_input(("body", "тело запроса не читается: нужен JSON в UTF-8")) from None

        return route


class RawBodyRoute(APIRoute):
    """A route that reads its request body itself, as a file (a registry upload).

    Unlike `OperatorRoute` it does not read the body before the caller is known (the
    handler reads it with a size cap, after authentication) and does not refuse U+0000 in
    it (a binary file holds it; the file's own reader judges it). U+0000 in the path or the
    query is refused as on every route.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            request.state.nul_in = _nul_in(request.url.path, request.url.query, b"")
            return await handler(request)

        return route


# A body this short is scanned for U+0000 at once; a longer one in a worker thread.
_SCAN_INLINE = 16 * 1024

# U+0000 in a JSON string: `\u0000` after an even number of backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _nul_in(path: str, query: str, body: bytes) -> str | None:
    """Where a request carries U+0000, if it does. PostgreSQL text cannot hold it, and no
    field of ours needs it: refusing it here answers the same on every database."""
    if "\x00" in path or "%00" in path:
        return "path"
    if "%00" in query or "\x00" in query:
        return "query"
    if b"\x00" in body or _JSON_NUL.search(body):
        return "body"
    return None


@contextmanager
def transaction(runtime: Runtime) -> Iterator[Connection]:
    """One database transaction for one request; a ProblemError inside rolls it back.

    A database that is out of reach, locked or timing out is answered "temporarily
    unavailable, retry", never as our fault or the caller's.
    """
    try:
        with runtime.engine.begin() as conn:
            yield conn
    except DatabaseError as error:
        if is_temporary(error):
            raise ProblemError("temporarily_unavailable") from error
        raise


def bad_input(*errors: tuple[str, str]) -> ProblemError:
    """A 422 `invalid_request` naming each (field, Russian message)."""
    found = [FieldError(field=field, message=message) for field, message in errors]
    summary = "; ".join(f"{e.field}: {e.message}" for e in found)
    return ProblemError("invalid_request", f"Неверный запрос: {summary}", errors=found)


def core_message(error: ValueError, default_field: str) -> tuple[str, str]:
    """A core error "field: message" split into (field, message), for a 422's `errors`."""
    text = str(error)
    field, separator, message = text.partition(": ")
    if separator and field.isidentifier():
        return field, message
    return default_field, text


def amount_of(text: str, field: str) -> int:
    """An amount string ("500", "500.5", "500.50") in tyiyn, or a 422 naming the field."""
    try:
        return parse_amount(text)
    except MalformedAmount:
        raise bad_input((field, AMOUNT_MESSAGE)) from None


def cursor_of(text: str | None) -> int | None:
    """The id a cursor stands for; a cursor we did not issue is a 422."""
    if text is None:
        return None
    found = id_from(text)
    if found is None:
        raise bad_input(("cursor", "неверный курсор: передайте next_cursor предыдущей страницы"))
    return found


def date_query(description: str) -> Any:
    """A YYYY-MM-DD query parameter, read strictly (`date_of`): pydantic alone would also
    take "0" or "2026-11-21T00:00:00" for a date."""
    return Query(
        pattern=DAY_PATTERN,
        description=description,
        examples=["2026-11-21"],
        json_schema_extra={"format": "date"},
    )


def date_of(text: str | None, field: str) -> date | None:
    """A YYYY-MM-DD text as a date; a day that does not exist is a 422 naming the field."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise bad_input((field, DAY_MESSAGE)) from None


def id_of(text: str, field: str = "id") -> int:
    """A numeric id from the path (at most 18 digits: it fits a BIGINT)."""
    found = id_from(text)
    if found is None:
        raise bad_input((field, "нужен номер из цифр"))
    return found


class Page(BaseModel):
    """Fields every page of a list has besides its items."""

    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.",
        examples=["1042"],
    )


def replayed_headers() -> dict[str, Any]:
    """OpenAPI description of the header a repeated, idempotent request is answered with."""
    return {
        "Idempotent-Replayed": {
            "description": "`true` when this answers a repeat of an earlier request.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
