"""Back-office login under attack: guessing must not starve the gateways, throttling holds
across server processes, and no failed answer tells a locked, unknown or mistyped account
apart (issue 13).

The tests drive the real login page over ASGI. Failed logins ask for a delay; the app's
`web_options.sleep` records it instead of waiting. Client addresses come from the test
client's `client=(host, port)`.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from tests.factories import Gateway, add_customer
from tolom.app import create_app
from tolom.backoffice import passwords, users
from tolom.db.engine import make_engine
from tolom.db.schema import login_throttle
from tolom.runtime import Runtime
from tolom.settings import Settings
from tolom.web import WebOptions

PASSWORD = "верный-пароль-123"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')
_ERROR = re.compile(r'<p role="alert" id="login-error">(.*?)</p>', re.S)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    """One server process's app (its own engine), its recorded delays and its clock."""

    app: FastAPI
    engine: Engine
    clock: Clock
    sleeps: list[float]

    def browser(self, host: str = "198.51.100.7") -> TestClient:
        return TestClient(self.app, follow_redirects=False, client=(host, 40000))

    def log_in(self, username: str, password: str, host: str = "198.51.100.7") -> Any:
        browser = self.browser(host)
        form = browser.get("/login")
        assert form.status_code == 200, form.text
        token = _CSRF.search(form.text)
        assert token is not None
        return browser.post(
            "/login",
            data={"csrf": token.group(1), "username": username, "password": password},
        )


def make_site(
    settings: Settings, engine: Engine, clock: Clock | None = None, **changes: Any
) -> Site:
    runtime = Runtime.on(settings.model_copy(update=changes), engine)
    app = create_app(runtime=runtime)
    clock, sleeps = clock or Clock(), []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    app.state.web_options = WebOptions(sleep=sleep, clock=clock)
    return Site(app, engine, clock, sleeps)


def add_user(engine: Engine, username: str = "aida", role: str = "operator") -> users.User:
    with engine.begin() as conn:
        return users.create(
            conn, username=username, display_name="Аида", role=role, password=PASSWORD
        )


def error_of(answer: Any) -> str | None:
    found = _ERROR.search(answer.text)
    return found.group(1) if found else None


