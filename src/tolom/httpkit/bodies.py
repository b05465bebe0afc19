"""How much of a request body we read: every route has a cap, checked before a byte is read.

Without a cap, one unauthenticated client with a large body holds a worker's memory and its
event loop (a 100 MB POST stalled /health for seconds). The cap is applied twice: a
declared Content-Length above it is answered 413 at once, and a body that streams past it
(chunked, or lying about its length) is cut off at the cap and answered 413 too.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """The request body is longer than the route accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


def declared_length(scope: Scope) -> int | None:
    """The Content-Length a request declares; -1 if it is not a number (refused as too large:
    a request we cannot measure is not read)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body of `request`, refused (BodyTooLarge) before more than `limit` is read."""
    declared = declared_length(request.scope)
    if declared is not None and not 0 <= declared <= limit:
        raise BodyTooLarge(limit)
    content = bytearray()
    async for chunk in request.stream():
        content += chunk
        if len(content) > limit:
            raise BodyTooLarge(limit)
    return bytes(content)


class BodyLimit:
    """ASGI middleware: no route reads more of a body than `limit_of(scope)` allows.

    `too_large(scope, limit)` words the 413 in the route's own terms (a problem document
    for the JSON API, a page for the back office). A body that streams past the cap makes
    the app's next `receive()` fail; whatever the app answers after that is replaced by
    the 413.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit_of: Callable[[Scope], int],
        too_large: Callable[[Scope, int], Response],
    ) -> None:
        self.app = app
        self.limit_of = limit_of
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope)
        declared = declared_length(scope)
        if declared is not None and not 0 <= declared <= limit:
            await self.too_large(scope, limit)(scope, receive, send)
            return
        received = 0
        overflowed = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed
            if overflowed:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed:
                return  # the app's answer to a body it could not read: ours replaces it
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not overflowed:
                raise
        if overflowed and not started:
            await self.too_large(scope, limit)(scope, receive, send)
