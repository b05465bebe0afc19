"""Browser-test fixtures: a live Tolom server per database backend, one Chromium for the
browser tests, a fresh browser context per test, and screenshots kept as test artefacts.

The server is real (uvicorn on 127.0.0.1 in a thread of this process, `create_app` with
settings of its own) on a database of its own: a migrated SQLite file and, when
TOLOM_TEST_DATABASE_URL is set, a PostgreSQL schema `<TOLOM_TEST_SCHEMA>_browser`. The
browser is Debian's Chromium (`/usr/bin/chromium`); Playwright's own browser download does
not work here and is never used. A missing Chromium fails the tests: CI must prove them.

Screenshots go to `test-artifacts/screenshots/<test>/NN-step.png` at the repository root
(git-ignored): one per `shot("step")` in a journey, and `NN-failure.png` when a test fails
(with a Playwright trace in `test-artifacts/traces/<test>.zip` to replay it).
"""

from __future__ import annotations

import itertools
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Request, Response, Route, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.conftest import BACKENDS, PG_SCHEMA, PG_URL
from tolom import installation
from tolom.app import create_app
from tolom.backoffice import users
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.demo import DEMO_USERS, fill_demo
from tolom.ledger import accounts as ledger_accounts
from tolom.ledger.verify import verify_ledger
from tolom.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
# The flags this machine kind was proven with. Playwright adds --headless and --no-sandbox
# itself and gives every launch a new empty profile (it refuses --user-data-dir in args).
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
    "`apt-get install -y chromium` (as root; `scripts/dev test` does it when it can). "
    "Do not run `playwright install`: its download does not work here."
)
SCHEMA = f"{PG_SCHEMA}_browser"
SERVER_START_SECONDS = 60.0  # a generous bound for a loaded machine, not a measurement
# Auto-waiting assertions wait up to this long; a passing test never waits it out.
expect.set_options(timeout=20_000)


@dataclass(frozen=True, slots=True)
class Account:
    """A back-office user the tests know the password of."""

    username: str
    password: str
    display_name: str
    role: str
    language: str = "ru"


@dataclass(slots=True)
class LiveServer:
    """A running Tolom: its address, its database and the users it knows."""

    url: str
    backend: str
    engine: Engine  # the test's own connection to the server's database, for set-up
    accounts: dict[str, Account]  # the demo's user of each role: accounts["operator"]
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def new_user(self, role: str = "operator", *, language: str = "ru") -> Account:
        """A user of its own for a journey that changes the user (language, failed logins),
        so that journeys never depend on one another's order."""
        number = next(self._numbers)
        account = Account(
            f"{role}-{number}", f"{role}-pass-{number:04d}", f"Тест {role} {number}", role, language
        )
        with self.engine.begin() as conn:
            users.create(
                conn,
                username=account.username,
                display_name=account.display_name,
                role=role,
                password=account.password,
                language=language,
            )
        return account


class _Uvicorn(uvicorn.Server):
    """uvicorn that says when its start-up is over (successful or not)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_over.set()


def _seed(database_url: str) -> tuple[Engine, dict[str, Account]]:
    """Migrate, prepare and add the demo data, whose users (one per role, created with
    `users.create`) the tests log in as."""
    ledger_accounts._system_cache.clear()  # ids of a fresh database
    engine = make_engine(Settings(database_url=database_url), pool_size=2)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        installation.prepare(conn)
        demo = fill_demo(conn, validity_days=30)
        accounts = {
            role: Account(role, password, DEMO_USERS[role], role)
            for role, password in demo.users.items()
        }
    return engine, accounts


def _postgres(action: str) -> None:
    """Create (drop first) or drop the browser tests' own schema."""
    assert PG_URL is not None
    plain = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            if action == "create":
                conn.execute(f"CREATE SCHEMA {SCHEMA}")
    except psycopg.OperationalError as error:
        pytest.fail(f"TOLOM_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {error}")


def _database_url(backend: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'browser.sqlite3'}"
    assert PG_URL is not None
    _postgres("create")
    scoped = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return scoped.render_as_string(hide_password=False)


