"""The real `tolom serve` as operating-system processes: a worker killed with SIGKILL is
replaced while the others keep answering, stopping the supervisor stops its workers and frees
the port, and what a worker's start costs in CPU (printed, never asserted: tests do not fail
on timing). Loopback only; every process started here is killed in a `finally`.
See docs/operations.md."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tolom.supervision import start_parent_watchdog

BIN = Path(sys.executable).parent
TOLOM = BIN / "tolom"
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
STARTUP_COMPLETE = "Application startup complete."

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads processes from Linux's /proc"
)


# --- processes, read from /proc ------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may contain spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return _stat(pid)[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, from every /proc/*/stat (no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError):
            if int(_stat(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
    return found


def _is_worker(pid: int) -> bool:
    """uvicorn's workers are multiprocessing spawn children (its resource tracker is not)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _workers(supervisor: int) -> set[int]:
    return {pid for pid in _children(supervisor) if _is_worker(pid) and _alive(pid)}


def _socket_owner(local_port: int, server_port: int, among: set[int]) -> int | None:
    """Which of `among` holds the server side of our loopback connection from `local_port`:
    the worker that accepted it and answers on it."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote = parts[1], parts[2]
        if local.endswith(f":{server_port:04X}") and remote.endswith(f":{local_port:04X}"):
            inode = parts[9]
    if inode is None:
        return None
    for pid in among:
        with suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


# --- HTTP ------------------------------------------------------------------------------------


def _health(port: int, timeout: float = 2.0) -> int | None:
    """The status of GET /health on a new connection; None when nobody answered."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _health_from(port: int, worker: int, attempts: int = 100) -> float | None:
    """GET /health on new connections until `worker` accepts one and answers 200 on it;
    that worker's CPU seconds at that moment, or None if it never did."""
    for _ in range(attempts):
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            sock = conn.sock
            assert sock is not None  # a keep-alive connection stays open after the answer
            if response.status == 200 and _socket_owner(sock.getsockname()[1], port, {worker}):
                return _cpu_seconds(worker)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
    return None