def signed_in(answer: Any) -> bool:
    return answer.status_code == 303 and any(
        line.startswith("tolom_session=") and not line.startswith('tolom_session="";')
        for line in answer.headers.get_list("set-cookie")
    )


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Site:
    add_user(engine)
    return make_site(settings, engine)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The hash of every argon2 verify that runs (the real verify runs too)."""
    seen: list[Any] = []
    real = PasswordHasher.verify

    def counted(self: PasswordHasher, encoded: Any, password: Any) -> bool:
        seen.append(encoded)
        return real(self, encoded, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    yield seen


# --- (a) guessing does not starve the gateways ------------------------------------------------


def test_a_pay_is_answered_while_many_logins_are_being_guessed(
    settings: Settings, engine: Engine
) -> None:
    """24 threads post wrong logins without pause (limits raised so that every one of them is
    verified, none throttled) while an agent pays five times: every pay is answered 0.

    Before the fix each login held the write transaction (SQLite's write lock) through its
    argon2 verify, and the pays waited past the lock timeout: result 1."""
    site = make_site(
        settings,
        engine,
        login_address_limit=10**6,
        login_username_limit=10**6,
        login_lockout_after=10**6,
    )
    gateway = Gateway.create(site.app, engine, code="optima")
    inn = add_customer(engine)
    stop, answered = threading.Event(), [0]
    count = 24

    def guess(worker: int) -> list[int]:
        statuses = []
        while not stop.is_set():
            answer = site.log_in(
                f"guess-{uuid.uuid4().hex[:12]}", "неверный-пароль", f"10.9.0.{worker}"
            )
            statuses.append(answer.status_code)
            answered[0] += answer.status_code == 200  # verified and refused
            if answer.status_code == 429:  # the hashing pool is full: as a client would
                stop.wait(0.05)
        return statuses

    with ThreadPoolExecutor(max_workers=count) as threads:
        guessing = [threads.submit(guess, worker) for worker in range(count)]
        try:
            while answered[0] < 4 and not any(g.done() for g in guessing):
                stop.wait(0.05)
            results = [gateway.pay("sochi", inn, "100.00")["result"] for _ in range(5)]
            guessed_throughout = not any(g.done() for g in guessing)
        finally:
            stop.set()
        statuses = [status for g in guessing for status in g.result(timeout=120)]
    assert results == [0] * 5
    assert guessed_throughout, "every guessing thread was still posting logins"
    assert set(statuses) <= {200, 429}, "a login failed otherwise than refused or throttled"


# --- (b) no transaction is open while a password is verified ---------------------------------


def _write_lock_free(engine: Engine) -> bool:
    """Whether another connection could start writing right now (without waiting)."""
    url = make_url(str(engine.url))
    if url.get_backend_name() == "sqlite":
        probe = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()
    with engine.connect() as conn:
        try:
            conn.execute(
                text("SELECT id FROM users WHERE username = 'aida' FOR UPDATE NOWAIT")
            ).all()
            return True
        except Exception:
            return False
        finally:
            conn.rollback()


def test_no_transaction_is_open_while_a_login_verifies_the_password(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[bool] = []
    real = PasswordHasher.verify

    def probed(self: PasswordHasher, encoded: Any, password: Any) -> bool:
        probes.append(_write_lock_free(site.engine))
        return real(self, encoded, password)

    monkeypatch.setattr(PasswordHasher, "verify", probed)
    assert not signed_in(site.log_in("aida", "неверный-пароль"))
    assert signed_in(site.log_in("aida", PASSWORD))
    assert not signed_in(site.log_in("nobody", PASSWORD))
    assert probes == [True, True, True]


def test_password_hashing_runs_on_its_own_bounded_pool(settings: Settings, engine: Engine) -> None:
    """With every hashing thread busy and no queue, a login is answered 429 at once
    (Retry-After, a Russian page) instead of taking another thread."""
    add_user(engine)
    site = make_site(settings, engine, password_hash_threads=1, password_hash_queue=0)
    hashing = passwords.pool(1, 0)
    release = threading.Event()
    busy = hashing.submit(lambda: release.wait(60))
    try:
        with pytest.raises(passwords.PoolBusy):
            hashing.submit(lambda: True)
        answer = site.log_in("aida", PASSWORD)
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
        assert "занят проверкой паролей" in (error_of(answer) or "")
    finally:
        release.set()
        busy.result(timeout=60)
    assert signed_in(site.log_in("aida", PASSWORD))


# --- (c) throttling by address holds across server processes ---------------------------------


def test_an_address_is_throttled_across_server_processes(
    settings: Settings, engine: Engine
) -> None:
    """Two apps with their own engines share only the database: failures counted by one
    throttle the address on the other. Another address is not held back."""
    add_user(engine)
    clock = Clock()
    first = make_site(settings, engine, clock, login_address_limit=3)
    other_engine = make_engine(settings, pool_size=2)
    try:
        second = make_site(settings, other_engine, clock, login_address_limit=3)
        host = "203.0.113.9"
        assert first.log_in("nobody-1", "x" * 10, host).status_code == 200
        assert second.log_in("nobody-2", "x" * 10, host).status_code == 200
        assert first.log_in("nobody-3", "x" * 10, host).status_code == 200
        for app in (first, second):
            refused = app.log_in("aida", PASSWORD, host)  # even the right password
            assert refused.status_code == 429 and not signed_in(refused)
            wait = int(refused.headers["retry-after"])
            assert 0 < wait <= 15 * 60
            assert "Слишком много попыток входа" in (error_of(refused) or "")
        assert signed_in(second.log_in("aida", PASSWORD, "203.0.113.10"))
        clock.now += timedelta(minutes=15, seconds=1)  # the window is over
        assert signed_in(first.log_in("aida", PASSWORD, host))
    finally:
        other_engine.dispose()


def test_a_username_guessed_from_many_addresses_is_slowed_not_locked(
    settings: Settings, engine: Engine
) -> None:
    add_user(engine)
    site = make_site(settings, engine, login_username_limit=4, login_username_pause_seconds=30)
    for i in range(4):
        assert site.log_in("aida", "неверный-пароль", f"192.0.2.{i}").status_code == 200
    paused = site.log_in("aida", PASSWORD, "192.0.2.200")
    assert paused.status_code == 429 and 0 < int(paused.headers["retry-after"]) <= 30
    site.clock.now += timedelta(seconds=31)
    assert signed_in(site.log_in("aida", PASSWORD, "192.0.2.200"))


# --- (d) every failure answers alike, after the same work ------------------------------------


def test_locked_unknown_and_wrong_password_answer_alike(
    site: Site, verifications: list[Any]
) -> None:
    """The same page, status and delay, after exactly one argon2 verify each: an unknown
    name, a wrong password, a disabled user, and a right password from a locked address."""
    add_user(site.engine, "timur")
    with site.engine.begin() as conn:
        users.change(conn, "timur", active=False)
    limit = 5  # login_lockout_after's default

    def answer(username: str, password: str, host: str) -> tuple[Any, ...]:
        del verifications[:]
        del site.sleeps[:]
        result = site.log_in(username, password, host)
        return result.status_code, error_of(result), tuple(site.sleeps), len(verifications)

    fresh = [
        answer("nobody", PASSWORD, "192.0.2.1"),
        answer("aida", "неверный-пароль", "192.0.2.2"),
        answer("timur", PASSWORD, "192.0.2.3"),
    ]
    assert fresh[0] == fresh[1] == fresh[2]
    assert fresh[0] == (200, "Неверное имя пользователя или пароль.", (0.5,), 1)

    for name, host in (("nobody", "192.0.2.11"), ("aida", "192.0.2.12"), ("timur", "192.0.2.13")):
        for _ in range(limit):
            site.log_in(name, "неверный-пароль", host)
    locked = [
        answer("nobody", PASSWORD, "192.0.2.11"),
        answer("aida", PASSWORD, "192.0.2.12"),  # the right password, locked
        answer("aida", "неверный-пароль", "192.0.2.12"),
        answer("timur", PASSWORD, "192.0.2.13"),
    ]
    assert len(set(locked)) == 1, locked
    status, error, delays, verified = locked[0]
    assert status == 200 and error is not None and "заблокирован на 15 минут;" in error
    assert delays == (8.0,) and verified == 1


# --- (e) an outsider cannot lock a user out ----------------------------------------------------


def test_failures_from_one_address_do_not_lock_the_user_out_elsewhere(site: Site) -> None:
    for _ in range(10):
        site.log_in("aida", "угадываю-пароль", "203.0.113.66")
    outsider = site.log_in("aida", PASSWORD, "203.0.113.66")
    assert not signed_in(outsider) and "заблокирован" in (error_of(outsider) or "")
    assert signed_in(site.log_in("aida", PASSWORD, "192.0.2.44"))  # her own address


def test_a_success_clears_the_count_of_its_address_and_unlock_clears_every_lock(
    site: Site,
) -> None:
    for _ in range(4):
        site.log_in("aida", "неверный-пароль", "192.0.2.5")
    assert signed_in(site.log_in("aida", PASSWORD, "192.0.2.5"))
    del site.sleeps[:]
    site.log_in("aida", "неверный-пароль", "192.0.2.5")
    assert site.sleeps == [0.5]  # counting from the start again

    for _ in range(5):
        site.log_in("aida", "неверный-пароль", "203.0.113.66")
    assert not signed_in(site.log_in("aida", PASSWORD, "203.0.113.66"))
    with site.engine.begin() as conn:
        assert users.unlock(conn, "aida") is not None
    assert signed_in(site.log_in("aida", PASSWORD, "203.0.113.66"))
    with site.engine.connect() as conn:
        left = conn.execute(
            select(login_throttle.c.scope).where(login_throttle.c.username == "aida")
        ).all()
    assert left == []


# --- (f) the delay grows ---------------------------------------------------------------------


def test_the_delay_doubles_with_failures_in_a_row_up_to_eight_seconds(
    settings: Settings, engine: Engine
) -> None:
    add_user(engine)
    site = make_site(settings, engine, login_lockout_after=8)
    for attempt in range(7):
        site.log_in("aida", f"неверно-{attempt}")
    assert site.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
