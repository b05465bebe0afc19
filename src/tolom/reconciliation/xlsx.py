"""XLSX registries, read in a child process under limits.

A workbook is a zip of XML that may claim or unpack to far more than it weighs: 1.6 KB
declaring its sheet as `A1:XFD1048576` (17 billion cells, which openpyxl's read-only mode
pads every row to), or 1 MB of zip unpacking to a gigabyte of whitespace. So, before
anything is parsed, the zip's members are checked against the unpacked-size and
compression-ratio caps (a member never unpacks past the size it declares: `zipfile` stops
there and checks the CRC); the sheet is then read row by row as it is written, its
declared dimension ignored, and rows and columns are capped. All of it runs in a child
Python process (`python -m tolom.reconciliation.xlsx`, never a fork of the threaded
server) with a time budget: past it the child is killed and the file refused. The child
limits its own memory (a sheet's shared strings are held whole) and CPU time, so it dies
even if the server that started it is gone.

Text registries (QIWI, CSV) stay in-process: their cost is linear in the upload's size.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from tolom.reconciliation.formats import RegistryFormat
from tolom.reconciliation.parsing import Line, ParsedRegistry, RegistryError, Row, read
from tolom.texts import N_

MAX_MEMBERS = 1000  # a workbook has tens of parts; thousands mean something else
RATIO_FLOOR = 1024 * 1024  # members smaller than this are never too compressed to matter
_NOT_A_BOOK = N_("registry.error.not_a_book")

# A parse also stops before its time budget when whoever asked has gone away (the
# uploading client disconnected): see `cancelled_when`. (At shutdown the child, in the
# server's process group, gets the service manager's signal with it and ends at once.)
_asked = threading.local()


@contextlib.contextmanager
def cancelled_when(event: threading.Event) -> Iterator[None]:
    """Within this block (in this thread), a parse stops once `event` is set."""
    previous = getattr(_asked, "event", None)
    _asked.event = event
    try:
        yield
    finally:
        _asked.event = previous


def _cancelled() -> str | None:
    event: threading.Event | None = getattr(_asked, "event", None)
    if event is not None and event.is_set():
        return N_("registry.error.cancelled")
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    """What one XLSX registry may cost (the `registry_xlsx_*` settings)."""

    max_rows: int = 1_048_576
    max_columns: int = 256
    max_unpacked: int = 1024 * 1024 * 1024  # bytes, all members together
    max_ratio: int = 100
    seconds: float = 600.0
    max_memory: int = 4096 * 1024 * 1024  # bytes of address space of the child process

    @classmethod
    def from_settings(cls) -> Limits:
        from tolom.settings import get_settings

        settings = get_settings()
        return cls(
            max_rows=settings.registry_xlsx_max_rows,
            max_columns=settings.registry_xlsx_max_columns,
            max_unpacked=settings.registry_xlsx_max_unpacked_mb * 1024 * 1024,
            max_ratio=settings.registry_xlsx_max_ratio,
            seconds=settings.registry_xlsx_timeout_seconds,
            max_memory=settings.registry_xlsx_max_memory_mb * 1024 * 1024,
        )


# --- the child: the zip checked, the sheet read -------------------------------------------


def check_zip(content: bytes, limits: Limits) -> None:
    """Refuse a workbook whose parts would unpack too large or are suspiciously compressed,
    from the zip's directory alone, before a byte of it is inflated."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise RegistryError(_NOT_A_BOOK) from error
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise RegistryError.plural(
                "registry.error.parts", len(members), count=len(members), max=MAX_MEMBERS
            )
        megabyte = 1024 * 1024
        total = 0
        for member in members:
            total += member.file_size
            if total > limits.max_unpacked:
                raise RegistryError(
                    N_("registry.error.unpacked"), mb=limits.max_unpacked // megabyte
                )
            compressed = max(member.compress_size, 1)
            if member.file_size > RATIO_FLOOR and member.file_size > limits.max_ratio * compressed:
                ratio = member.file_size // compressed
                raise RegistryError.plural(
                    "registry.error.ratio",
                    ratio,
                    count=ratio,
                    part=member.filename[:60],
                    max=limits.max_ratio,
                )


def rows(content: bytes, sheet: str | None, limits: Limits) -> Iterator[Row]:
    """The sheet's rows with values, numbered as in Excel, each padded to the widest row
    seen so far (as openpyxl would to the declared dimension, but only as far as real values
    go); RegistryError past the row or column cap."""
    if not content:
        raise RegistryError(N_("registry.error.empty"))
    check_zip(content, limits)
    from openpyxl import load_workbook  # imported here: only XLSX registries need it
    from openpyxl.worksheet._reader import WorkSheetParser

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as error:  # zipfile, XML and openpyxl errors alike: not a workbook
        raise RegistryError(_NOT_A_BOOK) from error
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise RegistryError(N_("registry.error.no_sheet"), sheet=sheet)
        worksheet = book[sheet] if sheet is not None else book.worksheets[0]
        # The sheet's own parser, as openpyxl's read-only rows use it, minus their padding of
        # every row to the declared dimension and of every missing row in between.
        try:
            source = worksheet._get_source()
            parser = WorkSheetParser(
                source,
                worksheet._shared_strings,
                data_only=True,
                epoch=book.epoch,
                date_formats=book._date_formats,
                timedelta_formats=book._timedelta_formats,
            )
        except Exception as error:
            raise RegistryError(_NOT_A_BOOK) from error
        with source:
            yield from _sheet_rows(parser.parse(), limits)
    finally:
        book.close()


