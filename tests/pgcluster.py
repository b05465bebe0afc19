"""A private, throw-away PostgreSQL 15 cluster for tests that restart or stop the server.

Never the machine's shared server: the cluster lives in its own directory under /tmp,
listens on 127.0.0.1 only, on a free port, with its socket in that directory. We run as
root and initdb refuses root, so every PostgreSQL program runs as the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def missing() -> str | None:
    """Why there is no PostgreSQL 15 to make a cluster with; None when it is installed."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({BIN / 'initdb'} is missing)"
    return None


def unusable() -> str | None:
    """Why the installed PostgreSQL cannot be run from here; None when it can."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"there is no `{USER}` user to run PostgreSQL as"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != USER:
        return "needs root (to run PostgreSQL as `postgres`) or the `postgres` user itself"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "`runuser` is missing (needed to run PostgreSQL as `postgres`)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Cluster:
    """One cluster: `start()`, `restart()`, `stop()`, `remove()`; `url` for SQLAlchemy."""

    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "postgresql.log"

    @property
    def url(self) -> str:
        """For SQLAlchemy (and tolom's TOLOM_DATABASE_URL)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """For psycopg itself."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls) -> Cluster:
        """initdb in a fresh directory under /tmp (readable by `postgres`)."""
        base = Path(tempfile.mkdtemp(prefix="tolom-pg-", dir="/tmp"))
        os.chmod(base, 0o755)
        entry = pwd.getpwnam(USER)
        if os.geteuid() == 0:
            os.chown(base, entry.pw_uid, entry.pw_gid)
        cluster = cls(base, free_port())
        try:
            cluster._run(
                "initdb",
                "-D",
                str(cluster.data),
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",  # the cluster's own files; the server itself keeps fsync on
                "--no-instructions",
                timeout=120,
            )
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _run(self, program: str, *args: str, timeout: float = 60) -> str:
        argv = [str(BIN / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", USER, "--", *argv]
        # stdin/stdout to files or DEVNULL, never a pipe kept open by the postmaster.
        done = subprocess.run(
            argv,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n{self.log_tail()}"
            )
        return done.stdout

    def _pg_ctl(self, action: str, *args: str, timeout: float = 60) -> None:
        # -l: the postmaster writes to the log file, not to pg_ctl's (captured) output.
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log_path), *args, timeout=timeout
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        self._pg_ctl("start", "-w", "-t", "60", "-o", options, timeout=90)

    def restart(self) -> None:
        """`pg_ctl restart -m fast -w`: sessions are cut, the server comes back (same options)."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-t", "60", timeout=90)

    def stop(self) -> None:
        """Stop at once (`-m immediate`); no error when it is not running."""
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", timeout=45)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no PostgreSQL log)"
        return "\n".join(text.splitlines()[-lines:])
