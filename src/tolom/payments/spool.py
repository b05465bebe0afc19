"""A local spool for `gateway_requests` rows that could not be written to the database.

When the database is unreachable the agent still gets its "retry" answer, and PRODUCT
invariant 5 still wants the request on record: the row goes here, one JSON line at a time,
and `drain` moves it into the table once the database answers again.

Files, all in one directory (per host; see "Locks" below):

- `requests-<pid>.jsonl`: the lines of one process, appended (and fsync'ed) one at a time;
- `<that name>.draining-<pid>-<token>`: a file claimed by a drainer (an atomic rename), so
  two processes never move the same lines; a claim whose drainer died is taken over;
- `<that name>.rejected-<token>`: lines the database refused for good (e.g. a CHECK), set
  aside for a person instead of blocking every later drain; never retried automatically.

Locks: every file is `flock`ed while it is written, claimed, or drained. A drainer holds
its claim's lock from before the rename until the file is unlinked, and the kernel
releases it when a process dies, so "the claimant is dead" is exactly "the lock is free"
(a pid in the name could be reused; the lock cannot lie). A writer that opened a file just
before a drainer renamed it notices (the path no longer names its inode) and writes to a
fresh file instead, so no line lands in a file after it was read. `flock` is local: the
directory must not be shared over NFS or between hosts.

The one duplicate window: a drainer that dies (or cannot unlink) after its transaction
committed and before the claimed file is gone leaves lines that the next drain inserts
again. `gateway_requests` has no column to recognise a row by, and it is a log rather
than money, so a rare duplicate there is preferred to a lost record.

A line cut short by a crash mid-write is skipped with a warning; it never blocks a drain.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.exc import DBAPIError

from tolom.db.engine import is_temporary
from tolom.db.schema import gateway_requests

log = logging.getLogger(__name__)

_PREFIX = "requests-"
_SUFFIX = ".jsonl"
_CLAIMED = ".draining-"
_REJECTED = ".rejected-"
_COLUMNS = tuple(c.name for c in gateway_requests.columns if c.name != "id")
_LOCK_WAIT_SECONDS = 2.0  # a writer waits this long for a drainer to finish renaming


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not renamed or unlinked since)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


def _fsync_directory(directory: Path) -> None:
    """Make a new or renamed entry durable, not just the file's bytes."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RequestSpool:
    """Append-only JSON-lines spool of request records, drained into `gateway_requests`."""

    def __init__(
        self, directory: Path, *, pid: int | None = None, rescan_seconds: float = 5.0
    ) -> None:
        # `pid` is injectable so tests can play several processes; in production, the real one.
        self.directory = Path(directory)
        self._pid = pid
        self.rescan_seconds = rescan_seconds
        self._write_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._dirty = False  # this process appended since its last drain
        self._next_scan = 0.0  # monotonic; the first `pending` looks at the directory

    @property
    def pid(self) -> int:
        """This process's id, asked each time: a spool made before a fork stays correct."""
        return os.getpid() if self._pid is None else self._pid

    @property
    def path(self) -> Path:
        """The file this process appends to."""
        return self.directory / f"{_PREFIX}{self.pid}{_SUFFIX}"

    # --- writing ------------------------------------------------------------------------

    def append(self, row: dict[str, Any]) -> None:
        """Spool one row durably. Never raises: the caller is already answering an outage."""
        try:
            line = json.dumps(row, ensure_ascii=False, default=_json_default) + "\n"
            data = line.encode("utf-8")
        except (TypeError, ValueError) as error:
            self._lost(row, None, error)
            return
        with self._write_lock:
            try:
                self._write(data)
            except Exception as error:
                self._lost(row, line, error)
                return
            self._dirty = True

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                if self._lock_for_writing(fd, deadline):
                    end = os.lseek(fd, 0, os.SEEK_END)
                    if end > 0 and os.pread(fd, 1, end - 1) != b"\n":
                        data = b"\n" + data  # end a line cut short by a crash: keep it apart
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
                    os.fsync(fd)
                    if end == 0:
                        _fsync_directory(self.directory)
                    return
            finally:
                os.close(fd)  # also releases the lock
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path} stayed locked")

    def _lock_for_writing(self, fd: int, deadline: float) -> bool:
        """Lock `fd` while `self.path` still names it; False: it was claimed, open again."""
        while not _try_lock(fd):
            # A drainer holds it for the instant before its rename; then the path moves on.
            if not _same_file(fd, self.path) or time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return _same_file(fd, self.path)

    def _lost(self, row: dict[str, Any], line: str | None, error: BaseException) -> None:
        # The log line is the record's last trace: put the record itself in it.
        log.error(
            "gateway request record lost: cannot spool it",
            extra={
                "spool": str(self.path),
                "error": f"{type(error).__name__}: {error}",
                "agent_id": row.get("agent_id"),
                "txn_id": row.get("txn_id"),
                "command": row.get("command"),
                "record": line.rstrip("\n") if line is not None else repr(row),
            },
        )

    # --- noticing -----------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether anything may wait to be drained; cheap enough to ask after every write.

        This process's own appends set a flag; other processes' files (or those of one that
        crashed) are noticed by a look at the directory at most every `rescan_seconds`.
        """
        if self._dirty:
            return True
        now = time.monotonic()
        if now < self._next_scan:
            return False
        self._next_scan = now + self.rescan_seconds
        for path in self._candidates():
            try:
                if path.stat().st_size > 0:
                    return True
            except FileNotFoundError:
                continue  # drained meanwhile
            except OSError:
                return False  # `drain` will say what is wrong
        return False

    def _candidates(self) -> list[Path]:
        """Spool files and claimed files, by name; rejected ones are left for a person."""
        try:
            with os.scandir(self.directory) as entries:
                names = sorted(entry.name for entry in entries)
        except FileNotFoundError:
            return []
        except OSError as error:
            log.error(
                "cannot read the request spool directory",
                extra={"spool": str(self.directory), "error": f"{type(error).__name__}: {error}"},
            )
            return []
        return [
            self.directory / name
            for name in names
            if name.startswith(_PREFIX)
            and _REJECTED not in name
            and (name.endswith(_SUFFIX) or _CLAIMED in name)
        ]

    # --- draining -----------------------------------------------------------------------

    def drain(self, engine: Engine) -> int:
        """Move every spooled row in the directory into `gateway_requests`; how many moved.

        One transaction per file. Does not raise: a temporary database error stops the
        drain and leaves the rest for a later one (`pending` says so again within
        `rescan_seconds`); rows the database refuses for good set their file aside as
        `.rejected-…`. Another thread of this process already draining: returns 0 at once
        rather than queueing behind it.
        """
        if not self._drain_lock.acquire(blocking=False):
            return 0
        try:
            self._dirty = False  # appends from now on set it again
            moved = 0
            for path in self._candidates():
                try:
                    count = self._drain_file(path, engine)
                except _StopDraining:
                    break
                except OSError as error:
                    log.error(
                        "cannot drain a spool file",
                        extra={"spool": str(path), "error": f"{type(error).__name__}: {error}"},
                    )
                    continue
                if count is None:  # busy: another drainer, or this process's writer just now
                    if path == self.path:
                        self._dirty = True
                    continue
                moved += count
            if moved:
                log.info("spooled gateway requests recorded", extra={"rows": moved})
            return moved
        finally:
            self._drain_lock.release()

    def _drain_file(self, path: Path, engine: Engine) -> int | None:
        """Claim, read, insert, unlink one file; None when it is not ours to take now."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:  # the lock is held until the file is gone: a claim with a free lock is abandoned
            if not _try_lock(fd) or not _same_file(fd, path):
                return None
            if os.fstat(fd).st_size == 0:
                path.unlink()
                return 0
            base = path.name.split(_CLAIMED, 1)[0]
            claimed = path.with_name(f"{base}{_CLAIMED}{self.pid}-{secrets.token_hex(4)}")
            os.rename(path, claimed)
            _fsync_directory(self.directory)
            rows = list(_read(fd, claimed))
            if rows and not _insert(engine, rows, claimed):
                return 0
            claimed.unlink()  # a crash just before this is the duplicate window (see top)
            return len(rows)
        finally:
            os.close(fd)


