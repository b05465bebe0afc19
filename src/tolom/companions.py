"""What runs beside a delivery worker (`tolom worker`, `tolom serve --with-worker`): its
heartbeat row and, when configured, the probe and the wallet simulator's autopays."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from tolom.metrics import heartbeats
from tolom.probe import ProbeLoop
from tolom.settings import Settings
from tolom.simulator.autopay import AutopayLoop


@contextmanager
def accompany(settings: Settings, engine: Engine, stop: threading.Event) -> Iterator[None]:
    """Around a worker's run. On leaving, `stop` is set and the threads are given a moment
    to finish."""
    threads: list[threading.Thread] = [heartbeats.Beacon(engine, stop)]
    if settings.probe_interval_seconds > 0:
        threads.append(ProbeLoop(settings, engine, stop))
    if settings.simulator_autopay_seconds > 0:
        threads.append(AutopayLoop(settings, engine, stop))
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
