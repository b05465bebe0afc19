"""The scheduled run: registries dropped into a watched folder are imported and matched.

Layout: `<folder>/<agent code>/<any file name>`. A file whose name holds a date
(`2026-11-21`, `20261121` or `21.11.2026`) is the registry of that day; otherwise its
lines' day is used. Each file is imported like `tolom reconcile import` and then moved to
`<agent>/done/` with `<name>.result.json` beside it, or to `<agent>/failed/` with
`<name>.error.txt` saying which line and field are wrong. Files still being written are
left for the next pass (their size or modification time changed in the last few seconds),
and importing is idempotent, so a file seen twice after a crash changes nothing.

Several watchers (hosts sharing the folder) take turns: on PostgreSQL a pass holds an
advisory lock (`PASS_LOCK`), so the next pass starts after the previous one has
moved its files and finds them gone. A file that vanishes mid-pass all the same (taken by
a watcher on another database, or by hand) is left alone.

Only regular files inside the folder are read: a symbolic link (to a file or an agent's
folder), a FIFO or a device is never followed or opened, and a link is moved to `failed/`
with a note that says so and nothing of what it points at. `done/` and `failed/` must be
real folders, and notes are never written through a link. Error notes are short: they
name the line and field, never echo the file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tolom.reconciliation import registries, shapes
from tolom.reconciliation.parsing import RegistryError
from tolom.texts import DEFAULT, N_, text

log = logging.getLogger(__name__)

SETTLE_SECONDS = 5.0  # a file untouched this long is taken as completely written
PASS_LOCK = 0x746F6C6F6D01  # PostgreSQL advisory lock key of a pass ("tolom" + 1)
PASS_WAIT_SECONDS = 300.0  # how long a pass waits for another watcher's pass to end
NOTE_LIMIT = 1000  # characters of an error note: enough for the line and field, no more
SYMLINK = N_("registry.error.symlink")
SYMLINK_FOLDER = N_("registry.error.symlink_folder")
NOT_A_FILE = N_("registry.error.not_a_file")
_DAY_IN_NAME = (
    (re.compile(r"(20\d\d)-(\d\d)-(\d\d)"), (1, 2, 3)),
    (re.compile(r"(?<!\d)(20\d\d)(\d\d)(\d\d)(?!\d)"), (1, 2, 3)),
    (re.compile(r"(\d\d)\.(\d\d)\.(20\d\d)"), (3, 2, 1)),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    agent: str
    file: str
    imported: registries.Imported | None = None
    error: str | None = None


def day_in_name(name: str) -> date | None:
    for pattern, (year, month, day) in _DAY_IN_NAME:
        found = pattern.search(name)
        if found:
            try:
                return date(int(found[year]), int(found[month]), int(found[day]))
            except ValueError:
                return None
    return None


def _settled(path: Path, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime >= SETTLE_SECONDS
    except FileNotFoundError:  # gone since the folder was listed
        return False


class Unreachable(Exception):
    """The database failed during a pass: the files not yet imported wait for the next."""


class _Gone(Exception):
    """The file went away under us (another watcher took it): nothing to do."""


class _Unsafe(Exception):
    """The agent's done/ or failed/ is not a real folder: nothing is moved into it."""


def _short(text: str) -> str:
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"


def _write_note(path: Path, note: str) -> None:
    """Write the note as a new file, never through a link planted under its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(note)


def _move(path: Path, folder: str, note_name: str, note: str) -> None:
    target = path.parent / folder
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise _Unsafe(f"{target} is not a folder (a link or a file): nothing is moved into it")
    target.mkdir(exist_ok=True)
    destination = target / path.name
    stamp = int(time.time())
    while destination.exists() or destination.is_symlink():  # the same name again: keep both
        destination = target / f"{path.stem}.{stamp}{path.suffix}"
        stamp += 1
    try:
        path.replace(destination)
    except FileNotFoundError:
        raise _Gone(str(path)) from None
    _write_note(target / f"{destination.name}.{note_name}", _short(note))


def _read(path: Path) -> bytes:
    """The file's bytes, opened without following a link and checked to be a regular file
    no larger than a registry may be before any of it is read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RegistryError(SYMLINK) from None
        raise RegistryError(N_("registry.error.unopenable"), error=str(error.strerror)) from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RegistryError(NOT_A_FILE)
        limit = registries.MAX_FILE_BYTES
        too_large = registries.too_large_refusal(limit)
        if info.st_size > limit:
            raise too_large
        content = file.read(limit + 1)
        if len(content) > limit:
            raise too_large
        return content