def _wait(condition: Callable[[], object], seconds: float, what: str) -> float:
    """Poll until `condition` is true; the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"timed out after {seconds} s: {what}"
        time.sleep(0.02)
    return time.monotonic() - start


def _port_is_free(port: int) -> bool:
    """Nobody listens on the port (SO_REUSEADDR: connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


# --- the server ------------------------------------------------------------------------------


@dataclass
class Server:
    """A running `tolom serve` and the log lines its processes wrote, with their times."""

    process: subprocess.Popen[str]
    port: int
    log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines_since(self, moment: float) -> list[str]:
        return [line for at, line in list(self.log) if at >= moment]

    def startups_complete(self) -> int:
        return sum(STARTUP_COMPLETE in line for _, line in list(self.log))

    def output(self) -> str:
        return "".join(line for _, line in list(self.log))


@dataclass(frozen=True)
class Database:
    """Where the processes run (no .env file there) and their environment."""

    directory: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A SQLite file migrated by the real `tolom db upgrade`. The developer's own TOLOM_*
    variables are left out."""
    where = tmp_path_factory.mktemp("serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLOM_")}
    env |= {"TOLOM_DATABASE_URL": f"sqlite:///{where / 'tolom.sqlite3'}", "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [str(TOLOM), "db", "upgrade"], env=env, cwd=where, check=True, capture_output=True
    )
    return Database(where, env)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def serving(database: Database, workers: int) -> Iterator[Server]:
    """`tolom serve --workers N` on a free loopback port, once it answers /health.

    Its own session, so that the cleanup reaches every process it started, even workers
    left behind by a test (or a bug) after the supervisor is gone.
    """
    port = _free_port()
    process = subprocess.Popen(
        [str(TOLOM), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)],
        env=database.env,
        cwd=database.directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    server = Server(process, port)

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            server.log.append((time.monotonic(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _wait(
            lambda: process.poll() is not None or _health(port) == 200,
            30,
            "the server answering /health",
        )
        assert process.poll() is None, f"tolom serve exited:\n{server.output()}"
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # everything in its session
        process.wait(timeout=10)
        reader.join(timeout=5)


# --- the tests -------------------------------------------------------------------------------


def test_a_worker_killed_is_replaced_while_the_others_keep_answering(
    database: Database,
) -> None:
    with serving(database, workers=2) as server:
        _wait(lambda: server.startups_complete() >= 2, 30, "both workers started")
        first = _workers(server.pid)
        assert len(first) == 2, server.output()
        victim, survivor = sorted(first)

        # Load throughout the kill and the restart: a request every few milliseconds, each
        # on a new connection (leaving the CPU to the restart on a small machine).
        statuses: list[int | None] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.wait(0.005):
                statuses.append(_health(server.port))

        client = threading.Thread(target=load, daemon=True)
        client.start()
        try:
            _wait(lambda: len(statuses) >= 5, 10, "the load running")
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            answered_before = len(statuses)
            _wait(lambda: not _alive(victim), 5, "the killed worker gone")
            _wait(
                lambda: _workers(server.pid) - {survivor},
                10,
                "the supervisor starting a replacement",
            )
            (replacement,) = _workers(server.pid) - {survivor}
            appeared = time.monotonic() - killed_at
            _wait(
                lambda: any(STARTUP_COMPLETE in x for x in server.lines_since(killed_at)),
                20,
                "the replacement's startup",
            )
            ready = time.monotonic() - killed_at
            cpu = _health_from(server.port, replacement)
            serving_after = time.monotonic() - killed_at
            _wait(lambda: len(statuses) >= answered_before + 20, 10, "more answers")
        finally:
            stop.set()
            client.join(timeout=5)

        assert replacement not in first
        assert cpu is not None, "the replacement never answered a request"
        assert _alive(survivor), "the other worker died too"
        # Every request got 200, except perhaps the one the killed worker had accepted and
        # was answering at that instant (its connection dies with it).
        failed = [s for s in statuses if s != 200]
        assert all(s is None for s in failed), statuses
        assert len(failed) <= 1, f"{len(failed)} of {len(statuses)} requests failed"
        print(
            f"\nkill -9 of worker {victim}: replacement {replacement} started after "
            f"{appeared:.2f} s, its app ready after {ready:.2f} s, served /health after "
            f"{serving_after:.2f} s using {cpu:.2f} s of CPU; {len(statuses)} requests "
            f"meanwhile, {len(failed)} failed"
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stopping_the_supervisor_stops_its_workers_and_frees_the_port(
    database: Database, signum: signal.Signals
) -> None:
    with serving(database, workers=2) as server:
        _wait(lambda: server.startups_complete() >= 2, 30, "both workers started")
        started = _children(server.pid)  # the workers and multiprocessing's resource tracker
        assert len([p for p in started if _is_worker(p)]) == 2, server.output()
        stopped_at = time.monotonic()
        os.kill(server.pid, signum)
        server.process.wait(timeout=15)
        _wait(lambda: not any(_alive(p) for p in started), 10, "every child process gone")
        took = time.monotonic() - stopped_at
        assert _port_is_free(server.port)
        assert _health(server.port, timeout=0.5) is None
        print(f"\n{signum.name}: supervisor and its {len(started)} children gone in {took:.2f} s")


def test_cpu_to_the_first_request(database: Database) -> None:
    """`--workers 1`: one process, the command line, the app and the first answer."""
    with serving(database, workers=1) as server:
        cpu = _cpu_seconds(server.pid)  # taken the moment /health first answered 200
    assert cpu > 0
    print(f"\ntolom serve --workers 1: {cpu:.2f} s of CPU until the first /health answer")


def test_a_server_process_imports_nothing_it_only_needs_later(
    database: Database,
) -> None:
    """What makes a worker's start cheap: PDFs (fpdf), XLSX (openpyxl), migrations (alembic),
    the webhook client (httpx) and the login's dummy argon2 hash wait for their first use."""
    probe = textwrap.dedent(
        """
        import sys
        import tolom.cli, tolom.app
        from tolom.backoffice import users
        heavy = ("fpdf", "openpyxl", "alembic", "httpx", "PIL", "fontTools")
        print(sorted(m for m in heavy if m in sys.modules))
        print(users._dummy_hash.cache_info().currsize)
        """
    )
    found = subprocess.run(
        [sys.executable, "-c", probe],
        env=database.env,
        cwd=database.directory,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert found[:2] == ["[]", "0"]


# --- the supervisor killed with SIGKILL -------------------------------------------------------

_PARENT = """
import multiprocessing, signal, sys, time
from tolom.supervision import start_parent_watchdog

def worker(mode):
    if mode == "ignore":  # a worker whose graceful shutdown never ends
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    thread = start_parent_watchdog(interval=0.1, grace=0.5)
    print("watching" if thread else "not watching", flush=True)
    time.sleep(60)

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=worker, args=(sys.argv[1],))
    child.start()
    print(child.pid, flush=True)
    child.join()
"""


def test_no_watchdog_outside_a_supervised_worker() -> None:
    """A single server process's parent is a shell or a service manager: never watched."""
    assert start_parent_watchdog() is None


@pytest.mark.parametrize("mode", ["graceful", "ignore"])
def test_a_watched_worker_stops_when_its_supervisor_is_killed(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "supervisor.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None
        lines = sorted(parent.stdout.readline().strip() for _ in range(2))  # in either order
        assert lines[1] == "watching", lines
        child = int(lines[0])
        killed_at = time.monotonic()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)
        _wait(lambda: not _alive(child), 10, "the orphaned worker stopping")
        print(f"\norphan ({mode}) stopped {time.monotonic() - killed_at:.2f} s after kill -9")
    finally:
        with suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)


def test_workers_stop_when_the_supervisor_is_killed(database: Database) -> None:
    with serving(database, workers=2) as server:
        _wait(lambda: server.startups_complete() >= 2, 30, "both workers started")
        workers = _workers(server.pid)
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(timeout=5)
        deadline = time.monotonic() + 3  # a check every 0.5 s, then a graceful shutdown
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers), "orphaned workers still serving"
        _wait(lambda: _port_is_free(server.port), 5, "the port freed")