class _StopDraining(Exception):
    """The database cannot take rows right now; later files would fail the same way."""


def _read(fd: int, path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a claimed file, skipping (with a warning) lines that do not parse."""
    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(fd), "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                yield _row(json.loads(raw))
            except (ValueError, TypeError, KeyError) as error:
                # Most often the last line of a process that died mid-write.
                log.warning(
                    "skipping an unreadable spool line",
                    extra={
                        "spool": str(path),
                        "line": number,
                        "error": f"{type(error).__name__}: {error}",
                        "record": raw.decode("utf-8", "replace").rstrip("\n")[:2000],
                    },
                )


def _row(value: Any) -> dict[str, Any]:
    """A `gateway_requests` row from its JSON line; KeyError/ValueError when incomplete."""
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    row = {column: value[column] for column in _COLUMNS}
    received = datetime.fromisoformat(row["received_at"])
    row["received_at"] = received if received.tzinfo else received.replace(tzinfo=UTC)
    return row


def _insert(engine: Engine, rows: list[dict[str, Any]], claimed: Path) -> bool:
    """Insert in one transaction; False when refused for good (the file is set aside)."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(gateway_requests), rows)
    except DBAPIError as error:
        if is_temporary(error):
            log.warning(
                "database unavailable; spooled requests wait for a later drain",
                extra={"spool": str(claimed), "error": type(error.orig).__name__},
            )
            raise _StopDraining from error
        base = claimed.name.split(_CLAIMED, 1)[0]
        rejected = claimed.with_name(f"{base}{_REJECTED}{secrets.token_hex(4)}")
        os.rename(claimed, rejected)
        log.error(
            "database refused spooled requests; file set aside for inspection",
            extra={"spool": str(rejected), "error": f"{type(error.orig).__name__}: {error}"},
        )
        return False
    except Exception as error:
        # A pool timeout and the like: not this file's fault; try again later.
        log.warning(
            "cannot record spooled requests now",
            extra={"spool": str(claimed), "error": f"{type(error).__name__}: {error}"},
        )
        raise _StopDraining from error
    return True
