"""The scheduled run: registries dropped into a watched folder are imported and matched.

Layout: `<folder>/<agent code>/<any file name>`. A file whose name holds a date
(`2026-11-21`, `20261121` or `21.11.2026`) is the registry of that day; otherwise its
lines' day is used. Each file is imported like `tolom reconcile import` and then moved to
`<agent>/done/` with `<name>.result.json` beside it, or to `<agent>/failed/` with
`<name>.error.txt` saying which line and field are wrong. Files still being written are
left for the next pass (their size or modification time changed in the last few seconds),
and importing is idempotent, so a file seen twice after a crash changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from tolom.reconciliation import registries
from tolom.reconciliation.parsing import RegistryError

log = logging.getLogger(__name__)

SETTLE_SECONDS = 5.0  # a file untouched this long is taken as completely written
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
    return now - path.stat().st_mtime >= SETTLE_SECONDS


def _move(path: Path, folder: str, note_name: str, note: str) -> None:
    target = path.parent / folder
    target.mkdir(exist_ok=True)
    destination = target / path.name
    if destination.exists():  # the same name again later: keep both
        destination = target / f"{path.stem}.{int(time.time())}{path.suffix}"
    path.replace(destination)
    (target / f"{destination.name}.{note_name}").write_text(note, encoding="utf-8")


def scan_once(
    engine: Engine, folder: Path, *, actor: str = "watch", now: float | None = None
) -> list[Outcome]:
    """Import every settled file in the agents' sub-folders; what happened to each."""
    moment = time.time() if now is None else now
    outcomes: list[Outcome] = []
    for agent_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(p for p in agent_dir.iterdir() if p.is_file()):
            if path.name.startswith(".") or not _settled(path, moment):
                continue
            agent = agent_dir.name
            try:
                done = registries.import_registry(
                    engine,
                    agent,
                    path.read_bytes(),
                    file_name=path.name,
                    actor=f"{actor}:{folder.name}",
                    day=day_in_name(path.name),
                )
            except RegistryError as error:
                log.warning("registry %s of %s refused: %s", path.name, agent, error)
                _move(path, "failed", "error.txt", f"{error}\n")
                outcomes.append(Outcome(agent, path.name, error=str(error)))
                continue
            result = {
                "registry": done.registry_id,
                "day": done.business_date.isoformat(),
                "lines": done.lines,
                "replayed": done.replayed,
                "superseded": done.superseded,
                "summary": done.summary.to_json(),
            }
            _move(path, "done", "result.json", json.dumps(result, ensure_ascii=False, indent=2))
            log.info(
                "registry %s of %s imported: %s discrepancies",
                path.name,
                agent,
                done.summary.discrepancy_count,
            )
            outcomes.append(Outcome(agent, path.name, imported=done))
    return outcomes