def _sheet_rows(
    parsed: Iterator[tuple[int, list[dict[str, Any]]]], limits: Limits
) -> Iterator[Row]:
    width = 0
    seen = 0
    while True:
        try:
            found = next(parsed, None)
        except Exception as error:  # broken XML, a bad cell reference or value
            raise RegistryError(N_("registry.error.sheet_unreadable")) from error
        if found is None:
            return
        number, cells = found
        seen += 1
        if number > limits.max_rows or seen > limits.max_rows:
            raise RegistryError.plural(
                "registry.error.sheet_rows", limits.max_rows, line=number, count=limits.max_rows
            )
        values = [(cell["column"], cell["value"]) for cell in cells if cell["value"] is not None]
        if not values:
            continue
        last = max(column for column, _ in values)
        if last > limits.max_columns:
            raise RegistryError(
                N_("registry.error.columns"), line=number, column=last, max=limits.max_columns
            )
        width = max(width, last)
        row: list[Any] = [None] * width
        for column, value in values:
            if column >= 1:
                row[column - 1] = value
        yield number, row


def _child() -> None:
    """`python -m tolom.reconciliation.xlsx`: one request on stdin, frames on stdout."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    # The request comes from the server that started this process, not from the file.
    content, fmt, zone_key, gateway, limits = pickle.load(sys.stdin.buffer)  # noqa: S301
    try:
        import resource

        cpu = math.ceil(limits.seconds) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory, limits.max_memory))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not Linux
        pass

    def send(frame: tuple[Any, ...]) -> None:
        pickle.dump(frame, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        parsed = read(
            content,
            fmt,
            ZoneInfo(zone_key),
            gateway=gateway,
            progress=lambda lines: send(("progress", lines)),
            rows=rows(content, fmt.sheet, limits),
        )
    except RegistryError as error:
        send(("error", error.key, error.counted, error.values, error.line, error.field))
        return
    # Column by column: lists of ints and strings travel far faster than a million tuples.
    send(("ok", [list(column) for column in zip(*parsed.lines, strict=True)], parsed.total))


# --- the parent: the child started, waited for, killed when late ----------------------------


class _Frames(pickle.Unpickler):
    """The child's answers hold plain values and dates only; nothing else is unpickled."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("datetime", "date"):
            return date
        raise pickle.UnpicklingError(f"{module}.{name} is not expected from the XLSX reader")


def _pump(process: subprocess.Popen[bytes], request: bytes, frames: queue.Queue[Any]) -> None:
    """Hand the child its request, then pass its frames on; None when it is gone."""
    assert process.stdin is not None and process.stdout is not None
    try:
        try:
            process.stdin.write(request)
        finally:
            process.stdin.close()
        reader = _Frames(process.stdout)
        while True:
            frames.put(reader.load())
    except Exception:  # EOF, a broken pipe, a killed child: the waiting side decides
        frames.put(None)


def _child_environment() -> dict[str, str]:
    """This environment, with the folder this `tolom` was imported from first on the path,
    so the child runs the same code even when it is not installed."""
    import tolom

    environment = dict(os.environ)
    here = str(Path(tolom.__file__).resolve().parents[1])
    rest = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = here + (os.pathsep + rest if rest else "")
    return environment


def parse_isolated(
    content: bytes,
    fmt: RegistryFormat,
    agent_zone: ZoneInfo,
    *,
    gateway: bool,
    progress: Callable[[int], None] | None = None,
    limits: Limits | None = None,
) -> ParsedRegistry:
    """`reading.parse` of an XLSX registry, done by a child process within the time budget."""
    if not content:
        raise RegistryError(N_("registry.error.empty"))
    limits = limits or Limits.from_settings()
    request = pickle.dumps(
        (content, fmt, agent_zone.key, gateway, limits), protocol=pickle.HIGHEST_PROTOCOL
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tolom.reconciliation.xlsx"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_environment(),
        )
    except OSError as error:
        raise RegistryError(N_("registry.error.no_process"), error=str(error.strerror)) from error
    frames: queue.Queue[Any] = queue.Queue()
    pump = threading.Thread(
        target=_pump, args=(process, request, frames), name="xlsx-reader", daemon=True
    )
    pump.start()
    deadline = time.monotonic() + limits.seconds
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RegistryError(N_("registry.error.too_slow"), seconds=f"{limits.seconds:g}")
            stopped = _cancelled()
            if stopped is not None:
                raise RegistryError(stopped)
            try:
                frame = frames.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                continue
            if frame is None:
                raise RegistryError(N_("registry.error.broken"))
            if frame[0] == "progress":
                if progress is not None:
                    progress(frame[1])
            elif frame[0] == "error":
                key, counted, values, line, field = frame[1:]
                raise RegistryError(key, line=line, field=field, counted=counted, **values)
            else:
                columns, total = frame[1], frame[2]
                return ParsedRegistry(list(map(Line, *columns)) if columns else [], total)
    finally:
        _stop(process, pump)


def _stop(process: subprocess.Popen[bytes], pump: threading.Thread) -> None:
    """Kill the child if it still runs; its pipes end with it, and so does the pump."""
    if process.poll() is None:
        process.kill()
    process.wait()
    pump.join(timeout=10)
    stream: IO[bytes] | None
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


if __name__ == "__main__":
    _child()
