"""The web application: agent gateways, the JSON APIs, their documentation and health."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from tolom import __version__, metrics
from tolom.addresses import in_networks
from tolom.api import operator
from tolom.gateway import osmp, rest
from tolom.httpkit.bodies import BodyLimit
from tolom.httpkit.clients import request_address
from tolom.httpkit.headers import docs_policy, with_security_headers
from tolom.httpkit.problems import Problem, ProblemError, invalid, make_problem, problem_response
from tolom.metrics.health import readiness
from tolom.metrics.state import StateCollector
from tolom.reconciliation.registries import MAX_FILE_BYTES
from tolom.runtime import Runtime
from tolom.settings import Settings, get_settings
from tolom.site import router as site_router
from tolom.supervision import start_parent_watchdog
from tolom.web import router as web_router
from tolom.web.reconciliation import MAX_UPLOAD

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """
Payment acceptance for SOCHI balance top-ups and e-signature invoices.

* **Agent API** (`/api/v1/agent/...`): check, pay, status and cancel, every request signed
  with HMAC-SHA256 (`AgentSignature`); see `docs/agents-rest.md`.
* **Operator and service API** (`/api/v1/...`): bearer API keys with scopes read, write,
  admin (`ApiKey`); see `docs/api.md`.
* The OSMP gateway (`/gateway/osmp/{sochi,eds}`) speaks XML and is described in
  `docs/agents-osmp.md`.

Amounts are strings in som with two decimals (`"500.00"`), never JSON numbers. Every error
is an RFC 9457 problem (`application/problem+json`) with a stable `code`.
"""

log = logging.getLogger(__name__)


Handler = Callable[[Request], Awaitable[Response]]


class TolomApp(FastAPI):
    """FastAPI, with a lean road in front for the agent gateways.

    Agents' requests are most of the traffic and want the least work: they are matched
    by their exact paths here and handed to their adapters, without the router's walk
    over every back-office route and without the middleware stack. Everything else —
    and a gateway path with a method it does not take — goes through FastAPI as usual.
    The REST routes stay registered with FastAPI too, for the OpenAPI document.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = with_security_headers(scope, send, self.state.runtime.settings.https)
            found = _gateway_route(scope["method"], scope["path"])
            if found is not None:
                handler, path_params = found
                scope["app"] = self
                scope["path_params"] = path_params
                try:
                    response = await handler(Request(scope, receive))
                except Exception:  # the agent gets a plain 500, never our traceback
                    log.exception("unhandled error in a gateway request")
                    response = PlainTextResponse(
                        "Внутренняя ошибка / internal error", status_code=500
                    )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


_OSMP_PREFIX = "/gateway/osmp/"
_REST_PREFIX = "/api/v1/agent/"