def _refuse(path: Path, agent: str, error: RegistryError, outcomes: list[Outcome]) -> None:
    log.warning("registry %s of %s refused: %s", path.name, agent, _short(str(error)))
    try:
        _move(path, "failed", "error.txt", f"{error}\n")
    except _Gone:
        log.info("registry %s of %s taken by another watcher", path.name, agent)
        return
    except _Unsafe as unsafe:
        log.error("registry %s of %s left where it is: %s", path.name, agent, unsafe)
    outcomes.append(Outcome(agent, path.name, error=_short(str(error))))


def scan_once(
    engine: Engine, folder: Path, *, actor: str = "watch", now: float | None = None
) -> list[Outcome]:
    """Import every settled file in the agents' sub-folders; what happened to each.
    Unreachable when the database fails mid-pass (what was imported stays imported)."""
    try:
        with _one_pass_at_a_time(engine) as ours:
            return _scan(engine, folder, actor, now) if ours else []
    except SQLAlchemyError as error:
        raise Unreachable(str(error)) from error


@contextmanager
def _one_pass_at_a_time(engine: Engine) -> Iterator[bool]:
    """Hold `PASS_LOCK` for the pass (PostgreSQL; SQLite has one host): a transaction-level
    lock in a transaction left open on a connection of its own, so it also holds behind
    PgBouncer in transaction mode, and dies with the session of a watcher killed mid-pass.
    False when another watcher's pass outlasted `PASS_WAIT_SECONDS`: skip this one."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    # Not from the engine's pool: the pass needs all of that (the CLI's holds two).
    holder = create_engine(engine.url, poolclass=NullPool)
    try:
        with holder.connect() as conn:
            deadline = time.monotonic() + PASS_WAIT_SECONDS
            while not conn.execute(select(func.pg_try_advisory_xact_lock(PASS_LOCK))).scalar():
                conn.rollback()  # no transaction open while waiting
                if time.monotonic() >= deadline:
                    log.warning("another watcher's pass is still running: this pass is skipped")
                    yield False
                    return
                time.sleep(0.5)
            try:
                yield True
            finally:
                conn.rollback()  # releases the lock
    finally:
        holder.dispose()


def _scan(engine: Engine, folder: Path, actor: str, now: float | None) -> list[Outcome]:
    moment = time.time() if now is None else now
    outcomes: list[Outcome] = []
    root = folder.resolve()
    for agent_dir in sorted(folder.iterdir()):
        if agent_dir.is_symlink() and agent_dir.is_dir():
            log.warning("%s is a symbolic link to a folder: not followed", agent_dir)
            outcomes.append(Outcome(agent_dir.name, "", error=text(DEFAULT, SYMLINK_FOLDER)))
            continue
        if not agent_dir.is_dir():
            continue
        for path in sorted(agent_dir.iterdir()):
            if path.name.startswith("."):
                continue
            agent = agent_dir.name
            if path.is_symlink() or path.resolve().parent != root / agent:
                _refuse(path, agent, RegistryError(SYMLINK), outcomes)
                continue
            if path.is_dir():
                continue  # done/, failed/
            if not _settled(path, moment):
                continue
            try:
                content = _read(path)
                done = registries.import_registry(
                    engine,
                    agent,
                    content,
                    file_name=path.name,
                    actor=f"{actor}:{folder.name}",
                    day=day_in_name(path.name),
                )
            except RegistryError as error:
                _refuse(path, agent, error, outcomes)
                continue
            result = {
                "registry": done.registry_id,
                "day": done.business_date.isoformat(),
                "lines": done.lines,
                "replayed": done.replayed,
                "superseded": done.superseded,
                "summary": shapes.summary_fields(done.summary),
            }
            try:
                _move(path, "done", "result.json", json.dumps(result, ensure_ascii=False, indent=2))
            except _Gone:
                log.info("registry %s of %s taken by another watcher", path.name, agent)
                continue
            except _Unsafe as unsafe:
                log.error("registry %s of %s imported but not moved: %s", path.name, agent, unsafe)
            log.info(
                "registry %s of %s imported: %s discrepancies",
                path.name,
                agent,
                done.summary.discrepancy_count,
            )
            outcomes.append(Outcome(agent, path.name, imported=done))
    return outcomes