@pytest.fixture(scope="package", params=BACKENDS)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real Tolom server on 127.0.0.1 and a free port, on a fresh seeded database of each
    backend; stopped (and its ledger verified) after the browser tests."""
    backend: str = request.param
    database_url = _database_url(backend, tmp_path_factory.mktemp("browser"))
    engine, accounts = _seed(database_url)
    # The socket is bound and listening before the server starts, so the port is ours and
    # no request can arrive before it is accepted.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    # Its own address as the public one: receipt links and the wallet simulator's OSMP
    # requests (`web.simulator`) go to this server.
    settings = Settings(
        database_url=database_url,
        agent_cache_seconds=0,
        session_cookie_secure=False,
        public_base_url=f"http://127.0.0.1:{port}",
    )
    config = uvicorn.Config(
        create_app(settings=settings),
        lifespan="on",
        log_config=None,  # leave the test process's logging alone
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _Uvicorn(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"tolom-live-{backend}", daemon=True
    )
    thread.start()
    try:
        if not server.startup_over.wait(SERVER_START_SECONDS) or not server.started:
            pytest.fail(f"the live Tolom server on {backend} did not start", pytrace=False)
        yield LiveServer(f"http://127.0.0.1:{port}", backend, engine, accounts)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        try:
            with engine.connect() as conn:
                problems = verify_ledger(conn)
            assert problems == [], f"ledger broken after the browser tests: {problems}"
        finally:
            engine.dispose()
            if backend == "postgresql":
                _postgres("drop")
    assert not thread.is_alive(), "the live server did not stop"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for all browser tests (package scope: it is closed before the
    rest of the suite runs, so Playwright's event loop never meets other tests)."""
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so that fixtures know whether the test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


class Shots:
    """`shot("step")` saves a full-page screenshot as NN-step.png in the test's folder."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.taken: list[Path] = []

    def __call__(self, step: str, *, full_page: bool = True) -> Path:
        name = re.sub(r"[^\w-]+", "-", step).strip("-")
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=full_page)
        self.taken.append(path)
        return path


_SHOTS = pytest.StashKey[Shots]()


def _artifact_name(node: pytest.Item) -> str:
    """`test_login[sqlite]` → `test_login-sqlite`: a plain folder name."""
    return re.sub(r"[^\w.-]+", "-", node.name).strip("-")


@pytest.fixture
def page(
    browser: Browser, live_server: LiveServer, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A page in a new browser context (no cookies), Russian locale, Bishkek time.

    The test fails if a page throws a JavaScript error, the server answers 5xx, or a page
    reaches for anything outside the live server (the back office must work offline)."""
    root = request.config.rootpath / "test-artifacts"
    name = _artifact_name(request.node)
    folder = root / "screenshots" / name
    trace = root / "traces" / f"{name}.zip"
    shutil.rmtree(folder, ignore_errors=True)  # only this run's artefacts
    trace.unlink(missing_ok=True)
    folder.mkdir(parents=True)
    context = browser.new_context(
        base_url=live_server.url,
        locale="ru-RU",
        timezone_id="Asia/Bishkek",
        viewport={"width": 1280, "height": 800},
    )
    context.tracing.start(screenshots=True, snapshots=True)
    problems: list[str] = []

    def refuse(route: Route, req: Request) -> None:
        problems.append(f"request outside the server: {req.method} {req.url}")
        route.abort()

    context.route(re.compile(rf"^(?!{re.escape(live_server.url)}/)[a-z]+://"), refuse)
    page = context.new_page()

    def server_error(response: Response) -> None:
        if response.status >= 500:
            problems.append(
                f"server error {response.status}: {response.request.method} {response.url}"
            )

    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
    page.on("response", server_error)
    shots = request.node.stash[_SHOTS] = Shots(page, folder)
    yield page
    reports = request.node.stash.get(_REPORTS, {})
    if problems or any(r.failed for r in reports.values()):
        try:
            shots("failure")
        except PlaywrightError as error:  # a crashed page: the trace and report still help
            problems.append(f"no failure screenshot: {error}")
        trace.parent.mkdir(parents=True, exist_ok=True)
        context.tracing.stop(path=trace)
    else:
        context.tracing.stop()
    context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Shots:
    """Screenshots of the journey's steps: `shot("dashboard")`."""
    shots: Shots = request.node.stash[_SHOTS]
    return shots
