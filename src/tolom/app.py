"""The web application: agent gateways and health, wired to one Runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from tolom import __version__
from tolom.gateway import osmp
from tolom.runtime import Runtime
from tolom.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the ASGI app. Pass a runtime to share an engine (tests), or settings to make one."""
    own_runtime = runtime is None
    runtime = runtime or Runtime.start(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if own_runtime:
            runtime.close()

    app = FastAPI(
        title="Tolom",
        version=__version__,
        description="Payment acceptance for SOCHI balance top-ups and e-signature invoices.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_route(
        "/gateway/osmp/{service:str}", _osmp_route, methods=["GET", "POST"], include_in_schema=False
    )

    @app.get("/health", tags=["operations"], summary="Liveness and database reachability")
    async def health() -> JSONResponse:
        try:
            await run_in_threadpool(_ping, runtime)
        except Exception as error:
            log.warning("health: database unreachable: %s", error.__class__.__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok", "version": __version__})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return PlainTextResponse("Внутренняя ошибка / internal error", status_code=500)

    return app


async def _osmp_route(request: Request) -> Response:
    if request.path_params["service"] not in ("sochi", "eds"):
        return PlainTextResponse("Not Found", status_code=404)
    return await osmp.endpoint(request)


def _ping(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