def _gateway_route(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
    """The adapter for an agent gateway path (and its path parameters), or None."""
    if path.startswith(_OSMP_PREFIX):
        service = path[len(_OSMP_PREFIX) :]
        if service in ("sochi", "eds"):
            return osmp.endpoint, {"service": service}
        return None
    if not path.startswith(_REST_PREFIX) or method not in ("GET", "POST"):
        return None
    rest_path = path[len(_REST_PREFIX) :]
    if method == "POST" and rest_path == "payments":
        return rest.pay, {}
    if method == "POST" and rest_path == "check":
        return rest.check, {}
    parts = rest_path.split("/")
    if len(parts) == 2 and parts[0] == "payments" and method == "GET" and parts[1]:
        return rest.payment_status, {"txn_id": parts[1]}
    if len(parts) == 3 and parts[0] == "payments" and parts[2] == "cancel" and parts[1]:
        return (rest.cancel_payment, {"txn_id": parts[1]}) if method == "POST" else None
    return None


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the ASGI app. Pass a runtime to share an engine (tests), or settings to make one."""
    own_runtime = runtime is None
    runtime = runtime or Runtime.start(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if own_runtime:  # a worker of `serve --workers N` stops if its supervisor is killed
            start_parent_watchdog()
        worker = (
            _start_worker(runtime) if own_runtime and runtime.settings.worker_in_server else None
        )
        if own_runtime:  # records spooled during an outage, by this or a crashed process
            threading.Thread(
                target=runtime.spool.drain, args=(runtime.engine,), daemon=True
            ).start()
        yield
        metrics.process_exiting()
        _log_group_commit(runtime)
        if worker is not None:
            stop, thread = worker
            stop.set()
            thread.join(timeout=runtime.settings.webhook_timeout_seconds + 5)
        if own_runtime:
            runtime.close()

    app = TolomApp(
        title="Tolom",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from our own copy of Swagger UI, not a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    if runtime.settings.metrics_enabled:
        metrics.instrument_pool(runtime.engine)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Tolom API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )
        page.headers["Content-Security-Policy"] = docs_policy(bytes(page.body).decode())
        page.headers["X-Content-Type-Options"] = "nosniff"
        return page

    app.include_router(rest.router)
    app.include_router(operator.router)
    app.include_router(site_router)  # the customer's pages: /r/{token} …
    app.include_router(web_router)  # the back-office pages
    _answer_api_errors_as_problems(app)
    app.add_middleware(
        BodyLimit, limit_of=_body_limits(runtime.settings), too_large=_body_too_large
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_route(
        "/gateway/osmp/{service:str}", _osmp_route, methods=["GET", "POST"], include_in_schema=False
    )

    _operations_routes(app, runtime)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        if _is_api(request):
            return problem_response(make_problem("internal_error"))
        return PlainTextResponse("Внутренняя ошибка / internal error", status_code=500)

    return app


# The two routes that take files: a registry through the API, or through the upload page
# (a multipart form: the file plus a few fields).
_API_REGISTRY_UPLOAD = re.compile(r"/api/v1/agents/[^/]+/registries")
_PAGE_REGISTRY_UPLOAD = "/reconciliation/upload"
_MULTIPART_FIELDS = 64 * 1024


def _body_limits(settings: Settings) -> Callable[[Scope], int]:
    """How large a body each route takes: every route has a cap (see httpkit.bodies)."""

    def limit_of(scope: Scope) -> int:
        path: str = scope["path"]
        if path.startswith("/api/"):
            if _API_REGISTRY_UPLOAD.fullmatch(path):
                return MAX_FILE_BYTES
            return settings.max_api_body_bytes
        if path == _PAGE_REGISTRY_UPLOAD:
            return MAX_UPLOAD + _MULTIPART_FIELDS
        return settings.max_form_bytes

    return limit_of


def _body_too_large(scope: Scope, limit: int) -> Response:
    """413 in the route's own terms: a problem document under /api/, plain text elsewhere."""
    size = f"{limit // 1024 // 1024} МБ" if limit >= 1024 * 1024 else f"{limit // 1024} КБ"
    if scope["path"].startswith("/api/"):
        problem = make_problem("request_too_large", f"Тело запроса больше {size}")
        return problem_response(problem, {"Connection": "close"})
    return PlainTextResponse(
        f"Слишком большой запрос: не больше {size}",
        status_code=413,
        headers={"Connection": "close"},
    )


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _answer_api_errors_as_problems(app: FastAPI) -> None:
    """Every error under /api/ is a problem document; other paths keep Starlette's answers."""

    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, error: ProblemError) -> Response:
        return problem_response(error.problem, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> Response:
        return problem_response(invalid(list(error.errors())).problem)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> Response:
        if not _is_api(request):
            return PlainTextResponse(str(error.detail), error.status_code, headers=error.headers)
        if error.status_code == 405:
            return problem_response(make_problem("method_not_allowed"), dict(error.headers or {}))
        if error.status_code == 400:  # e.g. a body FastAPI cannot even decode
            return problem_response(make_problem("invalid_request", "Тело запроса не читается"))
        return problem_response(make_problem("not_found", "Нет такого адреса API"))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus what it cannot infer: the problem and request-body schemas
    and the HMAC security scheme."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    models: list[type[BaseModel]] = [Problem, *rest.REQUEST_MODELS]
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    components.setdefault("securitySchemes", {})["AgentSignature"] = rest.SECURITY_SCHEME
    app.openapi_schema = document
    return document


async def _osmp_route(request: Request) -> Response:
    if request.path_params["service"] not in ("sochi", "eds"):
        return PlainTextResponse("Not Found", status_code=404)
    return await osmp.endpoint(request)


def _start_worker(runtime: Runtime) -> tuple[threading.Event, threading.Thread]:
    """The delivery worker as a thread of this server process (`tolom serve --with-worker`)."""
    from tolom import companions
    from tolom.billing.scheduled import JOBS
    from tolom.events.worker import Worker
    from tolom.payments import sandbox

    stop = threading.Event()
    jobs = (*JOBS, sandbox.nightly_job)
    worker = Worker(runtime.settings, runtime.engine, stop=stop, jobs=jobs)

    def run() -> None:  # with its heartbeat row and, if configured, the probe and autopays
        with companions.accompany(runtime.settings, runtime.engine, stop):
            worker.run()

    thread = threading.Thread(target=run, name="tolom-worker", daemon=True)
    thread.start()
    log.info("delivery worker started inside the server process")
    return stop, thread


def _log_group_commit(runtime: Runtime) -> None:
    """How the gateway's transactions were shared, for the operator and the benchmark."""
    sizes: Counter[int] = Counter()
    for lanes in runtime.group_commits.values():
        sizes.update(lanes.sizes)
    if sizes:
        transactions = sum(sizes.values())
        calls = sum(size * count for size, count in sizes.items())
        log.info(
            "group commit: %d requests in %d transactions (mean %.2f); sizes %s",
            calls,
            transactions,
            calls / transactions,
            " ".join(f"{size}x{count}" for size, count in sorted(sizes.items())),
            extra={"batch_sizes": dict(sorted(sizes.items()))},
        )


def _operations_routes(app: FastAPI, runtime: Runtime) -> None:
    """/health, /ready and /metrics (docs/operations.md "Metrics and health")."""
    state = StateCollector(runtime.engine, runtime.settings.reconciliation_deadline_days)

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health() -> JSONResponse:
        """Alive, whatever the database does: a supervisor restarts a process that stops
        answering, and restarting every server because the database is away helps nobody.
        Whether this server should take traffic is `/ready`."""
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Readiness: the database answers and its migrations are current",
    )
    async def ready() -> JSONResponse:
        found = await run_in_threadpool(readiness, runtime.engine)
        body = {
            "status": "ok" if found.ready else "unavailable",
            "database": found.database,
            "migrations": found.migrations,
            "revision": list(found.current),
            "expected_revision": list(found.expected),
            "version": __version__,
        }
        if not found.ready:
            log.warning("ready: database %s, migrations %s", found.database, found.migrations)
        return JSONResponse(body, status_code=200 if found.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        settings = runtime.settings
        peer = request_address(request, settings.trusted_proxies)
        if not in_networks(peer, settings.metrics_allowed_networks):
            return PlainTextResponse("Forbidden: see TOLOM_METRICS_ALLOWED_NETWORKS", 403)
        body = await run_in_threadpool(metrics.exposition, (state,))
        return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)
