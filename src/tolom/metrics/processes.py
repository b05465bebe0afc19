"""The directory `tolom serve --workers N` shares metrics through.

The supervisor calls `prepare` before it starts its workers: each worker is a new (spawned)
process whose prometheus_client must find PROMETHEUS_MULTIPROC_DIR set when imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"


def prepare(configured: str | None) -> tuple[Path, bool]:
    """Make the directory (TOLOM_METRICS_DIR, or a new temporary one), empty it of an
    earlier run's files, and name it to the workers to come. Returns it and whether it is
    ours to remove at exit."""
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):  # counters of a previous run would add up with ours
            old.unlink()
        owned = False
    else:
        path = Path(tempfile.mkdtemp(prefix="tolom-metrics-"))
        owned = True
    os.environ[ENVIRONMENT] = str(path)
    return path, owned


def release(path: Path, owned: bool) -> None:
    """The supervisor is stopping: remove a directory it made."""
    if owned:
        shutil.rmtree(path, ignore_errors=True)
